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
//!
//! On a cluster every budget is also one budget for all the nodes ([`SharedBudgets`]):
//! a request passes this node's limiter (which alone turns a flood away without a
//! round trip) and then takes a cell of the cluster's bucket. A node takes those cells
//! in chunks of about a sixteenth of the burst and holds them for [`HOLD`], so the
//! shared store sees one call per chunk; what it did not use is given back with its
//! next take. The budgets that guard against guessing (failed authentications) have
//! chunks of one cell, so they are exact over the cluster.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a take from a shared budget got: cells, or the wait before one is free.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Take {
    Cells(u32),
    Wait(Duration),
}

/// A take from a shared budget, as a future.
pub type Taking<'a> = Pin<Box<dyn Future<Output = Result<Take, String>> + Send + 'a>>;

/// Rate-limit budgets kept for a whole cluster (PostgreSQL on a cluster node): GCRA
/// buckets by key that free one cell every `period` and bank at most `burst`.
pub trait SharedBudgets: Send + Sync + std::fmt::Debug {
    /// Takes up to `want` cells of `key`'s bucket, after giving back `unused` cells
    /// this node took before and did not use.
    fn take<'a>(
        &'a self,
        key: &'a str,
        period: Duration,
        burst: u32,
        want: u32,
        unused: u32,
    ) -> Taking<'a>;
}

/// How long a node holds cells taken from a shared budget before it gives back what
/// it did not use.
pub const HOLD: Duration = Duration::from_secs(1);

/// Cells held from one shared budget, or, once the cluster said it was spent, when a
/// cell frees (until then requests are refused without asking again, so a flood past
/// the budget costs the shared store one call per node and wait). `gate` lets one
/// take at a time go to the store.
#[derive(Debug)]
struct Held {
    cells: u32,
    until: Instant,
    spent: bool,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Held {
    fn new(until: Instant) -> Self {
        Self {
            cells: 0,
            until,
            spent: false,
            gate: Arc::default(),
        }
    }
}

/// What a node's hold of a shared budget says about one more request.
enum Hold {
    /// A held cell was spent on it.
    Served,
    /// The cluster said the budget is spent, and no cell has freed since.
    Refused(Limited),
    /// Nothing held: a take is needed (through `gate`), giving back `unused`.
    Empty {
        unused: u32,
        gate: Arc<tokio::sync::Mutex<()>>,
    },
}

/// Looks at the node's hold of `name` for one more request; `give_back` takes the
/// stale cells out of it, to be given back with the next take.
fn held(shared: &Shared, name: &str, b: Budget, give_back: bool) -> Hold {
    let now = Instant::now();
    let mut map = shared.held.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() > MAX_KEYS {
        map.retain(|_, h| h.until > now);
    }
    let h = map.entry(name.to_owned()).or_insert_with(|| Held::new(now));
    if h.until > now && h.cells > 0 {
        h.cells -= 1;
        return Hold::Served;
    }
    if h.until > now && h.spent {
        let wait = h.until.saturating_duration_since(now);
        return Hold::Refused(b.limited(wait.as_secs() + 1));
    }
    let unused = if give_back {
        std::mem::take(&mut h.cells)
    } else {
        0
    };
    Hold::Empty {
        unused,
        gate: Arc::clone(&h.gate),
    }
}

/// The cluster's budgets and the cells this node holds of them.
#[derive(Debug)]
struct Shared {
    store: Arc<dyn SharedBudgets>,
    held: Mutex<HashMap<String, Held>>,
}

/// One budget: its policy name, requests per window and burst.
#[derive(Clone, Copy, Debug)]
struct Budget {
    policy: &'static str,
    quota: u32,
    window_secs: u32,
    burst: u32,
}

impl Budget {
    /// The time one cell takes to free.
    fn period(self) -> Duration {
        Duration::from_secs(u64::from(self.window_secs)) / self.quota.max(1)
    }

    /// Cells taken at once from the shared store.
    fn chunk(self) -> u32 {
        (self.burst / 16).max(1)
    }

    fn limited(self, retry_after: u64) -> Limited {
        Limited {
            policy: self.policy,
            quota: self.quota,
            window_secs: self.window_secs,
            retry_after,
        }
    }
}

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
    shared: Option<Shared>,
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
            shared: None,
        }
    }

    /// The same limits, each also one budget for every node that shares `store`.
    #[must_use]
    pub fn shared(cfg: LimitConfig, store: Arc<dyn SharedBudgets>) -> Self {
        Self {
            shared: Some(Shared {
                store,
                held: Mutex::new(HashMap::new()),
            }),
            ..Self::new(cfg)
        }
    }

    fn budget(&self, policy: &'static str) -> Budget {
        let c = &self.cfg;
        let (quota, window_secs, burst) = match policy {
            "ip" => (c.per_ip_per_sec, 1, c.per_ip_burst),
            "network" => (c.per_network_per_sec, 1, c.per_network_burst),
            "principal" => (c.per_principal_per_sec, 1, c.per_principal_burst),
            "auth-failures" => (c.auth_failures_per_min, 60, c.auth_failures_per_min),
            "auth-failures-network" => (
                c.auth_failures_per_network_per_min,
                60,
                c.auth_failures_per_network_per_min,
            ),
            _ => (
                c.auth_failures_total_per_min,
                60,
                c.auth_failures_total_per_min,
            ),
        };
        Budget {
            policy,
            quota,
            window_secs,
            burst,
        }
    }

    /// Takes one cell of the cluster's budget `policy` for `key` (nothing off a
    /// cluster). When the shared store cannot be reached the request is let through
    /// on this node's limits alone: what it would do next (an audited action) needs
    /// the same database and fails closed on its own.
    async fn take_shared(&self, policy: &'static str, key: &str) -> Result<(), Limited> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let name = format!("{policy}:{key}");
        let b = self.budget(policy);
        let gate = match held(shared, &name, b, false) {
            Hold::Served => return Ok(()),
            Hold::Refused(l) => return Err(l),
            Hold::Empty { gate, .. } => gate,
        };
        // One take per key at a time: requests that find the hold empty while a take
        // is in flight wait for it and are served from what it brought. (Each taking
        // for itself, 32 connections took 32 chunks at once and the last ones were
        // refused while the node held most of the budget.)
        let _taking = gate.lock().await;
        let unused = match held(shared, &name, b, true) {
            Hold::Served => return Ok(()),
            Hold::Refused(l) => return Err(l),
            Hold::Empty { unused, .. } => unused,
        };
        let now = Instant::now();
        let taken = shared
            .store
            .take(&name, b.period(), b.burst, b.chunk(), unused)
            .await;
        let hold = |cells: u32, until: Instant, spent: bool| {
            let mut map = shared.held.lock().unwrap_or_else(PoisonError::into_inner);
            let h = map.entry(name.clone()).or_insert_with(|| Held::new(until));
            h.cells = h.cells.saturating_add(cells);
            h.until = until;
            h.spent = spent && h.cells == 0;
        };
        match taken {
            Ok(Take::Cells(n)) => {
                hold(n - 1, now + HOLD, false);
                Ok(())
            }
            Ok(Take::Wait(d)) => {
                hold(0, now + d, true);
                Err(b.limited(d.as_secs() + 1))
            }
            Err(_) => {
                ::metrics::counter!("warden_rate_budget_errors_total").increment(1);
                Ok(())
            }
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
    pub async fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
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
        })?;
        self.take_shared("ip", &ip.to_string()).await?;
        self.take_shared("network", &network(ip).to_string()).await
    }

    /// Authenticated requests, by principal.
    pub async fn check_principal(&self, principal: &str) -> Result<(), Limited> {
        Self::tidy(&self.principal);
        self.principal
            .check_key(&principal.to_owned())
            .map_err(|n| Limited {
                policy: "principal",
                quota: self.cfg.per_principal_per_sec,
                window_secs: 1,
                retry_after: self.wait(&n),
            })?;
        self.take_shared("principal", principal).await
    }

    /// A failed authentication from `ip`: counts against the budgets of the address,
    /// its network and the service; once one is spent, the answer is 429 instead of 401
    /// (and the failure is only counted, not written on its own).
    pub async fn auth_failed(&self, ip: IpAddr) -> Result<(), Limited> {
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
        })?;
        self.take_shared("auth-failures", &ip.to_string()).await?;
        self.take_shared("auth-failures-network", &network(ip).to_string())
            .await?;
        self.take_shared("auth-failures-total", "").await
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

    #[tokio::test]
    async fn rotating_addresses_inside_one_network_shares_its_failure_budget() {
        let l = Limits::new(LimitConfig {
            auth_failures_per_min: 10,
            auth_failures_per_network_per_min: 20,
            ..LimitConfig::default()
        });
        let mut refused = 0;
        for i in 0..100u8 {
            refused += usize::from(
                l.auth_failed(IpAddr::from([198, 51, 100, i]))
                    .await
                    .is_err(),
            );
        }
        assert_eq!(
            refused, 80,
            "20 failures a minute for the /24, whatever the address"
        );
    }

    /// A shared store for the tests: the same GCRA as the cluster's table, in memory,
    /// on a clock that stands still (no cell frees during a test, so counts are exact).
    /// A `slow` one answers after a turn of the runtime, as a database does.
    #[derive(Debug, Default)]
    struct Store {
        tat: Mutex<HashMap<String, f64>>,
        takes: std::sync::atomic::AtomicU32,
        slow: bool,
    }

    impl SharedBudgets for Store {
        fn take<'a>(
            &'a self,
            key: &'a str,
            period: Duration,
            burst: u32,
            want: u32,
            unused: u32,
        ) -> Taking<'a> {
            self.takes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let now = 1000.0;
            let t = period.as_secs_f64();
            let mut tats = self.tat.lock().unwrap_or_else(PoisonError::into_inner);
            let tat = tats.entry(key.to_owned()).or_insert(now);
            let base = (*tat - f64::from(unused) * t).max(now);
            let free = ((now + f64::from(burst) * t - base) / t + 0.001)
                .floor()
                .max(0.0);
            let g = f64::from(want).min(free);
            *tat = base + g * t;
            let out = if g >= 1.0 {
                Take::Cells(g as u32)
            } else {
                Take::Wait(Duration::from_secs_f64(
                    (*tat - now - f64::from(burst - 1) * t).max(0.0),
                ))
            };
            let slow = self.slow;
            Box::pin(async move {
                if slow {
                    tokio::task::yield_now().await;
                }
                Ok(out)
            })
        }
    }

    /// Three nodes' limiters over one store: failures spread over them meet one
    /// budget, as on one server (each node admitted its own ten before).
    #[tokio::test]
    async fn a_failure_budget_spread_over_nodes_is_one_budget() {
        let store: Arc<dyn SharedBudgets> = Arc::new(Store::default());
        let nodes: Vec<Limits> = (0..3)
            .map(|_| Limits::shared(LimitConfig::default(), Arc::clone(&store)))
            .collect();
        let ip = IpAddr::from([203, 0, 113, 9]);
        let mut admitted = 0;
        for i in 0..30 {
            admitted += usize::from(nodes[i % 3].auth_failed(ip).await.is_ok());
        }
        assert_eq!(admitted, 10, "ten failures a minute from one address");
        let refused = nodes[0].auth_failed(ip).await.err();
        assert!(
            refused
                .as_ref()
                .is_some_and(|l| l.policy == "auth-failures" && l.retry_after >= 1),
            "{refused:?}"
        );
    }

    /// Requests spread over nodes take chunks of the shared budget: together they
    /// admit the burst and no more, with far fewer takes than requests.
    #[tokio::test]
    async fn a_request_budget_spread_over_nodes_is_one_budget_taken_in_chunks() {
        let store = Arc::new(Store::default());
        let shared: Arc<dyn SharedBudgets> = Arc::clone(&store) as Arc<dyn SharedBudgets>;
        let cfg = LimitConfig {
            per_principal_per_sec: 1,
            per_principal_burst: 320,
            ..LimitConfig::default()
        };
        let nodes: Vec<Limits> = (0..3)
            .map(|_| Limits::shared(cfg, Arc::clone(&shared)))
            .collect();
        let mut admitted = 0;
        for i in 0..900 {
            admitted += usize::from(nodes[i % 3].check_principal("p").await.is_ok());
        }
        assert_eq!(admitted, 320, "one burst over the three nodes");
        let takes = store.takes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            takes < 40,
            "{takes} takes for 320 cells in chunks of 20 and 580 refusals"
        );
    }

    /// 64 requests arriving together at a node that holds nothing of a budget: each
    /// took its own chunk, the budget ran out after 16 and 48 were refused while the
    /// node held 300 cells. One take goes to the store; the others wait for it.
    #[tokio::test]
    async fn concurrent_requests_on_an_empty_hold_share_one_take() {
        let store = Arc::new(Store {
            slow: true,
            ..Store::default()
        });
        let cfg = LimitConfig {
            per_principal_per_sec: 1,
            per_principal_burst: 320,
            ..LimitConfig::default()
        };
        let node = Arc::new(Limits::shared(
            cfg,
            Arc::clone(&store) as Arc<dyn SharedBudgets>,
        ));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let node = Arc::clone(&node);
                tokio::spawn(async move { node.check_principal("p").await.is_ok() })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap_or(false));
        }
        assert_eq!(admitted, 64, "64 requests of a burst of 320");
        let takes = store.takes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(takes <= 4, "{takes} takes for 64 requests in chunks of 20");
    }

    /// Cells a node took and did not use go back to the cluster with its next take.
    #[tokio::test]
    async fn cells_held_and_not_used_are_given_back() {
        let store: Arc<dyn SharedBudgets> = Arc::new(Store::default());
        let cfg = LimitConfig {
            per_principal_per_sec: 1,
            per_principal_burst: 32,
            ..LimitConfig::default()
        };
        let a = Limits::shared(cfg, Arc::clone(&store));
        let b = Limits::shared(cfg, Arc::clone(&store));
        assert!(
            a.check_principal("p").await.is_ok(),
            "a holds one cell more"
        );
        tokio::time::sleep(HOLD + Duration::from_millis(50)).await;
        // a's held cell is stale: its next take gives it back before taking.
        assert!(a.check_principal("p").await.is_ok());
        let mut admitted = 2;
        for _ in 0..40 {
            admitted += usize::from(b.check_principal("p").await.is_ok());
        }
        admitted += usize::from(a.check_principal("p").await.is_ok());
        assert_eq!(admitted, 32, "the whole burst, none of it lost");
    }
}
