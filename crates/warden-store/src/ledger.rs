//! The durable ledger: one sequencer thread group-commits queued entries.
//!
//! Contract: [`Ticket::wait`] returns a [`Receipt`] only after the entry and a signed
//! checkpoint covering it are on stable storage (data fsync of both files, and a
//! directory fsync when a file is created). Any write failure fails every waiting
//! append and stops the ledger; nothing unacknowledged is ever reported stored, and
//! reopening cuts whatever no checkpoint covers and records the cut.

use crate::durable::{AppendFile, FsFile};
use crate::error::{AppendError, StoreError, io};
use crate::keys::RootKey;
use crate::segments::{SegmentPolicy, SegmentRecord};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use warden_core::checkpoint::{Checkpoint, sign_checkpoint};
use warden_core::crypto::{RecipientPublicKey, SigAlg, SigningKey};
use warden_core::entry::{self, Event, Header, KIND_ROTATION};
use warden_core::epoch::{
    Closure, EpochKeys, EpochParams, EpochSecrets, nonce_from_counter, start_epoch,
};
use warden_core::merkle::{CompactRange, Hash, leaf_hash};
use warden_core::record::{CheckpointRecord, MAX_BATCH};
use warden_core::time::Timestamp;

/// Source of time. The core never reads a clock; the store asks this.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp::from_micros(micros)
            .unwrap_or(Timestamp::from_micros(0).unwrap_or_else(unreachable_ts))
    }
}

fn unreachable_ts() -> Timestamp {
    // from_micros(0) always succeeds; this keeps the no-panic lint satisfied.
    Timestamp::from_micros(0).unwrap_or_else(unreachable_ts)
}

/// Source of the epoch secrets (signing seeds, data keys, wrapping ephemerals).
/// Production uses [`SystemEntropy`]; tests may record what they are given so they can
/// play an attacker who stole an old epoch's key.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    /// Fills `buf` with secret random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), StoreError>;
}

/// The operating system's CSPRNG through the crypto provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), StoreError> {
        aws_lc_rs::rand::fill(buf).map_err(|_| {
            StoreError::Crypto(warden_core::error::CryptoError::Provider {
                what: "random generation",
            })
        })
    }
}

/// A clock that moves only when told to. For tests and simulations.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<std::sync::atomic::AtomicU64>);

impl ManualClock {
    /// Starts at `micros` since the epoch.
    #[must_use]
    pub fn new(micros: u64) -> Self {
        Self(Arc::new(std::sync::atomic::AtomicU64::new(micros)))
    }
    /// Moves the clock forward by `micros`.
    pub fn advance(&self, micros: u64) {
        self.0
            .fetch_add(micros, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(std::sync::atomic::Ordering::SeqCst))
            .unwrap_or_else(|| SystemClock.now())
    }
}

/// How to open a ledger.
#[derive(Debug)]
pub struct LedgerOptions {
    pub origin: String,
    pub alg: SigAlg,
    pub rotation_interval: Duration,
    pub strict: bool,
    pub recipients: Vec<RecipientPublicKey>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// When the active entries file is sealed into a segment.
    pub segments: SegmentPolicy,
}

/// Proof that an entry is durable: its index and the signed checkpoint covering it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    /// Size of the tree the checkpoint signs.
    pub size: u64,
    /// The signed checkpoint note.
    pub checkpoint: Arc<str>,
}

#[derive(Debug)]
struct Outcome {
    first: u64,
    size: u64,
    /// One note for the batch, or one per entry in strict mode.
    notes: Vec<Arc<str>>,
}

#[derive(Debug, Default)]
struct Slot {
    done: Mutex<Option<Result<Arc<Outcome>, AppendError>>>,
    cv: Condvar,
    /// Tasks awaiting a ticket of this batch; pushed and taken under `done`'s lock, so
    /// a completion never misses one.
    wakers: Mutex<Vec<std::task::Waker>>,
}

/// A queued append; [`Ticket::wait`] blocks until it is durable or failed.
#[derive(Debug)]
pub struct Ticket {
    slot: Arc<Slot>,
    pos: usize,
}

impl Ticket {
    /// Waits for the entry's receipt (blocking the thread; in async code, `.await` the
    /// ticket instead).
    pub fn wait(self) -> Result<Receipt, AppendError> {
        let mut g = lock(&self.slot.done);
        loop {
            if let Some(r) = g.as_ref() {
                return self.receipt(r);
            }
            g = self
                .slot
                .cv
                .wait(g)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn receipt(&self, r: &Result<Arc<Outcome>, AppendError>) -> Result<Receipt, AppendError> {
        let o = r.clone()?;
        let index = o.first + self.pos as u64;
        let (size, checkpoint) = if o.notes.len() == 1 {
            (
                o.size,
                o.notes.first().cloned().unwrap_or_else(|| Arc::from("")),
            )
        } else {
            (
                index + 1,
                o.notes
                    .get(self.pos)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("")),
            )
        };
        Ok(Receipt {
            index,
            size,
            checkpoint,
        })
    }
}

/// Awaiting a ticket parks the task, not a thread, until the entry is durable.
impl std::future::Future for Ticket {
    type Output = Result<Receipt, AppendError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let g = lock(&self.slot.done);
        if let Some(r) = g.as_ref() {
            return std::task::Poll::Ready(self.receipt(r));
        }
        let mut w = lock(&self.slot.wakers);
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        std::task::Poll::Pending
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Pending {
    kind: Box<str>,
    plaintext: Vec<u8>,
}

struct Queue {
    items: Vec<Pending>,
    slot: Arc<Slot>,
    closed: bool,
    failed: Option<String>,
    wake: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    space: Condvar,
    /// The files' state after the last batch that became durable.
    durable: Mutex<Option<DurableState>>,
}

/// Serialises rewrites of the segment index (sealing, retention).
pub(crate) type IndexLock = Arc<Mutex<()>>;

/// A consistent prefix of the ledger's files: every entry in the first `entries_len`
/// bytes (logical offsets: across segments) is covered by a checkpoint in the first
/// `checkpoints_len` bytes. A verifier of a live ledger reads this far and no further
/// (what follows may be in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableState {
    /// Entries (tree size).
    pub size: u64,
    pub entries_len: u64,
    pub checkpoints_len: u64,
}

/// Most appends waiting in the queue before `submit` blocks (back-pressure).
const MAX_QUEUED: usize = 60_000;

/// The audit ledger.
pub struct Ledger {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    info: LedgerInfo,
    path: PathBuf,
    index_lock: IndexLock,
    retention_lock: Mutex<()>,
    clock: Arc<dyn Clock>,
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
}

/// The checkpoints file path for an entries file (`x.jsonl` → `x.checkpoints`).
#[must_use]
pub fn checkpoints_path(log: &Path) -> PathBuf {
    log.with_extension("checkpoints")
}

/// Splits `data` into complete lines and the length of the complete part.
fn complete_lines(data: &[u8]) -> (Vec<&[u8]>, usize) {
    let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut lines = data
        .get(..end)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .collect::<Vec<_>>();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    (lines, end)
}

fn read_all(path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut v).map_err(io("read", path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StoreError::Io {
                op: "open",
                path: path.into(),
                source: e,
            });
        }
    }
    Ok(v)
}

/// The active segment: the entries file being written.
struct Active {
    /// Number the segment gets when sealed.
    number: u64,
    /// Index of its first entry.
    first: u64,
    /// Time of its first entry, once it has one.
    first_time: Option<Timestamp>,
    /// Logical offset of its first byte.
    base: u64,
}

/// The sequencer's state.
struct Writer {
    opts: LedgerOptions,
    root: RootKey,
    log: PathBuf,
    active: Active,
    index_lock: IndexLock,
    entries: Box<dyn AppendFile>,
    checkpoints: Box<dyn AppendFile>,
    range: CompactRange,
    epoch: EpochKeys,
    last_time: Timestamp,
    /// Reused sealing buffers, one per thread.
    bufs: Vec<Sealed>,
    signer: SignWorker,
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
    if !entry::valid_kind(kind) || kind == KIND_ROTATION {
        return Err(AppendError::Invalid(format!(
            "kind {kind:?} must be 1-64 of [a-z0-9._-], start with a letter, and not be key.rotation"
        )));
    }
    event
        .to_plaintext()
        .map_err(|e| AppendError::Invalid(e.to_string()))
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
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        if lock_file.try_lock().is_err() {
            return Err(StoreError::Locked { path: log.into() });
        }
        let cp_path = checkpoints_path(log);
        let index = crate::segments::finish_seal(log)?;
        let sealed = index.last();
        let (active_first, active_base) = sealed.map_or((0, 0), |l| (l.end, l.offset + l.bytes));
        // Recovery: the last complete checkpoint record defines what is acknowledged.
        let cp_data = read_all(&cp_path)?;
        let (cp_lines, cp_good) = complete_lines(&cp_data);
        let last = match cp_lines.last() {
            None => None,
            Some(l) => Some(
                CheckpointRecord::decode(l).map_err(|e| StoreError::Corrupt {
                    detail: format!("last checkpoint record: {e}"),
                })?,
            ),
        };
        let covered = last.as_ref().map_or(0, |r| r.size);
        let data = read_all(log)?;
        let (lines, _) = complete_lines(&data);
        if (lines.len() as u64) + active_first < covered || covered < active_first {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "{} entries present from index {active_first} but the last checkpoint covers {covered}",
                    lines.len()
                ),
            });
        }
        let keep = usize::try_from(covered - active_first).unwrap_or(usize::MAX);
        let mut range = match sealed {
            None => CompactRange::new(),
            Some(l) => crate::segments::decode_range(l.end, &l.range)?,
        };
        let mut keep_bytes = 0usize;
        for l in lines.iter().take(keep) {
            range.push(leaf_hash(l));
            keep_bytes += l.len() + 1;
        }
        let parse_time = |t: &str| {
            Timestamp::parse(t.as_bytes()).map_err(|e| StoreError::Corrupt {
                detail: format!("segment index time: {e}"),
            })
        };
        let (last_epoch, last_time) = match lines.get(keep.wrapping_sub(1)).filter(|_| keep > 0) {
            Some(l) => {
                let e = entry::parse_line(l).map_err(|e| StoreError::Corrupt {
                    detail: format!("entry {}: {e}", active_first + keep as u64 - 1),
                })?;
                (Some(e.header.epoch), e.header.time)
            }
            // The active file is empty: the last entry is the sealed segment's.
            None => match (sealed, &last) {
                (Some(l), Some(r)) => (Some(r.epoch), parse_time(&l.last_time)?),
                _ => (
                    None,
                    Timestamp::from_micros(0).unwrap_or_else(unreachable_ts),
                ),
            },
        };
        let first_time = match lines.first().filter(|_| keep > 0) {
            Some(l) => Some(
                entry::parse_line(l)
                    .map_err(|e| StoreError::Corrupt {
                        detail: format!("entry {active_first}: {e}"),
                    })?
                    .header
                    .time,
            ),
            None => None,
        };
        if let Some(r) = &last {
            let note = warden_core::note::Note::parse(r.note.as_bytes()).map_err(|e| {
                StoreError::Corrupt {
                    detail: format!("last checkpoint: {e}"),
                }
            })?;
            let cp = Checkpoint::from_text(note.text()).map_err(|e| StoreError::Corrupt {
                detail: format!("last checkpoint: {e}"),
            })?;
            if cp.root != range.root() || cp.size != covered {
                return Err(StoreError::Corrupt {
                    detail: "entries do not match the last signed checkpoint".into(),
                });
            }
        }
        let cut_entries = lines.len() as u64 + active_first - covered;
        let cut_bytes = (data.len() - keep_bytes) as u64 + (cp_data.len() - cp_good) as u64;
        let (mut entries, mut checkpoints) = wrap(
            Box::new(FsFile::open(log).map_err(io("open", log))?),
            Box::new(FsFile::open(&cp_path).map_err(io("open", &cp_path))?),
        );
        if entries.len() != keep_bytes as u64 {
            entries
                .truncate(keep_bytes as u64)
                .map_err(io("truncate", log))?;
        }
        if checkpoints.len() != cp_good as u64 {
            checkpoints
                .truncate(cp_good as u64)
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

    /// Removes the sealed segments past retention (see [`crate::retention`]): verifies
    /// them, records a `retention.delete` entry, then deletes them. `hold`: never remove
    /// an entry at or after this index. With `dry_run`, only says what would go.
    pub fn apply_retention(
        &self,
        keep_secs: u64,
        hold: Option<u64>,
        cfg: warden_core::verify::VerifyConfig,
        dry_run: bool,
    ) -> Result<Option<(crate::retention::Plan, Option<Receipt>)>, StoreError> {
        // One run at a time; the index lock is held only while the index is rewritten,
        // never across the append (the sequencer takes it to seal).
        let _run = lock(&self.retention_lock);
        {
            let _g = lock(&self.index_lock);
            let index = crate::segments::load_index(&self.path)?;
            crate::retention::remove_marked(&self.path, &index)?;
        }
        let now = self.clock.now();
        let Some(plan) = crate::retention::plan(&self.path, keep_secs, now, hold, cfg)? else {
            return Ok(None);
        };
        if dry_run {
            return Ok(Some((plan, None)));
        }
        let ev = Event {
            user: Some("system".into()),
            action: Some("retention".into()),
            reason: Some(format!(
                "{} sealed segment(s) older than the retention period of {} s",
                plan.segments.len(),
                keep_secs
            )),
            details: Some(plan.details(keep_secs)),
            ..Event::default()
        };
        let receipt = self
            .append(crate::retention::KIND_RETENTION, &ev)
            .map_err(|e| StoreError::Config(format!("recording the removal: {e}")))?;
        let _g = lock(&self.index_lock);
        crate::retention::commit(&self.path, &plan, receipt.index, self.clock.now())?;
        Ok(Some((plan, Some(receipt))))
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

fn rotation_item(reason: &str, cut_entries: u64, cut_bytes: u64) -> Result<Pending, StoreError> {
    let ev = Event {
        action: Some("rotate".into()),
        reason: Some(reason.into()),
        details: (cut_bytes > 0)
            .then(|| serde_json::json!({"cut_entries": cut_entries, "cut_bytes": cut_bytes})),
        ..Event::default()
    };
    Ok(Pending {
        kind: KIND_ROTATION.into(),
        plaintext: ev.to_plaintext()?,
    })
}

fn new_epoch(
    root: &RootKey,
    opts: &LedgerOptions,
    epoch: u64,
    now: Timestamp,
    closes: Option<Closure>,
    reason: &str,
) -> Result<(EpochKeys, String), StoreError> {
    let seed = || -> Result<warden_core::crypto::Seed, StoreError> {
        let mut s = zeroize::Zeroizing::new([0u8; 32]);
        opts.entropy.fill(s.as_mut_slice())?;
        Ok(s)
    };
    let ephemeral = opts
        .recipients
        .iter()
        .map(|_| seed())
        .collect::<Result<Vec<_>, _>>()?;
    let secrets = EpochSecrets {
        signing_seed: seed()?,
        data_key: seed()?,
        ephemeral,
    };
    let interval_micros = u64::try_from(opts.rotation_interval.as_micros()).unwrap_or(u64::MAX);
    let params = EpochParams {
        origin: &opts.origin,
        epoch,
        alg: opts.alg,
        not_before: now,
        interval_micros,
        recipients: &opts.recipients,
        closes,
        reason,
    };
    let (keys, record) = start_epoch(&root.key, &params, secrets)?;
    Ok((keys, record.encode()?))
}

fn sequencer(shared: &Shared, mut w: Writer) {
    loop {
        let (items, slot) = {
            let mut q = lock(&shared.queue);
            loop {
                let due = w.opts.clock.now() >= w.epoch.not_after;
                if !q.items.is_empty() || q.closed || due || q.wake {
                    break;
                }
                let wait = w
                    .epoch
                    .not_after
                    .as_micros()
                    .saturating_sub(w.opts.clock.now().as_micros());
                let wait = Duration::from_micros(wait.clamp(1_000, 1_000_000));
                q = shared
                    .work
                    .wait_timeout(q, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            q.wake = false;
            if q.closed && q.items.is_empty() {
                return;
            }
            let items = std::mem::take(&mut q.items);
            let slot = std::mem::take(&mut q.slot);
            (items, slot)
        };
        shared.space.notify_all();
        let failed = lock(&shared.queue).failed.clone();
        let result = match failed {
            Some(f) => Err(AppendError::Failed(f)),
            None => w.batch(items),
        };
        if result.is_ok() {
            *lock(&shared.durable) = Some(w.durable());
        }
        if let Err(AppendError::Io(m)) = &result {
            // A write failed: the files' state is uncertain. Stop; reopening recovers.
            lock(&shared.queue).failed = Some(m.clone());
            shared.space.notify_all();
        }
        let wakers = {
            let mut done = lock(&slot.done);
            *done = Some(result.map(Arc::new));
            std::mem::take(&mut *lock(&slot.wakers))
        };
        slot.cv.notify_all();
        for w in wakers {
            w.wake();
        }
    }
}

impl Writer {
    /// The files' consistent state now.
    fn durable(&self) -> DurableState {
        DurableState {
            size: self.range.size(),
            entries_len: self.active.base + self.entries.len(),
            checkpoints_len: self.checkpoints.len(),
        }
    }

    /// Seals the active segment if a batch stamped `now` may not join it.
    fn seal_if_due(&mut self, now: Timestamp) -> Result<(), AppendError> {
        let Some(first) = self.active.first_time else {
            return Ok(());
        };
        let policy = self.opts.segments;
        let day = |t: Timestamp| t.as_micros() / 86_400_000_000;
        let due = (policy.daily && day(first) != day(now))
            || (policy.max_bytes > 0 && self.entries.len() >= policy.max_bytes);
        if due {
            self.seal_segment(first)
                .map_err(|e| AppendError::Io(format!("sealing the active segment: {e}")))?;
        }
        Ok(())
    }

    /// Seals the active file as the next segment: the index naming it is written
    /// first, then the file renamed, then a new active file created (opening finishes
    /// a seal a crash interrupted). Every entry in it is already durable and covered by
    /// the checkpoint that ends the checkpoints file.
    fn seal_segment(&mut self, first_time: Timestamp) -> Result<(), StoreError> {
        let _g = lock(&self.index_lock);
        let mut index = crate::segments::load_index(&self.log)?;
        if index.len() as u64 + 1 != self.active.number {
            return Err(StoreError::Corrupt {
                detail: "the segment index changed under the writer".into(),
            });
        }
        let rec = SegmentRecord {
            segment: self.active.number,
            file: crate::segments::segment_name(&self.log, self.active.number),
            first: self.active.first,
            end: self.range.size(),
            offset: self.active.base,
            bytes: self.entries.len(),
            checkpoints_offset: self.checkpoints.len(),
            first_time: first_time.to_string(),
            last_time: self.last_time.to_string(),
            range: self
                .range
                .hashes()
                .iter()
                .map(|h| warden_core::hex::encode(h))
                .collect(),
            removed: None,
        };
        let path = crate::segments::segment_path(&self.log, &rec);
        index.push(rec);
        crate::segments::store_index(&self.log, &index)?;
        std::fs::rename(&self.log, &path).map_err(io("rename", &self.log))?;
        let dir = self.log.parent().unwrap_or(Path::new("."));
        crate::durable::sync_dir(dir).map_err(io("sync", dir))?;
        // A new active file (fault-injecting wrappers apply to the first file only).
        let fresh = FsFile::open(&self.log).map_err(io("open", &self.log))?;
        let old = std::mem::replace(&mut self.entries, Box::new(fresh));
        self.active = Active {
            number: self.active.number + 1,
            first: self.range.size(),
            first_time: None,
            base: self.active.base + old.len(),
        };
        Ok(())
    }

    /// Commits one batch of user entries, rotating first if the epoch has ended.
    fn batch(&mut self, items: Vec<Pending>) -> Result<Outcome, AppendError> {
        let now = self.opts.clock.now();
        if now < self.last_time {
            return Err(AppendError::ClockBackwards {
                now: now.to_string(),
                last: self.last_time.to_string(),
            });
        }
        self.seal_if_due(now)?;
        let mut all = Vec::with_capacity(items.len() + 1);
        let mut rotation = None;
        if now >= self.epoch.not_after {
            let closes = Some(Closure {
                epoch: self.epoch.epoch,
                size: self.range.size(),
            });
            let (keys, rec) = new_epoch(
                &self.root,
                &self.opts,
                self.epoch.epoch + 1,
                now,
                closes,
                "interval",
            )
            .map_err(|e| AppendError::Io(format!("key rotation: {e}")))?;
            // The old epoch's secrets are dropped (and zeroized) here.
            self.epoch = keys;
            rotation = Some(rec);
            all.push(
                rotation_item("interval", 0, 0).map_err(|e| AppendError::Invalid(e.to_string()))?,
            );
        }
        let internal = all.len() as u64;
        let user = items.len();
        all.extend(items);
        let mut o = self.commit(all, now, rotation)?;
        o.first += internal;
        if o.notes.len() > 1 {
            o.notes.drain(..usize::try_from(internal).unwrap_or(0));
        }
        debug_assert!(o.notes.len() == 1 || o.notes.len() == user);
        Ok(o)
    }

    /// Seals, writes and fsyncs the entries while signing their checkpoint(s), then
    /// writes and fsyncs the checkpoint records. The first item carries `rotation`.
    fn commit(
        &mut self,
        items: Vec<Pending>,
        now: Timestamp,
        rotation: Option<String>,
    ) -> Result<Outcome, AppendError> {
        if items.is_empty() {
            return Ok(Outcome {
                first: self.range.size(),
                size: self.range.size(),
                notes: vec![Arc::from("")],
            });
        }
        let first = self.range.size();
        let sealed = self.seal(&items, first, now, rotation.as_deref())?;
        let leaves: Vec<Hash> = sealed
            .iter()
            .flat_map(|c| c.leaves.iter().copied())
            .collect();

        // The checkpoints to sign: one per entry in strict mode, else one per MAX_BATCH.
        let origin = self.opts.origin.clone();
        let mut range = self.range.clone();
        // Checkpoints to sign, and each one's (first index, leaves) for its record.
        let mut cps: Vec<Checkpoint> = Vec::new();
        let mut spans: Vec<(u64, Vec<Hash>)> = Vec::new();
        let per = if self.opts.strict {
            1
        } else {
            usize::try_from(MAX_BATCH).unwrap_or(usize::MAX)
        };
        for chunk in leaves.chunks(per) {
            let start = range.size();
            for l in chunk {
                range.push(*l);
            }
            let cp = Checkpoint {
                origin: origin.clone(),
                size: range.size(),
                root: range.root(),
            };
            cps.push(cp);
            spans.push((start, chunk.to_vec()));
        }

        let before = self.entries.len();
        let cp_before = self.checkpoints.len();
        let secs = now.as_micros() / 1_000_000;
        let strict = self.opts.strict;
        let epoch_no = self.epoch.epoch;
        let (entries, checkpoints, epoch) = (&mut self.entries, &mut self.checkpoints, &self.epoch);
        // Checkpoints are signed in groups, each while the previous group's records
        // (or, first, the entries) are written and fsynced: signing and the disk overlap.
        let group = if strict { SIGN_GROUP } else { usize::MAX };
        let groups: Vec<&[Checkpoint]> = cps.chunks(group).collect();
        let mut group_spans = spans.chunks_mut(group);
        let signer = &self.signer;
        let submit = |j: usize| {
            groups.get(j).map(|&g| {
                signer.submit(SignJob {
                    cps: g.to_vec(),
                    key: Arc::clone(&epoch.signer),
                    key_name: epoch.key_name.clone(),
                    secs,
                    strict,
                })
            })
        };
        let outcome: Result<Vec<String>, AppendError> = {
            let mut next = submit(0);
            let mut failed = sealed
                .iter()
                .try_for_each(|c| entries.append(&c.lines))
                .and_then(|()| entries.sync())
                .err()
                .map(|e| AppendError::Io(e.to_string()));
            let mut notes = Vec::with_capacity(cps.len());
            for (j, g) in groups.iter().enumerate() {
                let signed = next.take().map_or(Ok(Vec::new()), SignWorker::wait);
                next = submit(j + 1);
                if failed.is_some() {
                    continue;
                }
                let signed = match signed {
                    Ok(v) => v,
                    Err(e) => {
                        failed = Some(e);
                        continue;
                    }
                };
                let mut buf = Vec::new();
                let spans = group_spans.next().unwrap_or_default();
                for ((cp, (start, leaves)), note) in g.iter().zip(spans).zip(&signed) {
                    let rec = CheckpointRecord {
                        first: *start,
                        size: cp.size,
                        epoch: epoch_no,
                        leaves: std::mem::take(leaves),
                        note: note.clone(),
                    };
                    match rec.encode() {
                        Ok(line) => buf.extend_from_slice(&line),
                        Err(e) => failed = Some(AppendError::Invalid(e.to_string())),
                    }
                    buf.push(b'\n');
                }
                if failed.is_none()
                    && let Err(e) = checkpoints.append(&buf).and_then(|()| checkpoints.sync())
                {
                    failed = Some(AppendError::Io(e.to_string()));
                }
                notes.extend(signed);
            }
            failed.map_or(Ok(notes), Err)
        };
        let signed = match outcome {
            Ok(n) => n,
            Err(e) => {
                // Roll both files back so they stay a clean, fully covered prefix.
                let _ = self.checkpoints.truncate(cp_before);
                let _ = self.entries.truncate(before);
                return Err(e);
            }
        };
        self.range = range;
        self.last_time = now;
        self.active.first_time.get_or_insert(now);
        self.bufs = sealed;
        let notes: Vec<Arc<str>> = if strict {
            signed.iter().map(|n| Arc::from(n.as_str())).collect()
        } else {
            vec![Arc::from(
                signed.last().map(String::as_str).unwrap_or_default(),
            )]
        };
        Ok(Outcome {
            first,
            size: self.range.size(),
            notes,
        })
    }

    /// Seals `items` as entries `first..`, on every core when the batch is large.
    fn seal(
        &mut self,
        items: &[Pending],
        first: u64,
        now: Timestamp,
        rotation: Option<&str>,
    ) -> Result<Vec<Sealed>, AppendError> {
        let n = items.len();
        let threads = if n >= PARALLEL_SEAL_MIN {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            1
        };
        let per = n.div_ceil(threads).max(1);
        let counter = self.epoch.reserve_nonces(n as u64);
        let job = SealJob {
            origin: &self.opts.origin,
            epoch: &self.epoch,
            now,
            batch_first: first,
            rotation,
        };
        let mut pool = std::mem::take(&mut self.bufs);
        pool.resize_with(threads.max(pool.len()), Sealed::default);
        let result = std::thread::scope(|s| {
            let mut handles = Vec::new();
            let mut it = items.chunks(per).zip(pool.iter_mut()).enumerate();
            let head = it.next();
            for (k, (chunk, out)) in it {
                let off = (k * per) as u64;
                let job = &job;
                handles.push(s.spawn(move || job.run(chunk, first + off, counter + off, out)));
            }
            let mut r = match head {
                Some((_, (chunk, out))) => job.run(chunk, first, counter, out),
                None => Ok(()),
            };
            for h in handles {
                let j = h
                    .join()
                    .unwrap_or_else(|_| Err(AppendError::Io("sealing thread failed".into())));
                r = r.and(j);
            }
            r
        });
        let used = n.div_ceil(per);
        let mut sealed = pool;
        sealed.truncate(used);
        result.map(|()| sealed)
    }
}

/// Entries sealed by one thread: their line bytes (with newlines) and leaf hashes.
#[derive(Default)]
struct Sealed {
    lines: Vec<u8>,
    leaves: Vec<Hash>,
}

/// Batches at least this large are sealed and hashed on every core.
const PARALLEL_SEAL_MIN: usize = 512;

struct SealJob<'a> {
    origin: &'a str,
    epoch: &'a EpochKeys,
    now: Timestamp,
    /// Index of the batch's first entry, the one that carries `rotation`.
    batch_first: u64,
    rotation: Option<&'a str>,
}

impl SealJob<'_> {
    fn run(
        &self,
        items: &[Pending],
        first: u64,
        counter: u64,
        out: &mut Sealed,
    ) -> Result<(), AppendError> {
        out.lines.clear();
        out.leaves.clear();
        out.leaves.reserve(items.len());
        let mut scratch = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let start = out.lines.len();
            let index = first + i as u64;
            let header = Header {
                origin: self.origin,
                index,
                time: self.now,
                epoch: self.epoch.epoch,
                kind: &it.kind,
                nonce: nonce_from_counter(counter + i as u64),
                rotation: if index == self.batch_first {
                    self.rotation
                } else {
                    None
                },
            };
            entry::seal_line(
                &header,
                &self.epoch.data,
                &it.plaintext,
                &mut out.lines,
                &mut scratch,
            )
            .map_err(|e| AppendError::Invalid(e.to_string()))?;
            out.leaves
                .push(leaf_hash(out.lines.get(start..).unwrap_or_default()));
            out.lines.push(b'\n');
        }
        Ok(())
    }
}

/// Checkpoints signed per group in strict mode, overlapping with the previous group's
/// write and fsync.
const SIGN_GROUP: usize = 256;

/// A thread that signs checkpoints while the sequencer writes and fsyncs. It lives as
/// long as the ledger, so no batch pays for starting a thread.
struct SignWorker {
    tx: Option<std::sync::mpsc::Sender<(SignJob, SignAnswer)>>,
    handle: Option<JoinHandle<()>>,
}

/// Checkpoints to sign with an epoch key.
struct SignJob {
    cps: Vec<Checkpoint>,
    key: Arc<SigningKey>,
    key_name: String,
    secs: u64,
    strict: bool,
}

type SignReply = std::sync::mpsc::Receiver<Result<Vec<String>, AppendError>>;
type SignAnswer = std::sync::mpsc::SyncSender<Result<Vec<String>, AppendError>>;

impl SignWorker {
    fn start() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<(SignJob, SignAnswer)>();
        let handle = std::thread::Builder::new()
            .name("warden-sign".into())
            .spawn(move || {
                for (job, reply) in rx {
                    let r = sign_group(&job.cps, &job.key_name, &job.key, job.secs, job.strict);
                    // The job's key reference is dropped before the reply, so a retired
                    // epoch key is zeroized as soon as its last checkpoint is signed.
                    drop(job);
                    let _ = reply.send(r);
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queues `job`; [`SignWorker::wait`] on the answer.
    fn submit(&self, job: SignJob) -> SignReply {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        if let Some(tx) = &self.tx {
            // If the worker is gone, `reply` is dropped with the job and `wait` reports it.
            let _ = tx.send((job, reply));
        }
        answer
    }

    fn wait(answer: SignReply) -> Result<Vec<String>, AppendError> {
        answer
            .recv()
            .unwrap_or_else(|_| Err(AppendError::Io("signing thread failed".into())))
    }
}

impl Drop for SignWorker {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Signs a group of checkpoints: on every core in strict mode, else in order here.
fn sign_group(
    cps: &[Checkpoint],
    key_name: &str,
    key: &SigningKey,
    secs: u64,
    strict: bool,
) -> Result<Vec<String>, AppendError> {
    if strict && cps.len() > 1 {
        return sign_parallel(cps, key_name, key, secs);
    }
    cps.iter()
        .map(|cp| {
            sign_checkpoint(cp, key_name, key, secs)
                .map(|n| n.to_string())
                .map_err(|e| AppendError::Io(format!("signing: {e}")))
        })
        .collect()
}

/// Signs many checkpoints on every core (strict mode).
fn sign_parallel(
    cps: &[Checkpoint],
    key_name: &str,
    key: &SigningKey,
    secs: u64,
) -> Result<Vec<String>, AppendError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(cps.len().max(1));
    // ML-DSA signing time varies (rejection sampling), so threads take the next
    // checkpoint as they finish instead of a fixed share.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, String)>, AppendError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(cp) = cps.get(i) else {
                            return Ok(mine);
                        };
                        let note = sign_checkpoint(cp, key_name, key, secs)
                            .map_err(|e| AppendError::Io(format!("signing: {e}")))?;
                        mine.push((i, note.to_string()));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(AppendError::Io("signing thread failed".into())))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(cps.len());
    for r in results {
        all.extend(r?);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, n)| n).collect())
}

/// The entries still present: the first one's index, and each one's leaf hash and line.
#[derive(Debug, Default)]
pub struct Present {
    pub first: u64,
    pub leaves: Vec<Hash>,
    pub lines: Vec<Vec<u8>>,
}

/// Leaf hashes and lines of every complete present entry line, from the first entry
/// retention kept.
pub fn read_leaves(log: &Path) -> Result<Present, StoreError> {
    let view = crate::segments::LogView::open(log)?;
    let first = view.first_index();
    let start = view.start();
    let mut data = Vec::new();
    view.reader(start, u64::MAX)
        .read_to_end(&mut data)
        .map_err(io("read", log))?;
    let (lines, _) = complete_lines(&data);
    Ok(Present {
        first,
        leaves: lines.iter().map(|l| leaf_hash(l)).collect(),
        lines: lines.iter().map(|l| l.to_vec()).collect(),
    })
}
