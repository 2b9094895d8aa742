//! Reading the ledger for export: entries in index order, only as far as a signed
//! checkpoint covers them.
//!
//! An entry past the last checkpoint is not acknowledged yet, and recovery may cut it
//! and reuse its index for another entry, so it is never exported. Entries covered by a
//! checkpoint never change. The reader holds at most one chunk of entries
//! ([`CHUNK_BYTES`]) and one checkpoint record in memory, however far behind it is.

use crate::error::{SiemError, io};
use crate::format::Checkpoint;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use warden_core::crypto::{DataKey, RecipientSecretKey};
use warden_core::entry::{self, EntryRef, KIND_ROTATION, MAX_LINE_LEN};
use warden_core::epoch::RotationRecord;
use warden_core::record::MAX_RECORD_LEN;
use warden_core::time::Timestamp;
use warden_store::segments::LogView;

/// Bytes of entries read at a time.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Where the reader stands: the next entry to export and the file offsets that lead
/// to it. Saved in the export cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Index of the next entry to export.
    pub next: u64,
    /// Byte offset of that entry in the entries file.
    pub offset: u64,
    /// Byte offset of the `key.rotation` entry that opened the epoch of the last entry
    /// passed (its data key decrypts what follows, with an auditor key).
    pub rotation_offset: Option<u64>,
    /// Byte offset in the checkpoints file of the last checkpoint record read.
    pub checkpoint_offset: u64,
    /// Tree size of the last checkpoint exported.
    pub checkpoint_exported: u64,
}

#[derive(Deserialize)]
struct RecordHead {
    size: u64,
    epoch: u64,
    note: String,
    #[serde(rename = "first")]
    _first: serde::de::IgnoredAny,
    #[serde(rename = "leaves")]
    _leaves: serde::de::IgnoredAny,
}

/// Reads entries and checkpoints from a ledger's files.
#[derive(Debug)]
pub struct Source {
    log: PathBuf,
    checkpoints: PathBuf,
    origin: Option<String>,
    pos: Position,
    /// Start of the checkpoint record after the last one read.
    cp_read: u64,
    /// Tree size of the last checkpoint read: entries below it may be exported.
    covered: u64,
    /// The last checkpoint record read.
    latest: Option<(u64, u64, String)>,
    /// Time of the last entry passed.
    last_time: Option<Timestamp>,
    auditor: Option<std::sync::Arc<RecipientSecretKey>>,
    keys: HashMap<u64, Option<DataKey>>,
    buf: Vec<u8>,
    /// The ledger's segments, kept open while the segment index is unchanged, with
    /// that index's identity when it was read.
    view: Option<(LogView, Stamp)>,
    cp_buf: Vec<u8>,
}

/// What [`Source::read`] hands to its visitor for each entry.
#[derive(Debug)]
pub struct Visit<'a> {
    pub entry: &'a EntryRef<'a>,
    pub line: &'a [u8],
    /// The epoch's data key, when an auditor key was given and unwraps it; `Err` says
    /// why not.
    pub key: Result<&'a DataKey, &'static str>,
}

/// The ledger's segments as one stream of logical offsets (see
/// [`warden_store::segments`]); `None` when there is no ledger yet.
fn open(path: &Path) -> Result<Option<LogView>, SiemError> {
    if !path.exists() && !warden_store::segments::index_path(path).exists() {
        return Ok(None);
    }
    LogView::open(path)
        .map(Some)
        .map_err(|e| SiemError::Ledger {
            path: path.to_path_buf(),
            index: 0,
            detail: e.to_string(),
        })
}

/// What identifies the segment index and the active file's presence: a seal or a
/// removal rewrites the index (a new inode), the first append creates the file.
type Stamp = (Option<(u64, u64, Option<std::time::SystemTime>)>, bool);

fn stamp(log: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    let index = std::fs::metadata(warden_store::segments::index_path(log))
        .ok()
        .map(|m| (m.ino(), m.len(), m.modified().ok()));
    (index, log.exists())
}

fn open_file(path: &Path) -> Result<Option<File>, SiemError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("open", path)(e)),
    }
}

/// Reads up to `buf.len()` bytes at `offset`, fewer only at the end of the file.
fn read_full_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    warden_store::segments::read_full(|b, o| f.read_at(b, o), buf, offset)
}

impl Source {
    /// A reader of the ledger at `log` (its checkpoints beside it) from `pos`. With an
    /// auditor key, entries come with their epoch's data key.
    pub fn open(
        log: &Path,
        pos: Position,
        auditor: Option<std::sync::Arc<RecipientSecretKey>>,
    ) -> Result<Self, SiemError> {
        let mut s = Self {
            log: log.to_path_buf(),
            checkpoints: warden_store::ledger::checkpoints_path(log),
            origin: None,
            cp_read: pos.checkpoint_offset,
            pos,
            covered: 0,
            latest: None,
            last_time: None,
            auditor,
            keys: HashMap::new(),
            buf: Vec::new(),
            view: None,
            cp_buf: Vec::new(),
        };
        s.check_position()?;
        Ok(s)
    }

    /// Checks that the saved offsets still lead to the saved index, and loads the
    /// current epoch's key.
    fn check_position(&mut self) -> Result<(), SiemError> {
        if self.pos.next == 0 && self.pos.offset == 0 {
            return Ok(());
        }
        let Some(view) = self.take_view()? else {
            return Err(self.mismatch("the entries file is missing"));
        };
        let f = &view.0;
        if let Some(ro) = self.pos.rotation_offset {
            let line = self.line_at(f, ro)?;
            let Ok(e) = entry::parse_line(&line) else {
                return Err(self.mismatch("no key.rotation entry at the saved offset"));
            };
            if e.header.kind != KIND_ROTATION {
                return Err(self.mismatch("no key.rotation entry at the saved offset"));
            }
            self.origin = Some(e.header.origin.to_owned());
            self.learn_key(&e);
        }
        let len = f.len().map_err(io("read", &self.log))?;
        if self.pos.offset > len {
            return Err(self.mismatch("the entries file is shorter than the saved offset"));
        }
        if self.pos.offset < len {
            let line = self.line_at(f, self.pos.offset)?;
            match entry::parse_line(&line) {
                Ok(e) if e.header.index == self.pos.next => {}
                _ => {
                    return Err(self.mismatch("the saved offset does not hold the saved index"));
                }
            }
        }
        self.put_view(view);
        Ok(())
    }

    /// The segments, reopened only when the index changed since they were opened
    /// (parsing it on every read would cost more as the index grows). Give it back
    /// with [`Source::put_view`].
    fn take_view(&mut self) -> Result<Option<(LogView, Stamp)>, SiemError> {
        // Taken before opening: a change while opening shows as a new stamp next time.
        let now = stamp(&self.log);
        match self.view.take() {
            Some((v, s)) if s == now => Ok(Some((v, s))),
            _ => Ok(open(&self.log)?.map(|v| (v, now))),
        }
    }

    fn put_view(&mut self, view: (LogView, Stamp)) {
        self.view = Some(view);
    }

    fn mismatch(&self, detail: &str) -> SiemError {
        SiemError::CursorMismatch {
            path: self.log.clone(),
            index: self.pos.next,
            detail: detail.into(),
        }
    }

    /// The complete line starting at `offset` (without newline).
    fn line_at(&self, f: &LogView, offset: u64) -> Result<Vec<u8>, SiemError> {
        let mut buf = vec![0u8; MAX_LINE_LEN + 1];
        let n = f
            .read_full_at(&mut buf, offset)
            .map_err(io("read", &self.log))?;
        buf.truncate(n);
        match memchr::memchr(b'\n', &buf) {
            Some(end) => {
                buf.truncate(end);
                Ok(buf)
            }
            None => Err(self.mismatch("no complete line at the saved offset")),
        }
    }

    fn learn_key(&mut self, e: &EntryRef<'_>) {
        let Some(sk) = &self.auditor else {
            return;
        };
        let key = RotationRecord::decode(e.header.rotation.unwrap_or_default())
            .ok()
            .and_then(|r| r.unwrap_data_key(sk).ok().flatten());
        self.keys.insert(e.header.epoch, key);
        // Keys of epochs long passed are not needed again (a rewind goes back at most
        // to the saved cursor, whose epoch key is reloaded from its rotation offset).
        if self.keys.len() > 64
            && let Some(&oldest) = self.keys.keys().min()
        {
            self.keys.remove(&oldest);
        }
    }

    /// The current position.
    #[must_use]
    pub fn position(&self) -> &Position {
        &self.pos
    }

    /// Goes back to `pos` (a position this source passed, e.g. the last confirmed one).
    pub fn rewind(&mut self, pos: &Position) {
        self.pos = pos.clone();
    }

    /// Entries a checkpoint covers: everything below may be exported.
    #[must_use]
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// Reads checkpoint records appended since the last call; returns the covered size.
    pub fn poll_checkpoints(&mut self) -> Result<u64, SiemError> {
        let Some(f) = open_file(&self.checkpoints)? else {
            return Ok(self.covered);
        };
        loop {
            self.cp_buf.resize(MAX_RECORD_LEN + 1, 0);
            let n = read_full_at(&f, &mut self.cp_buf, self.cp_read)
                .map_err(io("read", &self.checkpoints))?;
            let data = self.cp_buf.get(..n).unwrap_or_default();
            let mut used = 0usize;
            let mut last = None;
            for line in data.split_inclusive(|&b| b == b'\n') {
                let Some(body) = line.strip_suffix(b"\n") else {
                    break; // a record still being written
                };
                let start = self.cp_read + used as u64;
                used += line.len();
                let rec: RecordHead =
                    serde_json::from_slice(body).map_err(|e| SiemError::Ledger {
                        path: self.checkpoints.clone(),
                        index: self.covered,
                        detail: format!("unreadable checkpoint record: {e}"),
                    })?;
                last = Some((start, rec));
            }
            if let Some((start, rec)) = last {
                self.pos.checkpoint_offset = start;
                if rec.size > self.covered {
                    self.covered = rec.size;
                }
                self.latest = Some((rec.size, rec.epoch, rec.note));
            }
            self.cp_read += used as u64;
            if used == 0 || n < self.cp_buf.len() {
                return Ok(self.covered);
            }
        }
    }

    /// The latest checkpoint read, if it covers exactly what was passed and has not
    /// been exported yet; marks it exported.
    pub fn take_checkpoint(&mut self) -> Option<Checkpoint> {
        let (size, epoch, note) = self.latest.as_ref()?;
        if *size != self.pos.next || *size <= self.pos.checkpoint_exported {
            return None;
        }
        self.pos.checkpoint_exported = *size;
        Some(Checkpoint {
            origin: self.origin.clone().unwrap_or_default(),
            size: *size,
            epoch: *epoch,
            note: note.clone(),
            time: self.last_time.or_else(|| Timestamp::from_micros(0))?,
        })
    }

    /// Passes up to `max` covered entries from the current position to `visit`, in
    /// order, and advances past them. Returns how many were passed (0: caught up).
    pub fn read(
        &mut self,
        max: usize,
        mut visit: impl FnMut(Visit<'_>),
    ) -> Result<usize, SiemError> {
        if self.pos.next >= self.covered || max == 0 {
            return Ok(0);
        }
        let Some(view) = self.take_view()? else {
            return Ok(0);
        };
        let f = &view.0;
        // Sized once; its bytes are overwritten by each read, never zeroed again.
        self.buf.resize(CHUNK_BYTES.max(MAX_LINE_LEN + 1), 0);
        let n = f
            .read_full_at(&mut self.buf, self.pos.offset)
            .map_err(io("read", &self.log))?;
        self.put_view(view);
        let buf = std::mem::take(&mut self.buf);
        let data = buf.get(..n).unwrap_or_default();
        let mut passed = 0usize;
        let mut used = 0usize;
        let mut result = Ok(());
        for line in data.split_inclusive(|&b| b == b'\n') {
            if passed == max || self.pos.next >= self.covered {
                break;
            }
            let Some(body) = line.strip_suffix(b"\n") else {
                // Cut by the end of the chunk: the next read starts with it. Alone in
                // a chunk, it is incomplete, though a checkpoint says it is durable.
                if passed == 0 {
                    result = Err(self.bad("the entry's line is incomplete"));
                }
                break;
            };
            let e = match entry::parse_line(body) {
                Ok(e) => e,
                Err(err) => {
                    result = Err(self.bad(&format!("unreadable entry: {err}")));
                    break;
                }
            };
            if e.header.index != self.pos.next {
                result = Err(self.bad(&format!("found index {} instead", e.header.index)));
                break;
            }
            let start = self.pos.offset;
            if e.header.kind == KIND_ROTATION {
                self.learn_key(&e);
                self.pos.rotation_offset = Some(start);
            }
            if self.origin.is_none() {
                self.origin = Some(e.header.origin.to_owned());
            }
            let key = if self.auditor.is_none() {
                Err("no auditor key")
            } else {
                match self.keys.get(&e.header.epoch) {
                    Some(Some(k)) => Ok(k),
                    _ => Err("not wrapped to this auditor"),
                }
            };
            visit(Visit {
                entry: &e,
                line: body,
                key,
            });
            self.last_time = Some(e.header.time);
            used += line.len();
            passed += 1;
            self.pos.next += 1;
            self.pos.offset = start + line.len() as u64;
        }
        if passed == 0 && result.is_ok() && used == 0 && n == 0 {
            result = Err(self.bad("the entries file ends before the checkpoint's size"));
        }
        self.buf = buf;
        result.map(|()| passed)
    }

    fn bad(&self, detail: &str) -> SiemError {
        SiemError::Ledger {
            path: self.log.clone(),
            index: self.pos.next,
            detail: detail.into(),
        }
    }

    /// Moves to entry `index` (at most the covered size), reading the entries file
    /// from the start to find it.
    pub fn seek_index(&mut self, index: u64) -> Result<(), SiemError> {
        self.pos = Position {
            checkpoint_offset: self.pos.checkpoint_offset,
            ..Position::default()
        };
        let covered = self.poll_checkpoints()?;
        if index > covered {
            return Err(self.bad(&format!(
                "entry {index} is not covered by a checkpoint yet (covered: {covered})"
            )));
        }
        self.covered = index;
        let mut r = Ok(());
        while self.pos.next < index {
            match self.read(usize::MAX, |_| {}) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        self.covered = covered;
        r?;
        self.pos.checkpoint_exported = index;
        Ok(())
    }
}
