//! The ledger's two files (entries and checkpoint records) as immutable chunks in
//! PostgreSQL. A batch's entries and the checkpoint that covers them are committed in
//! one transaction, fenced by the sequencer's lease: the database only ever holds a
//! checkpoint-covered prefix of the ledger, written by the lease's current holder.

use crate::lease::{Lease, check_fence};
use crate::{ClusterError, db};
use sqlx::PgPool;

/// The entries file's stream.
pub const ENTRIES: i16 = 0;
/// The checkpoint records' stream.
pub const CHECKPOINTS: i16 = 1;
/// What retention removed before the ledger moved ([`crate::base`]): one chunk at
/// offset 0, or none.
pub const BASE: i16 = 2;

/// Bytes to append to one stream at an offset.
#[derive(Clone, Copy, Debug)]
pub struct Append<'a> {
    pub stream: i16,
    pub offset: u64,
    pub data: &'a [u8],
}

fn offset(v: u64) -> Result<i64, ClusterError> {
    i64::try_from(v).map_err(|_| ClusterError::Corrupt(format!("offset {v} out of range")))
}

/// Commits `appends` (empty ones skipped) under `lease`: nothing is written unless the
/// lease is current and unexpired, and an offset already written fails the whole
/// commit (a fork cannot be stored).
///
/// One statement, one round trip: the rows are inserted only if the lease row (locked
/// `FOR SHARE` until the commit, so a takeover waits for it) still names this token
/// unexpired. It used to be five round trips (begin, the fence's select, an insert per
/// stream, commit), each a few hundred microseconds on a busy machine, on the path of
/// every acknowledgement.
pub async fn commit(
    pool: &PgPool,
    lease: &Lease,
    appends: &[Append<'_>],
) -> Result<(), ClusterError> {
    let rows: Vec<&Append<'_>> = appends.iter().filter(|a| !a.data.is_empty()).collect();
    if rows.is_empty() {
        // Nothing to write; the fence is still checked, as a commit always did.
        let mut conn = pool.acquire().await.map_err(db("begin commit"))?;
        return check_fence(&mut conn, lease).await;
    }
    let mut sql = String::from(
        "INSERT INTO ledger_chunks (stream, off, data, fence) SELECT v.s, v.o, v.d, $2 FROM (VALUES ",
    );
    for i in 0..rows.len() {
        let at = 3 + 3 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${at}::smallint, ${}::bigint, ${}::bytea)",
            at + 1,
            at + 2
        ));
    }
    sql.push_str(
        ") AS v(s, o, d) WHERE EXISTS (SELECT 1 FROM cluster_lease \
         WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp() FOR SHARE)",
    );
    let mut q = sqlx::query(&sql).bind(&lease.name).bind(lease.token);
    for a in &rows {
        q = q.bind(a.stream).bind(offset(a.offset)?).bind(a.data);
    }
    let done = q
        .execute(pool)
        .await
        .map_err(db("write ledger chunks"))?
        .rows_affected();
    if done == rows.len() as u64 {
        Ok(())
    } else {
        Err(ClusterError::Fenced { token: lease.token })
    }
}

/// The stream's chunk that starts before `end` and reaches furthest: `(offset, data)`.
pub(crate) async fn last_before(
    conn: &mut sqlx::PgConnection,
    stream: i16,
    end: u64,
) -> Result<Option<(u64, Vec<u8>)>, ClusterError> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT off, data FROM ledger_chunks WHERE stream = $1 AND off < $2 ORDER BY off DESC LIMIT 1",
    )
    .bind(stream)
    .bind(offset(end)?)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("read ledger chunk"))?;
    Ok(row.map(|(o, d)| (u64::try_from(o).unwrap_or(0), d)))
}

/// The stream's chunks from `from` on, in order, at most `limit` of them.
pub(crate) async fn from(
    conn: &mut sqlx::PgConnection,
    stream: i16,
    from: u64,
    limit: i64,
) -> Result<Vec<(u64, Vec<u8>)>, ClusterError> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT off, data FROM ledger_chunks WHERE stream = $1 AND off >= $2 ORDER BY off LIMIT $3",
    )
    .bind(stream)
    .bind(offset(from)?)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("read ledger chunks"))?;
    Ok(rows
        .into_iter()
        .map(|(o, d)| (u64::try_from(o).unwrap_or(0), d))
        .collect())
}

/// The stream's length in the database.
pub async fn length(pool: &PgPool, stream: i16) -> Result<u64, ClusterError> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT off + length(data) FROM ledger_chunks WHERE stream = $1 ORDER BY off DESC LIMIT 1",
    )
    .bind(stream)
    .fetch_optional(pool)
    .await
    .map_err(db("read ledger length"))?;
    Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}
