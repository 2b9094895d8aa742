//! The client side of the writer protocol: a [`Journal`] whose entries a running writer
//! appends. Requests are pipelined (up to [`proto::MAX_IN_FLIGHT`] unanswered); one
//! thread reads replies and completes tickets. When the connection drops, the client
//! reconnects and resends every unanswered request with its request id, so an entry
//! the old writer made durable is answered from the ledger rather than written again.
//! A request not answered within its deadline fails with [`AppendError::Deadline`].

use super::proto::{self, Code, Request, Response};
use crate::error::AppendError;
use crate::journal::Journal;
use crate::layout::DurableState;
use crate::ledger::check_submission;
use crate::requests::RequestId;
use crate::ticket::{Outcome, Slot, Ticket, lock};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
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
}

#[derive(Default)]
struct State {
    /// The stream requests are written to; `None` while reconnecting.
    stream: Option<UnixStream>,
    pending: HashMap<RequestId, Waiting>,
    order: VecDeque<RequestId>,
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
        });
        let (stream, hello) = shared.hello(Duration::from_millis(deadline_ms))?;
        let read = stream
            .try_clone()
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        lock(&shared.state).stream = Some(stream);
        let s2 = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("warden-writer-client".into())
            .spawn(move || replies(&s2, read))
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        Ok(Self {
            log: log.to_path_buf(),
            deadline_ms,
            shared,
            reader: Some(reader),
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
        let unavailable =
            |e: std::io::Error| AppendError::Unavailable(format!("{}: {e}", self.socket.display()));
        let mut s = UnixStream::connect(&self.socket).map_err(unavailable)?;
        s.set_read_timeout(Some(limit)).map_err(unavailable)?;
        s.set_write_timeout(Some(limit)).map_err(unavailable)?;
        let body = proto::encode_request(&Request::Hello {
            acting_as: self.claimed.clone(),
            client: Some(self.client.clone()),
        })
        .map_err(|e| AppendError::Invalid(e.to_string()))?;
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
        if !r.ok {
            return Err(error_of(&r, 0));
        }
        s.set_read_timeout(Some(TICK)).map_err(unavailable)?;
        s.set_write_timeout(Some(limit)).map_err(unavailable)?;
        Ok((s, r))
    }

    /// Fails every request whose deadline passed.
    fn expire(&self, now: Instant) {
        let mut st = lock(&self.state);
        let State { pending, order, .. } = &mut *st;
        order.retain(|id| match pending.get(id) {
            Some(w) if w.deadline <= now => {
                if let Some(w) = pending.remove(id) {
                    w.slot.complete(Err(AppendError::Deadline { ms: w.ms }));
                }
                false
            }
            Some(_) => true,
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
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let lost = match stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                !take_replies(shared, &mut buf)
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
            match reconnect(shared) {
                Some(s) => stream = s,
                None => return,
            }
        }
    }
}

/// Completes the tickets of every whole reply in `buf`; false when the writer sent
/// something that is not a reply (the connection is then dropped).
fn take_replies(shared: &Shared, buf: &mut Vec<u8>) -> bool {
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
        let mut st = lock(&shared.state);
        if let Some(w) = st.pending.remove(&id) {
            st.order.retain(|x| *x != id);
            drop(st);
            let result = if r.ok {
                Ok(Arc::new(Outcome {
                    first: r.index.unwrap_or(0),
                    size: r.size.unwrap_or(0),
                    notes: vec![Arc::from(r.checkpoint.clone().unwrap_or_default())],
                }))
            } else {
                Err(error_of(&r, w.ms))
            };
            w.slot.complete(result);
            shared.space.notify_all();
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
                let Ok(mut w) = s.try_clone() else { continue };
                let mut st = lock(&shared.state);
                let mut ok = true;
                for id in &st.order {
                    if let Some(p) = st.pending.get(id) {
                        ok &= w.write_all(&p.frame).is_ok();
                    }
                }
                if ok {
                    st.stream = Some(w);
                    return Some(s);
                }
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

impl Journal for Remote {
    fn submit(&self, kind: &str, event: &Event) -> Result<Ticket, AppendError> {
        check_submission(kind, event)?;
        let mut id = [0u8; RID_LEN];
        aws_lc_rs::rand::fill(&mut id)
            .map_err(|_| AppendError::Unavailable("no randomness for a request id".into()))?;
        let body = proto::encode_request(&Request::Append {
            id,
            kind: kind.to_owned(),
            event: Box::new(event.clone()),
            deadline_ms: self.deadline_ms,
        })
        .map_err(|e| AppendError::Invalid(e.to_string()))?;
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
            st = self
                .shared
                .space
                .wait_timeout(st, TICK)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if st.closed {
            return Err(AppendError::Closed);
        }
        if let Some(s) = st.stream.as_mut()
            && s.write_all(&frame).is_err()
        {
            // The reply thread notices the broken connection, reconnects and resends.
            let _ = s.shutdown(std::net::Shutdown::Both);
            st.stream = None;
        }
        st.order.push_back(id);
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
        }
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}
