//! Model endpoints: list, show, upload and register, lifecycle, aliases, decisions and
//! verified, streamed downloads.

use crate::{ApiError, AppState, Authenticated, JsonIn, PathIn};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use warden_policy::{Action, VersionState};
use warden_registry::Selector;
use warden_registry::download::DownloadBody;
use warden_registry::manifest::Envelope;
use warden_store::ledger::Receipt;

pub(crate) fn receipt_json(r: &Receipt) -> serde_json::Value {
    json!({"index": r.index, "tree_size": r.size})
}

pub(crate) async fn list_models(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
) -> Result<Response, ApiError> {
    let list = s.manager.list(&c).await?;
    Ok(Json(json!({"versions": list})).into_response())
}

pub(crate) async fn show_version(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, version)): PathIn<(String, String)>,
) -> Result<Response, ApiError> {
    let v = s
        .manager
        .show(&c, &model, &Selector::parse(&version))
        .await?;
    Ok(Json(v).into_response())
}

/// `sha256:<hex>` or bare hex.
fn digest_param(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

pub(crate) async fn upload(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, digest)): PathIn<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let (blob, r) = s
        .manager
        .upload(
            &c,
            &model,
            digest_param(&digest),
            s.max_upload,
            body.into_data_stream(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"digest": format!("sha256:{}", blob.digest), "size": blob.size,
                    "audit": receipt_json(&r)}),
        ),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    /// The DSSE envelope of the signed manifest.
    envelope: Envelope,
}

pub(crate) async fn register(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, version)): PathIn<(String, String)>,
    JsonIn(body): JsonIn<RegisterBody>,
) -> Result<Response, ApiError> {
    let (info, r) = s
        .manager
        .register_signed(&c, &model, &version, &body.envelope)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"version": info, "audit": receipt_json(&r)})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PromoteBody {
    to: String,
    #[serde(default)]
    evidence: Option<serde_json::Value>,
}

pub(crate) async fn promote(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, version)): PathIn<(String, String)>,
    JsonIn(body): JsonIn<PromoteBody>,
) -> Result<Response, ApiError> {
    let target = match VersionState::parse(&body.to) {
        Some(t @ (VersionState::Validated | VersionState::Production)) => t,
        _ => {
            return Err(ApiError::BadRequest(
                "\"to\" must be \"validated\" or \"production\"".into(),
            ));
        }
    };
    let r = s
        .manager
        .promote(
            &c,
            &model,
            &Selector::parse(&version),
            target,
            body.evidence,
        )
        .await?;
    Ok(Json(json!({"state": target.as_str(), "audit": receipt_json(&r)})).into_response())
}

pub(crate) async fn retire(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, version)): PathIn<(String, String)>,
) -> Result<Response, ApiError> {
    let r = s
        .manager
        .retire(&c, &model, &Selector::parse(&version))
        .await?;
    Ok(Json(json!({"state": "retired", "audit": receipt_json(&r)})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    reason: String,
}

pub(crate) async fn revoke(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, version)): PathIn<(String, String)>,
    JsonIn(body): JsonIn<RevokeBody>,
) -> Result<Response, ApiError> {
    let r = s
        .manager
        .revoke(&c, &model, &Selector::parse(&version), &body.reason)
        .await?;
    Ok(Json(json!({"state": "revoked", "audit": receipt_json(&r)})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasBody {
    version: String,
}

pub(crate) async fn set_alias(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, alias)): PathIn<(String, String)>,
    JsonIn(body): JsonIn<AliasBody>,
) -> Result<Response, ApiError> {
    let r = s
        .manager
        .set_alias(&c, &model, &alias, &body.version)
        .await?;
    Ok(
        Json(json!({"alias": alias, "version": body.version, "audit": receipt_json(&r)}))
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    action: String,
}

pub(crate) async fn decision(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, version)): PathIn<(String, String)>,
    JsonIn(body): JsonIn<DecisionBody>,
) -> Result<Response, ApiError> {
    let action = Action::parse(&body.action).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let d = s
        .manager
        .check_visible(&c, action, &model, &Selector::parse(&version))
        .await?;
    Ok(Json(json!({"allowed": d.allowed, "reason": d.reason()})).into_response())
}

/// A file, streamed and verified; `Range` gives 206.
pub(crate) async fn download(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    PathIn((model, version, file)): PathIn<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let d = s
        .manager
        .download(&c, &model, &Selector::parse(&version), &file, range)
        .await?;
    Ok(download_response(d, Vec::new()))
}

/// The response streaming `d`, with `extra` header fields.
pub(crate) fn download_response(
    d: warden_registry::download::Download,
    extra: Vec<(header::HeaderName, String)>,
) -> Response {
    let status = if d.range().is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut fields = vec![
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, d.len().to_string()),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::ETAG, format!("\"{}\"", d.digest())),
    ];
    if let Some(r) = d.range() {
        fields.push((
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", r.start, r.end - 1, d.size()),
        ));
    }
    for (name, value) in [
        ("x-warden-digest", format!("sha256:{}", d.digest())),
        ("x-warden-version", d.version().to_owned()),
        ("x-warden-audit-index", d.receipt().index.to_string()),
        ("x-warden-audit-tree-size", d.receipt().size.to_string()),
    ] {
        fields.push((header::HeaderName::from_static(name), value));
    }
    fields.extend(extra);
    let body = match d.into_body() {
        DownloadBody::Complete(b) => Body::from(b),
        DownloadBody::Stream(s) => Body::from_stream(s),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (name, value) in fields {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}
