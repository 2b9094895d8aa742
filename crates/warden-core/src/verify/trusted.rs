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

    /// The size and root of the state a previous run verified (see
    /// [`Verifier::verified_history`]): this log must still hold that tree. A different
    /// root at that size is a consistency failure (the history was forked or
    /// rewritten), naming both roots; a shorter log is truncated.
    pub fn expect_history(&mut self, size: u64, root: Hash) {
        self.history = Some((size, root, None));
    }

    /// The size and signed root of a saved state, authenticated as
    /// [`Verifier::resume`] does (epoch certificate against the root key, checkpoint
    /// signature against the epoch key); returns the configuration back.
    pub fn verified_history(
        cfg: crate::findings::VerifyConfig,
        st: &crate::findings::ResumeState,
    ) -> Result<(u64, Hash, crate::findings::VerifyConfig), String> {
        let mut v = Verifier::new(cfg);
        let loaded = v.load_state(st);
        let Verifier { cfg, range, .. } = v;
        match loaded {
            Ok(()) => Ok((range.size(), range.root(), cfg)),
            Err(e) => Err(e),
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

    pub(super) fn finish_history(&mut self, n: u64) {
        let Some((size, root, seen)) = self.history.take() else {
            return;
        };
        let hex = |h: &Hash| crate::hex::encode(h);
        if size > n {
            return self.find(
                Location::Entry,
                n,
                Code::Truncated,
                format!(
                    "log has {n} entries but a previous run verified {size}: the log was truncated"
                ),
            );
        }
        let now = if size == 0 {
            Some(crate::merkle::empty_root())
        } else {
            seen
        };
        if now != Some(root) {
            self.find(
                Location::Entry,
                size.saturating_sub(1),
                Code::ConsistencyFailure,
                format!(
                    "consistency failure: a previous run verified entries 0..{size} with root {}, the log now has root {} at that size: its history was forked or rewritten",
                    hex(&root),
                    now.as_ref().map_or_else(|| "?".to_owned(), hex)
                ),
            );
        }
    }

    /// With an auditor key, the `retention.delete` entry that records the removal must
    /// name what was removed: `tree_size` the first index kept, `root` the removed
    /// tree's signed root, and segments that end there. Without one its details cannot
    /// be read (the kind and position are checked regardless).
    pub(super) fn check_removal_record(&mut self, p: u64, e: &crate::entry::EntryRef<'_>) {
        let (Some(root), Some(key)) = (
            self.removed_root,
            self.epochs
                .get(&e.header.epoch)
                .and_then(|ep| ep.data.clone()),
        ) else {
            return;
        };
        let mut buf = Vec::new();
        if e.open(&key, &mut buf).is_err() {
            return; // reported by the decryption check
        }
        let d = serde_json::from_slice::<serde_json::Value>(&buf)
            .ok()
            .and_then(|v| v.get("details").cloned())
            .unwrap_or_default();
        let removed = self.report.removed;
        let said_size = d.get("tree_size").and_then(serde_json::Value::as_u64);
        let said_root = d.get("root").and_then(serde_json::Value::as_str);
        let said_end = d
            .get("segments")
            .and_then(serde_json::Value::as_array)
            .and_then(|s| s.last())
            .and_then(|s| s.get("end"))
            .and_then(serde_json::Value::as_u64);
        let root_hex = crate::hex::encode(&root);
        if said_size != Some(removed)
            || said_end != Some(removed)
            || said_root != Some(root_hex.as_str())
        {
            self.find(
                Location::Entry,
                p,
                Code::RemovalNotRecorded,
                format!(
                    "entry {p} records the removal of entries 0..{} (segments ending at {}) with root {}, but entries 0..{removed} were removed, with root {root_hex}",
                    said_size.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                    said_end.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                    said_root.unwrap_or("?"),
                ),
            );
        }
    }
}
