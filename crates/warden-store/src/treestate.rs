//! A cache of the active segment's Merkle state (`x.jsonl` → `x.tree`), so that opening
//! hashes only the entries written after it instead of the whole active file (up to
//! `[segments] max_bytes`, 1 GiB by default).
//!
//! It is a cache, not a record: written without fsync by the sequencer every
//! [`SAVE_EVERY`] entries and when the ledger closes, and trusted only when the range
//! it gives, extended by the entries after it, has the root the last signed checkpoint
//! signs. Anything else (missing, stale, for another segment, altered) costs a full
//! rehash, never a wrong open.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use warden_core::merkle::CompactRange;

/// Entries between saves.
pub(crate) const SAVE_EVERY: u64 = 1 << 18;
/// Largest accepted file.
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TreeState {
    pub(crate) v: u32,
    /// The active segment's number and first index.
    pub(crate) segment: u64,
    pub(crate) active_first: u64,
    /// Entries the range covers, and the active file's length holding them.
    pub(crate) size: u64,
    pub(crate) offset: u64,
    /// The compact range's hashes, hex.
    pub(crate) range: Vec<String>,
}

/// The saved tree state beside the entries file `log` (a cache; opening rebuilds it).
#[must_use]
pub fn path(log: &Path) -> PathBuf {
    log.with_extension("tree")
}

/// The saved state, if there is a readable one.
pub(crate) fn load(log: &Path) -> Option<TreeState> {
    let p = path(log);
    if std::fs::metadata(&p).ok()?.len() > MAX_BYTES {
        return None;
    }
    let t: TreeState = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
    (t.v == 1).then_some(t)
}

/// Saves the state (written beside and renamed into place, so a reader sees a whole
/// file or the old one).
pub(crate) fn save(
    log: &Path,
    segment: u64,
    active_first: u64,
    range: &CompactRange,
    offset: u64,
) -> std::io::Result<()> {
    let t = TreeState {
        v: 1,
        segment,
        active_first,
        size: range.size(),
        offset,
        range: range
            .hashes()
            .iter()
            .map(|h| warden_core::hex::encode(h))
            .collect(),
    };
    let p = path(log);
    let tmp = p.with_extension("tree.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(
        &mut f,
        &serde_json::to_vec(&t).map_err(std::io::Error::other)?,
    )?;
    drop(f);
    std::fs::rename(&tmp, &p)
}
