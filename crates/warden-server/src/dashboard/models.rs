//! Models: the registry's inventory (every version with its stage, root digest, signer,
//! validation and approval, provenance, aliases and files; revoked versions with the
//! reason) and who accessed each version in the last 30 days, granted and denied, from
//! the tally (so only when the server holds an auditor key: who accessed what is sealed
//! in the entries).

use super::{Signed, audited, pages};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use warden_store::usage::{Counts, DAY_MICROS};

/// Days of accesses shown per version.
const WINDOW_DAYS: u64 = 30;

const MAIN: &str = "\
<section aria-labelledby=\"h-models\"><h2 id=\"h-models\">Inventory</h2>\
<p>Every registered version; revoked versions are marked. Who accessed each version \
covers the last 30 days (UTC), granted and denied.</p>\
<div class=\"wide\"><table id=\"table-models\"></table></div></section>\
<section aria-labelledby=\"h-revoked\"><h2 id=\"h-revoked\">Revoked versions</h2>\
<table id=\"table-revoked\"></table></section>";

/// `GET /dashboard/models`.
pub(crate) async fn page(State(s): State<AppState>, who: Signed) -> Response {
    if let Err(e) = audited(&s, &who, "models").await {
        return e.into_response();
    }
    pages::shell("Models", "/dashboard/models", &who.csrf, MAIN).into_response()
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A time as RFC 3339 (UTC, microseconds), from microseconds since the Unix epoch.
pub(crate) fn iso_micros(t: u64) -> String {
    warden_core::time::Timestamp::from_micros(t).map_or_else(String::new, |t| t.to_string())
}

/// [`iso_micros`] of seconds since the Unix epoch (`None` before 1970).
pub(crate) fn iso_secs(t: i64) -> Option<String> {
    u64::try_from(t)
        .ok()
        .map(|s| iso_micros(s.saturating_mul(1_000_000)))
}

/// `GET /dashboard/api/models`: the inventory, each version with who accessed it.
pub(crate) async fn data(State(s): State<AppState>, who: Signed) -> Result<Response, ApiError> {
    let versions = s
        .manager
        .inventory(
            &who.caller,
            json!({"op": "dashboard", "view": "models.data"}),
        )
        .await?;
    let log = s.manager.ledger_state().0.to_path_buf();
    // Whole UTC days: today and the 29 before it.
    let since = (now_micros() / DAY_MICROS).saturating_sub(WINDOW_DAYS - 1) * DAY_MICROS;
    let mut registered: HashMap<String, HashSet<String>> = HashMap::new();
    for v in &versions {
        registered
            .entry(v.model.clone())
            .or_default()
            .insert(v.version.clone());
    }
    let (decrypted, behind, users) = super::with_tally(&s, &log, move |t| {
        let users = t.usage().version_users_of(since, |m, v| {
            registered.get(m).is_some_and(|vs| vs.contains(v))
        });
        (t.decrypts(), t.behind(), users)
    })
    .await?;
    let mut by_version: BTreeMap<(String, String), Vec<(String, Counts)>> = BTreeMap::new();
    for ((model, version, user), c) in users {
        by_version
            .entry((model, version))
            .or_default()
            .push((user, c));
    }
    let list: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let who: Vec<Value> = by_version
                .remove(&(v.model.clone(), v.version.clone()))
                .unwrap_or_default()
                .into_iter()
                .map(|(user, c)| {
                    json!({"user": user, "granted": c.granted, "denied": c.denied,
                           "last": iso_micros(c.last)})
                })
                .collect();
            json!({
                "model": v.model, "version": v.version, "stage": v.state,
                "signer": v.registrant, "root_digest": v.root_digest,
                "registered": iso_secs(v.created_at),
                "validated_by": v.validated_by, "approved_by": v.approved_by,
                "revoked": v.revoked_reason.is_some(), "revoked_reason": v.revoked_reason,
                "aliases": v.aliases, "files": v.files, "provenance": v.provenance,
                "accessed_by": who,
            })
        })
        .collect();
    Ok(Json(json!({
        "decrypted": decrypted,
        "behind": behind,
        "window_days": WINDOW_DAYS,
        "versions": list,
    }))
    .into_response())
}
