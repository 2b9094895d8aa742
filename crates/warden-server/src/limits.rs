//! Rate limits (GCRA, `governor`): per client address, per principal, and a much
//! tighter budget for failed authentications per address. A refusal is a 429 with
//! `Retry-After` and the IETF `RateLimit` / `RateLimit-Policy` fields.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Limits, in requests per second with a burst, or failures per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    pub per_ip_per_sec: u32,
    pub per_ip_burst: u32,
    pub per_principal_per_sec: u32,
    pub per_principal_burst: u32,
    pub auth_failures_per_min: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            per_ip_per_sec: 500,
            per_ip_burst: 1000,
            per_principal_per_sec: 200,
            per_principal_burst: 400,
            auth_failures_per_min: 10,
        }
    }
}

/// A refused request: which policy and how long to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// The policy name in `RateLimit-Policy`.
    pub policy: &'static str,
    /// Its quota and window, for `RateLimit-Policy`.
    pub quota: u32,
    pub window_secs: u32,
    /// Seconds until a request would be allowed (at least 1).
    pub retry_after: u64,
}

/// Keys kept before stale ones are dropped.
const MAX_KEYS: usize = 100_000;

/// The limiters.
#[derive(Debug)]
pub struct Limits {
    cfg: LimitConfig,
    ip: DefaultKeyedRateLimiter<IpAddr>,
    principal: DefaultKeyedRateLimiter<String>,
    auth_failures: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    #[must_use]
    pub fn new(cfg: LimitConfig) -> Self {
        let per_sec = |r: u32, b: u32| Quota::per_second(nz(r)).allow_burst(nz(b));
        Self {
            cfg,
            ip: RateLimiter::keyed(per_sec(cfg.per_ip_per_sec, cfg.per_ip_burst)),
            principal: RateLimiter::keyed(per_sec(
                cfg.per_principal_per_sec,
                cfg.per_principal_burst,
            )),
            auth_failures: RateLimiter::keyed(
                Quota::per_minute(nz(cfg.auth_failures_per_min))
                    .allow_burst(nz(cfg.auth_failures_per_min)),
            ),
            clock: DefaultClock::default(),
        }
    }

    #[must_use]
    pub fn config(&self) -> LimitConfig {
        self.cfg
    }

    fn wait(&self, not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
        let d: Duration = not_until.wait_time_from(self.clock.now());
        d.as_secs() + 1
    }

    fn tidy<K: std::hash::Hash + Eq + Clone>(l: &DefaultKeyedRateLimiter<K>) {
        if l.len() > MAX_KEYS {
            l.retain_recent();
        }
    }

    /// Every request, by client address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        Self::tidy(&self.ip);
        self.ip.check_key(&ip).map_err(|n| Limited {
            policy: "ip",
            quota: self.cfg.per_ip_per_sec,
            window_secs: 1,
            retry_after: self.wait(&n),
        })
    }

    /// Authenticated requests, by principal.
    pub fn check_principal(&self, principal: &str) -> Result<(), Limited> {
        Self::tidy(&self.principal);
        self.principal
            .check_key(&principal.to_owned())
            .map_err(|n| Limited {
                policy: "principal",
                quota: self.cfg.per_principal_per_sec,
                window_secs: 1,
                retry_after: self.wait(&n),
            })
    }

    /// A failed authentication from `ip`: counts against its budget; once spent, the
    /// answer is 429 instead of 401.
    pub fn auth_failed(&self, ip: IpAddr) -> Result<(), Limited> {
        Self::tidy(&self.auth_failures);
        self.auth_failures.check_key(&ip).map_err(|n| Limited {
            policy: "auth-failures",
            quota: self.cfg.auth_failures_per_min,
            window_secs: 60,
            retry_after: self.wait(&n),
        })
    }
}
