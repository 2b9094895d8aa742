//! A node's local copy of the cluster's ledger: the same two files an embedded ledger
//! has, so every reader (verify, reports, SIEM export, the audit API) reads them
//! unchanged.
//!
//! The copy only ever holds bytes the database holds at the same offsets. A copy left
//! by a crash may end in bytes this node wrote as sequencer but never committed, or in
//! a torn chunk; [`sync`] finds the last chunk the copy holds intact (comparing its
//! bytes, which differ from any other node's chunk at that offset: every batch has
//! fresh nonces), cuts what follows, and appends what the database has beyond it. Both
//! streams are read in one snapshot, so the copy's checkpoints never run ahead of its
//! entries. The copy is not fsynced: the database is the durable medium, and a copy
//! lost in a power failure is rebuilt from it.
//!
//! A ledger that retention had trimmed before it moved starts at a later byte
//! ([`crate::base`]): the copy then holds the removed segments' index lines, and its
//! entries file holds the stream from that logical offset on.

use crate::base::Base;
use crate::chunks::{CHECKPOINTS, ENTRIES};
use crate::{ClusterError, db, io};
use sqlx::PgPool;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use warden_store::ledger::{checkpoints_path, tree_state_path};

/// The lengths of the copy's two files when they last matched the database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub entries: u64,
    pub checkpoints: u64,
    /// Logical offset of the entries file's first byte (0 unless retention removed a
    /// prefix before the ledger moved).
    pub start: u64,
}

/// Chunks read per query while catching up.
const PULL: i64 = 256;

fn file_len(path: &Path) -> Result<u64, ClusterError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io("stat", path)(e)),
    }
}

fn read_range(path: &Path, from: u64, len: usize) -> Result<Vec<u8>, ClusterError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(io("open", path))?;
    f.seek(SeekFrom::Start(from)).map_err(io("seek", path))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).map_err(io("read", path))?;
    Ok(buf)
}

fn cut(path: &Path, len: u64) -> Result<(), ClusterError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("open", path))?;
    f.set_len(len).map_err(io("truncate", path))
}

/// Finds how much of the local `path` (the stream from logical offset `base` on)
/// matches the database's `stream`, cutting the rest. Returns the matching length.
async fn intact(
    conn: &mut sqlx::PgConnection,
    stream: i16,
    path: &Path,
    base: u64,
) -> Result<u64, ClusterError> {
    let mut len = file_len(path)?;
    let start = len;
    while len > 0 {
        let Some((off, data)) = crate::chunks::last_before(conn, stream, base + len).await? else {
            len = 0;
            break;
        };
        let Some(at) = off.checked_sub(base) else {
            // A chunk before the copy's start: nothing of the copy matches.
            len = 0;
            break;
        };
        let end = at + data.len() as u64;
        if end <= len && read_range(path, at, data.len())? == data {
            len = end;
            break;
        }
        // The chunk is torn, missing or different here: keep only what precedes it.
        len = at;
    }
    if len != start {
        cut(path, len)?;
    }
    Ok(len)
}

fn cut_if_present(path: &Path) -> Result<(), ClusterError> {
    if file_len(path)? > 0 {
        cut(path, 0)?;
    }
    let _ = std::fs::remove_file(tree_state_path(path));
    Ok(())
}

fn append(path: &Path, data: &[u8]) -> Result<(), ClusterError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io("open", path))?;
    f.write_all(data).map_err(io("write", path))
}

async fn pull(
    conn: &mut sqlx::PgConnection,
    stream: i16,
    path: &Path,
    mut len: u64,
    base: u64,
) -> Result<u64, ClusterError> {
    loop {
        let chunks = crate::chunks::from(conn, stream, base + len, PULL).await?;
        let n = chunks.len();
        for (off, data) in chunks {
            if off != base + len {
                return Err(ClusterError::Corrupt(format!(
                    "stream {stream}: a chunk starts at {off}, the previous one ends at {}",
                    base + len
                )));
            }
            append(path, &data)?;
            len += data.len() as u64;
        }
        if n < usize::try_from(PULL).unwrap_or(usize::MAX) {
            return Ok(len);
        }
    }
}

/// Brings the copy at `log` (and its checkpoints file) up to the database. `known` is
/// what the previous call returned: when the files still have those lengths they are
/// trusted (nothing but this function and the sequencer writes them) and only the new
/// chunks are read.
///
/// The copy is written under the ledger's own lock file (the one a sequencer's ledger
/// holds while open), so two processes of one data directory never write it at once.
/// Followers (a node's background thread, a command catching up before it reads) first
/// queue on a second lock file, `<log>.sync`, held only for one pull: so when the
/// ledger's lock is taken while this one is held, its holder is a sequencer's open
/// ledger, which keeps the copy current itself, and `Ok(None)` is returned. A follower
/// mid-pull is waited for, never mistaken for the sequencer: returning early then would
/// leave the caller reading a copy whose entries have arrived before its checkpoints.
pub async fn sync(
    pool: &PgPool,
    log: &Path,
    known: Option<Synced>,
) -> Result<Option<Synced>, ClusterError> {
    if let Some(dir) = log.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let queue = lock_file(&log.with_extension("sync"))?;
    let queue = tokio::task::spawn_blocking(move || queue.lock().map(|()| queue))
        .await
        .map_err(|e| ClusterError::Config(format!("waiting for the copy's pull: {e}")))?
        .map_err(io("lock", &log.with_extension("sync")))?;
    let lock = lock_file(&log.with_extension("lock"))?;
    if lock.try_lock().is_err() {
        return Ok(None);
    }
    let r = sync_locked(pool, log, known).await;
    drop(lock);
    drop(queue);
    r.map(Some)
}

fn lock_file(path: &Path) -> Result<std::fs::File, ClusterError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io("open", path))
}

async fn sync_locked(
    pool: &PgPool,
    log: &Path,
    known: Option<Synced>,
) -> Result<Synced, ClusterError> {
    let cps = checkpoints_path(log);
    let mut tx = pool.begin().await.map_err(db("begin sync"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db("snapshot"))?;
    // The base is immutable, but a copy made before it (or of another ledger) must
    // not be read from the wrong start: it is looked at on every sync (one primary-key
    // read).
    let base = Base::read(&mut tx).await?;
    if crate::base::install(log, base.as_ref())? {
        // The copy's entries were laid out from another start.
        cut_if_present(log)?;
    }
    let start = base.map_or(0, |b| b.start);
    let here = Synced {
        entries: file_len(log)?,
        checkpoints: file_len(&cps)?,
        start,
    };
    let (e, c) = if known == Some(here) {
        (here.entries, here.checkpoints)
    } else {
        let e = intact(&mut tx, ENTRIES, log, start).await?;
        let c = intact(&mut tx, CHECKPOINTS, &cps, 0).await?;
        if e != here.entries {
            // The saved tree state may describe entries just cut.
            let _ = std::fs::remove_file(tree_state_path(log));
        }
        (e, c)
    };
    // Entries first: a reader never finds a checkpoint whose entries are not there.
    let entries = pull(&mut tx, ENTRIES, log, e, start).await?;
    let checkpoints = pull(&mut tx, CHECKPOINTS, &cps, c, 0).await?;
    tx.commit().await.map_err(db("end sync"))?;
    Ok(Synced {
        entries,
        checkpoints,
        start,
    })
}
