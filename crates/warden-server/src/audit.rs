//! Audit endpoints (the `audit` action on the ledger; `audit:read` scope): entries,
//! decrypted when the server holds an auditor key, the latest signed checkpoint, and
//! inclusion and consistency proofs. Every read is itself an `audit.read` entry.

use crate::{ApiError, AppState, Authenticated};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use warden_store::audit::{self, EntryFilter};
use warden_store::error::StoreError;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// Runs a blocking ledger read.
async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(StoreError::Request(m))) => Err(ApiError::BadRequest(m)),
        Ok(Err(e)) => Err(ApiError::Internal(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    #[serde(default)]
    from: u64,
    to: Option<u64>,
    kind: Option<String>,
    user: Option<String>,
    model: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn entries(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let f = EntryFilter {
        from: q.from,
        to: q.to,
        kind: q.kind,
        user: q.user,
        model: q.model,
        limit: q.limit.unwrap_or(100),
    };
    let log = s
        .manager
        .audit_read(
            &c,
            json!({"op": "entries", "from": f.from, "to": f.to, "kind": f.kind,
                   "user": f.user, "model": f.model}),
        )
        .await?;
    let key = s.auditor.clone();
    let decrypted = key.is_some();
    let (list, next) = read(move || audit::read_entries(&log, key.as_deref(), &f)).await?;
    Ok(Json(json!({"entries": list, "next": next, "decrypted": decrypted})).into_response())
}

pub(crate) async fn checkpoint(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
) -> Result<Response, ApiError> {
    let log = s
        .manager
        .audit_read(&c, json!({"op": "checkpoint"}))
        .await?;
    let rec = read(move || audit::latest_checkpoint(&log)).await?;
    let rec = rec.ok_or_else(|| ApiError::BadRequest("the ledger has no checkpoint yet".into()))?;
    Ok(text(rec.note.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    index: u64,
}

pub(crate) async fn inclusion(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let log = s
        .manager
        .audit_read(&c, json!({"op": "inclusion", "index": q.index}))
        .await?;
    let proof = read(move || audit::inclusion(&log, q.index)).await?;
    Ok(text(proof.to_text()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    old: u64,
}

pub(crate) async fn consistency(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let log = s
        .manager
        .audit_read(&c, json!({"op": "consistency", "old": q.old}))
        .await?;
    let p = read(move || audit::consistency(&log, q.old)).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Json(json!({
        "old_size": p.old_size,
        "new_size": p.new_size,
        "hashes": p.hashes.iter().map(|h| b64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": p.checkpoint,
    }))
    .into_response())
}

/// `GET /v1/incidents`: every incident, oldest first, decrypted when the server holds
/// an auditor key.
pub(crate) async fn incidents(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
) -> Result<Response, ApiError> {
    let list = s.manager.incidents(&c, s.auditor.clone()).await?;
    Ok(Json(json!({"incidents": list})).into_response())
}

/// `GET /v1/incidents/{index}`.
pub(crate) async fn incident(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    crate::PathIn(index): crate::PathIn<u64>,
) -> Result<Response, ApiError> {
    let list = s.manager.incidents(&c, s.auditor.clone()).await?;
    let i = list
        .into_iter()
        .find(|i| i.index == index)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(i).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    note: String,
}

/// `POST /v1/incidents/{index}/ack`: an `incident.ack` entry.
pub(crate) async fn ack_incident(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    crate::PathIn(index): crate::PathIn<u64>,
    crate::JsonIn(body): crate::JsonIn<AckBody>,
) -> Result<Response, ApiError> {
    let r = s.manager.ack_incident(&c, index, &body.note).await?;
    Ok(Json(
        json!({"incident": index, "acknowledged": true, "audit": crate::models::receipt_json(&r)}),
    )
    .into_response())
}
