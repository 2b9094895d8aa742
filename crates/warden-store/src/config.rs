//! The data directory and its configuration file `warden.toml`.

use crate::error::{StoreError, io};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use warden_core::crypto::SigAlg;

/// Longest allowed rotation interval (the policy's two hours).
pub const MAX_ROTATION_SECS: u64 = 7200;

/// Ledger settings from `warden.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Log origin, the name in every checkpoint.
    pub origin: String,
    /// Entries file, relative to the data directory unless absolute.
    #[serde(default = "default_log")]
    pub log: PathBuf,
    /// Seconds between key rotations (1..=7200).
    #[serde(default = "default_rotation")]
    pub rotation_interval_secs: u64,
    /// `ML-DSA-65` (default) or `ML-DSA-44`.
    #[serde(default = "default_alg")]
    pub signing_algorithm: String,
    /// Sign a checkpoint for every entry instead of one per batch.
    #[serde(default)]
    pub strict: bool,
    /// Registry metadata database (SQLite), relative to the data directory unless absolute.
    #[serde(default = "default_registry")]
    pub registry_db: PathBuf,
    /// Registry metadata in PostgreSQL instead (`postgres://user@host:port/db`; the
    /// password from `PGPASSWORD` rather than the file): several nodes share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_database: Option<String>,
    /// The cluster's PostgreSQL (`postgres://user@host:port/db`, the password from
    /// `PGPASSWORD`): the registry's metadata (unless `registry_database` names another)
    /// and the ledger, written by whichever node holds the sequencer lease. Each node
    /// keeps its own copy of the ledger's files at `log`. A host off this machine needs
    /// `?sslmode=verify-full` (TLS 1.3, see `pgurl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Where a cluster publishes its ledger as C2SP tlog-tiles (`s3://bucket/prefix`,
    /// or a directory), for `warden verify --log URL` and any tlog-tiles client. One
    /// node at a time publishes (the lease `ledger.publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_log: Option<String>,
    /// Artifact blob store root (local filesystem).
    #[serde(default = "default_blobs")]
    pub blobs: PathBuf,
    /// Directory holding `warden.cedarschema` and `warden.cedar`.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// TLS certificate chain (PEM) for `warden serve`; `warden init` writes a
    /// self-signed development certificate here.
    #[serde(default = "default_tls_cert")]
    pub tls_cert: PathBuf,
    /// TLS private key (PEM, 0600).
    #[serde(default = "default_tls_key")]
    pub tls_key: PathBuf,
    /// Accept JWT bearer tokens from an identity provider (`[jwt]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// The dashboard's sign-in through the identity provider (`[oidc]`; needs `[jwt]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// SIEM sinks that `warden serve` exports the ledger to (`[[siem]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siem: Vec<SiemConfig>,
    /// Scheduled verification and compliance reports in `warden serve` (`[schedule]`).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// When the entries file is sealed into segments (`[segments]`).
    #[serde(default)]
    pub segments: SegmentsConfig,
    /// How long sealed segments and archived reports are kept (`[retention]`).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Inline threat detection and the automated response in `warden serve`
    /// (`[detection]`, `[detection.thresholds]`).
    #[serde(default)]
    pub detection: warden_detect::DetectionConfig,
    /// The inference gateway's limits (`[gateway]`).
    #[serde(default, skip_serializing_if = "GatewayConfig::is_default")]
    pub gateway: GatewayConfig,
    /// What `warden check-env` requires of a training environment (`[training]`).
    #[serde(default)]
    pub training: TrainingConfig,
    /// The local writer's socket (`[writer]`); written only when not the default.
    #[serde(default, skip_serializing_if = "WriterConfig::is_default")]
    pub writer: WriterConfig,
    /// Witnesses `warden serve` asks to cosign new checkpoints (`[witnessing]`,
    /// `[[witnessing.witness]]`).
    #[serde(default, skip_serializing_if = "WitnessingConfig::is_default")]
    pub witnessing: WitnessingConfig,
}

/// Witnesses that cosign the ledger's checkpoints (C2SP tlog-witness), asked by
/// `warden serve` (as `warden log cosign` does) whenever a newer checkpoint exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WitnessingConfig {
    /// Seconds between rounds (a round runs only when a newer checkpoint exists).
    pub interval_secs: u64,
    /// Cosignatures needed before the checkpoint is published (default: every witness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<usize>,
    /// Seconds to wait for each witness.
    pub timeout_secs: u64,
    /// The witnesses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub witness: Vec<WitnessPeerConfig>,
}

/// One witness: its submission prefix and its verifier key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessPeerConfig {
    /// `http://127.0.0.1:7380` (plain HTTP to loopback only) or `https://…`.
    pub url: String,
    /// Its verifier key, `name+keyid+key` (`warden witness vkey`).
    pub key: String,
}

impl Default for WitnessingConfig {
    fn default() -> Self {
        Self {
            interval_secs: 10,
            quorum: None,
            timeout_secs: 10,
            witness: Vec::new(),
        }
    }
}

impl WitnessingConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where the data directory's writer listens for local clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    /// The socket (relative to the data directory unless absolute). The default,
    /// `run/writer.sock`, is reachable only by the data directory's owner and root; put
    /// it in a directory other users can reach (and set `socket_mode`) to let their
    /// processes append as the principals bound to them. Clients that cannot read the
    /// data directory find it through `WARDEN_WRITER_SOCKET`.
    pub socket: PathBuf,
    /// Permission bits of the socket file (a process needs write permission on it to
    /// connect). Default 0o600.
    pub socket_mode: u32,
    /// A command that finds no writer starts one (`warden writer --on-demand`) and
    /// appends through it, so a run of commands shares one epoch instead of starting
    /// one each. `WARDEN_WRITER_AUTOSTART=0|1` overrides. Default true.
    pub autostart: bool,
    /// How long a writer started on demand waits without a client before it exits
    /// (closing its epoch). Default 300.
    pub idle_exit_secs: u64,
}

impl Config {
    /// The registry's PostgreSQL, if it is not the SQLite file: `registry_database`, else
    /// the cluster's `backend`.
    #[must_use]
    pub fn registry_url(&self) -> Option<&str> {
        self.registry_database
            .as_deref()
            .or(self.backend.as_deref())
    }

    /// The entries file when the configuration names none.
    #[must_use]
    pub fn default_log() -> PathBuf {
        default_log()
    }
}

impl WriterConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("run/writer.sock"),
            socket_mode: 0o600,
            autostart: true,
            idle_exit_secs: 300,
        }
    }
}

/// The inference gateway's limits, per principal and deployment unless said otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest non-streamed upstream answer, bytes (a larger one is a 502).
    pub max_response_bytes: usize,
    /// Most tokens a request may ask for (`max_tokens`); a request that names none is
    /// given this cap.
    pub max_tokens: u64,
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Tokens (prompt and completion) per minute.
    pub tokens_per_minute: u64,
    /// Tokens per UTC day: the daily budget.
    pub tokens_per_day: u64,
    /// Seconds to connect to an upstream before trying the next.
    pub connect_timeout_secs: u64,
    /// Seconds an upstream may take to answer (or between two streamed chunks).
    pub upstream_timeout_secs: u64,
    /// Seconds an upstream that failed is skipped before it is tried again.
    pub upstream_down_secs: u64,
    /// Seconds between health probes of every deployment's upstreams (`GET
    /// /v1/models`; 0: none, failures are noticed by requests alone).
    pub health_check_secs: u64,
    /// When a whole answer is released: `durable` (its entry is on disk first) or
    /// `queued` (its entry has its place in the ledger, and is made durable with the
    /// next group commit; while an append fails, answers wait for durability again).
    pub release: String,
    /// Keep each request's prompt and answer, sealed to the auditors (`auditors/*.pub`)
    /// under `inference/`, for `[retention] inference_content_days`. Off by default:
    /// the ledger records only their SHA-256.
    pub seal_content: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_response_bytes: 16 << 20,
            max_tokens: 4096,
            requests_per_minute: 600,
            tokens_per_minute: 200_000,
            tokens_per_day: 5_000_000,
            connect_timeout_secs: 2,
            upstream_timeout_secs: 300,
            upstream_down_secs: 5,
            health_check_secs: 10,
            release: "durable".into(),
            seal_content: false,
        }
    }
}

impl GatewayConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Requirements of `warden check-env`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Mount points known to be encrypted by means the check cannot see (for example
    /// a cloud provider's encrypted volume).
    pub encrypted_mounts: Vec<PathBuf>,
    /// Require the training process to have no network route except loopback.
    pub require_network_isolation: bool,
}

/// When the active entries file is sealed and a new one started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentsConfig {
    /// Seal at each UTC day boundary, so each segment holds one day.
    pub daily: bool,
    /// Seal once the active file reaches this many bytes (0: no limit).
    pub max_bytes: u64,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        let p = crate::segments::SegmentPolicy::default();
        Self {
            daily: p.daily,
            max_bytes: p.max_bytes,
        }
    }
}

impl SegmentsConfig {
    /// The ledger's segment policy.
    #[must_use]
    pub fn policy(&self) -> crate::segments::SegmentPolicy {
        crate::segments::SegmentPolicy {
            daily: self.daily,
            max_bytes: self.max_bytes,
        }
    }
}

/// Retention, applied by `warden serve` once a day and by `warden log retention`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days a sealed segment is kept after its last entry (0: forever).
    pub ledger_days: u64,
    /// Days an archived report under `reports/` is kept (0: forever).
    pub reports_days: u64,
    /// Keep segments that a `[[siem]]` sink has not yet confirmed.
    pub hold_for_siem: bool,
    /// Days sealed inference content (`[gateway] seal_content`) is kept, counted in
    /// whole UTC days before today (0: forever).
    pub inference_content_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            ledger_days: 365,
            reports_days: 365,
            hold_for_siem: true,
            inference_content_days: 30,
        }
    }
}

/// What `warden serve` does on a schedule. Reports and the verification state are
/// kept under `reports/` in the data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Seconds between incremental verifications of the ledger (0: never).
    pub verify_every_secs: u64,
    /// Seconds between compliance reports (0: never).
    pub report_every_secs: u64,
    /// Seconds between retention runs (`[retention]`; 0: never).
    pub retention_every_secs: u64,
    /// Seconds each report covers, ending when it is made.
    pub report_period_secs: u64,
    /// Formats written for each report: json, csv, html.
    pub report_formats: Vec<String>,
    /// Auditor secret key for per-user and per-model counts in scheduled reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auditor_key: Option<PathBuf>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            verify_every_secs: 86_400,
            report_every_secs: 7 * 86_400,
            retention_every_secs: 86_400,
            report_period_secs: 7 * 86_400,
            report_formats: vec!["json".into(), "html".into()],
            auditor_key: None,
        }
    }
}

/// One SIEM sink (`[[siem]]` in `warden.toml`, or the options of `warden export`).
/// Paths are relative to the data directory unless absolute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemConfig {
    /// `tcp://host:port`, `tls://host:port`, `udp://host:port`, `file:PATH`,
    /// `http(s)://host:port/path`.
    pub to: String,
    /// `policy`, `rfc5424`, `cef`, `ocsf`, `ecs` or `json`.
    pub format: String,
    /// Names the sink's cursor; default: derived from `to` and `format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Auditor secret key: formats other than `policy` then carry decrypted events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auditor_key: Option<PathBuf>,
    /// CA certificates (PEM) trusted for `tls://` and `https://`; default: the system bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Export signed checkpoints too; default: yes, except for `policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<bool>,
    /// `close` (default): a stream is confirmed by the receiver closing it; `write`: a
    /// completed write counts (receivers that never close; a receiver crash can lose data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    /// Environment variable holding the HEC token for `http(s)://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hec_token_env: Option<String>,
}

/// JWT bearer tokens from an external identity provider. A token is accepted when its
/// signature verifies against a key of the JWKS, `iss` and `aud` match, and it is
/// within `nbf`..`exp`; the principal claim must name a registered, active principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences).
    pub audience: String,
    /// The JWKS: an `https://` URL (or `http://` on a loopback address), or a file path
    /// (relative to the data directory unless absolute).
    pub jwks: PathBuf,
    /// Seconds between fetches of a JWKS URL (keys are also fetched again, at most once
    /// a minute, when a token names an unknown `kid`).
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// CA certificates (PEM) trusted for the JWKS URL; default: the system bundle.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// Accepted signature algorithms (asymmetric only).
    #[serde(default = "default_jwt_algs")]
    pub algorithms: Vec<String>,
    /// Claim naming the Warden principal.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// Claim holding scopes (a space-separated string or an array).
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Provider scope → Warden scopes. Provider scopes that are Warden scopes pass as
    /// they are; other unmapped scopes are ignored.
    #[serde(default)]
    pub scope_map: std::collections::BTreeMap<String, Vec<String>>,
    /// Claim holding groups or roles (a string or an array), mapped by `role_map`.
    #[serde(default)]
    pub role_claim: Option<String>,
    /// Provider group → Warden role, added to the principal's roles for the request.
    #[serde(default)]
    pub role_map: std::collections::BTreeMap<String, String>,
    /// `amr` values that count as multi-factor authentication.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_jwt_algs() -> Vec<String> {
    ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn default_principal_claim() -> String {
    "sub".into()
}
fn default_scope_claim() -> String {
    "scope".into()
}
fn default_mfa_amr() -> Vec<String> {
    ["mfa", "otp", "hwk"].map(String::from).to_vec()
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_leeway() -> u64 {
    30
}

/// The dashboard's sign-in through the identity provider: the OpenID Connect
/// authorization code flow with PKCE (S256). The session holds the provider's access
/// token for Warden, which must be a JWT that `[jwt]` accepts (issuer, audience, keys,
/// claim mapping), so a session signed in this way is checked exactly as a JWT pasted
/// into the form, on every request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The client registered at the provider for the dashboard.
    pub client_id: String,
    /// The environment variable holding the client's secret (sent with HTTP Basic
    /// authentication); none: a public client, PKCE alone.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// This server's callback as browsers reach it, registered at the provider:
    /// `https://HOST/dashboard/sign-in/oidc/callback`.
    pub redirect_uri: String,
    /// Scopes asked for.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// RFC 8707 `resource` sent with both requests, where the provider needs it to
    /// issue a token for Warden's audience.
    #[serde(default)]
    pub resource: Option<String>,
    /// Default: from the provider's discovery document
    /// (`[jwt] issuer` + `/.well-known/openid-configuration`).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Default: from the discovery document.
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["openid".into(), "audit:read".into()]
}

fn default_tls_cert() -> PathBuf {
    PathBuf::from("tls/server.crt")
}
fn default_tls_key() -> PathBuf {
    PathBuf::from("tls/server.key")
}

fn default_registry() -> PathBuf {
    PathBuf::from("registry/registry.db")
}
fn default_blobs() -> PathBuf {
    PathBuf::from("blobs")
}
fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}

fn default_log() -> PathBuf {
    PathBuf::from("logs/model_access.jsonl")
}
fn default_rotation() -> u64 {
    MAX_ROTATION_SECS
}
fn default_alg() -> String {
    SigAlg::MlDsa65.name().to_owned()
}

impl Config {
    /// A default configuration for `origin`.
    #[must_use]
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.into(),
            log: default_log(),
            rotation_interval_secs: default_rotation(),
            signing_algorithm: default_alg(),
            strict: false,
            registry_db: default_registry(),
            registry_database: None,
            backend: None,
            publish_log: None,
            blobs: default_blobs(),
            policies: default_policies(),
            tls_cert: default_tls_cert(),
            tls_key: default_tls_key(),
            jwt: None,
            oidc: None,
            siem: Vec::new(),
            schedule: ScheduleConfig::default(),
            segments: SegmentsConfig::default(),
            retention: RetentionConfig::default(),
            detection: warden_detect::DetectionConfig::default(),
            training: TrainingConfig::default(),
            gateway: GatewayConfig::default(),
            writer: WriterConfig::default(),
            witnessing: WitnessingConfig::default(),
        }
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<SigAlg, StoreError> {
        if !matches!(self.gateway.release.as_str(), "durable" | "queued") {
            return Err(StoreError::Config(format!(
                "[gateway] release = {:?}: use \"durable\" or \"queued\"",
                self.gateway.release
            )));
        }
        if self.writer.socket_mode & !0o777 != 0 {
            return Err(StoreError::Config(format!(
                "[writer] socket_mode {:o} has bits beyond 0o777",
                self.writer.socket_mode
            )));
        }
        for (key, url) in [
            ("registry_database", &self.registry_database),
            ("backend", &self.backend),
        ] {
            if let Some(url) = url {
                crate::pgurl::check(key, url)?;
            }
        }
        if self.publish_log.is_some() && self.backend.is_none() {
            return Err(StoreError::Config(
                "publish_log is published by a cluster: it needs backend = \"postgres://…\"".into(),
            ));
        }
        if self.backend.is_some() && self.strict {
            return Err(StoreError::Config(
                "strict mode (a signature per entry) is not supported with a cluster backend yet"
                    .into(),
            ));
        }
        if !warden_core::checkpoint::valid_origin(&self.origin) {
            return Err(StoreError::Config(format!(
                "invalid origin {:?}: use a name like example.com/warden without spaces, quotes or '+'",
                self.origin
            )));
        }
        if self.rotation_interval_secs == 0 || self.rotation_interval_secs > MAX_ROTATION_SECS {
            return Err(StoreError::Config(format!(
                "rotation_interval_secs must be between 1 and {MAX_ROTATION_SECS}, not {}",
                self.rotation_interval_secs
            )));
        }
        Ok(SigAlg::parse(&self.signing_algorithm)?)
    }
}

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    #[must_use]
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    #[must_use]
    pub fn config(&self) -> PathBuf {
        self.root.join("warden.toml")
    }
    #[must_use]
    pub fn root_key(&self) -> PathBuf {
        self.root.join("keys/root.key")
    }
    #[must_use]
    pub fn root_pub(&self) -> PathBuf {
        self.root.join("keys/root.pub")
    }
    #[must_use]
    pub fn auditors(&self) -> PathBuf {
        self.root.join("auditors")
    }
    /// The entries file for `cfg`.
    #[must_use]
    pub fn log(&self, cfg: &Config) -> PathBuf {
        self.resolve(&cfg.log)
    }

    /// `p` relative to the data directory unless absolute.
    #[must_use]
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    /// The data directory's dataset key (secret, 0600), the default recipient of
    /// `warden dataset encrypt`.
    #[must_use]
    pub fn dataset_key(&self) -> PathBuf {
        self.root.join("keys/dataset.key")
    }
    #[must_use]
    pub fn dataset_pub(&self) -> PathBuf {
        self.root.join("keys/dataset.key.pub")
    }

    /// Principals' signing keys created by `warden init` and `warden principal add`.
    #[must_use]
    pub fn principal_key(&self, name: &str) -> PathBuf {
        self.root
            .join("keys/principals")
            .join(format!("{name}.key"))
    }

    /// Reads and validates `warden.toml`.
    pub fn read_config(&self) -> Result<Config, StoreError> {
        let p = self.config();
        let text = std::fs::read_to_string(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Config(format!(
                    "{} not found: run `warden init --data-dir {}` first",
                    p.display(),
                    self.root.display()
                ))
            } else {
                StoreError::Io {
                    op: "read",
                    path: p.clone(),
                    source: e,
                }
            }
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| StoreError::Format {
            path: p,
            detail: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every auditor public key in `auditors/*.pub`, sorted by file name.
    pub fn read_auditors(
        &self,
    ) -> Result<Vec<warden_core::crypto::RecipientPublicKey>, StoreError> {
        let dir = self.auditors();
        let mut paths = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    let p = e.map_err(io("list", &dir))?.path();
                    if p.extension().is_some_and(|x| x == "pub") {
                        paths.push(p);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io {
                    op: "list",
                    path: dir,
                    source: e,
                });
            }
        }
        paths.sort();
        paths
            .iter()
            .map(|p| crate::keys::read_recipient_public(p))
            .collect()
    }
}
