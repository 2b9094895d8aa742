//! Reads a ledger's files and drives the core verifier: entries are read in large
//! chunks and their leaf hashes computed on every core; checks run in log order.

use crate::error::{StoreError, io};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use warden_core::entry::EntrySpans;
use warden_core::error::DecodeError;
use warden_core::merkle::{Hash, leaf_hash};
use warden_core::note::Note;
use warden_core::verify::decrypt_check;
use warden_core::verify::{Report, ResumeState, Verifier, VerifyConfig};

const CHUNK: usize = 8 * 1024 * 1024;
/// Room for the partial line a chunk carries into the next (lines are shorter).
const CARRY: usize = warden_core::entry::MAX_LINE_LEN + 1;

/// Result of a verification run.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// State to resume from next time, when the run was clean.
    pub resume: Option<ResumeState>,
    /// The size of the saved state this run resumed from; `None` when it read the log
    /// from its start (none was given, or the log no longer holds it).
    pub resumed_from: Option<u64>,
}

struct Checkpoints {
    reader: BufReader<Box<dyn Read + Send>>,
    next: Option<(Vec<u8>, u64)>,
    /// Lines read after `next`, for checking ahead.
    ahead: std::collections::VecDeque<(Vec<u8>, u64)>,
    /// Record numbers below this were handed to the verifier checked ahead.
    prechecked: u64,
    eof: bool,
    k: u64,
    offset: u64,
}

impl Checkpoints {
    /// Records read from `reader`, the first being number `k` at byte `offset`.
    fn new(reader: Box<dyn Read + Send>, k: u64, offset: u64) -> Self {
        Self {
            reader: BufReader::with_capacity(1 << 20, reader),
            next: None,
            ahead: std::collections::VecDeque::new(),
            prechecked: 0,
            eof: false,
            k,
            offset,
        }
    }

    fn advance(&mut self) -> Result<(), std::io::Error> {
        if let Some(l) = self.ahead.pop_front() {
            self.next = Some(l);
            return Ok(());
        }
        self.next = self.read()?;
        Ok(())
    }

    fn read(&mut self) -> Result<Option<(Vec<u8>, u64)>, std::io::Error> {
        if self.eof {
            return Ok(None);
        }
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            self.eof = true;
            return Ok(None);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let size = quick_size(&line).unwrap_or(0);
        Ok(Some((line, size)))
    }

    /// Reads ahead the records due by tree size `upto` (and one more), about
    /// `max_bytes` of them at most, and returns those not yet checked ahead with their
    /// numbers (always the next one, so each call makes progress). The rest are read
    /// by a later call, so a checkpoints file of any size is read in bounded memory.
    fn due_ahead(
        &mut self,
        upto: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, &[u8])>, std::io::Error> {
        let mut bytes: usize = self.ahead.iter().map(|(l, _)| l.len()).sum();
        loop {
            let last = self.ahead.back().or(self.next.as_ref());
            match last {
                Some((_, size)) if *size > upto => break,
                None if self.next.is_none() => break,
                _ if bytes >= max_bytes => break,
                _ => match self.read()? {
                    Some(l) => {
                        bytes += l.0.len();
                        self.ahead.push_back(l);
                    }
                    None => break,
                },
            }
        }
        let from = self.prechecked.max(self.k);
        let lines: Vec<(u64, &[u8])> = self
            .next
            .iter()
            .chain(self.ahead.iter())
            .zip(self.k..)
            .filter(|(_, k)| *k >= from)
            .map(|((l, _), k)| (k, l.as_slice()))
            .collect();
        self.prechecked = self.k + u64::from(self.next.is_some()) + self.ahead.len() as u64;
        Ok(lines)
    }
}

/// Most bytes of checkpoint records read ahead of the ordered pass at once.
const AHEAD_BYTES: usize = 64 << 20;

/// Reads `"size":N` from the start of a checkpoint record without a full decode.
fn quick_size(line: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(line.get(..line.len().min(80))?).ok()?;
    let rest = s.split_once("\"size\":")?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Threads verification may use; 0: one per core.
static JOBS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets how many threads verification uses in this process (`warden verify --jobs`);
/// 0 (the default) is one per core. The findings do not depend on it.
pub fn set_jobs(n: usize) {
    JOBS.store(n, std::sync::atomic::Ordering::Relaxed);
}

fn threads() -> usize {
    match JOBS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    }
}

/// Runs `f` over `items` split into one contiguous part per thread (at most
/// `threads`), in order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    par_map_with(items, threads, || (), |(), t| f(t))
}

/// [`par_map`] with per-thread state made by `init` (e.g. a scratch buffer).
fn par_map_with<T: Sync, R: Send, S>(
    items: &[T],
    threads: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    if items.len() < 256 || threads < 2 {
        let mut st = init();
        return items.iter().map(|t| f(&mut st, t)).collect();
    }
    let per = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let (f, init) = (&f, &init);
        let hs: Vec<_> = items
            .chunks(per)
            .map(|c| {
                s.spawn(move || {
                    let mut st = init();
                    c.iter().map(|t| f(&mut st, t)).collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Reads `f` in large chunks on its own thread, each cut after its last newline (the
/// final chunk keeps an unterminated tail, which verification reports). Buffers sent
/// back on `recycle` are reused, which saves zeroing and faulting in fresh memory.
fn spawn_reader(
    mut f: impl Read + Send + 'static,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
) -> std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::spawn(move || {
        let mut carry: Vec<u8> = Vec::new();
        loop {
            // A chunk and the partial line carried into it fit without growing the
            // buffer, and reading into its spare capacity zeroes nothing.
            let mut buf = recycle
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK + CARRY));
            buf.clear();
            buf.extend_from_slice(&carry);
            let n = match (&mut f).take(CHUNK as u64).read_to_end(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if n == 0 {
                if !buf.is_empty() {
                    let _ = tx.send(Ok(buf));
                }
                return;
            }
            let cut = memchr::memrchr(b'\n', &buf).map_or(0, |p| p + 1);
            carry.clear();
            carry.extend_from_slice(buf.get(cut..).unwrap_or_default());
            buf.truncate(cut);
            if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
                return;
            }
        }
    });
    rx
}

/// A chunk of whole lines with each line's bounds, leaf hash and parse.
struct Prepared {
    chunk: Vec<u8>,
    bounds: Vec<(usize, usize)>,
    parsed: Vec<(Hash, Result<EntrySpans, DecodeError>)>,
}

/// Splits, hashes and parses each chunk on its own thread (using every core).
fn spawn_preparer(
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
) -> std::sync::mpsc::Receiver<std::io::Result<Prepared>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        for chunk in chunks {
            let prepared = chunk.map(|chunk| {
                let mut bounds = Vec::with_capacity(chunk.len() / 256);
                let mut from = 0;
                for nl in memchr::memchr_iter(b'\n', &chunk) {
                    bounds.push((from, nl));
                    from = nl + 1;
                }
                if from < chunk.len() {
                    bounds.push((from, chunk.len()));
                }
                // The order-dependent checks keep one core busy meanwhile: hashing and
                // parsing take the others (on two cores, one thread each runs best).
                let parsed = par_map(&bounds, threads().saturating_sub(1), |&(a, b)| {
                    let l = chunk.get(a..b).unwrap_or_default();
                    (leaf_hash(l), EntrySpans::parse(l))
                });
                Prepared {
                    chunk,
                    bounds,
                    parsed,
                }
            });
            if tx.send(prepared).is_err() {
                return;
            }
        }
    });
    rx
}

/// Verifies the entries file `log` and its checkpoints file `checkpoints`.
/// `progress` is called with (bytes read, total bytes).
pub fn verify_files(
    log: &Path,
    checkpoints: &Path,
    cfg: VerifyConfig,
    trusted: Vec<Note>,
    resume: Option<&ResumeState>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Outcome, StoreError> {
    verify_prefix(log, checkpoints, cfg, trusted, resume, None, progress)
}

/// [`verify_files`] over the first `bound.entries_len` and `bound.checkpoints_len`
/// bytes only: a live ledger's consistent prefix ([`crate::ledger::Ledger::durable_state`]).
pub fn verify_prefix(
    log: &Path,
    checkpoints: &Path,
    cfg: VerifyConfig,
    trusted: Vec<Note>,
    resume: Option<&ResumeState>,
    bound: Option<crate::ledger::DurableState>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Outcome, StoreError> {
    let view = crate::segments::LogView::open(log)?;
    // Retention removed the log's start: verification resumes from the state the
    // removal saved (re-checked against the root key), unless asked to resume later.
    let anchor = view.anchor().cloned();
    let use_anchor = anchor.is_some() && resume.is_none_or(|r| r.size < view.first_index());
    let given = resume;
    let mut resume = if use_anchor { anchor.as_ref() } else { resume };
    // The saved state must still be where that run stopped reading: else the history
    // before it was forked or rewritten, and this run reads the whole log again to
    // say so (a consistency failure naming both roots), instead of reading from an
    // offset that no longer starts an entry.
    let mut history = None;
    let mut cfg = cfg;
    if let Some(st) = resume
        && !use_anchor
        && !state_holds(&view, checkpoints, st)?
    {
        let (size, root, c) = Verifier::verified_history(cfg, st).map_err(StoreError::Config)?;
        cfg = c;
        history = Some((size, root));
        resume = None;
    }
    let mut v = match resume {
        Some(st) => Verifier::resume(cfg, st).map_err(StoreError::Config)?,
        None => Verifier::new(cfg),
    };
    if let Some((size, root)) = history {
        v.expect_history(size, root);
    }
    if use_anchor {
        v.expect_removal(view.first_index(), view.removal_entry(), bound.is_none());
    }
    // A trusted checkpoint older than a removed prefix is checked through the leaf
    // hashes the checkpoints file keeps for it.
    let (removed, trusted): (Vec<Note>, Vec<Note>) = trusted.into_iter().partition(|t| {
        use_anchor
            && warden_core::checkpoint::Checkpoint::from_text(t.text())
                .is_ok_and(|cp| cp.size < view.first_index())
    });
    if let (false, Some(a)) = (removed.is_empty(), anchor.as_ref()) {
        let sizes: Vec<u64> = removed
            .iter()
            .filter_map(|t| warden_core::checkpoint::Checkpoint::from_text(t.text()).ok())
            .map(|cp| cp.size)
            .collect();
        let roots = removed_roots(checkpoints, a, &sizes)?;
        for (t, size) in removed.into_iter().zip(sizes) {
            let r = match &roots {
                Ok(found) => found
                    .iter()
                    .find(|(s, _)| *s == size)
                    .map(|(_, r)| *r)
                    .ok_or_else(|| format!("no kept leaf list ends at size {size}")),
                Err(why) => Err(why.clone()),
            };
            v.add_trusted_removed(t, r);
        }
    }
    for t in trusted {
        v.add_trusted(t);
    }
    // A live writer makes entries durable, then the checkpoint covering them. Taking
    // the checkpoints file's complete part first and the entries' length after gives a
    // consistent prefix: every checkpoint read covers entries that are present. A torn
    // last checkpoint record was never acknowledged; the entries it would cover read as
    // pending, as recovery treats them.
    let cps_len = match bound {
        Some(b) => b.checkpoints_len,
        None => crate::layout::read_tail(checkpoints)?.good,
    };
    let file_len = view.len().map_err(io("stat", log))?;
    let total = bound.map_or(file_len, |b| b.entries_len.min(file_len));
    let start = resume.map_or(0, |r| r.entries_offset);
    let mut cf = File::open(checkpoints).map_err(io("open", checkpoints))?;
    let cstart = resume.map_or(0, |r| r.checkpoints_offset);
    cf.seek(SeekFrom::Start(cstart))
        .map_err(io("seek", checkpoints))?;
    let cps_limit = cps_len.saturating_sub(cstart);
    let cps = Checkpoints::new(
        Box::new(cf.take(cps_limit)),
        resume.map_or(0, |r| r.checkpoints),
        cstart,
    );
    let f = view.reader(start, total.saturating_sub(start));
    let resumed_from = given.filter(|_| history.is_none()).map(|r| r.size);
    let mut out = drive(
        v,
        Box::new(f),
        start,
        total,
        cps,
        log,
        checkpoints,
        progress,
    )?;
    out.resumed_from = resumed_from;
    Ok(out)
}

/// The roots at `sizes` of the prefix retention removed, rebuilt from the leaf hashes
/// each checkpoint record before the removal's state keeps. The inner error says why
/// they cannot be trusted: the lists do not reproduce the removal's root (which the
/// run authenticates), or do not reach its size.
fn removed_roots(
    checkpoints: &Path,
    anchor: &ResumeState,
    sizes: &[u64],
) -> Result<Result<Vec<(u64, Hash)>, String>, StoreError> {
    let f = File::open(checkpoints).map_err(io("open", checkpoints))?;
    let mut r = BufReader::with_capacity(1 << 20, f.take(anchor.checkpoints_offset));
    let mut range = warden_core::merkle::CompactRange::new();
    let mut found = Vec::new();
    let mut line = Vec::new();
    let mut k = 0u64;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .map_err(io("read", checkpoints))?
            == 0
        {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let rec = match warden_core::record::CheckpointRecord::decode(&line) {
            Ok(rec) if rec.first == range.size() => rec,
            Ok(_) => {
                return Ok(Err(format!(
                    "checkpoint record {k} does not follow the one before"
                )));
            }
            Err(e) => return Ok(Err(format!("checkpoint record {k}: {e}"))),
        };
        for l in &rec.leaves {
            range.push(*l);
            if sizes.contains(&range.size()) {
                found.push((range.size(), range.root()));
            }
        }
        k += 1;
    }
    let hashes = anchor
        .range
        .iter()
        .map(|h| warden_core::hex::decode_array::<32>(h.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let signed =
        warden_core::merkle::CompactRange::from_parts(anchor.size, hashes).map(|c| c.root());
    if range.size() != anchor.size || signed != Some(range.root()) {
        return Ok(Err(format!(
            "the kept leaf hashes of the removed entries do not reproduce the signed root at {}",
            anchor.size
        )));
    }
    Ok(Ok(found))
}

/// Longest line looked for backwards from a saved offset.
const MAX_RECORD: u64 = 256 << 20;

/// The line that ends (with its newline) just before byte `end`, read backwards by
/// `read_at`; `None` when the byte before `end` is not a newline or no line start is
/// found within [`MAX_RECORD`].
fn line_before(
    end: u64,
    read_at: impl Fn(&mut [u8], u64) -> std::io::Result<usize>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut last = [0u8; 1];
    if end == 0 || read_at(&mut last, end - 1)? != 1 || last != [b'\n'] {
        return Ok(None);
    }
    let mut line: Vec<u8> = Vec::new();
    let mut at = end - 1;
    while at > 0 && (line.len() as u64) < MAX_RECORD {
        let step = at.min(64 << 10);
        let mut buf = vec![0u8; usize::try_from(step).unwrap_or(0)];
        let n = read_at(&mut buf, at - step)?;
        if n as u64 != step {
            return Ok(None);
        }
        if let Some(nl) = memchr::memrchr(b'\n', &buf) {
            let mut l = buf.split_off(nl + 1);
            l.extend_from_slice(&line);
            return Ok(Some(l));
        }
        buf.extend_from_slice(&line);
        line = buf;
        at -= step;
    }
    Ok((at == 0).then_some(line))
}

/// Whether the log still holds the state `st` a clean run saved: the checkpoint record
/// ending where that run stopped reading holds its note, and the entry ending there is
/// its last. Reads two lines, whatever the log's size.
fn state_holds(
    view: &crate::segments::LogView,
    checkpoints: &Path,
    st: &ResumeState,
) -> Result<bool, StoreError> {
    use std::os::unix::fs::FileExt;
    let cf = File::open(checkpoints).map_err(io("open", checkpoints))?;
    let rec = line_before(st.checkpoints_offset, |b, o| cf.read_at(b, o))
        .map_err(io("read", checkpoints))?;
    let same_note = rec
        .and_then(|l| warden_core::record::CheckpointRecord::decode(&l).ok())
        .is_some_and(|r| r.note == st.note && r.size == st.size);
    if !same_note {
        return Ok(false);
    }
    let last = line_before(st.entries_offset, |b, o| view.read_full_at(b, o)).map_err(|e| {
        StoreError::Io {
            op: "read",
            path: checkpoints.with_extension("jsonl"),
            source: e,
        }
    })?;
    Ok(last
        .and_then(|l| {
            warden_core::entry::parse_line(&l)
                .ok()
                .map(|e| e.header.index)
        })
        .is_some_and(|i| st.size.checked_sub(1) == Some(i)))
}

/// Verifies a ledger read from two streams rather than files (for example from a
/// bucket): `entries` yields the entries' lines, `checkpoints` the checkpoint records'
/// lines, each line ending in `\n`; `entries_len` is the entries' length in bytes when
/// known (for progress only). `name` names the source in errors. With `resume` (a
/// state a clean run saved), the streams start where that run stopped: at its entry
/// and checkpoint record, which the caller seeks to.
#[allow(clippy::too_many_arguments)]
pub fn verify_streams(
    entries: Box<dyn Read + Send>,
    entries_len: u64,
    checkpoints: Box<dyn Read + Send>,
    name: &Path,
    cfg: VerifyConfig,
    trusted: Vec<Note>,
    resume: Option<&ResumeState>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Outcome, StoreError> {
    let mut v = match resume {
        Some(st) => Verifier::resume(cfg, st).map_err(StoreError::Config)?,
        None => Verifier::new(cfg),
    };
    for t in trusted {
        v.add_trusted(t);
    }
    let cps = Checkpoints::new(
        checkpoints,
        resume.map_or(0, |r| r.checkpoints),
        resume.map_or(0, |r| r.checkpoints_offset),
    );
    let start = resume.map_or(0, |r| r.entries_offset);
    let mut out = drive(v, entries, start, entries_len, cps, name, name, progress)?;
    out.resumed_from = resume.map(|r| r.size);
    Ok(out)
}

/// Feeds the entries read from `f` (from byte `start`) and the checkpoints to `v`.
#[allow(clippy::too_many_arguments)]
fn drive(
    mut v: Verifier,
    f: Box<dyn Read + Send>,
    start: u64,
    total: u64,
    mut cps: Checkpoints,
    log: &Path,
    checkpoints: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Outcome, StoreError> {
    cps.advance().map_err(io("read", checkpoints))?;
    let decrypt = v.decrypts();
    if decrypt {
        v.defer_decryption();
    }
    let mut offset = start;
    // Reading, and hashing and parsing on every core, run a chunk ahead of the
    // order-dependent checks on this thread.
    let (recycle, recycled) = std::sync::mpsc::channel();
    for prepared in spawn_preparer(spawn_reader(f, recycled)) {
        let Prepared {
            chunk,
            bounds,
            parsed,
        } = prepared.map_err(io("read", log))?;
        let line = |i: usize| {
            bounds
                .get(i)
                .and_then(|&(a, b)| chunk.get(a..b))
                .unwrap_or_default()
        };
        let first = v.position();
        let ahead = Ahead {
            keys: v.precheck_keys(
                parsed
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, s))| s.as_ref().ok()?.rotation(line(i))),
            ),
            origin: v.origin().to_owned(),
            upto: first + parsed.len() as u64,
        };
        for (i, (leaf, spans)) in parsed.iter().enumerate() {
            feed_due(&mut v, &mut cps, Some(&ahead)).map_err(io("read", checkpoints))?;
            let l = line(i);
            v.entry_parsed(l, *leaf, spans.clone().and_then(|s| s.entry(l)));
        }
        if decrypt {
            let jobs = v.take_decrypt_jobs();
            let outcomes = par_map_with(&jobs, threads(), Vec::new, |scratch, (pos, key)| {
                let i = usize::try_from(pos - first).unwrap_or(usize::MAX);
                match parsed
                    .get(i)
                    .map(|(_, s)| s.clone().and_then(|s| s.entry(line(i))))
                {
                    Some(Ok(e)) => decrypt_check(&e, key, scratch),
                    _ => Err("entry is not parseable".to_owned()),
                }
            });
            for ((pos, _), r) in jobs.iter().zip(outcomes) {
                v.decrypted(*pos, r);
            }
        }
        offset += chunk.len() as u64;
        progress(offset, total);
        let _ = recycle.send(chunk);
    }
    feed_due(&mut v, &mut cps, None).map_err(io("read", checkpoints))?;
    while let Some((line, _)) = cps.next.take() {
        v.checkpoint(cps.k, &line);
        cps.offset += line.len() as u64 + 1;
        cps.k += 1;
        cps.advance().map_err(io("read", checkpoints))?;
    }
    let resume_out = v.resume_state(offset, cps.offset);
    Ok(Outcome {
        report: v.finish(),
        resume: resume_out,
        resumed_from: None,
    })
}

/// What checking records ahead needs for one chunk: the keys the verifier trusts now
/// and those the chunk's rotations name, the origin, and the tree size at its end.
struct Ahead {
    keys: Vec<(u64, warden_core::crypto::VerifyingKey)>,
    origin: String,
    upto: u64,
}

/// Decodes the next records the chunk makes due and checks their signatures, on every
/// core; the ordered pass uses each answer only for the key it trusts.
fn precheck_due(v: &mut Verifier, cps: &mut Checkpoints, a: &Ahead) -> Result<(), std::io::Error> {
    let due = cps.due_ahead(a.upto, AHEAD_BYTES)?;
    let checked = par_map_with(
        &due,
        threads(),
        || (),
        |(), (_, l)| warden_core::verify::precheck(l, &a.keys, &a.origin),
    );
    let ks: Vec<u64> = due.iter().map(|(k, _)| *k).collect();
    for (k, p) in ks.into_iter().zip(checked) {
        if let Some(p) = p {
            v.add_prechecked(k, p);
        }
    }
    Ok(())
}

/// Feeds the verifier every record due at its position, checking the next ones ahead
/// (with `ahead`) whenever the next is not checked yet.
fn feed_due(
    v: &mut Verifier,
    cps: &mut Checkpoints,
    ahead: Option<&Ahead>,
) -> Result<(), std::io::Error> {
    while let Some((_, size)) = &cps.next {
        if *size > v.position() {
            break;
        }
        if let Some(a) = ahead
            && cps.k >= cps.prechecked
        {
            precheck_due(v, cps, a)?;
        }
        let Some((line, _)) = &cps.next else {
            break;
        };
        v.checkpoint(cps.k, line);
        cps.offset += line.len() as u64 + 1;
        cps.k += 1;
        cps.advance()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Records are read ahead in bounded batches that, consumed in order, hand every
    /// record to the verifier exactly once: none skipped, none twice, however small
    /// the limit.
    #[test]
    fn records_read_ahead_in_bounded_batches_are_each_handed_over_once_in_order() {
        let n = 300u64;
        let data: String = (0..n)
            .map(|i| {
                format!(
                    "{{\"first\":{i},\"size\":{},\"pad\":\"{}\"}}\n",
                    i + 1,
                    "x".repeat(90)
                )
            })
            .collect();
        let longest = data.lines().map(str::len).max().unwrap();
        for max_bytes in [1usize, 500, 4_000, 1 << 20] {
            let mut cps = Checkpoints::new(Box::new(std::io::Cursor::new(data.clone())), 0, 0);
            cps.advance().unwrap();
            let upto = 250;
            let mut handed = Vec::new();
            while cps.next.as_ref().is_some_and(|(_, size)| *size <= upto) {
                if cps.k >= cps.prechecked {
                    let due = cps.due_ahead(upto, max_bytes).unwrap();
                    assert!(!due.is_empty(), "each call makes progress");
                    let bytes: usize = due.iter().map(|(_, l)| l.len()).sum();
                    // The next record, then lines until the limit is reached.
                    assert!(
                        bytes <= max_bytes + 2 * longest,
                        "{bytes} bytes read ahead past {max_bytes}"
                    );
                    for (k, l) in due {
                        assert_eq!(quick_size(l), Some(k + 1), "record {k} is its own line");
                        handed.push(k);
                    }
                }
                cps.k += 1;
                cps.advance().unwrap();
            }
            let due: Vec<u64> = (0..upto).collect();
            assert_eq!(&handed[..upto as usize], &due[..], "limit {max_bytes}");
            assert!(
                handed.len() <= upto as usize + 1,
                "at most one record past the chunk"
            );
        }
    }
}
