//! The writer side of the protocol: a listener on the data directory's socket, two
//! threads per connection (one reads and queues, one waits for receipts and replies in
//! request order), group commit across every connection through the one sequencer.
//!
//! Nothing a client does blocks another: a garbage or oversized frame closes that
//! connection; a half frame times out after [`FRAME_TIMEOUT`]; a client that stops
//! reading is cut off after [`WRITE_TIMEOUT`]; a client with [`proto::MAX_IN_FLIGHT`]
//! unanswered requests is not read from until replies drain.

use super::peer::Peer;
use super::proto::{self, Code, Request, Response};
use crate::error::AppendError;
use crate::journal::Observer;
use crate::ledger::Ledger;
use crate::ticket::{Ticket, lock};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use warden_core::entry::Event;

/// Time to receive the rest of a frame once its first byte arrived.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a reply may wait for a client to read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections at once; more are answered `busy` and closed.
pub const MAX_CONNECTIONS: usize = 512;

/// Who a session acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The principal entries name when they name none.
    pub principal: String,
    /// The caller is the data directory's owner or root: its entries may name any
    /// principal (the registry, acting for the people it serves).
    pub admin: bool,
}

/// Decides who a caller may act as. Implemented over the registry's bindings of
/// operating-system users to principals.
pub trait Admission: Send + Sync {
    /// The identity of `peer` when it names `claimed` (or nothing); `Err` with the reason
    /// when it may not act as that principal.
    fn admit(&self, peer: &Peer, claimed: Option<&str>) -> Result<Identity, String>;
}

/// The running writer's listener.
pub struct Listener {
    stop: Arc<AtomicBool>,
    socket: PathBuf,
    accept: Option<JoinHandle<()>>,
    state: Arc<State>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

struct State {
    ledger: Arc<Ledger>,
    admission: Arc<dyn Admission>,
    origin: String,
    conns: Mutex<Vec<(UnixStream, JoinHandle<()>)>>,
    open: AtomicU64,
    last_active: Mutex<Instant>,
    /// This writer hands the ledger over on a `yield` request (a writer started on
    /// demand); `yielded` is set when one was honoured.
    yields: AtomicBool,
    yielded: AtomicBool,
    /// Fed each entry a client appended, once durable (the service's detectors).
    observer: std::sync::OnceLock<Observer>,
}

/// An appended entry kept to hand to the observer with its index.
struct Seen {
    observer: Observer,
    kind: String,
    event: Event,
}

impl Listener {
    /// Binds `socket` (its directory is created 0700 when missing; the socket is made
    /// `mode`) and starts
    /// accepting. A leftover socket file from a writer that died is replaced; the caller
    /// holds the ledger, so no other writer is alive.
    pub fn start(
        ledger: Arc<Ledger>,
        admission: Arc<dyn Admission>,
        origin: &str,
        socket: &Path,
        mode: u32,
    ) -> std::io::Result<Self> {
        if let Some(dir) = socket.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            ledger,
            admission,
            origin: origin.to_owned(),
            conns: Mutex::new(Vec::new()),
            open: AtomicU64::new(0),
            last_active: Mutex::new(Instant::now()),
            yields: AtomicBool::new(false),
            yielded: AtomicBool::new(false),
            observer: std::sync::OnceLock::new(),
        });
        let (s2, st2) = (Arc::clone(&stop), Arc::clone(&state));
        let accept = std::thread::Builder::new()
            .name("warden-writer-accept".into())
            .spawn(move || accept_loop(&listener, &s2, &st2))?;
        Ok(Self {
            stop,
            socket: socket.to_path_buf(),
            accept: Some(accept),
            state,
        })
    }

    /// Hands `f` every entry a client appends, once it is durable, so that what local
    /// clients (the CLI, Python workers) record reaches the same detectors as what the
    /// service records itself. Set once; a second call changes nothing.
    pub fn observe(&self, f: Observer) {
        let _ = self.state.observer.set(f);
    }

    /// The socket path.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connections open now.
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.state.open.load(Ordering::Relaxed)
    }

    /// How long since a connection last closed or sent a request (zero while any is
    /// open).
    #[must_use]
    pub fn idle_for(&self) -> Duration {
        if self.connections() > 0 {
            return Duration::ZERO;
        }
        lock(&self.state.last_active).elapsed()
    }

    /// Honours `yield` requests from this process's user or root from now on (a writer
    /// started on demand, which `warden serve` and retention may take the ledger from).
    pub fn allow_yield(&self) {
        self.state.yields.store(true, Ordering::SeqCst);
    }

    /// A `yield` request was honoured: the owner should stop this listener and close
    /// the ledger.
    #[must_use]
    pub fn yield_requested(&self) -> bool {
        self.state.yielded.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes every connection (replies already due are sent first),
    /// and removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let conns = std::mem::take(&mut *lock(&self.state.conns));
        for (s, _) in &conns {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
        for (_, t) in conns {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        }
    }
}

/// How often the accept loop looks at the stop flag while no client connects (the
/// socket file may be gone, so stopping cannot rely on connecting to it).
const ACCEPT_TICK: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 200_000_000,
};

fn accept_loop(listener: &UnixListener, stop: &AtomicBool, state: &Arc<State>) {
    use rustix::event::{PollFd, PollFlags, poll};
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        match poll(&mut fds, Some(&ACCEPT_TICK)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        let mut conns = lock(&state.conns);
        conns.retain(|(_, t)| !t.is_finished());
        if conns.len() >= MAX_CONNECTIONS {
            drop(conns);
            let mut s = stream;
            let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
            let _ = send(
                &mut s,
                &Response::error(Code::Busy, "too many connections", None),
            );
            continue;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let st = Arc::clone(state);
        state.open.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("warden-writer-conn".into())
            .spawn(move || {
                // A probe that sends nothing (`warden writer --status`) is not activity.
                if connection(stream, &st) {
                    *lock(&st.last_active) = Instant::now();
                }
                st.open.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(t) => conns.push((handle, t)),
            Err(_) => {
                state.open.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// What the reading side hands the replying side, in request order.
enum Reply {
    Now(Response, bool),
    Wait([u8; warden_core::entry::RID_LEN], Ticket, Option<Box<Seen>>),
}

/// Serves one connection; whether it sent anything.
fn connection(stream: UnixStream, state: &Arc<State>) -> bool {
    let Ok(out) = stream.try_clone() else {
        return false;
    };
    let (tx, rx) = sync_channel::<Reply>(proto::MAX_IN_FLIGHT);
    let responder = std::thread::Builder::new()
        .name("warden-writer-reply".into())
        .spawn(move || respond(out, &rx));
    let Ok(responder) = responder else {
        return false;
    };
    let active = read_requests(&stream, state, &tx);
    drop(tx);
    let _ = responder.join();
    active
}

/// Reads and queues one connection's requests; whether it sent any.
fn read_requests(stream: &UnixStream, state: &State, tx: &SyncSender<Reply>) -> bool {
    let Ok(peer) = Peer::of(stream) else {
        return false;
    };
    let mut active = false;
    let mut session: Option<(Identity, String)> = None;
    let mut buf = Vec::new();
    let mut reader = Frames::new(stream);
    loop {
        let frame = reader.next(&mut buf);
        let req = match frame {
            Ok(None) => return active,
            Err(e) => {
                if e.get_ref().is_some_and(|i| i.is::<proto::FrameTooLarge>()) {
                    let r = Response::error(Code::TooLarge, e.to_string(), None);
                    let _ = tx.send(Reply::Now(r, true));
                }
                return true;
            }
            Ok(Some(())) => {
                active = true;
                proto::decode_request(&buf)
            }
        };
        let reply = match req {
            Err(rej) => {
                let close = !matches!(rej.code, Code::Invalid);
                Reply::Now(
                    Response::error(rej.code, rej.message, rej.id.as_ref()),
                    close,
                )
            }
            Ok(Request::Yield) => yield_to(state, &peer),
            Ok(Request::Hello { acting_as, .. }) => {
                match state.admission.admit(&peer, acting_as.as_deref()) {
                    Ok(id) => {
                        let via = format!(
                            "os-user={}{}",
                            peer.user,
                            if id.admin { " admin" } else { "" }
                        );
                        let r = Response {
                            v: proto::VERSION,
                            ok: true,
                            principal: Some(id.principal.clone()),
                            via: Some(via.clone()),
                            origin: Some(state.origin.clone()),
                            max_frame: Some(proto::MAX_FRAME),
                            max_in_flight: Some(proto::MAX_IN_FLIGHT),
                            ..Response::default()
                        };
                        session = Some((id, via));
                        Reply::Now(r, false)
                    }
                    Err(why) => {
                        let msg = refuse(state, &peer, acting_as.as_deref(), &why);
                        Reply::Now(Response::error(Code::Refused, msg, None), true)
                    }
                }
            }
            Ok(Request::Append {
                id,
                kind,
                mut event,
                ..
            }) => match &session {
                None => Reply::Now(
                    Response::error(Code::Order, "send hello first", Some(&id)),
                    true,
                ),
                Some((who, via)) => {
                    let named = event.user.get_or_insert_with(|| who.principal.clone());
                    if !who.admin && *named != who.principal {
                        let claimed = named.clone();
                        let msg = refuse(
                            state,
                            &peer,
                            Some(&claimed),
                            "entries of this session name its own principal only",
                        );
                        Reply::Now(Response::error(Code::Refused, msg, Some(&id)), false)
                    } else {
                        event.via = Some(via.clone());
                        match state.ledger.submit_request(&kind, &event, id) {
                            Ok(t) => {
                                let seen = state.observer.get().cloned().map(|observer| {
                                    Box::new(Seen {
                                        observer,
                                        kind: kind.clone(),
                                        event: *event,
                                    })
                                });
                                Reply::Wait(id, t, seen)
                            }
                            Err(e) => Reply::Now(append_error(&e, &id), false),
                        }
                    }
                }
            },
        };
        *lock(&state.last_active) = Instant::now();
        let close = matches!(reply, Reply::Now(_, true));
        if tx.send(reply).is_err() || close {
            return true;
        }
    }
}

/// Answers a `yield` request; the connection closes after the reply.
fn yield_to(state: &State, peer: &Peer) -> Reply {
    let own = rustix::process::geteuid().as_raw();
    let why = if !state.yields.load(Ordering::SeqCst) {
        "this writer does not hand the ledger over (it is `warden serve` or a `warden writer` started by hand): stop it first"
    } else if peer.uid != own && peer.uid != 0 {
        "only the writer's own operating-system user or root may take the ledger over"
    } else {
        state.yielded.store(true, Ordering::SeqCst);
        let r = Response {
            v: proto::VERSION,
            ok: true,
            ..Response::default()
        };
        return Reply::Now(r, true);
    };
    let ev = Event {
        user: Some(peer.user.clone()),
        action: Some("writer.yield".into()),
        decision: Some("deny".into()),
        reason: Some(why.to_owned()),
        details: Some(serde_json::json!({"uid": peer.uid, "pid": peer.pid})),
        via: Some(format!("os-user={}", peer.user)),
        ..Event::default()
    };
    let msg = match state
        .ledger
        .submit("auth.failure", &ev)
        .and_then(Ticket::wait)
    {
        Ok(r) => format!("{why} (recorded as entry {})", r.index),
        Err(e) => format!("{why} (and recording the refusal failed: {e})"),
    };
    Reply::Now(Response::error(Code::Refused, msg, None), true)
}

/// Records a refused identity claim (the refusal is itself an entry) and returns the
/// message for the client.
fn refuse(state: &State, peer: &Peer, claimed: Option<&str>, why: &str) -> String {
    let ev = Event {
        user: Some(peer.user.clone()),
        action: Some("writer.identity".into()),
        decision: Some("deny".into()),
        reason: Some(why.to_owned()),
        details: Some(serde_json::json!({
            "claimed": claimed, "os_user": peer.user, "uid": peer.uid, "pid": peer.pid,
        })),
        via: Some(format!("os-user={}", peer.user)),
        ..Event::default()
    };
    let recorded = state
        .ledger
        .submit("auth.failure", &ev)
        .and_then(Ticket::wait);
    let who = claimed.map_or_else(|| "a principal".to_owned(), |c| format!("principal {c:?}"));
    match recorded {
        Ok(r) => format!(
            "operating-system user {} may not act as {who}: {why} (recorded as entry {})",
            peer.user, r.index
        ),
        Err(e) => format!(
            "operating-system user {} may not act as {who}: {why} (and recording the refusal failed: {e})",
            peer.user
        ),
    }
}

fn append_error(e: &AppendError, id: &[u8; warden_core::entry::RID_LEN]) -> Response {
    let code = match e {
        AppendError::Invalid(_) => Code::Invalid,
        _ => Code::Unavailable,
    };
    Response::error(code, e.to_string(), Some(id))
}

fn respond(mut out: UnixStream, rx: &Receiver<Reply>) {
    let _ = out.set_write_timeout(Some(WRITE_TIMEOUT));
    // Replies are gathered and written together while more are ready, so a busy
    // connection costs one write per group commit rather than one per entry.
    let mut pending = Vec::with_capacity(64 * 1024);
    // The checkpoint size last sent in full on this connection: a receipt under the
    // same checkpoint omits the note (several kilobytes), which the client keeps.
    let mut sent_cp: Option<u64> = None;
    let mut next = rx.recv().ok();
    while let Some(reply) = next.take() {
        let blocks = matches!(&reply, Reply::Wait(_, t, _) if !t.is_ready());
        if blocks && !pending.is_empty() && out.write_all(&pending).is_err() {
            break;
        }
        if blocks {
            pending.clear();
        }
        let (mut r, close) = resolve(reply);
        if r.ok && r.checkpoint.is_some() {
            if sent_cp.is_some() && sent_cp == r.size {
                r.checkpoint = None;
            } else {
                sent_cp = r.size;
            }
        }
        if encode(&r, &mut pending).is_err() {
            break;
        }
        if close {
            let _ = out.write_all(&pending);
            break;
        }
        next = match rx.try_recv() {
            Ok(x) if pending.len() < 256 * 1024 => Some(x),
            Ok(x) => {
                if out.write_all(&pending).is_err() {
                    break;
                }
                pending.clear();
                Some(x)
            }
            Err(TryRecvError::Empty) => {
                if out.write_all(&pending).is_err() {
                    break;
                }
                pending.clear();
                rx.recv().ok()
            }
            Err(TryRecvError::Disconnected) => {
                let _ = out.write_all(&pending);
                None
            }
        };
    }
    // The client stopped reading, or the session ends: stop reading from it too.
    let _ = out.shutdown(std::net::Shutdown::Both);
}

/// The response to send for `reply`, waiting for its receipt if needed, and whether
/// the connection closes after it.
fn resolve(reply: Reply) -> (Response, bool) {
    match reply {
        Reply::Now(r, close) => (r, close),
        Reply::Wait(id, t, seen) => match t.wait() {
            Ok(rc) => {
                if let Some(s) = seen {
                    (s.observer)(&s.kind, &s.event, rc.index);
                }
                (
                    Response {
                        v: proto::VERSION,
                        ok: true,
                        id: Some(proto::format_id(&id)),
                        index: Some(rc.index),
                        size: Some(rc.size),
                        checkpoint: Some(rc.checkpoint.to_string()),
                        ..Response::default()
                    },
                    false,
                )
            }
            Err(e) => (append_error(&e, &id), false),
        },
    }
}

fn encode(r: &Response, out: &mut Vec<u8>) -> std::io::Result<()> {
    let body = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    proto::frame(&body, out);
    Ok(())
}

fn send(out: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let body = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    let mut f = Vec::with_capacity(body.len() + 4);
    proto::frame(&body, &mut f);
    out.write_all(&f)
}

/// Reads frames through a buffer (one read call serves many frames), with no time
/// limit between frames and [`FRAME_TIMEOUT`] within one: a client may wait as long as
/// it likes before a frame's first byte, then must send the rest promptly.
struct Frames<'a> {
    s: &'a UnixStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    timeout: Option<Duration>,
}

impl<'a> Frames<'a> {
    fn new(s: &'a UnixStream) -> Self {
        Self {
            s,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            timeout: Some(Duration::ZERO),
        }
    }

    /// The next frame's body into `out`; `Ok(None)` at a clean end of stream.
    fn next(&mut self, out: &mut Vec<u8>) -> std::io::Result<Option<()>> {
        loop {
            let avail = self.buf.get(self.start..self.end).unwrap_or_default();
            let mut need = 4;
            if let Some(len) = avail.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                let n = u32::from_be_bytes(len) as usize;
                if n == 0 || n > proto::MAX_FRAME {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        proto::FrameTooLarge(n),
                    ));
                }
                if let Some(body) = avail.get(4..4 + n) {
                    out.clear();
                    out.extend_from_slice(body);
                    self.start += 4 + n;
                    return Ok(Some(()));
                }
                need = 4 + n;
            }
            let have = avail.len();
            // Make room: move what is left to the front, grow for a large frame.
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = have;
            if self.buf.len() < need {
                self.buf.resize(need, 0);
            }
            let limit = (have > 0).then_some(FRAME_TIMEOUT);
            if self.timeout != limit {
                self.s.set_read_timeout(limit)?;
                self.timeout = limit;
            }
            let room = self.buf.get_mut(self.end..).unwrap_or_default();
            let n = loop {
                match (&*self.s).read(room) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            if n == 0 {
                return if have == 0 {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.end += n;
        }
    }
}
