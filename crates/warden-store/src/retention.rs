//! Retention: sealed segments whose every entry is older than the retention period are
//! removed, oldest first, after three steps that keep the rest verifiable:
//!
//! 1. the segments to remove are verified (from the previous removal's state, or the
//!    start), and nothing is removed unless they verify clean;
//! 2. a `retention.delete` entry recording what goes (files, index range, the signed
//!    root at its end) is made durable in the ledger;
//! 3. the index marks them removed with the verification state at their end, and only
//!    then are the files deleted.
//!
//! The checkpoints file is kept whole: every signed checkpoint, with the leaf hashes of
//! the removed entries, stays. A crash between the steps leaves either nothing removed
//! (the next run repeats it and records it again) or files the index already marks
//! removed, which the next run deletes.

use crate::error::{StoreError, io};
use crate::ledger::Receipt;
use crate::ledger::{DurableState, checkpoints_path};
use crate::segments::{Removal, SegmentRecord, load_index, segment_path, store_index};
use crate::ticket::lock;
use serde::Serialize;
use std::path::Path;
use warden_core::entry::Event;
use warden_core::time::Timestamp;
use warden_core::verify::{ResumeState, VerifyConfig};

/// Kind of the ledger entry that records a removal.
pub use warden_core::verify::KIND_RETENTION;

/// What a run would remove (or removed).
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The segments, oldest first.
    pub segments: Vec<SegmentRecord>,
    /// Index after the last removed entry.
    pub end: u64,
    /// Root (hex) of the tree of `end` entries, as signed by the checkpoint at `end`.
    pub root: String,
    /// Verification state at `end`.
    #[serde(skip)]
    pub resume: Option<ResumeState>,
}

impl Plan {
    /// Entries removed.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.end - self.segments.first().map_or(self.end, |s| s.first)
    }

    /// Bytes removed.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// The details of the `retention.delete` entry.
    #[must_use]
    pub fn details(&self, keep_secs: u64) -> serde_json::Value {
        let segs: Vec<_> = self
            .segments
            .iter()
            .map(|s| {
                serde_json::json!({
                    "file": s.file, "first": s.first, "end": s.end, "bytes": s.bytes,
                    "first_time": s.first_time, "last_time": s.last_time,
                })
            })
            .collect();
        serde_json::json!({
            "segments": segs,
            "entries": self.entries(),
            "bytes": self.bytes(),
            "tree_size": self.end,
            "root": self.root,
            "retention_secs": keep_secs,
        })
    }
}

/// Finds the sealed segments past retention at `now` (every entry older than
/// `keep_secs`), never one holding an entry at or after `hold` (e.g. the first index a
/// SIEM sink has not exported), and verifies them. `Ok(None)`: nothing to remove.
pub fn plan(
    log: &Path,
    keep_secs: u64,
    now: Timestamp,
    hold: Option<u64>,
    cfg: VerifyConfig,
) -> Result<Option<Plan>, StoreError> {
    let index = load_index(log)?;
    let cutoff = now
        .as_micros()
        .saturating_sub(keep_secs.saturating_mul(1_000_000));
    let mut segments = Vec::new();
    for rec in index.iter().filter(|r| r.removed.is_none()) {
        let last = Timestamp::parse(rec.last_time.as_bytes()).map_err(|e| StoreError::Format {
            path: crate::segments::index_path(log),
            detail: format!("segment {}: {e}", rec.file),
        })?;
        if last.as_micros() >= cutoff || hold.is_some_and(|h| rec.end > h) {
            break;
        }
        segments.push(rec.clone());
    }
    let Some(last) = segments.last() else {
        return Ok(None);
    };
    let bound = DurableState {
        size: last.end,
        entries_len: last.offset + last.bytes,
        checkpoints_len: last.checkpoints_offset,
    };
    let out = crate::verify::verify_prefix(
        log,
        &checkpoints_path(log),
        cfg,
        Vec::new(),
        None,
        Some(bound),
        &mut |_, _| {},
    )?;
    if !out.report.is_clean() {
        let first = out
            .report
            .findings
            .first()
            .map(|f| format!("{:?} at {}: {}", f.code, f.index, f.message))
            .unwrap_or_default();
        return Err(StoreError::Config(format!(
            "refusing to remove segments that do not verify ({} problem(s); first: {first}); run `warden verify`",
            out.report.findings.len()
        )));
    }
    let Some(resume) = out.resume.filter(|r| r.size == last.end) else {
        return Err(StoreError::Corrupt {
            detail: format!(
                "no verified checkpoint ends segment {} at size {}",
                last.file, last.end
            ),
        });
    };
    let root = range_root(&resume)?;
    Ok(Some(Plan {
        end: last.end,
        root,
        resume: Some(resume),
        segments,
    }))
}

fn range_root(st: &ResumeState) -> Result<String, StoreError> {
    let range = crate::segments::decode_range(st.size, &st.range)?;
    Ok(warden_core::hex::encode(&range.root()))
}

/// Marks `plan`'s segments removed (recorded by ledger entry `entry`) and deletes
/// their files, then any file the index already marks removed. Call with the index
/// lock held (see [`crate::ledger::Ledger::apply_retention`]).
pub(crate) fn commit(
    log: &Path,
    plan: &Plan,
    entry: u64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut index = load_index(log)?;
    let last = plan.segments.last().map(|s| s.segment);
    for rec in &mut index {
        if plan.segments.iter().any(|s| s.segment == rec.segment) {
            if rec.removed.is_some() {
                return Err(StoreError::Config(format!(
                    "segment {} was removed by another run",
                    rec.file
                )));
            }
            rec.removed = Some(Removal {
                at: now.to_string(),
                entry,
                resume: if Some(rec.segment) == last {
                    plan.resume.clone()
                } else {
                    None
                },
            });
        } else if rec.removed.is_some() {
            // An older removal's state is superseded by the new one.
            if let Some(r) = &mut rec.removed {
                r.resume = None;
            }
        }
    }
    store_index(log, &index)?;
    remove_marked(log, &index)
}

/// Deletes the files of segments the index marks removed.
pub(crate) fn remove_marked(log: &Path, index: &[SegmentRecord]) -> Result<(), StoreError> {
    let mut any = false;
    for rec in index.iter().filter(|r| r.removed.is_some()) {
        let p = segment_path(log, rec);
        match std::fs::remove_file(&p) {
            Ok(()) => any = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &p)(e)),
        }
    }
    if any {
        let dir = log.parent().unwrap_or(Path::new("."));
        crate::durable::sync_dir(dir).map_err(io("sync", dir))?;
    }
    Ok(())
}

impl crate::ledger::Ledger {
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
}
