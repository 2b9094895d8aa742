//! Fixtures for the registry's integration tests: a real ledger (with a switch that
//! makes its entries file fail on demand), a real SQLite registry and blob store.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use warden_core::crypto::SigAlg;
use warden_core::entry::Event;
use warden_core::verify::VerifyConfig;
use warden_policy::Engine;
use warden_registry::blobs::BlobStore;
use warden_registry::{Caller, ManagerOptions, PrincipalKey, SecureModelManager, keyfile};
use warden_store::durable::AppendFile;
use warden_store::keys::{self, KdfParams};
use warden_store::ledger::{Ledger, LedgerOptions, SystemClock, SystemEntropy, checkpoints_path};

pub const ORIGIN: &str = "test.local/registry";

/// Makes every append and sync fail while `fail` is set (the disk is gone).
pub struct Switch {
    inner: Box<dyn AppendFile>,
    fail: Arc<AtomicBool>,
}

impl AppendFile for Switch {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected: device gone"));
        }
        self.inner.append(data)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected: device gone"));
        }
        self.inner.sync()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.truncate(len)
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub root_pub: PathBuf,
    pub auditor: PathBuf,
    pub fail: Arc<AtomicBool>,
    pub rt: tokio::runtime::Runtime,
    pub m: Option<SecureModelManager>,
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl Fixture {
    /// A fresh ledger and registry with the shipped policy and an `admin` principal.
    pub fn new() -> Self {
        Self::with_database(None)
    }

    /// The same, with the registry's metadata in `database` (default: a SQLite file in
    /// the fixture's directory).
    pub fn with_database(database: Option<warden_registry::db::Database>) -> Self {
        Self::with_stores(database, None)
    }

    /// The same, with blobs in `blobs` too (default: a directory in the fixture's).
    pub fn with_stores(
        database: Option<warden_registry::db::Database>,
        blobs: Option<BlobStore>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root_key = dir.path().join("root.key");
        let root_pub = dir.path().join("root.pub");
        let kdf = KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
        };
        keys::create_root(&root_key, &root_pub, ORIGIN, SigAlg::MlDsa65, b"", kdf).unwrap();
        let root = keys::unlock_root(&root_key, b"").unwrap();
        let auditor = dir.path().join("aud.key");
        let auditor_pub = dir.path().join("aud.key.pub");
        keys::create_recipient(&auditor, &auditor_pub).unwrap();
        let log = dir.path().join("logs/model_access.jsonl");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let fail = Arc::new(AtomicBool::new(false));
        let f2 = Arc::clone(&fail);
        let opts = LedgerOptions {
            origin: ORIGIN.into(),
            alg: SigAlg::MlDsa65,
            rotation_interval: Duration::from_secs(7200),
            strict: false,
            recipients: vec![keys::read_recipient_public(&auditor_pub).unwrap()],
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            segments: warden_store::segments::SegmentPolicy::default(),
        };
        let ledger = Ledger::open_with(
            &log,
            root,
            opts,
            Box::new(move |a, b| (Box::new(Switch { inner: a, fail: f2 }), b)),
        )
        .unwrap();
        let rt = runtime();
        let blobs = blobs.unwrap_or_else(|| BlobStore::local(&dir.path().join("blobs")).unwrap());
        let m = rt
            .block_on(SecureModelManager::open(
                ManagerOptions {
                    database: database.unwrap_or_else(|| {
                        warden_registry::db::Database::Sqlite(
                            dir.path().join("registry/registry.db"),
                        )
                    }),
                    blobs,
                    engine: Engine::default_policy().unwrap(),
                    policy_digest: "test".into(),
                    config_digest: None,
                    clock: Arc::new(SystemClock),
                },
                std::sync::Arc::new(ledger),
            ))
            .unwrap();
        let fx = Self {
            dir,
            log,
            root_pub,
            auditor,
            fail,
            rt,
            m: Some(m),
        };
        fx.add("admin", &["admin"], false, None);
        fx
    }

    pub fn m(&self) -> &SecureModelManager {
        self.m.as_ref().unwrap()
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("keys/{name}.key"))
    }

    /// Adds a principal with a fresh signing key (as `admin`, or bootstrap for admin).
    pub fn add(&self, name: &str, roles: &[&str], service: bool, by: Option<&str>) -> PrincipalKey {
        let k = keyfile::create(&self.key_path(name), name, SigAlg::MlDsa65).unwrap();
        let roles: Vec<String> = roles.iter().map(|s| (*s).to_owned()).collect();
        let caller = by.map(Caller::local);
        self.rt
            .block_on(self.m().add_principal(
                caller.as_ref(),
                name,
                &roles,
                service,
                Some(&k.key.verifying_key()),
            ))
            .unwrap();
        keyfile::read(&self.key_path(name)).unwrap()
    }

    /// Registers `path` as `m@version`, signed by `who`'s key; returns the root digest.
    pub fn register_file(&self, who: &str, version: &str, path: &Path) -> String {
        let key = keyfile::read(&self.key_path(who)).unwrap();
        let (info, _) = self
            .rt
            .block_on(self.m().register(
                &Caller::local(who),
                warden_registry::Registration {
                    model: "m",
                    version,
                    path,
                    provenance: warden_registry::manifest::Provenance::default(),
                },
                &key,
                &|_, _| {},
            ))
            .unwrap();
        info.root_digest
    }

    /// Closes the manager and the ledger (final checkpoint).
    pub fn close(&mut self) {
        if let Some(m) = self.m.take() {
            self.rt.block_on(m.close()).unwrap();
        }
    }

    /// Every entry, decrypted: (kind, event).
    pub fn events(&self) -> Vec<(String, Event)> {
        let sk = keys::read_recipient_secret(&self.auditor).unwrap();
        let data = std::fs::read(&self.log).unwrap();
        let mut key = None;
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let e = warden_core::entry::parse_line(line).unwrap();
            if let Some(r) = e.header.rotation {
                let rec = warden_core::epoch::RotationRecord::decode(r).unwrap();
                key = rec.unwrap_data_key(&sk).unwrap();
            }
            let mut pt = Vec::new();
            e.open(key.as_ref().unwrap(), &mut pt).unwrap();
            out.push((
                e.header.kind.to_owned(),
                Event::from_plaintext(&pt).unwrap(),
            ));
        }
        out
    }

    /// Verifies the whole ledger, decrypting every entry; returns the findings.
    pub fn verify(&self) -> Vec<String> {
        let cfg = VerifyConfig {
            root: keys::read_root_public(&self.root_pub).unwrap(),
            max_epoch_micros: 7_200_000_000,
            auditor: Some(keys::read_recipient_secret(&self.auditor).unwrap()),
        };
        let out = warden_store::verify::verify_files(
            &self.log,
            &checkpoints_path(&self.log),
            cfg,
            Vec::new(),
            None,
            &mut |_, _| {},
        )
        .unwrap();
        out.report
            .findings
            .iter()
            .map(|f| format!("{f:?}"))
            .collect()
    }
}

/// Writes `n` bytes of a deterministic pattern to `path`.
pub fn write_model(path: &Path, n: usize, seed: u8) {
    let data: Vec<u8> = (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(path, data).unwrap();
}
