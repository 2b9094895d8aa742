//! What opening reads of the active segment: the Merkle range up to the last signed
//! checkpoint, the bytes that checkpoint covers, the last entry's epoch and time, and
//! the request ids of recent entries. Starts from the saved tree state when it holds
//! (see [`crate::treestate`]), so only the tail after it is read and hashed.

use crate::error::{StoreError, io};
use crate::layout::complete_lines;
use crate::requests::{RECOVER_ENTRIES, Requests};
use crate::treestate::TreeState;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use warden_core::checkpoint::Checkpoint;
use warden_core::entry;
use warden_core::merkle::{CompactRange, leaf_hash};
use warden_core::record::CheckpointRecord;
use warden_core::time::Timestamp;

/// Bytes before the saved state's offset read for request ids and the last entry.
const LOOK_BACK: u64 = 32 << 20;

/// The active segment as opening found it.
pub(crate) struct Scan {
    pub(crate) range: CompactRange,
    /// Bytes of the active file the last checkpoint covers.
    pub(crate) keep_bytes: u64,
    /// Length of the active file.
    pub(crate) file_len: u64,
    /// Complete lines past what the checkpoint covers (never acknowledged).
    pub(crate) uncovered: u64,
    /// Epoch and time of the last covered entry in the active file.
    pub(crate) last: Option<(u64, Timestamp)>,
    /// Time of the active file's first entry.
    pub(crate) first_time: Option<Timestamp>,
    pub(crate) requests: Requests,
    /// Entries hashed (those after the saved tree state, or all).
    pub(crate) hashed: u64,
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { detail }
}

/// Scans the active file of `log`, whose first entry is `active_first` and whose tree
/// before it is `sealed`; `last` is the last checkpoint record. Tries the saved tree
/// state for segment `segment` first and falls back to reading the whole file.
pub(crate) fn scan(
    log: &Path,
    segment: u64,
    active_first: u64,
    sealed: &CompactRange,
    last: Option<&CheckpointRecord>,
) -> Result<Scan, StoreError> {
    let covered = last.map_or(0, |r| r.size);
    if let Some(t) = crate::treestate::load(log)
        .filter(|t| t.segment == segment && t.active_first == active_first && t.size <= covered)
        && let Ok(s) = scan_from(log, active_first, sealed, last, Some(&t))
    {
        return Ok(s);
    }
    scan_from(log, active_first, sealed, last, None)
}

fn scan_from(
    log: &Path,
    active_first: u64,
    sealed: &CompactRange,
    last: Option<&CheckpointRecord>,
    saved: Option<&TreeState>,
) -> Result<Scan, StoreError> {
    let covered = last.map_or(0, |r| r.size);
    if covered < active_first {
        return Err(corrupt(format!(
            "the active segment starts at {active_first} but the last checkpoint covers {covered}"
        )));
    }
    let (skip_entries, offset, mut range) = match saved {
        Some(t) => (
            t.size - active_first,
            t.offset,
            crate::segments::decode_range(t.size, &t.range)?,
        ),
        None => (0, 0, sealed.clone()),
    };
    let mut f = match std::fs::File::open(log) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("open", log)(e)),
    };
    let file_len = match &f {
        Some(f) => f.metadata().map_err(io("stat", log))?.len(),
        None => 0,
    };
    if offset > file_len {
        return Err(corrupt(
            "saved tree state is past the end of the file".into(),
        ));
    }
    // The look-back window before `offset`, then everything from `offset`.
    let back = offset.saturating_sub(LOOK_BACK);
    let mut data = Vec::new();
    if let Some(f) = f.as_mut() {
        f.seek(SeekFrom::Start(back)).map_err(io("seek", log))?;
        f.read_to_end(&mut data).map_err(io("read", log))?;
    }
    let split = usize::try_from(offset - back).unwrap_or(usize::MAX);
    let (pre, tail) = data.split_at(split.min(data.len()));
    // Before the offset: whole lines only (the window may start mid-line).
    let pre = if back > 0 {
        pre.iter()
            .position(|&b| b == b'\n')
            .map_or(&[][..], |p| pre.get(p + 1..).unwrap_or_default())
    } else {
        pre
    };
    let (pre_lines, _) = complete_lines(pre);
    let (lines, _) = complete_lines(tail);
    let present = lines.len() as u64 + skip_entries + active_first;
    if present < covered {
        return Err(corrupt(format!(
            "{} entries present from index {active_first} but the last checkpoint covers {covered}",
            present - active_first
        )));
    }
    let keep = usize::try_from(covered - active_first - skip_entries).unwrap_or(usize::MAX);
    let mut keep_bytes = offset;
    for l in lines.iter().take(keep) {
        range.push(leaf_hash(l));
        keep_bytes += l.len() as u64 + 1;
    }
    if let Some(r) = last {
        let note = warden_core::note::Note::parse(r.note.as_bytes())
            .map_err(|e| corrupt(format!("last checkpoint: {e}")))?;
        let cp = Checkpoint::from_text(note.text())
            .map_err(|e| corrupt(format!("last checkpoint: {e}")))?;
        if cp.root != range.root() || cp.size != covered {
            return Err(corrupt(
                "entries do not match the last signed checkpoint".into(),
            ));
        }
    }
    // The covered entries of the active file, newest last: those read before the
    // offset (their indexes end where the saved state begins), then the kept tail.
    let pre_first = (active_first + skip_entries).saturating_sub(pre_lines.len() as u64);
    let recent: Vec<(u64, &[u8])> = pre_lines
        .iter()
        .enumerate()
        .map(|(i, l)| (pre_first + i as u64, *l))
        .chain(
            lines
                .iter()
                .take(keep)
                .enumerate()
                .map(|(i, l)| (active_first + skip_entries + i as u64, *l)),
        )
        .collect();
    let last_entry = match recent.last() {
        Some((i, l)) if *i + 1 == covered && covered > active_first => {
            let e = entry::parse_line(l).map_err(|e| corrupt(format!("entry {i}: {e}")))?;
            Some((e.header.epoch, e.header.time))
        }
        _ if covered > active_first => {
            return Err(corrupt("the last covered entry could not be read".into()));
        }
        _ => None,
    };
    let mut requests = Requests::default();
    if let Some(r) = last {
        let note: Arc<str> = Arc::from(r.note.as_str());
        let from = recent.len().saturating_sub(RECOVER_ENTRIES);
        for (i, l) in recent.iter().skip(from) {
            // Only entries sent through the writer protocol carry `"rid":`.
            if memchr::memmem::find(l, b",\"rid\":\"").is_none() {
                continue;
            }
            if let Ok(e) = entry::parse_line(l)
                && let Some(rid) = e.header.rid
            {
                requests.recovered(rid, *i, covered, &note);
            }
        }
    }
    let first_time = if covered > active_first {
        Some(first_entry_time(log, active_first)?)
    } else {
        None
    };
    Ok(Scan {
        range,
        keep_bytes,
        file_len,
        uncovered: (lines.len() - keep.min(lines.len())) as u64,
        last: last_entry,
        first_time,
        requests,
        hashed: keep.min(lines.len()) as u64,
    })
}

/// The time of the active file's first entry (its first line).
fn first_entry_time(log: &Path, index: u64) -> Result<Timestamp, StoreError> {
    let f = std::fs::File::open(log).map_err(io("open", log))?;
    let mut line = Vec::new();
    let mut r = std::io::BufReader::new(f).take(entry::MAX_LINE_LEN as u64 + 1);
    std::io::BufRead::read_until(&mut r, b'\n', &mut line).map_err(io("read", log))?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(entry::parse_line(&line)
        .map_err(|e| corrupt(format!("entry {index}: {e}")))?
        .header
        .time)
}
