//! Rate-limit budgets shared by every node of a cluster, so that a client spreading its
//! requests (or its password guesses) over the nodes meets one budget, not one per node.
//!
//! A budget is a GCRA bucket kept as one row: its theoretical arrival time `tat`, in
//! seconds of the database's clock (never a node's, so skew between nodes does not
//! matter). A node takes cells in small chunks and admits requests from what it holds
//! (`warden_server::limits`), so the database sees one statement per chunk, not per
//! request; cells a node held but did not use are given back with its next take. The
//! table is `UNLOGGED`: after a crash of PostgreSQL every budget starts full, which
//! is what a restarted single server does too.

use crate::{ClusterError, db};
use sqlx::PgPool;
use std::time::Duration;

/// What a take got.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Taken {
    /// This many cells (at least one).
    Cells(u32),
    /// None: the next cell is free after this long.
    Wait(Duration),
}

/// Rows whose bucket has been full this long are deleted (any budget refills well
/// within it: an hour is 60 windows of the slowest limit).
const IDLE_SECS: f64 = 3600.0;

/// Takes up to `want` cells of the budget `key` that frees one cell every `period` and
/// banks at most `burst`, after giving back `unused` cells taken before. A statement of
/// its own: concurrent takes from any number of nodes are serialised by the row lock.
pub async fn take(
    pool: &PgPool,
    key: &str,
    period: Duration,
    burst: u32,
    want: u32,
    unused: u32,
) -> Result<Taken, ClusterError> {
    let t = period.as_secs_f64().max(1e-6);
    let burst = f64::from(burst.max(1));
    // `now` is the statement's timestamp, the same everywhere in the statement. The
    // cells free at `base` are (now + burst·t − base)/t, rounded down (with a
    // thousandth of a cell of slack for the floating point of epoch seconds).
    let (granted, ahead): (i32, f64) = sqlx::query_as(
        "WITH now AS (SELECT extract(epoch FROM statement_timestamp())::float8 AS s)
         INSERT INTO rate_budgets AS b (key, tat, granted)
         SELECT $1, now.s + least($4, $3) * $2, least($4, $3)::int FROM now
         ON CONFLICT (key) DO UPDATE SET (tat, granted) = (
             SELECT x.base + x.g * $2, x.g FROM (
                 SELECT y.base, least($4, greatest(0, floor(
                     (y.s + $3 * $2 - y.base) / $2 + 0.001)))::int AS g
                 FROM (SELECT now.s, greatest(b.tat - $5 * $2, now.s) AS base FROM now) y
             ) x)
         RETURNING granted, tat - extract(epoch FROM statement_timestamp())::float8",
    )
    .bind(key)
    .bind(t)
    .bind(burst)
    .bind(i32::try_from(want.max(1)).unwrap_or(i32::MAX))
    .bind(i32::try_from(unused).unwrap_or(i32::MAX))
    .fetch_one(pool)
    .await
    .map_err(db("take a rate-limit budget"))?;
    match u32::try_from(granted) {
        Ok(n) if n > 0 => Ok(Taken::Cells(n)),
        // Nothing free: one cell frees when `tat` falls within `burst − 1` cells of now.
        _ => {
            let wait = (ahead - (burst - 1.0) * t).max(0.0);
            Ok(Taken::Wait(Duration::from_secs_f64(wait.min(86_400.0))))
        }
    }
}

/// Deletes the budgets that have been full for an hour.
pub async fn tidy(pool: &PgPool) -> Result<u64, ClusterError> {
    let r = sqlx::query(
        "DELETE FROM rate_budgets WHERE tat < extract(epoch FROM statement_timestamp()) - $1",
    )
    .bind(IDLE_SECS)
    .execute(pool)
    .await
    .map_err(db("tidy rate-limit budgets"))?;
    Ok(r.rows_affected())
}
