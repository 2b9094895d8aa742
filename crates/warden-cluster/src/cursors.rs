//! SIEM export cursors kept in the database, so that whichever node holds a sink's
//! export lease resumes where the last holder stopped. A cursor is stored as the
//! exporter encodes it, with the index of the next entry to deliver beside it; a save
//! never moves a cursor back, so a holder that lost its lease while delivering cannot
//! undo what its successor confirmed (at worst it confirmed entries again: delivery is
//! at-least-once).

use crate::{ClusterError, db};
use sqlx::PgPool;

/// The saved cursor of `sink`, if any.
pub async fn load(pool: &PgPool, sink: &str) -> Result<Option<Vec<u8>>, ClusterError> {
    sqlx::query_scalar("SELECT cursor FROM export_cursors WHERE sink = $1")
        .bind(sink)
        .fetch_optional(pool)
        .await
        .map_err(db("read export cursor"))
}

/// Every sink's saved cursor.
pub async fn all(pool: &PgPool) -> Result<Vec<Vec<u8>>, ClusterError> {
    sqlx::query_scalar("SELECT cursor FROM export_cursors ORDER BY sink")
        .fetch_all(pool)
        .await
        .map_err(db("read export cursors"))
}

/// Saves `cursor` for `sink` unless the stored one is further along than `next`.
/// Returns whether it was stored.
pub async fn save(
    pool: &PgPool,
    sink: &str,
    next: u64,
    cursor: &[u8],
) -> Result<bool, ClusterError> {
    let next = i64::try_from(next).map_err(|_| ClusterError::Config("cursor past i64".into()))?;
    let r = sqlx::query(
        "INSERT INTO export_cursors (sink, next, cursor) VALUES ($1, $2, $3)
         ON CONFLICT (sink) DO UPDATE SET next = EXCLUDED.next, cursor = EXCLUDED.cursor
            WHERE export_cursors.next <= EXCLUDED.next",
    )
    .bind(sink)
    .bind(next)
    .bind(cursor)
    .execute(pool)
    .await
    .map_err(db("save export cursor"))?;
    Ok(r.rows_affected() == 1)
}
