//! Where a command's entries go: the data directory's running writer when there is
//! one (the command then opens nothing and starts no epoch), else the ledger opened in
//! this process.

use crate::common::open_ledger;
use anyhow::{Context, Result, anyhow};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_store::config::{Config, DataDir};
use warden_store::error::{AppendError, StoreError};
use warden_store::journal::Journal;
use warden_store::writer::{self, client::Remote, proto};

/// The client string sent in `hello`.
pub const CLIENT: &str = concat!("warden-cli/", env!("CARGO_PKG_VERSION"));

/// How long a command waits for the writer to confirm an entry
/// (`WARDEN_DEADLINE_MS`, default 30 s).
#[must_use]
pub fn deadline_ms() -> u64 {
    std::env::var("WARDEN_DEADLINE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(proto::DEFAULT_DEADLINE_MS)
        .clamp(1, proto::MAX_DEADLINE_MS)
}

/// How long a command waits for a writer that holds the ledger but has not opened its
/// socket yet (it is starting).
const STARTING: Duration = Duration::from_secs(10);

/// Opens the journal of `dir`, acting as `claimed` (see
/// `warden_registry::admission`) when a writer runs.
pub fn open_journal(dir: &DataDir, claimed: Option<&str>) -> Result<Arc<dyn Journal>> {
    let cfg = match dir.read_config() {
        Ok(c) => c,
        // A process of another OS user cannot read the data directory; it reaches the
        // writer through WARDEN_WRITER_SOCKET alone.
        Err(e) => match std::env::var_os("WARDEN_WRITER_SOCKET").filter(|s| !s.is_empty()) {
            Some(s) => {
                let log = dir.resolve(&Config::default_log());
                return Remote::connect(Path::new(&s), &log, claimed, CLIENT, deadline_ms())
                    .map(|r| Arc::new(r) as Arc<dyn Journal>)
                    .map_err(|r| anyhow!(r))
                    .context("the writer at WARDEN_WRITER_SOCKET");
            }
            None => return Err(e.into()),
        },
    };
    if let Some(node) = crate::cluster::join(dir, &cfg)? {
        return Ok(node);
    }
    let socket = writer::socket_path(dir, &cfg);
    let connect = || Remote::connect(&socket, &dir.log(&cfg), claimed, CLIENT, deadline_ms());
    if socket.exists() {
        match connect() {
            Ok(r) => return Ok(Arc::new(r)),
            // A socket left by a writer that is gone: open the ledger here.
            Err(AppendError::Unavailable(_)) => {}
            Err(e) => return Err(anyhow!(e)).context("the data directory's writer refused"),
        }
    }
    // No writer: start one and append through it. When it cannot start (it reports why
    // in run/writer.log), the ledger is opened here, which reports the same cause.
    if crate::ondemand::enabled(&cfg)
        && let Ok(mut child) = crate::ondemand::start(dir, &cfg)
        && crate::ondemand::wait_started(&mut child, &socket, STARTING)
    {
        match connect() {
            Ok(r) => return Ok(Arc::new(r)),
            Err(AppendError::Unavailable(_)) => {}
            Err(e) => return Err(anyhow!(e)).context("the data directory's writer refused"),
        }
    }
    match open_ledger(dir) {
        Ok((l, _)) => Ok(Arc::new(l)),
        Err(e) if is_locked(&e) => {
            // Another process holds the ledger: a writer that is starting (its socket
            // comes next) or stopping.
            let start = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(50));
                match connect() {
                    Ok(r) => return Ok(Arc::new(r)),
                    Err(AppendError::Unavailable(_)) if start.elapsed() < STARTING => {}
                    Err(AppendError::Unavailable(m)) => {
                        return Err(e.context(format!(
                            "another process holds the ledger and its writer socket does not answer ({m})"
                        )));
                    }
                    Err(r) => {
                        return Err(anyhow!(r)).context("the data directory's writer refused");
                    }
                }
            }
        }
        Err(e) => Err(e),
    }
}

fn is_locked(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<StoreError>(),
            Some(StoreError::Locked { .. })
        )
    })
}

/// The ledger of a data directory, held open by a command that records what it did.
/// Opened before the work, so a ledger that cannot record stops the command before it
/// starts.
pub struct Recorder {
    journal: Arc<dyn Journal>,
    user: String,
}

impl Recorder {
    /// `user` defaults to the operating-system user.
    pub fn open(dir: &DataDir, user: Option<&str>) -> Result<Self> {
        let journal = open_journal(dir, user).context("recording in the ledger")?;
        let user = user
            .map(str::to_owned)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into());
        Ok(Self { journal, user })
    }

    /// Appends one entry and waits until it is durable; returns its index.
    pub fn record(&self, kind: &str, action: &str, details: serde_json::Value) -> Result<u64> {
        let ev = warden_core::entry::Event {
            user: Some(self.user.clone()),
            action: Some(action.into()),
            decision: Some("allow".into()),
            details: Some(details),
            ..Default::default()
        };
        Ok(self
            .journal
            .append(kind, &ev)
            .context("recording in the ledger")?
            .index)
    }

    pub fn close(self) {
        drop(self.journal);
    }
}

/// Opens the ledger of `dir`, appends one entry, closes it (see [`Recorder`]).
pub fn record(
    dir: &DataDir,
    kind: &str,
    user: Option<&str>,
    action: &str,
    details: serde_json::Value,
) -> Result<u64> {
    let r = Recorder::open(dir, user)?;
    let index = r.record(kind, action, details);
    r.close();
    index
}

/// Opens the ledger for a process that will own it (`serve`, `writer`). A command that
/// holds it briefly is waited for (up to 10 s); a writer started on demand is asked to
/// hand it over unless `take_over` is false (a writer started on demand leaves the
/// ledger to the one that won the race to start); any other running writer is named.
pub fn open_owned(dir: &DataDir, take_over: bool) -> Result<warden_store::ledger::Ledger> {
    let mut start = Instant::now();
    loop {
        match open_ledger(dir) {
            Ok((l, _)) => return Ok(l),
            Err(e) if is_locked(&e) => {
                let cfg = dir.read_config()?;
                let socket = writer::socket_path(dir, &cfg);
                // A writer started on demand hands the ledger over; any other is named.
                if writer::client::writer_running(&socket) {
                    let yielded = if take_over {
                        crate::ondemand::take_over(&socket)
                    } else {
                        Err(anyhow!("it answers on {}", socket.display()))
                    };
                    match yielded {
                        Ok(true) => start = Instant::now(),
                        Ok(false) => {}
                        Err(y) => {
                            return Err(e.context(format!(
                                "a writer (warden serve or warden writer) already runs for this data directory: {y:#}"
                            )));
                        }
                    }
                }
                if start.elapsed() >= STARTING {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refuses, with what to do instead, when a writer runs but this command needs the
/// ledger itself.
/// A writer started on demand is asked to hand the ledger over first.
pub fn needs_own_ledger(dir: &DataDir, cfg: &Config, what: &str) -> Result<()> {
    let socket = writer::socket_path(dir, cfg);
    if writer::client::writer_running(&socket) {
        crate::ondemand::take_over(&socket).with_context(|| {
            format!(
                "{what} runs in the process that owns the ledger, and a writer is running for {} (stop it, or let `warden serve`'s schedule do it)",
                dir.root.display()
            )
        })?;
    }
    Ok(())
}
