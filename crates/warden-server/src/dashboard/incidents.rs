//! Incidents: every incident the ledger holds (decrypted when the server holds an
//! auditor key), filterable on the page; each one's evidence, playbook actions and
//! acknowledgement; and acknowledging one, which writes an `incident.ack` entry through
//! the same check and entry as `POST /v1/incidents/{index}/ack`.

use super::{Signed, audited, csrf_from, pages};
use crate::{ApiError, AppState, JsonIn, PathIn};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

const MAIN: &str = "\
<section aria-labelledby=\"h-filter\"><h2 id=\"h-filter\">Filter</h2><form id=\"filter\" class=\"filter\">\
<label for=\"f-severity\">Severity</label><select id=\"f-severity\"><option value=\"\">any</option>\
<option>CRITICAL</option><option>HIGH</option><option>MEDIUM</option><option>LOW</option><option>UNKNOWN</option></select>\
<label for=\"f-state\">State</label><select id=\"f-state\"><option value=\"open\">open</option>\
<option value=\"acknowledged\">acknowledged</option><option value=\"\">any</option></select>\
<label for=\"f-text\">Text</label><input id=\"f-text\" type=\"search\"></form></section>\
<section aria-labelledby=\"h-list\"><h2 id=\"h-list\">Incidents</h2><table id=\"table-incident-list\"></table></section>\
<section id=\"detail\" aria-labelledby=\"h-detail\" hidden><h2 id=\"h-detail\">Incident</h2><dl id=\"detail-fields\"></dl>\
<form id=\"ack\"><label for=\"ack-note\">Acknowledgement note</label>\
<textarea id=\"ack-note\" maxlength=\"4096\" required></textarea>\
<button type=\"submit\">Acknowledge</button></form></section>";

/// `GET /dashboard/incidents`.
pub(crate) async fn page(State(s): State<AppState>, who: Signed) -> Response {
    if let Err(e) = audited(&s, &who, "incidents").await {
        return e.into_response();
    }
    pages::shell("Incidents", "/dashboard/incidents", &who.csrf, MAIN).into_response()
}

/// Most incidents one answer lists.
const MAX_LISTED: usize = 1000;
/// Longest text filter.
const MAX_TEXT: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    severity: Option<String>,
    /// `open` (default), `acknowledged` or `any`.
    state: Option<String>,
    text: Option<String>,
    limit: Option<usize>,
}

/// `GET /dashboard/api/incidents?severity=&state=&text=&limit=`: the newest incidents
/// that match (at most 1000), how many match, and how many there are.
pub(crate) async fn data(
    State(s): State<AppState>,
    who: Signed,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(Query(f)) = q else {
        return Err(ApiError::BadRequest(
            "filters: severity, state (open, acknowledged, any), text, limit".into(),
        ));
    };
    if f.text.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
        return Err(ApiError::BadRequest(format!(
            "text: at most {MAX_TEXT} bytes"
        )));
    }
    let state = f.state.clone().unwrap_or_else(|| "open".into());
    if !matches!(state.as_str(), "open" | "acknowledged" | "any") {
        return Err(ApiError::BadRequest(
            "state: open, acknowledged or any".into(),
        ));
    }
    let limit = f.limit.unwrap_or(MAX_LISTED).clamp(1, MAX_LISTED);
    let log = audited(&s, &who, "incidents.data").await?;
    let text = f.text.map(|t| t.to_lowercase()).filter(|t| !t.is_empty());
    let (decrypted, total, matching, list) = super::with_tally(&s, &log, move |t| {
        let hit = |i: &&warden_store::audit::IncidentView| {
            f.severity
                .as_ref()
                .is_none_or(|v| v.is_empty() || *v == i.severity)
                && match state.as_str() {
                    "open" => i.acknowledged.is_none(),
                    "acknowledged" => i.acknowledged.is_some(),
                    _ => true,
                }
                && text.as_ref().is_none_or(|x| {
                    [
                        Some(i.summary.as_str()),
                        Some(i.detector.as_str()),
                        i.principal.as_deref(),
                        i.ip.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .any(|v| v.to_lowercase().contains(x.as_str()))
                })
        };
        let all = t.incidents();
        let matching = all.iter().filter(hit).count();
        let list: Vec<_> = all.iter().rev().filter(hit).take(limit).cloned().collect();
        (t.decrypts(), all.len(), matching, list)
    })
    .await?;
    Ok(Json(json!({
        "decrypted": decrypted, "total": total, "matching": matching, "incidents": list,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    note: String,
}

/// `POST /dashboard/api/incidents/{index}/ack` (the session's CSRF token in
/// `X-CSRF-Token`): an `incident.ack` entry.
pub(crate) async fn ack(
    State(s): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    PathIn(index): PathIn<u64>,
    JsonIn(body): JsonIn<AckBody>,
) -> Result<Response, ApiError> {
    if let Some(refused) = csrf_from(&who, &headers) {
        return Ok(refused);
    }
    let r = s
        .manager
        .ack_incident(&who.caller, index, &body.note)
        .await?;
    Ok(Json(json!({"incident": index, "acknowledged": true, "entry": r.index})).into_response())
}
