//! Writers started on demand (see ARCHITECTURE.md, "Writers started on demand"): a
//! client that finds no writer for a data directory starts `warden writer --on-demand`
//! and appends through it, so a run of short-lived clients (CLI commands, Python
//! processes) shares one writer and one epoch. Both the CLI and the Python SDK start it
//! through [`start`].

use super::client::writer_running;
use crate::config::{Config, DataDir};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether clients start a writer when none runs: `WARDEN_WRITER_AUTOSTART` (`0`,
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

/// Starts `exe writer --on-demand` for `dir` in the background, in its own process
/// group (a Ctrl-C of the client does not stop it), its working directory `/`, its
/// messages appended to `run/writer.log` (0600).
pub fn start(exe: &Path, dir: &DataDir, cfg: &Config) -> std::io::Result<Child> {
    let root = std::fs::canonicalize(&dir.root)?;
    let run = root.join("run");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(run.join("writer.log"))?;
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
}

/// Waits for the writer `child` to answer on `socket` (or another writer that won the
/// race to start). `false` when the child exited first (it could not open the ledger;
/// the caller reports why) or nothing answered within `limit`.
pub fn wait_started(child: &mut Child, socket: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if writer_running(socket) {
            return true;
        }
        match child.try_wait() {
            Ok(None) if start.elapsed() < limit => {}
            _ => return writer_running(socket),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
