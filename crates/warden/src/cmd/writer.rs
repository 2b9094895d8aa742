//! `warden writer`: the data directory's writer for hosts that serve nothing over
//! HTTP. It owns the ledger and appends for every local client (the CLI, Python
//! workers, training jobs) over the socket; `warden serve` does the same alongside the
//! API.

use crate::common::{DataDirArg, eprint, print_json};
use crate::registry::{load_policy, open_with, runtime};
use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use std::os::unix::fs::MetadataExt as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use warden_registry::SecureModelManager;
use warden_registry::admission::OsUsers;
use warden_store::config::{Config, DataDir};
use warden_store::journal::Journal;
use warden_store::ledger::Ledger;
use warden_store::writer::peer::Peer;
use warden_store::writer::server::Listener;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    dir: DataDirArg,
    /// Exit after this many seconds without a connection (default: run until SIGTERM
    /// or Ctrl-C).
    #[arg(long, value_name = "SECS", conflicts_with = "status")]
    idle_exit: Option<u64>,
    /// Started by a command that found no writer (see `[writer] autostart`): hand the
    /// ledger over when `warden serve`, `warden writer`, retention or `auditor add`
    /// asks, leave it to another writer that won the race to start, and exit when the
    /// data directory disappears.
    #[arg(long, conflicts_with = "status")]
    on_demand: bool,
    /// Do not run a writer: stop the one a command started on demand, so the files are
    /// at rest (before a backup or an inspection). `warden serve` and a writer started
    /// by hand are stopped with SIGTERM instead.
    #[arg(long, conflicts_with_all = ["status", "on_demand", "idle_exit"])]
    stop: bool,
    /// Do not run a writer: say whether one answers for this data directory (exit 0) or
    /// not (exit 1). Scripts that start `warden serve &` use it with --wait before
    /// their first command, so that command appends through the service.
    #[arg(long)]
    status: bool,
    /// With --status: wait up to this many seconds for a writer to answer.
    #[arg(long, value_name = "SECS", requires = "status", default_value_t = 0)]
    wait: u64,
    /// With --status: print {"running", "socket", "pid", "user"} as JSON (the pid and
    /// user are the writer's, from the kernel's peer credentials).
    #[arg(long, requires = "status")]
    json: bool,
}

fn status(a: &Args) -> Result<ExitCode> {
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    let socket = warden_store::writer::socket_path(&dir, &cfg);
    let until = std::time::Instant::now() + Duration::from_secs(a.wait);
    loop {
        let peer = std::os::unix::net::UnixStream::connect(&socket)
            .ok()
            .and_then(|s| Peer::of(&s).ok());
        if let Some(p) = peer {
            if a.json {
                print_json(&serde_json::json!({
                    "running": true, "socket": socket, "pid": p.pid, "user": p.user,
                }))?;
            } else {
                println!(
                    "a writer answers on {} (pid {}, user {})",
                    socket.display(),
                    p.pid,
                    p.user
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        if std::time::Instant::now() >= until {
            if a.json {
                print_json(&serde_json::json!({"running": false, "socket": socket}))?;
            } else {
                println!("no writer answers on {}", socket.display());
            }
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts accepting local clients for `ledger`; who may act as whom comes from the
/// registry's bindings of operating-system users (`warden principal bind`). With
/// `detect` (a process that runs the detectors: `warden serve`), what the clients
/// record is fed to them too.
pub fn listen(
    dir: &DataDir,
    cfg: &Config,
    ledger: Arc<Ledger>,
    m: Arc<SecureModelManager>,
    detect: bool,
) -> Result<Listener> {
    let owner = std::fs::metadata(&dir.root)
        .with_context(|| format!("reading {}", dir.root.display()))?
        .uid();
    // What local clients record reaches the service's detectors too.
    let feed = detect.then(|| m.detector_feed());
    let admission = Arc::new(OsUsers::new(m, owner, tokio::runtime::Handle::current()));
    let socket = warden_store::writer::socket_path(dir, cfg);
    let listener = Listener::start(
        ledger,
        admission,
        &cfg.origin,
        &socket,
        cfg.writer.socket_mode,
    )
    .with_context(|| format!("listening on {}", socket.display()))?;
    if let Some(f) = feed {
        listener.observe(f);
    }
    Ok(listener)
}

/// Which directory `path` is (device and inode), `None` when it is gone.
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn stop(a: &Args) -> Result<ExitCode> {
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    let socket = warden_store::writer::socket_path(&dir, &cfg);
    if crate::ondemand::take_over(&socket)? {
        println!("the writer on {} stopped", socket.display());
    } else {
        println!("no writer answers on {}", socket.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: &Args) -> Result<ExitCode> {
    if a.status {
        return status(a);
    }
    if a.stop {
        return stop(a);
    }
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    let (engine, digest) = load_policy(&dir, &cfg)?;
    let ledger = Arc::new(crate::journal::open_owned(&dir, !a.on_demand)?);
    let home = identity(&dir.root);
    runtime()?.block_on(async {
        let journal = Arc::clone(&ledger) as Arc<dyn Journal>;
        let m = Arc::new(open_with(&dir, &cfg, journal, engine, digest).await?);
        // `warden writer` runs no detectors: nothing to feed.
        let w = listen(&dir, &cfg, Arc::clone(&ledger), Arc::clone(&m), false)?;
        drop(ledger);
        if a.on_demand {
            w.allow_yield();
        }
        eprint(&format!(
            "warden: writer listening on {}",
            w.socket().display()
        ));
        let idle = a.idle_exit.map(Duration::from_secs);
        let stop = crate::common::shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    if idle.is_some_and(|i| w.idle_for() >= i) {
                        eprint("warden: writer idle; exiting");
                        break;
                    }
                    if w.yield_requested() {
                        eprint("warden: handing the ledger over; exiting");
                        break;
                    }
                    if a.on_demand && identity(&dir.root) != home {
                        eprint("warden: the data directory is gone; exiting");
                        break;
                    }
                }
            }
        }
        tokio::task::block_in_place(|| w.stop());
        match Arc::try_unwrap(m) {
            Ok(m) => m.close().await?,
            Err(_) => eprint("warning: the manager was still in use at shutdown"),
        }
        eprint("warden: writer stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
