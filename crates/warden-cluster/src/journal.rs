//! What a node's registry, server and commands append through: entries go to the
//! shared queue, and each ticket completes when the sequencer (on whichever node holds
//! the lease) has written the entry and recorded its receipt.
//!
//! One task per node adds queued entries in batches (one statement per batch) and
//! collects receipts, woken by the database's notifications and, should one be missed,
//! by a short poll. A ticket fails when the database refuses the entry or is
//! unreachable, and when no receipt arrives within the deadline: the caller refuses the
//! access it was recording (fail closed). An entry whose ticket failed may still be
//! written later (a failed ticket never claims it was not).

use crate::queue::{self, NewEntry, Outcome};
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use warden_core::entry::{Event, RID_LEN};
use warden_store::error::AppendError;
use warden_store::journal::{Handover, Journal, Observer};
use warden_store::ledger::{Completer, DurableState, Ledger, Receipt, Ticket, check_submission};

/// Longest a ticket waits for its receipt.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Most entries added per statement.
const BATCH: usize = 5_000;
/// Most entries queued on this node and not yet written; `submit` waits beyond it.
const MAX_OUTSTANDING: usize = 100_000;
/// How often receipts are polled for when no notification comes.
const POLL: Duration = Duration::from_millis(25);

struct Waiting {
    done: Completer,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    queued: Vec<(NewEntry, Waiting)>,
    /// Entries added, by batch, in the batch's order.
    waiting: HashMap<i64, Vec<Waiting>>,
    /// Entries in `waiting`.
    in_batches: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    space: Condvar,
    wake: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A node's journal on the cluster's ledger.
pub struct ClusterJournal {
    log: PathBuf,
    shared: Arc<Shared>,
    /// The ledger this node writes while it holds the sequencer lease: its own entries
    /// go straight into it instead of through the queue.
    direct: std::sync::RwLock<Option<Arc<Ledger>>>,
    session: [u8; 8],
    counter: AtomicU64,
    /// Fed the other nodes' entries this node sequences.
    observer: std::sync::RwLock<Option<Observer>>,
    /// Told when this node starts and stops sequencing (and so detecting).
    handover: std::sync::RwLock<Option<Handover>>,
}

impl std::fmt::Debug for ClusterJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterJournal")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl ClusterJournal {
    /// Starts the journal's task on `rt`; `log` is the node's local copy of the ledger.
    pub fn start(
        rt: &tokio::runtime::Handle,
        pool: PgPool,
        log: &Path,
    ) -> Result<Self, crate::ClusterError> {
        let mut session = [0u8; 8];
        aws_lc_rs::rand::fill(&mut session)
            .map_err(|_| crate::ClusterError::Config("no randomness for request ids".into()))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            space: Condvar::new(),
            wake: tokio::sync::Notify::new(),
        });
        rt.spawn(pump(pool, Arc::clone(&shared)));
        Ok(Self {
            log: log.to_path_buf(),
            shared,
            direct: std::sync::RwLock::new(None),
            session,
            counter: AtomicU64::new(0),
            observer: std::sync::RwLock::new(None),
            handover: std::sync::RwLock::new(None),
        })
    }

    fn rid(&self) -> [u8; RID_LEN] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; RID_LEN];
        for (d, b) in id
            .iter_mut()
            .zip(self.session.iter().chain(n.to_be_bytes().iter()))
        {
            *d = *b;
        }
        id
    }
}

impl ClusterJournal {
    /// While this node sequences, `Some` of the ledger it writes: this node's entries
    /// then skip the queue (an insert, a take and the outcomes' update and read: three
    /// of the four transactions an acknowledgement otherwise waits for) and are
    /// acknowledged when the chunk holding them commits, like any other.
    pub(crate) fn set_direct(&self, ledger: Option<Arc<Ledger>>) {
        *self
            .direct
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ledger;
    }

    /// What is fed the entries of other nodes (and processes) this node sequences, and
    /// the prefix of this journal's request ids, which tells its own entries apart.
    pub(crate) fn observer(&self) -> Option<(Observer, [u8; 8])> {
        self.observer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .map(|o| (o, self.session))
    }

    /// Tells what registered with [`Journal::on_handover`] that this node starts
    /// (`true`, before its first entry as sequencer) or stops sequencing.
    pub(crate) fn handover(&self, detecting: bool) {
        let f = self
            .handover
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(f) = f {
            f(detecting);
        }
    }

    fn direct(&self) -> Option<Arc<Ledger>> {
        self.direct
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Journal for ClusterJournal {
    fn submit(&self, kind: &str, event: &Event) -> Result<Ticket, AppendError> {
        let plaintext = check_submission(kind, event)?;
        let rid = self.rid();
        let plaintext = match self.direct() {
            Some(ledger) => match ledger.submit_plaintext_request(kind, plaintext.clone(), rid) {
                // A ledger closing as the lease moves: the entry goes through the queue.
                Err(AppendError::Closed) => plaintext,
                other => return other,
            },
            None => plaintext,
        };
        let (ticket, done) = Ticket::completer();
        let deadline = Instant::now() + DEADLINE;
        let entry = NewEntry {
            rid,
            kind: kind.to_owned(),
            plaintext,
        };
        let mut st = self.shared.lock();
        while st.queued.len() + st.in_batches >= MAX_OUTSTANDING && !st.closed {
            if Instant::now() >= deadline {
                return Err(AppendError::Deadline {
                    ms: u64::try_from(DEADLINE.as_millis()).unwrap_or(u64::MAX),
                });
            }
            st = self
                .shared
                .space
                .wait_timeout(st, POLL)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if st.closed {
            return Err(AppendError::Closed);
        }
        st.queued.push((entry, Waiting { done, deadline }));
        drop(st);
        self.shared.wake.notify_one();
        Ok(ticket)
    }

    fn path(&self) -> &Path {
        &self.log
    }

    fn durable_state(&self) -> Option<DurableState> {
        None
    }

    /// Only while it sequences: then every other node's entries reach this node's
    /// detectors through [`Journal::observe_others`].
    fn detects_own(&self) -> bool {
        self.direct().is_some()
    }

    fn observe_others(&self, f: Observer) {
        *self
            .observer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f);
    }

    /// Registered late, while this node already sequences: `f(true)` now, on a thread
    /// of its own (the caller may be a runtime's).
    fn on_handover(&self, f: Handover) {
        *self
            .handover
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&f));
        if self.direct().is_some() {
            std::thread::scope(|s| {
                let _ = s.spawn(|| f(true)).join();
            });
        }
    }
}

impl Drop for ClusterJournal {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        for (_, w) in st.queued.drain(..) {
            w.done.complete(Err(AppendError::Closed));
        }
        for (_, ws) in st.waiting.drain() {
            for w in ws {
                w.done.complete(Err(AppendError::Closed));
            }
        }
        st.in_batches = 0;
        drop(st);
        self.shared.space.notify_all();
        self.shared.wake.notify_one();
    }
}

/// The journal's task: adds queued entries, collects receipts, fails what is late.
async fn pump(pool: PgPool, shared: Arc<Shared>) {
    let done = crate::signal::Signal::listen(
        &tokio::runtime::Handle::current(),
        pool.clone(),
        queue::DONE,
    );
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            () = done.wait(POLL) => {}
        }
        let (batch, ids) = {
            let mut st = shared.lock();
            if st.closed {
                return;
            }
            let n = st.queued.len().min(BATCH);
            let batch: Vec<(NewEntry, Waiting)> = st.queued.drain(..n).collect();
            let ids: Vec<i64> = st.waiting.keys().copied().collect();
            (batch, ids)
        };
        if !batch.is_empty() {
            let (entries, waits): (Vec<NewEntry>, Vec<Waiting>) = batch.into_iter().unzip();
            match queue::add(&pool, &entries).await {
                Ok(id) => {
                    let mut st = shared.lock();
                    st.in_batches += waits.len();
                    st.waiting.insert(id, waits);
                }
                Err(e) => {
                    for w in waits {
                        w.done.complete(Err(AppendError::Io(e.to_string())));
                    }
                    shared.space.notify_all();
                }
            }
            if !shared.lock().queued.is_empty() {
                shared.wake.notify_one();
            }
        }
        if ids.is_empty() {
            continue;
        }
        if let Ok(found) = queue::outcomes(&pool, &ids).await {
            let mut st = shared.lock();
            for (id, outs) in found {
                let Some(ws) = st.waiting.remove(&id) else {
                    continue;
                };
                st.in_batches -= ws.len();
                let same = outs.len() == ws.len();
                for (i, w) in ws.into_iter().enumerate() {
                    w.done.complete(match outs.get(i).filter(|_| same) {
                        Some(Outcome::Written { index, size, note }) => Ok(Receipt {
                            index: *index,
                            size: *size,
                            checkpoint: Arc::from(note.as_str()),
                        }),
                        Some(Outcome::Refused(r)) => Err(AppendError::Invalid(r.clone())),
                        None => Err(AppendError::Io(format!(
                            "batch {id}: its recorded outcomes do not match its entries"
                        ))),
                    });
                }
            }
        }
        let now = Instant::now();
        let mut st = shared.lock();
        let late: Vec<i64> = st
            .waiting
            .iter()
            .filter(|(_, ws)| ws.first().is_some_and(|w| w.deadline <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(ws) = st.waiting.remove(&id) {
                st.in_batches -= ws.len();
                for w in ws {
                    w.done.complete(Err(AppendError::Deadline {
                        ms: u64::try_from(DEADLINE.as_millis()).unwrap_or(u64::MAX),
                    }));
                }
            }
        }
        drop(st);
        shared.space.notify_all();
    }
}
