//! The ledger's files: where the checkpoints live, the consistent prefix a reader may
//! trust, and reading what is present.

use crate::error::{StoreError, io};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warden_core::merkle::{Hash, leaf_hash};

/// Serialises rewrites of the segment index (sealing, retention).
pub(crate) type IndexLock = Arc<Mutex<()>>;

/// A consistent prefix of the ledger's files: every entry in the first `entries_len`
/// bytes (logical offsets: across segments) is covered by a checkpoint in the first
/// `checkpoints_len` bytes. A verifier of a live ledger reads this far and no further
/// (what follows may be in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableState {
    /// Entries (tree size).
    pub size: u64,
    pub entries_len: u64,
    pub checkpoints_len: u64,
}

/// The checkpoints file path for an entries file (`x.jsonl` → `x.checkpoints`).
#[must_use]
pub fn checkpoints_path(log: &Path) -> PathBuf {
    log.with_extension("checkpoints")
}

/// Splits `data` into complete lines and the length of the complete part.
pub(crate) fn complete_lines(data: &[u8]) -> (Vec<&[u8]>, usize) {
    let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut lines = data
        .get(..end)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .collect::<Vec<_>>();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    (lines, end)
}

pub(crate) fn read_all(path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut v).map_err(io("read", path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StoreError::Io {
                op: "open",
                path: path.into(),
                source: e,
            });
        }
    }
    Ok(v)
}

/// The entries still present: the first one's index, and each one's leaf hash and line.
#[derive(Debug, Default)]
pub struct Present {
    pub first: u64,
    pub leaves: Vec<Hash>,
    pub lines: Vec<Vec<u8>>,
}

/// Leaf hashes and lines of every complete present entry line, from the first entry
/// retention kept.
pub fn read_leaves(log: &Path) -> Result<Present, StoreError> {
    let view = crate::segments::LogView::open(log)?;
    let first = view.first_index();
    let start = view.start();
    let mut data = Vec::new();
    view.reader(start, u64::MAX)
        .read_to_end(&mut data)
        .map_err(io("read", log))?;
    let (lines, _) = complete_lines(&data);
    Ok(Present {
        first,
        leaves: lines.iter().map(|l| leaf_hash(l)).collect(),
        lines: lines.iter().map(|l| l.to_vec()).collect(),
    })
}
