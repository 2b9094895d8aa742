//! What a caller may hand out. Tokens and grants are credentials: none may exceed the
//! credential that issued it, in scopes, in lifetime or in principal.
//!
//! - A caller holding a scoped credential (an API token, a JWT, a client certificate)
//!   issues only scopes it holds itself; a grant's actions must each fall under one of its
//!   scopes (`load` under `model:load`, `write`, `deploy`, `retire` and `revoke` under
//!   `model:admin`, …).
//! - What it issues expires no later than its own credential.
//! - Tokens for another principal, and roles (which never expire), need the explicit scope
//!   [`PRINCIPAL_ADMIN`]; the entry records that the token was issued for someone else.
//! - Revoking another principal's token, and suspending or re-enabling a principal, act
//!   on its credentials too: a scoped credential needs [`PRINCIPAL_ADMIN`] for them. No
//!   principal suspends itself (an administrator would lock itself out; another one can
//!   suspend it). Revoking one's own token (signing out) needs nothing more.
//! - Local callers (the CLI, whose user holds the data directory) are unscoped and bound
//!   only by the policy.
//!
//! A refusal is a `model.denied` entry naming the rule (`issue:<rule>`) before the
//! error is returned.

use crate::error::RegistryError;
use crate::manager::{Caller, SecureModelManager};
use warden_policy::Action;

/// The scope that lets a scoped credential act on other principals' credentials: issue
/// them tokens and give roles.
pub const PRINCIPAL_ADMIN: &str = "principal:admin";

/// The token scope an action falls under.
#[must_use]
pub fn scope_of(action: Action) -> &'static str {
    match action {
        Action::Read => "model:read",
        Action::Load => "model:load",
        Action::Register => "model:register",
        Action::Generate => "model:generate",
        Action::Audit => "audit:read",
        // Write, deploy, retire, revoke, and any action added later: the admin scope.
        _ => "model:admin",
    }
}

/// Why an issue is refused: the rule's name (recorded as `issue:<rule>`) and the
/// message the caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub message: String,
}

fn refusal(rule: &'static str, message: String) -> Refusal {
    Refusal { rule, message }
}

impl Caller {
    /// Whether this caller may issue a token for `principal` with `scopes` until
    /// `expires_at`.
    pub fn may_issue_token(
        &self,
        principal: &str,
        scopes: &[String],
        expires_at: i64,
    ) -> Result<(), Refusal> {
        self.within_scopes(scopes.iter().map(String::as_str))?;
        self.within_lifetime(expires_at)?;
        if principal != self.principal {
            self.holds_principal_admin("issue a token for another principal")?;
        }
        Ok(())
    }

    /// Whether this caller may grant `actions` until `expires_at`.
    pub fn may_grant(&self, actions: &[Action], expires_at: i64) -> Result<(), Refusal> {
        self.within_scopes(actions.iter().map(|a| scope_of(*a)))?;
        self.within_lifetime(expires_at)
    }

    /// Whether this caller may give roles, which never expire.
    pub fn may_give_roles(&self) -> Result<(), Refusal> {
        self.holds_principal_admin("give a role")
    }

    /// Whether this caller may suspend (`active` false) or re-enable `name`.
    pub fn may_set_active(&self, name: &str, active: bool) -> Result<(), Refusal> {
        if !active && name == self.principal {
            return Err(refusal(
                "self",
                format!("{name} cannot suspend itself; another administrator can"),
            ));
        }
        self.holds_principal_admin(if active {
            "re-enable a principal"
        } else {
            "suspend a principal"
        })
    }

    /// Whether this caller may revoke a token of `owner`: its own always (signing out),
    /// another principal's with [`PRINCIPAL_ADMIN`].
    pub fn may_revoke_token_of(&self, owner: &str) -> Result<(), Refusal> {
        if owner == self.principal {
            Ok(())
        } else {
            self.holds_principal_admin("revoke another principal's token")
        }
    }

    fn within_scopes<'a>(&self, wanted: impl Iterator<Item = &'a str>) -> Result<(), Refusal> {
        let Some(held) = &self.scopes else {
            return Ok(());
        };
        let missing: Vec<&str> = wanted.filter(|w| !held.iter().any(|h| h == w)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(refusal(
                "scope",
                format!(
                    "the credential used holds no {} scope, so it cannot hand it out",
                    missing.join(", ")
                ),
            ))
        }
    }

    fn within_lifetime(&self, expires_at: i64) -> Result<(), Refusal> {
        match self.expires_at {
            Some(own) if expires_at > own => Err(refusal(
                "lifetime",
                format!("the credential used expires at {own}; nothing it issues may outlive it"),
            )),
            _ => Ok(()),
        }
    }

    fn holds_principal_admin(&self, what: &str) -> Result<(), Refusal> {
        match &self.scopes {
            Some(held) if !held.iter().any(|h| h == PRINCIPAL_ADMIN) => Err(refusal(
                "principal",
                format!("to {what} the credential needs the {PRINCIPAL_ADMIN} scope"),
            )),
            _ => Ok(()),
        }
    }
}

impl SecureModelManager {
    /// Records an issue refused by `r` as a `model.denied` entry on the directory and
    /// returns the error for the caller.
    pub(crate) async fn refuse_issue(
        &self,
        caller: &Caller,
        r: Refusal,
        details: serde_json::Value,
    ) -> RegistryError {
        let mut ev = Self::event(caller, Action::Write);
        ev.decision = Some("deny".into());
        ev.reason = Some(format!("issue:{}", r.rule));
        ev.details = Some(details);
        if let Err(e) = self.audit("model.denied", &ev).await {
            return e;
        }
        RegistryError::Denied {
            principal: caller.principal.clone(),
            action: "write".into(),
            resource: "the principal directory".into(),
            reason: r.message,
            revoked: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(scopes: &[&str], expires_at: Option<i64>) -> Caller {
        Caller {
            scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
            expires_at,
            ..Caller::local("ops")
        }
    }

    #[test]
    fn issued_tokens_stay_within_the_issuers_scopes_lifetime_and_principal() {
        let c = scoped(&["model:admin"], Some(1_000));
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(
            c.may_issue_token("ops", &s(&["model:admin"]), 1_000)
                .is_ok()
        );
        assert_eq!(
            c.may_issue_token("ops", &s(&["audit:read"]), 900)
                .unwrap_err()
                .rule,
            "scope"
        );
        assert_eq!(
            c.may_issue_token("ops", &s(&["model:admin"]), 1_001)
                .unwrap_err()
                .rule,
            "lifetime"
        );
        assert_eq!(
            c.may_issue_token("eve", &s(&["model:admin"]), 900)
                .unwrap_err()
                .rule,
            "principal"
        );
        let root = scoped(&["model:admin", PRINCIPAL_ADMIN], Some(1_000));
        assert!(
            root.may_issue_token("eve", &s(&["model:admin"]), 900)
                .is_ok()
        );
        // The CLI's local caller is bound by the policy alone.
        assert!(
            Caller::local("admin")
                .may_issue_token("eve", &s(&["audit:read"]), i64::MAX)
                .is_ok()
        );
    }

    #[test]
    fn a_principal_cannot_suspend_itself_and_suspension_needs_principal_admin() {
        let ops = scoped(&["model:admin"], Some(1_000));
        assert_eq!(ops.may_set_active("ops", false).unwrap_err().rule, "self");
        assert_eq!(
            ops.may_set_active("eve", false).unwrap_err().rule,
            "principal"
        );
        assert_eq!(
            ops.may_set_active("eve", true).unwrap_err().rule,
            "principal"
        );
        let root = scoped(&["model:admin", PRINCIPAL_ADMIN], Some(1_000));
        assert!(root.may_set_active("eve", false).is_ok());
        assert!(root.may_set_active("eve", true).is_ok());
        assert_eq!(root.may_set_active("ops", false).unwrap_err().rule, "self");
        // The local caller is unscoped but still cannot lock itself out.
        assert_eq!(
            Caller::local("admin")
                .may_set_active("admin", false)
                .unwrap_err()
                .rule,
            "self"
        );
        assert!(Caller::local("admin").may_set_active("eve", false).is_ok());
        assert!(ops.may_revoke_token_of("ops").is_ok(), "signing out");
        assert_eq!(
            ops.may_revoke_token_of("eve").unwrap_err().rule,
            "principal"
        );
        assert!(root.may_revoke_token_of("eve").is_ok());
    }

    #[test]
    fn grants_stay_within_the_issuers_scopes_and_lifetime() {
        let c = scoped(&["model:admin", "model:load"], Some(1_000));
        assert!(c.may_grant(&[Action::Load, Action::Revoke], 1_000).is_ok());
        assert_eq!(c.may_grant(&[Action::Audit], 10).unwrap_err().rule, "scope");
        assert_eq!(
            c.may_grant(&[Action::Load], 1_001).unwrap_err().rule,
            "lifetime"
        );
        assert_eq!(c.may_give_roles().unwrap_err().rule, "principal");
    }
}
