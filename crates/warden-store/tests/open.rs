//! Opening: the saved tree state spares the rehash of the active segment, and one that
//! is missing, stale or altered never makes an open wrong; request ids survive a
//! restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use warden_store::ledger::Ledger;

#[test]
fn open_rehashes_only_entries_after_the_saved_tree_state() {
    let k = keys();
    let log = k.dir.path().join("logs/model_access.jsonl");
    let l = open_ledger(&k, &log);
    append_events(&l, 5000);
    l.close();
    // A clean close saved the state: nothing to rehash.
    let l = open_ledger(&k, &log);
    assert_eq!(l.info().rehashed, 0);
    append_events(&l, 10);
    let saved = std::fs::read(log.with_extension("tree")).unwrap();
    l.close();
    // A state from before the last entries (as a crash leaves it): only those, the
    // second session's key.rotation and its 10 appends.
    std::fs::write(log.with_extension("tree"), &saved).unwrap();
    let l = open_ledger(&k, &log);
    assert_eq!(l.info().rehashed, 11, "{:?}", l.info());
    l.close();
    let size_before = verify(&k, &log).entries;

    // An altered state (one hash changed) is not believed: a full rehash, same ledger.
    let text = String::from_utf8(std::fs::read(log.with_extension("tree")).unwrap()).unwrap();
    let i = text.find("\"range\":[\"").unwrap() + 10;
    let mut bad = text.into_bytes();
    bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(log.with_extension("tree"), &bad).unwrap();
    let l = open_ledger(&k, &log);
    assert!(l.info().rehashed >= 5000, "{:?}", l.info());
    append_events(&l, 3);
    l.close();
    // Missing: a full rehash too.
    std::fs::remove_file(log.with_extension("tree")).unwrap();
    let l = open_ledger(&k, &log);
    assert!(l.info().rehashed >= 5000);
    l.close();
    let r = verify(&k, &log);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert!(r.entries > size_before);
}

/// Appends `event(n)` under request id `[id; 16]`; its receipt.
fn request(l: &Ledger, n: usize, id: u8) -> warden_store::ledger::Receipt {
    l.submit_request("model.access", &event(n), [id; 16])
        .unwrap()
        .wait()
        .unwrap()
}

#[test]
fn request_ids_are_answered_once_from_memory_and_after_a_restart() {
    let k = keys();
    let log = k.dir.path().join("logs/model_access.jsonl");
    let l = open_ledger(&k, &log);
    let a = request(&l, 1, 1);
    let again = request(&l, 1, 1);
    assert_eq!(a.index, again.index);
    l.close();
    // Without the saved state too: recovered from the entries' headers.
    std::fs::remove_file(log.with_extension("tree")).unwrap();
    let l = open_ledger(&k, &log);
    let after = request(&l, 1, 1);
    assert_eq!(a.index, after.index);
    let other = request(&l, 2, 2);
    assert_ne!(other.index, a.index);
    l.close();
    let l = open_ledger(&k, &log);
    let after = request(&l, 1, 1);
    assert_eq!(
        a.index, after.index,
        "found before the saved state's offset too"
    );
    l.close();
    let ids = request_ids(&k, &log);
    assert_eq!(
        ids.iter().filter(|r| r.as_deref() == Some("req-1")).count(),
        1
    );
}
