//! The gateway's budgets per principal and deployment: requests per minute, tokens per
//! minute and tokens per UTC day. Requests and the minute's tokens are token buckets
//! (the minute's quota refills evenly); a request is let through while its buckets are
//! not in deficit, and its tokens are charged once the upstream has said how many it
//! used, so one large answer can overdraw the bucket and the next requests wait for it
//! to refill. Kept per node (see ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use warden_store::config::GatewayConfig;

/// Keys kept before idle ones are dropped.
const MAX_KEYS: usize = 100_000;
const DAY_SECS: u64 = 86_400;

/// A refusal: the budget's name, its quota and window, and the wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// `requests`, `tokens` or `tokens-daily`.
    pub policy: &'static str,
    pub quota: u64,
    pub window_secs: u64,
    pub retry_after: u64,
}

/// What is left after a request was let through, for the `RateLimit` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Left {
    pub requests: u64,
    pub tokens: u64,
    pub tokens_today: u64,
}

#[derive(Debug)]
struct Bucket {
    /// Cells available; negative when overdrawn.
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            level: capacity,
            at: now,
        }
    }

    fn refill(&mut self, capacity: f64, per_sec: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * per_sec).min(capacity);
        self.at = now;
    }

    /// Seconds until the level is at least `need`.
    fn wait_for(&self, need: f64, per_sec: f64) -> u64 {
        if self.level >= need || per_sec <= 0.0 {
            return 1;
        }
        let s = ((need - self.level) / per_sec).ceil();
        // Bounded: a day is the longest any budget here needs.
        if s.is_finite() && s > 0.0 {
            (s as u64).clamp(1, DAY_SECS)
        } else {
            1
        }
    }
}

#[derive(Debug)]
struct Account {
    requests: Bucket,
    tokens: Bucket,
    day: u64,
    used_today: u64,
    seen: Instant,
}

/// The budgets of every (principal, deployment).
#[derive(Debug)]
pub struct Meter {
    cfg: GatewayConfig,
    accounts: Mutex<HashMap<(String, String), Account>>,
}

impl Meter {
    #[must_use]
    pub fn new(cfg: GatewayConfig) -> Self {
        Self {
            cfg,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    fn rpm(&self) -> f64 {
        f64::from(self.cfg.requests_per_minute.max(1))
    }

    fn tpm(&self) -> f64 {
        self.cfg.tokens_per_minute.max(1) as f64
    }

    /// Lets one request of `principal` to `deployment` through at `now_secs` (Unix
    /// seconds, for the day), or says which budget is spent and for how long.
    pub fn admit(
        &self,
        principal: &str,
        deployment: &str,
        now_secs: u64,
    ) -> Result<Left, OverBudget> {
        let now = Instant::now();
        let (rpm, tpm) = (self.rpm(), self.tpm());
        let day = now_secs / DAY_SECS;
        let mut map = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > MAX_KEYS {
            map.retain(|_, a| now.saturating_duration_since(a.seen).as_secs() < DAY_SECS);
        }
        let a = map
            .entry((principal.to_owned(), deployment.to_owned()))
            .or_insert_with(|| Account {
                requests: Bucket::full(rpm, now),
                tokens: Bucket::full(tpm, now),
                day,
                used_today: 0,
                seen: now,
            });
        a.seen = now;
        if a.day != day {
            a.day = day;
            a.used_today = 0;
        }
        a.requests.refill(rpm, rpm / 60.0, now);
        a.tokens.refill(tpm, tpm / 60.0, now);
        if a.used_today >= self.cfg.tokens_per_day {
            return Err(OverBudget {
                policy: "tokens-daily",
                quota: self.cfg.tokens_per_day,
                window_secs: DAY_SECS,
                retry_after: (day + 1) * DAY_SECS - now_secs,
            });
        }
        if a.tokens.level <= 0.0 {
            return Err(OverBudget {
                policy: "tokens",
                quota: self.cfg.tokens_per_minute,
                window_secs: 60,
                retry_after: a.tokens.wait_for(1.0, tpm / 60.0),
            });
        }
        if a.requests.level < 1.0 {
            return Err(OverBudget {
                policy: "requests",
                quota: u64::from(self.cfg.requests_per_minute),
                window_secs: 60,
                retry_after: a.requests.wait_for(1.0, rpm / 60.0),
            });
        }
        a.requests.level -= 1.0;
        Ok(Left {
            requests: a.requests.level.max(0.0) as u64,
            tokens: a.tokens.level.max(0.0) as u64,
            tokens_today: self.cfg.tokens_per_day.saturating_sub(a.used_today),
        })
    }

    /// Charges the tokens one answered request used.
    pub fn charge(&self, principal: &str, deployment: &str, tokens: u64) {
        let mut map = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = map.get_mut(&(principal.to_owned(), deployment.to_owned())) {
            a.tokens.level -= tokens as f64;
            a.used_today = a.used_today.saturating_add(tokens);
        }
    }

    /// The budgets, for `RateLimit-Policy`.
    #[must_use]
    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(rpm: u32, tpm: u64, tpd: u64) -> Meter {
        Meter::new(GatewayConfig {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            tokens_per_day: tpd,
            ..GatewayConfig::default()
        })
    }

    #[test]
    fn requests_past_the_minutes_quota_wait() {
        let m = meter(3, 1000, 10_000);
        for _ in 0..3 {
            m.admit("ann", "llm", 1000).unwrap();
        }
        let e = m.admit("ann", "llm", 1000).unwrap_err();
        assert_eq!((e.policy, e.quota, e.window_secs), ("requests", 3, 60));
        assert!(e.retry_after >= 1 && e.retry_after <= 20, "{e:?}");
        // Another principal, or another deployment, has its own budget.
        m.admit("bob", "llm", 1000).unwrap();
        m.admit("ann", "other", 1000).unwrap();
    }

    #[test]
    fn an_overdrawn_token_bucket_refuses_until_it_refills() {
        let m = meter(100, 60, 10_000);
        m.admit("ann", "llm", 1000).unwrap();
        m.charge("ann", "llm", 120);
        let e = m.admit("ann", "llm", 1000).unwrap_err();
        assert_eq!(e.policy, "tokens");
        // 60 tokens a minute refill one a second: 60 s to climb out of the deficit.
        assert!((55..=61).contains(&e.retry_after), "{e:?}");
    }

    #[test]
    fn the_daily_budget_resets_at_utc_midnight() {
        let m = meter(100, 1_000_000, 500);
        let noon = 20_000 * DAY_SECS + DAY_SECS / 2;
        m.admit("ann", "llm", noon).unwrap();
        m.charge("ann", "llm", 500);
        let e = m.admit("ann", "llm", noon).unwrap_err();
        assert_eq!((e.policy, e.retry_after), ("tokens-daily", DAY_SECS / 2));
        m.admit("ann", "llm", noon + DAY_SECS / 2).unwrap();
    }
}
