//! Inline threat detection and automated response.
//!
//! Every entry the manager records is also fed, right after it is durable, to the
//! detectors of `warden-detect` (under a short lock; they take microseconds). An
//! incident goes to a responder task, which records it as an `incident` entry (evidence:
//! the triggering entries' indices) and runs the playbook: at `suspend_at` severity and
//! above, the principal whose credentials were used is suspended (every token it holds
//! is then refused); at `revoke_at`, the affected model versions are revoked. Each
//! action is its own ledger entry (`playbook.suspend`, `playbook.revoke`) naming the
//! incident. The incident entry, durable first, already names the actions it will
//! take; each action's entry is written once the change is committed, so a reader who
//! sees it can rely on the change being in force. The responder's own entries are not
//! fed back to the detectors.
//!
//! Alerts go to the configured [`AlertSink`]s (webhooks) from incidents of at least
//! their severity, each retried with exponential back-off in its own task so a slow
//! receiver never holds up the next incident's playbook. Each alert's outcome
//! (delivered, or given up after the last attempt) is a `playbook.alert` entry. An
//! alert still being retried when the service stops is not resent on restart: the
//! incident itself is in the ledger, and reaches SIEMs as a Detection Finding.

use crate::db::Db;
use crate::db::on_pool;
use crate::detection::Hook;
use crate::manager::SecureModelManager;
use serde_json::json;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use warden_core::entry::Event;
use warden_detect::{DetectionConfig, Detector, Incident, Severity};

/// Where alerts go (a webhook; implemented by the service over HTTP).
pub trait AlertSink: Send + Sync + std::fmt::Debug {
    /// Where it delivers, for the ledger (no secrets).
    fn name(&self) -> String;
    /// Delivers one JSON alert at Unix time `now_secs` (blocking: called on a blocking
    /// thread). The error says why it was not accepted.
    fn deliver(&self, body: &[u8], now_secs: u64) -> Result<(), String>;
}

/// An alert sink with its severity and retry schedule.
#[derive(Clone, Debug)]
pub struct AlertTarget {
    pub sink: Arc<dyn AlertSink>,
    /// Least severity sent here (`LOW` ... `CRITICAL`).
    pub min_severity: String,
    /// Deliveries tried before giving up.
    pub attempts: u32,
    /// Wait before the first retry; doubled after each failure.
    pub backoff: Duration,
}

/// Longest wait between two deliveries of one alert.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Severity thresholds of one detector's playbook (`None`: never).
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    suspend: Option<Severity>,
    revoke: Option<Severity>,
    alert: Option<Severity>,
}

#[derive(Debug)]
struct Playbooks {
    default: Thresholds,
    by_detector: std::collections::HashMap<String, Thresholds>,
    alerts: Vec<(AlertTarget, Severity)>,
    /// Tokens the playbook suspended, by principal: a second one suspends the principal.
    suspended_tokens: Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
}

impl Playbooks {
    fn new(cfg: &DetectionConfig, alerts: Vec<AlertTarget>) -> Result<Self, String> {
        let default = Thresholds {
            suspend: severity(&cfg.suspend_at).map_err(|e| format!("suspend_at: {e}"))?,
            revoke: severity(&cfg.revoke_at).map_err(|e| format!("revoke_at: {e}"))?,
            alert: severity(&cfg.alert_at).map_err(|e| format!("alert_at: {e}"))?,
        };
        let mut by_detector = std::collections::HashMap::new();
        for (name, o) in &cfg.playbooks {
            if !warden_detect::DETECTORS.contains(&name.as_str()) {
                return Err(format!(
                    "playbooks.{name}: no such detector (one of {})",
                    warden_detect::DETECTORS.join(", ")
                ));
            }
            let get = |v: &Option<String>, d: Option<Severity>, what: &str| match v {
                Some(v) => severity(v).map_err(|e| format!("playbooks.{name}.{what}: {e}")),
                None => Ok(d),
            };
            by_detector.insert(
                name.clone(),
                Thresholds {
                    suspend: get(&o.suspend_at, default.suspend, "suspend_at")?,
                    revoke: get(&o.revoke_at, default.revoke, "revoke_at")?,
                    alert: get(&o.alert_at, default.alert, "alert_at")?,
                },
            );
        }
        let mut targets = Vec::new();
        for a in alerts {
            let min = severity(&a.min_severity)
                .map_err(|e| format!("webhook {}: min_severity: {e}", a.sink.name()))?
                .ok_or_else(|| {
                    format!("webhook {}: min_severity cannot be never", a.sink.name())
                })?;
            if a.attempts == 0 {
                return Err(format!(
                    "webhook {}: attempts must be at least 1",
                    a.sink.name()
                ));
            }
            targets.push((a, min));
        }
        Ok(Self {
            default,
            by_detector,
            alerts: targets,
            suspended_tokens: Mutex::default(),
        })
    }

    fn for_detector(&self, name: &str) -> Thresholds {
        self.by_detector.get(name).copied().unwrap_or(self.default)
    }
}

fn severity(s: &str) -> Result<Option<Severity>, String> {
    Ok(Some(match s.to_ascii_uppercase().as_str() {
        "LOW" => Severity::Low,
        "MEDIUM" => Severity::Medium,
        "HIGH" => Severity::High,
        "CRITICAL" => Severity::Critical,
        "NEVER" => return Ok(None),
        other => return Err(format!("unknown severity {other:?}")),
    }))
}

impl SecureModelManager {
    /// Turns on inline detection and the responder task (call once, from a Tokio
    /// runtime), alerting `alerts`. Returns the task; it ends when the manager is
    /// dropped.
    pub fn enable_detection(
        self: &Arc<Self>,
        cfg: &DetectionConfig,
        alerts: Vec<AlertTarget>,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, crate::RegistryError> {
        self.enable_detection_with(cfg, alerts, None)
    }

    /// [`Self::enable_detection`], the detectors' learnt state kept in `baselines`:
    /// resumed from it whenever this process starts detecting (now, for a process that
    /// owns its ledger; on a cluster, when this node takes the sequencer lease), saved
    /// to it every few seconds while it changes, when this node stops sequencing and
    /// when the manager closes.
    pub fn enable_detection_with(
        self: &Arc<Self>,
        cfg: &DetectionConfig,
        alerts: Vec<AlertTarget>,
        baselines: Option<Arc<dyn warden_store::baselines::Baselines>>,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, crate::RegistryError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let bad = |e: String| crate::RegistryError::invalid("[detection]", e);
        let playbooks = Arc::new(Playbooks::new(cfg, alerts).map_err(bad)?);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Incident>();
        let hook = Hook {
            detector: Mutex::new(Detector::new(cfg.thresholds.clone())),
            clock: Arc::clone(&self.clock),
            tx,
            journal: Arc::clone(&self.ledger),
            cfg: cfg.thresholds.clone(),
            baselines,
            active: std::sync::atomic::AtomicBool::new(false),
            observed: std::sync::atomic::AtomicU64::new(0),
            saved: std::sync::atomic::AtomicU64::new(0),
        };
        let hook = Arc::new(hook);
        // Resumes now if this process detects already (blocking briefly, once), else
        // when it starts to.
        let told = Arc::downgrade(&hook);
        self.ledger.on_handover(Arc::new(move |detecting| {
            if let Some(h) = told.upgrade() {
                h.handover(detecting);
            }
        }));
        if self.detection.set(Arc::clone(&hook)).is_err() {
            return Err(bad("detection is already enabled".into()));
        }
        if hook.baselines.is_some() {
            let saver = Arc::downgrade(&hook);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(crate::detection::SAVE_EVERY).await;
                    let Some(h) = saver.upgrade() else { return };
                    if h.active.load(std::sync::atomic::Ordering::SeqCst) {
                        let _ = tokio::task::spawn_blocking(move || h.save()).await;
                    }
                }
            });
        }
        // On a cluster, the entries other nodes append reach these detectors while
        // this node sequences them.
        let seen = Arc::downgrade(&hook);
        self.ledger.observe_others(Arc::new(move |kind, ev, index| {
            if let Some(h) = seen.upgrade() {
                h.observe(kind, ev, index);
            }
        }));
        // Alerts a stop or crash cut short go out again.
        let resend = Arc::clone(self);
        let targets = playbooks.alerts.clone();
        tokio::spawn(async move {
            if let Err(e) = resend.resend_pending(&targets).await {
                log(&format!("resending pending alerts: {e}"));
            }
        });
        let weak: Weak<Self> = Arc::downgrade(self);
        Ok(Some(tokio::spawn(async move {
            while let Some(inc) = rx.recv().await {
                let Some(m) = weak.upgrade() else { return };
                if let Err(e) = m.respond(&inc, &playbooks).await {
                    log(&format!("responding to a {} incident: {e}", inc.detector));
                }
            }
        })))
    }

    /// What feeds this manager's detectors the entries other processes append through
    /// this one's ledger (local clients through the writer socket). It looks the
    /// detectors up at each entry, so detection may be enabled after it is handed out.
    pub fn detector_feed(self: &Arc<Self>) -> warden_store::journal::Observer {
        let weak = Arc::downgrade(self);
        Arc::new(move |kind, ev, index| {
            let Some(m) = weak.upgrade() else { return };
            // An incident acknowledged by another process (the CLI) frees its principal.
            if kind == "incident.ack"
                && let Some(i) = ev.details.as_ref().and_then(|d| d.get("incident"))
                && let Some(i) = i.as_u64()
            {
                m.suspicion.clear(i);
            }
            if let Some(h) = m.detection.get() {
                h.observe(kind, ev, index);
            }
        })
    }

    /// Records `inc` and runs the playbook.
    async fn respond(
        self: &Arc<Self>,
        inc: &Incident,
        playbooks: &Playbooks,
    ) -> Result<(), crate::RegistryError> {
        let t = playbooks.for_detector(&inc.detector);
        let at = |t: Option<Severity>| t.is_some_and(|t| inc.severity >= t);
        let mut actions = Vec::new();
        if at(t.suspend) && inc.token.is_some() && inc.principal.is_some() {
            actions.push("suspend");
        }
        if at(t.revoke) && !inc.versions.is_empty() {
            actions.push("revoke");
        }
        let alerts: Vec<&AlertTarget> = if at(t.alert) {
            playbooks
                .alerts
                .iter()
                .filter(|(_, min)| inc.severity >= *min)
                .map(|(a, _)| a)
                .collect()
        } else {
            Vec::new()
        };
        if !alerts.is_empty() {
            actions.push("alert");
        }
        let ev = Event {
            user: inc.principal.clone(),
            ip: inc.ip.clone(),
            model: inc.versions.first().map(|(m, _)| m.clone()),
            version: inc.versions.first().map(|(_, v)| v.clone()),
            action: Some("detect".into()),
            decision: Some("alert".into()),
            reason: Some(inc.detector.clone()),
            details: Some(json!({
                "type": "detection", "severity": inc.severity, "detector": inc.detector,
                "summary": inc.summary, "evidence": inc.evidence, "versions": inc.versions,
                "playbook": actions,
                "alerts": alerts.iter().map(|a| a.sink.name()).collect::<Vec<_>>(),
            })),
            ..Event::default()
        };
        let r = self.audit("incident", &ev).await?;
        if inc.severity >= Severity::High
            && let Some(p) = &inc.principal
        {
            self.suspicion.flag(p, r.index, &inc.detector);
        }
        // The operator watching the service sees what matters without a SIEM.
        if inc.severity >= Severity::High {
            log(&format!(
                "incident {}: {} {}: {}{}",
                r.index,
                inc.severity.as_str(),
                inc.detector,
                inc.summary,
                if actions.is_empty() {
                    String::new()
                } else {
                    format!(" (playbook: {})", actions.join(", "))
                }
            ));
        }
        // Alerts go out at once, beside the playbook's other actions.
        let mut now = Vec::new();
        self.clock.now().write_to(&mut now);
        let now = String::from_utf8(now).unwrap_or_default();
        let body = serde_json::to_vec(&json!({
            "type": "warden.incident",
            "incident": r.index,
            "time": now,
            "severity": inc.severity, "detector": inc.detector, "summary": inc.summary,
            "principal": inc.principal, "ip": inc.ip, "versions": inc.versions,
            "evidence": inc.evidence, "playbook": actions,
        }))
        .unwrap_or_default();
        for a in alerts {
            // Kept until the outcome is recorded, so a stop does not lose it.
            self.outbox_put(r.index, &a.sink.name(), &body).await?;
            tokio::spawn(Arc::clone(self).alert(a.clone(), r.index, body.clone()));
        }
        if actions.contains(&"suspend")
            && let (Some(p), Some(cred)) = (&inc.principal, &inc.token)
        {
            self.suspend(p, cred, inc, r.index, playbooks).await?;
        }
        if actions.contains(&"revoke") {
            for (model, version) in &inc.versions {
                let Some(mut v) = self.db.version(model, version).await? else {
                    continue;
                };
                if v.state == "revoked" {
                    continue;
                }
                let from = std::mem::replace(&mut v.state, "revoked".into());
                v.updated_at = self.now_secs();
                v.revoked_reason = Some(format!("incident {}: {}", r.index, inc.summary));
                let mut tx = self.db.begin().await?;
                self.store_end_state(&mut tx, &v).await?;
                let ev = Event {
                    user: Some("system".into()),
                    model: Some(model.clone()),
                    version: Some(version.clone()),
                    action: Some("revoke".into()),
                    decision: Some("allow".into()),
                    reason: Some(format!("playbook:{}", inc.detector)),
                    details: Some(json!({"from": from, "to": "revoked", "incident": r.index})),
                    ..Event::default()
                };
                self.db.commit(tx).await?;
                let e = self.audit("playbook.revoke", &ev).await?;
                log(&format!(
                    "{model}@{version} revoked by the playbook (incident {}; entry {})",
                    r.index, e.index
                ));
            }
        }
        Ok(())
    }
}

impl SecureModelManager {
    /// The playbook's suspension. An attack carried by one API token suspends that
    /// token; the principal is suspended when the attack used its own credentials (a
    /// JWT, a client certificate, a local command) or a second of its tokens.
    async fn suspend(
        &self,
        principal: &str,
        credential: &str,
        inc: &Incident,
        incident: u64,
        playbooks: &Playbooks,
    ) -> Result<(), crate::RegistryError> {
        let reason = Some(format!("playbook:{}", inc.detector));
        let mut whole_principal = true;
        if let Some(id) = credential.strip_prefix("tok:") {
            let n = on_pool!(self.db.pool(), e => sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked = $3")
                .bind(true)
                .bind(id)
                .bind(false)
                .execute(e)
                .await.map(|r| r.rows_affected()))?;
            self.db.invalidate().await?;
            if n > 0 {
                let ev = Event {
                    user: Some("system".into()),
                    action: Some("suspend".into()),
                    decision: Some("allow".into()),
                    reason: reason.clone(),
                    details: Some(json!({"principal": principal, "token": id,
                        "incident": incident, "severity": inc.severity})),
                    ..Event::default()
                };
                let s = self.audit("playbook.suspend", &ev).await?;
                log(&format!(
                    "token {id} of {principal} suspended by the playbook (incident {incident}; entry {})",
                    s.index
                ));
            }
            let mut seen = playbooks
                .suspended_tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let tokens = seen.entry(principal.to_owned()).or_default();
            tokens.insert(id.to_owned());
            whole_principal = tokens.len() >= 2;
        }
        if whole_principal
            && self
                .db
                .principal(principal)
                .await?
                .is_some_and(|row| row.active)
        {
            let mut tx = self.db.begin().await?;
            Db::set_active(&mut tx, principal, false).await?;
            let ev = Event {
                user: Some("system".into()),
                action: Some("suspend".into()),
                decision: Some("allow".into()),
                reason,
                details: Some(json!({"principal": principal, "credential": credential,
                    "incident": incident, "severity": inc.severity})),
                ..Event::default()
            };
            self.db.commit(tx).await?;
            let s = self.audit("playbook.suspend", &ev).await?;
            log(&format!(
                "principal {principal} suspended by the playbook (incident {incident}; entry {})",
                s.index
            ));
        }
        Ok(())
    }

    /// Sends again every alert whose outcome was never recorded. One whose sink is no
    /// longer configured is recorded as not delivered.
    async fn resend_pending(
        self: &Arc<Self>,
        targets: &[(AlertTarget, Severity)],
    ) -> Result<(), crate::RegistryError> {
        for p in self.pending_alerts().await? {
            match targets.iter().find(|(t, _)| t.sink.name() == p.sink) {
                Some((t, _)) => {
                    log(&format!(
                        "alert for incident {} to {}: pending since before the restart; sending again",
                        p.incident, p.sink
                    ));
                    tokio::spawn(Arc::clone(self).alert(t.clone(), p.incident, p.body));
                }
                None => {
                    let ev = Event {
                        user: Some("system".into()),
                        action: Some("alert".into()),
                        decision: Some("error".into()),
                        reason: Some("the sink is no longer configured".into()),
                        details: Some(json!({
                            "incident": p.incident, "sink": p.sink, "delivered": false,
                            "attempts": 0, "error": "the sink is no longer configured",
                        })),
                        ..Event::default()
                    };
                    self.audit("playbook.alert", &ev).await?;
                    self.outbox_done(p.incident, &p.sink).await?;
                }
            }
        }
        Ok(())
    }

    /// Delivers one alert with retries, then records the outcome as `playbook.alert`.
    async fn alert(self: Arc<Self>, target: AlertTarget, incident: u64, body: Vec<u8>) {
        let body = Arc::new(body);
        let mut wait = target.backoff;
        let mut attempts = 0u32;
        let mut error = None;
        while attempts < target.attempts {
            if attempts > 0 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
            attempts += 1;
            let (sink, b, now) = (Arc::clone(&target.sink), Arc::clone(&body), self.now_secs());
            let now = u64::try_from(now).unwrap_or_default();
            match tokio::task::spawn_blocking(move || sink.deliver(&b, now)).await {
                Ok(Ok(())) => {
                    error = None;
                    break;
                }
                Ok(Err(e)) => error = Some(e),
                Err(e) => error = Some(e.to_string()),
            }
            metrics::counter!("warden_alert_failures_total").increment(1);
        }
        let delivered = error.is_none();
        if let Some(e) = &error {
            log(&format!(
                "alert for incident {incident} to {}: gave up after {attempts} attempts: {e}",
                target.sink.name()
            ));
        }
        let ev = Event {
            user: Some("system".into()),
            action: Some("alert".into()),
            decision: Some(if delivered { "allow" } else { "error" }.into()),
            reason: error.clone(),
            details: Some(json!({
                "incident": incident, "sink": target.sink.name(), "delivered": delivered,
                "attempts": attempts, "error": error,
            })),
            ..Event::default()
        };
        match self.audit("playbook.alert", &ev).await {
            Ok(_) => {
                if let Err(e) = self.outbox_done(incident, &target.sink.name()).await {
                    log(&format!("clearing the alert for incident {incident}: {e}"));
                }
            }
            // Still pending: sent again when detection next starts.
            Err(e) => log(&format!("recording the alert for incident {incident}: {e}")),
        }
    }
}

#[expect(
    clippy::print_stderr,
    reason = "the responder reports its own failures on stderr"
)]
pub(crate) fn log(msg: &str) {
    eprintln!("warden: {msg}");
}

impl SecureModelManager {
    /// Every incident (needs `audit` on the ledger; the read is an `audit.read` entry).
    pub async fn incidents(
        &self,
        caller: &crate::Caller,
        auditor: Option<Arc<warden_core::crypto::RecipientSecretKey>>,
    ) -> Result<Vec<warden_store::audit::IncidentView>, crate::RegistryError> {
        let log = self
            .audit_read(caller, json!({"op": "incident.list"}))
            .await?;
        tokio::task::spawn_blocking(move || {
            warden_store::audit::incidents(&log, auditor.as_deref())
        })
        .await
        .map_err(|e| crate::RegistryError::invalid("incident list", e.to_string()))?
        .map_err(crate::RegistryError::Store)
    }

    /// Acknowledges incident `index` with a note: an `incident.ack` entry (needs
    /// `audit` on the ledger).
    pub async fn ack_incident(
        &self,
        caller: &crate::Caller,
        index: u64,
        note: &str,
    ) -> Result<warden_store::ledger::Receipt, crate::RegistryError> {
        if note.len() > 4096 {
            return Err(crate::RegistryError::invalid("note", "at most 4096 bytes"));
        }
        let log = self
            .audit_read(caller, json!({"op": "incident.ack", "incident": index}))
            .await?;
        let found = tokio::task::spawn_blocking(move || {
            warden_store::audit::read_entries(
                &log,
                None,
                &warden_store::audit::EntryFilter {
                    from: index,
                    to: Some(index),
                    limit: 1,
                    ..Default::default()
                },
            )
        })
        .await
        .map_err(|e| crate::RegistryError::invalid("incident", e.to_string()))?
        .map_err(crate::RegistryError::Store)?;
        if found.0.first().is_none_or(|e| e.kind != "incident") {
            return Err(crate::RegistryError::UnknownIncident { index });
        }
        let ev = Event {
            user: Some(caller.principal.clone()),
            ip: Some(caller.ip.to_string()),
            action: Some("ack".into()),
            decision: Some("allow".into()),
            details: Some(json!({"incident": index, "note": note})),
            ..Event::default()
        };
        let r = self.audit("incident.ack", &ev).await?;
        self.suspicion.clear(index);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn playbooks_apply_per_detector_overrides_and_refuse_unknown_detectors() {
        let cfg: DetectionConfig = toml::from_str(
            r#"
            suspend_at = "HIGH"
            [playbooks.new_network]
            suspend_at = "never"
            alert_at = "MEDIUM"
            "#,
        )
        .unwrap();
        let p = Playbooks::new(&cfg, Vec::new()).unwrap();
        let nn = p.for_detector("new_network");
        assert!(nn.suspend.is_none());
        assert_eq!(nn.alert, Some(Severity::Medium));
        assert_eq!(nn.revoke, Some(Severity::Critical), "not overridden");
        assert_eq!(p.for_detector("brute_force").suspend, Some(Severity::High));

        let bad: DetectionConfig =
            toml::from_str("[playbooks.new_netwrok]\nsuspend_at = \"never\"").unwrap();
        let e = Playbooks::new(&bad, Vec::new()).unwrap_err();
        assert!(
            e.contains("new_netwrok") && e.contains("new_network"),
            "{e}"
        );
        let bad: DetectionConfig = toml::from_str("alert_at = \"SEVERE\"").unwrap();
        assert!(
            Playbooks::new(&bad, Vec::new())
                .unwrap_err()
                .contains("alert_at")
        );
    }
}
