//! `SecureModelManager`: the one path through which models are registered, promoted,
//! revoked and loaded. Every decision and every mutation is a ledger entry; a mutation is
//! committed to the database only after its entry is durable, so nothing changes
//! unaudited (fail closed).

use crate::blobs::BlobStore;
use crate::db::{Db, FileRow, GrantRow, PrincipalRow, VersionRow};
use crate::error::RegistryError;
use crate::manifest::{self, Provenance, Resource};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::crypto::{SigAlg, SigningKey, VerifyingKey};
use warden_core::entry::Event;
use warden_policy::{
    AccessRequest, Action, ContextFacts, Decision, Engine, PrincipalFacts, ResourceFacts,
    VersionState,
};
use warden_store::ledger::{Clock, Ledger, Receipt};

/// Who is asking, from where, and how they authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: String,
    pub ip: IpAddr,
    /// Authenticated with a second factor.
    pub mfa: bool,
    /// `Some` when the caller holds a scoped token.
    pub scopes: Option<Vec<String>>,
    /// Roles asserted by a trusted identity provider (a JWT's mapped claim), added to
    /// the principal's registered roles for this request.
    pub idp_roles: Vec<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// When the presented credential stops being valid (a token's or JWT's expiry, in
    /// seconds since the epoch); `None` for local callers and client certificates. What
    /// the caller issues never outlives it.
    pub expires_at: Option<i64>,
    /// The credential presented (`tok:<id>`, `jwt:<id>`, `cert:<name>`), recorded in
    /// every entry of the request; `None` for local callers.
    pub credential: Option<String>,
}

impl Caller {
    /// A local caller (the CLI): loopback address, unscoped.
    #[must_use]
    pub fn local(principal: &str) -> Self {
        Self {
            principal: principal.to_owned(),
            ip: IpAddr::from([127, 0, 0, 1]),
            mfa: false,
            scopes: None,
            idp_roles: Vec::new(),
            user_agent: None,
            request_id: None,
            expires_at: None,
            credential: None,
        }
    }
}

/// Picks a version: an exact version, an alias (`production`, `latest`, or one an
/// operator set), or the latest when neither is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Version(String),
    Alias(String),
    Latest,
}

impl Selector {
    /// The part after `@`: a reserved alias (`production`, `latest`) or a version (which
    /// falls back to an operator alias of that name when no such version exists).
    #[must_use]
    pub fn parse(s: &str) -> Selector {
        match s {
            "production" | "latest" => Selector::Alias(s.to_owned()),
            _ => Selector::Version(s.to_owned()),
        }
    }

    /// Parses the command-line form `NAME[@VERSION|@ALIAS]`; `NAME` alone is the latest.
    #[must_use]
    pub fn parse_ref(r: &str) -> (String, Selector) {
        match r.split_once('@') {
            None => (r.to_owned(), Selector::Latest),
            Some((m, s)) => (m.to_owned(), Selector::parse(s)),
        }
    }
}

/// Where the registry keeps its data.
#[derive(Debug)]
pub struct ManagerOptions {
    pub db_path: PathBuf,
    pub blobs: BlobStore,
    pub engine: Engine,
    /// Digest of the policy text, to record policy changes in the ledger.
    pub policy_digest: String,
    /// Digest of the configuration, to record configuration changes in the ledger.
    pub config_digest: Option<String>,
    pub clock: Arc<dyn Clock>,
}

/// The model manager.
#[derive(Debug)]
pub struct SecureModelManager {
    pub(crate) db: Db,
    pub(crate) blobs: BlobStore,
    engine: Engine,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The last verified manifest of each version, with the inputs it was verified from.
    manifests: crate::cache::Cached<(String, String), Arc<VerifiedEntry>>,
    manifests_generation: crate::cache::Generation,
    /// Inline threat detection, once enabled.
    pub(crate) detection: std::sync::OnceLock<Arc<crate::respond::Hook>>,
    /// Failed authentications past the rate limits, counted per window.
    pub(crate) throttled: crate::throttle::Throttled,
}

/// A verified manifest and exactly what it was verified from.
#[derive(Debug)]
struct VerifiedEntry {
    registrant: String,
    key: (Option<String>, Option<String>),
    envelope: String,
    verified: manifest::VerifiedManifest,
}

/// A principal's signing key, read from its key file.
#[derive(Debug)]
pub struct PrincipalKey {
    pub principal: String,
    pub key: SigningKey,
}

/// What to register: `path` (a file or a directory) as `model@version`.
#[derive(Debug)]
pub struct Registration<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub path: &'a Path,
    pub provenance: Provenance,
}

/// A view of one version for listing and `show`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VersionInfo {
    pub model: String,
    pub version: String,
    pub state: String,
    pub registrant: String,
    pub root_digest: String,
    pub created_at: i64,
    pub validated_by: Option<String>,
    pub approved_by: Option<String>,
    pub revoked_reason: Option<String>,
    pub aliases: Vec<String>,
    pub files: Vec<FileInfo>,
    pub provenance: Option<serde_json::Value>,
    /// A Git-style commit id for Hub clients: the first 40 hex digits of the SHA-256
    /// of the signed manifest (unique per registration, stable for the version).
    pub commit: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileInfo {
    pub name: String,
    pub digest: String,
    pub size: i64,
}

/// Names of models and versions: 1–128 of `A-Z a-z 0-9 . _ - /`, not starting with
/// `.`, `-` or `/`.
pub fn check_name(what: &'static str, s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !s.starts_with(['.', '-', '/'])
        && !s.contains("..")
        && !s.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::invalid(
            what,
            format!("{s:?}: use 1-128 letters, digits, '.', '_', '-' or '/'"),
        ))
    }
}

/// Principal names: 1–64 of `A-Z a-z 0-9 . _ - @`.
pub fn check_principal_name(s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::invalid(
            "principal name",
            format!("{s:?}: use 1-64 letters, digits, '.', '_', '-' or '@'"),
        ))
    }
}

impl SecureModelManager {
    /// Opens the registry beside an open ledger, records `system.start`, and a
    /// `policy.change` entry when the policy differs from the one last recorded.
    pub async fn open(opts: ManagerOptions, ledger: Ledger) -> Result<Self, RegistryError> {
        let db = Db::open(&opts.db_path).await?;
        let m = Self {
            db,
            blobs: opts.blobs,
            engine: opts.engine,
            ledger: Arc::new(ledger),
            clock: opts.clock,
            manifests: crate::cache::Cached::default(),
            manifests_generation: crate::cache::Generation::default(),
            detection: std::sync::OnceLock::new(),
            throttled: crate::throttle::Throttled::default(),
        };
        m.audit(
            "system.start",
            &Event {
                user: Some("system".into()),
                action: Some("start".into()),
                details: Some(
                    json!({"policy_digest": opts.policy_digest, "policies": m.engine.len()}),
                ),
                ..Event::default()
            },
        )
        .await?;
        m.record_change(
            "policy_digest",
            "policy.change",
            "policy.load",
            &opts.policy_digest,
        )
        .await?;
        if let Some(c) = &opts.config_digest {
            m.record_change("config_digest", "config.change", "config.load", c)
                .await?;
        }
        Ok(m)
    }

    /// Records a `kind` entry when `digest` differs from the one stored under `key`
    /// (the first start records it too), then stores it.
    async fn record_change(
        &self,
        key: &str,
        kind: &'static str,
        action: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let last = self.db.meta(key).await?;
        if last.as_deref() == Some(digest) {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        Db::set_meta(&mut tx, key, digest).await?;
        self.audit(
            kind,
            &Event {
                user: Some("system".into()),
                action: Some(action.into()),
                details: Some(json!({"previous": last, "digest": digest})),
                ..Event::default()
            },
        )
        .await?;
        self.db.commit(tx).await?;
        Ok(())
    }

    /// Records `system.stop` and closes the ledger (final checkpoint).
    pub async fn close(self) -> Result<(), RegistryError> {
        let r = self
            .audit(
                "system.stop",
                &Event {
                    user: Some("system".into()),
                    action: Some("stop".into()),
                    ..Event::default()
                },
            )
            .await;
        self.db.close().await;
        if let Ok(l) = Arc::try_unwrap(self.ledger) {
            l.close();
        }
        r.map(|_| ())
    }

    /// Records an activity of the service itself (a scheduled verification, a report)
    /// as a durable `kind` entry by the `system` principal.
    pub async fn record_system(
        &self,
        kind: &'static str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<Receipt, RegistryError> {
        self.audit(
            kind,
            &Event {
                user: Some("system".into()),
                action: Some(action.into()),
                details: Some(details),
                ..Event::default()
            },
        )
        .await
    }

    /// The audit ledger (retention runs through it).
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger's entries file and its consistent prefix after the last durable batch.
    #[must_use]
    pub fn ledger_state(&self) -> (&Path, Option<warden_store::ledger::DurableState>) {
        (self.ledger.path(), self.ledger.durable_state())
    }

    /// The policy engine.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The blob store (tests reach the local files through it).
    #[must_use]
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The registry clock's time, in seconds (grant and token expiries use it).
    pub fn now_secs(&self) -> i64 {
        i64::try_from(self.clock.now().as_micros() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Appends one entry and waits until it is durable.
    pub(crate) async fn audit(
        &self,
        kind: &'static str,
        event: &Event,
    ) -> Result<Receipt, RegistryError> {
        let t = std::time::Instant::now();
        // Submitting only queues (it blocks just when the queue is full); the task then
        // parks until the sequencer has made the batch durable.
        let r = match self.ledger.submit(kind, event) {
            Ok(ticket) => ticket.await.map_err(RegistryError::Audit),
            Err(e) => Err(RegistryError::Audit(e)),
        };
        metrics::histogram!("warden_audit_append_duration_seconds", "kind" => kind)
            .record(t.elapsed().as_secs_f64());
        if let (Ok(receipt), Some(hook)) = (&r, self.detection.get()) {
            hook.observe(kind, event, receipt.index);
        }
        r
    }

    /// Allows an auditor's read of the ledger (`audit` on the ledger), recording it as an
    /// `audit.read` entry with `what` was read; returns the entries file to read.
    pub async fn audit_read(
        &self,
        caller: &Caller,
        what: serde_json::Value,
    ) -> Result<PathBuf, RegistryError> {
        let decision = self
            .authorize(caller, Action::Audit, &ResourceFacts::Ledger, None)
            .await?;
        let mut ev = Self::event(caller, Action::Audit);
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(what);
        self.audit("audit.read", &ev).await?;
        Ok(self.ledger.path().to_path_buf())
    }

    /// The entry of an allowed change to the principal directory.
    fn directory_event(caller: &Caller, decision: &Decision, details: serde_json::Value) -> Event {
        let mut ev = Self::event(caller, Action::Write);
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(details);
        ev
    }

    /// The entry of a decision about one version: who, from where, which version (and
    /// its root digest), the outcome and why.
    pub(crate) fn version_event(
        caller: &Caller,
        action: Action,
        v: &VersionRow,
        decision: &str,
        reason: String,
    ) -> Event {
        let mut ev = Self::event(caller, action);
        ev.model = Some(v.model.clone());
        ev.version = Some(v.version.clone());
        ev.decision = Some(decision.to_owned());
        ev.reason = Some(reason);
        ev.digest = Some(format!("sha256:{}", v.root_digest));
        ev
    }

    pub(crate) fn event(caller: &Caller, action: Action) -> Event {
        Event {
            user: Some(caller.principal.clone()),
            ip: Some(caller.ip.to_string()),
            action: Some(action.as_str().to_owned()),
            user_agent: caller.user_agent.clone(),
            request_id: caller.request_id.clone(),
            credential: caller.credential.clone(),
            ..Event::default()
        }
    }

    fn resource_names(resource: &ResourceFacts) -> (Option<String>, Option<String>, String) {
        match resource {
            ResourceFacts::Model { name } => (Some(name.clone()), None, format!("model {name}")),
            ResourceFacts::Version { model, version, .. } => (
                Some(model.clone()),
                Some(version.clone()),
                format!("{model}@{version}"),
            ),
            ResourceFacts::Ledger => (None, None, "the audit ledger".into()),
            ResourceFacts::Directory => (None, None, "the principal directory".into()),
        }
    }

    /// Facts about a version for the policy.
    pub(crate) fn version_facts(v: &VersionRow) -> ResourceFacts {
        ResourceFacts::Version {
            model: v.model.clone(),
            version: v.version.clone(),
            state: VersionState::parse(&v.state).unwrap_or(VersionState::Revoked),
            registrant: v.registrant.clone(),
            validated: v.validated_by.is_some(),
        }
    }

    /// The policy facts of `model@version`, read from the database.
    pub async fn db_version_facts(
        &self,
        model: &str,
        version: &str,
    ) -> Result<ResourceFacts, RegistryError> {
        let v = self.db.version(model, version).await?.ok_or_else(|| {
            RegistryError::UnknownVersion {
                model: model.to_owned(),
                selector: version.to_owned(),
            }
        })?;
        Ok(Self::version_facts(&v))
    }

    /// Decides without recording anything (listings, benchmarks). It grants nothing:
    /// every operation that acts on a decision goes through the recorded path.
    /// Unknown principals are denied.
    pub async fn decide(
        &self,
        caller: &Caller,
        action: Action,
        resource: &ResourceFacts,
        target: Option<VersionState>,
    ) -> Result<Decision, RegistryError> {
        let Some(p) = self.db.principal(&caller.principal).await? else {
            return Ok(Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec!["unknown principal".into()],
            });
        };
        let model = match resource {
            ResourceFacts::Model { name } => Some(name.as_str()),
            ResourceFacts::Version { model, .. } => Some(model.as_str()),
            _ => None,
        };
        let grants = match model {
            Some(m) => self.db.grants_for(&p.name, m).await?,
            None => Vec::new(),
        };
        let req = AccessRequest {
            principal: PrincipalFacts {
                name: p.name.clone(),
                service: p.service,
                active: p.active,
                roles: {
                    let mut roles = p.roles.clone();
                    for r in &caller.idp_roles {
                        if !roles.contains(r) {
                            roles.push(r.clone());
                        }
                    }
                    roles
                },
                grants: grants
                    .iter()
                    .filter_map(|g| Action::parse(&g.action).ok().map(|a| (a, g.expires_at)))
                    .collect(),
            },
            action,
            resource: resource.clone(),
            context: ContextFacts {
                now: self.now_secs(),
                ip: caller.ip,
                mfa: caller.mfa,
                scopes: caller.scopes.clone(),
                target,
            },
        };
        let t = std::time::Instant::now();
        if let Some(d) = self.engine.cached(&req) {
            metrics::histogram!("warden_policy_evaluation_duration_seconds", "cache" => "hit")
                .record(t.elapsed().as_secs_f64());
            return Ok(d);
        }
        // A fresh evaluation also records the evaluating thread's CPU time: its cost
        // without the time the thread spent descheduled (wall-clock figures include that
        // on a busy host).
        let cpu = cpu_time::ThreadTime::try_now().ok();
        let d = self.engine.evaluate(&req);
        metrics::histogram!("warden_policy_evaluation_duration_seconds", "cache" => "miss")
            .record(t.elapsed().as_secs_f64());
        if let Some(cpu) = cpu {
            metrics::histogram!("warden_policy_evaluation_cpu_seconds", "cache" => "miss")
                .record(cpu.elapsed().as_secs_f64());
        }
        Ok(d)
    }

    /// The policy check of the decision flow. A deny is recorded as `model.denied` and
    /// returned as [`RegistryError::Denied`]; an allow is returned for the caller to
    /// record with the operation it permits.
    pub(crate) async fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        resource: &ResourceFacts,
        target: Option<VersionState>,
    ) -> Result<Decision, RegistryError> {
        let t = std::time::Instant::now();
        let d = self.decide(caller, action, resource, target).await?;
        metrics::histogram!("warden_decision_duration_seconds",
            "outcome" => if d.allowed { "allow" } else { "deny" })
        .record(t.elapsed().as_secs_f64());
        if d.allowed {
            return Ok(d);
        }
        self.record_decision(caller, action, resource, target, &d)
            .await?;
        let (_, _, what) = Self::resource_names(resource);
        Err(RegistryError::Denied {
            principal: caller.principal.clone(),
            action: action.to_string(),
            resource: what,
            reason: d.reason(),
        })
    }

    /// Records a decision on its own: `model.decision` for an allow, `model.denied` for
    /// a deny.
    async fn record_decision(
        &self,
        caller: &Caller,
        action: Action,
        resource: &ResourceFacts,
        target: Option<VersionState>,
        d: &Decision,
    ) -> Result<Receipt, RegistryError> {
        let (model, version, _) = Self::resource_names(resource);
        let mut ev = Self::event(caller, action);
        ev.model = model;
        ev.version = version;
        ev.decision = Some(if d.allowed { "allow" } else { "deny" }.into());
        ev.reason = Some(d.reason());
        if let Some(t) = target {
            ev.details = Some(json!({"target": t.as_str()}));
        }
        let kind = if d.allowed {
            "model.decision"
        } else {
            "model.denied"
        };
        self.audit(kind, &ev).await
    }

    /// Answers whether `caller` may `action` the resource, recording the decision
    /// (`model.decision` when allowed, `model.denied` when not).
    pub async fn check(
        &self,
        caller: &Caller,
        action: Action,
        model: &str,
        selector: Option<&Selector>,
        target: Option<VersionState>,
    ) -> Result<Decision, RegistryError> {
        let resource = match selector {
            Some(s) => Self::version_facts(&self.resolve(caller, action, model, s).await?),
            None => ResourceFacts::Model {
                name: model.to_owned(),
            },
        };
        let d = self.decide(caller, action, &resource, target).await?;
        self.record_decision(caller, action, &resource, target, &d)
            .await?;
        Ok(d)
    }

    /// [`check`](Self::check) for a caller who must first be allowed to `read` the
    /// version (the HTTP decision endpoint): a decision reveals the version's state, so
    /// whoever may not see the version gets a recorded denial instead of an answer.
    pub async fn check_visible(
        &self,
        caller: &Caller,
        action: Action,
        model: &str,
        selector: &Selector,
    ) -> Result<Decision, RegistryError> {
        let v = self.resolve(caller, Action::Read, model, selector).await?;
        let facts = Self::version_facts(&v);
        let _visible = self.authorize(caller, Action::Read, &facts, None).await?;
        let d = self.decide(caller, action, &facts, None).await?;
        self.record_decision(caller, action, &facts, None, &d)
            .await?;
        Ok(d)
    }

    /// The version a load of `model@selector` would serve, under the load rule itself,
    /// without serving anything (the Hub's `HEAD`): one decision entry, allowed or
    /// denied; a denial is returned as [`RegistryError::Denied`].
    pub async fn load_info(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
    ) -> Result<VersionInfo, RegistryError> {
        let v = self.resolve(caller, Action::Load, model, selector).await?;
        let facts = Self::version_facts(&v);
        let d = self.decide(caller, Action::Load, &facts, None).await?;
        self.record_decision(caller, Action::Load, &facts, None, &d)
            .await?;
        if !d.allowed {
            return Err(RegistryError::Denied {
                principal: caller.principal.clone(),
                action: Action::Load.to_string(),
                resource: format!("{}@{}", v.model, v.version),
                reason: d.reason(),
            });
        }
        self.info(&v).await
    }

    /// Resolves a selector; an unknown model or version is recorded as a denied request
    /// (reason `not-found`) before the error is returned, so probing is visible.
    pub(crate) async fn resolve(
        &self,
        caller: &Caller,
        action: Action,
        model: &str,
        selector: &Selector,
    ) -> Result<VersionRow, RegistryError> {
        let found = self.find(model, selector).await?;
        if let Some(v) = found {
            return Ok(v);
        }
        let mut ev = Self::event(caller, action);
        ev.model = Some(model.to_owned());
        ev.version = match selector {
            Selector::Version(v) | Selector::Alias(v) => Some(v.clone()),
            Selector::Latest => None,
        };
        ev.decision = Some("deny".into());
        ev.reason = Some("not-found".into());
        self.audit("model.denied", &ev).await?;
        if self.db.model_exists(model).await? {
            Err(RegistryError::UnknownVersion {
                model: model.to_owned(),
                selector: match selector {
                    Selector::Version(v) | Selector::Alias(v) => v.clone(),
                    Selector::Latest => "latest".into(),
                },
            })
        } else {
            Err(RegistryError::UnknownModel {
                model: model.to_owned(),
            })
        }
    }

    /// Resolves a selector in one fixed order, so that no name in one namespace can
    /// shadow another: a commit id (40 hex digits, which no version or alias may look
    /// like), then a version, then an operator alias, then the branch `main`.
    async fn find(
        &self,
        model: &str,
        selector: &Selector,
    ) -> Result<Option<VersionRow>, RegistryError> {
        let version = match selector {
            // Hub clients pin a version by its commit id.
            Selector::Version(v) if is_commit_id(v) => {
                return Ok(self
                    .db
                    .versions(model)
                    .await?
                    .into_iter()
                    .find(|row| commit_id(&row.manifest) == *v));
            }
            Selector::Version(v) => {
                if let Some(row) = self.db.version(model, v).await? {
                    return Ok(Some(row));
                }
                match self.db.alias(model, v).await? {
                    Some(a) => Some(a),
                    // The Hub's default branch: the newest version that can still be
                    // served (not revoked or retired), else the latest.
                    None if v == "main" => {
                        let versions = self.db.versions(model).await?;
                        let serveable = versions
                            .iter()
                            .rev()
                            .find(|r| r.state != "revoked" && r.state != "retired");
                        match serveable.or(versions.last()) {
                            Some(r) => return Ok(Some(r.clone())),
                            None => None,
                        }
                    }
                    None => None,
                }
            }
            Selector::Alias(a) => self.db.alias(model, a).await?,
            Selector::Latest => self.db.alias(model, "latest").await?,
        };
        match version {
            Some(v) => self.db.version(model, &v).await,
            None => Ok(None),
        }
    }

    // ---------------------------------------------------------------- principals

    /// Adds a principal. `caller` must be allowed to `write` the directory; `None` is the
    /// bootstrap by `warden init` (recorded as `system`).
    pub async fn add_principal(
        &self,
        caller: Option<&Caller>,
        name: &str,
        roles: &[String],
        service: bool,
        signing_key: Option<&VerifyingKey>,
    ) -> Result<Receipt, RegistryError> {
        check_principal_name(name)?;
        for r in roles {
            check_principal_name(r)?;
        }
        let decision = match caller {
            Some(c) => Some(
                self.authorize(c, Action::Write, &ResourceFacts::Directory, None)
                    .await?,
            ),
            None => None,
        };
        if let Some(c) = caller
            && !roles.is_empty()
            && let Err(r) = c.may_give_roles()
        {
            let details = json!({"op": "principal.add", "principal": name, "roles": roles});
            return Err(self.refuse_issue(c, r, details).await);
        }
        if self.db.principal(name).await?.is_some() {
            return Err(RegistryError::Exists {
                what: "principal",
                name: name.to_owned(),
            });
        }
        let by = caller.map_or("system", |c| c.principal.as_str());
        let row = PrincipalRow {
            name: name.to_owned(),
            service,
            active: true,
            signing_alg: signing_key.map(|k| k.alg().name().to_owned()),
            signing_key: signing_key.map(|k| B64.encode(k.as_bytes())),
            roles: roles.to_vec(),
            created_at: self.now_secs(),
        };
        let mut tx = self.db.begin().await?;
        Db::insert_principal(&mut tx, &row, by).await?;
        let mut ev = caller.map_or_else(
            || Event {
                user: Some("system".into()),
                action: Some("write".into()),
                ..Event::default()
            },
            |c| Self::event(c, Action::Write),
        );
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.map_or_else(|| "bootstrap".to_owned(), |d| d.reason()));
        ev.details = Some(json!({
            "op": "principal.add", "principal": name, "roles": roles, "service": service,
            "signing_key": signing_key.map(|k| manifest::key_id(name, k)),
        }));
        let receipt = self.audit("registry.principal", &ev).await?;
        self.db.commit(tx).await?;
        Ok(receipt)
    }

    /// Gives `name` another role.
    pub async fn grant_role(
        &self,
        caller: &Caller,
        name: &str,
        role: &str,
    ) -> Result<Receipt, RegistryError> {
        check_principal_name(role)?;
        let decision = self
            .authorize(caller, Action::Write, &ResourceFacts::Directory, None)
            .await?;
        if let Err(r) = caller.may_give_roles() {
            let details = json!({"op": "principal.grant_role", "principal": name, "role": role});
            return Err(self.refuse_issue(caller, r, details).await);
        }
        self.require_principal(name).await?;
        let mut tx = self.db.begin().await?;
        Db::add_role(&mut tx, name, role).await?;
        let ev = Self::directory_event(
            caller,
            &decision,
            json!({"op": "principal.grant_role", "principal": name, "role": role}),
        );
        let r = self.audit("registry.principal", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// Grants `name` the `actions` on `model` (`*` for every model) until `expires_at`.
    pub async fn grant(
        &self,
        caller: &Caller,
        name: &str,
        model: &str,
        actions: &[Action],
        expires_at: i64,
    ) -> Result<Receipt, RegistryError> {
        if model != "*" {
            check_name("model name", model)?;
        }
        let decision = self
            .authorize(caller, Action::Write, &ResourceFacts::Directory, None)
            .await?;
        if let Err(r) = caller.may_grant(actions, expires_at) {
            let details = json!({"op": "principal.grant", "principal": name, "model": model,
                "actions": actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                "expires_at": expires_at});
            return Err(self.refuse_issue(caller, r, details).await);
        }
        self.require_principal(name).await?;
        let now = self.now_secs();
        let mut tx = self.db.begin().await?;
        for a in actions {
            Db::put_grant(
                &mut tx,
                &GrantRow {
                    principal: name.to_owned(),
                    model: model.to_owned(),
                    action: a.as_str().to_owned(),
                    expires_at,
                },
                &caller.principal,
                now,
            )
            .await?;
        }
        let mut ev = Self::event(caller, Action::Write);
        ev.model = (model != "*").then(|| model.to_owned());
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(json!({
            "op": "principal.grant", "principal": name, "model": model,
            "actions": actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(), "expires_at": expires_at,
        }));
        let r = self.audit("registry.principal", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// Suspends or re-enables a principal.
    pub async fn set_active(
        &self,
        caller: &Caller,
        name: &str,
        active: bool,
    ) -> Result<Receipt, RegistryError> {
        let decision = self
            .authorize(caller, Action::Write, &ResourceFacts::Directory, None)
            .await?;
        let op = if active {
            "principal.enable"
        } else {
            "principal.suspend"
        };
        if let Err(r) = caller.may_set_active(name, active) {
            let details = json!({"op": op, "principal": name});
            return Err(self.refuse_issue(caller, r, details).await);
        }
        self.require_principal(name).await?;
        let mut tx = self.db.begin().await?;
        Db::set_active(&mut tx, name, active).await?;
        let ev = Self::directory_event(caller, &decision, json!({"op": op, "principal": name}));
        let r = self.audit("registry.principal", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// Every principal with roles and grants; needs `read` on the directory.
    pub async fn principals(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(PrincipalRow, Vec<GrantRow>)>, RegistryError> {
        let decision = self
            .authorize(caller, Action::Read, &ResourceFacts::Directory, None)
            .await?;
        let mut ev = Self::event(caller, Action::Read);
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(json!({"op": "principal.list"}));
        self.audit("registry.read", &ev).await?;
        let mut out = Vec::new();
        for p in self.db.principals().await? {
            let g = self.db.grants_of(&p.name).await?;
            out.push((p, g));
        }
        Ok(out)
    }

    async fn require_principal(&self, name: &str) -> Result<PrincipalRow, RegistryError> {
        self.db
            .principal(name)
            .await?
            .ok_or_else(|| RegistryError::UnknownPrincipal {
                name: name.to_owned(),
            })
    }

    /// The registered signing key of `name`.
    /// Verifies `v`'s signed manifest against its registrant's registered key. A
    /// verification is reused only for byte-identical inputs (registrant, stored key,
    /// envelope): the same bytes verify the same way.
    pub(crate) async fn verified_manifest(
        &self,
        v: &VersionRow,
    ) -> Result<manifest::VerifiedManifest, RegistryError> {
        let p =
            self.db.principal(&v.registrant).await?.ok_or_else(|| {
                RegistryError::Signer(format!("unknown signer {:?}", v.registrant))
            })?;
        let stored_key = (p.signing_alg.clone(), p.signing_key.clone());
        let slot = (v.model.clone(), v.version.clone());
        if let Some(hit) = self.manifests.get(&slot, 0)
            && hit.registrant == v.registrant
            && hit.key == stored_key
            && hit.envelope == v.manifest
        {
            return Ok(hit.verified.clone());
        }
        let k = Self::stored_key(&p)?;
        let env = manifest::parse_envelope(v.manifest.as_bytes())?;
        let verified = manifest::verify(&env, &v.registrant, &k, &v.model, &v.version)?;
        self.manifests.put(
            &self.manifests_generation,
            0,
            slot,
            Arc::new(VerifiedEntry {
                registrant: v.registrant.clone(),
                key: stored_key,
                envelope: v.manifest.clone(),
                verified: verified.clone(),
            }),
        );
        Ok(verified)
    }

    fn stored_key(p: &PrincipalRow) -> Result<VerifyingKey, RegistryError> {
        let name = &p.name;
        let (Some(alg), Some(key)) = (&p.signing_alg, &p.signing_key) else {
            return Err(RegistryError::Signer(format!(
                "{name} has no registered signing key"
            )));
        };
        let alg = SigAlg::parse(alg)?;
        let bytes = B64
            .decode(key)
            .map_err(|_| RegistryError::Signer(format!("{name}'s stored key is not base64")))?;
        Ok(VerifyingKey::from_bytes(alg, &bytes)?)
    }

    /// Verifies a training record (`warden training record`) against its signer's
    /// registered key; returns the signer and the statement.
    pub async fn verify_training_record(
        &self,
        env: &manifest::Envelope,
    ) -> Result<(String, manifest::TrainingStatement), RegistryError> {
        let signer = manifest::claimed_signer(env)
            .ok_or_else(|| RegistryError::Signer("the record has no single signature".into()))?;
        let key = self.signer_key(&signer).await?;
        let st = manifest::verify_training(env, &signer, &key)?;
        Ok((signer, st))
    }

    pub(crate) async fn signer_key(&self, name: &str) -> Result<VerifyingKey, RegistryError> {
        let p = self
            .db
            .principal(name)
            .await?
            .ok_or_else(|| RegistryError::Signer(format!("unknown signer {name:?}")))?;
        Self::stored_key(&p)
    }

    // ---------------------------------------------------------------- registry

    /// Registers `path` (a file or a directory) as `model@version`, signed by the
    /// caller's key. `progress(done, total)` reports hashed bytes.
    pub async fn register(
        &self,
        caller: &Caller,
        reg: Registration<'_>,
        key: &PrincipalKey,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(VersionInfo, Receipt), RegistryError> {
        let Registration {
            model,
            version,
            path,
            provenance,
        } = reg;
        let decision = self.may_register(caller, model, version).await?;
        if key.principal != caller.principal {
            return Err(RegistryError::Signer(format!(
                "the key belongs to {}, not to {}",
                key.principal, caller.principal
            )));
        }
        let files = collect_files(path)?;
        let total: u64 = files.iter().map(|f| f.2).sum();
        let mut done_before = 0u64;
        let mut resources = Vec::with_capacity(files.len());
        for (name, file, size) in &files {
            let base = done_before;
            let blob = self
                .blobs
                .put_file(file, &|n| progress(base + n, total))
                .await?;
            done_before += size;
            resources.push(Resource {
                name: name.clone(),
                algorithm: "sha256".into(),
                digest: blob.digest,
                size: blob.size,
            });
        }
        if let Some(a) = &provenance.attestation {
            let root = manifest::root_digest(&resources);
            if a.root != root {
                return Err(RegistryError::invalid(
                    "provenance",
                    format!(
                        "the training record attests files with root {}, but these files have root {root}",
                        a.root
                    ),
                ));
            }
        }
        let st = manifest::statement(model, version, resources, provenance);
        let env = manifest::sign(&st, &caller.principal, &key.key)?;
        self.commit_registration(caller, model, version, &env, &decision)
            .await
    }

    /// Registers `model@version` from a manifest the registrant signed elsewhere (the
    /// HTTP API): every file it names must already be in the blob store with its
    /// digest and size.
    pub async fn register_signed(
        &self,
        caller: &Caller,
        model: &str,
        version: &str,
        envelope: &manifest::Envelope,
    ) -> Result<(VersionInfo, Receipt), RegistryError> {
        let decision = self.may_register(caller, model, version).await?;
        self.commit_registration(caller, model, version, envelope, &decision)
            .await
    }

    /// Stores one file for a later [`Self::register_signed`]: allowed when the caller may
    /// register versions of `model`; streamed into the blob store while hashing, kept
    /// only when its SHA-256 is `expected` and it is at most `max` bytes; recorded as a
    /// `registry.upload` entry.
    pub async fn upload<S, E>(
        &self,
        caller: &Caller,
        model: &str,
        expected: &str,
        max: u64,
        mut body: S,
    ) -> Result<(crate::blobs::StoredBlob, Receipt), RegistryError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt as _;
        check_name("model name", model)?;
        if expected.len() != 64
            || !expected
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(RegistryError::invalid(
                "digest",
                "give the SHA-256 as 64 lowercase hex digits",
            ));
        }
        let facts = ResourceFacts::Model {
            name: model.to_owned(),
        };
        let decision = self
            .authorize(caller, Action::Register, &facts, None)
            .await?;
        let mut w = self.blobs.writer().await?;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    w.abort().await;
                    return Err(RegistryError::invalid(
                        "upload",
                        format!("the body was cut short: {e}"),
                    ));
                }
            };
            if w.size().saturating_add(chunk.len() as u64) > max {
                w.abort().await;
                return Err(RegistryError::TooLarge { limit: max });
            }
            if let Err(e) = w.write(&chunk).await {
                w.abort().await;
                return Err(e);
            }
        }
        let blob = w.finish(Some(expected)).await?;
        let mut ev = Self::event(caller, Action::Register);
        ev.model = Some(model.to_owned());
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.digest = Some(format!("sha256:{}", blob.digest));
        ev.details = Some(json!({"op": "upload", "size": blob.size}));
        let receipt = self.audit("registry.upload", &ev).await?;
        Ok((blob, receipt))
    }

    /// The checks before a registration: names, the policy, and that the version is new.
    async fn may_register(
        &self,
        caller: &Caller,
        model: &str,
        version: &str,
    ) -> Result<Decision, RegistryError> {
        check_name("model name", model)?;
        check_name("version", version)?;
        if version == "production" || version == "latest" || version == "main" {
            return Err(RegistryError::invalid(
                "version",
                format!("{version:?} is a reserved alias"),
            ));
        }
        if looks_like_commit_id(version) {
            return Err(RegistryError::invalid(
                "version",
                format!("{version:?} looks like a commit id, which pins a version"),
            ));
        }
        let model_facts = ResourceFacts::Model {
            name: model.to_owned(),
        };
        let decision = self
            .authorize(caller, Action::Register, &model_facts, None)
            .await?;
        if self.db.version(model, version).await?.is_some() {
            return Err(RegistryError::Exists {
                what: "version",
                name: format!("{model}@{version}"),
            });
        }
        // A version named like an existing alias would take over that alias's callers.
        if self.db.alias(model, version).await?.is_some() {
            return Err(RegistryError::Exists {
                what: "alias",
                name: format!("{model}@{version}"),
            });
        }
        Ok(decision)
    }

    /// Verifies the signed manifest against the caller's registered key, checks that
    /// every file's blob is stored, records the registration and commits it.
    async fn commit_registration(
        &self,
        caller: &Caller,
        model: &str,
        version: &str,
        env: &manifest::Envelope,
        decision: &Decision,
    ) -> Result<(VersionInfo, Receipt), RegistryError> {
        let registered = self.signer_key(&caller.principal).await?;
        // The registry accepts only what verifies against the registered key: a key
        // file that is not the caller's registered key is rejected here.
        let verified = manifest::verify(env, &caller.principal, &registered, model, version)?;
        let mut total = 0u64;
        for r in verified.resources() {
            match self.blobs.size(&r.digest).await? {
                Some(n) if n == r.size => total = total.saturating_add(n),
                _ => {
                    return Err(RegistryError::invalid(
                        "manifest",
                        format!(
                            "file {} (sha256:{}, {} bytes) has not been uploaded",
                            r.name, r.digest, r.size
                        ),
                    ));
                }
            }
        }
        let envelope = serde_json::to_string(env)
            .map_err(|e| RegistryError::Manifest(format!("encoding: {e}")))?;
        let now = self.now_secs();
        let row = VersionRow {
            model: model.to_owned(),
            version: version.to_owned(),
            state: VersionState::Registered.as_str().to_owned(),
            registrant: caller.principal.clone(),
            root_digest: verified.root().to_owned(),
            manifest: envelope,
            created_at: now,
            updated_at: now,
            validated_by: None,
            validation: None,
            approved_by: None,
            revoked_reason: None,
        };
        let file_rows: Vec<FileRow> = verified
            .resources()
            .iter()
            .map(|r| FileRow {
                name: r.name.clone(),
                digest: r.digest.clone(),
                size: i64::try_from(r.size).unwrap_or(i64::MAX),
            })
            .collect();
        let mut tx = self.db.begin().await?;
        Db::ensure_model(&mut tx, model, &caller.principal, now).await?;
        Db::insert_version(&mut tx, &row, &file_rows).await?;
        Db::set_alias(&mut tx, model, "latest", Some(version)).await?;
        let mut ev =
            Self::version_event(caller, Action::Register, &row, "allow", decision.reason());
        ev.details = Some(json!({
            "files": file_rows.len(), "bytes": total,
            "signer": manifest::key_id(&caller.principal, &registered),
            "provenance": verified.provenance(),
        }));
        let receipt = self.audit("registry.register", &ev).await?;
        self.db.commit(tx).await?;
        let info = self.info(&row).await?;
        Ok((info, receipt))
    }

    /// Moves a version along its lifecycle: `validated` (with a validation record) or
    /// `production` (validated first, approved by someone other than the registrant).
    pub async fn promote(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
        target: VersionState,
        evidence: Option<serde_json::Value>,
    ) -> Result<Receipt, RegistryError> {
        let mut v = self
            .resolve(caller, Action::Deploy, model, selector)
            .await?;
        let from = VersionState::parse(&v.state).unwrap_or(VersionState::Revoked);
        let decision = self
            .authorize(
                caller,
                Action::Deploy,
                &Self::version_facts(&v),
                Some(target),
            )
            .await?;
        let hint = match (from, target) {
            (VersionState::Registered, VersionState::Validated)
            | (VersionState::Validated, VersionState::Production) => None,
            (VersionState::Registered, VersionState::Production) => {
                Some("validate it first (promote --to validated)")
            }
            (VersionState::Revoked, _) => Some("revocation is final"),
            _ => Some("allowed moves: registered -> validated -> production"),
        };
        if let Some(h) = hint {
            return Err(RegistryError::Transition {
                model: v.model,
                version: v.version,
                from: from.to_string(),
                to: target.to_string(),
                hint: Some(h),
            });
        }
        let now = self.now_secs();
        v.state = target.as_str().to_owned();
        v.updated_at = now;
        if target == VersionState::Validated {
            v.validated_by = Some(caller.principal.clone());
            v.validation =
                Some(json!({"by": caller.principal, "at": now, "evidence": evidence}).to_string());
        } else {
            v.approved_by = Some(caller.principal.clone());
        }
        let mut tx = self.db.begin().await?;
        Db::update_version(&mut tx, &v).await?;
        if target == VersionState::Production {
            Db::set_alias(&mut tx, &v.model, "production", Some(&v.version)).await?;
        }
        let mut ev = Self::version_event(caller, Action::Deploy, &v, "allow", decision.reason());
        ev.details =
            Some(json!({"from": from.as_str(), "to": target.as_str(), "evidence": evidence}));
        let r = self.audit("registry.promote", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// Retires a version (no longer served, except to admins).
    pub async fn retire(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
    ) -> Result<Receipt, RegistryError> {
        self.end_state(caller, model, selector, VersionState::Retired, None)
            .await
    }

    /// Revokes a version: terminal, from any state, with a reason.
    pub async fn revoke(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
        reason: &str,
    ) -> Result<Receipt, RegistryError> {
        if reason.trim().is_empty() || reason.len() > 1024 {
            return Err(RegistryError::invalid(
                "reason",
                "give a revocation reason of 1 to 1024 bytes",
            ));
        }
        self.end_state(caller, model, selector, VersionState::Revoked, Some(reason))
            .await
    }

    async fn end_state(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
        target: VersionState,
        reason: Option<&str>,
    ) -> Result<Receipt, RegistryError> {
        let action = if target == VersionState::Revoked {
            Action::Revoke
        } else {
            Action::Retire
        };
        let mut v = self.resolve(caller, action, model, selector).await?;
        let from = VersionState::parse(&v.state).unwrap_or(VersionState::Revoked);
        let decision = self
            .authorize(caller, action, &Self::version_facts(&v), None)
            .await?;
        if from == VersionState::Revoked || (from == target) {
            return Err(RegistryError::Transition {
                model: v.model,
                version: v.version,
                from: from.to_string(),
                to: target.to_string(),
                hint: Some(if from == VersionState::Revoked {
                    "revocation is final"
                } else {
                    "it already is"
                }),
            });
        }
        v.state = target.as_str().to_owned();
        v.updated_at = self.now_secs();
        if let Some(r) = reason {
            v.revoked_reason = Some(r.to_owned());
        }
        let mut tx = self.db.begin().await?;
        self.store_end_state(&mut tx, &v).await?;
        let mut ev = Self::version_event(
            caller,
            action,
            &v,
            "allow",
            reason.map_or_else(|| decision.reason(), str::to_owned),
        );
        ev.details = Some(
            json!({"from": from.as_str(), "to": target.as_str(), "policy": decision.reason()}),
        );
        let kind = if target == VersionState::Revoked {
            "registry.revoke"
        } else {
            "registry.retire"
        };
        let r = self.audit(kind, &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// Writes a version that was retired or revoked, and drops the operator aliases
    /// that pointed at it (`latest` stays: it names the newest registration).
    pub(crate) async fn store_end_state(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        v: &VersionRow,
    ) -> Result<(), RegistryError> {
        Db::update_version(tx, v).await?;
        for (alias, version) in self.db.aliases(&v.model).await? {
            if version == v.version && alias != "latest" {
                Db::set_alias(tx, &v.model, &alias, None).await?;
            }
        }
        Ok(())
    }

    /// Points an operator alias at a version (`production` and `latest` are managed by
    /// the lifecycle and cannot be set by hand).
    pub async fn set_alias(
        &self,
        caller: &Caller,
        model: &str,
        alias: &str,
        version: &str,
    ) -> Result<Receipt, RegistryError> {
        check_name("alias", alias)?;
        if looks_like_commit_id(alias) {
            return Err(RegistryError::invalid(
                "alias",
                format!("{alias:?} looks like a commit id, which pins a version"),
            ));
        }
        if alias == "production" || alias == "latest" {
            return Err(RegistryError::invalid(
                "alias",
                format!("{alias:?} is managed by the lifecycle"),
            ));
        }
        let v = self
            .resolve(
                caller,
                Action::Write,
                model,
                &Selector::Version(version.to_owned()),
            )
            .await?;
        if v.version != version {
            return Err(RegistryError::invalid(
                "version",
                "an alias must name a version",
            ));
        }
        let d = self
            .authorize(caller, Action::Write, &Self::version_facts(&v), None)
            .await?;
        if self.db.version(model, alias).await?.is_some() {
            return Err(RegistryError::invalid(
                "alias",
                format!("{alias:?} is already a version of {model}"),
            ));
        }
        let mut tx = self.db.begin().await?;
        Db::set_alias(&mut tx, model, alias, Some(version)).await?;
        let mut ev = Self::version_event(caller, Action::Write, &v, "allow", d.reason());
        ev.details = Some(json!({"op": "alias.set", "alias": alias}));
        let r = self.audit("registry.alias", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// The versions of every model the caller may read (one `registry.list` entry).
    pub async fn list(&self, caller: &Caller) -> Result<Vec<VersionInfo>, RegistryError> {
        let mut out = Vec::new();
        let mut hidden = 0u64;
        for m in self.db.models().await? {
            let facts = ResourceFacts::Model { name: m.clone() };
            if !self
                .decide(caller, Action::Read, &facts, None)
                .await?
                .allowed
            {
                hidden += 1;
                continue;
            }
            for v in self.db.versions(&m).await? {
                out.push(self.info(&v).await?);
            }
        }
        let mut ev = Self::event(caller, Action::Read);
        ev.decision = Some(if hidden == 0 { "allow" } else { "partial" }.into());
        ev.details = Some(json!({"op": "list", "versions": out.len(), "models_hidden": hidden}));
        self.audit("registry.list", &ev).await?;
        Ok(out)
    }

    /// One version in full, manifest provenance included.
    pub async fn show(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
    ) -> Result<VersionInfo, RegistryError> {
        let v = self.resolve(caller, Action::Read, model, selector).await?;
        let d = self
            .authorize(caller, Action::Read, &Self::version_facts(&v), None)
            .await?;
        let ev = Self::version_event(caller, Action::Read, &v, "allow", d.reason());
        self.audit("registry.read", &ev).await?;
        self.info(&v).await
    }

    async fn info(&self, v: &VersionRow) -> Result<VersionInfo, RegistryError> {
        let aliases = self
            .db
            .aliases(&v.model)
            .await?
            .into_iter()
            .filter(|(_, ver)| *ver == v.version)
            .map(|(a, _)| a)
            .collect();
        let files = self
            .db
            .files(&v.model, &v.version)
            .await?
            .into_iter()
            .map(|f| FileInfo {
                name: f.name,
                digest: f.digest,
                size: f.size,
            })
            .collect();
        let provenance = manifest::parse_envelope(v.manifest.as_bytes())
            .ok()
            .and_then(|e| B64.decode(e.payload).ok())
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
            .and_then(|s| s.pointer("/predicate/provenance").cloned());
        Ok(VersionInfo {
            model: v.model.clone(),
            version: v.version.clone(),
            state: v.state.clone(),
            registrant: v.registrant.clone(),
            root_digest: v.root_digest.clone(),
            created_at: v.created_at,
            validated_by: v.validated_by.clone(),
            approved_by: v.approved_by.clone(),
            revoked_reason: v.revoked_reason.clone(),
            aliases,
            files,
            provenance,
            commit: commit_id(&v.manifest),
        })
    }
}

/// The commit id of a version (see [`VersionInfo::commit`]).
#[must_use]
pub fn commit_id(manifest: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, manifest.as_bytes());
    let mut hex = warden_core::hex::encode(d.as_ref());
    hex.truncate(40);
    hex
}

/// Whether `s` has the form of a commit id (40 lowercase hex digits).
#[must_use]
pub fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a version or alias name could be taken for a commit id: 40 hex digits in
/// either case. Such names are refused, so a pinned commit id always means one version.
#[must_use]
pub fn looks_like_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The files under `path`: `(name relative to path, full path, size)`, sorted by name.
/// A single file is named by its file name. Symbolic links are refused.
/// Per-file SHA-256 of `path` (a file or a directory) in the manifest's form, sorted by
/// name: what `register` would sign, without storing anything. `progress(done, total)`
/// reports hashed bytes.
pub fn fingerprint(
    path: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Vec<Resource>, RegistryError> {
    use std::io::Read as _;
    let files = collect_files(path)?;
    let total: u64 = files.iter().map(|f| f.2).sum();
    let mut done = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(files.len());
    for (name, file, _) in &files {
        let mut f = std::fs::File::open(file).map_err(RegistryError::io("open", file))?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(RegistryError::io("read", file))?;
            if n == 0 {
                break;
            }
            ctx.update(buf.get(..n).unwrap_or_default());
            size += n as u64;
            done += n as u64;
            progress(done, total);
        }
        out.push(Resource {
            name: name.clone(),
            algorithm: "sha256".into(),
            digest: warden_core::hex::encode(ctx.finish().as_ref()),
            size,
        });
    }
    Ok(out)
}

fn collect_files(path: &Path) -> Result<Vec<(String, PathBuf, u64)>, RegistryError> {
    let meta = std::fs::symlink_metadata(path).map_err(RegistryError::io("stat", path))?;
    let mut out = Vec::new();
    if meta.is_file() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| RegistryError::invalid("path", format!("{}", path.display())))?;
        manifest::check_file_name(name)?;
        out.push((name.to_owned(), path.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        walk(path, "", &mut out)?;
    } else {
        return Err(RegistryError::invalid(
            "path",
            format!("{} is not a regular file or directory", path.display()),
        ));
    }
    if out.is_empty() {
        return Err(RegistryError::invalid(
            "path",
            format!("{} holds no files", path.display()),
        ));
    }
    if out.len() > manifest::MAX_FILES {
        return Err(RegistryError::invalid(
            "path",
            format!("more than {} files", manifest::MAX_FILES),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf, u64)>,
) -> Result<(), RegistryError> {
    for e in std::fs::read_dir(dir).map_err(RegistryError::io("list", dir))? {
        let e = e.map_err(RegistryError::io("list", dir))?;
        let p = e.path();
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| RegistryError::invalid("file name", format!("{n:?} is not UTF-8")))?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ft = e.file_type().map_err(RegistryError::io("stat", &p))?;
        if ft.is_symlink() {
            return Err(RegistryError::invalid(
                "path",
                format!("{} is a symbolic link; links are not followed", p.display()),
            ));
        } else if ft.is_dir() {
            walk(&p, &rel, out)?;
        } else if ft.is_file() {
            manifest::check_file_name(&rel)?;
            let len = e.metadata().map_err(RegistryError::io("stat", &p))?.len();
            out.push((rel, p, len));
        }
    }
    Ok(())
}
