//! Alerts not yet delivered. Each alert is put here (in the registry database) before
//! its first attempt and taken out once its outcome, delivered or given up, is a
//! `playbook.alert` entry; when detection starts, whatever is still here (an alert cut
//! short by a stop or a crash) is sent again. The ledger cannot serve for this: the
//! writer cannot read what past epochs sealed.
//!
//! The body is the alert as sent (incident, severity, principal, address, summary), so
//! it is stored no more widely than the database that already names principals.

use crate::RegistryError;
use crate::db::on_pool;
use crate::manager::SecureModelManager;

/// One alert awaiting its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub incident: u64,
    pub sink: String,
    pub body: Vec<u8>,
}

fn key(incident: u64) -> i64 {
    i64::try_from(incident).unwrap_or(i64::MAX)
}

impl SecureModelManager {
    /// Keeps an alert until its outcome is recorded.
    pub(crate) async fn outbox_put(
        &self,
        incident: u64,
        sink: &str,
        body: &[u8],
    ) -> Result<(), RegistryError> {
        on_pool!(self.db.pool(), e => sqlx::query(
            "INSERT INTO alert_outbox (incident, sink, body, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (incident, sink) DO UPDATE SET body = excluded.body, created_at = excluded.created_at",
        )
        .bind(key(incident))
        .bind(sink)
        .bind(body)
        .bind(self.now_secs())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Forgets an alert whose outcome is in the ledger.
    pub(crate) async fn outbox_done(&self, incident: u64, sink: &str) -> Result<(), RegistryError> {
        on_pool!(self.db.pool(), e => sqlx::query("DELETE FROM alert_outbox WHERE incident = $1 AND sink = $2")
            .bind(key(incident))
            .bind(sink)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Alerts still awaiting their outcome, oldest incident first.
    pub async fn pending_alerts(&self) -> Result<Vec<Pending>, RegistryError> {
        let rows = on_pool!(self.db.pool(), e => sqlx::query_as::<_, (i64, String, Vec<u8>)>("SELECT incident, sink, body FROM alert_outbox ORDER BY incident, sink")
                .fetch_all(e)
                .await)?;
        Ok(rows
            .into_iter()
            .map(|(i, sink, body)| Pending {
                incident: u64::try_from(i).unwrap_or(0),
                sink,
                body,
            })
            .collect())
    }
}
