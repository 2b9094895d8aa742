//! The dashboard's tally: its counts equal the ledger's, a refresh reads only what was
//! committed since the last one, and incidents are decrypted (with acknowledgements
//! applied) only with an auditor key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use std::sync::Arc;
use warden_core::entry::Event;
use warden_store::keys;
use warden_store::ledger::Ledger;
use warden_store::tally::Tally;

fn incident(severity: &str) -> Event {
    Event {
        user: Some("mallory".into()),
        details: Some(serde_json::json!({"severity": severity, "detector": "brute_force"})),
        ..Event::default()
    }
}

fn ack(of: u64) -> Event {
    Event {
        user: Some("ciso".into()),
        details: Some(serde_json::json!({"incident": of, "note": "seen"})),
        ..Event::default()
    }
}

/// The ledger of `k`'s data directory, opened for appends, and its entries file.
fn open(k: &Keys) -> (std::path::PathBuf, Ledger) {
    let log = k.dir.path().join("logs/model_access.jsonl");
    let l = Ledger::open(
        &log,
        keys::unlock_root(&k.root_key, b"").unwrap(),
        options(k),
    )
    .unwrap();
    (log, l)
}

#[test]
fn the_tally_counts_what_the_ledger_holds_and_reads_only_what_is_new() {
    let k = keys();
    let (log, l) = open(&k);
    for i in 0..5 {
        l.append("model.access", &event(i)).unwrap();
    }
    l.append("model.denied", &event(9)).unwrap();
    let high = l.append("incident", &incident("HIGH")).unwrap().index;
    l.append("incident", &incident("CRITICAL")).unwrap();
    l.append("incident.ack", &ack(high)).unwrap();

    let sk = Arc::new(keys::read_recipient_secret(&k.auditor).unwrap());
    let mut t = Tally::new(&log, Some(sk));
    let size = l.durable_state().unwrap().size;
    assert_eq!(t.refresh().unwrap(), size);
    assert_eq!(t.size(), size);
    assert_eq!(t.kinds()["model.access"], 5);
    assert_eq!(t.kinds()["model.denied"], 1);
    let hours: Vec<_> = t.hours_from(0).collect();
    assert_eq!(hours.iter().map(|(_, c)| c.granted).sum::<u64>(), 5);
    assert_eq!(hours.iter().map(|(_, c)| c.entries).sum::<u64>(), size);
    let inc = t.incidents();
    assert_eq!(inc.len(), 2);
    assert_eq!(
        (inc[0].severity.as_str(), inc[0].acknowledged.is_some()),
        ("HIGH", true)
    );
    assert_eq!(
        (inc[1].severity.as_str(), inc[1].acknowledged.is_some()),
        ("CRITICAL", false)
    );

    // Nothing new: nothing read. New entries: only they are counted.
    assert_eq!(t.refresh().unwrap(), 0);
    l.append("model.access", &event(10)).unwrap();
    assert_eq!(t.refresh().unwrap(), l.durable_state().unwrap().size - size);
    assert_eq!(t.kinds()["model.access"], 6);

    // Without the auditor key the incidents are counted, their severity unknown.
    let mut blind = Tally::new(&log, None);
    blind.refresh().unwrap();
    assert_eq!(blind.incidents().len(), 2);
    assert!(blind.incidents().iter().all(|i| i.severity == "UNKNOWN"));
    assert_eq!(blind.kinds(), t.kinds());
    l.close();
}

#[test]
fn a_tally_counted_in_steps_equals_one_counted_at_once_and_knows_who_used_what() {
    let k = keys();
    let (log, l) = open(&k);
    for i in 0..25 {
        l.append("model.access", &event(i)).unwrap();
    }
    l.append("model.denied", &event(99)).unwrap();
    let size = l.durable_state().unwrap().size;
    let sk = Arc::new(keys::read_recipient_secret(&k.auditor).unwrap());
    let mut whole = Tally::new(&log, Some(Arc::clone(&sk)));
    whole.refresh().unwrap();
    let mut steps = Tally::new(&log, Some(sk));
    let mut rounds = 0;
    loop {
        let n = steps.refresh_at_most(4).unwrap();
        assert!(n <= 4);
        rounds += 1;
        if steps.behind() == 0 {
            break;
        }
        assert_eq!(steps.behind(), size - steps.size());
    }
    assert_eq!(rounds, size.div_ceil(4));
    assert_eq!(steps.size(), whole.size());
    assert_eq!(steps.kinds(), whole.kinds());
    assert_eq!(
        steps.usage().version_users(0),
        whole.usage().version_users(0)
    );
    // Who used what is the ledger's: every access entry's user, by version.
    let users = whole.usage().version_users(0);
    let granted: u64 = users.values().map(|c| c.granted).sum();
    let denied: u64 = users.values().map(|c| c.denied).sum();
    assert_eq!((granted, denied), (25, 1));
    // Without the key nobody's use is known.
    let mut blind = Tally::new(&log, None);
    blind.refresh().unwrap();
    assert!(blind.usage().version_users(0).is_empty());
    l.close();
}
