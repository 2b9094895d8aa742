//! Proofs come from the stored tree hashes (`x.hashes/`): the same proofs as from
//! every leaf, kept current as the ledger grows, and never wrong when the hash files
//! are torn, altered, or belong to another ledger.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use warden_core::checkpoint::Checkpoint;
use warden_core::merkle::{consistency_proof, inclusion_proof, leaf_hash};
use warden_store::audit;
use warden_store::ledger::read_leaves;

/// Every proof the audit API gives equals the proof computed from all the leaves.
fn proofs_match(log: &std::path::Path) {
    let leaves = read_leaves(log).unwrap().leaves;
    let size = leaves.len() as u64;
    for i in [0, 1, 255, 256, 257, 700, 701, size / 2, size - 2, size - 1] {
        let p = audit::inclusion(log, i).unwrap();
        assert_eq!(
            Checkpoint::from_text(p.checkpoint.text()).unwrap().size,
            size
        );
        assert_eq!(p.hashes, inclusion_proof(&leaves, i).unwrap(), "index {i}");
        assert_eq!(leaf_hash(p.extra.as_deref().unwrap()), leaves[i as usize]);
    }
    for old in [0, 1, 3, 256, 300, size / 2, size - 1, size] {
        let c = audit::consistency(log, old).unwrap();
        assert_eq!(
            c.hashes,
            consistency_proof(&leaves, old).unwrap(),
            "old {old}"
        );
    }
}

#[test]
fn proofs_from_stored_hashes_equal_proofs_from_the_leaves_as_the_ledger_grows() {
    let k = keys();
    let log = k.dir.path().join("logs/model_access.jsonl");
    let l = open_ledger(&k, &log);
    append_events(&l, 70_000);
    proofs_match(&log);
    // The store is brought up to the newer checkpoint, not rebuilt.
    append_events(&l, 1_000);
    proofs_match(&log);
    l.close();
    let stored = std::fs::metadata(log.with_extension("hashes").join("0"))
        .unwrap()
        .len();
    assert_eq!(stored, 32 * read_leaves(&log).unwrap().leaves.len() as u64);
    assert!(
        std::fs::metadata(log.with_extension("hashes").join("2"))
            .unwrap()
            .len()
            > 0
    );
}

#[test]
fn altered_torn_or_foreign_hash_files_never_give_a_wrong_proof() {
    let k = keys();
    let log = k.dir.path().join("logs/model_access.jsonl");
    let l = open_ledger(&k, &log);
    append_events(&l, 3_000);
    proofs_match(&log);
    let level0 = log.with_extension("hashes").join("0");
    // A flipped bit in a stored leaf hash: the root (from level 1) is still right, but
    // entry 701's proof names 700 as its sibling.
    let mut b = std::fs::read(&level0).unwrap();
    b[32 * 700 + 5] ^= 1;
    std::fs::write(&level0, &b).unwrap();
    proofs_match(&log);
    // A torn write at the end.
    let b = std::fs::read(&level0).unwrap();
    std::fs::write(&level0, &b[..b.len() - 45]).unwrap();
    proofs_match(&log);
    // Hash files of another ledger, longer than this one.
    let other = k.dir.path().join("other/model_access.jsonl");
    let o = open_ledger(&k, &other);
    append_events(&o, 5_000);
    proofs_match(&other);
    o.close();
    let theirs = other.with_extension("hashes");
    for f in std::fs::read_dir(&theirs).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), log.with_extension("hashes").join(f.file_name())).unwrap();
    }
    proofs_match(&log);
    l.close();
}
