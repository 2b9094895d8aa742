//! Threat detection over Warden's audit event stream, sans-IO.
//!
//! The service feeds every event it records ([`Signal`]: the ledger index, time, public
//! kind and the decrypted facts it already holds) to [`Detector::observe`], inline, in
//! ledger order, and records each returned [`Incident`] as an `incident` entry whose
//! evidence is the indices of the entries that triggered it. Nothing here reads a
//! clock, a file or the network: time is the events' own, so a replay of the ledger
//! gives the same incidents.
//!
//! Detectors (thresholds and windows in [`Config`], defaults documented there):
//!
//! | detector | signal | key | severity |
//! |---|---|---|---|
//! | `brute_force` | failed authentications in a window | source IP, its network, and all sources | HIGH |
//! | `enumeration` | distinct model/version/file fetched in a window | principal | HIGH |
//! | `exfiltration` | artifacts the principal never fetched before, in a window, far above its own busiest window | principal | HIGH |
//! | `new_network` | a known principal from a network it has never used | principal | MEDIUM |
//! | `request_rate` | requests a minute far above the principal's own baseline | principal | MEDIUM |
//! | `repeated_denials` | policy denials in a window | principal | MEDIUM |
//! | `revoked_access` | an attempt on a revoked version | principal + version | MEDIUM |
//! | `off_hours` | a known principal at an hour it never works | principal | LOW |
//! | `integrity` | a stored artifact failed verification | version | CRITICAL |
//!
//! Each (detector, key) raises at most one incident per cool-down, so an attack in
//! progress is one incident, not one per request.
//!
//! Volume is judged by what is disclosed, not by repetition: downloading the same bytes
//! again (a scoring service, a fleet of pods reloading the model it is granted) tells
//! nothing new and raises nothing; fetching many distinct artifacts does, against the
//! principal's own learned baseline (`exfiltration`) and absolutely (`enumeration`).
//! A new network alone is at most MEDIUM: travellers are normal, and only HIGH suspends.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

pub mod inference;
mod state;
pub use state::State;

/// Incident severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// What kind of event a signal is, as far as detection cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// A file or model was served (`model.access`).
    Access,
    /// Metadata was read (`registry.read`, decisions).
    Read,
    /// The policy refused (`model.denied`).
    Denied,
    /// Authentication failed (`auth.failure`).
    AuthFailure,
    /// A stored artifact failed verification.
    IntegrityFailure,
    /// An inference request was answered (`inference.request`).
    Inference,
    /// Anything else (ignored).
    Other,
}

/// One recorded event, as the detectors see it.
#[derive(Clone, Copy, Debug)]
pub struct Signal<'a> {
    /// Ledger index of the entry.
    pub index: u64,
    /// Entry time, microseconds since the Unix epoch.
    pub time_micros: u64,
    pub category: Category,
    pub principal: Option<&'a str>,
    /// Id of the token the request used, if any.
    pub token: Option<&'a str>,
    pub ip: Option<IpAddr>,
    pub model: Option<&'a str>,
    pub version: Option<&'a str>,
    pub file: Option<&'a str>,
    /// The decision's reason (policy ids), for denials.
    pub reason: Option<&'a str>,
    /// How many events this signal stands for: an `auth.failure` entry that summarises
    /// rate-limited failures counts them all; 1 otherwise.
    pub count: u64,
    /// An inference request's prompt, as its [`inference::shape`].
    pub shape: Option<u64>,
    /// An inference answer's size, bytes.
    pub bytes: Option<u64>,
}

/// Thresholds and windows. Defaults are chosen so that a multi-user workload with daily
/// patterns raises (almost) nothing while each scripted attack of the test suite is
/// caught within its first minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Seconds after an incident during which the same detector and key stay quiet.
    pub cooldown_secs: u64,
    /// Failed authentications from one IP within `brute_force_window_secs`.
    pub brute_force_failures: usize,
    pub brute_force_window_secs: u64,
    /// ... from one network (`network_prefix_v4` / `network_prefix_v6`), so rotating
    /// addresses inside one allocation is still one brute force ...
    pub brute_force_network_failures: usize,
    /// ... and from all sources together (credential stuffing spread over many
    /// networks).
    pub brute_force_total_failures: usize,
    /// Distinct artifacts (model, version, file) one principal fetches within the window.
    pub enumeration_distinct: usize,
    pub enumeration_window_secs: u64,
    /// Artifacts a principal fetches for the first time within the window (bytes it
    /// was never given before), once that is more than `rate_factor` times its own
    /// busiest window so far (learnt principals). Fetching the same bytes again never
    /// counts.
    pub exfiltration_new_artifacts: usize,
    pub exfiltration_window_secs: u64,
    /// Requests a principal must have made before its networks and hours are known.
    pub learn_events: u64,
    /// Prefix lengths that make a "network" (IPv4, IPv6).
    pub network_prefix_v4: u8,
    pub network_prefix_v6: u8,
    /// Requests in a minute above which the rate is compared to the baseline at all.
    pub rate_min_per_min: usize,
    /// How many times the principal's busiest minute so far counts as abnormal.
    pub rate_factor: usize,
    /// Policy denials of one principal within the window.
    pub denials: usize,
    pub denials_window_secs: u64,
    /// Report requests at hours (UTC) when the principal never works.
    pub off_hours: bool,
    /// Inference prompts of one principal within the window, at least this many of
    /// which are near-duplicates (percent), make an extraction.
    pub extraction_prompts: usize,
    pub extraction_window_secs: u64,
    pub extraction_similar_percent: u64,
    /// Differing bits (of 64) under which two prompts' shapes are near-duplicates.
    pub extraction_distance: u32,
    /// An answer this many times the principal's mean size, and at least
    /// `response_size_min_bytes`, is anomalous (once `learn_events` answers are known).
    pub response_size_factor: u64,
    pub response_size_min_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cooldown_secs: 900,
            brute_force_failures: 20,
            brute_force_window_secs: 300,
            brute_force_network_failures: 50,
            brute_force_total_failures: 500,
            enumeration_distinct: 40,
            enumeration_window_secs: 600,
            exfiltration_new_artifacts: 50,
            exfiltration_window_secs: 3600,
            learn_events: 50,
            network_prefix_v4: 24,
            network_prefix_v6: 48,
            rate_min_per_min: 120,
            rate_factor: 4,
            denials: 15,
            denials_window_secs: 600,
            off_hours: true,
            extraction_prompts: 60,
            extraction_window_secs: 60,
            extraction_similar_percent: 80,
            extraction_distance: 10,
            response_size_factor: 10,
            response_size_min_bytes: 64 * 1024,
        }
    }
}

/// `[detection]` in `warden.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    pub enabled: bool,
    /// Suspend the principal of an incident of at least this severity whose
    /// credentials are suspect (LOW, MEDIUM, HIGH, CRITICAL; or "never").
    pub suspend_at: String,
    /// Revoke the affected versions of an incident of at least this severity.
    pub revoke_at: String,
    /// Send incidents of at least this severity to the webhooks (each webhook can
    /// raise it with its own `min_severity`).
    pub alert_at: String,
    /// Per-detector overrides of `suspend_at`, `revoke_at` and `alert_at`
    /// (`[detection.playbooks.<detector>]`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub playbooks: std::collections::BTreeMap<String, PlaybookOverride>,
    /// Where alerts are sent (`[[detection.webhooks]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
    /// Thresholds and windows.
    pub thresholds: Config,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            suspend_at: "HIGH".into(),
            revoke_at: "CRITICAL".into(),
            alert_at: "LOW".into(),
            playbooks: std::collections::BTreeMap::new(),
            webhooks: Vec::new(),
            thresholds: Config::default(),
        }
    }
}

/// One detector's playbook, where it differs from `[detection]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_at: Option<String>,
}

/// A webhook that receives incidents as JSON `POST`s, retried with exponential
/// back-off until it answers 2xx.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://host[:port]/path` (`http://` only to a loopback address).
    pub url: String,
    /// Least severity sent to this webhook.
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Environment variable holding a bearer token (`Authorization: Bearer ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Environment variable holding the HMAC-SHA256 key that signs each body
    /// (`X-Warden-Signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// CA bundle (PEM) trusted for `https://` (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<std::path::PathBuf>,
    /// Deliveries tried before giving up (at least 1).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubled after each failure, at most 5 minutes.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_min_severity() -> String {
    "LOW".into()
}
fn default_attempts() -> u32 {
    8
}
fn default_backoff_ms() -> u64 {
    1000
}

/// The detectors' names, as in incidents and `[detection.playbooks.<detector>]`.
pub const DETECTORS: [&str; 11] = [
    "brute_force",
    "enumeration",
    "exfiltration",
    "new_network",
    "request_rate",
    "repeated_denials",
    "revoked_access",
    "off_hours",
    "integrity",
    "extraction",
    "response_size",
];

/// A detection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub detector: String,
    pub severity: Severity,
    pub principal: Option<String>,
    /// The token to suspend (only when it is the attacker's).
    pub token: Option<String>,
    pub ip: Option<String>,
    /// Affected model versions (`model`, `version`), for revocation.
    pub versions: Vec<(String, String)>,
    /// Ledger indices of the entries that triggered it (at most [`MAX_EVIDENCE`]).
    pub evidence: Vec<u64>,
    pub summary: String,
    /// Time of the event that raised it.
    pub time_micros: u64,
}

/// Most evidence indices one incident carries.
pub const MAX_EVIDENCE: usize = 100;
/// Artifacts remembered per principal as already disclosed.
const MAX_KNOWN: usize = 100_000;
/// Failure sources tracked before quiet ones are dropped.
const MAX_SOURCES: usize = 100_000;

const MINUTE: u64 = 60_000_000;
const SEC: u64 = 1_000_000;

/// Events in a sliding window: (time, index).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Window {
    /// (time, ledger index, events it stands for), oldest first.
    events: VecDeque<(u64, u64, u64)>,
    /// Sum of the events' counts.
    total: u64,
}

impl Window {
    fn push(&mut self, t: u64, i: u64, width: u64) -> usize {
        usize::try_from(self.push_n(t, i, 1, width)).unwrap_or(usize::MAX)
    }
    /// Adds an event standing for `n`; returns the window's total.
    fn push_n(&mut self, t: u64, i: u64, n: u64, width: u64) -> u64 {
        self.events.push_back((t, i, n));
        self.total = self.total.saturating_add(n);
        while let Some(&(t0, _, n0)) = self.events.front() {
            if t0.saturating_add(width) >= t {
                break;
            }
            self.events.pop_front();
            self.total = self.total.saturating_sub(n0);
        }
        self.total
    }
    fn last_time(&self) -> u64 {
        self.events.back().map_or(0, |e| e.0)
    }
    fn evidence(&self) -> Vec<u64> {
        let skip = self.events.len().saturating_sub(MAX_EVIDENCE);
        self.events.iter().skip(skip).map(|&(_, i, _)| i).collect()
    }
}

/// Distinct keys in a sliding window: each key's latest (time, index), so memory
/// follows the number of distinct keys, not of events (a service downloading one
/// model 1 000 times a second holds one key).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Distinct {
    last: HashMap<u64, (u64, u64)>,
    /// When keys that fell out of the window were last dropped.
    pruned_at: u64,
}

impl Distinct {
    fn push(&mut self, t: u64, i: u64, key: u64, width: u64) -> usize {
        self.last.insert(key, (t, i));
        // Exact when it matters (many keys), cheap otherwise: drop keys that fell out
        // of the window on every push once there are several, else now and then.
        if self.last.len() > 8 || t.saturating_sub(self.pruned_at) > width / 8 {
            self.last.retain(|_, (t0, _)| t0.saturating_add(width) >= t);
            self.pruned_at = t;
        }
        self.last.len()
    }
    /// The latest entry of each key, oldest first (at most [`MAX_EVIDENCE`]).
    fn evidence(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.last.values().map(|&(_, i)| i).collect();
        v.sort_unstable();
        let skip = v.len().saturating_sub(MAX_EVIDENCE);
        v.split_off(skip)
    }
}

/// What is known of one principal.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Principal {
    seen: u64,
    networks: HashSet<IpAddr>,
    hours: [u32; 24],
    minute: Window,
    /// Busiest minute so far, once learnt.
    peak: usize,
    enumeration: Distinct,
    /// Artifacts ever fetched; those fetched for the first time within the
    /// exfiltration window, and the most such in any window so far.
    known: HashSet<u64>,
    disclosed: Window,
    disclosed_peak: usize,
    /// The current fixed window (number, new artifacts in it).
    disclosed_bucket: (u64, usize),
    denials: Window,
}

/// A detection before its cool-down check: detector, key, severity, summary,
/// evidence, and whether the request's token is suspect.
struct Raised(&'static str, String, Severity, String, Vec<u64>, bool);

/// The detectors' state.
#[derive(Debug, Default)]
pub struct Detector {
    cfg: Config,
    principals: HashMap<String, Principal>,
    /// Failed authentications by source: an address, a network (`net:`), or `*`.
    auth_failures: HashMap<String, Window>,
    quiet_until: HashMap<(&'static str, String), u64>,
    /// Ledger index of the last event observed.
    through: Option<u64>,
    /// The inference detectors' windows (not saved: a minute long).
    inference: inference::Watch,
}

fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn network(ip: IpAddr, v4: u8, v6: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(v4.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

impl Detector {
    /// A detector with `cfg`.
    #[must_use]
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// Feeds one event; returns the incidents it raises (usually none).
    pub fn observe(&mut self, s: &Signal<'_>) -> Vec<Incident> {
        self.through = Some(s.index);
        let mut out = Vec::new();
        match s.category {
            Category::AuthFailure => self.auth_failure(s, &mut out),
            Category::IntegrityFailure => self.integrity(s, &mut out),
            Category::Access | Category::Read | Category::Denied => self.request(s, &mut out),
            Category::Inference => self.inference(s, &mut out),
            Category::Other => {}
        }
        out
    }

    fn inference(&mut self, s: &Signal<'_>, out: &mut Vec<Incident>) {
        for f in self.inference.observe(s, &self.cfg) {
            let key = s.principal.unwrap_or_default().to_owned();
            if self.fire(f.detector, key, s.time_micros) {
                out.push(Incident {
                    detector: f.detector.into(),
                    severity: f.severity,
                    principal: s.principal.map(str::to_owned),
                    // The gateway refuses the principal while the incident is open;
                    // its token is not the suspect, its use is.
                    token: None,
                    ip: s.ip.map(|i| i.to_string()),
                    versions: match (s.model, s.version) {
                        (Some(m), Some(v)) => vec![(m.to_owned(), v.to_owned())],
                        _ => Vec::new(),
                    },
                    evidence: f.evidence,
                    summary: f.summary,
                    time_micros: s.time_micros,
                });
            }
        }
    }

    /// Whether (detector, key) may raise now; if so, starts its cool-down.
    fn fire(&mut self, detector: &'static str, key: String, t: u64) -> bool {
        let until = self.quiet_until.entry((detector, key)).or_insert(0);
        if t < *until {
            return false;
        }
        *until = t + self.cfg.cooldown_secs * SEC;
        true
    }

    fn auth_failure(&mut self, s: &Signal<'_>, out: &mut Vec<Incident>) {
        let width = self.cfg.brute_force_window_secs * SEC;
        // Sources that fell quiet are forgotten once there are many (rotating
        // addresses must not grow this without bound).
        if self.auth_failures.len() > MAX_SOURCES {
            let t = s.time_micros;
            self.auth_failures
                .retain(|_, w| w.last_time().saturating_add(width) >= t);
        }
        let mut keys: Vec<(String, usize, String)> = Vec::with_capacity(3);
        if let Some(ip) = s.ip {
            let net = network(ip, self.cfg.network_prefix_v4, self.cfg.network_prefix_v6);
            let bits = if ip.is_ipv4() {
                self.cfg.network_prefix_v4
            } else {
                self.cfg.network_prefix_v6
            };
            keys.push((
                ip.to_string(),
                self.cfg.brute_force_failures,
                ip.to_string(),
            ));
            keys.push((
                format!("net:{net}/{bits}"),
                self.cfg.brute_force_network_failures,
                format!("network {net}/{bits}"),
            ));
        }
        keys.push((
            "*".to_owned(),
            self.cfg.brute_force_total_failures,
            "all sources".to_owned(),
        ));
        // Every source's window counts the failure; then the narrowest source over its
        // threshold (and out of its cool-down) raises the one incident.
        let sources: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let mut crossed = Vec::new();
        for (key, threshold, what) in keys {
            let w = self.auth_failures.entry(key.clone()).or_default();
            let n = w.push_n(s.time_micros, s.index, s.count.max(1), width);
            if n >= u64::try_from(threshold).unwrap_or(u64::MAX) {
                crossed.push((key, what, n, w.evidence()));
            }
        }
        for (key, what, n, evidence) in crossed {
            if self.fire("brute_force", key, s.time_micros) {
                // One attack is one incident: every source this failure counts in (its
                // address, network and the whole service) starts its cool-down with it.
                for other in &sources {
                    self.fire("brute_force", other.clone(), s.time_micros);
                }
                out.push(Incident {
                    detector: "brute_force".into(),
                    severity: Severity::High,
                    principal: None,
                    token: None,
                    ip: s.ip.map(|i| i.to_string()),
                    versions: Vec::new(),
                    evidence,
                    summary: format!(
                        "{n} failed authentications from {what} within {} s",
                        self.cfg.brute_force_window_secs
                    ),
                    time_micros: s.time_micros,
                });
                // One incident per failure: the narrowest source that crossed.
                break;
            }
        }
    }

    fn integrity(&mut self, s: &Signal<'_>, out: &mut Vec<Incident>) {
        let (Some(m), Some(v)) = (s.model, s.version) else {
            return;
        };
        if self.fire("integrity", format!("{m}@{v}"), s.time_micros) {
            out.push(Incident {
                detector: "integrity".into(),
                severity: Severity::Critical,
                principal: s.principal.map(str::to_owned),
                // The requester found the damage; their token is not suspect.
                token: None,
                ip: s.ip.map(|i| i.to_string()),
                versions: vec![(m.to_owned(), v.to_owned())],
                evidence: vec![s.index],
                summary: format!(
                    "a stored artifact of {m}@{v} ({}) failed verification",
                    s.file.unwrap_or("?")
                ),
                time_micros: s.time_micros,
            });
        }
    }

    #[allow(clippy::too_many_lines)]
    fn request(&mut self, s: &Signal<'_>, out: &mut Vec<Incident>) {
        let Some(who) = s.principal else { return };
        let cfg = &self.cfg;
        let t = s.time_micros;
        // Looked up by reference: the name is copied once, for a new principal.
        if !self.principals.contains_key(who) {
            self.principals.insert(who.to_owned(), Principal::default());
        }
        let Some(p) = self.principals.get_mut(who) else {
            return;
        };
        let learnt = p.seen >= cfg.learn_events;
        let mut raised: Vec<Raised> = Vec::new();

        // Context: a network or an hour this principal has never used.
        if let Some(ip) = s.ip {
            let net = network(ip, cfg.network_prefix_v4, cfg.network_prefix_v6);
            if learnt && !p.networks.contains(&net) {
                raised.push(Raised(
                    "new_network",
                    who.to_owned(),
                    Severity::Medium,
                    format!(
                        "{who} from {ip}, a network it has not used in {} requests",
                        p.seen
                    ),
                    vec![s.index],
                    true,
                ));
            }
            p.networks.insert(net);
        }
        let hour = usize::try_from(t / (3600 * SEC) % 24).unwrap_or(0);
        let near = |h: usize| p.hours.get(h % 24).copied().unwrap_or(0);
        if cfg.off_hours && learnt && near(hour) + near(hour + 1) + near(hour + 23) == 0 {
            raised.push(Raised(
                "off_hours",
                who.to_owned(),
                Severity::Low,
                format!("{who} active at {hour:02}:00 UTC, outside its usual hours"),
                vec![s.index],
                false,
            ));
        }
        if let Some(h) = p.hours.get_mut(hour) {
            *h += 1;
        }
        p.seen += 1;

        // Rate against the principal's own busiest minute so far.
        let n = p.minute.push(t, s.index, MINUTE);
        if learnt && n >= cfg.rate_min_per_min && n > cfg.rate_factor.saturating_mul(p.peak.max(1))
        {
            raised.push(Raised(
                "request_rate",
                who.to_owned(),
                Severity::Medium,
                format!(
                    "{who} made {n} requests in a minute; its busiest minute before was {}",
                    p.peak
                ),
                p.minute.evidence(),
                true,
            ));
        } else {
            p.peak = p.peak.max(n);
        }

        match s.category {
            Category::Access => {
                let (m, v, f) = (
                    s.model.unwrap_or(""),
                    s.version.unwrap_or(""),
                    s.file.unwrap_or(""),
                );
                let key = fnv(&[m, v, f]);
                let d = p
                    .enumeration
                    .push(t, s.index, key, cfg.enumeration_window_secs * SEC);
                if d >= cfg.enumeration_distinct {
                    raised.push(Raised(
                        "enumeration",
                        who.to_owned(),
                        Severity::High,
                        format!(
                            "{who} fetched {d} distinct artifacts within {} s",
                            cfg.enumeration_window_secs
                        ),
                        p.enumeration.evidence(),
                        true,
                    ));
                }
                // Bytes disclosed for the first time, against this principal's own
                // busiest window of them: fetching the same bytes again adds nothing.
                if p.known.len() < MAX_KNOWN && p.known.insert(key) {
                    let width = cfg.exfiltration_window_secs * SEC;
                    let x = p.disclosed.push(t, s.index, width);
                    // The baseline is learnt from whole windows that have ended, so an
                    // attack in progress does not raise its own bar.
                    let bucket = t.checked_div(width).unwrap_or(0);
                    if bucket != p.disclosed_bucket.0 {
                        if learnt {
                            p.disclosed_peak = p.disclosed_peak.max(p.disclosed_bucket.1);
                        }
                        p.disclosed_bucket = (bucket, 0);
                    }
                    p.disclosed_bucket.1 += 1;
                    if learnt
                        && x >= cfg.exfiltration_new_artifacts
                        && x > cfg.rate_factor.saturating_mul(p.disclosed_peak.max(1))
                    {
                        raised.push(Raised(
                            "exfiltration",
                            who.to_owned(),
                            Severity::High,
                            format!(
                                "{who} fetched {x} artifacts it never had before within {} s; its busiest window before held {}",
                                cfg.exfiltration_window_secs, p.disclosed_peak
                            ),
                            p.disclosed.evidence(),
                            true,
                        ));
                    }
                }
            }
            Category::Denied => {
                let n = p.denials.push(t, s.index, cfg.denials_window_secs * SEC);
                if n >= cfg.denials {
                    raised.push(Raised(
                        "repeated_denials",
                        who.to_owned(),
                        Severity::Medium,
                        format!(
                            "{who} was refused {n} times within {} s",
                            cfg.denials_window_secs
                        ),
                        p.denials.evidence(),
                        true,
                    ));
                }
                if s.reason.is_some_and(|r| r.contains("revoked")) {
                    let (m, v) = (s.model.unwrap_or(""), s.version.unwrap_or(""));
                    raised.push(Raised(
                        "revoked_access",
                        format!("{who}/{m}@{v}"),
                        Severity::Medium,
                        format!("{who} tried to use revoked version {m}@{v}"),
                        vec![s.index],
                        false,
                    ));
                }
            }
            _ => {}
        }

        for Raised(detector, key, severity, summary, evidence, suspect_token) in raised {
            if self.fire(detector, key, t) {
                out.push(Incident {
                    detector: detector.into(),
                    severity,
                    principal: Some(who.to_owned()),
                    token: if suspect_token {
                        s.token.map(str::to_owned)
                    } else {
                        None
                    },
                    ip: s.ip.map(|i| i.to_string()),
                    versions: Vec::new(),
                    evidence,
                    summary,
                    time_micros: t,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_prefixes() {
        let a: IpAddr = "192.0.2.77".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(network(a, 24, 48), IpAddr::from([192, 0, 2, 0]));
        assert_eq!(network(a, 0, 48), IpAddr::from([0, 0, 0, 0]));
        assert_eq!(network(a, 32, 48), a);
    }
}

#[cfg(test)]
mod distinct_tests {
    use super::*;

    fn access(i: u64, file: &str) -> Signal<'_> {
        Signal {
            index: i,
            time_micros: 1_000_000_000 + i * 1000,
            category: Category::Access,
            principal: Some("svc1"),
            token: Some("tok:abc"),
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            model: Some("many"),
            version: Some("1"),
            file: Some(file),
            reason: None,
            count: 1,
            shape: None,
            bytes: None,
        }
    }

    #[test]
    fn repeats_raise_nothing_and_many_distinct_artifacts_raise_enumeration() {
        let mut d = Detector::new(Config::default());
        for i in 0..5000 {
            assert!(d.observe(&access(i, "same.bin")).is_empty(), "repeat {i}");
        }
        let names: Vec<String> = (0..45).map(|k| format!("f{k}")).collect();
        let mut found = Vec::new();
        for (k, n) in names.iter().enumerate() {
            found.extend(d.observe(&access(5000 + k as u64, n)));
        }
        assert!(
            found.iter().any(|i| i.detector == "enumeration"),
            "{found:?}"
        );
    }
}
