//! The durable ledger: one sequencer thread group-commits queued entries.
//!
//! Contract: [`Ticket::wait`] returns a [`Receipt`] only after the entry and a signed
//! checkpoint covering it are on stable storage (data fsync of both files, and a
//! directory fsync when a file is created). Any write failure fails every waiting
//! append and stops the ledger; nothing unacknowledged is ever reported stored, and
//! reopening cuts whatever no checkpoint covers and records the cut.

use crate::clock::unreachable_ts;
pub use crate::clock::{Clock, Entropy, ManualClock, SystemClock, SystemEntropy};
use crate::durable::{AppendFile, FsFile};
use crate::error::{AppendError, StoreError, io};
use crate::keys::RootKey;
pub use crate::layout::{DurableState, Present, checkpoints_path, epoch_path, read_leaves};
use crate::layout::{IndexLock, read_tail};
pub use crate::options::LedgerOptions;
use crate::requests::{RequestId, Requests};
use crate::seal::SignWorker;
use crate::sequencer::{Active, Queue, Shared, Writer, new_epoch, rotation_item, sequencer};
pub use crate::ticket::{Completer, Receipt, Ticket};
use crate::ticket::{Pending, lock};
pub use crate::treestate::path as tree_state_path;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use warden_core::entry::{self, Event, KIND_ROTATION};
use warden_core::epoch::Closure;
use warden_core::merkle::CompactRange;
use warden_core::record::CheckpointRecord;
use warden_core::time::Timestamp;

/// Most appends waiting in the queue before `submit` blocks (back-pressure).
const MAX_QUEUED: usize = 60_000;

/// The audit ledger.
pub struct Ledger {
    pub(crate) shared: Arc<Shared>,
    pub(crate) thread: Option<JoinHandle<()>>,
    pub(crate) info: LedgerInfo,
    pub(crate) path: PathBuf,
    pub(crate) index_lock: IndexLock,
    pub(crate) retention_lock: Mutex<()>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) requests: Mutex<Requests>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What opening found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerInfo {
    /// Entries present after recovery (before this process's first entry).
    pub size: u64,
    /// Entries cut because no checkpoint covered them (never acknowledged).
    pub cut_entries: u64,
    /// Bytes cut from the entries and checkpoints files.
    pub cut_bytes: u64,
    /// The epoch this process writes under.
    pub epoch: u64,
    /// Entries of the active segment read and hashed to open (those after the saved
    /// tree state, or all of them when it could not be used).
    pub rehashed: u64,
}

/// Files to write through; tests wrap them to inject faults.
pub type FileWrapper = Box<
    dyn FnOnce(
        Box<dyn AppendFile>,
        Box<dyn AppendFile>,
    ) -> (Box<dyn AppendFile>, Box<dyn AppendFile>),
>;

/// Checks what [`Ledger::submit`] would accept, without a ledger: the kind's form and the
/// event's size. Returns the event's plaintext. Commands call it before opening anything,
/// so bad input writes nothing (not even the new epoch's `key.rotation`).
pub fn check_submission(kind: &str, event: &Event) -> Result<Vec<u8>, AppendError> {
    check_kind(kind)?;
    event
        .to_plaintext()
        .map_err(|e| AppendError::Invalid(e.to_string()))
}

/// Refuses a kind a caller may not submit.
fn check_kind(kind: &str) -> Result<(), AppendError> {
    if !entry::valid_kind(kind) || kind == KIND_ROTATION {
        return Err(AppendError::Invalid(format!(
            "kind {kind:?} must be 1-64 of [a-z0-9._-], start with a letter, and not be key.rotation"
        )));
    }
    Ok(())
}

impl Ledger {
    /// Opens (or creates) the ledger at `log`, recovering from a crash if needed, and
    /// starts a new epoch.
    pub fn open(log: &Path, root: RootKey, opts: LedgerOptions) -> Result<Self, StoreError> {
        Self::open_with(log, root, opts, Box::new(|a, b| (a, b)))
    }

    /// [`Ledger::open`], writing through `wrap`.
    pub fn open_with(
        log: &Path,
        root: RootKey,
        opts: LedgerOptions,
        wrap: FileWrapper,
    ) -> Result<Self, StoreError> {
        if root.public.origin != opts.origin {
            return Err(StoreError::Config(format!(
                "root key is for origin {:?}, configuration says {:?}",
                root.public.origin, opts.origin
            )));
        }
        if opts.rotation_interval.is_zero()
            || opts.rotation_interval > Duration::from_secs(crate::config::MAX_ROTATION_SECS)
        {
            return Err(StoreError::Config(
                "rotation interval must be between 1 s and 2 h".into(),
            ));
        }
        let dir = log.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let lock_path = log.with_extension("lock");
        let Some(lock_file) =
            crate::durable::lock_exclusive(&lock_path).map_err(io("lock", &lock_path))?
        else {
            return Err(StoreError::Locked { path: log.into() });
        };
        let cp_path = checkpoints_path(log);
        let index = crate::segments::finish_seal(log)?;
        let sealed = index.last();
        let (active_first, active_base) = sealed.map_or((0, 0), |l| (l.end, l.offset + l.bytes));
        // Recovery: the last complete checkpoint record defines what is acknowledged.
        let cp_tail = read_tail(&cp_path)?;
        let cp_good = cp_tail.good;
        let last = match cp_tail.last.as_deref() {
            None => None,
            Some(l) => Some(
                CheckpointRecord::decode(l).map_err(|e| StoreError::Corrupt {
                    detail: format!("last checkpoint record: {e}"),
                })?,
            ),
        };
        let covered = last.as_ref().map_or(0, |r| r.size);
        let sealed_range = match sealed {
            None => CompactRange::new(),
            Some(l) => crate::segments::decode_range(l.end, &l.range)?,
        };
        let segment = index.len() as u64 + 1;
        let scan = crate::recover::scan(log, segment, active_first, &sealed_range, last.as_ref())?;
        let parse_time = |t: &str| {
            Timestamp::parse(t.as_bytes()).map_err(|e| StoreError::Corrupt {
                detail: format!("segment index time: {e}"),
            })
        };
        let (last_epoch, last_time) = match scan.last {
            Some((e, t)) => (Some(e), t),
            // The active file is empty: the last entry is the sealed segment's.
            None => match (sealed, &last) {
                (Some(l), Some(r)) => (Some(r.epoch), parse_time(&l.last_time)?),
                _ => (
                    None,
                    Timestamp::from_micros(0).unwrap_or_else(unreachable_ts),
                ),
            },
        };
        let first_time = scan.first_time;
        let range = scan.range;
        let requests = scan.requests;
        let keep_bytes = scan.keep_bytes;
        let cut_entries = scan.uncovered;
        let rehashed = scan.hashed;
        let cut_bytes = (scan.file_len - keep_bytes) + (cp_tail.len - cp_good);
        let (mut entries, mut checkpoints) = wrap(
            Box::new(FsFile::open(log).map_err(io("open", log))?),
            Box::new(FsFile::open(&cp_path).map_err(io("open", &cp_path))?),
        );
        if entries.len() != keep_bytes {
            entries.truncate(keep_bytes).map_err(io("truncate", log))?;
        }
        if checkpoints.len() != cp_good {
            checkpoints
                .truncate(cp_good)
                .map_err(io("truncate", &cp_path))?;
        }
        let now = opts.clock.now();
        if now < last_time {
            return Err(StoreError::Config(format!(
                "the clock ({now}) is behind the last entry ({last_time}); refusing to write"
            )));
        }
        let next_epoch = last_epoch.map_or(0, |e| e + 1);
        let closes = last.as_ref().map(|r| Closure {
            epoch: r.epoch,
            size: r.size,
        });
        let reason = if cut_bytes > 0 { "recovery" } else { "start" };
        let (epoch, rotation) = new_epoch(&root, &opts, next_epoch, now, closes, reason)?;
        let info = LedgerInfo {
            size: covered,
            cut_entries,
            cut_bytes,
            epoch: next_epoch,
            rehashed,
        };
        let index_lock: IndexLock = Arc::default();
        let clock = Arc::clone(&opts.clock);
        let mut w = Writer {
            opts,
            root,
            log: log.to_path_buf(),
            active: Active {
                number: index.len() as u64 + 1,
                first: active_first,
                first_time,
                base: active_base,
            },
            index_lock: Arc::clone(&index_lock),
            entries,
            checkpoints,
            range,
            epoch,
            // The last entry's time until this process commits (a seal at open uses it).
            last_time,
            bufs: Vec::new(),
            tree_saved: covered,
            signer: SignWorker::start().map_err(io("starting the signing thread for", log))?,
        };
        let mut first = vec![rotation_item(reason, cut_entries, cut_bytes)?];
        if cut_bytes > 0 {
            let ev = Event {
                action: Some("recovery".into()),
                reason: Some("torn or unacknowledged tail cut on open".into()),
                details: Some(
                    serde_json::json!({"cut_entries": cut_entries, "cut_bytes": cut_bytes, "covered": covered}),
                ),
                ..Event::default()
            };
            first.push(Pending {
                kind: "system.recovery".into(),
                plaintext: ev.to_plaintext()?,
                rid: None,
            });
        }
        w.seal_if_due(now).map_err(|e| StoreError::Corrupt {
            detail: format!("cannot seal the active segment: {e}"),
        })?;
        w.commit(first, now, Some(rotation))
            .map_err(|e| StoreError::Corrupt {
                detail: format!("cannot write the opening entries: {e}"),
            })?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                slot: Arc::default(),
                closed: false,
                failed: None,
                wake: false,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            durable: Mutex::new(Some(w.durable())),
        });
        let s2 = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("warden-sequencer".into())
            .spawn(move || {
                let _lock = lock_file;
                sequencer(&s2, w);
            })
            .map_err(|e| StoreError::Config(format!("cannot start the sequencer thread: {e}")))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            info,
            path: log.to_path_buf(),
            index_lock,
            retention_lock: Mutex::new(()),
            clock,
            requests: Mutex::new(requests),
        })
    }

    /// The entries file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening found.
    #[must_use]
    pub fn info(&self) -> &LedgerInfo {
        &self.info
    }

    /// The files' consistent prefix after the last durable batch.
    #[must_use]
    pub fn durable_state(&self) -> Option<DurableState> {
        *lock(&self.shared.durable)
    }

    /// Queues an entry. Blocks while the queue is full.
    pub fn submit(&self, kind: &str, event: &Event) -> Result<Ticket, AppendError> {
        let plaintext = check_submission(kind, event)?;
        self.enqueue(kind, plaintext, None)
    }

    /// Queues an entry a client identified with `rid`, or returns the ticket of the
    /// entry already queued or written under that id (a retry is recorded once; see
    /// [`crate::requests`]).
    pub fn submit_request(
        &self,
        kind: &str,
        event: &Event,
        rid: RequestId,
    ) -> Result<Ticket, AppendError> {
        let plaintext = check_submission(kind, event)?;
        self.enqueue_request(kind, plaintext, rid)
    }

    /// [`Ledger::submit_request`] for an event another process already serialised (a
    /// cluster's shared queue holds plaintexts): checked as
    /// [`Event::from_plaintext`] would accept it, not parsed into an event and
    /// serialised again.
    pub fn submit_plaintext_request(
        &self,
        kind: &str,
        plaintext: Vec<u8>,
        rid: RequestId,
    ) -> Result<Ticket, AppendError> {
        check_kind(kind)?;
        Event::check_plaintext(&plaintext).map_err(|e| AppendError::Invalid(e.to_string()))?;
        self.enqueue_request(kind, plaintext, rid)
    }

    fn enqueue_request(
        &self,
        kind: &str,
        plaintext: Vec<u8>,
        rid: RequestId,
    ) -> Result<Ticket, AppendError> {
        let mut seen = lock(&self.requests);
        if let Some((slot, pos)) = seen.get(&rid) {
            return Ok(Ticket { slot, pos });
        }
        let t = self.enqueue(kind, plaintext, Some(rid))?;
        seen.insert(rid, Arc::clone(&t.slot), t.pos);
        Ok(t)
    }

    /// Request ids remembered now.
    #[must_use]
    pub fn remembered_requests(&self) -> usize {
        lock(&self.requests).len()
    }

    fn enqueue(
        &self,
        kind: &str,
        plaintext: Vec<u8>,
        rid: Option<RequestId>,
    ) -> Result<Ticket, AppendError> {
        let mut q = lock(&self.shared.queue);
        loop {
            if let Some(f) = &q.failed {
                return Err(AppendError::Failed(f.clone()));
            }
            if q.closed {
                return Err(AppendError::Closed);
            }
            if q.items.len() < MAX_QUEUED {
                break;
            }
            q = self
                .shared
                .space
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let pos = q.items.len();
        q.items.push(Pending {
            kind: kind.into(),
            plaintext,
            rid,
        });
        let slot = Arc::clone(&q.slot);
        drop(q);
        self.shared.work.notify_one();
        Ok(Ticket { slot, pos })
    }

    /// Appends one entry and waits until it is durable.
    pub fn append(&self, kind: &str, event: &Event) -> Result<Receipt, AppendError> {
        self.submit(kind, event)?.wait()
    }

    /// Asks the sequencer to check the clock now (rotation), e.g. after a clock change.
    pub fn tick(&self) {
        lock(&self.shared.queue).wake = true;
        self.shared.work.notify_one();
    }

    /// Drains the queue, stops the sequencer and drops the epoch secrets.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown();
    }
}
