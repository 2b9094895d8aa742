//! The sequencer's loop, run while a node holds the lease: take queued batches in
//! order, submit their entries to the ledger, and record what became of each.
//!
//! Two stages overlap: this thread takes and submits the next batches while a second
//! waits for the previous ones to commit and records their outcomes (at most two
//! groups in flight). Batches taken and not yet recorded are left out of the next take. A failure to record stops the loop; the node then takes its lease
//! again and starts over from the oldest unrecorded batch, whose entries the ledger
//! recognises by their request ids.

use crate::ClusterError;
use crate::queue::{self, Batch, Outcome};
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use warden_core::entry::Event;
use warden_store::error::{AppendError, StoreError};
use warden_store::journal::Observer;
use warden_store::ledger::{DurableState, Ledger, Ticket};

/// Most queued batches (of up to 5,000 entries each) taken at once.
const TAKE: i64 = 8;
/// Outcomes kept on finished batches this long (callers wait at most
/// [`crate::journal::DEADLINE`]).
const KEEP_OUTCOMES: Duration = Duration::from_secs(600);

/// What the loop needs from its node.
pub(crate) struct Sequencing<'a> {
    pub(crate) rt: &'a Handle,
    pub(crate) pool: &'a PgPool,
    pub(crate) ledger: &'a Ledger,
    /// True once the node stops or loses its lease.
    pub(crate) done: &'a (dyn Fn() -> bool + Sync),
    pub(crate) note_error: &'a (dyn Fn(&ClusterError) + Sync),
    pub(crate) set_copy: &'a (dyn Fn(Option<DurableState>) + Sync),
    /// This node's detectors, fed every entry other nodes (and processes) queued, and
    /// the request-id prefix of this node's own entries, which its manager feeds.
    /// (Asked at every take: detection starts after the node does.)
    pub(crate) observer: &'a (dyn Fn() -> Option<(Observer, [u8; 8])> + Sync),
}

/// An entry another node queued, kept to feed the detectors once it is written.
type Seen = Option<(String, Vec<u8>)>;

/// Entries of batches submitted, each a ticket or already an outcome (refused).
type Group = Vec<(i64, Vec<(Result<Ticket, Outcome>, Seen)>)>;

/// A group with what observes its other nodes' entries.
type Submitted = (Option<Observer>, Group);

/// Runs until the node stops, loses its lease, or the ledger or database fails.
pub(crate) fn run(s: &Sequencing<'_>) -> Result<(), ClusterError> {
    let failed = AtomicBool::new(false);
    let busy = std::sync::Mutex::new(Vec::<i64>::new());
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Submitted>(1);
        let recorder = scope.spawn(|| -> Result<(), ClusterError> {
            for (observer, group) in rx {
                let ids: Vec<i64> = group.iter().map(|(id, _)| *id).collect();
                let r = wait_all(group, observer.as_ref())
                    .map_err(|e| ClusterError::Store(StoreError::Config(e.to_string())))
                    .and_then(|done| {
                        (s.set_copy)(s.ledger.durable_state());
                        s.rt.block_on(queue::finish(s.pool, &done))
                    });
                if let Err(e) = r {
                    failed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                let mut b = busy
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                b.retain(|id| !ids.contains(id));
            }
            Ok(())
        });
        let taken = take_loop(s, &tx, &failed, &busy);
        drop(tx);
        let recorded = recorder
            .join()
            .unwrap_or_else(|_| Err(ClusterError::Config("the recording thread failed".into())));
        taken.and(recorded)
    })
}

fn take_loop(
    s: &Sequencing<'_>,
    tx: &std::sync::mpsc::SyncSender<Submitted>,
    failed: &AtomicBool,
    busy: &std::sync::Mutex<Vec<i64>>,
) -> Result<(), ClusterError> {
    let pending = crate::signal::Signal::listen(s.rt, s.pool.clone(), queue::PENDING);
    let mut pruned = Instant::now();
    loop {
        if (s.done)() || failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let skip = busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let batches = match s.rt.block_on(queue::take(s.pool, TAKE, &skip)) {
            Ok(b) => b,
            Err(e) => {
                (s.note_error)(&e);
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if batches.is_empty() {
            // This node's own entries go straight into the ledger: what they made
            // durable is the copy's state too.
            (s.set_copy)(s.ledger.durable_state());
            // A missed notification costs at most this wait.
            s.rt.block_on(pending.wait(Duration::from_millis(20)));
            continue;
        }
        busy.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(batches.iter().map(|b| b.id));
        let observer = (s.observer)();
        let own = observer.as_ref().map(|(_, session)| session);
        let group = submit_all(s.ledger, batches, own)
            .map_err(|e| ClusterError::Store(StoreError::Config(e.to_string())))?;
        if tx.send((observer.map(|(o, _)| o), group)).is_err() {
            return Ok(());
        }
        if pruned.elapsed() > Duration::from_secs(60) {
            pruned = Instant::now();
            if let Err(e) = s.rt.block_on(queue::prune(s.pool, KEEP_OUTCOMES)) {
                (s.note_error)(&e);
            }
        }
    }
}

/// Queues every entry of `batches` in order (they commit together). With `own` (the
/// request-id prefix of this node's entries, when detectors are listening), the other
/// nodes' entries are kept to be observed once written.
fn submit_all(
    ledger: &Ledger,
    batches: Vec<Batch>,
    own: Option<&[u8; 8]>,
) -> Result<Group, AppendError> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut tickets = Vec::with_capacity(b.entries.len());
        for e in b.entries {
            let seen = own
                .filter(|own| e.rid.get(..8) != Some(own.as_slice()))
                .map(|_| (e.kind.clone(), e.plaintext.clone()));
            tickets.push((
                match ledger.submit_plaintext_request(&e.kind, e.plaintext, e.rid) {
                    Ok(t) => Ok(t),
                    Err(AppendError::Invalid(r)) => Err(Outcome::Refused(r)),
                    Err(other) => return Err(other),
                },
                seen,
            ));
        }
        out.push((b.id, tickets));
    }
    Ok(out)
}

/// Waits for every ticket of a submitted group; the outcomes by batch. Each written
/// entry kept for the detectors is handed to `observer`.
fn wait_all(
    group: Group,
    observer: Option<&Observer>,
) -> Result<Vec<(i64, Vec<Outcome>)>, AppendError> {
    let mut done = Vec::with_capacity(group.len());
    for (id, tickets) in group {
        let mut outs = Vec::with_capacity(tickets.len());
        for (t, seen) in tickets {
            outs.push(match t {
                Err(refused) => refused,
                Ok(t) => match t.wait() {
                    Ok(r) => {
                        if let (Some(f), Some((kind, plaintext))) = (observer, seen)
                            && let Ok(ev) = Event::from_plaintext(&plaintext)
                        {
                            f(&kind, &ev, r.index);
                        }
                        Outcome::Written {
                            index: r.index,
                            size: r.size,
                            note: r.checkpoint.to_string(),
                        }
                    }
                    Err(AppendError::Invalid(r)) => Outcome::Refused(r),
                    Err(e) => return Err(e),
                },
            });
        }
        done.push((id, outs));
    }
    Ok(done)
}
