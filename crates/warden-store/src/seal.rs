//! Sealing and signing on every core: entries encrypted and hashed in parallel for a
//! large batch, checkpoints signed in groups on a worker thread (strict mode).

use crate::error::AppendError;
use crate::ticket::Pending;
use std::sync::Arc;
use std::thread::JoinHandle;
use warden_core::checkpoint::{Checkpoint, sign_checkpoint};
use warden_core::crypto::SigningKey;
use warden_core::entry::{self, Header};
use warden_core::epoch::{EpochKeys, nonce_from_counter};
use warden_core::merkle::{Hash, leaf_hash};
use warden_core::time::Timestamp;

/// Entries sealed by one thread: their line bytes (with newlines) and leaf hashes.
#[derive(Default)]
pub(crate) struct Sealed {
    pub(crate) lines: Vec<u8>,
    pub(crate) leaves: Vec<Hash>,
}

/// Batches at least this large are sealed and hashed on every core.
pub(crate) const PARALLEL_SEAL_MIN: usize = 512;

pub(crate) struct SealJob<'a> {
    pub(crate) origin: &'a str,
    pub(crate) epoch: &'a EpochKeys,
    pub(crate) now: Timestamp,
    /// Index of the batch's first entry, the one that carries `rotation`.
    pub(crate) batch_first: u64,
    pub(crate) rotation: Option<&'a str>,
}

impl SealJob<'_> {
    pub(crate) fn run(
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
                rid: it.rid,
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
pub(crate) const SIGN_GROUP: usize = 256;

/// A thread that signs checkpoints while the sequencer writes and fsyncs. It lives as
/// long as the ledger, so no batch pays for starting a thread.
pub(crate) struct SignWorker {
    pub(crate) tx: Option<std::sync::mpsc::Sender<(SignJob, SignAnswer)>>,
    pub(crate) handle: Option<JoinHandle<()>>,
}

/// Checkpoints to sign with an epoch key.
pub(crate) struct SignJob {
    pub(crate) cps: Vec<Checkpoint>,
    pub(crate) key: Arc<SigningKey>,
    pub(crate) key_name: String,
    pub(crate) secs: u64,
    pub(crate) strict: bool,
}

pub(crate) type SignReply = std::sync::mpsc::Receiver<Result<Vec<String>, AppendError>>;
pub(crate) type SignAnswer = std::sync::mpsc::SyncSender<Result<Vec<String>, AppendError>>;

impl SignWorker {
    pub(crate) fn start() -> std::io::Result<Self> {
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
    pub(crate) fn submit(&self, job: SignJob) -> SignReply {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        if let Some(tx) = &self.tx {
            // If the worker is gone, `reply` is dropped with the job and `wait` reports it.
            let _ = tx.send((job, reply));
        }
        answer
    }

    pub(crate) fn wait(answer: SignReply) -> Result<Vec<String>, AppendError> {
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
pub(crate) fn sign_group(
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
pub(crate) fn sign_parallel(
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
