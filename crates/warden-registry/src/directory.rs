//! The principal directory: principals, roles, grants, suspension. Every change is a
//! `registry.principal` entry, committed to the database only once the entry is durable.

use crate::db::{Db, GrantRow, PrincipalRow};
use crate::error::RegistryError;
use crate::manager::{Caller, SecureModelManager};
use crate::manifest;
use crate::names::{check_name, check_os_user, check_principal_name};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use warden_core::crypto::VerifyingKey;
use warden_core::entry::Event;
use warden_policy::{Action, ResourceFacts};
use warden_store::ledger::Receipt;

impl SecureModelManager {
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
        // A grant names a model that exists (or every model): a typo must not pass as a
        // grant that never applies.
        if model != "*" && !self.db.model_exists(model).await? {
            return Err(RegistryError::UnknownModel {
                model: model.to_owned(),
            });
        }
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

    /// Binds an operating-system user to principal `name`: the local writer then lets
    /// that user's processes act as `name` (and as no one else). One principal per
    /// operating-system user; a new binding replaces the old. Giving a person's
    /// processes a principal's rights is a grant, so it needs what giving a role needs.
    pub async fn bind_os_user(
        &self,
        caller: &Caller,
        os_user: &str,
        name: &str,
    ) -> Result<Receipt, RegistryError> {
        check_os_user(os_user)?;
        let decision = self
            .authorize(caller, Action::Write, &ResourceFacts::Directory, None)
            .await?;
        if let Err(r) = caller.may_give_roles() {
            let details = json!({"op": "principal.bind", "principal": name, "os_user": os_user});
            return Err(self.refuse_issue(caller, r, details).await);
        }
        self.require_principal(name).await?;
        let previous = self.db.os_user_principal(os_user).await?;
        let mut tx = self.db.begin().await?;
        Db::bind_os_user(&mut tx, os_user, name, &caller.principal, self.now_secs()).await?;
        let ev = Self::directory_event(
            caller,
            &decision,
            json!({"op": "principal.bind", "principal": name, "os_user": os_user, "previous": previous}),
        );
        let r = self.audit("registry.principal", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// The principal `os_user` is bound to, and whether it is active.
    pub async fn os_user_principal(
        &self,
        os_user: &str,
    ) -> Result<Option<(String, bool)>, RegistryError> {
        let Some(name) = self.db.os_user_principal(os_user).await? else {
            return Ok(None);
        };
        let active = self.db.principal(&name).await?.is_some_and(|p| p.active);
        Ok(Some((name, active)))
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

    pub(crate) async fn require_principal(
        &self,
        name: &str,
    ) -> Result<PrincipalRow, RegistryError> {
        self.db
            .principal(name)
            .await?
            .ok_or_else(|| RegistryError::UnknownPrincipal {
                name: name.to_owned(),
            })
    }
}
