//! Rate limits (GCRA, `governor`): per client address and per network (/24 for IPv4,
//! /64 for IPv6, so rotating addresses inside one allocation does not reset the budget),
//! per principal, and a much tighter budget for failed authentications per address, per
//! network and for the whole service. A refusal is a 429 with `Retry-After` and the IETF
//! `RateLimit` / `RateLimit-Policy` fields.
//!
//! The failure budgets also bound what unauthenticated callers can write: a failure
//! within them is one `auth.failure` entry; past them the request is answered 429 and
//! only counted, the counts written as one entry per address and window (see
//! `warden_registry::throttle`).

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
    /// Requests per second from one /24 (IPv4) or /64 (IPv6), with a burst.
    pub per_network_per_sec: u32,
    pub per_network_burst: u32,
    /// Failed authentications per minute from one address ...
    pub auth_failures_per_min: u32,
    /// ... from one /24 or /64 ...
    pub auth_failures_per_network_per_min: u32,
    /// ... and from everywhere: the most `auth.failure` entries written one by one.
    pub auth_failures_total_per_min: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            per_ip_per_sec: 500,
            per_ip_burst: 1000,
            per_principal_per_sec: 200,
            per_principal_burst: 400,
            per_network_per_sec: 2000,
            per_network_burst: 4000,
            auth_failures_per_min: 10,
            auth_failures_per_network_per_min: 50,
            auth_failures_total_per_min: 600,
        }
    }
}

/// The network an address belongs to for rate limits: its /24 (IPv4) or /64 (IPv6).
/// IPv4-mapped IPv6 addresses count as their IPv4 address.
#[must_use]
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & 0xffff_ff00).into()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        },
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
    network: DefaultKeyedRateLimiter<IpAddr>,
    principal: DefaultKeyedRateLimiter<String>,
    auth_failures: DefaultKeyedRateLimiter<IpAddr>,
    auth_failures_network: DefaultKeyedRateLimiter<IpAddr>,
    auth_failures_total: governor::DefaultDirectRateLimiter,
    clock: DefaultClock,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    #[must_use]
    pub fn new(cfg: LimitConfig) -> Self {
        let per_sec = |r: u32, b: u32| Quota::per_second(nz(r)).allow_burst(nz(b));
        let per_min = |n: u32| Quota::per_minute(nz(n)).allow_burst(nz(n));
        Self {
            cfg,
            ip: RateLimiter::keyed(per_sec(cfg.per_ip_per_sec, cfg.per_ip_burst)),
            network: RateLimiter::keyed(per_sec(cfg.per_network_per_sec, cfg.per_network_burst)),
            principal: RateLimiter::keyed(per_sec(
                cfg.per_principal_per_sec,
                cfg.per_principal_burst,
            )),
            auth_failures: RateLimiter::keyed(per_min(cfg.auth_failures_per_min)),
            auth_failures_network: RateLimiter::keyed(per_min(
                cfg.auth_failures_per_network_per_min,
            )),
            auth_failures_total: RateLimiter::direct(per_min(cfg.auth_failures_total_per_min)),
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

    /// Every request, by client address and by its network.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        Self::tidy(&self.ip);
        Self::tidy(&self.network);
        self.ip.check_key(&ip).map_err(|n| Limited {
            policy: "ip",
            quota: self.cfg.per_ip_per_sec,
            window_secs: 1,
            retry_after: self.wait(&n),
        })?;
        self.network.check_key(&network(ip)).map_err(|n| Limited {
            policy: "network",
            quota: self.cfg.per_network_per_sec,
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

    /// A failed authentication from `ip`: counts against the budgets of the address,
    /// its network and the service; once one is spent, the answer is 429 instead of 401
    /// (and the failure is only counted, not written on its own).
    pub fn auth_failed(&self, ip: IpAddr) -> Result<(), Limited> {
        Self::tidy(&self.auth_failures);
        Self::tidy(&self.auth_failures_network);
        self.auth_failures.check_key(&ip).map_err(|n| Limited {
            policy: "auth-failures",
            quota: self.cfg.auth_failures_per_min,
            window_secs: 60,
            retry_after: self.wait(&n),
        })?;
        self.auth_failures_network
            .check_key(&network(ip))
            .map_err(|n| Limited {
                policy: "auth-failures-network",
                quota: self.cfg.auth_failures_per_network_per_min,
                window_secs: 60,
                retry_after: self.wait(&n),
            })?;
        self.auth_failures_total.check().map_err(|n| Limited {
            policy: "auth-failures-total",
            quota: self.cfg.auth_failures_total_per_min,
            window_secs: 60,
            retry_after: self.wait(&n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_the_24_and_the_64() {
        let n = |s: &str| network(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))).to_string();
        assert_eq!(n("203.0.113.77"), "203.0.113.0");
        assert_eq!(n("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(n("::ffff:203.0.113.77"), "203.0.113.0");
    }

    #[test]
    fn rotating_addresses_inside_one_network_shares_its_failure_budget() {
        let l = Limits::new(LimitConfig {
            auth_failures_per_min: 10,
            auth_failures_per_network_per_min: 20,
            ..LimitConfig::default()
        });
        let refused = (0..100u8)
            .filter(|i| l.auth_failed(IpAddr::from([198, 51, 100, *i])).is_err())
            .count();
        assert_eq!(
            refused, 80,
            "20 failures a minute for the /24, whatever the address"
        );
    }
}
