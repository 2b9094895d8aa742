//! Checkpoints held outside the log (a SIEM's copy, a witness's): registered before the
//! run, matched against the tree as it grows, and judged at the end, where a log shorter
//! than one of them is truncated and a different tree is a mismatch.

use super::Verifier;
use crate::checkpoint::{Checkpoint, epoch_key_name, verify_checkpoint};
use crate::findings::{Code, Location};
use crate::merkle::Hash;
use crate::note::Note;

impl Verifier {
    /// Registers a checkpoint known to an outside party (SIEM, witness); the log must
    /// contain its tree.
    pub fn add_trusted(&mut self, note: Note) {
        if let Ok(cp) = Checkpoint::from_text(note.text()) {
            self.trusted_sizes.push(cp.size);
        }
        self.trusted.push((note, None));
    }

    pub(super) fn check_trusted_at(&mut self, size: u64) {
        if !self.trusted_sizes.contains(&size) {
            return;
        }
        let root = self.range.root();
        for t in &mut self.trusted {
            if let Ok(cp) = Checkpoint::from_text(t.0.text())
                && cp.size == size
            {
                t.1 = Some(root);
            }
        }
    }

    pub(super) fn finish_trusted(&mut self, n: u64, note: &Note, root_at: Option<Hash>) {
        let origin = self.cfg.root.origin.clone();
        let cp = match Checkpoint::from_text(note.text()) {
            Ok(cp) => cp,
            Err(e) => {
                return self.find(
                    Location::Entry,
                    n,
                    Code::TrustedCheckpointMismatch,
                    format!("trusted checkpoint: {e}"),
                );
            }
        };
        let verified = note.signatures().iter().any(|s| {
            let Some(epoch) = s
                .name
                .rsplit('/')
                .next()
                .and_then(|e| e.parse::<u64>().ok())
            else {
                return false;
            };
            self.epochs.get(&epoch).is_some_and(|ep| {
                ep.trusted
                    && verify_checkpoint(
                        note,
                        &epoch_key_name(&origin, epoch),
                        &ep.info.key,
                        &origin,
                    )
                    .is_ok()
            })
        });
        if cp.size > n {
            return self.find(
                Location::Entry,
                n,
                Code::Truncated,
                format!(
                    "log has {n} entries but a trusted checkpoint covers {}: the log was truncated",
                    cp.size
                ),
            );
        }
        if !verified {
            return self.find(
                Location::Entry,
                n,
                Code::TrustedCheckpointMismatch,
                "trusted checkpoint is not signed by any epoch key of this log".to_owned(),
            );
        }
        let root = if cp.size == 0 {
            Some(crate::merkle::empty_root())
        } else {
            root_at
        };
        if root != Some(cp.root) {
            self.find(
                Location::Entry,
                cp.size.saturating_sub(1),
                Code::TrustedCheckpointMismatch,
                format!("entries 0..{} do not match the trusted checkpoint", cp.size),
            );
        }
    }
}
