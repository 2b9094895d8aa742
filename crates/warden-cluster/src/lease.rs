//! Leases with fencing tokens, kept in PostgreSQL.
//!
//! A lease names one role that exactly one node may play at a time: the ledger's
//! sequencer, or a job that runs once per cluster (SIEM export, scheduled reports).
//! Expiry is judged by the database's clock alone, so nodes' clocks may disagree. Each
//! new holder gets a token one higher than the last; whatever a holder publishes, it
//! publishes in a transaction that first checks its token is still current and its
//! lease unexpired ([`crate::chunks::commit`]), holding the lease row so a takeover
//! waits for that transaction to end. A holder that stalled past its expiry and was
//! replaced can therefore never publish, whatever it believes.

use crate::{ClusterError, db};
use sqlx::PgPool;
use std::time::Duration;

/// The ledger's sequencer.
pub const SEQUENCER: &str = "ledger.sequencer";

/// A lease this node holds (or held): its role, holder name and fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub token: i64,
}

fn secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

/// Takes the lease `name` for `holder` when it is free, expired, or already `holder`'s
/// (a holder that closed what it was doing, say after the database restarted, takes its
/// lease again at once instead of waiting for it to expire). Every take raises the
/// token, so whatever the holder had in flight under the old one is fenced off.
pub async fn acquire(
    pool: &PgPool,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>, ClusterError> {
    let token: Option<i64> = sqlx::query_scalar(
        "INSERT INTO cluster_lease (name, holder, token, expires_at)
         VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3))
         ON CONFLICT (name) DO UPDATE
            SET holder = EXCLUDED.holder, token = cluster_lease.token + 1,
                expires_at = EXCLUDED.expires_at
            WHERE cluster_lease.expires_at < clock_timestamp()
               OR cluster_lease.holder = EXCLUDED.holder
         RETURNING token",
    )
    .bind(name)
    .bind(holder)
    .bind(secs(ttl))
    .fetch_optional(pool)
    .await
    .map_err(db("acquire lease"))?;
    Ok(token.map(|token| Lease {
        name: name.to_owned(),
        holder: holder.to_owned(),
        token,
    }))
}

/// Extends a lease still held; `false` when it expired or was taken over.
pub async fn renew(pool: &PgPool, lease: &Lease, ttl: Duration) -> Result<bool, ClusterError> {
    let r = sqlx::query(
        "UPDATE cluster_lease SET expires_at = clock_timestamp() + make_interval(secs => $3)
         WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp()",
    )
    .bind(&lease.name)
    .bind(lease.token)
    .bind(secs(ttl))
    .execute(pool)
    .await
    .map_err(db("renew lease"))?;
    Ok(r.rows_affected() == 1)
}

/// Gives a lease up at once, so another node need not wait for it to expire.
pub async fn release(pool: &PgPool, lease: &Lease) -> Result<(), ClusterError> {
    sqlx::query(
        "UPDATE cluster_lease SET expires_at = clock_timestamp() - interval '1 millisecond'
         WHERE name = $1 AND token = $2",
    )
    .bind(&lease.name)
    .bind(lease.token)
    .execute(pool)
    .await
    .map_err(db("release lease"))?;
    Ok(())
}

/// Who holds `name` now, with the token, if its lease is unexpired.
pub async fn holder(pool: &PgPool, name: &str) -> Result<Option<(String, i64)>, ClusterError> {
    sqlx::query_as(
        "SELECT holder, token FROM cluster_lease WHERE name = $1 AND expires_at > clock_timestamp()",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(db("read lease"))
}

/// Inside `tx`: checks that `lease` is current and unexpired, and holds its row until
/// `tx` ends (a takeover waits). Every publishing transaction starts with it.
pub async fn check_fence(tx: &mut sqlx::PgConnection, lease: &Lease) -> Result<(), ClusterError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT token FROM cluster_lease
         WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp() FOR SHARE",
    )
    .bind(&lease.name)
    .bind(lease.token)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db("check fencing token"))?;
    match held {
        Some(_) => Ok(()),
        None => Err(ClusterError::Fenced { token: lease.token }),
    }
}
