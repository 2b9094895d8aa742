//! The tree's hashes on disk, so that a proof costs O(log n) small reads instead of a
//! pass over the whole ledger.
//!
//! `x.hashes/<L>` (for the entries file `x.jsonl`) holds, in order, the hashes of the
//! complete subtrees of height 8·L: level 0 the leaf hashes, level L+1 one hash per 256
//! of level L (the tlog-tiles levels, each as one file). A complete subtree of height
//! 8·L + r is the fold of 2^r consecutive hashes of level L.
//!
//! The files are derived data, never trusted: they are brought up to the latest
//! checkpoint on use (from the entries, or for a prefix retention removed from the
//! leaf hashes the checkpoint records keep), and every use first checks that they give
//! the signed root; when they do not (a torn write, a file from another ledger) they
//! are rebuilt once from the ledger, and a mismatch after that is the ledger's own.
//! Nothing is fsynced: a crash loses at most a suffix, which the next use rebuilds.

use crate::error::{StoreError, io};
use crate::layout::checkpoints_path;
use crate::segments::LogView;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use warden_core::merkle::{self, Hash, leaf_hash};
use warden_core::record::CheckpointRecord;
use warden_core::tileproof::{self, Subtree};

const HASH: u64 = 32;
/// Hashes of one level folded into one of the next.
const FAN: u64 = 256;
/// Leaf hashes buffered before they are written.
const CHUNK: usize = 1 << 16;

/// The directory of the hash files for an entries file.
#[must_use]
pub fn dir_path(log: &Path) -> PathBuf {
    log.with_extension("hashes")
}

/// The hash files of one ledger, locked against other processes while held.
#[derive(Debug)]
pub(crate) struct Hashes {
    dir: PathBuf,
    levels: Vec<File>,
    _lock: File,
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        detail: detail.into(),
    }
}

impl Hashes {
    fn open(log: &Path) -> Result<Self, StoreError> {
        let dir = dir_path(log);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io("chmod", &dir))?;
        let lock_path = dir.join("lock");
        let lock = open_file(&lock_path)?;
        lock.lock().map_err(io("lock", &lock_path))?;
        let mut h = Self {
            dir,
            levels: Vec::new(),
            _lock: lock,
        };
        h.repair()?;
        Ok(h)
    }

    fn level(&mut self, l: usize) -> Result<&File, StoreError> {
        while self.levels.len() <= l {
            let p = self.dir.join(self.levels.len().to_string());
            self.levels.push(open_file(&p)?);
        }
        self.levels
            .get(l)
            .ok_or_else(|| corrupt("hash level out of range"))
    }

    fn count(&mut self, l: usize) -> Result<u64, StoreError> {
        let p = self.dir.join(l.to_string());
        Ok(self.level(l)?.metadata().map_err(io("stat", &p))?.len() / HASH)
    }

    /// Cuts torn hashes, and upper levels longer than the level below supports.
    fn repair(&mut self) -> Result<(), StoreError> {
        let mut below = u64::MAX;
        for l in 0..8 {
            let n = self.count(l)?;
            let keep = if l == 0 { n } else { n.min(below / FAN) };
            let p = self.dir.join(l.to_string());
            let f = self.level(l)?;
            if f.metadata().map_err(io("stat", &p))?.len() != keep * HASH {
                f.set_len(keep * HASH).map_err(io("truncate", &p))?;
            }
            below = keep;
        }
        Ok(())
    }

    /// Leaves stored.
    fn size(&mut self) -> Result<u64, StoreError> {
        self.count(0)
    }

    fn read(&mut self, l: usize, first: u64, n: u64) -> Result<Vec<Hash>, StoreError> {
        let p = self.dir.join(l.to_string());
        let mut buf = vec![0u8; usize::try_from(n * HASH).map_err(|_| corrupt("read too large"))?];
        self.level(l)?
            .read_exact_at(&mut buf, first * HASH)
            .map_err(io("read", &p))?;
        Ok(buf
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    /// Appends leaf hashes, then the upper levels they complete.
    fn append(&mut self, leaves: &[Hash]) -> Result<(), StoreError> {
        if leaves.is_empty() {
            return Ok(());
        }
        let p = self.dir.join("0");
        let mut f = self.level(0)?;
        f.write_all(&leaves.concat()).map_err(io("write", &p))?;
        for l in 0..7 {
            let (below, have) = (self.count(l)?, self.count(l + 1)?);
            if below / FAN == 0 {
                break;
            }
            let mut up = Vec::new();
            for j in have..below / FAN {
                up.push(tileproof::fold(&self.read(l, j * FAN, FAN)?));
            }
            let p = self.dir.join((l + 1).to_string());
            let mut f = self.level(l + 1)?;
            f.write_all(&up.concat()).map_err(io("write", &p))?;
        }
        Ok(())
    }

    /// The hash of a complete subtree of the stored tree.
    fn subtree(&mut self, (height, index): Subtree) -> Result<Hash, StoreError> {
        let (l, r) = (usize::from(height / 8), u32::from(height % 8));
        let first = index
            .checked_shl(r)
            .ok_or_else(|| corrupt("subtree out of range"))?;
        Ok(tileproof::fold(&self.read(l, first, 1u64 << r)?))
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        for l in 0..self.levels.len() {
            let p = self.dir.join(l.to_string());
            self.level(l)?.set_len(0).map_err(io("truncate", &p))?;
        }
        Ok(())
    }
}

fn open_file(p: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(p)
        .map_err(io("open", p))
}

/// Where entry `i` starts, as a logical offset, and how many lines precede it there.
fn locate(view: &LogView, i: u64) -> (u64, u64) {
    let index = view.index();
    if let Some(rec) = index.iter().find(|r| r.first <= i && i < r.end) {
        return (rec.offset, i - rec.first);
    }
    match index.last() {
        Some(last) => (last.offset + last.bytes, i.saturating_sub(last.end)),
        None => (0, i),
    }
}

/// Calls `each` with entry lines from index `from` (without their newline), up to
/// `upto` entries or the last complete line. Returns the index after the last one.
fn entries_from(
    log: &Path,
    from: u64,
    upto: u64,
    each: &mut dyn FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let view = LogView::open(log)?;
    let from = from.max(view.first_index());
    let (offset, mut skip) = locate(&view, from);
    let mut r = BufReader::with_capacity(1 << 20, view.reader(offset, u64::MAX));
    let mut line = Vec::new();
    let mut i = from;
    while i < upto {
        line.clear();
        r.read_until(b'\n', &mut line).map_err(io("read", log))?;
        if line.pop() != Some(b'\n') {
            break;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        each(&line)?;
        i += 1;
    }
    Ok(i)
}

/// Leaf hashes of removed entries `from..upto` from the checkpoint records.
fn removed_leaves(
    log: &Path,
    from: u64,
    upto: u64,
    each: &mut dyn FnMut(&[Hash]) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let path = checkpoints_path(log);
    let f = File::open(&path).map_err(io("open", &path))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    let mut at = 0u64;
    while at < upto {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(io("read", &path))? == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            break;
        }
        let rec = CheckpointRecord::decode(&line)?;
        if rec.first != at {
            return Err(corrupt(format!(
                "checkpoint record starts at {} after {at}",
                rec.first
            )));
        }
        let lo = usize::try_from(from.saturating_sub(at)).unwrap_or(usize::MAX);
        let hi = usize::try_from(upto - at).unwrap_or(usize::MAX);
        if let Some(part) = rec
            .leaves
            .get(lo.min(rec.leaves.len())..hi.min(rec.leaves.len()))
        {
            each(part)?;
        }
        at = rec.size;
    }
    Ok(at.min(upto))
}

/// Brings the stored hashes to `size` leaves.
fn extend(h: &mut Hashes, log: &Path, size: u64) -> Result<(), StoreError> {
    let have = h.size()?;
    if have >= size {
        return Ok(());
    }
    let first_present = LogView::open(log)?.first_index();
    let mut buf: Vec<Hash> = Vec::with_capacity(CHUNK);
    // Buffers leaf hashes and writes them a chunk at a time.
    let mut add = |h: &mut Hashes, leaves: &[Hash], flush: bool| -> Result<(), StoreError> {
        buf.extend_from_slice(leaves);
        if flush || buf.len() >= CHUNK {
            h.append(&buf)?;
            buf.clear();
        }
        Ok(())
    };
    if have < first_present {
        let upto = first_present.min(size);
        let got = removed_leaves(log, have, upto, &mut |part| add(h, part, false))?;
        add(h, &[], true)?;
        if got < upto {
            return Err(corrupt(format!(
                "the checkpoint records keep leaf hashes up to {got}, not the {upto} retention removed"
            )));
        }
    }
    let from = h.size()?;
    let end = entries_from(log, from, size, &mut |line| {
        add(h, &[leaf_hash(line)], false)
    })?;
    add(h, &[], true)?;
    if end < size {
        return Err(corrupt(
            "the entries file is shorter than its latest checkpoint",
        ));
    }
    Ok(())
}

/// Computes something from the stored hashes of the tree of `size` entries whose
/// signed root is `root`, after bringing them up to `size`; `check` must accept the
/// answer against that root. A store that gives another root or an answer `check`
/// refuses is rebuilt from the ledger once; failing after that is the ledger's fault.
fn with_tree<T>(
    log: &Path,
    size: u64,
    root: &Hash,
    compute: &mut dyn FnMut(&mut Hashes) -> Result<T, StoreError>,
    check: &dyn Fn(&mut Hashes, &T) -> Result<bool, StoreError>,
) -> Result<T, StoreError> {
    let mut hashes = Hashes::open(log)?;
    for attempt in 0..2 {
        if attempt == 1 {
            hashes.clear()?;
        }
        match extend(&mut hashes, log, size) {
            Ok(()) => {}
            Err(e) if attempt == 1 => return Err(e),
            Err(_) => continue,
        }
        if &tileproof::root_with(size, &mut |s| hashes.subtree(s))? != root {
            continue;
        }
        let out = compute(&mut hashes)?;
        if check(&mut hashes, &out)? {
            return Ok(out);
        }
    }
    Err(corrupt(format!(
        "the ledger's entries do not give the root its latest checkpoint signs at size {size}"
    )))
}

/// The inclusion proof of entry `index` (whose leaf hash is `leaf`, or when retention
/// removed its line, the stored one) in the tree of `size` entries with root `root`,
/// checked against that root.
pub(crate) fn inclusion(
    log: &Path,
    size: u64,
    root: &Hash,
    index: u64,
    leaf: Option<Hash>,
) -> Result<Vec<Hash>, StoreError> {
    with_tree(
        log,
        size,
        root,
        &mut |h| tileproof::inclusion_with(size, index, &mut |s| h.subtree(s)),
        &|h, proof| {
            let leaf = match leaf {
                Some(l) => l,
                None => h.subtree((0, index))?,
            };
            Ok(merkle::verify_inclusion(&leaf, index, size, proof, root).is_ok())
        },
    )
}

/// The consistency proof from the tree of `old` entries to the tree of `size` entries
/// with root `root`, checked against that root.
pub(crate) fn consistency(
    log: &Path,
    size: u64,
    root: &Hash,
    old: u64,
) -> Result<Vec<Hash>, StoreError> {
    with_tree(
        log,
        size,
        root,
        &mut |h| tileproof::consistency_with(old, size, &mut |s| h.subtree(s)),
        &|h, proof| {
            if old == 0 || old == size {
                return Ok(proof.is_empty());
            }
            let old_root = tileproof::root_with(old, &mut |s| h.subtree(s))?;
            Ok(merkle::verify_consistency(old, size, &old_root, root, proof).is_ok())
        },
    )
}

/// The line of entry `index`, when it is still present.
pub(crate) fn entry_line(log: &Path, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    if index < LogView::open(log)?.first_index() {
        return Ok(None);
    }
    let mut out = None;
    entries_from(log, index, index + 1, &mut |l| {
        out = Some(l.to_vec());
        Ok(())
    })?;
    Ok(out)
}
