//! Test fixtures: ledgers written through the real store with an injected clock.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use warden_core::crypto::SigAlg;
use warden_core::entry::Event;
use warden_store::error::StoreError;
use warden_store::keys::{self, KdfParams};
use warden_store::ledger::{Entropy, Ledger, LedgerOptions, ManualClock, SystemEntropy};

pub const ORIGIN: &str = "test.local/ledger";
pub const T0: u64 = 1_750_000_000_000_000;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub cps: PathBuf,
    pub root_pub: PathBuf,
    pub auditor: PathBuf,
    pub root_key: PathBuf,
    /// Every secret the ledger drew while writing: what an attacker who had read the
    /// writer's memory would know.
    pub secrets: Vec<Vec<u8>>,
}

/// System entropy that keeps a copy of what it hands out.
#[derive(Debug, Default, Clone)]
pub struct RecordingEntropy(pub Arc<Mutex<Vec<Vec<u8>>>>);

impl Entropy for RecordingEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), StoreError> {
        SystemEntropy.fill(buf)?;
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(())
    }
}

/// Small deterministic PRNG (xorshift) so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn event(i: u64) -> Event {
    Event {
        user: Some(format!("user{}", i % 37)),
        ip: Some(format!("192.0.2.{}", i % 250)),
        model: Some(format!("model-{}", i % 11)),
        version: Some("1.0.0".into()),
        action: Some("load".into()),
        decision: Some(if i.is_multiple_of(9) { "deny" } else { "allow" }.into()),
        request_id: Some(format!("req-{i}")),
        ..Event::default()
    }
}

/// Writes `n` entries over several epochs (`interval_secs` apart in injected time),
/// in batches of 1..=max_batch entries, advancing the clock one second per batch.
pub fn build(n: u64, interval_secs: u64, max_batch: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root_key = dir.path().join("root.key");
    let root_pub = dir.path().join("root.pub");
    keys::create_root(
        &root_key,
        &root_pub,
        ORIGIN,
        SigAlg::MlDsa65,
        b"",
        KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
        },
    )
    .unwrap();
    let auditor = dir.path().join("aud.key");
    keys::create_recipient(&auditor, &dir.path().join("aud.key.pub")).unwrap();
    let log = dir.path().join("logs/model_access.jsonl");
    let clock = ManualClock::new(T0);
    let entropy = RecordingEntropy::default();
    let ledger = open_with(
        &root_key,
        &dir.path().join("aud.key.pub"),
        &log,
        interval_secs,
        clock.clone(),
        false,
        entropy.clone(),
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut i = 0;
    while i < n {
        let b = (1 + rng.below(max_batch)).min(n - i);
        let tickets: Vec<_> = (0..b)
            .map(|k| ledger.submit("model.access", &event(i + k)).unwrap())
            .collect();
        for t in tickets {
            t.wait().unwrap();
        }
        i += b;
        clock.advance(1_000_000);
    }
    ledger.close();
    let cps = log.with_extension("checkpoints");
    let secrets = entropy.0.lock().unwrap().clone();
    Fixture {
        dir,
        log,
        cps,
        root_pub,
        auditor,
        root_key,
        secrets,
    }
}

pub fn open_with(
    root_key: &Path,
    auditor_pub: &Path,
    log: &Path,
    interval_secs: u64,
    clock: ManualClock,
    strict: bool,
    entropy: RecordingEntropy,
) -> Ledger {
    let rk = keys::unlock_root(root_key, b"").unwrap();
    let opts = LedgerOptions {
        origin: ORIGIN.into(),
        alg: SigAlg::MlDsa65,
        rotation_interval: Duration::from_secs(interval_secs),
        strict,
        recipients: vec![keys::read_recipient_public(auditor_pub).unwrap()],
        clock: Arc::new(clock),
        entropy: Arc::new(entropy),
        segments: warden_store::segments::SegmentPolicy::default(),
    };
    Ledger::open(log, rk, opts).unwrap()
}

pub struct Verdict {
    pub code: i32,
    pub json: serde_json::Value,
}

impl Verdict {
    pub fn findings(&self) -> Vec<(String, u64, String, String)> {
        self.json["findings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            f["location"].as_str().unwrap_or("").to_owned(),
                            f["index"].as_u64().unwrap_or(u64::MAX),
                            f["code"].as_str().unwrap_or("").to_owned(),
                            f["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has(&self, location: &str, index: u64) -> bool {
        self.findings()
            .iter()
            .any(|f| f.0 == location && f.1 == index)
    }

    pub fn has_code(&self, code: &str, index: u64) -> bool {
        self.findings().iter().any(|f| f.2 == code && f.1 == index)
    }
}

/// Runs the real `warden verify --json` on a log file.
pub fn verify(fx: &Fixture, max_epoch: u64, extra: &[&str]) -> Verdict {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(["verify", "--json", "--log"])
        .arg(&fx.log)
        .arg("--root-pub")
        .arg(&fx.root_pub);
    cmd.args(["--max-epoch", &max_epoch.to_string()]);
    cmd.args(extra);
    cmd.env_remove("WARDEN_DATA_DIR");
    let out = cmd.output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Verdict {
        code: out.status.code().unwrap_or(-1),
        json,
    }
}

pub fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut v: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if v.last().is_some_and(Vec::is_empty) {
        v.pop();
    }
    v
}

/// The entries files of a ledger in log order: sealed segments (`x.NNNNNN.jsonl`,
/// as `ls` sorts them) then the active file, as a user would `cat` them.
pub fn segment_files(log: &Path) -> Vec<std::path::PathBuf> {
    let dir = log.parent().unwrap();
    let stem = log.file_stem().unwrap().to_str().unwrap().to_owned();
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.strip_prefix(&format!("{stem}."))
                .and_then(|r| r.strip_suffix(".jsonl"))
                .is_some_and(|d| d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    v.sort();
    if log.exists() {
        v.push(log.to_path_buf());
    }
    v
}

/// Every present entry line of the ledger, across segments.
pub fn all_lines(log: &Path) -> Vec<Vec<u8>> {
    segment_files(log).iter().flat_map(|p| lines(p)).collect()
}

/// Rewrites the entry with index `index` in whichever segment holds it.
pub fn edit_entry(log: &Path, index: u64, f: impl FnOnce(&mut Vec<u8>)) {
    let key = format!("\"index\":{index},");
    for p in segment_files(log) {
        let mut l = lines(&p);
        if let Some(line) = l
            .iter_mut()
            .find(|l| String::from_utf8_lossy(l).contains(&key))
        {
            f(line);
            write_lines(&p, &l);
            return;
        }
    }
    panic!("no entry {index}");
}

pub fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    std::fs::write(path, out).unwrap();
}

/// Asserts `warden verify` exits 1 and reports `code` at `index`.
pub fn assert_reported(fx: &Fixture, max_epoch: u64, code: &str, index: u64) {
    let v = verify(fx, max_epoch, &[]);
    assert_eq!(v.code, 1, "{:?}", v.findings());
    assert!(
        v.has_code(code, index),
        "{code} at {index}: {:?}",
        v.findings()
    );
}
