//! What earlier runs established and this log must still hold: the state a previous
//! run verified (a resumed run that finds it gone reads the whole log against it), and
//! the removal retention made (the entry recording it must name it).

use super::Verifier;
use crate::findings::{Code, Location};
use crate::merkle::Hash;

impl Verifier {
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
