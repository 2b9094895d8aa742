//! `SecureModelManager`: the one path through which models are registered, promoted,
//! revoked and loaded. Every decision and every mutation is a ledger entry; a mutation is
//! committed to the database only after its entry is durable, so nothing changes
//! unaudited (fail closed).

use crate::blobs::BlobStore;
use crate::db::{Db, VersionRow};
use crate::error::RegistryError;
use crate::manifest::{self, Provenance};
use crate::names::{commit_id, is_commit_id};
use serde_json::json;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::entry::Event;
use warden_policy::{
    AccessRequest, Action, ContextFacts, Decision, Engine, PrincipalFacts, ResourceFacts,
    VersionState,
};
use warden_store::journal::Journal;
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
    /// The registry's metadata: a SQLite file, or PostgreSQL.
    pub database: crate::db::Database,
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
    pub(crate) ledger: Arc<dyn Journal>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The last verified manifest of each version, with the inputs it was verified from.
    pub(crate) manifests: crate::cache::Cached<(String, String), Arc<VerifiedEntry>>,
    pub(crate) manifests_generation: crate::cache::Generation,
    /// Inline threat detection, once enabled.
    pub(crate) detection: std::sync::OnceLock<Arc<crate::detection::Hook>>,
    /// Failed authentications past the rate limits, counted per window.
    pub(crate) throttled: crate::throttle::Throttled,
    /// Principals named by open HIGH incidents (refused by the gateway).
    pub(crate) suspicion: crate::suspicion::Suspicion,
}

/// A verified manifest and exactly what it was verified from.
#[derive(Debug)]
pub(crate) struct VerifiedEntry {
    pub(crate) registrant: String,
    pub(crate) key: (Option<String>, Option<String>),
    pub(crate) envelope: String,
    pub(crate) verified: manifest::VerifiedManifest,
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

impl SecureModelManager {
    /// Opens the registry beside an open ledger (in this process, or a running writer's),
    /// records `system.start`, and a `policy.change` entry when the policy differs from
    /// the one last recorded.
    pub async fn open(
        opts: ManagerOptions,
        ledger: Arc<dyn Journal>,
    ) -> Result<Self, RegistryError> {
        let db = opts.database.open().await?;
        let m = Self {
            db,
            blobs: opts.blobs,
            engine: opts.engine,
            ledger,
            clock: opts.clock,
            manifests: crate::cache::Cached::default(),
            manifests_generation: crate::cache::Generation::default(),
            detection: std::sync::OnceLock::new(),
            throttled: crate::throttle::Throttled::default(),
            suspicion: crate::suspicion::Suspicion::default(),
        };
        // A command that appends through the data directory's writer is not a start of
        // the service: the writer recorded its own.
        if m.ledger.local().is_some() {
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
        }
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
    pub(crate) async fn record_change(
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
        // What the detectors learnt is kept for the next process that detects.
        if let Some(h) = self.detection.get() {
            let h = Arc::clone(h);
            let _ = tokio::task::spawn_blocking(move || h.handover(false)).await;
        }
        let r = if self.ledger.local().is_some() {
            self.audit(
                "system.stop",
                &Event {
                    user: Some("system".into()),
                    action: Some("stop".into()),
                    ..Event::default()
                },
            )
            .await
            .map(|_| ())
        } else {
            Ok(())
        };
        self.db.close().await;
        // The last reference closes the ledger (drains it and stops the sequencer), or
        // ends the session with the writer.
        drop(self.ledger);
        r
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

    /// The audit ledger when this process owns it (retention runs through it).
    #[must_use]
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.local()
    }

    /// Where this manager's entries go.
    #[must_use]
    pub fn journal(&self) -> &Arc<dyn Journal> {
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

    /// The registry clock's time.
    pub fn now(&self) -> warden_core::time::Timestamp {
        self.clock.now()
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
            hook.observe_own(kind, event, receipt.index);
        }
        r
    }

    /// Queues one entry in the ledger's order without waiting for it to be durable;
    /// the returned future resolves once it is (and feeds the detectors then).
    pub(crate) fn audit_queued(
        &self,
        kind: &'static str,
        event: Event,
    ) -> Result<
        impl std::future::Future<Output = Result<Receipt, RegistryError>> + Send + 'static,
        RegistryError,
    > {
        let t = std::time::Instant::now();
        let ticket = self
            .ledger
            .submit(kind, &event)
            .map_err(RegistryError::Audit)?;
        let hook = self.detection.get().cloned();
        Ok(async move {
            let r = ticket.await.map_err(RegistryError::Audit);
            metrics::histogram!("warden_audit_append_duration_seconds", "kind" => kind)
                .record(t.elapsed().as_secs_f64());
            let r = r?;
            if let Some(h) = hook {
                h.observe_own(kind, &event, r.index);
            }
            Ok(r)
        })
    }

    /// Allows an auditor's read of the ledger (`audit` on the ledger), recording it as an
    /// `audit.read` entry with `what` was read; returns the entries file to read.
    pub async fn audit_read(
        &self,
        caller: &Caller,
        what: serde_json::Value,
    ) -> Result<PathBuf, RegistryError> {
        self.auditor_entry(caller, "audit.read", what).await?;
        Ok(self.ledger.path().to_path_buf())
    }

    /// Allows an auditor's action (`audit` on the ledger) and records it as a `kind`
    /// entry with `details`.
    pub(crate) async fn auditor_entry(
        &self,
        caller: &Caller,
        kind: &'static str,
        details: serde_json::Value,
    ) -> Result<Receipt, RegistryError> {
        let decision = self
            .authorize(caller, Action::Audit, &ResourceFacts::Ledger, None)
            .await?;
        let mut ev = Self::event(caller, Action::Audit);
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(details);
        self.audit(kind, &ev).await
    }

    /// The entry of an allowed change to the principal directory.
    pub(crate) fn directory_event(
        caller: &Caller,
        decision: &Decision,
        details: serde_json::Value,
    ) -> Event {
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

    pub(crate) fn resource_names(
        resource: &ResourceFacts,
    ) -> (Option<String>, Option<String>, String) {
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

    /// Whether `resource` is a revoked version (a refusal of it is its state's).
    fn is_revoked(resource: &ResourceFacts) -> bool {
        matches!(
            resource,
            ResourceFacts::Version {
                state: VersionState::Revoked,
                ..
            }
        )
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
            revoked: Self::is_revoked(resource),
        })
    }

    /// Records a decision on its own: `model.decision` for an allow, `model.denied` for
    /// a deny.
    pub(crate) async fn record_decision(
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
                revoked: Self::is_revoked(&facts),
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
    pub(crate) async fn find(
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
}
