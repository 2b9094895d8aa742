//! The reports archive: every signed compliance report under the data directory's
//! `reports/` from the last year, each file's detached signature checked here against
//! the log's root public key and shown; downloads of each format and its `.sig`; and
//! "generate now", which runs the scheduled report (signed by the root key the server
//! holds) and records who asked for it.
//!
//! A verdict is kept per file and reused while neither the file nor its signature
//! changes (length and modification time), so a page view reads only new reports.

use super::{Signed, attachment, audited, audited_with, csrf_from, pages, problem};
use crate::{ApiError, AppState, PathIn};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use warden_core::epoch::RootPublic;
use warden_store::report::ReportSignature;

/// Runs a report now for the principal named; answers the files written (names under
/// `reports/`) or why it could not.
pub type GenerateReport =
    Box<dyn Fn(String) -> BoxFuture<'static, Result<Vec<String>, String>> + Send + Sync>;

/// The formats a report is archived in.
const FORMATS: &[&str] = &["json", "csv", "html"];
/// Largest report whose signature is checked or which is downloaded (as `warden report
/// verify` reads).
const MAX_REPORT: u64 = 256 << 20;
/// Largest signature file read.
const MAX_SIG: u64 = 64 << 10;
/// Largest JSON report whose summary is read for the list.
const MAX_SUMMARY: u64 = 16 << 20;
/// How far back the archive page lists reports.
const YEAR: Duration = Duration::from_secs(366 * 86_400);

/// Where the reports are, the key their signatures are checked with, and how to make a
/// new one (absent when this server cannot sign).
pub struct Archive {
    dir: PathBuf,
    root: RootPublic,
    generate: Option<GenerateReport>,
    /// Per file: what it was when checked, and the verdict.
    checked: Mutex<HashMap<String, Checked>>,
    /// Held while a report is being generated: one at a time.
    running: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Checked {
    seen: (u64, SystemTime, Option<(u64, SystemTime)>),
    signature: &'static str,
    problem: Option<String>,
    summary: Option<Value>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// The archive in `dir`, checked against `root`; `generate` makes a report now.
    #[must_use]
    pub fn new(dir: PathBuf, root: RootPublic, generate: Option<GenerateReport>) -> Self {
        Self {
            dir,
            root,
            generate,
            checked: Mutex::default(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Every report from the last year, newest first, grouped by name (one row per
    /// report, one entry per format), each file's signature checked.
    fn list(&self) -> Vec<Value> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        let mut by_name: BTreeMap<String, Vec<(String, String, std::fs::Metadata)>> =
            BTreeMap::new();
        for e in rd.flatten() {
            let Some(file) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((stem, ext)) = report_name(&file) else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let recent = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_none_or(|age| age <= YEAR);
            if recent {
                by_name.entry(stem.to_owned()).or_default().push((
                    file.clone(),
                    ext.to_owned(),
                    meta,
                ));
            }
        }
        let mut out: Vec<(SystemTime, Value)> = by_name
            .into_iter()
            .map(|(name, mut files)| {
                files.sort_by_key(|(_, ext, _)| FORMATS.iter().position(|f| f == ext));
                let mut summary = Value::Null;
                let mut newest = SystemTime::UNIX_EPOCH;
                let files: Vec<Value> = files
                    .iter()
                    .map(|(file, ext, meta)| {
                        let c = self.check(file, ext, meta);
                        if let Some(s) = c.summary {
                            summary = s;
                        }
                        newest = newest.max(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
                        json!({
                            "file": file, "format": ext, "bytes": meta.len(),
                            "signature": c.signature, "problem": c.problem,
                            "sig_file": (c.signature != "missing").then(|| format!("{file}.sig")),
                        })
                    })
                    .collect();
                (
                    newest,
                    json!({"name": name, "summary": summary, "files": files}),
                )
            })
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// The verdict on one file, from the cache while it and its signature are unchanged.
    fn check(&self, file: &str, ext: &str, meta: &std::fs::Metadata) -> Checked {
        let path = self.dir.join(file);
        let sig_path = self.dir.join(format!("{file}.sig"));
        let stamp =
            |m: &std::fs::Metadata| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        let sig_meta = std::fs::metadata(&sig_path)
            .ok()
            .filter(std::fs::Metadata::is_file);
        let seen = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            sig_meta.as_ref().map(stamp),
        );
        let mut cache = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cache.get(file)
            && c.seen == seen
        {
            return c.clone();
        }
        let bad = |what: &'static str, why: String| Checked {
            seen,
            signature: what,
            problem: Some(why),
            summary: None,
        };
        let c = match (sig_meta, meta.len() > MAX_REPORT) {
            (None, _) => bad("missing", "no signature beside it".into()),
            (Some(_), true) => bad("unchecked", "larger than 256 MiB".into()),
            (Some(sm), false) if sm.len() > MAX_SIG => {
                bad("invalid", "the signature file is too large".into())
            }
            (Some(_), false) => match (std::fs::read(&path), std::fs::read(&sig_path)) {
                (Ok(bytes), Ok(sig)) => {
                    let verdict = serde_json::from_slice::<ReportSignature>(&sig)
                        .map_err(|_| "the signature file is not a report signature".to_owned())
                        .and_then(|sig| {
                            warden_store::report::verify(&bytes, &sig, &self.root)
                                .map_err(|e| e.to_string())
                        });
                    let summary = (ext == "json" && meta.len() <= MAX_SUMMARY)
                        .then(|| summary(&bytes))
                        .flatten();
                    match verdict {
                        Ok(()) => Checked {
                            seen,
                            signature: "valid",
                            problem: None,
                            summary,
                        },
                        // A report that fails its check shows no figures: they are
                        // not the signed ones.
                        Err(why) => bad("invalid", why),
                    }
                }
                (Err(e), _) | (_, Err(e)) => bad("unchecked", format!("could not be read: {e}")),
            },
        };
        cache.insert(file.to_owned(), c.clone());
        c
    }
}

/// `(stem, format)` of a report's file name; `None` for anything else in `reports/`
/// (signatures, the verification state) and for names a link could not carry as-is.
fn report_name(file: &str) -> Option<(&str, &str)> {
    let (stem, ext) = file.rsplit_once('.')?;
    let plain = !stem.is_empty()
        && !stem.starts_with('.')
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (plain && FORMATS.contains(&ext)).then_some((stem, ext))
}

/// What the list shows of a JSON report: its period, when it was made, its totals.
fn summary(bytes: &[u8]) -> Option<Value> {
    let r: Value = serde_json::from_slice(bytes).ok()?;
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(&r, |v, k| v.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let len = |path: &[&str]| at(path).as_array().map_or(Value::Null, |a| json!(a.len()));
    Some(json!({
        "generated": at(&["generated"]),
        "from": at(&["period", "from"]),
        "to": at(&["period", "to"]),
        "entries": at(&["entries", "total"]),
        "granted": at(&["accesses", "granted"]),
        "denied": at(&["accesses", "denied"]),
        "incidents": at(&["incidents", "total"]),
        "invalid": len(&["integrity", "invalid"]),
        "rotation_violations": len(&["key_rotation", "violations"]),
    }))
}

const MAIN: &str = "\
<section aria-labelledby=\"h-generate\"><h2 id=\"h-generate\">New report</h2>\
<form id=\"generate\"><button type=\"submit\">Generate now</button></form>\
<p id=\"generate-hint\"></p></section>\
<section aria-labelledby=\"h-archive\"><h2 id=\"h-archive\">Reports of the last year</h2>\
<p>Each file's signature is checked on the server against the log's root public key; \
the same check runs anywhere with <code>warden report verify FILE</code>.</p>\
<div class=\"wide\"><table id=\"table-reports\"></table></div></section>";

/// 503: this server has no archive (or cannot sign a new report).
fn unavailable(why: &str) -> Response {
    problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why)
}

/// `GET /dashboard/reports`.
pub(crate) async fn page(State(s): State<AppState>, who: Signed) -> Response {
    if let Err(e) = audited(&s, &who, "reports").await {
        return e.into_response();
    }
    pages::shell("Reports", "/dashboard/reports", &who.csrf, MAIN).into_response()
}

/// `GET /dashboard/api/reports`: the archive, each file's signature checked.
pub(crate) async fn data(State(s): State<AppState>, who: Signed) -> Result<Response, ApiError> {
    audited(&s, &who, "reports.data").await?;
    let Some(a) = s.dashboard.reports.clone() else {
        return Ok(
            Json(json!({"archive": false, "generate": false, "reports": []})).into_response(),
        );
    };
    let can = a.generate.is_some();
    let reports = tokio::task::spawn_blocking(move || a.list())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({"archive": true, "generate": can, "reports": reports})).into_response())
}

/// `GET /dashboard/reports/file/{file}`: a report or its `.sig`, as a download.
pub(crate) async fn download(
    State(s): State<AppState>,
    who: Signed,
    PathIn(file): PathIn<String>,
) -> Result<Response, ApiError> {
    let report = file.strip_suffix(".sig").unwrap_or(&file);
    let Some((_, ext)) = report_name(report) else {
        return Err(ApiError::NotFound);
    };
    audited_with(&s, &who, json!({"view": "reports.download", "file": file})).await?;
    let Some(a) = &s.dashboard.reports else {
        return Ok(unavailable("this server keeps no report archive"));
    };
    let path = a.dir.join(&file);
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let limit = if report.len() == file.len() {
        MAX_REPORT
    } else {
        MAX_SIG
    };
    if !meta.is_file() || meta.len() > limit {
        return Err(ApiError::NotFound);
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("reading a report: {e}")))?;
    let ctype = match (report.len() == file.len(), ext) {
        (false, _) | (true, "json") => "application/json",
        (true, "csv") => "text/csv; charset=utf-8",
        _ => "text/html; charset=utf-8",
    };
    // The name passed `report_name`: letters, digits, `-`, `_` and `.` only.
    Ok(attachment(bytes, ctype, &file))
}

/// `POST /dashboard/api/reports/generate` (the session's CSRF token in `X-CSRF-Token`):
/// a report for the scheduled period ending now, in the scheduled formats, signed, with
/// a `report.generated` entry naming who asked. One at a time (409 while one runs).
pub(crate) async fn generate(
    State(s): State<AppState>,
    who: Signed,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(refused) = csrf_from(&who, &headers) {
        return Ok(refused);
    }
    audited(&s, &who, "reports.generate").await?;
    let Some(a) = &s.dashboard.reports else {
        return Ok(unavailable("this server keeps no report archive"));
    };
    let Some(make) = &a.generate else {
        return Ok(unavailable("this server cannot sign reports"));
    };
    let Ok(_one) = a.running.try_lock() else {
        return Ok(problem(
            StatusCode::CONFLICT,
            "busy",
            "a report is being generated; try again when it is done",
        ));
    };
    match make(who.caller.principal.clone()).await {
        Ok(files) => Ok(Json(json!({"generated": true, "files": files})).into_response()),
        Err(why) => Err(ApiError::Internal(format!("generating a report: {why}"))),
    }
}
