//! Access review: every principal with its roles, grants and tokens (scopes, expiry,
//! last use), what has gone unused highlighted, a CSV export, and the reviewer's
//! sign-off, which is a ledger entry (`access.review`) carrying the SHA-256 of the
//! export it signs off, so the record says exactly what was reviewed.
//!
//! What counts as used comes from the ledger (allowed actions, by principal and by
//! credential; see [`warden_store::usage`]) and from each token's `last_used`. Two
//! findings are highlighted:
//! - **stale**: a principal, grant or token older than 90 days and not exercised in the
//!   last 90 days;
//! - **broader than used**: a grant on every model (`*`) exercised in the window on some
//!   models only, or a token scope its token never exercised in the window although
//!   the token was used for others.
//!
//! Roles are listed, not judged: what a role allows is the policy's, and the policy is
//! reviewed as code.

use super::models::{iso_micros, iso_secs, now_micros};
use super::{Signed, attachment, audited, csrf_from, pages};
use crate::{ApiError, AppState, JsonIn};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use warden_registry::db::TokenInfo;
use warden_registry::review::{Directory, GivenGrant};
use warden_store::usage::{DAY_MICROS, Usage};

/// The review's window: unused this long is stale.
pub(crate) const WINDOW_DAYS: u64 = 90;

/// The ledger actions a token scope allows (`None`: not judged from the ledger).
fn scope_actions(scope: &str) -> Option<&'static [&'static str]> {
    match scope {
        "model:read" => Some(&["read"]),
        "model:load" => Some(&["load"]),
        "model:register" => Some(&["register"]),
        "model:generate" => Some(&["generate"]),
        "audit:read" => Some(&["audit"]),
        "model:admin" => Some(&["write", "deploy", "retire", "revoke"]),
        _ => None,
    }
}

/// One grant as reviewed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct GrantReview {
    pub model: String,
    pub action: String,
    pub expires_at: String,
    pub expired: bool,
    pub created_by: String,
    pub created_at: String,
    pub last_used: Option<String>,
    /// `stale`, `broader` or nothing.
    pub flag: Option<&'static str>,
    /// For a grant on every model: the models it was exercised on in the window.
    pub used_on: Option<BTreeSet<String>>,
}

/// One token as reviewed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct TokenReview {
    pub id: String,
    pub scopes: Vec<String>,
    pub expires_at: String,
    pub expired: bool,
    pub revoked: bool,
    pub created_at: String,
    pub last_used: Option<String>,
    /// Scopes not exercised in the window by this token although it was used.
    pub unused_scopes: Vec<String>,
    pub flag: Option<&'static str>,
}

/// One principal as reviewed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct PrincipalReview {
    pub principal: String,
    pub service: bool,
    pub active: bool,
    pub roles: Vec<String>,
    pub created_at: String,
    pub last_use: Option<String>,
    pub flag: Option<&'static str>,
    pub grants: Vec<GrantReview>,
    pub tokens: Vec<TokenReview>,
}

/// The UTC day of a time in microseconds: when something was last used is given to the
/// day, so a review (and the digest its sign-off records) does not change with every
/// request, the reviewer's own included.
fn day_of(t: u64) -> String {
    let s = iso_micros(t);
    s.get(..10).map_or(s.clone(), str::to_owned)
}

/// Seconds to microseconds (0 before 1970).
fn micros(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0).saturating_mul(1_000_000)
}

/// The review of `dir` against `usage` at `now` (microseconds).
pub(crate) fn review(dir: &Directory, usage: &Usage, now: u64) -> Vec<PrincipalReview> {
    let since = now.saturating_sub(WINDOW_DAYS * DAY_MICROS);
    let old = |created_secs: i64| micros(created_secs) <= since;
    dir.principals
        .iter()
        .map(|p| {
            let name = p.name.as_str();
            let grants: Vec<GrantReview> = dir
                .grants
                .iter()
                .filter(|g| g.grant.principal == name)
                .map(|g| grant(g, usage, now, since))
                .collect();
            let tokens: Vec<TokenReview> = dir
                .tokens
                .iter()
                .filter(|t| t.principal == name)
                .map(|t| token(t, usage, now, since))
                .collect();
            let last = [
                usage.last_use(name),
                dir.tokens
                    .iter()
                    .filter(|t| t.principal == name)
                    .filter_map(|t| t.last_used.map(micros))
                    .max(),
            ]
            .into_iter()
            .flatten()
            .max();
            let stale = p.active && old(p.created_at) && last.is_none_or(|l| l < since);
            PrincipalReview {
                principal: p.name.clone(),
                service: p.service,
                active: p.active,
                roles: p.roles.clone(),
                created_at: iso_secs(p.created_at).unwrap_or_default(),
                last_use: last.map(day_of),
                flag: stale.then_some("stale"),
                grants,
                tokens,
            }
        })
        .collect()
}

fn grant(g: &GivenGrant, usage: &Usage, now: u64, since: u64) -> GrantReview {
    let r = &g.grant;
    let every = r.model == "*";
    let last = usage.last_action(
        &r.principal,
        &r.action,
        (!every).then_some(r.model.as_str()),
    );
    let expired = micros(r.expires_at) <= now;
    let used = last.is_some_and(|l| l >= since);
    let used_on = every.then(|| usage.models_used(&r.principal, &r.action, since));
    let flag = if expired {
        None
    } else if !used && micros(g.created_at) <= since {
        Some("stale")
    } else if used && every {
        Some("broader")
    } else {
        None
    };
    GrantReview {
        model: r.model.clone(),
        action: r.action.clone(),
        expires_at: iso_secs(r.expires_at).unwrap_or_default(),
        expired,
        created_by: g.created_by.clone(),
        created_at: iso_secs(g.created_at).unwrap_or_default(),
        last_used: last.map(day_of),
        flag,
        used_on,
    }
}

fn token(t: &TokenInfo, usage: &Usage, now: u64, since: u64) -> TokenReview {
    let credential = format!("tok:{}", t.id);
    let expired = micros(t.expires_at) <= now;
    let last = t.last_used.map(micros);
    let used_in_window = last.is_some_and(|l| l >= since);
    let unused_scopes: Vec<String> = if used_in_window {
        t.scopes
            .iter()
            .filter(|s| {
                scope_actions(s).is_some_and(|acts| {
                    !acts.iter().any(|a| {
                        usage
                            .credential_last(&credential, a)
                            .is_some_and(|l| l >= since)
                    })
                })
            })
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let live = !t.revoked && !expired;
    let flag = if !live {
        None
    } else if !used_in_window && micros(t.created_at) <= since {
        Some("stale")
    } else if !unused_scopes.is_empty() {
        Some("broader")
    } else {
        None
    };
    TokenReview {
        id: t.id.clone(),
        scopes: t.scopes.clone(),
        expires_at: iso_secs(t.expires_at).unwrap_or_default(),
        expired,
        revoked: t.revoked,
        created_at: iso_secs(t.created_at).unwrap_or_default(),
        last_used: last.map(day_of),
        unused_scopes,
        flag,
    }
}

/// RFC 4180 field.
fn field(s: &str) -> String {
    // A leading =, +, - or @ would be read as a formula by a spreadsheet.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV header.
pub(crate) const CSV_HEAD: &str =
    "principal,kind,name,model,actions,expires_at,created_at,last_used,flag\n";

/// The review as CSV: a `principal` row, then a row per role, grant and token.
pub(crate) fn csv(rows: &[PrincipalReview]) -> String {
    let mut out = String::from(CSV_HEAD);
    let mut line = |cells: [&str; 9]| {
        let v: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&v.join(","));
        out.push('\n');
    };
    for p in rows {
        let kind = if p.service { "service" } else { "person" };
        let state = match (p.active, p.flag) {
            (false, _) => "suspended",
            (true, Some(f)) => f,
            (true, None) => "",
        };
        let last = p.last_use.as_deref().unwrap_or_default();
        line([
            &p.principal,
            "principal",
            kind,
            "",
            "",
            "",
            &p.created_at,
            last,
            state,
        ]);
        for r in &p.roles {
            line([&p.principal, "role", r, "", "", "", "", "", ""]);
        }
        for g in &p.grants {
            let flag = if g.expired {
                "expired"
            } else {
                g.flag.unwrap_or_default()
            };
            line([
                &p.principal,
                "grant",
                "",
                &g.model,
                &g.action,
                &g.expires_at,
                &g.created_at,
                g.last_used.as_deref().unwrap_or_default(),
                flag,
            ]);
        }
        for t in &p.tokens {
            let flag = match (t.revoked, t.expired, t.flag) {
                (true, _, _) => "revoked".to_owned(),
                (_, true, _) => "expired".to_owned(),
                (_, _, Some("broader")) => format!("broader: {}", t.unused_scopes.join(" ")),
                (_, _, f) => f.unwrap_or_default().to_owned(),
            };
            line([
                &p.principal,
                "token",
                &t.id,
                "",
                &t.scopes.join(" "),
                &t.expires_at,
                &t.created_at,
                t.last_used.as_deref().unwrap_or_default(),
                &flag,
            ]);
        }
    }
    out
}

const MAIN: &str = "\
<section aria-labelledby=\"h-review\"><h2 id=\"h-review\">Principals, grants and tokens</h2>\
<p>Stale: older than 90 days and not used in the last 90. Broader than used: a grant on \
every model used on some only, or a token scope the token never used while it used others. \
<a id=\"csv\" href=\"/dashboard/access-review.csv\" download>Download as CSV</a></p>\
<div class=\"wide\"><table id=\"table-review\"></table></div></section>\
<section aria-labelledby=\"h-signoff\"><h2 id=\"h-signoff\">Sign-off</h2>\
<form id=\"signoff\"><label for=\"signoff-note\">Reviewer's note</label>\
<textarea id=\"signoff-note\" maxlength=\"4096\" required></textarea>\
<button type=\"submit\">Sign off this review</button></form>\
<p id=\"signoff-result\" role=\"status\"></p></section>";

/// `GET /dashboard/access-review`.
pub(crate) async fn page(State(s): State<AppState>, who: Signed) -> Response {
    if let Err(e) = audited(&s, &who, "access-review").await {
        return e.into_response();
    }
    pages::shell("Access review", "/dashboard/access-review", &who.csrf, MAIN).into_response()
}

/// The review now, read under `view` (an `audit.read` entry).
async fn current(
    s: &AppState,
    who: &Signed,
    view: &str,
) -> Result<(bool, [u64; 2], Vec<PrincipalReview>), ApiError> {
    let dir = s
        .manager
        .directory(&who.caller, json!({"op": "dashboard", "view": view}))
        .await?;
    let log = s.manager.ledger_state().0.to_path_buf();
    let now = now_micros();
    super::with_tally(s, &log, move |t| {
        (
            t.decrypts(),
            [t.usage().dropped(), t.behind()],
            review(&dir, t.usage(), now),
        )
    })
    .await
}

/// `GET /dashboard/api/access-review`.
pub(crate) async fn data(State(s): State<AppState>, who: Signed) -> Result<Response, ApiError> {
    let (decrypted, [dropped, behind], rows) = current(&s, &who, "access-review.data").await?;
    Ok(Json(json!({
        "decrypted": decrypted, "window_days": WINDOW_DAYS, "behind": behind,
        "uses_not_counted": dropped, "principals": rows,
    }))
    .into_response())
}

/// `GET /dashboard/access-review.csv`.
pub(crate) async fn export(State(s): State<AppState>, who: Signed) -> Result<Response, ApiError> {
    let (_, _, rows) = current(&s, &who, "access-review.csv").await?;
    Ok(attachment(
        csv(&rows).into_bytes(),
        "text/csv; charset=utf-8",
        "access-review.csv",
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignOff {
    note: String,
}

/// Longest sign-off note.
const MAX_NOTE: usize = 4096;

/// `POST /dashboard/api/access-review/sign-off` (the session's CSRF token in
/// `X-CSRF-Token`): an `access.review` entry naming the reviewer, the note, the
/// findings' counts and the SHA-256 of the CSV export as it stands now.
pub(crate) async fn sign_off(
    State(s): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    JsonIn(body): JsonIn<SignOff>,
) -> Result<Response, ApiError> {
    if let Some(refused) = csrf_from(&who, &headers) {
        return Ok(refused);
    }
    let note = body.note.trim();
    if note.is_empty() || note.len() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!(
            "a sign-off needs a note of 1 to {MAX_NOTE} bytes"
        )));
    }
    let (_, _, rows) = current(&s, &who, "access-review.sign-off").await?;
    let export = csv(&rows);
    let digest = warden_core::hex::encode(&warden_core::merkle::sha256(export.as_bytes()));
    let count = |f: &dyn Fn(&PrincipalReview) -> usize| rows.iter().map(f).sum::<usize>();
    let details = json!({
        "op": "access.review.sign-off",
        "note": note,
        "window_days": WINDOW_DAYS,
        "principals": rows.len(),
        "grants": count(&|p| p.grants.len()),
        "tokens": count(&|p| p.tokens.len()),
        "stale": count(&|p| usize::from(p.flag.is_some())
            + p.grants.iter().filter(|g| g.flag == Some("stale")).count()
            + p.tokens.iter().filter(|t| t.flag == Some("stale")).count()),
        "broader": count(&|p| p.grants.iter().filter(|g| g.flag == Some("broader")).count()
            + p.tokens.iter().filter(|t| t.flag == Some("broader")).count()),
        "csv_sha256": digest,
    });
    let r = s.manager.sign_off_review(&who.caller, details).await?;
    Ok(Json(json!({"signed_off": true, "entry": r.index, "csv_sha256": digest})).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_registry::db::{GrantRow, PrincipalRow};
    use warden_store::usage::Seen;

    const DAY: i64 = 86_400;
    const NOW: i64 = 400 * DAY;

    fn principal(name: &str, created: i64) -> PrincipalRow {
        PrincipalRow {
            name: name.into(),
            service: false,
            active: true,
            signing_alg: None,
            signing_key: None,
            roles: vec!["ml-engineer".into()],
            created_at: created,
        }
    }

    fn given(p: &str, model: &str, action: &str, created: i64) -> GivenGrant {
        GivenGrant {
            grant: GrantRow {
                principal: p.into(),
                model: model.into(),
                action: action.into(),
                expires_at: NOW + 30 * DAY,
            },
            created_by: "admin".into(),
            created_at: created,
        }
    }

    fn token(id: &str, p: &str, scopes: &[&str], created: i64, last: Option<i64>) -> TokenInfo {
        TokenInfo {
            id: id.into(),
            principal: p.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: NOW + DAY,
            created_at: created,
            created_by: "admin".into(),
            revoked: false,
            last_used: last,
        }
    }

    fn used(u: &mut Usage, who: &str, action: &str, model: &str, cred: &str, at: i64) {
        u.add(
            "model.access",
            micros(at),
            &Seen {
                user: Some(who.into()),
                model: Some(model.into()),
                version: Some("1".into()),
                action: Some(action.into()),
                decision: Some("allow".into()),
                credential: Some(cred.into()),
            },
        );
    }

    #[test]
    fn grants_and_tokens_unused_for_ninety_days_are_stale_and_new_ones_are_not() {
        let dir = Directory {
            principals: vec![principal("old", 0), principal("new", NOW - DAY)],
            grants: vec![
                given("old", "m", "load", 0),
                given("new", "m", "load", NOW - DAY),
            ],
            tokens: vec![
                token("t1", "old", &["model:load"], 0, Some(NOW - 100 * DAY)),
                token("t2", "new", &["model:load"], NOW - DAY, None),
            ],
        };
        let mut u = Usage::default();
        // The old principal last loaded 100 days ago: outside the window.
        used(&mut u, "old", "load", "m", "tok:t1", NOW - 100 * DAY);
        let r = review(&dir, &u, micros(NOW));
        assert_eq!(r[0].flag, Some("stale"));
        assert_eq!(r[0].grants[0].flag, Some("stale"));
        assert_eq!(r[0].tokens[0].flag, Some("stale"));
        assert!(r[0].grants[0].last_used.is_some());
        assert_eq!(r[1].flag, None);
        assert_eq!(r[1].grants[0].flag, None);
        assert_eq!(r[1].tokens[0].flag, None);
    }

    #[test]
    fn a_grant_on_every_model_used_on_one_and_a_token_scope_never_used_are_broader() {
        let dir = Directory {
            principals: vec![principal("svc", 0)],
            grants: vec![given("svc", "*", "load", 0), given("svc", "m", "read", 0)],
            tokens: vec![token(
                "t",
                "svc",
                &["model:load", "model:admin", "audit:write"],
                0,
                Some(NOW - DAY),
            )],
        };
        let mut u = Usage::default();
        used(&mut u, "svc", "load", "m", "tok:t", NOW - DAY);
        let r = review(&dir, &u, micros(NOW));
        let star = &r[0].grants[0];
        assert_eq!(star.flag, Some("broader"));
        assert_eq!(
            star.used_on.as_ref().unwrap().iter().collect::<Vec<_>>(),
            ["m"]
        );
        // read on m was never used and the grant is old.
        assert_eq!(r[0].grants[1].flag, Some("stale"));
        // model:admin was never used by the token; audit:write is not judged.
        assert_eq!(r[0].tokens[0].unused_scopes, ["model:admin"]);
        assert_eq!(r[0].tokens[0].flag, Some("broader"));
        assert_eq!(r[0].flag, None);
        let text = csv(&r);
        assert!(
            text.contains(",token,t,,model:load model:admin audit:write,"),
            "{text}"
        );
        assert!(text.contains("broader: model:admin"), "{text}");
    }

    #[test]
    fn a_csv_field_that_a_spreadsheet_would_run_is_quoted_as_text() {
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("@cmd"), "'@cmd");
        assert_eq!(field("a,b"), "\"a,b\"");
    }
}
