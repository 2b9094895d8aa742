//! Principal and token administration (the directory; `model:admin` scope, and the
//! policy's `write` on the directory).

use crate::models::receipt_json;
use crate::{ApiError, AppState, Authenticated, JsonIn, PathIn};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use warden_core::crypto::{SigAlg, VerifyingKey};
use warden_policy::Action;

pub(crate) async fn list_principals(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
) -> Result<Response, ApiError> {
    let list = s.manager.principals(&c).await?;
    let out: Vec<_> = list
        .iter()
        .map(|(p, grants)| {
            json!({
                "name": p.name, "service": p.service, "active": p.active, "roles": p.roles,
                "created_at": p.created_at, "signing_alg": p.signing_alg,
                "grants": grants.iter().map(|g| json!({
                    "model": g.model, "action": g.action, "expires_at": g.expires_at,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({"principals": out})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SigningKeyBody {
    /// `ML-DSA-65` or `ML-DSA-44`.
    alg: String,
    /// The public key, base64.
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPrincipal {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    service: bool,
    #[serde(default)]
    signing_key: Option<SigningKeyBody>,
}

pub(crate) async fn add_principal(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    JsonIn(body): JsonIn<NewPrincipal>,
) -> Result<Response, ApiError> {
    let key = match &body.signing_key {
        None => None,
        Some(k) => {
            let alg = SigAlg::parse(&k.alg).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k.key.as_bytes())
                .map_err(|_| ApiError::BadRequest("signing_key.key is not base64".into()))?;
            Some(
                VerifyingKey::from_bytes(alg, &bytes)
                    .map_err(|e| ApiError::BadRequest(format!("signing_key: {e}")))?,
            )
        }
    };
    let r = s
        .manager
        .add_principal(
            Some(&c),
            &body.name,
            &body.roles,
            body.service,
            key.as_ref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": body.name, "audit": receipt_json(&r)})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    role: String,
}

pub(crate) async fn grant_role(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn(name): PathIn<String>,
    JsonIn(body): JsonIn<RoleBody>,
) -> Result<Response, ApiError> {
    let r = s.manager.grant_role(&c, &name, &body.role).await?;
    Ok(Json(json!({"audit": receipt_json(&r)})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    /// A model name, or `*` for every model.
    model: String,
    actions: Vec<String>,
    /// Seconds from now until the grant lapses.
    expires_in_secs: i64,
}

pub(crate) async fn grant(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn(name): PathIn<String>,
    JsonIn(body): JsonIn<GrantBody>,
) -> Result<Response, ApiError> {
    let actions = body
        .actions
        .iter()
        .map(|a| Action::parse(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !(1..=warden_registry::tokens::MAX_TTL_SECS).contains(&body.expires_in_secs) {
        return Err(ApiError::BadRequest(
            "expires_in_secs must be between 1 and one year".into(),
        ));
    }
    let now = s.manager.now_secs();
    let r = s
        .manager
        .grant(
            &c,
            &name,
            &body.model,
            &actions,
            now.saturating_add(body.expires_in_secs),
        )
        .await?;
    Ok(Json(json!({"audit": receipt_json(&r)})).into_response())
}

async fn set_active(
    s: &AppState,
    c: &warden_registry::Caller,
    name: &str,
    active: bool,
) -> Result<Response, ApiError> {
    let r = s.manager.set_active(c, name, active).await?;
    Ok(Json(json!({"name": name, "active": active, "audit": receipt_json(&r)})).into_response())
}

pub(crate) async fn suspend(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn(name): PathIn<String>,
) -> Result<Response, ApiError> {
    set_active(&s, &c, &name, false).await
}

pub(crate) async fn enable(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn(name): PathIn<String>,
) -> Result<Response, ApiError> {
    set_active(&s, &c, &name, true).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenFilter {
    principal: Option<String>,
}

pub(crate) async fn list_tokens(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    q: Result<Query<TokenFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let list = s.manager.tokens(&c, q.principal.as_deref()).await?;
    Ok(Json(json!({"tokens": list})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    principal: String,
    scopes: Vec<String>,
    expires_in_secs: i64,
}

pub(crate) async fn create_token(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    JsonIn(body): JsonIn<NewToken>,
) -> Result<Response, ApiError> {
    let (token, info, r) = s
        .manager
        .create_token(&c, &body.principal, &body.scopes, body.expires_in_secs)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "info": info, "audit": receipt_json(&r)})),
    )
        .into_response())
}

pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn(id): PathIn<String>,
) -> Result<Response, ApiError> {
    let r = s.manager.revoke_token(&c, &id).await?;
    Ok(Json(json!({"id": id, "revoked": true, "audit": receipt_json(&r)})).into_response())
}
