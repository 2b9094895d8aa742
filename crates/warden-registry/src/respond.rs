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

use crate::db::Db;
use crate::manager::SecureModelManager;
use serde_json::json;
use std::sync::{Arc, Mutex, Weak};
use warden_core::entry::Event;
use warden_detect::{Category, DetectionConfig, Detector, Incident, Severity, Signal};

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

/// The manager's detection state.
#[derive(Debug)]
pub(crate) struct Hook {
    detector: Mutex<Detector>,
    clock: Arc<dyn warden_store::ledger::Clock>,
    tx: tokio::sync::mpsc::UnboundedSender<Incident>,
}

/// Kinds the responder writes; never fed back to the detectors.
const OWN_KINDS: [&str; 2] = ["playbook.suspend", "playbook.revoke"];

impl Hook {
    /// Feeds one durable entry to the detectors.
    pub(crate) fn observe(&self, kind: &str, ev: &Event, index: u64) {
        let now_micros = self.clock.now().as_micros();
        let details = ev.details.as_ref();
        let category = match kind {
            "model.access" => Category::Access,
            "registry.read" | "model.decision" => Category::Read,
            "model.denied" => Category::Denied,
            "auth.failure" => Category::AuthFailure,
            "incident"
                if details
                    .and_then(|d| d.get("type"))
                    .is_some_and(|t| t == "integrity") =>
            {
                Category::IntegrityFailure
            }
            _ => Category::Other,
        };
        if category == Category::Other || OWN_KINDS.contains(&kind) {
            return;
        }
        let file = details
            .and_then(|d| d.get("file"))
            .and_then(|f| f.as_str())
            .or_else(|| {
                details
                    .and_then(|d| d.pointer("/evidence/file"))
                    .and_then(|f| f.as_str())
            });
        let s = Signal {
            index,
            time_micros: now_micros,
            category,
            principal: ev.user.as_deref(),
            // The credentials a request used are its principal's.
            token: ev.user.as_deref(),
            ip: ev.ip.as_deref().and_then(|i| i.parse().ok()),
            model: ev.model.as_deref(),
            version: ev.version.as_deref(),
            file,
            reason: ev.reason.as_deref(),
        };
        let found = self
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(&s);
        for inc in found {
            metrics::counter!("warden_incidents_total", "severity" => inc.severity.as_str(), "detector" => inc.detector.clone()).increment(1);
            let _ = self.tx.send(inc);
        }
    }
}

impl SecureModelManager {
    /// Turns on inline detection and the responder task (call once, from a Tokio
    /// runtime). Returns the task; it ends when the manager is dropped.
    pub fn enable_detection(
        self: &Arc<Self>,
        cfg: &DetectionConfig,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, crate::RegistryError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let bad = |e: String| crate::RegistryError::invalid("[detection]", e);
        let suspend_at = severity(&cfg.suspend_at).map_err(bad)?;
        let revoke_at = severity(&cfg.revoke_at).map_err(bad)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Incident>();
        let hook = Hook {
            detector: Mutex::new(Detector::new(cfg.thresholds.clone())),
            clock: Arc::clone(&self.clock),
            tx,
        };
        if self.detection.set(Arc::new(hook)).is_err() {
            return Err(bad("detection is already enabled".into()));
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        Ok(Some(tokio::spawn(async move {
            while let Some(inc) = rx.recv().await {
                let Some(m) = weak.upgrade() else { return };
                if let Err(e) = m.respond(&inc, suspend_at, revoke_at).await {
                    log(&format!("responding to a {} incident: {e}", inc.detector));
                }
            }
        })))
    }

    /// Records `inc` and runs the playbook.
    async fn respond(
        &self,
        inc: &Incident,
        suspend_at: Option<Severity>,
        revoke_at: Option<Severity>,
    ) -> Result<(), crate::RegistryError> {
        let at = |t: Option<Severity>| t.is_some_and(|t| inc.severity >= t);
        let mut actions = Vec::new();
        if at(suspend_at) && inc.token.is_some() && inc.principal.is_some() {
            actions.push("suspend");
        }
        if at(revoke_at) && !inc.versions.is_empty() {
            actions.push("revoke");
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
            })),
            ..Event::default()
        };
        let r = self.audit("incident", &ev).await?;
        if actions.contains(&"suspend")
            && let Some(p) = &inc.principal
            && self.db.principal(p).await?.is_some_and(|row| row.active)
        {
            let mut tx = self.db.begin().await?;
            Db::set_active(&mut tx, p, false).await?;
            let ev = Event {
                user: Some("system".into()),
                action: Some("suspend".into()),
                decision: Some("allow".into()),
                reason: Some(format!("playbook:{}", inc.detector)),
                details: Some(
                    json!({"principal": p, "incident": r.index, "severity": inc.severity}),
                ),
                ..Event::default()
            };
            self.db.commit(tx).await?;
            self.audit("playbook.suspend", &ev).await?;
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
                self.audit("playbook.revoke", &ev).await?;
            }
        }
        Ok(())
    }
}

#[expect(
    clippy::print_stderr,
    reason = "the responder reports its own failures on stderr"
)]
fn log(msg: &str) {
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
            return Err(crate::RegistryError::invalid(
                "incident",
                format!("entry {index} is not an incident"),
            ));
        }
        let ev = Event {
            user: Some(caller.principal.clone()),
            ip: Some(caller.ip.to_string()),
            action: Some("ack".into()),
            decision: Some("allow".into()),
            details: Some(json!({"incident": index, "note": note})),
            ..Event::default()
        };
        self.audit("incident.ack", &ev).await
    }
}
