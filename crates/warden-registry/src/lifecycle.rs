//! The lifecycle of a version: promote, retire, revoke, aliases, and the listings that
//! show where each version stands.

use crate::db::{Db, VersionRow};
use crate::error::RegistryError;
use crate::manager::{Caller, FileInfo, SecureModelManager, Selector, VersionInfo};
use crate::manifest;
use crate::names::{check_name, commit_id, looks_like_commit_id};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use warden_policy::{Action, ResourceFacts, VersionState};
use warden_store::ledger::Receipt;

impl SecureModelManager {
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

    pub(crate) async fn end_state(
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
        tx: &mut crate::db::Tx,
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

    pub(crate) async fn info(&self, v: &VersionRow) -> Result<VersionInfo, RegistryError> {
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
