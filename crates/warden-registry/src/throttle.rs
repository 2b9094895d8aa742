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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

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

/// What a closed window writes: the busiest addresses with their counts, most first,
/// and (when any remain) the count and number of all the other addresses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub busiest: Vec<(IpAddr, u64)>,
    pub others: Option<(u64, u64)>,
}

impl Throttled {
    /// Counts a failure from `ip`. True for the first count of a window: the caller
    /// schedules the window's flush.
    pub fn count(&self, ip: IpAddr) -> bool {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if w.by_ip.len() < MAX_TRACKED || w.by_ip.contains_key(&ip) {
            *w.by_ip.entry(ip).or_default() += 1;
        } else {
            w.untracked = w.untracked.saturating_add(1);
        }
        !std::mem::replace(&mut w.scheduled, true)
    }

    /// Takes the window's counts (leaving it empty), as the entries they become.
    pub fn drain(&self) -> Drained {
        let w = std::mem::take(&mut *self.window.lock().unwrap_or_else(PoisonError::into_inner));
        let mut busiest: Vec<(IpAddr, u64)> = w.by_ip.into_iter().collect();
        busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest = busiest.split_off(busiest.len().min(MAX_ADDRESSES));
        let others: u64 = rest
            .iter()
            .map(|r| r.1)
            .fold(w.untracked, u64::saturating_add);
        Drained {
            busiest,
            others: (others > 0).then_some((others, rest.len() as u64)),
        }
    }
}
