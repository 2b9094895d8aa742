//! Opaque API tokens: 256 random bits shown once, stored only as their SHA-256, scoped,
//! always expiring, revocable, with a last-used time.
//!
//! A presented token is looked up by its hash. The comparison the database makes is not
//! constant-time, but it compares SHA-256 digests of 256-bit secrets, so timing reveals
//! nothing an attacker can use to build a valid token.

use crate::db::on_pool;
use crate::db::on_tx;
use crate::error::RegistryError;
use crate::manager::{Caller, SecureModelManager};
use crate::names::check_principal_name;
use aws_lc_rs::digest;
use serde_json::json;
use std::net::IpAddr;
use warden_core::entry::Event;
use warden_core::hex;
use warden_policy::{Action, ResourceFacts};
use warden_store::ledger::Receipt;

/// The scopes a token may carry.
pub const SCOPES: [&str; 8] = [
    "model:read",
    "model:load",
    "model:generate",
    "model:register",
    "model:admin",
    "audit:read",
    crate::accesses::AUDIT_WRITE,
    crate::issue::PRINCIPAL_ADMIN,
];
/// Longest token lifetime: one year.
pub const MAX_TTL_SECS: i64 = 366 * 86_400;
/// Token text prefix.
pub const PREFIX: &str = "wdn_";
/// Longest text accepted as a token.
pub const MAX_TOKEN_LEN: usize = 128;
/// `last_used` is written at most this often per token (seconds).
const LAST_USED_EVERY: i64 = 60;

pub use crate::db::TokenInfo;

/// Why a presented token was not accepted. Callers answer every case alike (401) and
/// log the detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    #[error("no token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unknown token")]
    Unknown,
    #[error("expired token")]
    Expired,
    #[error("revoked token")]
    Revoked,
    #[error("token signature invalid or signed by an unknown key")]
    BadSignature,
    #[error("token from an untrusted issuer")]
    WrongIssuer,
    #[error("token for another audience")]
    WrongAudience,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token names no registered, active principal")]
    UnknownPrincipal,
    #[error("token kind not accepted by this server")]
    NotAccepted,
}

/// A refused authentication: why, and what to record of it (a token id, a JWT's issuer
/// and subject; never a secret).
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub why: AuthFailure,
    pub details: Option<serde_json::Value>,
}

/// A presented token, checked.
enum Checked {
    Valid(TokenInfo),
    /// Why, and the token's id when it was a real (revoked or expired) token.
    Failed(AuthFailure, Option<String>),
}

fn hash(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// A `tokens` row, in [`COLS`] order.
type TokenRow = (String, String, String, i64, i64, String, bool, Option<i64>);

fn info(r: TokenRow) -> TokenInfo {
    let (id, principal, scopes, expires_at, created_at, created_by, revoked, last_used) = r;
    TokenInfo {
        id,
        principal,
        scopes: scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        expires_at,
        created_at,
        created_by,
        revoked,
        last_used,
    }
}

const COLS: &str = "id, principal, scopes, expires_at, created_at, created_by, revoked, last_used";

impl SecureModelManager {
    /// Creates a token for `principal` with `scopes`, valid for `ttl_secs`. Returns the
    /// secret (shown once) and what is stored.
    pub async fn create_token(
        &self,
        caller: &Caller,
        principal: &str,
        scopes: &[String],
        ttl_secs: i64,
    ) -> Result<(String, TokenInfo, Receipt), RegistryError> {
        check_principal_name(principal)?;
        if scopes.is_empty() {
            return Err(RegistryError::invalid("scopes", "give at least one scope"));
        }
        if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(RegistryError::invalid(
                "scope",
                format!("{bad:?} (known: {})", SCOPES.join(", ")),
            ));
        }
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(RegistryError::invalid(
                "expiry",
                format!("a token lives 1 second to {} days", MAX_TTL_SECS / 86_400),
            ));
        }
        let decision = self
            .authorize(caller, Action::Write, &ResourceFacts::Directory, None)
            .await?;
        if self.db.principal(principal).await?.is_none() {
            return Err(RegistryError::UnknownPrincipal {
                name: principal.to_owned(),
            });
        }
        let now = self.now_secs();
        let expires_at = now.saturating_add(ttl_secs);
        if let Err(r) = caller.may_issue_token(principal, scopes, expires_at) {
            let details = json!({"op": "token.create", "principal": principal,
                "scopes": scopes, "expires_at": expires_at});
            return Err(self.refuse_issue(caller, r, details).await);
        }
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| RegistryError::invalid("entropy", "the system random source failed"))?;
        let token = format!("{PREFIX}{}", hex::encode(&secret));
        let h = hash(&token);
        let id = h.get(..16).unwrap_or_default().to_owned();
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let t = TokenInfo {
            id,
            principal: principal.to_owned(),
            scopes,
            expires_at,
            created_at: now,
            created_by: caller.principal.clone(),
            revoked: false,
            last_used: None,
        };
        let mut tx = self.db.begin().await?;
        on_tx!(&mut tx, e => sqlx::query(
            "INSERT INTO tokens (id, hash, principal, scopes, expires_at, created_at, created_by, revoked)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.id)
        .bind(&h)
        .bind(&t.principal)
        .bind(t.scopes.join(" "))
        .bind(t.expires_at)
        .bind(t.created_at)
        .bind(&t.created_by)
        .bind(false)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        let mut ev = Self::event(caller, Action::Write);
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(
            json!({"op": "token.create", "token": t.id, "principal": principal,
            "scopes": t.scopes, "expires_at": t.expires_at,
            "for_other_principal": principal != caller.principal}),
        );
        let r = self.audit("registry.token", &ev).await?;
        self.db.commit(tx).await?;
        Ok((token, t, r))
    }

    /// Tokens, optionally of one principal (never their secrets).
    pub async fn tokens(
        &self,
        caller: &Caller,
        principal: Option<&str>,
    ) -> Result<Vec<TokenInfo>, RegistryError> {
        let decision = self
            .authorize(caller, Action::Read, &ResourceFacts::Directory, None)
            .await?;
        let rows = self.token_rows(principal).await?;
        let mut ev = Self::event(caller, Action::Read);
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(json!({"op": "token.list", "principal": principal}));
        self.audit("registry.read", &ev).await?;
        Ok(rows)
    }

    /// Tokens as stored, optionally of one principal (no check, no entry).
    pub(crate) async fn token_rows(
        &self,
        principal: Option<&str>,
    ) -> Result<Vec<TokenInfo>, RegistryError> {
        let rows = match principal {
            Some(p) => on_pool!(self.db.pool(), e => sqlx::query_as::<_, TokenRow>(&format!(
                    "SELECT {COLS} FROM tokens WHERE principal = $1 ORDER BY created_at, id"
                ))
                .bind(p)
                .fetch_all(e)
                .await)?,
            None => on_pool!(self.db.pool(), e => sqlx::query_as::<_, TokenRow>(&format!(
                    "SELECT {COLS} FROM tokens ORDER BY created_at, id"
                ))
                .fetch_all(e)
                .await)?,
        };
        Ok(rows.into_iter().map(info).collect())
    }

    /// Revokes the token with id `id`.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<Receipt, RegistryError> {
        let decision = self
            .authorize(caller, Action::Write, &ResourceFacts::Directory, None)
            .await?;
        let owner: Option<String> = on_pool!(self.db.pool(), e => sqlx::query_scalar("SELECT principal FROM tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(e)
                .await)?;
        let Some(owner) = owner else {
            return Err(RegistryError::UnknownToken { id: id.to_owned() });
        };
        if let Err(r) = caller.may_revoke_token_of(&owner) {
            let details = json!({"op": "token.revoke", "token": id, "principal": owner});
            return Err(self.refuse_issue(caller, r, details).await);
        }
        let mut tx = self.db.begin().await?;
        on_tx!(&mut tx, e => sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2")
            .bind(true)
            .bind(id)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        let mut ev = Self::event(caller, Action::Write);
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.details = Some(json!({"op": "token.revoke", "token": id}));
        let r = self.audit("registry.token", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// Turns a presented token into a caller, or says why not. Nothing is recorded here:
    /// the caller records the refusal ([`record_auth_failure`](Self::record_auth_failure))
    /// or, past the rate limits, counts it
    /// ([`count_throttled_failure`](Self::count_throttled_failure)).
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        ip: IpAddr,
        user_agent: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<Result<Caller, Refused>, RegistryError> {
        match self.check_token(token).await? {
            Checked::Valid(t) => {
                let now = self.now_secs();
                if t.last_used.is_none_or(|l| now - l >= LAST_USED_EVERY) {
                    on_pool!(self.db.pool(), e => sqlx::query("UPDATE tokens SET last_used = $1 WHERE id = $2")
                        .bind(now)
                        .bind(&t.id)
                        .execute(e)
                        .await.map(|r| r.rows_affected()))?;
                    // The cached copy holds the old time.
                    self.db.invalidate().await?;
                }
                Ok(Ok(Caller {
                    principal: t.principal,
                    ip,
                    mfa: false,
                    scopes: Some(t.scopes),
                    idp_roles: Vec::new(),
                    user_agent: user_agent.map(str::to_owned),
                    request_id: request_id.map(str::to_owned),
                    expires_at: Some(t.expires_at),
                    credential: Some(format!("tok:{}", t.id)),
                }))
            }
            Checked::Failed(why, id) => Ok(Err(Refused {
                why,
                details: id.map(|id| json!({"token": id})),
            })),
        }
    }

    /// Records a refused authentication as an `auth.failure` entry: the address, the
    /// reason, and `details` (a token id or a JWT's issuer and subject, never a secret).
    pub async fn record_auth_failure(
        &self,
        why: AuthFailure,
        ip: IpAddr,
        user_agent: Option<&str>,
        request_id: Option<&str>,
        details: Option<serde_json::Value>,
    ) -> Result<Receipt, RegistryError> {
        let ev = Event {
            ip: Some(ip.to_string()),
            action: Some("authenticate".into()),
            decision: Some("deny".into()),
            reason: Some(why.to_string()),
            user_agent: user_agent.map(str::to_owned),
            request_id: request_id.map(str::to_owned),
            details,
            ..Event::default()
        };
        self.audit("auth.failure", &ev).await
    }

    /// Whether `name` is a registered, active principal (for identities asserted by an
    /// external issuer, which must map to one).
    pub async fn principal_is_active(&self, name: &str) -> Result<bool, RegistryError> {
        Ok(self.db.principal(name).await?.is_some_and(|p| p.active))
    }

    async fn check_token(&self, token: Option<&str>) -> Result<Checked, RegistryError> {
        let Some(token) = token else {
            return Ok(Checked::Failed(AuthFailure::Missing, None));
        };
        if token.len() > MAX_TOKEN_LEN
            || !token.starts_with(PREFIX)
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Ok(Checked::Failed(AuthFailure::Malformed, None));
        }
        let h = hash(token);
        let g = self.db.generation().await?;
        let cache = self.db.cache();
        let t = match cache.tokens.get(&h, g) {
            Some(t) => t,
            None => {
                let row = on_pool!(self.db.pool(), e => sqlx::query_as::<_, TokenRow>(&format!("SELECT {COLS} FROM tokens WHERE hash = $1"))
                    .bind(&h)
                    .fetch_optional(e)
                    .await)?;
                let Some(row) = row else {
                    return Ok(Checked::Failed(AuthFailure::Unknown, None));
                };
                let t = info(row);
                cache.tokens.put(&cache.generation, g, h, t.clone());
                t
            }
        };
        if t.revoked {
            return Ok(Checked::Failed(AuthFailure::Revoked, Some(t.id)));
        }
        if self.now_secs() >= t.expires_at {
            return Ok(Checked::Failed(AuthFailure::Expired, Some(t.id)));
        }
        Ok(Checked::Valid(t))
    }
}
