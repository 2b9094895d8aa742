//! Acceptance: with a short rotation interval and an injected clock, epochs rotate on
//! time (also while idle); the data keys are wrapped to every configured auditor and to
//! nobody else, so without a configured auditor key nothing decrypts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::epoch::RotationRecord;
use warden_core::time::Timestamp;
use warden_store::keys;
use warden_store::ledger::{Ledger, ManualClock};

const T0: u64 = 1_760_000_000_000_000;
const INTERVAL_S: u64 = 10;

#[derive(Debug)]
struct Rotation {
    index: u64,
    time: Timestamp,
    not_before: Timestamp,
    not_after: Timestamp,
    reason: String,
}

fn rotations(log: &std::path::Path) -> Vec<Rotation> {
    let data = std::fs::read(log).unwrap();
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let e = warden_core::entry::parse_line(l).unwrap();
            let rec = RotationRecord::decode(e.header.rotation?).unwrap();
            Some(Rotation {
                index: e.header.index,
                time: e.header.time,
                not_before: Timestamp::parse(rec.cert.not_before.as_bytes()).unwrap(),
                not_after: Timestamp::parse(rec.cert.not_after.as_bytes()).unwrap(),
                reason: rec.reason,
            })
        })
        .collect()
}

#[test]
fn epochs_rotate_on_time_and_decrypt_only_for_configured_auditors() {
    let k = keys();
    let second = k.dir.path().join("second.key");
    let second_pub = k.dir.path().join("second.key.pub");
    keys::create_recipient(&second, &second_pub).unwrap();
    let outsider = k.dir.path().join("outsider.key");
    keys::create_recipient(&outsider, &k.dir.path().join("outsider.key.pub")).unwrap();

    let log = k.dir.path().join("logs/model_access.jsonl");
    let clock = ManualClock::new(T0);
    let mut opts = options(&k);
    opts.rotation_interval = Duration::from_secs(INTERVAL_S);
    opts.recipients
        .push(keys::read_recipient_public(&second_pub).unwrap());
    opts.clock = Arc::new(clock.clone());
    let root = keys::unlock_root(&k.root_key, b"").unwrap();
    let ledger = Ledger::open(&log, root, opts).unwrap();

    // 45 s of traffic, one entry every 250 ms.
    let mut n = 0;
    for _ in 0..180 {
        ledger.append("model.access", &event(n)).unwrap();
        n += 1;
        clock.advance(250_000);
    }
    // Then 25 s of silence: the ledger rotates on its own, without an append.
    let before = rotations(&log).len();
    clock.advance(25_000_000);
    ledger.tick();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rotations(&log).len() == before {
        assert!(Instant::now() < deadline, "no rotation while idle");
        std::thread::sleep(Duration::from_millis(5));
    }
    ledger.append("model.access", &event(n)).unwrap();
    n += 1;
    ledger.close();

    // Epoch 0 at T0, then one rotation per 10 s of traffic at the first commit at
    // or after the deadline: T0+10, +20, +30, +40, and the idle one at T0+70.
    let rots = rotations(&log);
    let at: Vec<u64> = rots
        .iter()
        .map(|r| (r.time.as_micros() - T0) / 1_000_000)
        .collect();
    assert_eq!(at, vec![0, 10, 20, 30, 40, 70], "{rots:?}");
    for (i, r) in rots.iter().enumerate() {
        assert_eq!(r.time, r.not_before, "{r:?}");
        assert_eq!(
            r.not_after.as_micros() - r.not_before.as_micros(),
            INTERVAL_S * 1_000_000
        );
        assert_eq!(r.reason, if i == 0 { "start" } else { "interval" });
        if let Some(prev) = i.checked_sub(1).map(|p| &rots[p]) {
            // Rotated at the first moment the clock reached the old epoch's end.
            assert!(r.time >= prev.not_after, "{r:?} before {prev:?} ended");
            assert!(r.index > prev.index);
        }
    }

    let entries = 1 + n as u64 + rots.len() as u64 - 1;
    let max_epoch = INTERVAL_S * 1_000_000;
    // Without an auditor key nothing decrypts, and nothing identifying is in the clear.
    let r = verify_as(&k, &log, None, max_epoch);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!((r.entries, r.decrypted, r.epochs), (entries, 0, 6));
    let raw = std::fs::read_to_string(&log).unwrap();
    for secret in ["alice", "req-7", "\"model\"", "pppp"] {
        assert!(!raw.contains(secret), "{secret} is visible in the log file");
    }
    // A key that is not configured decrypts nothing.
    let r = verify_as(&k, &log, Some(&outsider), max_epoch);
    assert_eq!(r.decrypted, 0);
    assert!(
        r.findings
            .iter()
            .all(|f| f.code == warden_core::verify::Code::NotWrappedToAuditor),
        "{:?}",
        r.findings
    );
    assert!(!r.findings.is_empty());
    // Either configured auditor decrypts every entry of every epoch.
    for auditor in [&k.auditor, &second] {
        let r = verify_as(&k, &log, Some(auditor), max_epoch);
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!((r.entries, r.decrypted), (entries, entries));
    }
    let sk = keys::read_recipient_secret(&second).unwrap();
    let ids = request_ids_with(&sk, &log);
    assert_eq!(
        ids.iter()
            .flatten()
            .filter(|id| id.starts_with("req-"))
            .count(),
        n
    );
}
