//! Reads a ledger's files and drives the core verifier: entries are read in large
//! chunks and their leaf hashes computed on every core; checks run in log order.

use crate::error::{StoreError, io};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use warden_core::merkle::{Hash, leaf_hash};
use warden_core::note::Note;
use warden_core::verify::{Report, ResumeState, Verifier, VerifyConfig};

const CHUNK: usize = 8 * 1024 * 1024;

/// Result of a verification run.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// State to resume from next time, when the run was clean.
    pub resume: Option<ResumeState>,
}

struct Checkpoints {
    reader: BufReader<File>,
    next: Option<(Vec<u8>, u64)>,
    k: u64,
    offset: u64,
}

impl Checkpoints {
    fn advance(&mut self) -> Result<(), std::io::Error> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line)?;
        self.next = if n == 0 {
            None
        } else {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let size = quick_size(&line).unwrap_or(0);
            Some((line, size))
        };
        Ok(())
    }
}

/// Reads `"size":N` from the start of a checkpoint record without a full decode.
fn quick_size(line: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(line.get(..line.len().min(80))?).ok()?;
    let rest = s.split_once("\"size\":")?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn hash_lines(lines: &[&[u8]]) -> Vec<Hash> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if lines.len() < 256 || threads < 2 {
        return lines.iter().map(|l| leaf_hash(l)).collect();
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let hs: Vec<_> = lines
            .chunks(per)
            .map(|c| s.spawn(move || c.iter().map(|l| leaf_hash(l)).collect::<Vec<_>>()))
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
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
    let mut v = match resume {
        Some(st) => Verifier::resume(cfg, st).map_err(StoreError::Config)?,
        None => Verifier::new(cfg),
    };
    for t in trusted {
        v.add_trusted(t);
    }
    let mut f = File::open(log).map_err(io("open", log))?;
    let total = f.metadata().map_err(io("stat", log))?.len();
    let start = resume.map_or(0, |r| r.entries_offset);
    f.seek(SeekFrom::Start(start)).map_err(io("seek", log))?;
    let mut cf = File::open(checkpoints).map_err(io("open", checkpoints))?;
    let cstart = resume.map_or(0, |r| r.checkpoints_offset);
    cf.seek(SeekFrom::Start(cstart))
        .map_err(io("seek", checkpoints))?;
    let mut cps = Checkpoints {
        reader: BufReader::with_capacity(1 << 20, cf),
        next: None,
        k: resume.map_or(0, |r| r.checkpoints),
        offset: cstart,
    };
    cps.advance().map_err(io("read", checkpoints))?;
    let mut offset = start;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut chunk = vec![0u8; CHUNK];
    let mut eof = false;
    while !eof {
        let n = f.read(&mut chunk).map_err(io("read", log))?;
        if n == 0 {
            eof = true;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let cut = if eof {
            buf.len()
        } else {
            buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)
        };
        if cut == 0 {
            continue;
        }
        let body = buf.get(..cut).unwrap_or_default();
        let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let leaves = hash_lines(&lines);
        for (line, leaf) in lines.iter().zip(leaves) {
            feed_due(&mut v, &mut cps).map_err(io("read", checkpoints))?;
            v.entry(line, leaf);
        }
        offset += cut as u64;
        buf.drain(..cut);
        progress(offset, total);
    }
    feed_due(&mut v, &mut cps).map_err(io("read", checkpoints))?;
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
    })
}

fn feed_due(v: &mut Verifier, cps: &mut Checkpoints) -> Result<(), std::io::Error> {
    while let Some((line, size)) = &cps.next {
        if *size > v.position() {
            break;
        }
        v.checkpoint(cps.k, line);
        cps.offset += line.len() as u64 + 1;
        cps.k += 1;
        cps.advance()?;
    }
    Ok(())
}
