//! Acceptance: when the disk fails (full filesystem, torn or unsynced writes), appends
//! return errors, nothing is acknowledged that is not durable, and the entries written
//! before stay verifiable. Both with injected faults at every write and sync of both
//! files, and on a real, small tmpfs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use warden_store::durable::{AppendFile, Fault, FaultyFile};
use warden_store::error::AppendError;
use warden_store::keys;
use warden_store::ledger::{Ledger, Receipt};

#[derive(Clone, Copy, Debug)]
enum Which {
    Entries,
    Checkpoints,
}

/// Every acknowledged entry is on disk at its index with its content.
fn assert_acknowledged_present(k: &Keys, log: &Path, acked: &[(usize, Receipt)], ctx: &str) {
    let ids = request_ids(k, log);
    for (i, r) in acked {
        let at = usize::try_from(r.index).unwrap();
        assert_eq!(
            ids.get(at).cloned().flatten(),
            Some(format!("req-{i}")),
            "{ctx}: acknowledged entry {i} lost"
        );
    }
}

#[test]
fn injected_write_and_sync_failures_acknowledge_nothing_and_keep_the_log_verifiable() {
    let k = keys();
    let faults = [
        Fault::NotStored,
        Fault::Torn,
        Fault::StoredButFailed,
        Fault::SyncFails,
    ];
    let mut cases = 0;
    for fault in faults {
        for which in [Which::Entries, Which::Checkpoints] {
            // Operations 1-2 are the opening entries' write and sync; 3.. are appends.
            for at in 1..=8u64 {
                cases += 1;
                let ctx = format!("{fault:?} on {which:?} at op {at}");
                // Appends are the odd operations, syncs the even ones; a fault fires at
                // the first operation of its type from `at` on.
                let on_sync = fault == Fault::SyncFails;
                let fires = if (at % 2 == 0) == on_sync { at } else { at + 1 };
                let dir = tempfile::tempdir().unwrap();
                let log = dir.path().join("model_access.jsonl");
                let wrap =
                    Box::new(
                        move |e: Box<dyn AppendFile>, c: Box<dyn AppendFile>| match which {
                            Which::Entries => (
                                Box::new(FaultyFile::new(e, at, fault)) as Box<dyn AppendFile>,
                                c,
                            ),
                            Which::Checkpoints => (
                                e,
                                Box::new(FaultyFile::new(c, at, fault)) as Box<dyn AppendFile>,
                            ),
                        },
                    );
                let root = keys::unlock_root(&k.root_key, b"").unwrap();
                let ledger = match Ledger::open_with(&log, root, options(&k), wrap) {
                    Ok(l) => l,
                    Err(e) => {
                        // Failing while writing the opening entries: refused to open.
                        assert!(fires <= 2, "{ctx}: open failed late: {e}");
                        continue;
                    }
                };
                let mut acked = Vec::new();
                let mut first_error = None;
                for i in 0..6 {
                    match ledger.append("model.access", &event(i)) {
                        Ok(r) => {
                            assert!(first_error.is_none(), "{ctx}: acknowledged after a failure");
                            acked.push((i, r));
                        }
                        Err(e) => {
                            if first_error.is_none() {
                                assert!(matches!(e, AppendError::Io(_)), "{ctx}: {e}");
                            } else {
                                assert!(matches!(e, AppendError::Failed(_)), "{ctx}: {e}");
                            }
                            first_error.get_or_insert(e);
                        }
                    }
                }
                ledger.close();
                assert!(first_error.is_some(), "{ctx}: no append failed");
                // Each append takes two operations on each file after the opening two.
                assert!(
                    fires >= 3,
                    "{ctx}: the opening entries were acknowledged despite the fault"
                );
                let expect_acked = usize::try_from((fires - 3) / 2).unwrap();
                assert_eq!(acked.len(), expect_acked, "{ctx}");

                // Without any repair, the files are a clean, verifiable prefix.
                let report = verify(&k, &log);
                assert!(report.is_clean(), "{ctx}: {:?}", report.findings);
                assert_eq!(report.entries, 1 + acked.len() as u64, "{ctx}");
                assert_acknowledged_present(&k, &log, &acked, &ctx);

                // Reopening on a healthy disk continues the same log.
                let root = keys::unlock_root(&k.root_key, b"").unwrap();
                let ledger = Ledger::open(&log, root, options(&k)).unwrap();
                ledger.append("model.access", &event(99)).unwrap();
                ledger.close();
                let report = verify(&k, &log);
                assert!(
                    report.is_clean(),
                    "{ctx} after reopening: {:?}",
                    report.findings
                );
                assert_acknowledged_present(&k, &log, &acked, &ctx);
            }
        }
    }
    assert_eq!(cases, 64);
}

/// Mounts a small tmpfs; the caller unmounts it.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN); the test suite runs as root in CI"
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_tmpfs_refuses_appends_and_keeps_earlier_entries_verifiable() {
    let k = keys();
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _fs = Tmpfs::mount(&mnt, "1m");
    let log = mnt.join("model_access.jsonl");
    let root = keys::unlock_root(&k.root_key, b"").unwrap();
    let ledger = Ledger::open(&log, root, options(&k)).unwrap();
    let mut acked = Vec::new();
    let mut errors = 0;
    for i in 0..5000 {
        // Batches of concurrent submissions, as a busy service would make.
        match ledger
            .submit("model.access", &event(i))
            .and_then(warden_store::ledger::Ticket::wait)
        {
            Ok(r) => {
                assert_eq!(errors, 0, "acknowledged after the disk filled");
                acked.push((i, r));
            }
            Err(_) => errors += 1,
        }
    }
    ledger.close();
    assert!(errors > 0, "the 1 MiB filesystem never filled");
    assert!(acked.len() > 50, "only {} entries fit", acked.len());
    let report = verify(&k, &log);
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.entries, 1 + acked.len() as u64);
    assert_acknowledged_present(&k, &log, &acked, "tmpfs");

    // Still full: reopening must refuse rather than write a partial opening.
    let root = keys::unlock_root(&k.root_key, b"").unwrap();
    if let Ok(l) = Ledger::open(&log, root, options(&k)) {
        // Space for the opening entries was found (the filesystem frees blocks on
        // truncation); then the log must still verify.
        l.close();
    }
    let report = verify(&k, &log);
    assert!(
        report.is_clean(),
        "after reopening on a full disk: {:?}",
        report.findings
    );
    assert_acknowledged_present(&k, &log, &acked, "tmpfs reopen");
}

#[test]
fn strict_mode_failure_between_signing_groups_acknowledges_nothing_unstored() {
    let k = keys();
    for at in [3u64, 4, 5, 6, 7, 8] {
        let ctx = format!("strict, checkpoints fail at op {at}");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("model_access.jsonl");
        let wrap = Box::new(move |e: Box<dyn AppendFile>, c: Box<dyn AppendFile>| {
            (
                e,
                Box::new(FaultyFile::new(c, at, Fault::Torn)) as Box<dyn AppendFile>,
            )
        });
        let mut opts = options(&k);
        opts.strict = true;
        let root = keys::unlock_root(&k.root_key, b"").unwrap();
        let ledger = Ledger::open_with(&log, root, opts, wrap).unwrap();
        // Many entries at once, so batches span several signing groups. The failure
        // can come before the last submission, which the failed ledger then refuses
        // (fail closed): a refusal acknowledges nothing either.
        let tickets: Vec<_> = (0..1500)
            .map(|i| (i, ledger.submit("model.access", &event(i))))
            .collect();
        let mut acked = Vec::new();
        let mut failed = 0;
        for (i, t) in tickets {
            match t.and_then(|t| t.wait()) {
                Ok(r) => acked.push((i, r)),
                Err(_) => failed += 1,
            }
        }
        ledger.close();
        assert!(failed > 0, "{ctx}: nothing failed");
        let report = verify(&k, &log);
        assert!(report.is_clean(), "{ctx}: {:?}", report.findings);
        assert_eq!(report.entries, 1 + acked.len() as u64, "{ctx}");
        assert_acknowledged_present(&k, &log, &acked, &ctx);
    }
}
