//! What retention removed before a ledger moved onto the cluster.
//!
//! An embedded ledger whose oldest segments retention removed starts at a later entry
//! and byte: its segment index records the removed segments, the last with the
//! verification state at their end (the anchor what remains verifies from). The
//! cluster keeps those index lines as one immutable chunk of their own stream
//! ([`crate::chunks::BASE`], offset 0), committed with the import's first group, and
//! the entries' chunks at the same logical offsets the embedded ledger used: the
//! first at the removed prefix's length. Every node's copy holds the same index
//! lines beside its one entries file, so the ledger opens, verifies and is read there
//! exactly as an embedded ledger after retention is. A ledger that moved whole has no
//! base, and its copies no index.

use crate::chunks::BASE;
use crate::{ClusterError, db};
use std::path::Path;
use warden_store::segments::{self, SegmentRecord};

/// The removed prefix: its index lines, where the present entries start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// The index lines of the removed segments.
    pub lines: Vec<u8>,
    /// Logical byte offset of the first present entry.
    pub start: u64,
    /// Index of the first present entry.
    pub first: u64,
}

fn corrupt(m: impl Into<String>) -> ClusterError {
    ClusterError::Corrupt(m.into())
}

impl Base {
    /// The base of the embedded ledger at `log`: `None` when nothing was removed.
    pub fn of_files(log: &Path) -> Result<Option<Self>, ClusterError> {
        let removed: Vec<SegmentRecord> = segments::load_index(log)?
            .into_iter()
            .take_while(|r| r.removed.is_some())
            .collect();
        if removed.is_empty() {
            return Ok(None);
        }
        let lines = segments::encode_index(&removed)?;
        Self::parse(lines).map(Some)
    }

    /// Checks index lines: every segment removed, the last carrying the anchor.
    pub fn parse(lines: Vec<u8>) -> Result<Self, ClusterError> {
        let index = segments::parse_index(Path::new("the cluster's ledger base"), &lines)?;
        let Some(last) = index.last() else {
            return Err(corrupt("the cluster's ledger base names no segment"));
        };
        if index.iter().any(|r| r.removed.is_none()) {
            return Err(corrupt(
                "the cluster's ledger base names a segment that was not removed",
            ));
        }
        if last
            .removed
            .as_ref()
            .and_then(|r| r.resume.as_ref())
            .is_none()
        {
            return Err(corrupt(
                "the cluster's ledger base has no verification state to resume from",
            ));
        }
        Ok(Self {
            start: last.offset + last.bytes,
            first: last.end,
            lines,
        })
    }

    /// The cluster's base, read on `conn` (inside the caller's snapshot).
    pub(crate) async fn read(conn: &mut sqlx::PgConnection) -> Result<Option<Self>, ClusterError> {
        let row: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM ledger_chunks WHERE stream = $1 AND off = 0")
                .bind(BASE)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("read ledger base"))?;
        row.map(Self::parse).transpose()
    }
}

/// Makes the copy at `log` hold `base`'s index lines (or no index, without one).
/// Returns whether anything changed: the copy's entries were then laid out from
/// another start, and the caller discards them.
pub(crate) fn install(log: &Path, base: Option<&Base>) -> Result<bool, ClusterError> {
    let path = segments::index_path(log);
    let here = match std::fs::read(&path) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(crate::io("read", &path)(e)),
    };
    match (base, here) {
        (Some(b), Some(h)) if h == b.lines => Ok(false),
        (Some(b), _) => {
            segments::write_index(log, &b.lines)?;
            Ok(true)
        }
        (None, None) => Ok(false),
        (None, Some(_)) => Err(ClusterError::Config(format!(
            "{} holds a segment index, but the cluster's ledger starts at entry 0: this is not a copy of it (move the ledger's files aside, or run `warden migrate` to bring them in)",
            path.display()
        ))),
    }
}
