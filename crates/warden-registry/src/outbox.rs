//! Alerts not yet delivered. Each alert is put here (in the registry database) before
//! its first attempt and taken out once its outcome, delivered or given up, is a
//! `playbook.alert` entry; when detection starts, whatever is still here (an alert cut
//! short by a stop or a crash) is sent again. The ledger cannot serve for this: the
//! writer cannot read what past epochs sealed.
//!
//! The body is the alert as sent (incident, severity, principal, address, summary), so
//! it is stored no more widely than the database that already names principals.

use crate::RegistryError;
use crate::manager::SecureModelManager;
use sqlx::Row;

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
        sqlx::query(
            "INSERT OR REPLACE INTO alert_outbox (incident, sink, body, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(key(incident))
        .bind(sink)
        .bind(body)
        .bind(self.now_secs())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Forgets an alert whose outcome is in the ledger.
    pub(crate) async fn outbox_done(&self, incident: u64, sink: &str) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM alert_outbox WHERE incident = $1 AND sink = $2")
            .bind(key(incident))
            .bind(sink)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Alerts still awaiting their outcome, oldest incident first.
    pub async fn pending_alerts(&self) -> Result<Vec<Pending>, RegistryError> {
        let rows =
            sqlx::query("SELECT incident, sink, body FROM alert_outbox ORDER BY incident, sink")
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| {
                let i: i64 = r.try_get("incident")?;
                Ok(Pending {
                    incident: u64::try_from(i).unwrap_or(0),
                    sink: r.try_get("sink")?,
                    body: r.try_get("body")?,
                })
            })
            .collect()
    }
}
