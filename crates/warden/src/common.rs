//! Shared helpers: data directory resolution, unlocking the root key, output.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_store::config::{Config, DataDir};
use warden_store::keys::{self, RootKey};
use warden_store::ledger::{Ledger, LedgerOptions, SystemClock, SystemEntropy};

/// Verification found a problem.
pub const EXIT_INVALID: u8 = 1;
/// The command could not run.
pub const EXIT_ERROR: u8 = 2;

/// `--data-dir`, shared by commands that use a data directory.
#[derive(Args, Debug, Clone)]
pub struct DataDirArg {
    /// Data directory (configuration, keys, logs/).
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
}

impl DataDirArg {
    pub fn dir(&self) -> DataDir {
        DataDir::new(&self.data_dir)
    }
}

/// Writes a line to stderr.
#[expect(
    clippy::print_stderr,
    reason = "the binary reports errors and warnings on stderr"
)]
pub fn eprint(msg: &str) {
    eprintln!("{msg}");
}

/// The passphrase from `WARDEN_PASSPHRASE`, or empty (development keys only).
pub fn passphrase() -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(
        std::env::var("WARDEN_PASSPHRASE")
            .unwrap_or_default()
            .into_bytes(),
    )
}

/// Unlocks the data directory's root key.
pub fn unlock(dir: &DataDir) -> Result<RootKey> {
    let pass = passphrase();
    let key = keys::unlock_root(&dir.root_key(), &pass).with_context(|| {
        if pass.is_empty() {
            "set WARDEN_PASSPHRASE to the passphrase given to `warden init`".to_owned()
        } else {
            "unlocking the root key".to_owned()
        }
    })?;
    if key.dev {
        eprint(
            "warning: development mode: the root key is sealed under an empty passphrase; do not use this data directory in production",
        );
    }
    Ok(key)
}

/// Opens the ledger of a data directory.
pub fn open_ledger(dir: &DataDir) -> Result<(Ledger, Config)> {
    let cfg = dir.read_config()?;
    let root = unlock(dir)?;
    let ledger = open_unlocked(dir, &cfg, root)?;
    Ok((ledger, cfg))
}

/// Opens the ledger with a root key already in hand.
pub fn open_unlocked(dir: &DataDir, cfg: &Config, root: RootKey) -> Result<Ledger> {
    let alg = cfg.validate()?;
    let opts = LedgerOptions {
        origin: cfg.origin.clone(),
        alg,
        rotation_interval: Duration::from_secs(cfg.rotation_interval_secs),
        strict: cfg.strict,
        recipients: dir.read_auditors()?,
        clock: Arc::new(SystemClock),
        entropy: Arc::new(SystemEntropy),
        segments: cfg.segments.policy(),
    };
    if opts.recipients.is_empty() {
        eprint(
            "warning: no auditor keys in auditors/: entries are encrypted but nobody can decrypt them",
        );
    }
    let ledger = Ledger::open(&dir.log(cfg), root, opts)?;
    let info = ledger.info();
    if info.cut_bytes > 0 {
        eprint(&format!(
            "recovered: cut {} unacknowledged entries ({} bytes) left by an interrupted writer",
            info.cut_entries, info.cut_bytes
        ));
    }
    Ok(ledger)
}

/// Prints a JSON value on one line.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Reads a small file with a size limit.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads an auditor secret key, naming the file in the error.
pub fn read_auditor(path: &Path) -> Result<warden_core::crypto::RecipientSecretKey> {
    keys::read_recipient_secret(path)
        .with_context(|| format!("reading the auditor key {}", path.display()))
}
