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

/// Unix seconds as RFC 3339 UTC to the second (`2026-12-06T05:00:00Z`), for what the
/// commands print to people; `--json` keeps the numbers.
#[must_use]
pub fn rfc3339(secs: i64) -> String {
    let micros = u64::try_from(secs).unwrap_or(0).saturating_mul(1_000_000);
    warden_core::time::Timestamp::from_micros(micros).map_or_else(
        || secs.to_string(),
        |t| {
            let s = t.to_string();
            // The ledger's form carries microseconds; people need seconds.
            match s.split_once('.') {
                Some((whole, _)) => format!("{whole}Z"),
                None => s,
            }
        },
    )
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

/// Unlocks the root key at `path` with `WARDEN_PASSPHRASE`. An unset passphrase is
/// named as such, not reported as a wrong one.
pub fn unlock_root_file(path: &std::path::Path) -> Result<RootKey> {
    let pass = passphrase();
    match keys::unlock_root(path, &pass) {
        Ok(k) => Ok(k),
        Err(warden_store::error::StoreError::BadPassphrase { .. }) if pass.is_empty() => {
            anyhow::bail!(
                "the root key {} is sealed under a passphrase and WARDEN_PASSPHRASE is not set: export the passphrase given to `warden init`",
                path.display()
            )
        }
        Err(e) => Err(e).context("unlocking the root key"),
    }
}

/// Unlocks the data directory's root key.
pub fn unlock(dir: &DataDir) -> Result<RootKey> {
    // Nothing signs from a directory others could have written keys or policy into.
    warden_store::perms::check_private_dir(&dir.root)?;
    warden_store::perms::check_private_dir(&dir.root.join("keys"))?;
    let key = unlock_root_file(&dir.root_key())?;
    if key.dev {
        eprint(
            "warning: development mode: the root key is sealed under an empty passphrase; do not use this data directory in production",
        );
    }
    Ok(key)
}

/// Opens the ledger of a data directory. On a cluster no process opens the ledger's
/// files for writing itself (the sequencer lease decides who writes).
pub fn open_ledger(dir: &DataDir) -> Result<(Ledger, Config)> {
    let cfg = dir.read_config()?;
    if cfg.backend.is_some() {
        anyhow::bail!(
            "{} is a cluster node (backend in warden.toml): this needs the ledger's own files, which the cluster's sequencer writes",
            dir.root.display()
        );
    }
    let root = unlock(dir)?;
    let ledger = open_unlocked(dir, &cfg, root)?;
    Ok((ledger, cfg))
}

/// How the data directory's ledger is opened: origin, algorithm, rotation, auditors.
pub fn ledger_options(dir: &DataDir, cfg: &Config) -> Result<LedgerOptions> {
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
    Ok(opts)
}

/// Opens the ledger with a root key already in hand.
pub fn open_unlocked(dir: &DataDir, cfg: &Config, root: RootKey) -> Result<Ledger> {
    let opts = ledger_options(dir, cfg)?;
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

/// A file written beside its destination and renamed into place only when complete, so
/// a failure never leaves a partial output. `-` is standard output (written directly).
pub struct Output {
    dest: Option<PathBuf>,
    tmp: Option<tempfile::NamedTempFile>,
}

impl Output {
    /// Refuses to replace an existing `path` unless `force`.
    pub fn create(path: &Path, force: bool, mode: u32) -> Result<Self> {
        if path == Path::new("-") {
            return Ok(Self {
                dest: None,
                tmp: None,
            });
        }
        if path.exists() && !force {
            bail!("{} exists (use --force to replace it)", path.display());
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".warden-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
            .tempfile_in(&parent)
            .with_context(|| format!("creating a file in {}", parent.display()))?;
        Ok(Self {
            dest: Some(path.to_path_buf()),
            tmp: Some(tmp),
        })
    }

    /// Where to write.
    pub fn writer(&mut self) -> Box<dyn std::io::Write + Send + '_> {
        match &mut self.tmp {
            Some(t) => Box::new(std::io::BufWriter::with_capacity(1 << 20, t.as_file_mut())),
            None => Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout(),
            )),
        }
    }

    /// Makes the output durable and moves it into place.
    pub fn finish(self) -> Result<()> {
        if let (Some(tmp), Some(dest)) = (self.tmp, self.dest) {
            tmp.as_file().sync_all()?;
            tmp.persist(&dest)
                .with_context(|| format!("writing {}", dest.display()))?;
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent).and_then(|d| d.sync_all())?;
            }
        }
        Ok(())
    }
}

/// Opens `path` for reading (`-` is standard input).
pub fn input(path: &Path) -> Result<(Box<dyn std::io::Read>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(std::io::stdin().lock()), None));
    }
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata().ok().map(|m| m.len());
    Ok((Box::new(f), len))
}

/// A byte-count progress bar on stderr (hidden when stderr is not a terminal or with
/// `quiet`).
pub fn byte_bar(total: Option<u64>, what: &str, quiet: bool) -> indicatif::ProgressBar {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total.unwrap_or(0))
    };
    let template = if total.is_some() {
        format!("{what} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}")
    } else {
        format!("{what} {{bytes}} {{bytes_per_sec}}")
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    ctrl_c.await.ok();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c.await.ok();
    }
}
