//! Incidents: every incident the ledger holds (decrypted when the server holds an
//! auditor key), filterable on the page; each one's evidence, playbook actions and
//! acknowledgement; and acknowledging one, which writes an `incident.ack` entry through
//! the same check and entry as `POST /v1/incidents/{index}/ack`.

use super::{Signed, audited, csrf_from, pages};
use crate::{ApiError, AppState, JsonIn, PathIn};
use axum::Json;
use axum::extract::State;
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

/// `GET /dashboard/api/incidents`: every incident, newest first.
pub(crate) async fn data(State(s): State<AppState>, who: Signed) -> Result<Response, ApiError> {
    let log = audited(&s, &who, "incidents.data").await?;
    let (decrypted, mut list) =
        super::with_tally(&s, &log, |t| (t.decrypts(), t.incidents().to_vec())).await?;
    list.reverse();
    Ok(Json(json!({"decrypted": decrypted, "incidents": list})).into_response())
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
