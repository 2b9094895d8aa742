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

/// The current epoch's rotation record beside an entries file (`x.jsonl` → `x.epoch`):
/// what a log presents to witnesses so they can check the checkpoints that epoch's key
/// signs. Derived (the rotation entry holds the same record) and checked by whoever
/// reads it against the root key, so it is replaced without fsync.
#[must_use]
pub fn epoch_path(log: &Path) -> PathBuf {
    log.with_extension("epoch")
}

/// Writes the current epoch's rotation record (see [`epoch_path`]); a failure only
/// delays cosigning, so the caller goes on.
pub(crate) fn publish_epoch(log: &Path, record: &str) -> std::io::Result<()> {
    let path = epoch_path(log);
    let tmp = log.with_extension("epoch.tmp");
    std::fs::write(&tmp, record)?;
    std::fs::rename(&tmp, &path)
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

/// The end of an append-only line file, read from its end: the last complete line
/// (without its newline), the length of the complete part, and the file's length (a
/// torn tail is the difference). Costs the last line, not the file: opening a ledger
/// must not read its whole checkpoint history.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    pub(crate) last: Option<Vec<u8>>,
    pub(crate) good: u64,
    pub(crate) len: u64,
}

/// Bytes read per step backwards.
const TAIL_CHUNK: u64 = 64 * 1024;

pub(crate) fn read_tail(path: &Path) -> Result<Tail, StoreError> {
    use std::io::{Seek, SeekFrom};
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tail::default()),
        Err(e) => return Err(io("open", path)(e)),
    };
    let len = f.metadata().map_err(io("stat", path))?.len();
    // `buf` holds the file from `start` to `len`; grow it backwards until it holds the
    // last newline and the one before it (or the file's start).
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        if newlines >= 2 || start == 0 {
            break;
        }
        let step = TAIL_CHUNK.min(start);
        start -= step;
        let mut chunk = vec![0u8; usize::try_from(step).unwrap_or(usize::MAX)];
        f.seek(SeekFrom::Start(start)).map_err(io("seek", path))?;
        f.read_exact(&mut chunk).map_err(io("read", path))?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok(Tail {
            last: None,
            good: 0,
            len,
        });
    };
    let from = buf
        .get(..end)
        .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
        .map_or(0, |p| p + 1);
    Ok(Tail {
        last: buf.get(from..end).map(<[u8]>::to_vec),
        good: start + end as u64 + 1,
        len,
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_tail_is_the_last_complete_line_however_long_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let tail = |bytes: &[u8]| {
            std::fs::write(&p, bytes).unwrap();
            read_tail(&p).unwrap()
        };
        assert_eq!(
            read_tail(&d.path().join("missing")).unwrap(),
            Tail::default()
        );
        assert_eq!(tail(b"").good, 0);
        let t = tail(b"torn");
        assert_eq!((t.last, t.good, t.len), (None, 0, 4));
        let t = tail(b"one\n");
        assert_eq!((t.last.unwrap(), t.good, t.len), (b"one".to_vec(), 4, 4));
        let t = tail(b"one\ntwo\ntor");
        assert_eq!((t.last.unwrap(), t.good, t.len), (b"two".to_vec(), 8, 11));
        // Lines longer than a read step, and many of them: the same answer as reading
        // the whole file.
        let long: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut file = Vec::new();
        for _ in 0..3 {
            file.extend_from_slice(&long);
            file.push(b'\n');
        }
        file.extend_from_slice(b"partial");
        let t = tail(&file);
        let (lines, good) = complete_lines(&file);
        assert_eq!(t.last.as_deref(), lines.last().copied());
        assert_eq!((t.good, t.len), (good as u64, file.len() as u64));
    }
}
