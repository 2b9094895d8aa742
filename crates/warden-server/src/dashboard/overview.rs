//! The overview: accesses per hour and per day (granted and denied), refused
//! authentications, open incidents by severity, each key epoch's span (over two hours
//! flagged), the ledger's size and its latest signed checkpoint.

use super::{Signed, audited, pages};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use warden_core::time::Timestamp;
use warden_store::error::StoreError;
use warden_store::tally::{HOUR_MICROS, HourCounts, Tally, by_day};

/// Hours shown in the hourly chart.
const HOURS: u64 = 48;
/// Days in the daily table.
const DAYS: u64 = 30;
/// Epochs in the rotation timeline.
const EPOCHS: usize = 48;
/// The policy's longest key epoch: an epoch whose entries span more is flagged.
const MAX_EPOCH_MICROS: u64 = 2 * HOUR_MICROS;

const MAIN: &str = "\
<section aria-labelledby=\"h-ledger\"><h2 id=\"h-ledger\">Ledger</h2><dl id=\"ledger\"></dl></section>\
<section aria-labelledby=\"h-hours\"><h2 id=\"h-hours\">Accesses per hour (last 48 hours, UTC)</h2>\
<div id=\"chart-hours\" class=\"chart\" role=\"img\" aria-label=\"Granted and denied accesses per hour; the table below holds the same numbers\"></div>\
<details><summary>The chart's numbers</summary><table id=\"table-hours\"></table></details></section>\
<section aria-labelledby=\"h-days\"><h2 id=\"h-days\">Accesses per day (last 30 days, UTC)</h2><table id=\"table-days\"></table></section>\
<section aria-labelledby=\"h-incidents\"><h2 id=\"h-incidents\">Open incidents by severity</h2><table id=\"table-incidents\"></table></section>\
<section aria-labelledby=\"h-epochs\"><h2 id=\"h-epochs\">Key rotation (latest epochs)</h2><table id=\"table-epochs\"></table></section>";

/// `GET /dashboard`.
pub(crate) async fn page(State(s): State<AppState>, who: Signed) -> Response {
    if let Err(e) = audited(&s, &who, "overview").await {
        return e.into_response();
    }
    pages::shell("Overview", "/dashboard", &who.csrf, MAIN).into_response()
}

/// `GET /dashboard/api/overview`: the overview's numbers.
pub(crate) async fn data(State(s): State<AppState>, who: Signed) -> Result<Response, ApiError> {
    let log = audited(&s, &who, "overview.data").await?;
    let tally = std::sync::Arc::clone(&s.dashboard.tally);
    let auditor = s.auditor.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let v = tokio::task::spawn_blocking(move || -> Result<Value, StoreError> {
        let mut g = tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = g.get_or_insert_with(|| Tally::new(&log, auditor));
        t.refresh()?;
        let cp = warden_store::audit::latest_checkpoint(&log)?;
        Ok(build(t, cp.as_ref(), now))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(v).into_response())
}

fn time(micros: u64) -> String {
    Timestamp::from_micros(micros).map_or_else(String::new, |t| t.to_string())
}

/// `c` as JSON, with `label` (the hour's or day's name) and `t` (its start, Unix seconds).
fn counts(c: &HourCounts, label: (&str, String), t: u64) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(label.0.into(), label.1.into());
    m.insert("t".into(), t.into());
    for (k, v) in [
        ("granted", c.granted),
        ("denied", c.denied),
        ("auth_failures", c.auth_failures),
        ("incidents", c.incidents),
        ("entries", c.entries),
    ] {
        m.insert(k.into(), v.into());
    }
    Value::Object(m)
}

fn build(t: &Tally, cp: Option<&warden_core::record::CheckpointRecord>, now: u64) -> Value {
    let last_hour = t
        .hours_from(0)
        .last()
        .map_or(0, |(h, _)| h)
        .max(now / HOUR_MICROS);
    let first_hour = last_hour.saturating_sub(HOURS - 1);
    let got: BTreeMap<u64, HourCounts> = t.hours_from(first_hour).collect();
    let hours: Vec<Value> = (first_hour..=last_hour)
        .map(|h| {
            let c = got.get(&h).copied().unwrap_or_default();
            counts(&c, ("hour", time(h * HOUR_MICROS)), h * 3600)
        })
        .collect();
    let last_day = last_hour / 24;
    let first_day = last_day.saturating_sub(DAYS - 1);
    let days_got = by_day(t.hours_from(first_day * 24));
    let days: Vec<Value> = (first_day..=last_day)
        .rev()
        .map(|d| {
            let c = days_got.get(&d).copied().unwrap_or_default();
            let day = time(d * 24 * HOUR_MICROS)
                .get(..10)
                .unwrap_or_default()
                .to_owned();
            counts(&c, ("day", day), d * 86_400)
        })
        .collect();
    let kinds = t.kinds();
    let kind = |k: &str| kinds.get(k).copied().unwrap_or(0);
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    let mut acknowledged = 0u64;
    for i in t.incidents() {
        if i.acknowledged.is_some() {
            acknowledged += 1;
        } else {
            *open.entry(i.severity.clone()).or_default() += 1;
        }
    }
    let epochs: Vec<Value> = t
        .epochs()
        .iter()
        .rev()
        .take(EPOCHS)
        .map(|e| {
            let span = e.end.saturating_sub(e.start);
            json!({"epoch": e.epoch, "start": time(e.start), "end": time(e.end),
                   "seconds": span / 1_000_000, "entries": e.entries,
                   "over": span > MAX_EPOCH_MICROS})
        })
        .collect();
    json!({
        "decrypted": t.decrypts(),
        "ledger": {
            "size": t.size(),
            "removed_by_retention": t.removed(),
            "checkpoint": cp.map(|r| json!({"size": r.size, "epoch": r.epoch, "note": r.note})),
        },
        "totals": {
            "granted": kind("model.access"), "denied": kind("model.denied"),
            "auth_failures": kind("auth.failure"), "incidents": kind("incident"),
            "entries": t.size().saturating_sub(t.removed()),
        },
        "kinds": kinds,
        "hours": hours,
        "days": days,
        "incidents": {"open": open, "total": t.incidents().len(), "acknowledged": acknowledged},
        "epochs": epochs,
        "max_epoch_seconds": MAX_EPOCH_MICROS / 1_000_000,
    })
}
