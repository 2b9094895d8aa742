//! Warden's HTTP API. `app(state)` builds the router, so tests drive it without a socket;
//! `warden serve` binds it.
//!
//! Every model endpoint authenticates a bearer token, then goes through
//! `SecureModelManager`: policy check, audit entry, and for downloads the verified load
//! path. One error type maps each failure to a fixed status and stable code; details go
//! to the log, never to the client.

mod accesses;
mod admin;
mod audit;
pub mod cosigning;
pub mod dashboard;
pub mod gateway;
pub mod html;
mod hub;
pub mod jwks;
pub mod jwt;
pub mod limits;
pub mod metrics;
mod models;
pub mod mtls;
pub mod pace;
pub mod tls;
pub mod witness;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use warden_registry::tokens::{AuthFailure, Refused};
use warden_registry::{Caller, RegistryError, SecureModelManager};

/// Largest request body accepted (JSON endpoints).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest registration body (a signed manifest listing many files).
pub const MAX_MANIFEST_BODY: usize = 4 * 1024 * 1024;
/// Longest request target (path and query) accepted.
pub const MAX_URI: usize = 4096;
/// Most bytes of request header fields (names and values) accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Deepest JSON nesting accepted in a request body.
pub const MAX_JSON_DEPTH: usize = 32;
/// Default largest uploaded file.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 << 30;
/// Longest `X-Request-Id` kept; longer ones are replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub manager: Arc<SecureModelManager>,
    pub limits: Arc<limits::Limits>,
    /// Accepts JWTs from an identity provider when configured.
    pub jwt: Option<Arc<jwt::JwtVerifier>>,
    /// Largest file accepted by an upload.
    pub max_upload: u64,
    /// Decrypts entries for the audit endpoints when set.
    pub auditor: Option<Arc<warden_core::crypto::RecipientSecretKey>>,
    /// Scopes of callers identified by a client certificate (mTLS).
    pub mtls_scopes: Arc<[String]>,
    /// How fast request bodies must arrive.
    pub pace: pace::Pace,
    /// The dashboard's sessions and counts.
    pub dashboard: Arc<dashboard::Dashboard>,
    /// The inference gateway's upstreams and budgets.
    pub gateway: Arc<gateway::Gateway>,
}

impl AppState {
    /// State with the default rate limits.
    #[must_use]
    pub fn new(manager: Arc<SecureModelManager>) -> Self {
        Self {
            manager,
            limits: Arc::new(limits::Limits::new(limits::LimitConfig::default())),
            jwt: None,
            max_upload: DEFAULT_MAX_UPLOAD,
            auditor: None,
            mtls_scopes: default_mtls_scopes(),
            pace: pace::Pace::default(),
            dashboard: Arc::default(),
            gateway: Arc::default(),
        }
    }
}

/// The scopes a client certificate carries unless configured: read and load.
#[must_use]
pub fn default_mtls_scopes() -> Arc<[String]> {
    Arc::from(["model:load".to_owned(), "model:read".to_owned()])
}

/// Builds the router (and installs the metrics recorder on first use).
pub fn app(state: AppState) -> Router {
    metrics::install();
    use axum::routing::{delete, put};
    let version = "/v1/models/{model}/versions/{version}";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/models", get(models::list_models))
        .route(
            version,
            get(models::show_version)
                .post(models::register)
                .layer(DefaultBodyLimit::max(MAX_MANIFEST_BODY)),
        )
        .route(
            "/v1/models/{model}/blobs/{digest}",
            put(models::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(&format!("{version}/files/{{*file}}"), get(models::download))
        .route(&format!("{version}/decision"), post(models::decision))
        .route(&format!("{version}/promote"), post(models::promote))
        .route(&format!("{version}/retire"), post(models::retire))
        .route(&format!("{version}/revoke"), post(models::revoke))
        .route("/v1/models/{model}/aliases/{alias}", put(models::set_alias))
        .route(
            "/v1/principals",
            get(admin::list_principals).post(admin::add_principal),
        )
        .route("/v1/principals/{name}/roles", post(admin::grant_role))
        .route("/v1/principals/{name}/grants", post(admin::grant))
        .route("/v1/principals/{name}/suspend", post(admin::suspend))
        .route("/v1/principals/{name}/enable", post(admin::enable))
        .route(
            "/v1/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route("/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/v1/audit/entries", get(audit::entries))
        .route(
            "/v1/audit/accesses",
            post(accesses::record).layer(DefaultBodyLimit::max(accesses::MAX_ACCESS_BODY)),
        )
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route("/v1/incidents", get(audit::incidents))
        .route("/v1/incidents/{index}", get(audit::incident))
        .route("/v1/incidents/{index}/ack", post(audit::ack_incident))
        // The Hugging Face Hub download contract (HF_ENDPOINT).
        .merge(dashboard::routes())
        .route(
            "/v1/chat/completions",
            post(gateway::chat).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/completions",
            post(gateway::completions).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/embeddings",
            post(gateway::embeddings).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/generate",
            post(gateway::generate).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/models/{*rest}", get(hub::api_models))
        .route("/{*path}", get(hub::resolve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.pace,
            pace::enforce,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(limit_head))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Refuses, before routing, request targets longer than [`MAX_URI`] and header fields
/// larger than [`MAX_HEADER_BYTES`] in all; gives every request an id.
async fn limit_head(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI {
        return ApiError::UriTooLong.into_response();
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge.into_response();
    }
    // Every request has an id (the client's, if usable), carried into its audit entry
    // and echoed in the response.
    let mut req = req;
    let rid = request_id(req.headers());
    let value = HeaderValue::from_str(&rid).ok();
    if let Some(v) = &value {
        req.headers_mut().insert(X_REQUEST_ID, v.clone());
    }
    let mut r = next.run(req).await;
    if let Some(v) = value {
        r.headers_mut().insert(X_REQUEST_ID, v);
    }
    r
}

const X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// Path parameters; a target that does not decode (bad percent-encoding, not UTF-8)
/// is a 400 JSON error like any other bad input.
#[derive(Debug)]
pub struct PathIn<T>(pub T);

impl<T, S> FromRequestParts<S> for PathIn<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathIn(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// A JSON request body: at most the route's body limit, at most [`MAX_JSON_DEPTH`]
/// deep, and of the expected shape; anything else is a 400 (413 when too large).
#[derive(Debug)]
pub struct JsonIn<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonIn<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE)
            && !ct.to_str().is_ok_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            })
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge
                } else {
                    ApiError::BadRequest(e.body_text())
                }
            })?;
        if json_depth(&bytes) > MAX_JSON_DEPTH {
            return Err(ApiError::BadRequest(format!(
                "JSON nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        serde_json::from_slice(&bytes)
            .map(JsonIn)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// The deepest nesting of arrays and objects in `b` (strings skipped).
pub(crate) fn json_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
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
    #[error("request body too large")]
    BodyTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("internal: {0}")]
    Internal(String),
    #[error("request target too long")]
    UriTooLong,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// The caller is named by an open HIGH incident (the inference gateway).
    #[error("suspicious activity (incident {0})")]
    Suspicious(u64),
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
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource does not support the method".into(),
            ),
            ApiError::UriTooLong => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the request target is longer than {MAX_URI} bytes"),
            ),
            ApiError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!("the request header fields exceed {MAX_HEADER_BYTES} bytes"),
            ),
            ApiError::Suspicious(_) => (
                StatusCode::FORBIDDEN,
                "suspicious_activity",
                "Suspicious activity detected".into(),
            ),
            ApiError::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than this endpoint accepts".into(),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json".into(),
            ),
            ApiError::RateLimited(l) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry after {} s", l.retry_after),
            ),
            ApiError::Registry(e) => match e {
                R::Denied {
                    reason,
                    revoked: true,
                    ..
                } => (
                    StatusCode::FORBIDDEN,
                    "revoked",
                    format!("the version is revoked ({reason})"),
                ),
                R::Denied { reason, .. } => (
                    StatusCode::FORBIDDEN,
                    "denied",
                    format!("the policy refused this request ({reason})"),
                ),
                R::UnknownModel { .. }
                | R::UnknownVersion { .. }
                | R::UnknownFile { .. }
                | R::UnknownPrincipal { .. }
                | R::UnknownToken { .. }
                | R::UnknownIncident { .. } => {
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
                _ if e.is_unavailable() => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the registry's database or blob store cannot be reached; the request was refused".into(),
                ),
                R::Invalid { .. } | R::Signer(_) | R::Manifest(_) => {
                    (StatusCode::BAD_REQUEST, "bad_request", e.to_string())
                }
                // Well-formed, but at odds with the resource's current state.
                R::Transition { .. } | R::Exists { .. } => {
                    (StatusCode::CONFLICT, "conflict", e.to_string())
                }
                R::DigestMismatch { .. } => {
                    (StatusCode::BAD_REQUEST, "digest_mismatch", e.to_string())
                }
                R::TooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", e.to_string())
                }
                R::RangeNotSatisfiable { .. } => (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    e.to_string(),
                ),
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
        if let ApiError::Registry(RegistryError::RangeNotSatisfiable { size }) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

#[expect(clippy::print_stderr, reason = "the server logs to stderr")]
pub(crate) fn log(msg: &str) {
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
        None => new_request_id(),
    }
}

/// A fresh request id: a random per-process prefix and a counter, so ids are unique
/// across restarts and nodes without a random draw per request (they need not be
/// secret).
fn new_request_id() -> String {
    static PREFIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut b = [0u8; 6];
        // On failure the prefix stays zero; ids are still unique within the process.
        let _ = aws_lc_rs::rand::fill(&mut b);
        warden_core::hex::encode(&b)
    });
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff_ffff_ffff;
    format!("{}{n:012x}", *PREFIX)
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
        let ip = client_ip(parts, state).await;
        let client_cert = parts.extensions.get::<mtls::ClientIdentity>().cloned();
        authenticate(state, &parts.headers, ip, token.as_deref(), client_cert)
            .await
            .map(Authenticated)
    }
}

/// Authenticates `token` (a Warden token or a JWT) from `ip` as the API does: the
/// address's and then the principal's rate limits, and a refusal recorded (within the
/// failure budgets). The dashboard signs in and checks its sessions through it.
pub(crate) async fn authenticate_token(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
    token: Option<&str>,
) -> Result<Caller, ApiError> {
    authenticate(state, headers, ip, token, None).await
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
    token: Option<&str>,
    client_cert: Option<mtls::ClientIdentity>,
) -> Result<Caller, ApiError> {
    {
        let ua = header_str(headers, header::USER_AGENT, 512).map(str::to_owned);
        let rid = request_id(headers);
        state
            .limits
            .check_ip(ip)
            .await
            .map_err(ApiError::RateLimited)?;
        let start = std::time::Instant::now();
        let (method, outcome) = match token {
            None if client_cert.is_some() => (
                "mtls",
                authenticate_cert(state, client_cert, ip, ua.as_deref(), &rid).await?,
            ),
            Some(t) if jwt::looks_like_jwt(t) => (
                "jwt",
                authenticate_jwt(state, t, ip, ua.as_deref(), &rid).await?,
            ),
            t => (
                "token",
                state
                    .manager
                    .authenticate(t, ip, ua.as_deref(), Some(&rid))
                    .await?,
            ),
        };
        ::metrics::histogram!("warden_auth_duration_seconds",
            "method" => method, "outcome" => if outcome.is_ok() { "ok" } else { "failure" })
        .record(start.elapsed().as_secs_f64());
        match outcome {
            Ok(c) => {
                state
                    .limits
                    .check_principal(&c.principal)
                    .await
                    .map_err(ApiError::RateLimited)?;
                Ok(c)
            }
            // Within the failure budgets a refusal is its own entry; past them it is
            // only counted (one entry per address and window), so anonymous traffic
            // cannot grow the ledger at will.
            Err(Refused { why, details }) => match state.limits.auth_failed(ip).await {
                Ok(()) => {
                    state
                        .manager
                        .record_auth_failure(why, ip, ua.as_deref(), Some(&rid), details)
                        .await?;
                    Err(ApiError::Unauthenticated(why))
                }
                Err(limited) => {
                    state.manager.count_throttled_failure(ip);
                    Err(ApiError::RateLimited(limited))
                }
            },
        }
    }
}

/// Maps a verified client certificate to a caller; a name that is not a registered,
/// active principal is refused like a bad token.
async fn authenticate_cert(
    state: &AppState,
    id: Option<mtls::ClientIdentity>,
    ip: IpAddr,
    ua: Option<&str>,
    rid: &str,
) -> Result<Result<Caller, Refused>, ApiError> {
    let name = id.map(|i| i.0).unwrap_or_default();
    if !name.is_empty() && state.manager.principal_is_active(&name).await? {
        return Ok(Ok(Caller {
            credential: Some(format!("cert:{name}")),
            principal: name,
            ip,
            mfa: false,
            scopes: Some(state.mtls_scopes.to_vec()),
            idp_roles: Vec::new(),
            user_agent: ua.map(str::to_owned),
            request_id: Some(rid.to_owned()),
            expires_at: None,
        }));
    }
    let short: String = name.chars().take(128).collect();
    Ok(Err(Refused {
        why: AuthFailure::UnknownPrincipal,
        details: Some(json!({"client_certificate": {"cn": short}})),
    }))
}

/// Verifies a JWT and maps it to a caller, or says why not.
async fn authenticate_jwt(
    state: &AppState,
    token: &str,
    ip: IpAddr,
    ua: Option<&str>,
    rid: &str,
) -> Result<Result<Caller, Refused>, ApiError> {
    let verified = match &state.jwt {
        None => Err(AuthFailure::NotAccepted),
        Some(v) => v.verify(token),
    };
    let refused = match verified {
        Ok(id) => {
            if !id.principal.is_empty() && state.manager.principal_is_active(&id.principal).await? {
                let credential = id
                    .details
                    .get("jti")
                    .and_then(serde_json::Value::as_str)
                    .map(|j| j.chars().take(64).collect::<String>())
                    .map_or_else(|| format!("jwt:{}", id.principal), |j| format!("jwt:{j}"));
                return Ok(Ok(Caller {
                    credential: Some(credential),
                    principal: id.principal,
                    ip,
                    mfa: id.mfa,
                    scopes: Some(id.scopes),
                    idp_roles: id.roles,
                    user_agent: ua.map(str::to_owned),
                    request_id: Some(rid.to_owned()),
                    expires_at: id.expires_at,
                }));
            }
            (
                AuthFailure::UnknownPrincipal,
                Some(json!({"jwt": id.details})),
            )
        }
        Err(why) => (why, jwt::unverified_details(token)),
    };
    Ok(Err(Refused {
        why: refused.0,
        details: refused.1,
    }))
}

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../api/openapi.json");

async fn openapi() -> Response {
    let mut r = Response::new(axum::body::Body::from(OPENAPI));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
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

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
