//! Checkpoint records in log order: each one's place, signature, and root against
//! the entries read so far (naming the entries that differ when the root does not
//! match). Decoding a record and checking its signature do not depend on the order,
//! so a driver may do them ahead, on every core ([`precheck`]); the ordered pass then
//! uses that answer only when it was reached with the key this pass trusts for the
//! record's epoch.

use super::Verifier;
use crate::checkpoint::{Checkpoint, epoch_key_name, verify_checkpoint};
use crate::crypto::VerifyingKey;
use crate::epoch::RotationRecord;
use crate::findings::{Code, Location};
use crate::note::Note;
use crate::record::CheckpointRecord;

/// A signature checked ahead: with which epoch and key, and what it gave.
#[derive(Debug)]
struct Ahead {
    epoch: u64,
    key: VerifyingKey,
    outcome: Result<Checkpoint, String>,
}

/// A checkpoint record decoded ahead of the ordered pass, with its signature checked
/// when a key for its epoch was known.
#[derive(Debug)]
pub struct Prechecked {
    rec: CheckpointRecord,
    note: Note,
    sig: Option<Ahead>,
}

/// Decodes checkpoint record `line` and checks its signature with the key `keys`
/// holds for its epoch. `None` when the line does not decode: the ordered pass reports
/// it.
#[must_use]
pub fn precheck(line: &[u8], keys: &[(u64, VerifyingKey)], origin: &str) -> Option<Prechecked> {
    let rec = CheckpointRecord::decode(line).ok()?;
    let note = Note::parse(rec.note.as_bytes()).ok()?;
    let sig = keys
        .iter()
        .find(|(e, _)| *e == rec.epoch)
        .map(|(epoch, key)| Ahead {
            epoch: *epoch,
            key: key.clone(),
            outcome: verify_checkpoint(&note, &epoch_key_name(origin, *epoch), key, origin)
                .map(|cp| cp.into_inner())
                .map_err(|e| e.to_string()),
        });
    Some(Prechecked { rec, note, sig })
}

impl Verifier {
    /// Hands the ordered pass checkpoint record `k` decoded and checked ahead.
    pub fn add_prechecked(&mut self, k: u64, p: Prechecked) {
        self.prechecked.insert(k, p);
    }

    /// Keys to check signatures ahead with: the current epoch's, when its certificate
    /// verified, and those the certificates in `rotations` (the `rotation` fields of
    /// entries not yet fed) name. These are not verified here: the ordered pass verifies
    /// each certificate and uses an answer only when it was reached with that key.
    #[must_use]
    pub fn precheck_keys<'a>(
        &self,
        rotations: impl Iterator<Item = &'a str>,
    ) -> Vec<(u64, VerifyingKey)> {
        let mut keys: Vec<(u64, VerifyingKey)> = self
            .current
            .and_then(|c| self.epochs.get(&c).map(|ep| (c, ep)))
            .filter(|(_, ep)| ep.trusted)
            .map(|(c, ep)| (c, ep.info.key.clone()))
            .into_iter()
            .collect();
        for r in rotations {
            if let Some(k) = RotationRecord::decode(r)
                .ok()
                .and_then(|rec| rec.claimed_key().ok())
            {
                keys.push(k);
            }
        }
        keys
    }

    /// The origin checkpoints must name.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.cfg.root.origin
    }

    /// Size the next checkpoint record must be fed at: call [`Verifier::checkpoint`]
    /// when [`Verifier::position`] reaches the record's `size`.
    pub fn checkpoint(&mut self, k: u64, line: &[u8]) {
        self.report.checkpoints = k + 1;
        let pre = self.prechecked.remove(&k);
        let (rec, note, sig) = match pre {
            Some(p) => (p.rec, Some(p.note), p.sig),
            None => match CheckpointRecord::decode(line) {
                Ok(r) => (r, None, None),
                Err(e) => {
                    return self.find(
                        Location::Checkpoint,
                        k,
                        Code::CheckpointMalformed,
                        e.to_string(),
                    );
                }
            },
        };
        let pos = self.range.size();
        if rec.size > pos {
            let m = format!(
                "checkpoint {k} covers {} entries but the log has only {pos}: entries were removed",
                rec.size
            );
            return self.find(Location::Entry, pos, Code::Truncated, m);
        }
        if rec.size != pos {
            let m = format!(
                "checkpoint for size {} read at log position {pos}",
                rec.size
            );
            return self.find(Location::Checkpoint, k, Code::CheckpointOrder, m);
        }
        if rec.size <= self.last_cp_size && !(rec.size == 0 && k == 0) {
            let m = format!(
                "checkpoint size {} does not grow past {}",
                rec.size, self.last_cp_size
            );
            return self.find(Location::Checkpoint, k, Code::CheckpointOrder, m);
        }
        if rec.first != self.last_cp_size {
            self.find(Location::Checkpoint, k, Code::CheckpointOrder, format!("checkpoint starts at {} but the previous one ended at {}: a checkpoint is missing", rec.first, self.last_cp_size));
        }
        let note = match note.map_or_else(|| Note::parse(rec.note.as_bytes()), Ok) {
            Ok(n) => n,
            Err(e) => {
                return self.find(
                    Location::Checkpoint,
                    k,
                    Code::CheckpointMalformed,
                    e.to_string(),
                );
            }
        };
        let signed = self.verify_note(k, rec.epoch, &note, sig);
        if let Some(entry_epoch) = self.last_entry_epoch
            && entry_epoch != rec.epoch
        {
            self.find(Location::Checkpoint, k, Code::CheckpointWrongSigner, format!("checkpoint at size {} is signed by epoch {} but its last entry belongs to epoch {entry_epoch}", rec.size, rec.epoch));
        }
        let computed = self.range.root();
        if let Some(cp) = &signed
            && cp.size != rec.size
        {
            self.find(
                Location::Checkpoint,
                k,
                Code::CheckpointMalformed,
                format!(
                    "record says size {} but the signed note says {}",
                    rec.size, cp.size
                ),
            );
        }
        if let Some(cp) = &signed {
            if cp.root != computed {
                self.localise(k, &rec, cp);
            } else if rec.first >= self.base.size() {
                let skip = usize::try_from(rec.first - self.base.size()).unwrap_or(usize::MAX);
                if self.batch.get(skip..) != Some(rec.leaves.as_slice()) {
                    self.find(
                        Location::Checkpoint,
                        k,
                        Code::CheckpointLeafListCorrupt,
                        format!(
                            "leaf list of checkpoint at size {} does not match the entries",
                            rec.size
                        ),
                    );
                }
            }
        }
        self.base = self.range.clone();
        self.batch.clear();
        self.last_cp_size = rec.size;
        self.last_cp_epoch = Some(rec.epoch);
        if signed.is_some() && self.report.findings.is_empty() {
            self.report.verified_size = rec.size;
        }
        self.last_note = Some(rec.note);
    }

    fn verify_note(
        &mut self,
        k: u64,
        epoch: u64,
        note: &Note,
        ahead: Option<Ahead>,
    ) -> Option<Checkpoint> {
        let origin = self.cfg.root.origin.clone();
        let Some(ep) = self.epochs.get(&epoch) else {
            self.find(
                Location::Checkpoint,
                k,
                Code::CheckpointWrongSigner,
                format!("checkpoint claims epoch {epoch}, which no key.rotation entry introduced"),
            );
            return None;
        };
        if !ep.trusted {
            if self.reported_untrusted.insert(epoch) {
                self.find(Location::Checkpoint, k, Code::CheckpointBadSignature, format!("checkpoints of epoch {epoch} cannot be trusted: its certificate did not verify"));
            }
            return None;
        }
        // Checked ahead with the key this epoch's certificate gives: the same answer.
        let outcome = match ahead {
            Some(a) if a.epoch == epoch && a.key == ep.info.key => a.outcome,
            _ => verify_checkpoint(note, &epoch_key_name(&origin, epoch), &ep.info.key, &origin)
                .map(|cp| cp.into_inner())
                .map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(cp) => Some(cp),
            Err(e) => {
                self.find(Location::Checkpoint, k, Code::CheckpointBadSignature, e);
                None
            }
        }
    }

    /// The signed root differs from the entries: name the entries that differ, using
    /// the leaf list if it reproduces the signed root, and continue from the signed tree.
    fn localise(&mut self, k: u64, rec: &CheckpointRecord, cp: &Checkpoint) {
        let mut signed = self.base.clone();
        let usable = rec.first == self.base.size();
        if usable {
            for l in &rec.leaves {
                signed.push(*l);
            }
        }
        if usable && signed.root() == cp.root && signed.size() == cp.size {
            let diffs: Vec<u64> = self
                .batch
                .iter()
                .zip(&rec.leaves)
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| rec.first + i as u64)
                .collect();
            for i in diffs {
                self.find(
                    Location::Entry,
                    i,
                    Code::EntryNotInSignedTree,
                    format!("entry {i} differs from the one checkpoint {k} signed"),
                );
            }
            self.range = signed;
        } else {
            self.find(
                Location::Checkpoint,
                k,
                Code::CheckpointRootMismatch,
                format!(
                    "root of entries {}..{} does not match the signed checkpoint",
                    self.base.size(),
                    cp.size
                ),
            );
        }
    }
}
