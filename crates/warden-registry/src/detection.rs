//! The detection state the manager holds: every durable entry is fed to the detectors
//! of `warden-detect`; incidents go to the responder task (`respond.rs`).
//!
//! What the detectors learnt is saved (`warden_store::baselines`) every few seconds
//! while this process detects, and when it stops; the next process that detects for
//! the ledger resumes from it ([`Hook::handover`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use warden_core::entry::Event;
use warden_detect::{Category, Config, Detector, Incident, Signal};
use warden_store::baselines::Baselines;
use warden_store::journal::Journal;

/// How often the detectors' state is saved while it changes.
pub(crate) const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The manager's detection state.
#[derive(Debug)]
pub(crate) struct Hook {
    pub(crate) detector: Mutex<Detector>,
    pub(crate) clock: Arc<dyn warden_store::ledger::Clock>,
    pub(crate) tx: tokio::sync::mpsc::UnboundedSender<Incident>,
    /// Where this process appends: on a cluster it says whether this node detects.
    pub(crate) journal: Arc<dyn Journal>,
    /// Thresholds, for a detector resumed from a saved state.
    pub(crate) cfg: Config,
    /// Where the learnt state is kept between processes (none: it starts over).
    pub(crate) baselines: Option<Arc<dyn Baselines>>,
    /// Whether this process detects now (between `handover(true)` and `(false)`).
    pub(crate) active: AtomicBool,
    /// Signals observed, and how many of them the last save held.
    pub(crate) observed: AtomicU64,
    pub(crate) saved: AtomicU64,
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

    /// This process starts (`true`) or stops detecting: resumes the saved state, or
    /// saves it. Blocks on the store.
    pub(crate) fn handover(&self, detecting: bool) {
        if detecting {
            if !self.active.swap(true, Ordering::SeqCst) {
                self.resume();
            }
        } else if self.active.swap(false, Ordering::SeqCst) {
            self.save();
        }
    }

    /// Replaces the detectors' state with the one saved last, if there is one it can
    /// read; otherwise keeps what it has.
    fn resume(&self) {
        let Some(b) = &self.baselines else { return };
        let saved = match b.load() {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                metrics::counter!("warden_detector_state_errors_total", "op" => "load")
                    .increment(1);
                crate::respond::log(&format!(
                    "the detectors' saved state cannot be read, they start over: {e}"
                ));
                return;
            }
        };
        let resumed = serde_json::from_slice::<warden_detect::State>(&saved)
            .map_err(|e| e.to_string())
            .and_then(|st| Detector::resume(self.cfg.clone(), st));
        match resumed {
            Ok(d) => {
                let through = d.through();
                *self
                    .detector
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = d;
                self.saved
                    .store(self.observed.load(Ordering::SeqCst), Ordering::SeqCst);
                crate::respond::log(&format!(
                    "detection resumes from its saved state{}",
                    through.map_or_else(String::new, |i| format!(" (through entry {i})"))
                ));
            }
            Err(e) => {
                metrics::counter!("warden_detector_state_errors_total", "op" => "load")
                    .increment(1);
                crate::respond::log(&format!(
                    "the detectors' saved state is not one this build reads, they start over: {e}"
                ));
            }
        }
    }

    /// Saves the detectors' state if it changed since the last save (blocking). The
    /// encoding runs under the detectors' lock: milliseconds for thousands of
    /// principals, every few seconds.
    pub(crate) fn save(&self) {
        let Some(b) = &self.baselines else { return };
        let observed = self.observed.load(Ordering::SeqCst);
        if observed == self.saved.load(Ordering::SeqCst) {
            return;
        }
        let encoded = serde_json::to_vec(
            &self
                .detector
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .saved(),
        );
        let result = encoded
            .map_err(|e| e.to_string())
            .and_then(|bytes| b.save(&bytes).map_err(|e| e.to_string()));
        match result {
            Ok(true) => self.saved.store(observed, Ordering::SeqCst),
            // No longer the detecting process: the next one saves.
            Ok(false) => {}
            Err(e) => {
                metrics::counter!("warden_detector_state_errors_total", "op" => "save")
                    .increment(1);
                crate::respond::log(&format!("saving the detectors' state: {e}"));
            }
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
            "inference.request" => Category::Inference,
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
            shape: details
                .and_then(|d| d.get("prompt_shape"))
                .and_then(serde_json::Value::as_str)
                .and_then(|h| u64::from_str_radix(h, 16).ok()),
            bytes: details
                .and_then(|d| d.get("response_bytes"))
                .and_then(serde_json::Value::as_u64),
        };
        let found = self
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(&s);
        self.observed.fetch_add(1, Ordering::Relaxed);
        for inc in found {
            metrics::counter!("warden_incidents_total", "severity" => inc.severity.as_str(), "detector" => inc.detector.clone()).increment(1);
            let _ = self.tx.send(inc);
        }
    }
}
