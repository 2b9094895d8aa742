//! Refused authentications past the rate-limit budgets, counted instead of written one
//! by one, so unauthenticated traffic cannot grow the ledger at will.
//!
//! A failure within the budgets is its own `auth.failure` entry. One past them is only
//! counted here, by address, for a window of [`WINDOW_SECS`]; when the window closes the
//! counts are written as `auth.failure` entries with `details.throttled` = the count:
//! one per address for the [`MAX_ADDRESSES`] busiest, and one more (no address) for all
//! the others. What anonymous callers can write is therefore bounded by the budgets plus
//! `MAX_ADDRESSES + 1` entries per window, whatever they send. The detectors read
//! `throttled` as that many failures.
//!
//! Counts still open when the process stops are lost (they are at most one window's).

use crate::manager::SecureModelManager;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use warden_core::entry::Event;

/// Length of a counting window.
pub const WINDOW_SECS: u64 = 60;
/// Addresses written one by one per window; the rest share one entry.
pub const MAX_ADDRESSES: usize = 100;
/// Addresses tracked at most in one window (past that, only the total grows).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Default)]
struct Window {
    by_ip: HashMap<IpAddr, u64>,
    /// Failures from addresses not tracked (the map was full).
    untracked: u64,
    /// Whether a flush is scheduled for this window.
    scheduled: bool,
}

/// The counts of the current window.
#[derive(Debug, Default)]
pub struct Throttled {
    window: Mutex<Window>,
}

impl Throttled {
    /// Takes the window's counts (leaving it empty).
    fn take(&self) -> Window {
        std::mem::take(&mut *self.window.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SecureModelManager {
    /// Counts a failed authentication from `ip` that a rate-limit budget refused. The
    /// first count of a window schedules the window's flush on the current runtime.
    pub fn count_throttled_failure(self: &Arc<Self>, ip: IpAddr) {
        let schedule = {
            let mut w = self
                .throttled
                .window
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if w.by_ip.len() < MAX_TRACKED || w.by_ip.contains_key(&ip) {
                *w.by_ip.entry(ip).or_default() += 1;
            } else {
                w.untracked = w.untracked.saturating_add(1);
            }
            !std::mem::replace(&mut w.scheduled, true)
        };
        if schedule && let Ok(rt) = tokio::runtime::Handle::try_current() {
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
        let w = self.throttled.take();
        let mut rows: Vec<(IpAddr, u64)> = w.by_ip.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: Vec<(IpAddr, u64)> = rows.split_off(rows.len().min(MAX_ADDRESSES));
        let mut written = 0;
        for (ip, n) in rows {
            self.write_throttled(Some(ip), n, None).await?;
            written += 1;
        }
        let others: u64 = rest
            .iter()
            .map(|r| r.1)
            .fold(w.untracked, u64::saturating_add);
        if others > 0 {
            self.write_throttled(None, others, Some(rest.len() as u64))
                .await?;
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
