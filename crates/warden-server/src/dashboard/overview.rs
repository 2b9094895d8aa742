//! The overview: accesses per hour and per day (granted and denied), refused
//! authentications, open incidents by severity, the latest scheduled verification
//! (red, naming the indexes, when it found anything), each key epoch's span (over two
//! hours flagged), how far each SIEM sink lags, the ledger's size and its latest signed
//! checkpoint. `/dashboard/api/live` streams the same numbers (server-sent events)
//! whenever the ledger grows, so new denials and incidents show within a second or two.

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
<section aria-labelledby=\"h-verify\"><h2 id=\"h-verify\">Verification</h2><p id=\"verification\"></p></section>\
<section aria-labelledby=\"h-ledger\"><h2 id=\"h-ledger\">Ledger</h2><dl id=\"ledger\"></dl></section>\
<section aria-labelledby=\"h-hours\"><h2 id=\"h-hours\">Accesses per hour (last 48 hours, UTC)</h2>\
<div id=\"chart-hours\" class=\"chart\" role=\"img\" aria-label=\"Granted and denied accesses per hour; the table below holds the same numbers\"></div>\
<details><summary>The chart's numbers</summary><table id=\"table-hours\"></table></details></section>\
<section aria-labelledby=\"h-days\"><h2 id=\"h-days\">Accesses per day (last 30 days, UTC)</h2><table id=\"table-days\"></table></section>\
<section aria-labelledby=\"h-incidents\"><h2 id=\"h-incidents\">Open incidents by severity</h2><table id=\"table-incidents\"></table></section>\
<section aria-labelledby=\"h-epochs\"><h2 id=\"h-epochs\">Key rotation (latest epochs)</h2><table id=\"table-epochs\"></table></section>\
<section aria-labelledby=\"h-siem\"><h2 id=\"h-siem\">SIEM export</h2><table id=\"table-sinks\"></table></section>";

/// Longest wait between two looks at the ledger for the live stream.
const LIVE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

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
    Ok(Json(snapshot(&s, &log).await?.1).into_response())
}

/// `GET /dashboard/api/live`: the overview's numbers as server-sent events (`overview`),
/// at once and then whenever the ledger has grown, looking at most every second. Opening
/// the stream is one audited read; it ends when the session ends or its token stops
/// authenticating (the browser then reconnects, and is sent to sign in), and when the
/// server stops.
pub(crate) async fn live(State(s): State<AppState>, who: Signed) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let log = audited(&s, &who, "overview.live").await?;
    let ip = who.caller.ip;
    let cookie = who.cookie;
    let start = (s, log, cookie, ip, None::<u64>);
    let stream = futures_util::stream::unfold(start, |(s, log, cookie, ip, last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(LIVE_TICK).await;
            }
            if s.dashboard.closing() {
                return None;
            }
            let open = s.dashboard.sessions.get(&cookie)?;
            let headers = axum::http::HeaderMap::new();
            if crate::authenticate_token(&s, &headers, ip, Some(open.token.as_str()))
                .await
                .is_err()
            {
                s.dashboard.sessions.end(&cookie);
                return None;
            }
            let (size, v) = snapshot(&s, &log).await.ok()?;
            if last == Some(size) {
                continue;
            }
            let ev = Event::default().event("overview").json_data(v).ok()?;
            return Some((
                Ok::<_, std::convert::Infallible>(ev),
                (s, log, cookie, ip, Some(size)),
            ));
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Brings the tally up to date and builds the overview: the ledger's size counted, and
/// the numbers.
async fn snapshot(s: &AppState, log: &std::path::Path) -> Result<(u64, Value), ApiError> {
    let dash = std::sync::Arc::clone(&s.dashboard);
    let path = log.to_path_buf();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    super::with_tally(s, log, move |t| -> Result<(u64, Value), StoreError> {
        let sinks = dash.sinks();
        let cp = warden_store::audit::latest_checkpoint(&path)?;
        Ok((t.size(), build(t, cp.as_ref(), &sinks, now)))
    })
    .await?
    .map_err(|e| ApiError::Internal(e.to_string()))
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

fn build(
    t: &Tally,
    cp: Option<&warden_core::record::CheckpointRecord>,
    sinks: &[warden_store::report::SinkPosition],
    now: u64,
) -> Value {
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
    // Severities with no open incident left are not shown.
    let open: BTreeMap<&String, u64> = t
        .open_incidents()
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k, *n))
        .collect();
    let acknowledged = t.acknowledged();
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
    let sinks: Vec<Value> = sinks
        .iter()
        .map(|p| {
            json!({"sink": p.sink, "format": p.format, "next": p.next,
                        "behind": t.size().saturating_sub(p.next)})
        })
        .collect();
    json!({
        "decrypted": t.decrypts(),
        "counting": {"counted": t.size(), "behind": t.behind()},
        "verification": t.verification(),
        "sinks": sinks,
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
