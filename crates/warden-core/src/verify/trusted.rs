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

    /// Registers a trusted checkpoint older than the prefix retention removed, with the
    /// root the checkpoints file's kept leaf lists give at its size (which the caller
    /// checked reproduce the removal's signed root), or why there is none. Its epoch
    /// keys went with the removed entries, so it is judged by its root: the outside
    /// party checked its signature when it took it.
    pub fn add_trusted_removed(&mut self, note: Note, root: Result<Hash, String>) {
        self.trusted_removed.push((note, root));
    }

    /// A trusted checkpoint's text, or a finding at `at` saying why it has none.
    fn trusted_text(&mut self, note: &Note, at: u64) -> Option<Checkpoint> {
        match Checkpoint::from_text(note.text()) {
            Ok(cp) => Some(cp),
            Err(e) => {
                self.find(
                    Location::Entry,
                    at,
                    Code::TrustedCheckpointMismatch,
                    format!("trusted checkpoint: {e}"),
                );
                None
            }
        }
    }

    pub(super) fn finish_trusted_removed(&mut self, note: &Note, root: Result<Hash, String>) {
        let hex = |h: &Hash| crate::hex::encode(h);
        let Some(cp) = self.trusted_text(note, 0) else {
            return;
        };
        let at = cp.size.saturating_sub(1);
        match root {
            Ok(r) if r == cp.root => {}
            Ok(r) => self.find(
                Location::Entry,
                at,
                Code::TrustedCheckpointMismatch,
                format!(
                    "consistency failure: the trusted checkpoint signed root {} for entries 0..{}, the removed prefix's kept leaf hashes give root {}",
                    hex(&cp.root),
                    cp.size,
                    hex(&r)
                ),
            ),
            Err(why) => self.find(
                Location::Entry,
                at,
                Code::TrustedCheckpointMismatch,
                format!(
                    "the trusted checkpoint for entries 0..{} cannot be checked: {why}",
                    cp.size
                ),
            ),
        }
    }

    pub(super) fn check_trusted_at(&mut self, size: u64) {
        if let Some((s, _, seen)) = &mut self.history
            && *s == size
        {
            *seen = Some(self.range.root());
        }
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
        let Some(cp) = self.trusted_text(note, n) else {
            return;
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
