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

/// Finds how much of the local `path` matches the database's `stream`, cutting the
/// rest. Returns the matching length.
async fn intact(
    conn: &mut sqlx::PgConnection,
    stream: i16,
    path: &Path,
) -> Result<u64, ClusterError> {
    let mut len = file_len(path)?;
    let start = len;
    while len > 0 {
        let Some((off, data)) = crate::chunks::last_before(conn, stream, len).await? else {
            len = 0;
            break;
        };
        let end = off + data.len() as u64;
        if end <= len && read_range(path, off, data.len())? == data {
            len = end;
            break;
        }
        // The chunk is torn, missing or different here: keep only what precedes it.
        len = off;
    }
    if len != start {
        cut(path, len)?;
    }
    Ok(len)
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
) -> Result<u64, ClusterError> {
    loop {
        let chunks = crate::chunks::from(conn, stream, len, PULL).await?;
        let n = chunks.len();
        for (off, data) in chunks {
            if off != len {
                return Err(ClusterError::Corrupt(format!(
                    "stream {stream}: a chunk starts at {off}, the previous one ends at {len}"
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
/// When another holds it, nothing is done and `Ok(None)` returned: that process (the
/// sequencer, or another follower) keeps the copy current.
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
    let lock_path = log.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    if lock.try_lock().is_err() {
        return Ok(None);
    }
    let r = sync_locked(pool, log, known).await;
    drop(lock);
    r.map(Some)
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
    let here = Synced {
        entries: file_len(log)?,
        checkpoints: file_len(&cps)?,
    };
    let (e, c) = if known == Some(here) {
        (here.entries, here.checkpoints)
    } else {
        let e = intact(&mut tx, ENTRIES, log).await?;
        let c = intact(&mut tx, CHECKPOINTS, &cps).await?;
        if e != here.entries {
            // The saved tree state may describe entries just cut.
            let _ = std::fs::remove_file(tree_state_path(log));
        }
        (e, c)
    };
    // Entries first: a reader never finds a checkpoint whose entries are not there.
    let entries = pull(&mut tx, ENTRIES, log, e).await?;
    let checkpoints = pull(&mut tx, CHECKPOINTS, &cps, c).await?;
    tx.commit().await.map_err(db("end sync"))?;
    Ok(Synced {
        entries,
        checkpoints,
    })
}
