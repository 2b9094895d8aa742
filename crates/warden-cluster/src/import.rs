//! Brings an embedded ledger's history into a cluster database (`warden migrate`). The
//! bytes stay the bytes: the cluster's ledger continues the same tree under the same
//! root key, so every checkpoint signed before the move (the ones a SIEM or an auditor
//! holds) stays consistent with every one signed after.
//!
//! The files are committed in groups of whole checkpoint records (about 8 MiB each),
//! entries and records together, as the sequencer commits a batch: the database never
//! holds an entry no checkpoint covers. The import holds the sequencer lease, so a node
//! started meanwhile cannot write between its groups. A ledger sealed into segments is
//! read as the one stream its segments make (the cluster keeps one). An import that
//! stopped half-way leaves whole groups behind; run again, it checks that what the
//! database holds is byte for byte a prefix of the files and carries on after it.
//!
//! A ledger whose oldest segments retention removed moves with what records the
//! removal ([`crate::base`]): the removed segments' index lines go in with the first
//! group, and the entries keep their logical offsets, so the anchor what remains
//! verifies from, and every checkpoint record, stay valid unchanged.

use crate::base::Base;
use crate::chunks::{Append, BASE, CHECKPOINTS, ENTRIES};
use crate::{ClusterError, io};
use sqlx::PgPool;
use std::io::{BufRead, Read};
use std::path::Path;
use std::time::Duration;
use warden_core::record::CheckpointRecord;
use warden_store::ledger::checkpoints_path;
use warden_store::segments::LogView;

/// Bytes gathered before a group is committed.
const GROUP: usize = 8 << 20;
/// The import's hold on the sequencer lease, renewed after every group.
const HOLD: Duration = Duration::from_secs(30);

/// What an import brought in (or, for [`resumable`], what an earlier one had).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Entries in the ledger moved (its tree size), the removed ones included.
    pub entries: u64,
    /// Entries retention had removed before the move (the first present one's index).
    pub removed: u64,
    pub checkpoints: u64,
    /// Where the entries' bytes end (a logical offset: it counts removed bytes).
    pub bytes: u64,
    /// Bytes of checkpoint records.
    pub record_bytes: u64,
}

fn corrupt(m: impl Into<String>) -> ClusterError {
    ClusterError::Corrupt(m.into())
}

/// The ledger at `log` read in order: its entries (every segment, then the active
/// file) and its checkpoint records.
struct Files {
    entries: std::io::BufReader<warden_store::segments::ViewReader>,
    records: std::io::BufReader<std::fs::File>,
    log: std::path::PathBuf,
    cps: std::path::PathBuf,
    /// What retention removed, if anything.
    base: Option<Base>,
}

impl Files {
    fn open(log: &Path) -> Result<Self, ClusterError> {
        let view = LogView::open(log)?;
        let base = Base::of_files(log)?;
        let start = base.as_ref().map_or(0, |b| b.start);
        if view.start() != start {
            return Err(corrupt(format!(
                "{}: the present entries start at byte {}, the removed segments end at {start}",
                log.display(),
                view.start()
            )));
        }
        let len = view.len().map_err(io("read", log))?;
        let cps = checkpoints_path(log);
        Ok(Self {
            entries: std::io::BufReader::new(view.reader(start, len.saturating_sub(start))),
            records: std::io::BufReader::new(std::fs::File::open(&cps).map_err(io("open", &cps))?),
            log: log.to_path_buf(),
            cps,
            base,
        })
    }

    /// Where nothing is imported yet: before the first present entry.
    fn origin(&self) -> Imported {
        let (removed, bytes) = self.base.as_ref().map_or((0, 0), |b| (b.first, b.start));
        Imported {
            removed,
            bytes,
            ..Imported::default()
        }
    }

    /// The next checkpoint record (its line with the newline, decoded), `None` at the end.
    fn record(
        &mut self,
        line: &mut Vec<u8>,
        n: u64,
    ) -> Result<Option<CheckpointRecord>, ClusterError> {
        line.clear();
        let got = self
            .records
            .read_until(b'\n', line)
            .map_err(io("read", &self.cps))?;
        if got == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(corrupt(format!(
                "{}: the last checkpoint record is torn; run the ledger once to recover it",
                self.cps.display()
            )));
        }
        let body = line.get(..line.len() - 1).unwrap_or_default();
        CheckpointRecord::decode(body)
            .map(Some)
            .map_err(|e| corrupt(format!("{} record {n}: {e}", self.cps.display())))
    }

    /// Appends the entries `r` covers to `buf`, after `done.entries` of them.
    fn entries_of(
        &mut self,
        r: &CheckpointRecord,
        done: &mut Imported,
        buf: &mut Vec<u8>,
    ) -> Result<(), ClusterError> {
        if r.first != done.entries || r.size < r.first {
            return Err(corrupt(format!(
                "checkpoint record {} covers {}..{} after {} entries",
                done.checkpoints, r.first, r.size, done.entries
            )));
        }
        if r.size <= done.removed {
            // Its entries were removed; the record itself stays (proofs and the key
            // schedule need it).
            done.entries = r.size;
            return Ok(());
        }
        if r.first < done.removed {
            return Err(corrupt(format!(
                "checkpoint record {} covers {}..{}, across the removed prefix's end at {}",
                done.checkpoints, r.first, r.size, done.removed
            )));
        }
        for _ in r.first..r.size {
            let before = buf.len();
            let got = self
                .entries
                .read_until(b'\n', buf)
                .map_err(io("read", &self.log))?;
            if got == 0 || buf.last() != Some(&b'\n') {
                buf.truncate(before);
                return Err(corrupt(format!(
                    "{}: entry {} is missing or torn though a checkpoint covers it",
                    self.log.display(),
                    done.entries
                )));
            }
            done.entries += 1;
        }
        Ok(())
    }
}

/// What the cluster's database holds of the ledger at `log`: nothing (`None`), or the
/// prefix an earlier import that stopped half-way left, checked byte for byte against
/// the files. Anything else (another ledger, bytes that differ, a prefix that does not
/// end at a checkpoint record) is an error.
pub async fn resumable(pool: &PgPool, log: &Path) -> Result<Option<Imported>, ClusterError> {
    crate::schema::ensure(pool).await?;
    let elen = crate::chunks::length(pool, ENTRIES).await?;
    let clen = crate::chunks::length(pool, CHECKPOINTS).await?;
    if elen == 0 && clen == 0 {
        return Ok(None);
    }
    let other = || {
        ClusterError::Config(
            "the cluster's database already holds a cluster's ledger, and it is not a prefix of this one: a ledger moves into an empty database, or into what an interrupted move of the same ledger left"
                .into(),
        )
    };
    // Where the database's bytes end in the files: after whole checkpoint records.
    let mut files = Files::open(log)?;
    let base = {
        let mut conn = pool
            .acquire()
            .await
            .map_err(crate::db("read ledger base"))?;
        Base::read(&mut conn).await?
    };
    if base != files.base {
        return Err(other());
    }
    let mut done = files.origin();
    let mut line = Vec::new();
    let mut scratch = Vec::new();
    while done.record_bytes < clen {
        let Some(r) = files.record(&mut line, done.checkpoints)? else {
            return Err(other());
        };
        scratch.clear();
        files.entries_of(&r, &mut done, &mut scratch)?;
        done.bytes += scratch.len() as u64;
        done.record_bytes += line.len() as u64;
        done.checkpoints += 1;
    }
    if done.record_bytes != clen || done.bytes != elen {
        return Err(other());
    }
    // And they are the same bytes.
    let mut files = Files::open(log)?;
    let mut conn = pool
        .acquire()
        .await
        .map_err(crate::db("read ledger chunks"))?;
    let estart = files.origin().bytes;
    for (stream, from, len) in [(ENTRIES, estart, elen), (CHECKPOINTS, 0, clen)] {
        let mut off = from;
        while off < len {
            let chunks = crate::chunks::from(&mut conn, stream, off, 16).await?;
            if chunks.is_empty() {
                return Err(other());
            }
            for (at, data) in chunks {
                if at != off {
                    return Err(other());
                }
                let mut local = vec![0u8; data.len()];
                let read = if stream == ENTRIES {
                    files.entries.read_exact(&mut local)
                } else {
                    files.records.read_exact(&mut local)
                };
                if read.is_err() || local != data {
                    return Err(other());
                }
                off += data.len() as u64;
            }
        }
    }
    Ok(Some(done))
}

/// Imports the ledger at `log` (and its checkpoints file) into the ledger of `pool`,
/// as `holder`: into an empty one, or after the prefix an earlier, interrupted import
/// of the same files left ([`resumable`]). The caller has verified the files: every
/// entry is covered by a checkpoint (entries past the last one are refused).
/// `progress` is told the entries' bytes committed so far.
pub async fn import(
    pool: &PgPool,
    holder: &str,
    log: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Imported, ClusterError> {
    let Some(lease) = crate::lease::acquire(pool, crate::lease::SEQUENCER, holder, HOLD).await?
    else {
        return Err(ClusterError::Config(
            "a node holds the sequencer lease: stop every node before importing".into(),
        ));
    };
    // Checked under the lease: nothing writes meanwhile.
    let result = match resumable(pool, log).await {
        Ok(start) => copy(pool, &lease, log, start, progress).await,
        Err(e) => Err(e),
    };
    let _ = crate::lease::release(pool, &lease).await;
    result
}

async fn copy(
    pool: &PgPool,
    lease: &crate::lease::Lease,
    log: &Path,
    start: Option<Imported>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Imported, ClusterError> {
    let mut files = Files::open(log)?;
    let mut done = files.origin();
    // An empty database gets the base (if any) with the first group.
    let mut base = match start {
        None => files.base.as_ref().map(|b| b.lines.clone()),
        Some(_) => None,
    };
    let start = start.unwrap_or_else(|| files.origin());
    let (mut ebuf, mut cbuf) = (Vec::new(), Vec::new());
    let mut line = Vec::new();
    // Past what the database holds already.
    while done.checkpoints < start.checkpoints {
        let Some(r) = files.record(&mut line, done.checkpoints)? else {
            return Err(corrupt("the ledger's files shrank during the import"));
        };
        ebuf.clear();
        files.entries_of(&r, &mut done, &mut ebuf)?;
        done.checkpoints += 1;
    }
    ebuf.clear();
    let (mut eoff, mut coff) = (start.bytes, start.record_bytes);
    done.bytes = eoff;
    done.record_bytes = coff;
    loop {
        let r = files.record(&mut line, done.checkpoints)?;
        if let Some(r) = &r {
            files.entries_of(r, &mut done, &mut ebuf)?;
            cbuf.extend_from_slice(&line);
            done.checkpoints += 1;
        }
        let last = r.is_none();
        if last {
            let mut rest = Vec::new();
            if files
                .entries
                .read_until(b'\n', &mut rest)
                .map_err(io("read", log))?
                > 0
            {
                return Err(corrupt(format!(
                    "{}: entries follow the last checkpoint (never acknowledged); run the ledger once so it recovers them, then import",
                    log.display()
                )));
            }
        }
        if (last && !cbuf.is_empty()) || ebuf.len() >= GROUP || cbuf.len() >= GROUP {
            crate::chunks::commit(
                pool,
                lease,
                &[
                    Append {
                        stream: BASE,
                        offset: 0,
                        data: base.as_deref().unwrap_or_default(),
                    },
                    Append {
                        stream: ENTRIES,
                        offset: eoff,
                        data: &ebuf,
                    },
                    Append {
                        stream: CHECKPOINTS,
                        offset: coff,
                        data: &cbuf,
                    },
                ],
            )
            .await?;
            base = None;
            eoff += ebuf.len() as u64;
            coff += cbuf.len() as u64;
            done.bytes = eoff;
            done.record_bytes = coff;
            progress(eoff);
            ebuf.clear();
            cbuf.clear();
            if !crate::lease::renew(pool, lease, HOLD).await? {
                return Err(ClusterError::Fenced { token: lease.token });
            }
        }
        if last {
            break;
        }
    }
    Ok(done)
}
