//! Incremental verification: a saved state lets the next run read only new entries,
//! and tampering after the saved point is still found at its index.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use warden_store::ledger::ManualClock;

const MAX_EPOCH: u64 = 60;

/// Appends `n` more entries to the fixture's log, starting `at_secs` after T0.
fn append_more(fx: &Fixture, n: u64, at_secs: u64) {
    let clock = ManualClock::new(T0 + at_secs * 1_000_000);
    let ledger = open_with(
        &fx.root_key,
        &fx.dir.path().join("aud.key.pub"),
        &fx.log,
        MAX_EPOCH,
        clock.clone(),
        false,
        RecordingEntropy::default(),
    );
    for i in 0..n {
        ledger.append("model.access", &event(100_000 + i)).unwrap();
        clock.advance(500_000);
    }
    ledger.close();
}

#[test]
fn resumed_verification_reads_only_new_entries_and_still_finds_tampering() {
    let fx = build(2_000, MAX_EPOCH, 40);
    let state = fx.dir.path().join("verified.json");
    let st = state.to_str().unwrap().to_owned();
    let v = verify(&fx, MAX_EPOCH, &["--save-checkpoint", &st]);
    assert_eq!(v.code, 0, "{:?}", v.findings());
    let first_size = v.json["verified_size"].as_u64().unwrap();
    assert_eq!(first_size, v.json["entries"].as_u64().unwrap());

    append_more(&fx, 300, 10_000);
    let v = verify(
        &fx,
        MAX_EPOCH,
        &["--since-checkpoint", &st, "--save-checkpoint", &st],
    );
    assert_eq!(v.code, 0, "{:?}", v.findings());
    assert_eq!(v.json["resumed_from"].as_u64(), Some(first_size));
    let total = v.json["verified_size"].as_u64().unwrap();
    assert!(total > first_size + 300, "{}", v.json);

    // Tamper after the saved point: found, at its index.
    append_more(&fx, 50, 20_000);
    let mut l = lines(&fx.log);
    let i = usize::try_from(total).unwrap() + 20;
    let pos = l[i].len() - 10;
    l[i][pos] ^= 0x01;
    write_lines(&fx.log, &l);
    let v = verify(&fx, MAX_EPOCH, &["--since-checkpoint", &st]);
    assert_eq!(v.code, 1);
    assert!(v.has("entry", i as u64), "{:?}", v.findings());

    // A rewritten history (a fork: cut back before the saved point, then grown again
    // with genuine keys) verifies on its own but not against the saved state.
    let fx2 = build(500, MAX_EPOCH, 20);
    let st2 = fx2.dir.path().join("v.json");
    let s2 = st2.to_str().unwrap().to_owned();
    let v = verify(&fx2, MAX_EPOCH, &["--save-checkpoint", &s2]);
    assert_eq!(v.code, 0);
    let saved = v.json["verified_size"].as_u64().unwrap();
    let cps = lines(&fx2.cps);
    let k = cps.len() / 2;
    let cut = warden_core::record::CheckpointRecord::decode(&cps[k])
        .unwrap()
        .size;
    assert!(cut < saved);
    write_lines(&fx2.cps, &cps[..=k]);
    write_lines(&fx2.log, &lines(&fx2.log)[..usize::try_from(cut).unwrap()]);
    append_more(&fx2, 600, 10_000);
    let full = verify(&fx2, MAX_EPOCH, &[]);
    assert_eq!(
        full.code,
        0,
        "the fork should be self-consistent: {:?}",
        full.findings()
    );
    let v = verify(&fx2, MAX_EPOCH, &["--since-checkpoint", &s2]);
    assert_eq!(
        v.code, 1,
        "a rewritten history passed incremental verification: {}",
        v.json
    );
    // Named for what it is: a consistency failure at the verified size, with both
    // roots, and nothing called malformed.
    assert!(
        v.has_code("consistency_failure", saved - 1),
        "{:?}",
        v.findings()
    );
    let why = &v
        .findings()
        .into_iter()
        .find(|f| f.2 == "consistency_failure")
        .unwrap()
        .3;
    assert_eq!(why.matches("root ").count(), 2, "{why}");
    assert!(
        v.findings().iter().all(|f| f.2 != "malformed"),
        "{:?}",
        v.findings()
    );
    assert!(v.json["resumed_from"].is_null(), "{}", v.json);
}

#[test]
fn a_log_cut_before_the_verified_state_is_reported_truncated_not_malformed() {
    let fx = build(500, MAX_EPOCH, 20);
    let st = fx.dir.path().join("v.json");
    let s = st.to_str().unwrap().to_owned();
    let v = verify(&fx, MAX_EPOCH, &["--save-checkpoint", &s]);
    assert_eq!(v.code, 0);
    let saved = v.json["verified_size"].as_u64().unwrap();
    let cps = lines(&fx.cps);
    let k = cps.len() / 2;
    let cut = warden_core::record::CheckpointRecord::decode(&cps[k])
        .unwrap()
        .size;
    write_lines(&fx.cps, &cps[..=k]);
    write_lines(&fx.log, &lines(&fx.log)[..usize::try_from(cut).unwrap()]);
    let v = verify(&fx, MAX_EPOCH, &["--since-checkpoint", &s]);
    assert_eq!(v.code, 1, "{}", v.json);
    assert!(v.has_code("truncated", cut), "{:?}", v.findings());
    assert!(
        v.findings().iter().all(|f| f.2 != "malformed"),
        "{:?}",
        v.findings()
    );
    assert!(saved > cut);
}
