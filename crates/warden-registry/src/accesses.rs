//! Accesses recorded on a remote caller's word (`POST /v1/audit/accesses`, the Python
//! SDK's `log_access` against a server): the caller states who accessed what with
//! which result, as a process logging through the local writer does. The entries name
//! the authenticated principal that sent them (`via`), so a claimed user is always
//! attributable to a credential.

use crate::error::RegistryError;
use crate::manager::{Caller, SecureModelManager};
use warden_core::entry::Event;
use warden_policy::Action;
use warden_store::ledger::Receipt;

/// The token scope that lets a scoped credential record accesses.
pub const AUDIT_WRITE: &str = "audit:write";

/// Most accesses in one request.
pub const MAX_BATCH: usize = 10_000;

impl SecureModelManager {
    /// Records `events` (kinds and events from `warden_core::access::event`) for
    /// `caller`, all submitted before any is awaited; returns their receipts in order.
    /// A scoped credential needs `audit:write`; a refusal is itself recorded.
    pub async fn record_accesses(
        &self,
        caller: &Caller,
        events: Vec<(&'static str, Event)>,
    ) -> Result<Vec<Receipt>, RegistryError> {
        if caller
            .scopes
            .as_ref()
            .is_some_and(|s| !s.iter().any(|x| x == AUDIT_WRITE))
        {
            let mut ev = Self::event(caller, Action::Write);
            ev.decision = Some("deny".into());
            ev.reason = Some(format!("scope:{AUDIT_WRITE}"));
            ev.details = Some(serde_json::json!({"what": "record accesses"}));
            self.audit("model.denied", &ev).await?;
            return Err(RegistryError::Denied {
                principal: caller.principal.clone(),
                action: "record accesses in".into(),
                resource: "the audit ledger".into(),
                reason: format!("the credential lacks the {AUDIT_WRITE} scope"),
                revoked: false,
            });
        }
        if events.len() > MAX_BATCH {
            return Err(RegistryError::invalid(
                "events",
                format!("{} accesses; at most {MAX_BATCH} per request", events.len()),
            ));
        }
        let via = format!(
            "principal={}{}",
            caller.principal,
            caller
                .credential
                .as_deref()
                .map(|c| format!(" {c}"))
                .unwrap_or_default()
        );
        let mut checked = Vec::with_capacity(events.len());
        for (kind, mut ev) in events {
            ev.via = Some(via.clone());
            if ev.ip.is_none() {
                ev.ip = Some(caller.ip.to_string());
            }
            if ev.request_id.is_none() {
                ev.request_id.clone_from(&caller.request_id);
            }
            warden_store::ledger::check_submission(kind, &ev).map_err(RegistryError::Audit)?;
            checked.push((kind, ev));
        }
        let mut tickets = Vec::with_capacity(checked.len());
        for (kind, ev) in &checked {
            tickets.push(
                self.journal()
                    .submit(kind, ev)
                    .map_err(RegistryError::Audit)?,
            );
        }
        let mut out = Vec::with_capacity(tickets.len());
        for t in tickets {
            out.push(t.await.map_err(RegistryError::Audit)?);
        }
        Ok(out)
    }
}
