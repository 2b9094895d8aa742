//! The CISO dashboard, served by `warden serve` at `/dashboard`, same origin as the API.
//!
//! Sign-in takes a Warden token (it needs the `audit:read` scope) and opens a session
//! ([`session`]); every page view and every data read is an `audit.read` entry, as the
//! audit API's reads are. Pages are HTML shells whose data the page's script fetches as
//! JSON and writes as text (never as markup), under a content security policy that
//! allows nothing but this origin's own scripts, styles and requests. Every asset ships
//! in the binary ([`assets`]). The counts come from a [`Tally`] kept up to date as
//! entries arrive, so a page reads only what was written since the last one.

mod assets;
mod incidents;
mod models;
mod oidc;
mod overview;
mod pages;
mod reports;
mod review;
pub(crate) mod session;

pub use oidc::OidcClient;
pub use reports::{Archive, GenerateReport};

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;
use session::{COOKIE, LIFETIME, SIGNIN_COOKIE, Sessions, cookie, same_secret, set_cookie};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use warden_registry::{Caller, RegistryError};
use warden_store::report::SinkPosition;
use warden_store::tally::Tally;
use zeroize::Zeroizing;

/// Where the dashboard learns the SIEM sinks' positions (the export cursors, which the
/// binary knows how to read, locally or from a cluster's database).
pub type SinkSource = Box<dyn Fn() -> Vec<SinkPosition> + Send + Sync>;

/// The dashboard's state: its sessions, its running counts, and where the SIEM sinks'
/// positions come from.
#[derive(Default)]
pub struct Dashboard {
    sessions: Sessions,
    /// Built on first use (the ledger's path and the auditor key come from the state).
    tally: std::sync::Arc<std::sync::Mutex<Option<Tally>>>,
    sinks: Option<SinkSource>,
    /// The sinks' positions as last read, and when.
    sinks_seen: std::sync::Mutex<Option<(std::time::Instant, Vec<SinkPosition>)>>,
    /// The signed reports archive, when this server keeps one.
    reports: Option<std::sync::Arc<Archive>>,
    /// Sign-in through the identity provider (`[oidc]`).
    oidc: Option<OidcClient>,
    /// Set when the server stops: live streams end (a stream left open would hold the
    /// server's graceful shutdown forever).
    closing: std::sync::atomic::AtomicBool,
}

/// How long the sinks' positions are reused before they are read again.
const SINKS_FRESH: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard that shows the sinks `sinks` reports.
    #[must_use]
    pub fn with_sinks(sinks: SinkSource) -> Self {
        Self {
            sinks: Some(sinks),
            ..Self::default()
        }
    }

    /// This dashboard, showing the reports archive `a`.
    #[must_use]
    pub fn with_reports(mut self, a: Archive) -> Self {
        self.reports = Some(std::sync::Arc::new(a));
        self
    }

    /// This dashboard, offering sign-in through the identity provider `c` when given.
    #[must_use]
    pub fn with_oidc_if(mut self, c: Option<OidcClient>) -> Self {
        self.oidc = c;
        self
    }

    /// Ends every live stream within a second; called when the server stops.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The sinks' positions (read at most every [`SINKS_FRESH`]; blocking).
    fn sinks(&self) -> Vec<SinkPosition> {
        let Some(read) = &self.sinks else {
            return Vec::new();
        };
        let mut seen = self
            .sinks_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*seen {
            Some((at, v)) if at.elapsed() < SINKS_FRESH => v.clone(),
            _ => {
                let v = read();
                *seen = Some((std::time::Instant::now(), v.clone()));
                v
            }
        }
    }
}

/// The dashboard's routes, all under `/dashboard`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(overview::page))
        .route("/dashboard/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard/sign-in", get(sign_in_page).post(sign_in))
        .route("/dashboard/sign-in/oidc", get(oidc::start))
        .route("/dashboard/sign-in/oidc/callback", get(oidc::callback))
        .route("/dashboard/sign-out", post(sign_out))
        .route("/dashboard/api/overview", get(overview::data))
        .route("/dashboard/api/live", get(overview::live))
        .route("/dashboard/incidents", get(incidents::page))
        .route("/dashboard/api/incidents", get(incidents::data))
        .route("/dashboard/api/incidents/{index}/ack", post(incidents::ack))
        .route("/dashboard/reports", get(reports::page))
        .route("/dashboard/reports/file/{file}", get(reports::download))
        .route("/dashboard/api/reports", get(reports::data))
        .route("/dashboard/api/reports/generate", post(reports::generate))
        .route("/dashboard/models", get(models::page))
        .route("/dashboard/api/models", get(models::data))
        .route("/dashboard/access-review", get(review::page))
        .route("/dashboard/access-review.csv", get(review::export))
        .route("/dashboard/api/access-review", get(review::data))
        .route(
            "/dashboard/api/access-review/sign-off",
            post(review::sign_off),
        )
        .route("/dashboard/assets/{file}", get(assets::serve))
        .layer(axum::middleware::from_fn(secure_headers))
}

/// What every dashboard response carries: a policy that allows only this origin's own
/// scripts, styles, images and requests, no framing, no referrer, no caching.
async fn secure_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn peer(parts: &mut Parts, state: &AppState) -> IpAddr {
    ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
        .await
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

/// A request with an open session: the caller its token authenticates as now, and the
/// session's CSRF token.
pub(crate) struct Signed {
    pub caller: Caller,
    pub csrf: String,
    pub cookie: String,
}

/// Why a request has no usable session.
pub(crate) enum NoSession {
    /// None, or one that ended: pages send the browser to sign in, data gets 401.
    Absent { page: bool },
    /// The server failed (or the token's check did).
    Failed(ApiError),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Absent { page: true } => Redirect::to("/dashboard/sign-in").into_response(),
            NoSession::Absent { page: false } => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {"code": "unauthenticated", "message": "sign in to the dashboard"}})),
            )
                .into_response(),
            NoSession::Failed(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoSession> {
        let page = !parts.uri.path().starts_with("/dashboard/api/");
        let Some(c) = cookie(&parts.headers, COOKIE).map(str::to_owned) else {
            return Err(NoSession::Absent { page });
        };
        let Some(open) = state.dashboard.sessions.get(&c) else {
            return Err(NoSession::Absent { page });
        };
        let ip = peer(parts, state).await;
        match crate::authenticate_token(state, &parts.headers, ip, Some(open.token.as_str())).await
        {
            Ok(caller) => Ok(Signed {
                caller,
                csrf: open.csrf,
                cookie: c,
            }),
            // The token no longer authenticates (revoked, expired, suspended): the
            // session ends with it.
            Err(ApiError::Unauthenticated(_)) => {
                state.dashboard.sessions.end(&c);
                Err(NoSession::Absent { page })
            }
            Err(e) => Err(NoSession::Failed(e)),
        }
    }
}

/// Records a dashboard read (`audit.read`) and checks the caller may read the ledger.
pub(crate) async fn audited(
    s: &AppState,
    who: &Signed,
    what: &str,
) -> Result<std::path::PathBuf, ApiError> {
    audited_with(s, who, json!({"view": what})).await
}

/// [`audited`] with more details (`view` and whatever names what was read).
pub(crate) async fn audited_with(
    s: &AppState,
    who: &Signed,
    mut details: serde_json::Value,
) -> Result<std::path::PathBuf, ApiError> {
    if let Some(d) = details.as_object_mut() {
        d.insert("op".into(), json!("dashboard"));
    }
    Ok(s.manager.audit_read(&who.caller, details).await?)
}

/// Brings the tally up to date and reads from it with `f`, off the runtime (the tally
/// reads the ledger's files).
pub(crate) async fn with_tally<T: Send + 'static>(
    s: &AppState,
    log: &std::path::Path,
    f: impl FnOnce(&Tally) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let tally = std::sync::Arc::clone(&s.dashboard.tally);
    let auditor = s.auditor.clone();
    let log = log.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut g = tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = g.get_or_insert_with(|| Tally::new(&log, auditor));
        t.refresh_at_most(COUNT_CHUNK).map(|_| f(t))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Most entries one request (or one step of the start-up count) counts while it holds
/// the tally: a page waits at most this much counting, and says how far the count is
/// while it is behind.
const COUNT_CHUNK: u64 = 100_000;

impl Dashboard {
    /// Counts the ledger at `log` in the background from now on (in steps of
    /// [`COUNT_CHUNK`], letting page views in between), so the first page view does not
    /// read the whole ledger. Ends once caught up, or when the server stops.
    pub fn count_from_start(
        self: &std::sync::Arc<Self>,
        log: std::path::PathBuf,
        auditor: Option<std::sync::Arc<warden_core::crypto::RecipientSecretKey>>,
    ) -> tokio::task::JoinHandle<()> {
        let me = std::sync::Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            while !me.closing() {
                let mut g = me
                    .tally
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let t = g.get_or_insert_with(|| Tally::new(&log, auditor.clone()));
                match t.refresh_at_most(COUNT_CHUNK) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if t.behind() == 0 => return,
                    Ok(_) => {}
                }
            }
        })
    }
}

/// Whether the browser is on this machine (then the cookie may go over plain HTTP).
fn loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

async fn sign_in_page(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(c) = cookie(&headers, COOKIE)
        && s.dashboard.sessions.get(c).is_some()
    {
        return Redirect::to("/dashboard").into_response();
    }
    sign_in_form_for(&s, StatusCode::OK, None, loopback(addr.ip()))
}

/// The sign-in form, offering the identity provider when `s` has one.
pub(crate) fn sign_in_form_for(
    s: &AppState,
    status: StatusCode,
    problem: Option<&str>,
    on_loopback: bool,
) -> Response {
    form_response(status, problem, on_loopback, oidc::offered(s))
}

fn form_response(
    status: StatusCode,
    problem: Option<&str>,
    on_loopback: bool,
    provider: bool,
) -> Response {
    let Some(nonce) = session::random_hex() else {
        return ApiError::Internal("no randomness for the sign-in form".into()).into_response();
    };
    let mut r = (status, pages::sign_in(&nonce, problem, provider)).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(
            SIGNIN_COOKIE,
            &nonce,
            Duration::from_secs(600),
            !on_loopback,
        ),
    );
    r
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    token: String,
    csrf: String,
}

/// Longest token accepted from the form (a JWT's limit, as for the API).
const MAX_FORM_TOKEN: usize = crate::jwt::MAX_JWT_LEN;

async fn sign_in(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let on_loopback = loopback(addr.ip());
    let Ok(Form(f)) = form else {
        return sign_in_form_for(
            &s,
            StatusCode::BAD_REQUEST,
            Some("The form was incomplete."),
            on_loopback,
        );
    };
    let token = Zeroizing::new(f.token.trim().to_owned());
    let fresh = cookie(&headers, SIGNIN_COOKIE).is_some_and(|c| same_secret(c, &f.csrf));
    if !fresh {
        return sign_in_form_for(
            &s,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or did not come from this page. Try again."),
            on_loopback,
        );
    }
    if token.is_empty() || token.len() > MAX_FORM_TOKEN {
        return sign_in_form_for(
            &s,
            StatusCode::UNAUTHORIZED,
            Some("Enter a Warden token."),
            on_loopback,
        );
    }
    match open_session(&s, &headers, addr.ip(), token, on_loopback).await {
        Ok(c) => {
            let mut r = Redirect::to("/dashboard").into_response();
            let h = r.headers_mut();
            h.append(header::SET_COOKIE, c);
            h.append(
                header::SET_COOKIE,
                set_cookie(SIGNIN_COOKIE, "", Duration::ZERO, !on_loopback),
            );
            r
        }
        Err(r) => r,
    }
}

/// Opens a session for `token` (a Warden token or a JWT) if it authenticates and may
/// read the audit log (checked and recorded); the session cookie to set, or the page to
/// answer instead.
pub(crate) async fn open_session(
    s: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
    token: Zeroizing<String>,
    on_loopback: bool,
) -> Result<HeaderValue, Response> {
    let refuse = |status, why: &str| sign_in_form_for(s, status, Some(why), on_loopback);
    let caller = match crate::authenticate_token(s, headers, ip, Some(token.as_str())).await {
        Ok(c) => c,
        Err(ApiError::Unauthenticated(_)) => {
            return Err(refuse(StatusCode::UNAUTHORIZED, "That token was refused."));
        }
        Err(e) => return Err(e.into_response()),
    };
    // Only an auditor may sign in: the check is the audit action's, and is recorded.
    match s
        .manager
        .audit_read(&caller, json!({"op": "dashboard", "view": "sign-in"}))
        .await
    {
        Ok(_) => {}
        Err(RegistryError::Denied { .. }) => {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "This token may not read the audit log (it needs the audit:read scope).",
            ));
        }
        Err(e) => return Err(ApiError::from(e).into_response()),
    }
    let left = caller
        .expires_at
        .map(|t| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Duration::from_secs(u64::try_from(t).unwrap_or(0).saturating_sub(now))
        })
        .unwrap_or(LIFETIME)
        .min(LIFETIME);
    let Some(c) = s.dashboard.sessions.open(token, left) else {
        return Err(ApiError::Internal("no randomness for a session".into()).into_response());
    };
    Ok(set_cookie(COOKIE, &c, left, !on_loopback))
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// Checks a state-changing request's CSRF token against its session's.
pub(crate) fn csrf_ok(who: &Signed, given: &str) -> bool {
    same_secret(&who.csrf, given)
}

/// The header a page's script sends its session's CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// `None` when a script's request carries its session's CSRF token (in
/// [`CSRF_HEADER`]); otherwise the 403 to answer.
pub(crate) fn csrf_from(who: &Signed, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    (!csrf_ok(who, given)).then(|| {
        problem(
            StatusCode::FORBIDDEN,
            "csrf",
            "the request did not carry this session's CSRF token",
        )
    })
}

/// `body` as a download named `file` (letters, digits, `-`, `_` and `.` only: the
/// callers' names are checked or fixed).
pub(crate) fn attachment(body: Vec<u8>, ctype: &'static str, file: &str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// A JSON error answer, shaped as the API's.
pub(crate) fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn sign_out(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    who: Signed,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let given = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !csrf_ok(&who, &given) {
        return pages::refused("The request did not carry this session's form token.");
    }
    s.dashboard.sessions.end(&who.cookie);
    let mut r = Redirect::to("/dashboard/sign-in").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(COOKIE, "", Duration::ZERO, !loopback(addr.ip())),
    );
    r
}
