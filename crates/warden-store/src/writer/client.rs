//! The client side of the writer protocol: a [`Journal`] whose entries a running writer
//! appends. Requests are pipelined (up to [`proto::MAX_IN_FLIGHT`] unanswered); one
//! thread reads replies and completes tickets. When the connection drops, the client
//! reconnects and resends every unanswered request with its request id, so an entry
//! the old writer made durable is answered from the ledger rather than written again.
//! A request not answered within its deadline fails with [`AppendError::Deadline`].
//! Requests are written by a flushing thread, so many submitted together leave in one
//! write.

use super::proto::{self, Code, Request, Response};
use crate::error::AppendError;
use crate::journal::Journal;
use crate::layout::DurableState;
use crate::ledger::check_submission;
use crate::requests::RequestId;
use crate::ticket::{Outcome, Slot, Ticket, lock};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use warden_core::entry::{Event, RID_LEN};

/// How often the reply thread checks deadlines while waiting.
const TICK: Duration = Duration::from_millis(100);

/// A session with a data directory's writer.
pub struct Remote {
    log: PathBuf,
    deadline_ms: u64,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
    /// Request ids: this session's random prefix, then a counter.
    session: [u8; 8],
    counter: std::sync::atomic::AtomicU64,
    principal: String,
    via: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("log", &self.log)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

struct Shared {
    socket: PathBuf,
    claimed: Option<String>,
    client: String,
    state: Mutex<State>,
    space: Condvar,
    /// Signalled when `State::out` has bytes to write (or the session closes).
    ready: Condvar,
}

#[derive(Default)]
struct State {
    /// The stream requests are written to; `None` while reconnecting.
    stream: Option<Arc<UnixStream>>,
    /// Frames waiting for the flushing thread.
    out: Vec<u8>,
    /// The flushing thread is waiting for frames (only then is it woken).
    idle: bool,
    /// Submitters waiting for room under the in-flight limit.
    space_waiters: usize,
    pending: HashMap<RequestId, Waiting>,
    order: VecDeque<RequestId>,
    /// No request in `pending` has a deadline before this (it may be earlier than the
    /// true minimum after replies; `None` only when nothing is pending).
    earliest: Option<Instant>,
    closed: bool,
}

struct Waiting {
    frame: Vec<u8>,
    slot: Arc<Slot>,
    deadline: Instant,
    ms: u64,
}

/// Whether `socket` has a writer listening (a connection is accepted).
#[must_use]
pub fn writer_running(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// Connects to `socket`, sends `req` and reads one reply, each step within `limit`;
/// the stream (for what follows) and the reply when it is a success.
fn exchange(
    socket: &Path,
    req: &Request,
    limit: Duration,
) -> Result<(UnixStream, Response), AppendError> {
    let unavailable =
        |e: std::io::Error| AppendError::Unavailable(format!("{}: {e}", socket.display()));
    let mut s = UnixStream::connect(socket).map_err(unavailable)?;
    s.set_read_timeout(Some(limit)).map_err(unavailable)?;
    s.set_write_timeout(Some(limit)).map_err(unavailable)?;
    let body = proto::encode_request(req).map_err(|e| AppendError::Invalid(e.to_string()))?;
    let mut f = Vec::new();
    proto::frame(&body, &mut f);
    s.write_all(&f).map_err(unavailable)?;
    let mut buf = Vec::new();
    match proto::read_frame(&mut s, &mut buf) {
        Ok(Some(())) => {}
        Ok(None) => return Err(unavailable(std::io::ErrorKind::UnexpectedEof.into())),
        Err(e) => return Err(unavailable(e)),
    }
    let r: Response = serde_json::from_slice(&buf)
        .map_err(|e| AppendError::Unavailable(format!("bad reply from the writer: {e}")))?;
    if r.ok {
        Ok((s, r))
    } else {
        Err(error_of(&r, 0))
    }
}

/// Asks the writer at `socket` to hand the ledger over (see [`Request::Yield`]).
/// `Ok` when it agreed (it then stops; wait for the ledger's lock);
/// [`AppendError::Refused`] when it does not yield; [`AppendError::Unavailable`] when
/// nothing answers.
pub fn request_yield(socket: &Path, limit: Duration) -> Result<(), AppendError> {
    exchange(socket, &Request::Yield, limit).map(|_| ())
}

impl Remote {
    /// Connects to the writer at `socket` and opens a session acting as `claimed` (the
    /// principal bound to this process's operating-system user when `None`). `log` is
    /// the entries file, which readers read directly. Requests time out after
    /// `deadline_ms`.
    pub fn connect(
        socket: &Path,
        log: &Path,
        claimed: Option<&str>,
        client: &str,
        deadline_ms: u64,
    ) -> Result<Self, AppendError> {
        let deadline_ms = deadline_ms.clamp(1, proto::MAX_DEADLINE_MS);
        let shared = Arc::new(Shared {
            socket: socket.to_path_buf(),
            claimed: claimed.map(str::to_owned),
            client: client.to_owned(),
            state: Mutex::new(State::default()),
            space: Condvar::new(),
            ready: Condvar::new(),
        });
        let (stream, hello) = shared.hello(Duration::from_millis(deadline_ms))?;
        let read = stream
            .try_clone()
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        lock(&shared.state).stream = Some(Arc::new(stream));
        let s2 = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("warden-writer-client".into())
            .spawn(move || replies(&s2, read))
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        let s3 = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("warden-writer-flush".into())
            .spawn(move || flush(&s3))
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        // From the kernel directly: the prefix only has to be unique, and seeding the
        // library's generator (jitter entropy) cost a client process about 40 ms of CPU.
        let mut session = [0u8; 8];
        let filled = rustix::rand::getrandom(&mut session, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| {
            AppendError::Unavailable(format!("no randomness for request ids: {e}"))
        })?;
        if filled != session.len() {
            return Err(AppendError::Unavailable(
                "short read of randomness for request ids".into(),
            ));
        }
        Ok(Self {
            log: log.to_path_buf(),
            deadline_ms,
            shared,
            reader: Some(reader),
            flusher: Some(flusher),
            session,
            counter: std::sync::atomic::AtomicU64::new(0),
            principal: hello.principal.unwrap_or_default(),
            via: hello.via.unwrap_or_default(),
        })
    }

    /// The principal the writer accepted for this session.
    #[must_use]
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// How the writer established it (`os-user=…`).
    #[must_use]
    pub fn via(&self) -> &str {
        &self.via
    }
}

impl Shared {
    /// Connects and says hello; the stream and the writer's answer.
    fn hello(&self, limit: Duration) -> Result<(UnixStream, Response), AppendError> {
        let hello = Request::Hello {
            acting_as: self.claimed.clone(),
            client: Some(self.client.clone()),
        };
        let (s, r) = exchange(&self.socket, &hello, limit)?;
        let unavailable =
            |e: std::io::Error| AppendError::Unavailable(format!("{}: {e}", self.socket.display()));
        s.set_read_timeout(Some(TICK)).map_err(unavailable)?;
        s.set_write_timeout(Some(limit)).map_err(unavailable)?;
        Ok((s, r))
    }

    /// Fails every request whose deadline passed.
    /// Scans only when the earliest deadline known may have passed: called after every
    /// read, a scan of every unanswered request each time cost more than the replies.
    fn expire(&self, now: Instant) {
        let mut st = lock(&self.state);
        if st.earliest.is_none_or(|e| e > now) {
            return;
        }
        let State {
            pending,
            order,
            earliest,
            ..
        } = &mut *st;
        *earliest = None;
        order.retain(|id| match pending.get(id) {
            Some(w) if w.deadline <= now => {
                if let Some(w) = pending.remove(id) {
                    w.slot.complete(Err(AppendError::Deadline { ms: w.ms }));
                }
                false
            }
            Some(w) => {
                *earliest = Some(earliest.map_or(w.deadline, |e| e.min(w.deadline)));
                true
            }
            None => false,
        });
        drop(st);
        self.space.notify_all();
    }
}

fn error_of(r: &Response, ms: u64) -> AppendError {
    let m = r.message.clone().unwrap_or_default();
    match r.code {
        Some(Code::Refused) => AppendError::Refused(m),
        Some(Code::Invalid) => AppendError::Invalid(m),
        Some(Code::Deadline) => AppendError::Deadline { ms },
        _ => AppendError::Unavailable(m),
    }
}

/// The reply thread: completes tickets as replies arrive, expires overdue requests,
/// and reconnects (resending what is unanswered) when the connection drops.
fn replies(shared: &Shared, mut stream: UnixStream) {
    let mut buf: Vec<u8> = Vec::new();
    // The last checkpoint note received on this connection (later receipts under the
    // same checkpoint omit it).
    let mut note: Option<(u64, Arc<str>)> = None;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let lost = match stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                !take_replies(shared, &mut buf, &mut note)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                false
            }
            Err(_) => true,
        };
        shared.expire(Instant::now());
        if lock(&shared.state).closed {
            return;
        }
        if lost {
            buf.clear();
            note = None;
            match reconnect(shared) {
                Some(s) => stream = s,
                None => return,
            }
        }
    }
}

/// Completes the tickets of every whole reply in `buf`; false when the writer sent
/// something that is not a reply (the connection is then dropped).
fn take_replies(shared: &Shared, buf: &mut Vec<u8>, note: &mut Option<(u64, Arc<str>)>) -> bool {
    let mut used = 0;
    loop {
        let rest = buf.get(used..).unwrap_or_default();
        let Some(len) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
            break;
        };
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > proto::MAX_FRAME {
            return false;
        }
        let Some(body) = rest.get(4..4 + n) else {
            break;
        };
        let Ok(r) = serde_json::from_slice::<Response>(body) else {
            return false;
        };
        used += 4 + n;
        let Some(id) = r.id.as_deref().and_then(proto::parse_id) else {
            continue;
        };
        let size = r.size.unwrap_or(0);
        let checkpoint = match (&r.checkpoint, &*note) {
            (Some(c), _) => {
                let c: Arc<str> = Arc::from(c.as_str());
                *note = Some((size, Arc::clone(&c)));
                Some(c)
            }
            (None, Some((s, c))) if *s == size => Some(Arc::clone(c)),
            (None, _) => None,
        };
        if r.ok && checkpoint.is_none() {
            // A receipt without its checkpoint: not this protocol.
            return false;
        }
        let mut st = lock(&shared.state);
        if let Some(w) = st.pending.remove(&id) {
            if st.order.front() == Some(&id) {
                st.order.pop_front();
            } else {
                st.order.retain(|x| *x != id);
            }
            drop(st);
            let result = match (r.ok, checkpoint) {
                (true, Some(c)) => Ok(Arc::new(Outcome {
                    first: r.index.unwrap_or(0),
                    size,
                    notes: vec![c],
                })),
                _ => Err(error_of(&r, w.ms)),
            };
            w.slot.complete(result);
            if lock(&shared.state).space_waiters > 0 {
                shared.space.notify_all();
            }
        }
    }
    buf.drain(..used);
    true
}

/// Reconnects until it succeeds (resending every unanswered request in order), or the
/// session is closed with nothing unanswered.
fn reconnect(shared: &Shared) -> Option<UnixStream> {
    lock(&shared.state).stream = None;
    loop {
        shared.expire(Instant::now());
        {
            let st = lock(&shared.state);
            if st.closed {
                return None;
            }
        }
        match shared.hello(Duration::from_secs(5)) {
            Ok((s, _)) => {
                let Ok(w) = s.try_clone() else { continue };
                let mut st = lock(&shared.state);
                // Everything unanswered goes again, in order, ahead of anything new.
                let State {
                    pending,
                    order,
                    out,
                    stream,
                    ..
                } = &mut *st;
                out.clear();
                for id in order.iter() {
                    if let Some(p) = pending.get(id) {
                        out.extend_from_slice(&p.frame);
                    }
                }
                *stream = Some(Arc::new(w));
                drop(st);
                shared.ready.notify_all();
                return Some(s);
            }
            Err(AppendError::Refused(m)) => {
                // The writer no longer accepts this session: nothing pending can succeed.
                let mut st = lock(&shared.state);
                for (_, w) in st.pending.drain() {
                    w.slot.complete(Err(AppendError::Refused(m.clone())));
                }
                st.order.clear();
                drop(st);
                shared.space.notify_all();
            }
            Err(_) => {}
        }
        std::thread::sleep(TICK);
    }
}

/// The flushing thread: writes whatever frames have gathered, in one write.
fn flush(shared: &Shared) {
    let mut buf = Vec::new();
    loop {
        let stream = {
            let mut st = lock(&shared.state);
            while st.out.is_empty() && !st.closed {
                st.idle = true;
                st = shared
                    .ready
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            st.idle = false;
            if st.out.is_empty() {
                return;
            }
            std::mem::swap(&mut buf, &mut st.out);
            st.stream.clone()
        };
        if let Some(s) = stream
            && (&*s).write_all(&buf).is_err()
        {
            // The reply thread notices the broken connection, reconnects and resends.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        buf.clear();
    }
}

impl Journal for Remote {
    fn submit(&self, kind: &str, event: &Event) -> Result<Ticket, AppendError> {
        // The kind is checked here; the event's size and form by the writer, which
        // answers `invalid` (one serialisation per entry on this side, not two).
        if !warden_core::entry::valid_kind(kind) || kind == warden_core::entry::KIND_ROTATION {
            check_submission(kind, event)?;
        }
        // A random 8-byte session prefix and a counter: unique, and no call into the
        // random generator per entry.
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut id = [0u8; RID_LEN];
        for (d, b) in id
            .iter_mut()
            .zip(self.session.iter().chain(n.to_be_bytes().iter()))
        {
            *d = *b;
        }
        let body = proto::encode_append(&id, kind, event, self.deadline_ms)
            .map_err(|e| AppendError::Invalid(e.to_string()))?;
        if body.len() > proto::MAX_FRAME {
            // The writer would close the connection on it; refuse it here instead.
            return Err(AppendError::Invalid(format!(
                "the entry is {} bytes encoded, more than {} the writer accepts",
                body.len(),
                proto::MAX_FRAME
            )));
        }
        let mut frame = Vec::with_capacity(body.len() + 4);
        proto::frame(&body, &mut frame);
        let deadline = Instant::now() + Duration::from_millis(self.deadline_ms);
        let (ticket, slot) = Ticket::detached();
        let mut st = lock(&self.shared.state);
        while st.order.len() >= proto::MAX_IN_FLIGHT {
            if Instant::now() >= deadline {
                return Err(AppendError::Deadline {
                    ms: self.deadline_ms,
                });
            }
            st.space_waiters += 1;
            st = self
                .shared
                .space
                .wait_timeout(st, TICK)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            st.space_waiters -= 1;
        }
        if st.closed {
            return Err(AppendError::Closed);
        }
        // The flushing thread writes it; while reconnecting, the reconnect resends it.
        if st.stream.is_some() {
            st.out.extend_from_slice(&frame);
            if st.idle {
                st.idle = false;
                self.shared.ready.notify_one();
            }
        }
        st.order.push_back(id);
        st.earliest = Some(st.earliest.map_or(deadline, |e| e.min(deadline)));
        st.pending.insert(
            id,
            Waiting {
                frame,
                slot,
                deadline,
                ms: self.deadline_ms,
            },
        );
        Ok(ticket)
    }

    fn path(&self) -> &Path {
        &self.log
    }

    fn durable_state(&self) -> Option<DurableState> {
        None
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            if let Some(s) = &st.stream {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            for (_, w) in st.pending.drain() {
                w.slot.complete(Err(AppendError::Closed));
            }
            st.order.clear();
            st.out.clear();
        }
        self.shared.ready.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}
