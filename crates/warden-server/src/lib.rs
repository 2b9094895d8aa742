//! Warden's HTTP API. `app(state)` builds the router, so tests drive it without a socket;
//! `warden serve` binds it.
//!
//! Every model endpoint authenticates a bearer token, then goes through
//! `SecureModelManager`: policy check, audit entry, and for downloads the verified load
//! path. One error type maps each failure to a fixed status and stable code; details go
//! to the log, never to the client.

pub mod jwt;
pub mod limits;
pub mod tls;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use warden_policy::Action;
use warden_registry::tokens::AuthFailure;
use warden_registry::{Caller, RegistryError, SecureModelManager, Selector, Staging};

/// Largest request body accepted (JSON endpoints).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest `X-Request-Id` kept; longer ones are replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub manager: Arc<SecureModelManager>,
    pub limits: Arc<limits::Limits>,
    /// Accepts JWTs from an identity provider when configured.
    pub jwt: Option<Arc<jwt::JwtVerifier>>,
}

impl AppState {
    /// State with the default rate limits.
    #[must_use]
    pub fn new(manager: Arc<SecureModelManager>) -> Self {
        Self {
            manager,
            limits: Arc::new(limits::Limits::new(limits::LimitConfig::default())),
            jwt: None,
        }
    }
}

/// Builds the router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}/versions/{version}", get(show_version))
        .route(
            "/v1/models/{model}/versions/{version}/files/{*file}",
            get(download),
        )
        .route(
            "/v1/models/{model}/versions/{version}/decision",
            post(decision),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The API's errors: a fixed status and public code per variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("authentication required")]
    Unauthenticated(AuthFailure),
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("rate limited by {}", .0.policy)]
    RateLimited(limits::Limited),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use RegistryError as R;
        let (status, code, message): (StatusCode, &str, String) = match &self {
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required".into(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such resource".into()),
            ApiError::RateLimited(l) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry after {} s", l.retry_after),
            ),
            ApiError::Registry(e) => match e {
                R::Denied { reason, .. } => (
                    StatusCode::FORBIDDEN,
                    "denied",
                    format!("the policy refused this request ({reason})"),
                ),
                R::UnknownModel { .. } | R::UnknownVersion { .. } | R::UnknownFile { .. } => {
                    (StatusCode::NOT_FOUND, "not_found", e.to_string())
                }
                R::Integrity { .. } => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "integrity_failure",
                    "the stored artifact failed verification and was not served; an incident was recorded".into(),
                ),
                R::Audit(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    "the audit ledger cannot record this request, so it was refused".into(),
                ),
                R::Invalid { .. } | R::Transition { .. } | R::Exists { .. } => {
                    (StatusCode::BAD_REQUEST, "bad_request", e.to_string())
                }
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                ),
            },
        };
        if status.is_server_error() {
            log(&format!("{code}: {self}"));
        }
        let mut r = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited(l) = &self {
            let h = r.headers_mut();
            for (name, value) in [
                ("retry-after", l.retry_after.to_string()),
                (
                    "ratelimit-policy",
                    format!("\"{}\";q={};w={}", l.policy, l.quota, l.window_secs),
                ),
                (
                    "ratelimit",
                    format!("\"{}\";r=0;t={}", l.policy, l.retry_after),
                ),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(name, v);
                }
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

#[expect(clippy::print_stderr, reason = "the server logs to stderr")]
fn log(msg: &str) {
    eprintln!("warden-server: {msg}");
}

/// An authenticated caller, from the `Authorization: Bearer` header.
#[derive(Debug)]
pub struct Authenticated(pub Caller);

/// The peer address (the server is always run with connection info; without it, as in
/// a bare router, loopback).
async fn client_ip(parts: &mut Parts, state: &AppState) -> IpAddr {
    ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
        .await
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

fn header_str(h: &HeaderMap, name: header::HeaderName, max: usize) -> Option<&str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= max)
}

fn request_id(h: &HeaderMap) -> String {
    match header_str(
        h,
        header::HeaderName::from_static("x-request-id"),
        MAX_REQUEST_ID,
    )
    .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
    {
        Some(v) => v.to_owned(),
        None => {
            let mut b = [0u8; 12];
            aws_rand(&mut b);
            warden_core::hex::encode(&b)
        }
    }
}

fn aws_rand(b: &mut [u8]) {
    // A request id need not be secret; on failure it stays zero.
    let _ = aws_lc_rs::rand::fill(b);
}

/// The credentials of a `Bearer` authorization (the scheme is case-insensitive).
fn bearer(v: &str) -> Option<&str> {
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = header_str(&parts.headers, header::AUTHORIZATION, jwt::MAX_JWT_LEN + 16)
            .and_then(bearer)
            .map(|t| t.trim().to_owned());
        let ua = header_str(&parts.headers, header::USER_AGENT, 512).map(str::to_owned);
        let rid = request_id(&parts.headers);
        let ip = client_ip(parts, state).await;
        state.limits.check_ip(ip).map_err(ApiError::RateLimited)?;
        let outcome = match token.as_deref() {
            Some(t) if jwt::looks_like_jwt(t) => {
                authenticate_jwt(state, t, ip, ua.as_deref(), &rid).await?
            }
            t => {
                state
                    .manager
                    .authenticate(t, ip, ua.as_deref(), Some(&rid))
                    .await?
            }
        };
        match outcome {
            Ok(c) => {
                state
                    .limits
                    .check_principal(&c.principal)
                    .map_err(ApiError::RateLimited)?;
                Ok(Authenticated(c))
            }
            Err(why) => {
                state
                    .limits
                    .auth_failed(ip)
                    .map_err(ApiError::RateLimited)?;
                Err(ApiError::Unauthenticated(why))
            }
        }
    }
}

/// Verifies a JWT and maps it to a caller; a refusal is recorded like a bad token.
async fn authenticate_jwt(
    state: &AppState,
    token: &str,
    ip: IpAddr,
    ua: Option<&str>,
    rid: &str,
) -> Result<Result<Caller, AuthFailure>, ApiError> {
    let verified = match &state.jwt {
        None => Err(AuthFailure::NotAccepted),
        Some(v) => v.verify(token),
    };
    let refused = match verified {
        Ok(id) => {
            if !id.principal.is_empty() && state.manager.principal_is_active(&id.principal).await? {
                return Ok(Ok(Caller {
                    principal: id.principal,
                    ip,
                    mfa: id.mfa,
                    scopes: Some(id.scopes),
                    idp_roles: id.roles,
                    user_agent: ua.map(str::to_owned),
                    request_id: Some(rid.to_owned()),
                }));
            }
            (
                AuthFailure::UnknownPrincipal,
                Some(json!({"jwt": id.details})),
            )
        }
        Err(why) => (why, jwt::unverified_details(token)),
    };
    state
        .manager
        .record_auth_failure(refused.0, ip, ua, Some(rid), refused.1)
        .await?;
    Ok(Err(refused.0))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz() -> &'static str {
    "ready\n"
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn list_models(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
) -> Result<Response, ApiError> {
    let list = s.manager.list(&c).await?;
    Ok(Json(json!({"versions": list})).into_response())
}

fn selector(version: &str) -> Selector {
    Selector::parse(version)
}

async fn show_version(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let v = s.manager.show(&c, &model, &selector(&version)).await?;
    Ok(Json(v).into_response())
}

async fn download(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    Path((model, version, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let loaded = s
        .manager
        .load(
            &c,
            &model,
            &selector(&version),
            Some(&file),
            &Staging::Memory,
        )
        .await?;
    let index = loaded.receipt().index;
    let (digest, version) = (
        loaded
            .files()
            .first()
            .map(|f| f.digest().to_owned())
            .unwrap_or_default(),
        loaded.version().to_owned(),
    );
    let bytes = loaded
        .into_single_bytes()
        .ok_or_else(|| ApiError::BadRequest("name one file of the version".into()))?;
    let mut r = Response::new(Body::from(bytes));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in [
        ("x-warden-digest", format!("sha256:{digest}")),
        ("x-warden-version", version),
        ("x-warden-audit-index", index.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    action: String,
}

async fn decision(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    Path((model, version)): Path<(String, String)>,
    body: Result<Json<DecisionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let action = Action::parse(&body.action).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let d = s
        .manager
        .check(&c, action, &model, Some(&selector(&version)), None)
        .await?;
    Ok(Json(json!({"allowed": d.allowed, "reason": d.reason()})).into_response())
}
