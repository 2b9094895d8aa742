//! Writers started on demand. A command that finds no writer for its data directory
//! starts `warden writer --on-demand` and appends through it, so a run of short-lived
//! commands shares one writer and one epoch instead of opening the ledger (and starting
//! an epoch) each. The writer exits after `[writer] idle_exit_secs` without a client,
//! when its data directory disappears, or when a process that must own the ledger
//! (`warden serve`, `warden writer`, retention, `auditor add`) asks it to yield.

use anyhow::{Context, Result, anyhow};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warden_store::config::{Config, DataDir};
use warden_store::error::AppendError;
use warden_store::writer::client::{request_yield, writer_running};

/// Whether commands start a writer when none runs: `WARDEN_WRITER_AUTOSTART` (`0`,
/// `false`, `no`, `off` disable; anything else enables) over `[writer] autostart`.
#[must_use]
pub fn enabled(cfg: &Config) -> bool {
    match std::env::var("WARDEN_WRITER_AUTOSTART") {
        Ok(v) if !v.is_empty() => !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        ),
        _ => cfg.writer.autostart,
    }
}

/// Starts a writer for `dir` in the background, detached from this command's process
/// group (Ctrl-C of the command does not stop it). Its messages go to `run/writer.log`.
pub fn start(dir: &DataDir, cfg: &Config) -> Result<Child> {
    let root = std::fs::canonicalize(&dir.root)
        .with_context(|| format!("reading {}", dir.root.display()))?;
    let run = root.join("run");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run)
        .with_context(|| format!("creating {}", run.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(run.join("writer.log"))
        .with_context(|| format!("opening {}", run.join("writer.log").display()))?;
    let exe = std::env::current_exe().context("finding the warden executable")?;
    Command::new(exe)
        .arg("writer")
        .arg("--data-dir")
        .arg(&root)
        .arg("--on-demand")
        .arg("--idle-exit")
        .arg(cfg.writer.idle_exit_secs.max(1).to_string())
        .env_remove("WARDEN_DATA_DIR")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting a writer for the data directory")
}

/// Waits for the writer `child` started to answer on `socket` (or another writer that
/// won the race to start). `false` when the child exited first (it could not open the
/// ledger: the caller opens it itself and reports why) or nothing answered in `limit`.
pub fn wait_started(child: &mut Child, socket: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if writer_running(socket) {
            return true;
        }
        match child.try_wait() {
            Ok(None) if start.elapsed() < limit => {}
            // Exited, or still not answering: let the caller take the ordinary path.
            _ => return writer_running(socket),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks a writer started on demand to hand the ledger over, and waits until its socket
/// stops answering. `Ok(false)` when no writer answers; an error when one answers and
/// does not yield (`warden serve`, or a writer started by hand).
pub fn take_over(socket: &Path) -> Result<bool> {
    match request_yield(socket, Duration::from_secs(10)) {
        Err(AppendError::Unavailable(_)) => return Ok(false),
        Err(e) => return Err(anyhow!(e)),
        Ok(()) => {}
    }
    let start = Instant::now();
    while writer_running(socket) {
        if start.elapsed() > Duration::from_secs(30) {
            anyhow::bail!(
                "the writer on {} agreed to stop but still answers after 30 s",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}
