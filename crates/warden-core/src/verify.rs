//! The streaming ledger verifier.
//!
//! It is fed entry lines (with their precomputed leaf hashes) and checkpoint records in
//! log order, re-derives everything, and collects one [`Finding`] per problem, each
//! naming the entry index or checkpoint number and why. It never stops at the first
//! problem, and uses the signed leaf lists to keep checking after a damaged entry.

use crate::checkpoint::{epoch_key_name, verify_checkpoint};
use crate::crypto::DataKey;
use crate::entry::{self, EntryRef, Event, KIND_ROTATION};
use crate::epoch::{Closure, EpochInfo, RotationRecord, nonce_counter};
use crate::merkle::{CompactRange, Hash, leaf_hash};
use crate::note::Note;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;

mod checkpoints;
mod history;
mod trusted;

pub use checkpoints::{Prechecked, precheck};

pub use crate::findings::{
    Code, Finding, KIND_RETENTION, Location, PendingTail, Report, ResumeState, VerifyConfig,
};

#[derive(Debug)]
struct Epoch {
    info: EpochInfo,
    data: Option<Arc<DataKey>>,
    last_nonce: Option<u64>,
    /// Whether the certificate verified; unverified epochs report once.
    trusted: bool,
}

/// Decrypts an entry and checks the plaintext is an event; `scratch` is reused.
pub fn decrypt_check(e: &EntryRef<'_>, key: &DataKey, scratch: &mut Vec<u8>) -> Result<(), String> {
    e.open(key, scratch).map_err(|err| err.to_string())?;
    Event::check_plaintext(scratch)
        .map_err(|err| format!("decrypted payload is not an event: {err}"))
}

/// The verifier. Feed entries and checkpoints in order, then call [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    cfg: VerifyConfig,
    range: CompactRange,
    /// Range at the last checkpoint, and leaves seen since.
    base: CompactRange,
    batch: Vec<Hash>,
    epochs: HashMap<u64, Epoch>,
    current: Option<u64>,
    last_entry_epoch: Option<u64>,
    last_time: Option<Timestamp>,
    index_offset: i128,
    last_cp_size: u64,
    last_cp_epoch: Option<u64>,
    last_note: Option<String>,
    rotation_at: Option<(u64, Vec<u8>)>,
    trusted: Vec<(Note, Option<Hash>)>,
    trusted_sizes: Vec<u64>,
    report: Report,
    reported_untrusted: std::collections::HashSet<u64>,
    scratch: Vec<u8>,
    /// With deferred decryption: entries to decrypt, by log position.
    decrypt_jobs: Option<Vec<(u64, Arc<DataKey>)>>,
    /// With a removal of the log's start: the index of the entry said to record it,
    /// whether it did, and whether the run reads to the log's end (else an entry past
    /// where it stops is not checked).
    removal: Option<(u64, bool, bool)>,
    /// A size and root a previous run verified, which this log must still hold, and
    /// the root the log has at that size (once read).
    history: Option<(u64, Hash, Option<Hash>)>,
    /// Trusted checkpoints older than a removed prefix, with the root the kept leaf
    /// lists give at their size (or why there is none).
    trusted_removed: Vec<(Note, Result<Hash, String>)>,
    /// The root of the removed prefix (see [`Verifier::expect_removal`]).
    removed_root: Option<Hash>,
    /// Checkpoint records decoded and their signatures checked ahead, on every core,
    /// by their number (see [`Verifier::add_prechecked`]).
    prechecked: HashMap<u64, Prechecked>,
}

impl Verifier {
    /// A verifier for a log from its first entry.
    #[must_use]
    pub fn new(cfg: VerifyConfig) -> Self {
        Self {
            cfg,
            range: CompactRange::new(),
            base: CompactRange::new(),
            batch: Vec::new(),
            epochs: HashMap::new(),
            current: None,
            last_entry_epoch: None,
            last_time: None,
            index_offset: 0,
            last_cp_size: 0,
            last_cp_epoch: None,
            last_note: None,
            rotation_at: None,
            trusted: Vec::new(),
            trusted_sizes: Vec::new(),
            report: Report::default(),
            reported_untrusted: std::collections::HashSet::new(),
            scratch: Vec::new(),
            decrypt_jobs: None,
            removal: None,
            history: None,
            trusted_removed: Vec::new(),
            removed_root: None,
            prechecked: HashMap::new(),
        }
    }

    /// Entries before `size` were removed by retention (the verifier resumed at
    /// `size`), recorded by entry `entry`: that entry must be a `retention.delete`
    /// entry after them. `to_end`: this run reads the whole log, so the entry must be
    /// in it; otherwise it is checked only if the run reaches it.
    pub fn expect_removal(&mut self, size: u64, entry: u64, to_end: bool) {
        self.report.removed = size;
        self.removal = Some((entry, false, to_end));
        // Resumed at the removal's state: this is the signed root of what was removed.
        self.removed_root = Some(self.range.root());
    }

    /// A verifier that continues after a previously verified checkpoint. The state is
    /// re-checked: the epoch certificate against the root key, the checkpoint signature
    /// against the epoch key, and the compact range against the signed root.
    pub fn resume(cfg: VerifyConfig, st: &ResumeState) -> Result<Self, String> {
        let mut v = Self::new(cfg);
        v.load_state(st)?;
        Ok(v)
    }

    /// Takes `st` as the state verified so far (see [`Verifier::resume`]).
    fn load_state(&mut self, st: &ResumeState) -> Result<(), String> {
        let v = self;
        if st.origin != v.cfg.root.origin {
            return Err("resume state is for another log origin".into());
        }
        let line = st.rotation_line.as_bytes();
        let e = entry::parse_line(line).map_err(|e| format!("resume state rotation entry: {e}"))?;
        v.pos_rotation(st.rotation_index, &e, line, true)?;
        let ep = v
            .epochs
            .get(&st.checkpoint_epoch)
            .ok_or("resume state checkpoint epoch is not its rotation's epoch")?;
        let note =
            Note::parse(st.note.as_bytes()).map_err(|e| format!("resume state checkpoint: {e}"))?;
        let name = epoch_key_name(&v.cfg.root.origin, st.checkpoint_epoch);
        let cp = verify_checkpoint(&note, &name, &ep.info.key, &v.cfg.root.origin)
            .map_err(|e| format!("resume state checkpoint: {e}"))?;
        let hashes = st
            .range
            .iter()
            .map(|h| crate::hex::decode_array::<32>(h.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("resume state range: {e}"))?;
        let range = CompactRange::from_parts(st.size, hashes)
            .ok_or("resume state range does not fit its size")?;
        if range.root() != cp.root || cp.size != st.size {
            return Err("resume state range does not match the signed checkpoint".into());
        }
        v.range = range.clone();
        v.base = range;
        v.last_cp_size = st.size;
        v.last_cp_epoch = Some(st.checkpoint_epoch);
        v.last_entry_epoch = Some(st.checkpoint_epoch);
        v.last_note = Some(st.note.clone());
        v.last_time = Some(Timestamp::parse(st.last_time.as_bytes()).map_err(|e| e.to_string())?);
        if let Some(ep) = v.epochs.get_mut(&st.checkpoint_epoch) {
            ep.last_nonce = st.last_nonce;
        }
        v.report.entries = st.size;
        v.report.checkpoints = st.checkpoints;
        v.report.verified_size = st.size;
        Ok(())
    }

    /// State to resume from after this run, if the log ended on a verified checkpoint.
    #[must_use]
    pub fn resume_state(
        &self,
        entries_offset: u64,
        checkpoints_offset: u64,
    ) -> Option<ResumeState> {
        if !self.report.is_clean() || self.last_cp_size != self.range.size() {
            return None;
        }
        let epoch = self.last_cp_epoch?;
        let (rotation_index, rotation_line) = self.rotation_at.clone()?;
        Some(ResumeState {
            origin: self.cfg.root.origin.clone(),
            size: self.range.size(),
            checkpoints: self.report.checkpoints,
            entries_offset,
            checkpoints_offset,
            range: self
                .range
                .hashes()
                .iter()
                .map(|h| crate::hex::encode(h))
                .collect(),
            note: self.last_note.clone()?,
            checkpoint_epoch: epoch,
            rotation_index,
            rotation_line: String::from_utf8(rotation_line).ok()?,
            last_time: self.last_time?.to_string(),
            last_nonce: self.epochs.get(&epoch).and_then(|e| e.last_nonce),
        })
    }

    /// Whether an auditor key was given, so entries are decrypted.
    #[must_use]
    pub fn decrypts(&self) -> bool {
        self.cfg.auditor.is_some()
    }

    /// Entries fed so far.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.range.size()
    }

    fn find(&mut self, location: Location, index: u64, code: Code, message: impl Into<String>) {
        let position = match location {
            Location::Entry => index,
            Location::Checkpoint => self.range.size(),
        };
        self.report.findings.push(Finding {
            location,
            index,
            position,
            code,
            message: message.into(),
        });
    }

    /// Feeds the next entry line (without newline). `leaf` must be its RFC 6962 leaf hash.
    pub fn entry(&mut self, line: &[u8], leaf: Hash) {
        self.entry_parsed(line, leaf, entry::parse_line(line));
    }

    /// Like [`Verifier::entry`], with the line already parsed (and hashed) elsewhere,
    /// e.g. on another thread. `parsed` must be `parse_line(line)`.
    pub fn entry_parsed(
        &mut self,
        line: &[u8],
        leaf: Hash,
        parsed: Result<EntryRef<'_>, crate::error::DecodeError>,
    ) {
        let p = self.range.size();
        self.range.push(leaf);
        self.batch.push(leaf);
        self.report.entries = p + 1;
        match parsed {
            Err(e) => self.find(Location::Entry, p, Code::Malformed, e.to_string()),
            Ok(e) => self.check_entry(p, &e, line),
        }
        self.check_trusted_at(p + 1);
    }

    /// Defers decryption: instead of decrypting as entries arrive, the verifier queues
    /// (position, key) jobs for [`Verifier::take_decrypt_jobs`]; the caller runs
    /// [`decrypt_check`] (on any thread) and reports with [`Verifier::decrypted`].
    pub fn defer_decryption(&mut self) {
        self.decrypt_jobs.get_or_insert_with(Vec::new);
    }

    /// The decryption jobs queued since the last call.
    pub fn take_decrypt_jobs(&mut self) -> Vec<(u64, Arc<DataKey>)> {
        self.decrypt_jobs
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Records the outcome of a deferred decryption of the entry at `position`.
    pub fn decrypted(&mut self, position: u64, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.report.decrypted += 1,
            Err(m) => self.find(Location::Entry, position, Code::DecryptFailed, m),
        }
    }

    fn check_entry(&mut self, p: u64, e: &EntryRef<'_>, line: &[u8]) {
        let h = &e.header;
        if h.origin != self.cfg.root.origin {
            self.find(
                Location::Entry,
                p,
                Code::WrongOrigin,
                format!("origin {:?} is not the log's origin", h.origin),
            );
        }
        let offset = i128::from(h.index) - i128::from(p);
        if offset != self.index_offset || (offset != 0 && p == 0) {
            self.find(Location::Entry, p, Code::IndexMismatch, format!("line at position {p} claims index {}: an entry is missing, duplicated or moved", h.index));
            self.index_offset = offset;
        }
        if let Some(t) = self.last_time
            && h.time < t
        {
            self.find(
                Location::Entry,
                p,
                Code::TimeRegressed,
                format!("time {} is earlier than the previous entry's {t}", h.time),
            );
        }
        self.last_time = Some(h.time);
        if h.kind == KIND_RETENTION
            && let Some((entry, seen, _)) = &mut self.removal
            && *entry == p
        {
            *seen = true;
            self.check_removal_record(p, e);
        }
        if h.kind == KIND_ROTATION {
            if let Err(m) = self.pos_rotation(p, e, line, false) {
                self.find(Location::Entry, p, Code::BadRotation, m);
            }
            return;
        }
        if p == 0 {
            self.find(
                Location::Entry,
                p,
                Code::FirstEntryNotRotation,
                "the log must start with a key.rotation entry",
            );
        }
        let Some(cur) = self.current else {
            self.find(
                Location::Entry,
                p,
                Code::NoEpoch,
                "entry precedes every epoch",
            );
            return;
        };
        self.last_entry_epoch = Some(h.epoch);
        if h.epoch != cur {
            self.find(
                Location::Entry,
                p,
                Code::EpochMismatch,
                format!("entry claims epoch {} but epoch {cur} is current", h.epoch),
            );
        }
        self.check_in_epoch(p, e, cur);
    }

    /// Time window, nonce and (with an auditor key) decryption of an entry of epoch `cur`.
    fn check_in_epoch(&mut self, p: u64, e: &EntryRef<'_>, cur: u64) {
        let Some(ep) = self.epochs.get_mut(&cur) else {
            return;
        };
        let (nb, na) = (ep.info.not_before, ep.info.not_after);
        let nonce = nonce_counter(&e.header.nonce);
        let reused = match (nonce, ep.last_nonce) {
            (None, _) => Some("nonce is not an epoch counter".to_owned()),
            (Some(n), Some(last)) if n <= last => Some(format!(
                "nonce counter {n} does not increase (previous {last})"
            )),
            _ => None,
        };
        if let Some(n) = nonce {
            ep.last_nonce = Some(n);
        }
        let mut decrypt_err = None;
        if let Some(key) = &ep.data {
            if let Some(jobs) = &mut self.decrypt_jobs {
                jobs.push((p, Arc::clone(key)));
            } else {
                match decrypt_check(e, key, &mut self.scratch) {
                    Ok(()) => self.report.decrypted += 1,
                    Err(m) => decrypt_err = Some(m),
                }
            }
        }
        let t = e.header.time;
        if t < nb || t > na {
            self.find(
                Location::Entry,
                p,
                Code::OutsideEpoch,
                format!("time {t} is outside epoch {cur} ({nb} .. {na})"),
            );
        }
        if let Some(m) = reused {
            self.find(Location::Entry, p, Code::NonceReused, m);
        }
        if let Some(m) = decrypt_err {
            self.find(Location::Entry, p, Code::DecryptFailed, m);
        }
    }

    /// Handles a `key.rotation` entry at position `p`. `resuming` skips the closure
    /// checks (their evidence precedes the resume point).
    fn pos_rotation(
        &mut self,
        p: u64,
        e: &EntryRef<'_>,
        line: &[u8],
        resuming: bool,
    ) -> Result<(), String> {
        let h = &e.header;
        let rec =
            RotationRecord::decode(h.rotation.unwrap_or_default()).map_err(|e| e.to_string())?;
        let verified = rec.verify(&self.cfg.root);
        let (info, trusted) = match verified {
            Ok(v) => (v.into_inner(), true),
            Err(err) => {
                self.find(
                    Location::Entry,
                    p,
                    Code::BadCertificate,
                    format!("epoch {}: {err}", h.epoch),
                );
                let info = EpochInfo {
                    epoch: h.epoch,
                    key: self.cfg.root.key.clone(),
                    not_before: h.time,
                    not_after: h.time,
                };
                (info, false)
            }
        };
        if info.epoch != h.epoch {
            self.find(
                Location::Entry,
                p,
                Code::EpochMismatch,
                format!(
                    "certificate is for epoch {} but the entry says {}",
                    info.epoch, h.epoch
                ),
            );
        }
        if !resuming {
            let expected = self.current.map_or(0, |c| c + 1);
            if h.epoch != expected {
                self.find(
                    Location::Entry,
                    p,
                    Code::EpochNotSequential,
                    format!(
                        "epoch {} follows epoch {:?}; expected {expected}",
                        h.epoch, self.current
                    ),
                );
            }
            match (self.current, rec.closes) {
                (None, None) => {}
                (Some(prev), Some(Closure { epoch, size })) if epoch == prev && size == p => {
                    if self.last_cp_size != p || self.last_cp_epoch != Some(prev) {
                        self.find(Location::Entry, p, Code::MissingClosure, format!("epoch {prev} was not closed by a checkpoint of size {p} signed with its key"));
                    }
                }
                (prev, closes) => self.find(
                    Location::Entry,
                    p,
                    Code::MissingClosure,
                    format!(
                        "rotation closes {closes:?} but the log is at epoch {prev:?}, size {p}"
                    ),
                ),
            }
        }
        let window = info
            .not_after
            .as_micros()
            .saturating_sub(info.not_before.as_micros());
        if trusted && window > self.cfg.max_epoch_micros {
            self.find(
                Location::Entry,
                p,
                Code::EpochTooLong,
                format!(
                    "epoch {} lasts {} s, longer than the rotation interval of {} s",
                    h.epoch,
                    window / 1_000_000,
                    self.cfg.max_epoch_micros / 1_000_000
                ),
            );
        }
        let mut data = None;
        if let Some(a) = &self.cfg.auditor {
            match rec.unwrap_data_key(a) {
                Ok(Some(k)) => data = Some(Arc::new(k)),
                Ok(None) => self.find(
                    Location::Entry,
                    p,
                    Code::NotWrappedToAuditor,
                    format!(
                        "epoch {}: data key is not wrapped to auditor {}",
                        h.epoch,
                        a.public().id()
                    ),
                ),
                Err(err) => self.find(
                    Location::Entry,
                    p,
                    Code::DecryptFailed,
                    format!("epoch {}: cannot unwrap data key: {err}", h.epoch),
                ),
            }
        }
        self.epochs.insert(
            h.epoch,
            Epoch {
                info,
                data,
                last_nonce: None,
                trusted,
            },
        );
        self.current = Some(h.epoch);
        self.last_entry_epoch = Some(h.epoch);
        self.report.epochs += 1;
        self.rotation_at = Some((p, line.to_vec()));
        self.check_in_epoch(p, e, h.epoch);
        Ok(())
    }

    /// Ends the run: uncovered entries, trusted checkpoints, truncation.
    #[must_use]
    pub fn finish(mut self) -> Report {
        let n = self.range.size();
        if self.last_cp_size < n && self.report.checkpoints == 0 {
            // With no signed checkpoint at all nothing vouches for any entry.
            let m = format!("entries 0..{n} are not covered by any signed checkpoint");
            self.find(Location::Entry, 0, Code::UncoveredEntries, m);
        } else if self.last_cp_size < n {
            // A tail after the last checkpoint was never acknowledged: pending
            // recovery, not a finding against the log (see `PendingTail`).
            let from = self.last_cp_size;
            let (notes, keep) = std::mem::take(&mut self.report.findings)
                .into_iter()
                .partition(|f| f.location == Location::Entry && f.index >= from);
            self.report.findings = keep;
            self.report.pending = Some(PendingTail { from, to: n, notes });
        }
        if let Some((entry, false, to_end)) = self.removal
            && (to_end || entry < n)
        {
            let r = self.report.removed;
            self.find(
                Location::Entry,
                r,
                Code::RemovalNotRecorded,
                format!("entries 0..{r} were removed, but entry {entry}, said to record it, is not a retention.delete entry"),
            );
        }
        let trusted = std::mem::take(&mut self.trusted);
        for (note, root_at) in trusted {
            self.finish_trusted(n, &note, root_at);
        }
        self.finish_history(n);
        for (note, root) in std::mem::take(&mut self.trusted_removed) {
            self.finish_trusted_removed(&note, root);
        }
        self.report
            .findings
            .sort_by_key(|f| (f.position, f.location == Location::Checkpoint, f.index));
        self.report
    }
}

/// Computes the leaf hash of a line (convenience for drivers).
#[must_use]
pub fn leaf_of(line: &[u8]) -> Hash {
    leaf_hash(line)
}
