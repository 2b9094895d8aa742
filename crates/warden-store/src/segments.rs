//! Log segments: the entries file is sealed and rolled over by UTC day or size, and
//! sealed segments past retention are removed.
//!
//! Layout beside the active entries file `logs/model_access.jsonl`:
//!
//! ```text
//! model_access.000001.jsonl    sealed segments, oldest first, same line format
//! model_access.segments        the segment index, one JSON object per line
//! model_access.checkpoints     every checkpoint of the whole log (never segmented)
//! ```
//!
//! Entry indices and the Merkle tree span the whole log; a byte offset in the log is
//! *logical*, an offset into the concatenation of every segment ever written (removed
//! ones included), so offsets saved by readers (verification state, SIEM cursors) stay
//! valid across rollovers. [`LogView`] reads the segments as that one byte stream.
//!
//! The index is rewritten atomically (temporary file, fsync, rename). Sealing writes
//! the index naming the new segment first, then renames the active file to it; opening
//! the ledger finishes a rename a crash interrupted. Removal records, in the index, the
//! verification state at the end of the removed part, so that what remains verifies
//! from there.

use crate::durable::{sync_dir, write_atomic};
use crate::error::{StoreError, io};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use warden_core::verify::ResumeState;

/// When the active entries file is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPolicy {
    /// Seal before writing a batch stamped on another UTC day than the segment's first
    /// entry, so each segment holds one day.
    pub daily: bool,
    /// Seal once the active file has at least this many bytes (0: no size limit).
    pub max_bytes: u64,
}

impl Default for SegmentPolicy {
    /// Daily, and at 1 GiB.
    fn default() -> Self {
        Self {
            daily: true,
            max_bytes: 1 << 30,
        }
    }
}

impl SegmentPolicy {
    /// Never seals: one entries file.
    #[must_use]
    pub fn never() -> Self {
        Self {
            daily: false,
            max_bytes: 0,
        }
    }
}

/// One sealed segment in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRecord {
    /// Segment number, from 1.
    pub segment: u64,
    /// File name, in the entries file's directory.
    pub file: String,
    /// Index of its first entry.
    pub first: u64,
    /// Index after its last entry (the tree size when it was sealed).
    pub end: u64,
    /// Logical byte offset of its first byte.
    pub offset: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// Length of the checkpoints file when it was sealed: its last record signs `end`.
    pub checkpoints_offset: u64,
    /// Time of its first and last entry.
    pub first_time: String,
    pub last_time: String,
    /// The compact Merkle range (hex hashes) of the tree of `end` entries, from which
    /// opening the ledger rebuilds the tree without reading sealed segments.
    pub range: Vec<String>,
    /// Set once retention removed the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removal>,
}

/// How a segment was removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Removal {
    /// When.
    pub at: String,
    /// Index of the `retention.delete` entry that recorded it.
    pub entry: u64,
    /// Verification state at the segment's end (on the last removed segment only):
    /// verification of what remains resumes from it. It is re-checked on use against
    /// the root key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeState>,
}

/// The segment index file for an entries file (`x.jsonl` → `x.segments`).
#[must_use]
pub fn index_path(log: &Path) -> PathBuf {
    log.with_extension("segments")
}

/// File name of sealed segment `n` of `log` (`x.jsonl` → `x.000001.jsonl`).
#[must_use]
pub fn segment_name(log: &Path, n: u64) -> String {
    let stem = log
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model_access");
    let ext = log.extension().and_then(|s| s.to_str()).unwrap_or("jsonl");
    format!("{stem}.{n:06}.{ext}")
}

/// Path of a sealed segment's file.
#[must_use]
pub fn segment_path(log: &Path, rec: &SegmentRecord) -> PathBuf {
    log.parent().unwrap_or(Path::new(".")).join(&rec.file)
}

/// The compact Merkle range of a tree of `size` entries from its hex hashes (as the
/// index and verification states keep it).
pub fn decode_range(
    size: u64,
    hex: &[String],
) -> Result<warden_core::merkle::CompactRange, StoreError> {
    let hashes = hex
        .iter()
        .map(|h| warden_core::hex::decode_array::<32>(h.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt {
            detail: format!("saved Merkle range: {e}"),
        })?;
    warden_core::merkle::CompactRange::from_parts(size, hashes).ok_or_else(|| StoreError::Corrupt {
        detail: "a saved Merkle range does not fit its size".into(),
    })
}

/// Longest accepted index file.
const MAX_INDEX_BYTES: u64 = 256 << 20;

/// Reads the segment index (empty when there is none).
pub fn load_index(log: &Path) -> Result<Vec<SegmentRecord>, StoreError> {
    let path = index_path(log);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", &path)(e)),
    };
    parse_index(&path, &data)
}

/// Parses an index's lines (`path` names where they come from, for errors): each
/// segment must follow the one before it.
pub fn parse_index(path: &Path, data: &[u8]) -> Result<Vec<SegmentRecord>, StoreError> {
    if data.len() as u64 > MAX_INDEX_BYTES {
        return Err(StoreError::Format {
            path: path.to_path_buf(),
            detail: "segment index is larger than 256 MiB".into(),
        });
    }
    let mut out: Vec<SegmentRecord> = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let rec: SegmentRecord = serde_json::from_slice(line).map_err(|e| StoreError::Format {
            path: path.to_path_buf(),
            detail: format!("line {}: {e}", i + 1),
        })?;
        let follows =
            out.last()
                .map_or(rec.segment == 1 && rec.first == 0 && rec.offset == 0, |p| {
                    rec.segment == p.segment + 1
                        && rec.first == p.end
                        && rec.offset == p.offset + p.bytes
                });
        if !follows || rec.end < rec.first || rec.file.contains('/') {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                detail: format!(
                    "line {}: segment {} does not follow the one before it",
                    i + 1,
                    rec.segment
                ),
            });
        }
        out.push(rec);
    }
    Ok(out)
}

/// The index's lines for `index`, as [`load_index`] reads them.
pub fn encode_index(index: &[SegmentRecord]) -> Result<Vec<u8>, StoreError> {
    let mut buf = Vec::new();
    for r in index {
        serde_json::to_writer(&mut buf, r).map_err(|e| StoreError::Config(e.to_string()))?;
        buf.push(b'\n');
    }
    Ok(buf)
}

/// Writes the index atomically.
pub(crate) fn store_index(log: &Path, index: &[SegmentRecord]) -> Result<(), StoreError> {
    write_index(log, &encode_index(index)?)
}

/// Writes index lines (as [`encode_index`] makes them) atomically, 0600.
pub fn write_index(log: &Path, lines: &[u8]) -> Result<(), StoreError> {
    let path = index_path(log);
    write_atomic(&path, lines, 0o600).map_err(io("write", &path))
}

/// Finishes a seal a crash interrupted between writing the index and renaming the
/// active file; returns the index.
pub(crate) fn finish_seal(log: &Path) -> Result<Vec<SegmentRecord>, StoreError> {
    let index = load_index(log)?;
    if let Some(last) = index.last()
        && last.removed.is_none()
    {
        let p = segment_path(log, last);
        if !p.exists() {
            let len = std::fs::metadata(log).map_err(io("stat", log))?.len();
            if len != last.bytes {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "segment {} is missing and the active file ({len} bytes) is not it ({} bytes)",
                        last.file, last.bytes
                    ),
                });
            }
            std::fs::rename(log, &p).map_err(io("rename", log))?;
            sync_dir(log.parent().unwrap_or(Path::new("."))).map_err(io("sync", log))?;
        }
    }
    Ok(index)
}

/// One file of the view.
#[derive(Debug)]
struct Part {
    /// Logical offset of its first byte.
    offset: u64,
    /// Its length, except for the active file, which may grow (`None`).
    len: Option<u64>,
    file: Option<File>,
}

/// The segments of a ledger as one logical byte stream, from the first byte that is
/// still present.
#[derive(Debug)]
pub struct LogView {
    parts: Vec<Part>,
    /// Logical offset of the first present byte.
    start: u64,
    /// Index of the first present entry.
    first_index: u64,
    /// Verification state at `start`, when retention removed what precedes it, and the
    /// index of the entry that recorded that removal.
    anchor: Option<ResumeState>,
    anchor_entry: u64,
    index: Vec<SegmentRecord>,
}

fn open_opt(path: &Path) -> Result<Option<File>, StoreError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("open", path)(e)),
    }
}

impl LogView {
    /// Opens every present segment of `log` and the active file.
    pub fn open(log: &Path) -> Result<Self, StoreError> {
        let index = load_index(log)?;
        let mut parts = Vec::new();
        let mut start = 0;
        let mut first_index = 0;
        let mut anchor = None;
        let mut anchor_entry = 0;
        let mut present = false;
        let mut active_taken = false;
        for (i, rec) in index.iter().enumerate() {
            if let Some(r) = &rec.removed {
                if present {
                    return Err(StoreError::Corrupt {
                        detail: format!(
                            "segment {} is marked removed but an older one is present",
                            rec.file
                        ),
                    });
                }
                start = rec.offset + rec.bytes;
                first_index = rec.end;
                anchor.clone_from(&r.resume);
                anchor_entry = r.entry;
                continue;
            }
            present = true;
            let p = segment_path(log, rec);
            let mut file = open_opt(&p)?;
            if file.is_none() && i + 1 == index.len() {
                // Sealing wrote the index but had not renamed the active file yet. If
                // the rename happens after this open, the handle is still the segment;
                // if before, the second look finds the segment under its new name.
                let active = open_opt(log)?;
                file = open_opt(&p)?;
                if file.is_none() {
                    file = active;
                    active_taken = true;
                }
            }
            let Some(file) = file else {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "sealed segment {} is missing but retention did not remove it",
                        p.display()
                    ),
                });
            };
            parts.push(Part {
                offset: rec.offset,
                len: Some(rec.bytes),
                file: Some(file),
            });
        }
        if !active_taken {
            let offset = index.last().map_or(0, |r| r.offset + r.bytes);
            parts.push(Part {
                offset,
                len: None,
                file: open_opt(log)?,
            });
        }
        if start > 0 && anchor.is_none() {
            return Err(StoreError::Corrupt {
                detail: "segments were removed without a verification state to resume from".into(),
            });
        }
        Ok(Self {
            parts,
            start,
            first_index,
            anchor,
            anchor_entry,
            index,
        })
    }

    /// Logical offset of the first present byte.
    #[must_use]
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Index of the first present entry.
    #[must_use]
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Verification state at [`LogView::start`] when segments were removed.
    #[must_use]
    pub fn anchor(&self) -> Option<&ResumeState> {
        self.anchor.as_ref()
    }

    /// Index of the `retention.delete` entry that recorded the last removal.
    #[must_use]
    pub fn removal_entry(&self) -> u64 {
        self.anchor_entry
    }

    /// The segment index as read.
    #[must_use]
    pub fn index(&self) -> &[SegmentRecord] {
        &self.index
    }

    /// Logical length: the end of the active file now.
    pub fn len(&self) -> std::io::Result<u64> {
        let Some(last) = self.parts.last() else {
            return Ok(self.start);
        };
        let n = match (&last.file, last.len) {
            (_, Some(n)) => n,
            (Some(f), None) => f.metadata()?.len(),
            (None, None) => 0,
        };
        Ok(last.offset + n)
    }

    /// Whether the log holds no present byte.
    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == self.start)
    }

    /// Reads at logical `offset` from one segment; 0 at the end. Reading before
    /// [`LogView::start`] is an error: retention removed those bytes.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset < self.start {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "log offset {offset} was removed by retention (the log now starts at {})",
                    self.start
                ),
            ));
        }
        let k = self.parts.partition_point(|p| p.offset <= offset);
        let Some(part) = k.checked_sub(1).and_then(|k| self.parts.get(k)) else {
            return Ok(0);
        };
        let local = offset - part.offset;
        let Some(f) = &part.file else {
            return Ok(0);
        };
        let want = match part.len {
            Some(n) if local >= n => {
                // Past this sealed part: the next one starts exactly here, or it is the end.
                return Ok(0);
            }
            Some(n) => buf
                .len()
                .min(usize::try_from(n - local).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        f.read_at(buf.get_mut(..want).unwrap_or_default(), local)
    }

    /// Reads up to `buf.len()` bytes at `offset`, fewer only at the end of the log.
    pub fn read_full_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        read_full(|b, o| self.read_at(b, o), buf, offset)
    }

    /// A sequential reader from logical `offset`, at most `limit` bytes.
    #[must_use]
    pub fn reader(self, offset: u64, limit: u64) -> ViewReader {
        ViewReader {
            view: self,
            pos: offset,
            end: offset.saturating_add(limit),
        }
    }
}

/// Fills `buf` from `offset` by positional reads (`read_at`), fewer bytes only at the
/// end.
pub fn read_full(
    read_at: impl Fn(&mut [u8], u64) -> std::io::Result<usize>,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        match read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads a [`LogView`] sequentially.
#[derive(Debug)]
pub struct ViewReader {
    view: LogView,
    pos: u64,
    end: u64,
}

impl std::io::Read for ViewReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self
            .view
            .read_at(buf.get_mut(..want).unwrap_or_default(), self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_in_order() {
        let log = Path::new("/x/logs/model_access.jsonl");
        assert_eq!(segment_name(log, 1), "model_access.000001.jsonl");
        assert!(segment_name(log, 9) < segment_name(log, 10));
        assert_eq!(index_path(log), Path::new("/x/logs/model_access.segments"));
    }
}
