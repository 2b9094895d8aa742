//! A node's part in the cluster's ledger: every node follows the database into its
//! local copy; the node holding the sequencer lease also writes the ledger.
//!
//! As sequencer, a node first brings its copy up to the database, then opens the
//! ordinary ledger over it with its files teed to the database ([`crate::tee`]); the
//! opening starts a new epoch whose `key.rotation` entry closes the last one, exactly
//! as a restart does on one machine. It then takes the shared queue in order and
//! records what became of each entry ([`crate::sequence`]). It renews its lease every third
//! of its lifetime; when a renewal fails, the lease was taken, or a batch fails (the
//! database refused it, or the fencing token was stale), it closes the ledger and goes
//! back to following. Another node takes the lease once it expires.

use crate::journal::ClusterJournal;
use crate::lease::{self, Lease, SEQUENCER};
use crate::mirror::{self, Synced};
use crate::tee::{Outbox, TeeFile};
use crate::{ClusterError, db};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use warden_core::entry::Event;
use warden_store::error::{AppendError, StoreError};
use warden_store::keys::RootKey;
use warden_store::ledger::{
    DurableState, Ledger, LedgerOptions, Ticket, checkpoints_path, tree_state_path,
};
use warden_store::segments::SegmentPolicy;

/// Makes the key and options for each ledger the node opens as sequencer.
pub type OpenLedger = Arc<dyn Fn() -> Result<(RootKey, LedgerOptions), StoreError> + Send + Sync>;

/// How a node joins the cluster.
#[derive(Clone)]
pub struct NodeOptions {
    /// `postgres://…` (a password comes from `PGPASSWORD`, as for every libpq client).
    pub database_url: String,
    /// The node's local copy of the entries file.
    pub log: PathBuf,
    /// The node's name (the lease records it with a per-process suffix).
    pub name: String,
    /// The sequencer lease's lifetime: how long a dead sequencer blocks writing.
    pub lease_ttl: Duration,
    pub open: OpenLedger,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("log", &self.log)
            .field("name", &self.name)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// Default lease lifetime: a SIGKILLed sequencer is replaced within it plus a poll.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often a follower brings its copy up to date and tries for the lease.
const FOLLOW: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(crate) struct Status {
    stop: AtomicBool,
    /// The sequencer lease's fencing token while this node holds it, else 0.
    pub(crate) token: AtomicI64,
    error: Mutex<Option<String>>,
    /// The local copy's checkpoint-covered state, as last synced or written.
    copy: Mutex<Option<DurableState>>,
}

impl Status {
    fn set_copy(&self, st: Option<DurableState>) {
        *self
            .copy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = st;
    }

    fn note_error(&self, e: &dyn std::fmt::Display) {
        *self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
    }
}

/// A running node.
pub struct ClusterNode {
    rt: Option<tokio::runtime::Runtime>,
    holder: String,
    pool: PgPool,
    status: Arc<Status>,
    thread: Option<JoinHandle<()>>,
    journal: Arc<ClusterJournal>,
    log: PathBuf,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// Connects to the cluster's database (a small pool that fails fast when it is down).
/// When the URL asks for TLS, every connection the pool makes must have negotiated
/// TLS 1.3 (`warden_store::pgurl`), or it is dropped before it is used.
pub async fn connect(url: &str) -> Result<PgPool, ClusterError> {
    let tls = warden_store::pgurl::wants_tls(url);
    if tls {
        // One connection first, for a clear error: the pool would retry a refused one
        // until it timed out and say only that.
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .map_err(db("connect"))?;
        require_tls13(&mut c).await.map_err(db("connect"))?;
        let _ = sqlx::Connection::close(c).await;
    }
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(3))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if tls {
                    require_tls13(conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(db("connect"))
}

/// Fails unless the server says `conn` negotiated TLS 1.3.
async fn require_tls13(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let (ssl, version): (Option<bool>, Option<String>) =
        sqlx::query_as(warden_store::pgurl::TLS_QUERY)
            .fetch_optional(conn)
            .await?
            .unwrap_or((None, None));
    warden_store::pgurl::check_tls(ssl, version.as_deref()).map_err(|e| sqlx::Error::Tls(e.into()))
}

impl ClusterNode {
    /// Connects, creates the tables when missing, and starts following (and contending
    /// for the sequencer lease).
    pub fn start(opts: NodeOptions) -> Result<Self, ClusterError> {
        if opts.lease_ttl < Duration::from_millis(300) {
            return Err(ClusterError::Config(
                "the lease must last at least 300 ms".into(),
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("warden-cluster")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Config(format!("cannot start the cluster runtime: {e}")))?;
        let pool = rt.block_on(connect(&opts.database_url))?;
        rt.block_on(crate::schema::ensure(&pool))?;
        let journal = Arc::new(ClusterJournal::start(rt.handle(), pool.clone(), &opts.log)?);
        let status = Arc::new(Status::default());
        let mut suffix = [0u8; 4];
        aws_lc_rs::rand::fill(&mut suffix)
            .map_err(|_| ClusterError::Config("no randomness for the node's name".into()))?;
        let holder = format!(
            "{}/{}/{}",
            opts.name,
            std::process::id(),
            warden_core::hex::encode(&suffix)
        );
        let role = Role {
            journal: Arc::clone(&journal),
            rt: rt.handle().clone(),
            pool: pool.clone(),
            status: Arc::clone(&status),
            holder: holder.clone(),
            opts: opts.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("warden-cluster-role".into())
            .spawn(move || role.run())
            .map_err(|e| ClusterError::Config(format!("cannot start the node's thread: {e}")))?;
        Ok(Self {
            rt: Some(rt),
            holder,
            pool,
            status,
            thread: Some(thread),
            journal,
            log: opts.log,
        })
    }

    /// The journal this node's registry and server append through.
    #[must_use]
    pub fn journal(&self) -> Arc<ClusterJournal> {
        Arc::clone(&self.journal)
    }

    /// The fencing token of the sequencer lease this node holds now, if it does.
    #[must_use]
    pub fn sequencer_token(&self) -> Option<i64> {
        let t = self.status.token.load(Ordering::SeqCst);
        (t > 0).then_some(t)
    }

    /// The last error the node met (it keeps running and retrying).
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.status
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes, or keeps, the lease `name` for this node for `ttl`: `true` while this
    /// node holds it. For work that runs once per cluster (scheduled jobs): the holder
    /// calls it before each run; when the holder dies, another node gets the lease once
    /// `ttl` has passed. Callable from any runtime.
    pub async fn hold(&self, name: &str, ttl: Duration) -> Result<bool, ClusterError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| ClusterError::Config("the node is stopped".into()))?;
        let (pool, name, holder) = (self.pool.clone(), name.to_owned(), self.holder.clone());
        rt.spawn(async move { lease::acquire(&pool, &name, &holder, ttl).await })
            .await
            .map_err(|e| ClusterError::Config(format!("lease task: {e}")))?
            .map(|l| l.is_some())
    }

    /// Runs `f` on the node's runtime from a plain thread and waits for it.
    fn block<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        match &self.rt {
            Some(rt) => rt.block_on(f),
            None => Err(ClusterError::Config("the node is stopped".into())),
        }
    }

    /// From a plain thread: takes or keeps the lease `name` for `ttl` ([`Self::hold`]).
    pub fn hold_now(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, ClusterError> {
        self.block(lease::acquire(&self.pool, name, &self.holder, ttl))
    }

    /// From a plain thread: extends `lease`; `false` once it was lost.
    pub fn renew_now(&self, l: &Lease, ttl: Duration) -> Result<bool, ClusterError> {
        self.block(lease::renew(&self.pool, l, ttl))
    }

    /// From a plain thread: gives `lease` up, so another node takes it at once.
    pub fn release_now(&self, l: &Lease) -> Result<(), ClusterError> {
        self.block(lease::release(&self.pool, l))
    }

    /// The export cursor of `sink` kept in the database ([`crate::cursors`]).
    pub fn load_cursor(&self, sink: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        self.block(crate::cursors::load(&self.pool, sink))
    }

    /// Saves the export cursor of `sink`, never moving it back.
    pub fn save_cursor(&self, sink: &str, next: u64, cursor: &[u8]) -> Result<bool, ClusterError> {
        self.block(crate::cursors::save(&self.pool, sink, next, cursor))
    }

    /// Publishes the ledger to `objects` whenever this node holds the lease
    /// [`crate::publish::LEASE`], until `stop` turns true ([`crate::publish::run`]).
    pub fn publish<O: crate::publish::Objects>(
        &self,
        objects: O,
        stop: tokio::sync::watch::Receiver<bool>,
        say: impl Fn(String) + Send + Sync + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, ClusterError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| ClusterError::Config("the node is stopped".into()))?;
        Ok(rt.spawn(crate::publish::run(
            self.pool.clone(),
            self.holder.clone(),
            objects,
            stop,
            say,
        )))
    }

    /// Where the detectors of this node keep their learnt state for the next
    /// sequencer ([`crate::baselines`]), sealed by `sealer`.
    pub fn baselines(
        &self,
        sealer: warden_store::baselines::Sealer,
    ) -> Result<crate::baselines::NodeBaselines, ClusterError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| ClusterError::Config("the node is stopped".into()))?;
        Ok(crate::baselines::NodeBaselines {
            pool: self.pool.clone(),
            rt: rt.handle().clone(),
            status: Arc::clone(&self.status),
            sealer,
        })
    }

    /// The node's database pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Brings the local copy up to the database now (a follower does so every 100 ms),
    /// after any pull already under way; `None` when a sequencer's open ledger holds the
    /// copy (it keeps the copy current itself).
    pub fn sync(&self) -> Result<Option<Synced>, ClusterError> {
        self.block(mirror::sync(&self.pool, &self.log, None))
    }

    /// Stops: the sequencer, if this node is it, writes what it took and gives the
    /// lease up at once.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.status.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The role thread has finished with the database; what remains (the journal's
        // task) stops with the runtime. Shutting down in the background is also safe
        // when the last holder drops the node inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Role {
    journal: Arc<ClusterJournal>,
    rt: tokio::runtime::Handle,
    pool: PgPool,
    status: Arc<Status>,
    holder: String,
    opts: NodeOptions,
}

impl Role {
    fn stopping(&self) -> bool {
        self.status.stop.load(Ordering::SeqCst)
    }

    fn run(self) {
        // Database handles are made and dropped on this thread: inside the runtime.
        let _rt = self.rt.enter();
        let mut known: Option<Synced> = None;
        while !self.stopping() {
            let got = self.rt.block_on(lease::acquire(
                &self.pool,
                SEQUENCER,
                &self.holder,
                self.opts.lease_ttl,
            ));
            match got {
                Ok(Some(l)) => {
                    self.status.token.store(l.token, Ordering::SeqCst);
                    if let Err(e) = self.sequence(&l) {
                        self.status.note_error(&e);
                    }
                    self.status.token.store(0, Ordering::SeqCst);
                    // The copy may end in bytes that were never committed.
                    known = None;
                }
                Ok(None) => match self
                    .rt
                    .block_on(mirror::sync(&self.pool, &self.opts.log, known))
                {
                    Ok(s) => {
                        if s.is_some() && s != known {
                            self.status.set_copy(copy_state(&self.opts.log, s));
                        }
                        known = s;
                    }
                    Err(e) => {
                        self.status.note_error(&e);
                        known = None;
                    }
                },
                Err(e) => self.status.note_error(&e),
            }
            std::thread::sleep(FOLLOW);
        }
    }

    /// Opens the ledger over the synced copy, its writes teed to the database.
    fn open(&self, l: &Lease) -> Result<Ledger, ClusterError> {
        let log = &self.opts.log;
        let synced = self
            .rt
            .block_on(mirror::sync(&self.pool, log, None))?
            .ok_or_else(|| {
                ClusterError::Config(format!(
                    "another process of this data directory holds {}",
                    log.with_extension("lock").display()
                ))
            })?;
        let (root, mut opts) = (self.opts.open)()?;
        if opts.strict {
            return Err(ClusterError::Config(
                "strict mode (a signature per entry) is not supported on a cluster ledger yet"
                    .into(),
            ));
        }
        // One entries file: sealing renames it, which the database's copy has no use for.
        opts.segments = SegmentPolicy::never();
        let outbox = Outbox::new(self.rt.clone(), self.pool.clone(), l.clone(), synced);
        match Ledger::open_with(
            log,
            root,
            opts,
            Box::new(move |e, c| TeeFile::pair(e, c, outbox)),
        ) {
            Ok(ledger) => Ok(ledger),
            Err(e @ StoreError::Locked { .. }) => Err(e.into()),
            Err(e) => {
                // A copy the ledger cannot open is rebuilt from the database next time.
                for p in [log.clone(), checkpoints_path(log), tree_state_path(log)] {
                    let _ = std::fs::remove_file(p);
                }
                Err(e.into())
            }
        }
    }

    fn sequence(&self, l: &Lease) -> Result<(), ClusterError> {
        let ledger = match self.open(l) {
            Ok(x) => x,
            Err(e) => {
                let _ = self.rt.block_on(lease::release(&self.pool, l));
                return Err(e);
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = self.rt.spawn(renew(
            self.pool.clone(),
            l.clone(),
            self.opts.lease_ttl,
            Arc::clone(&lost),
        ));
        let mut ledger = Arc::new(ledger);
        // The detectors resume the last sequencer's state before they see an entry.
        self.journal.handover(true);
        self.journal.set_direct(Some(Arc::clone(&ledger)));
        let result = crate::sequence::run(&crate::sequence::Sequencing {
            rt: &self.rt,
            pool: &self.pool,
            ledger: &ledger,
            done: &|| self.stopping() || lost.load(Ordering::SeqCst),
            note_error: &|e| self.status.note_error(e),
            set_copy: &|st| self.status.set_copy(st),
            observer: &|| self.journal.observer(),
        });
        renewer.abort();
        // New entries go through the queue again; a submission under way still holds
        // the ledger for a moment.
        self.journal.set_direct(None);
        // ... and save theirs while the lease still holds (a lost lease refuses it).
        self.journal.handover(false);
        let ledger = loop {
            match Arc::try_unwrap(ledger) {
                Ok(l) => break l,
                Err(shared) => {
                    ledger = shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        // Closing drains the ledger: its last entries commit while the lease holds.
        ledger.close();
        if !lost.load(Ordering::SeqCst) {
            let _ = self.rt.block_on(lease::release(&self.pool, l));
        }
        result
    }
}

/// The copy's state after a sync: its lengths and the size its last checkpoint signs.
fn copy_state(log: &Path, s: Option<Synced>) -> Option<DurableState> {
    let s = s?;
    let size = warden_store::audit::latest_checkpoint(log)
        .ok()
        .flatten()
        .map_or(0, |r| r.size);
    Some(DurableState {
        size,
        entries_len: s.start + s.entries,
        checkpoints_len: s.checkpoints,
    })
}

/// Renews `l` every third of `ttl`; sets `lost` once it expired or was taken over.
async fn renew(pool: PgPool, l: Lease, ttl: Duration, lost: Arc<AtomicBool>) {
    let mut held_until = Instant::now() + ttl;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let asked = Instant::now();
        match lease::renew(&pool, &l, ttl).await {
            Ok(true) => held_until = asked + ttl,
            Ok(false) => break,
            Err(_) if Instant::now() < held_until => {}
            Err(_) => break,
        }
    }
    lost.store(true, Ordering::SeqCst);
}

/// A node is a journal: its entries go through the shared queue, and it keeps running
/// (following, or sequencing) for as long as it is held.
impl warden_store::journal::Journal for ClusterNode {
    fn submit(&self, kind: &str, event: &Event) -> Result<Ticket, AppendError> {
        self.journal.submit(kind, event)
    }

    fn path(&self) -> &Path {
        &self.log
    }

    /// The copy's checkpoint-covered prefix: what this node last synced from the
    /// database, or wrote as sequencer.
    fn durable_state(&self) -> Option<DurableState> {
        *self
            .status
            .copy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn detects_own(&self) -> bool {
        self.journal.detects_own()
    }

    fn observe_others(&self, f: warden_store::journal::Observer) {
        self.journal.observe_others(f);
    }

    fn on_handover(&self, f: warden_store::journal::Handover) {
        self.journal.on_handover(f);
    }
}
