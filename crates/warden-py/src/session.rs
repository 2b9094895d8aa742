//! A session with a data directory's ledger through its writer (started on demand when
//! none runs), as a Python class.

use crate::access;
use crate::errors::{AuditUnavailable, InvalidInput, append_error};
use pyo3::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_core::entry::Event;
use warden_store::config::{Config, DataDir};
use warden_store::error::AppendError;
use warden_store::journal::Journal;
use warden_store::writer::{self, autostart, client::Remote};

/// The client string sent in the protocol's `hello`.
pub(crate) const CLIENT: &str = concat!("warden-python/", env!("CARGO_PKG_VERSION"));

/// How long a writer started on demand may take to answer.
const STARTING: Duration = Duration::from_secs(10);

/// The `warden` executable that starts writers on demand: `warden_bin`, else
/// `WARDEN_BIN`, else the first `warden` on `PATH`.
fn find_warden(explicit: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p);
    }
    if let Some(p) = std::env::var_os("WARDEN_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("warden"))
        .find(|p| p.is_file())
}

/// Connects to the writer of `dir`, starting one on demand when none answers.
pub(crate) fn connect(
    dir: &DataDir,
    acting_as: Option<&str>,
    warden_bin: Option<PathBuf>,
    deadline_ms: u64,
) -> Result<Remote, PyErr> {
    let cfg = match dir.read_config() {
        Ok(c) => c,
        // A process of another operating-system user cannot read the data directory;
        // it reaches the writer through WARDEN_WRITER_SOCKET alone (as the CLI does).
        Err(e) => match std::env::var_os("WARDEN_WRITER_SOCKET").filter(|s| !s.is_empty()) {
            Some(s) => {
                let log = dir.resolve(&Config::default_log());
                return Remote::connect(Path::new(&s), &log, acting_as, CLIENT, deadline_ms)
                    .map_err(append_error);
            }
            None => {
                return Err(InvalidInput::new_err(format!(
                    "{} is not a readable Warden data directory ({e}): run `warden init` first, or set WARDEN_WRITER_SOCKET",
                    dir.root.display()
                )));
            }
        },
    };
    let socket = writer::socket_path(dir, &cfg);
    let log = dir.log(&cfg);
    let connect = || Remote::connect(&socket, &log, acting_as, CLIENT, deadline_ms);
    match connect() {
        Ok(r) => return Ok(r),
        Err(AppendError::Unavailable(_)) => {}
        Err(e) => return Err(append_error(e)),
    }
    if !autostart::enabled(&cfg) {
        return Err(AuditUnavailable::new_err(format!(
            "no writer answers on {} and starting one is turned off (WARDEN_WRITER_AUTOSTART / [writer] autostart): start `warden writer` or `warden serve`",
            socket.display()
        )));
    }
    let Some(exe) = find_warden(warden_bin) else {
        return Err(AuditUnavailable::new_err(format!(
            "no writer answers on {} and no `warden` executable was found to start one: put it on PATH, set WARDEN_BIN, or pass warden_bin=",
            socket.display()
        )));
    };
    let mut child = autostart::start(&exe, dir, &cfg).map_err(|e| {
        AuditUnavailable::new_err(format!("starting {} writer: {e}", exe.display()))
    })?;
    if !autostart::wait_started(&mut child, &socket, STARTING) {
        let why = std::fs::read_to_string(dir.root.join("run/writer.log"))
            .ok()
            .and_then(|l| {
                l.lines()
                    .rev()
                    .find(|x| x.starts_with("error"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "see run/writer.log".to_owned());
        return Err(AuditUnavailable::new_err(format!(
            "the writer for {} did not start: {why}",
            dir.root.display()
        )));
    }
    connect().map_err(append_error)
}

fn parse_event(json: &str) -> PyResult<Event> {
    Event::from_plaintext(json.as_bytes())
        .map_err(|e| InvalidInput::new_err(format!("not an event: {e}")))
}

/// A session with a data directory's ledger, through its writer.
#[pyclass(frozen, module = "warden._native")]
#[derive(Debug)]
pub struct Ledger {
    remote: Remote,
    data_dir: PathBuf,
}

#[pymethods]
impl Ledger {
    /// Opens a session with the writer of `data_dir` (started on demand when none
    /// runs), acting as `acting_as` or the principal bound to this process's
    /// operating-system user.
    #[new]
    #[pyo3(signature = (data_dir, *, acting_as=None, warden_bin=None, deadline_ms=30_000))]
    fn new(
        py: Python<'_>,
        data_dir: PathBuf,
        acting_as: Option<String>,
        warden_bin: Option<PathBuf>,
        deadline_ms: u64,
    ) -> PyResult<Self> {
        let dir = DataDir::new(&data_dir);
        let remote = py.detach(|| connect(&dir, acting_as.as_deref(), warden_bin, deadline_ms))?;
        Ok(Self { remote, data_dir })
    }

    /// The principal this session acts as.
    #[getter]
    fn principal(&self) -> String {
        self.remote.principal().to_owned()
    }

    /// The data directory.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// Records one access (see ARCHITECTURE.md, "Python SDK") and waits until it is
    /// durable; returns `(index, checkpoint_size)`.
    #[pyo3(signature = (user_id, resource, action, result, metadata=None))]
    fn log_access(
        &self,
        py: Python<'_>,
        user_id: &Bound<'_, PyAny>,
        resource: &Bound<'_, PyAny>,
        action: &Bound<'_, PyAny>,
        result: &Bound<'_, PyAny>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u64, u64)> {
        let (kind, ev) = access::event(user_id, resource, action, result, metadata)?;
        let r = py
            .detach(|| self.remote.append(kind, &ev))
            .map_err(append_error)?;
        Ok((r.index, r.size))
    }

    /// Records many accesses (an iterable of dicts with the arguments of
    /// `log_access`): every one is checked before any is sent, all are sent before any
    /// receipt is awaited (they share checkpoints). Returns their indices in order.
    fn log_access_many(&self, py: Python<'_>, events: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
        let evs = access::events(events)?;
        submit_all(py, &self.remote, &evs)
    }

    /// Appends one entry (`event` is its JSON) and waits until it is durable; returns
    /// `(index, checkpoint_size)`.
    fn append(&self, py: Python<'_>, kind: &str, event: &str) -> PyResult<(u64, u64)> {
        let ev = parse_event(event)?;
        let r = py
            .detach(|| self.remote.append(kind, &ev))
            .map_err(append_error)?;
        Ok((r.index, r.size))
    }

    /// Appends many entries of one kind (each a JSON event): all are sent before any
    /// receipt is awaited, so they share checkpoints. Returns their indices in order.
    /// Every event is checked first; a bad one sends none.
    fn append_many(&self, py: Python<'_>, kind: &str, events: Vec<String>) -> PyResult<Vec<u64>> {
        let evs = events
            .iter()
            .map(|e| parse_event(e).map(|ev| (kind, ev)))
            .collect::<PyResult<Vec<_>>>()?;
        submit_all(py, &self.remote, &evs)
    }
}

/// Checks every entry (kind, form, size), then submits them all, then waits for every
/// receipt, without the GIL. A bad entry sends none.
fn submit_all(py: Python<'_>, remote: &Remote, evs: &[(&str, Event)]) -> PyResult<Vec<u64>> {
    py.detach(|| {
        for (kind, ev) in evs {
            warden_store::ledger::check_submission(kind, ev)?;
        }
        let tickets = evs
            .iter()
            .map(|(kind, ev)| remote.submit(kind, ev))
            .collect::<Result<Vec<_>, _>>()?;
        tickets
            .into_iter()
            .map(|t| t.wait().map(|r| r.index))
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(append_error)
}
