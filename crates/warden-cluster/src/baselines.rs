//! The detectors' learnt state kept in the database, so that the node that takes the
//! sequencer lease (and with it detection, see `Journal::detects_own`) resumes where the
//! last sequencer stopped instead of starting over.
//!
//! One row, sealed by the node before it is written ([`Sealer`]). A save is fenced like
//! the ledger's bytes: it is stored only while the saving node's sequencer lease is
//! current, and never over a state saved under a later lease, so a node that stalled
//! past its lease cannot overwrite what its successor learnt.

use crate::lease::SEQUENCER;
use crate::node::Status;
use crate::{ClusterError, db};
use sqlx::PgPool;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use warden_store::baselines::{Baselines, Sealer};
use warden_store::error::StoreError;

/// The sealed state last saved, if any.
pub async fn load(pool: &PgPool) -> Result<Option<Vec<u8>>, ClusterError> {
    sqlx::query_scalar("SELECT sealed FROM detector_state WHERE id = 1")
        .fetch_optional(pool)
        .await
        .map_err(db("read detector state"))
}

/// Saves `sealed` if the sequencer lease with `token` is current and no later holder
/// saved before. Returns whether it was stored.
pub async fn save(pool: &PgPool, token: i64, sealed: &[u8]) -> Result<bool, ClusterError> {
    let r = sqlx::query(
        "INSERT INTO detector_state (id, token, sealed, saved_at)
         SELECT 1, $2, $3, clock_timestamp() FROM cluster_lease
            WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp()
         ON CONFLICT (id) DO UPDATE
            SET token = EXCLUDED.token, sealed = EXCLUDED.sealed, saved_at = EXCLUDED.saved_at
            WHERE detector_state.token <= EXCLUDED.token",
    )
    .bind(SEQUENCER)
    .bind(token)
    .bind(sealed)
    .execute(pool)
    .await
    .map_err(db("save detector state"))?;
    Ok(r.rows_affected() == 1)
}

/// A node's [`Baselines`]: the row above, saved under the node's current sequencer
/// lease. Its calls block on the node's runtime (from plain or blocking threads).
pub struct NodeBaselines {
    pub(crate) pool: PgPool,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) status: Arc<Status>,
    pub(crate) sealer: Sealer,
}

impl std::fmt::Debug for NodeBaselines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeBaselines(..)")
    }
}

fn store(e: ClusterError) -> StoreError {
    StoreError::Config(e.to_string())
}

impl Baselines for NodeBaselines {
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed = self.rt.block_on(load(&self.pool)).map_err(store)?;
        sealed
            .map(|s| {
                self.sealer
                    .open(&s, Path::new("detector_state (cluster database)"))
            })
            .transpose()
    }

    fn save(&self, state: &[u8]) -> Result<bool, StoreError> {
        let token = self.status.token.load(Ordering::SeqCst);
        if token == 0 {
            return Ok(false);
        }
        let sealed = self.sealer.seal(state)?;
        self.rt
            .block_on(save(&self.pool, token, &sealed))
            .map_err(store)
    }
}
