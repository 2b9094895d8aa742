//! The sequencer: one thread takes queued entries, seals them into the active segment,
//! signs a checkpoint, syncs, then completes their tickets (group commit). It rotates
//! epochs and seals segments when due.

use crate::durable::{AppendFile, FsFile};
use crate::error::{AppendError, StoreError, io};
use crate::keys::RootKey;
use crate::layout::{DurableState, IndexLock};
use crate::options::LedgerOptions;
use crate::seal::{PARALLEL_SEAL_MIN, SIGN_GROUP, SealJob, Sealed, SignJob, SignWorker};
use crate::segments::SegmentRecord;
use crate::ticket::{Outcome, Pending, Slot, lock};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use warden_core::checkpoint::Checkpoint;
use warden_core::entry::{Event, KIND_ROTATION};
use warden_core::epoch::{Closure, EpochKeys, EpochParams, EpochSecrets, start_epoch};
use warden_core::merkle::{CompactRange, Hash};
use warden_core::record::{CheckpointRecord, MAX_BATCH};
use warden_core::time::Timestamp;

pub(crate) struct Queue {
    pub(crate) items: Vec<Pending>,
    pub(crate) slot: Arc<Slot>,
    pub(crate) closed: bool,
    pub(crate) failed: Option<String>,
    pub(crate) wake: bool,
}

pub(crate) struct Shared {
    pub(crate) queue: Mutex<Queue>,
    pub(crate) work: Condvar,
    pub(crate) space: Condvar,
    /// The files' state after the last batch that became durable.
    pub(crate) durable: Mutex<Option<DurableState>>,
}

/// The active segment: the entries file being written.
pub(crate) struct Active {
    /// Number the segment gets when sealed.
    pub(crate) number: u64,
    /// Index of its first entry.
    pub(crate) first: u64,
    /// Time of its first entry, once it has one.
    pub(crate) first_time: Option<Timestamp>,
    /// Logical offset of its first byte.
    pub(crate) base: u64,
}

/// The sequencer's state.
pub(crate) struct Writer {
    pub(crate) opts: LedgerOptions,
    pub(crate) root: RootKey,
    pub(crate) log: PathBuf,
    pub(crate) active: Active,
    pub(crate) index_lock: IndexLock,
    pub(crate) entries: Box<dyn AppendFile>,
    pub(crate) checkpoints: Box<dyn AppendFile>,
    pub(crate) range: CompactRange,
    pub(crate) epoch: EpochKeys,
    pub(crate) last_time: Timestamp,
    /// Reused sealing buffers, one per thread.
    pub(crate) bufs: Vec<Sealed>,
    /// Tree size when the tree state was last saved.
    pub(crate) tree_saved: u64,
    pub(crate) signer: SignWorker,
}

pub(crate) fn rotation_item(
    reason: &str,
    cut_entries: u64,
    cut_bytes: u64,
) -> Result<Pending, StoreError> {
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
        rid: None,
    })
}

pub(crate) fn new_epoch(
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

pub(crate) fn sequencer(shared: &Shared, mut w: Writer) {
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
                if q.failed.is_none() {
                    w.save_tree();
                }
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
            if w.range.size() >= w.tree_saved + crate::treestate::SAVE_EVERY {
                w.save_tree();
            }
        }
        if let Err(AppendError::Io(m)) = &result {
            // A write failed: the files' state is uncertain. Stop; reopening recovers.
            lock(&shared.queue).failed = Some(m.clone());
            shared.space.notify_all();
        }
        slot.complete(result.map(Arc::new));
    }
}

impl Writer {
    /// Saves the tree state (a cache that spares the next open a rehash; a failure to
    /// save only costs that).
    pub(crate) fn save_tree(&mut self) {
        let _ = crate::treestate::save(
            &self.log,
            self.active.number,
            self.active.first,
            &self.range,
            self.entries.len(),
        );
        self.tree_saved = self.range.size();
    }

    /// The files' consistent state now.
    pub(crate) fn durable(&self) -> DurableState {
        DurableState {
            size: self.range.size(),
            entries_len: self.active.base + self.entries.len(),
            checkpoints_len: self.checkpoints.len(),
        }
    }

    /// Seals the active segment if a batch stamped `now` may not join it.
    pub(crate) fn seal_if_due(&mut self, now: Timestamp) -> Result<(), AppendError> {
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
    pub(crate) fn seal_segment(&mut self, first_time: Timestamp) -> Result<(), StoreError> {
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
    pub(crate) fn batch(&mut self, items: Vec<Pending>) -> Result<Outcome, AppendError> {
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
    pub(crate) fn commit(
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
        if let Some(r) = &rotation {
            let _ = crate::layout::publish_epoch(&self.log, r);
        }
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
    pub(crate) fn seal(
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
