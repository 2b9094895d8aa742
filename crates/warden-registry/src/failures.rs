//! Refused authentications in the ledger: each one within the budgets is an
//! `auth.failure` entry (written by the caller through
//! [`record_auth_failure`](SecureModelManager::record_auth_failure)); past them they are
//! counted in [`crate::throttle`] and written when the window closes.

use crate::manager::SecureModelManager;
use crate::throttle::WINDOW_SECS;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use warden_core::entry::Event;

impl SecureModelManager {
    /// Counts a failed authentication from `ip` that a rate-limit budget refused. The
    /// first count of a window schedules the window's flush on the current runtime.
    pub fn count_throttled_failure(self: &Arc<Self>, ip: IpAddr) {
        if self.throttled.count(ip)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let m = Arc::clone(self);
            rt.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(WINDOW_SECS)).await;
                // A ledger that cannot record fails every request anyway; the counts
                // of this window are then lost with it.
                let _ = m.flush_throttled().await;
            });
        }
    }

    /// Writes the current window's counts now (the scheduled flush, and tests).
    /// Returns the number of entries written.
    pub async fn flush_throttled(&self) -> Result<usize, crate::RegistryError> {
        let d = self.throttled.drain();
        let mut written = 0;
        for (ip, n) in d.busiest {
            self.write_throttled(Some(ip), n, None).await?;
            written += 1;
        }
        if let Some((count, addresses)) = d.others {
            self.write_throttled(None, count, Some(addresses)).await?;
            written += 1;
        }
        Ok(written)
    }

    async fn write_throttled(
        &self,
        ip: Option<IpAddr>,
        count: u64,
        addresses: Option<u64>,
    ) -> Result<(), crate::RegistryError> {
        let ev = Event {
            ip: ip.map(|i| i.to_string()),
            action: Some("authenticate".into()),
            decision: Some("deny".into()),
            reason: Some("rate-limited".into()),
            details: Some(json!({
                "throttled": count, "window_secs": WINDOW_SECS, "addresses": addresses,
            })),
            ..Event::default()
        };
        self.audit("auth.failure", &ev).await.map(|_| ())
    }
}
