//! `POST /v1/audit/accesses`: accesses recorded on the caller's word (the Python SDK's
//! `log_access` in remote mode), each entry naming the credential that sent it. A
//! scoped token needs `audit:write`.

use crate::models::receipt_json;
use crate::{ApiError, AppState, Authenticated, JsonIn};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// Largest request body (10 000 accesses with modest metadata).
pub const MAX_ACCESS_BODY: usize = 8 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessIn {
    user_id: String,
    resource: String,
    action: String,
    result: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessesBody {
    events: Vec<AccessIn>,
}

pub(crate) async fn record(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    JsonIn(body): JsonIn<AccessesBody>,
) -> Result<Response, ApiError> {
    let mut events = Vec::with_capacity(body.events.len());
    for (i, a) in body.events.into_iter().enumerate() {
        let e = warden_core::access::event(a.user_id, a.resource, a.action, a.result, a.metadata)
            .map_err(|m| ApiError::BadRequest(format!("event {i}: {m}")))?;
        events.push(e);
    }
    let receipts = s.manager.record_accesses(&c, events).await?;
    Ok(
        Json(json!({"receipts": receipts.iter().map(receipt_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}
