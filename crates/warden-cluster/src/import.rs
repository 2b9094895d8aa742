//! Brings an embedded ledger's history into an empty cluster database (`warden
//! migrate`). The bytes stay the bytes: the cluster's ledger continues the same tree
//! under the same root key, so every checkpoint signed before the move (the ones a SIEM
//! or an auditor holds) stays consistent with every one signed after.
//!
//! The files are committed in groups of whole checkpoint records (about 8 MiB each),
//! entries and records together, as the sequencer commits a batch: the database never
//! holds an entry no checkpoint covers. The import holds the sequencer lease, so a node
//! started meanwhile cannot write between its groups.

use crate::chunks::{Append, CHECKPOINTS, ENTRIES};
use crate::{ClusterError, io};
use sqlx::PgPool;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;
use warden_core::record::CheckpointRecord;
use warden_store::ledger::checkpoints_path;

/// Bytes gathered before a group is committed.
const GROUP: usize = 8 << 20;
/// The import's hold on the sequencer lease, renewed after every group.
const HOLD: Duration = Duration::from_secs(30);

/// What an import brought in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub entries: u64,
    pub checkpoints: u64,
    pub bytes: u64,
}

fn corrupt(m: impl Into<String>) -> ClusterError {
    ClusterError::Corrupt(m.into())
}

/// Imports the ledger at `log` (and its checkpoints file) into the empty ledger of
/// `pool`, as `holder`. The caller has verified the files: every entry is covered by
/// a checkpoint (entries past the last one are refused). `progress` is told the
/// entries' bytes committed so far.
pub async fn import(
    pool: &PgPool,
    holder: &str,
    log: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Imported, ClusterError> {
    crate::schema::ensure(pool).await?;
    if crate::chunks::length(pool, ENTRIES).await? > 0
        || crate::chunks::length(pool, CHECKPOINTS).await? > 0
    {
        return Err(ClusterError::Config(
            "the cluster's database already holds a ledger; a ledger is imported into an empty one"
                .into(),
        ));
    }
    let Some(lease) = crate::lease::acquire(pool, crate::lease::SEQUENCER, holder, HOLD).await?
    else {
        return Err(ClusterError::Config(
            "a node holds the sequencer lease: stop every node before importing".into(),
        ));
    };
    let result = copy(pool, &lease, log, progress).await;
    let _ = crate::lease::release(pool, &lease).await;
    result
}

async fn copy(
    pool: &PgPool,
    lease: &crate::lease::Lease,
    log: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Imported, ClusterError> {
    let cps = checkpoints_path(log);
    let mut entries = std::io::BufReader::new(std::fs::File::open(log).map_err(io("open", log))?);
    let mut records = std::io::BufReader::new(std::fs::File::open(&cps).map_err(io("open", &cps))?);
    let mut done = Imported::default();
    let (mut ebuf, mut cbuf) = (Vec::new(), Vec::new());
    let (mut eoff, mut coff) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = records
            .read_until(b'\n', &mut line)
            .map_err(io("read", &cps))?;
        if n > 0 {
            if line.last() != Some(&b'\n') {
                return Err(corrupt(format!(
                    "{}: the last checkpoint record is torn; run the ledger once to recover it",
                    cps.display()
                )));
            }
            let body = line.get(..line.len() - 1).unwrap_or_default();
            let r = CheckpointRecord::decode(body).map_err(|e| {
                corrupt(format!(
                    "{} record {}: {e}",
                    cps.display(),
                    done.checkpoints
                ))
            })?;
            if r.first != done.entries || r.size < r.first {
                return Err(corrupt(format!(
                    "checkpoint record {} covers {}..{} after {} entries",
                    done.checkpoints, r.first, r.size, done.entries
                )));
            }
            for _ in r.first..r.size {
                let before = ebuf.len();
                let got = entries
                    .read_until(b'\n', &mut ebuf)
                    .map_err(io("read", log))?;
                if got == 0 || ebuf.last() != Some(&b'\n') {
                    ebuf.truncate(before);
                    return Err(corrupt(format!(
                        "{}: entry {} is missing or torn though a checkpoint covers it",
                        log.display(),
                        done.entries
                    )));
                }
                done.entries += 1;
            }
            cbuf.extend_from_slice(&line);
            done.checkpoints += 1;
        }
        let last = n == 0;
        if last {
            let mut rest = Vec::new();
            if entries
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
            eoff += ebuf.len() as u64;
            coff += cbuf.len() as u64;
            done.bytes = eoff;
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
