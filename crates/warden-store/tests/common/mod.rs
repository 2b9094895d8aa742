//! Shared fixtures for the store's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_core::crypto::{RecipientSecretKey, SigAlg};
use warden_core::entry::Event;
use warden_core::verify::{Report, VerifyConfig};
use warden_store::keys::{self, KdfParams};
use warden_store::ledger::{LedgerOptions, SystemClock, SystemEntropy, checkpoints_path};
use warden_store::verify::verify_files;

pub const ORIGIN: &str = "test.local/fail-closed";

pub struct Keys {
    pub dir: tempfile::TempDir,
    pub root_key: PathBuf,
    pub root_pub: PathBuf,
    pub auditor: PathBuf,
    pub auditor_pub: PathBuf,
}

pub fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let root_key = dir.path().join("root.key");
    let root_pub = dir.path().join("root.pub");
    let kdf = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    keys::create_root(&root_key, &root_pub, ORIGIN, SigAlg::MlDsa65, b"", kdf).unwrap();
    let auditor = dir.path().join("aud.key");
    let auditor_pub = dir.path().join("aud.key.pub");
    keys::create_recipient(&auditor, &auditor_pub).unwrap();
    Keys {
        dir,
        root_key,
        root_pub,
        auditor,
        auditor_pub,
    }
}

pub fn options(k: &Keys) -> LedgerOptions {
    LedgerOptions {
        origin: ORIGIN.into(),
        alg: SigAlg::MlDsa65,
        rotation_interval: Duration::from_secs(7200),
        strict: false,
        recipients: vec![keys::read_recipient_public(&k.auditor_pub).unwrap()],
        clock: Arc::new(SystemClock),
        entropy: Arc::new(SystemEntropy),
        segments: warden_store::segments::SegmentPolicy::default(),
    }
}

pub fn event(i: usize) -> Event {
    Event {
        user: Some("alice".into()),
        model: Some("m".into()),
        request_id: Some(format!("req-{i}")),
        details: Some(serde_json::json!({ "pad": "p".repeat(200) })),
        ..Event::default()
    }
}

pub fn verify(k: &Keys, log: &Path) -> Report {
    verify_as(k, log, Some(&k.auditor), 7_200_000_000)
}

/// Verifies with the given auditor key (or none) and longest epoch.
pub fn verify_as(k: &Keys, log: &Path, auditor: Option<&Path>, max_epoch_micros: u64) -> Report {
    let cfg = VerifyConfig {
        root: keys::read_root_public(&k.root_pub).unwrap(),
        max_epoch_micros,
        auditor: auditor.map(|a| keys::read_recipient_secret(a).unwrap()),
    };
    verify_files(
        log,
        &checkpoints_path(log),
        cfg,
        Vec::new(),
        None,
        &mut |_, _| {},
    )
    .unwrap()
    .report
}

/// Decrypted request ids by index.
pub fn request_ids(k: &Keys, log: &Path) -> Vec<Option<String>> {
    request_ids_with(&keys::read_recipient_secret(&k.auditor).unwrap(), log)
}

/// Decrypted request ids by index, with the auditor key `sk`.
pub fn request_ids_with(sk: &RecipientSecretKey, log: &Path) -> Vec<Option<String>> {
    let data = std::fs::read(log).unwrap();
    let mut key = None;
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let e = warden_core::entry::parse_line(line).unwrap();
        if let Some(r) = e.header.rotation {
            let rec = warden_core::epoch::RotationRecord::decode(r).unwrap();
            key = rec.unwrap_data_key(sk).unwrap();
        }
        let mut pt = Vec::new();
        e.open(key.as_ref().unwrap(), &mut pt).unwrap();
        out.push(Event::from_plaintext(&pt).unwrap().request_id);
    }
    out
}

/// Opens (or creates) the ledger at `log` with the fixture's keys.
pub fn open_ledger(k: &Keys, log: &Path) -> warden_store::ledger::Ledger {
    warden_store::ledger::Ledger::open(
        log,
        keys::unlock_root(&k.root_key, b"").unwrap(),
        options(k),
    )
    .unwrap()
}

/// Submits `n` events and waits until every one is durable.
pub fn append_events(l: &warden_store::ledger::Ledger, n: usize) {
    let ts: Vec<_> = (0..n)
        .map(|i| l.submit("model.access", &event(i)).unwrap())
        .collect();
    for t in ts {
        t.wait().unwrap();
    }
}
