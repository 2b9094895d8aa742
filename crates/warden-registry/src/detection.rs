//! The detection state the manager holds: every durable entry is fed to the detectors
//! of `warden-detect`; incidents go to the responder task (`respond.rs`).

use std::sync::{Arc, Mutex};
use warden_core::entry::Event;
use warden_detect::{Category, Detector, Incident, Signal};
use warden_store::journal::Journal;

/// The manager's detection state.
#[derive(Debug)]
pub(crate) struct Hook {
    pub(crate) detector: Mutex<Detector>,
    pub(crate) clock: Arc<dyn warden_store::ledger::Clock>,
    pub(crate) tx: tokio::sync::mpsc::UnboundedSender<Incident>,
    /// Where this process appends: on a cluster it says whether this node detects.
    pub(crate) journal: Arc<dyn Journal>,
}

/// Kinds the responder writes; never fed back to the detectors.
const OWN_KINDS: [&str; 3] = ["playbook.suspend", "playbook.revoke", "playbook.alert"];

impl Hook {
    /// Feeds an entry this process appended, unless another process detects for it
    /// (on a cluster, the node that sequences sees every node's entries).
    pub(crate) fn observe_own(&self, kind: &str, ev: &Event, index: u64) {
        if self.journal.detects_own() {
            self.observe(kind, ev, index);
        }
    }

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
        // The file: a download names it in `files` (one), an integrity incident in its
        // evidence, other entries in `file`.
        let file = details
            .and_then(|d| d.get("file"))
            .or_else(|| details.and_then(|d| d.pointer("/files/0/name")))
            .or_else(|| details.and_then(|d| d.pointer("/evidence/file")))
            .and_then(|f| f.as_str());
        let credential = ev
            .credential
            .clone()
            .or_else(|| ev.user.as_ref().map(|u| format!("own:{u}")));
        let s = Signal {
            index,
            time_micros: now_micros,
            category,
            principal: ev.user.as_deref(),
            // The credential the request used; a local request used its principal's own.
            token: credential.as_deref(),
            ip: ev.ip.as_deref().and_then(|i| i.parse().ok()),
            model: ev.model.as_deref(),
            version: ev.version.as_deref(),
            file,
            reason: ev.reason.as_deref(),
            // A summary of rate-limited failures stands for all of them.
            count: details
                .and_then(|d| d.get("throttled"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1),
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
