//! Writers started on demand. A command that finds no writer for its data directory
//! starts `warden writer --on-demand` and appends through it, so a run of short-lived
//! commands shares one writer and one epoch instead of opening the ledger (and starting
//! an epoch) each. The writer exits after `[writer] idle_exit_secs` without a client,
//! when its data directory disappears, or when a process that must own the ledger
//! (`warden serve`, `warden writer`, retention, `auditor add`) asks it to yield.

use anyhow::{Context, Result, anyhow};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use warden_store::config::{Config, DataDir};
use warden_store::error::AppendError;
use warden_store::writer::client::{request_yield, writer_running};

pub use warden_store::writer::autostart::{enabled, wait_started};

/// Starts a writer for `dir` (this executable) in the background.
pub fn start(dir: &DataDir, cfg: &Config) -> Result<Child> {
    let exe = std::env::current_exe().context("finding the warden executable")?;
    warden_store::writer::autostart::start(&exe, dir, cfg)
        .with_context(|| format!("starting a writer for {}", dir.root.display()))
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
