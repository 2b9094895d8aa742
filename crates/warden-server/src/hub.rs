//! The download side of the Hugging Face Hub HTTP contract, so `huggingface_hub` and
//! `transformers` load models through Warden with `HF_ENDPOINT` and `HF_TOKEN` set.
//!
//! Repo id = model name (`org/name` or `name`); revision = the version's commit id (from
//! its signed manifest; resolved first, and no version or alias may look like one), a
//! version, an alias, or `main` (unless an alias of that name exists: the newest version
//! that is neither revoked nor retired). Every file is an LFS file whose `ETag` is its SHA-256,
//! and every download goes through the same verified, audited load path as
//! `/v1/models/.../files/...`. Errors carry the codes the client maps to its own
//! exceptions in `X-Error-Code` / `X-Error-Message` (HEAD responses have no body).

use crate::{ApiError, AppState, Authenticated};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use warden_registry::manager::VersionInfo;
use warden_registry::{RegistryError, Selector};

/// Entries per page of a tree listing (the Hub's own page size).
pub const TREE_PAGE: usize = 1000;
/// Size of a Git LFS pointer file, which the client expects in `lfs.pointerSize`.
const LFS_POINTER_SIZE: u64 = 134;

const X_ERROR_CODE: &str = "x-error-code";
const X_ERROR_MESSAGE: &str = "x-error-message";
const X_REPO_COMMIT: &str = "x-repo-commit";

/// A failure in the Hub's terms. `commit` is sent when the revision was resolved.
struct HubError {
    err: Box<ApiError>,
    commit: Option<String>,
}

impl From<ApiError> for HubError {
    fn from(err: ApiError) -> Self {
        Self {
            err: Box::new(err),
            commit: None,
        }
    }
}

impl From<RegistryError> for HubError {
    fn from(e: RegistryError) -> Self {
        ApiError::Registry(e).into()
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        use RegistryError as R;
        let hub: Option<(StatusCode, Option<&str>, String)> = match &*self.err {
            ApiError::Unauthenticated(_) => Some((
                StatusCode::UNAUTHORIZED,
                None,
                "Invalid credentials in Authorization header".into(),
            )),
            ApiError::NotFound => Some((
                StatusCode::NOT_FOUND,
                Some("RepoNotFound"),
                "Repository not found".into(),
            )),
            ApiError::Registry(e) => match e {
                R::UnknownModel { .. } => Some((
                    StatusCode::NOT_FOUND,
                    Some("RepoNotFound"),
                    "Repository not found".into(),
                )),
                R::UnknownVersion { selector, .. } => Some((
                    StatusCode::NOT_FOUND,
                    Some("RevisionNotFound"),
                    format!("Invalid rev id: {selector}"),
                )),
                R::UnknownFile { file, .. } => Some((
                    StatusCode::NOT_FOUND,
                    Some("EntryNotFound"),
                    format!("{file} does not exist on this revision"),
                )),
                R::Denied { revoked: true, .. } => Some((
                    StatusCode::FORBIDDEN,
                    None,
                    "Access to this resource is disabled.".into(),
                )),
                R::Denied { .. } => Some((
                    StatusCode::FORBIDDEN,
                    Some("GatedRepo"),
                    "Access to this model is restricted by policy".into(),
                )),
                _ => None,
            },
            _ => None,
        };
        let mut r = match hub {
            Some((status, code, message)) => {
                let mut r = (status, axum::Json(json!({"error": message}))).into_response();
                let h = r.headers_mut();
                if let Some(c) = code {
                    h.insert(X_ERROR_CODE, HeaderValue::from_static(c));
                }
                if let Ok(v) = HeaderValue::from_str(&message) {
                    h.insert(X_ERROR_MESSAGE, v);
                }
                r
            }
            // Rate limits, integrity failures, an unavailable ledger: the API's own
            // response (status, Retry-After, RateLimit fields), which the client
            // raises as an HTTP error.
            None => self.err.into_response(),
        };
        if let Some(c) = self
            .commit
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            r.headers_mut().insert(X_REPO_COMMIT, c);
        }
        r
    }
}

/// Splits `rest` (after `/api/models/`) into repo id, and the operation with its
/// revision and path: `{repo}`, `{repo}/revision/{rev}`, `{repo}/tree/{rev}[/{path}]`.
fn split_api(rest: &str) -> Option<(String, &'static str, String, String)> {
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    // A repo id has one or two segments; the operation follows it.
    for n in [2usize, 1] {
        let (Some(repo), Some(op)) = (parts.get(..n), parts.get(n)) else {
            continue;
        };
        let op: &'static str = match *op {
            "revision" => "revision",
            "tree" => "tree",
            _ => continue,
        };
        let rev = parts.get(n + 1)?;
        let path = parts.get(n + 2..).map(|p| p.join("/")).unwrap_or_default();
        if op == "revision" && !path.is_empty() {
            return None;
        }
        return Some((repo.join("/"), op, (*rev).to_owned(), path));
    }
    (parts.len() <= 2 && parts.iter().all(|p| !p.is_empty()))
        .then(|| (parts.join("/"), "info", "main".to_owned(), String::new()))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TreeQuery {
    #[serde(default)]
    recursive: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    expand: Option<String>,
    /// Ignored query fields the client sends to the info endpoint.
    #[serde(default, rename = "securityStatus")]
    _security: Option<String>,
    #[serde(default, rename = "blobs")]
    _blobs: Option<String>,
}

/// `GET /api/models/{repo_id}`, `.../revision/{revision}`, `.../tree/{revision}[/{path}]`.
pub(crate) async fn api_models(
    State(s): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    axum::extract::Path(rest): axum::extract::Path<String>,
    Query(q): Query<TreeQuery>,
    uri: axum::http::Uri,
) -> Response {
    let run = async {
        let Authenticated(c) = auth?;
        let (repo, op, rev, path) = split_api(&rest).ok_or(ApiError::NotFound)?;
        let info = s.manager.show(&c, &repo, &Selector::parse(&rev)).await?;
        if info.state == "revoked" {
            return Err(with_commit(
                revoked(&c, &repo, &info.version),
                Some(info.commit.clone()),
            ));
        }
        Ok::<_, HubError>(match op {
            "tree" => tree(&info, &path, &q, &uri)?,
            _ => axum::Json(model_info(&info)).into_response(),
        })
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

fn iso(secs: i64) -> String {
    warden_core::time::Timestamp::from_micros(
        u64::try_from(secs).unwrap_or(0).saturating_mul(1_000_000),
    )
    .map(|t| {
        let s = t.to_string();
        // RFC 3339 with milliseconds, as the Hub writes it.
        format!("{}Z", s.get(..23).unwrap_or(&s))
    })
    .unwrap_or_default()
}

fn lfs(f: &warden_registry::manager::FileInfo) -> serde_json::Value {
    json!({"sha256": f.digest, "size": f.size, "pointerSize": LFS_POINTER_SIZE})
}

fn model_info(v: &VersionInfo) -> serde_json::Value {
    let siblings: Vec<_> = v
        .files
        .iter()
        .map(|f| {
            json!({
                "rfilename": f.name, "size": f.size, "blobId": oid(&f.digest), "lfs": lfs(f),
            })
        })
        .collect();
    json!({
        "_id": v.commit,
        "id": v.model,
        "modelId": v.model,
        "sha": v.commit,
        "author": v.model.split_once('/').map(|(a, _)| a),
        "private": true,
        "gated": false,
        "disabled": v.state == "revoked",
        "downloads": 0,
        "likes": 0,
        "tags": [format!("warden:{}", v.state)],
        "createdAt": iso(v.created_at),
        "lastModified": iso(v.created_at),
        "siblings": siblings,
        "usedStorage": v.files.iter().map(|f| f.size).sum::<i64>(),
        "cardData": {"warden": {"version": v.version, "state": v.state, "root_digest": v.root_digest}},
    })
}

/// A blob id (a Git object id in the Hub) for a file: the first 40 hex digits of its
/// SHA-256.
fn oid(digest: &str) -> &str {
    digest.get(..40).unwrap_or(digest)
}

/// One page of the tree under `path`: files, and with `recursive` the folders too.
fn tree(
    v: &VersionInfo,
    path: &str,
    q: &TreeQuery,
    uri: &axum::http::Uri,
) -> Result<Response, HubError> {
    let recursive = flag("recursive", q.recursive.as_deref())?;
    flag("expand", q.expand.as_deref())?;
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut entries: std::collections::BTreeMap<String, serde_json::Value> =
        std::collections::BTreeMap::new();
    for f in &v.files {
        let Some(rel) = f.name.strip_prefix(&prefix) else {
            continue;
        };
        // Folders between `path` and the file.
        let segs: Vec<&str> = rel.split('/').collect();
        let depth = if recursive {
            segs.len().saturating_sub(1)
        } else {
            0
        };
        for i in 1..=depth.min(segs.len().saturating_sub(1)) {
            let dir = format!("{prefix}{}", segs.get(..i).unwrap_or_default().join("/"));
            entries.entry(dir.clone()).or_insert_with(
                || json!({"type": "directory", "path": dir, "oid": oid(&v.commit), "size": 0}),
            );
        }
        if segs.len() == 1 || recursive {
            entries.insert(
                f.name.clone(),
                json!({"type": "file", "path": f.name, "size": f.size, "oid": oid(&f.digest), "lfs": {"oid": f.digest, "size": f.size, "pointerSize": LFS_POINTER_SIZE}}),
            );
        } else if let Some(first) = segs.first() {
            let dir = format!("{prefix}{first}");
            entries.entry(dir.clone()).or_insert_with(
                || json!({"type": "directory", "path": dir, "oid": oid(&v.commit), "size": 0}),
            );
        }
    }
    if entries.is_empty() && !path.is_empty() {
        return Err(HubError {
            err: Box::new(ApiError::Registry(RegistryError::UnknownFile {
                model: v.model.clone(),
                version: v.version.clone(),
                file: path.to_owned(),
            })),
            commit: Some(v.commit.clone()),
        });
    }
    let all: Vec<serde_json::Value> = entries.into_values().collect();
    // The cursor is the client's number: it may be anything, so every sum is checked.
    let start: usize = match &q.cursor {
        None => 0,
        Some(c) => c
            .parse()
            .ok()
            .filter(|&n| n <= all.len())
            .ok_or_else(|| ApiError::BadRequest("invalid cursor".into()))?,
    };
    let end = start.saturating_add(TREE_PAGE);
    let page: Vec<&serde_json::Value> = all.iter().skip(start).take(TREE_PAGE).collect();
    let mut r = axum::Json(page).into_response();
    if end < all.len() {
        let mut next = format!("{}?cursor={end}", uri.path());
        if recursive {
            next.push_str("&recursive=true");
        }
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(r)
}

/// A boolean query field in any form the Hub's clients send: `true`/`True`/`1`
/// (Python's `requests` writes `True`), `false`/`False`/`0`, or absent (false).
fn flag(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None => Ok(false),
        Some(x) if x.eq_ignore_ascii_case("true") || x == "1" || x.is_empty() => Ok(true),
        Some(x) if x.eq_ignore_ascii_case("false") || x == "0" => Ok(false),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{name} must be true or false"
        ))),
    }
}

/// `HEAD` and `GET /{repo_id}/resolve/{revision}/{filename}`.
pub(crate) async fn resolve(
    State(s): State<AppState>,
    method: Method,
    auth: Result<Authenticated, ApiError>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    // Any other path is the API's own 404.
    let Some((repo, rev, file)) = split_resolve(&path) else {
        return ApiError::NotFound.into_response();
    };
    let run = async {
        let Authenticated(c) = auth?;
        let sel = Selector::parse(&rev);
        if method == Method::HEAD {
            return head(&s, &c, &repo, &sel, &file).await;
        }
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let d = s
            .manager
            .download(&c, &repo, &sel, &file, range)
            .await
            .map_err(|e| with_commit(e, None))?;
        let extra = vec![
            (
                header::HeaderName::from_static(X_REPO_COMMIT),
                d.commit().to_owned(),
            ),
            (
                header::HeaderName::from_static("x-linked-etag"),
                format!("\"{}\"", d.digest()),
            ),
            (
                header::HeaderName::from_static("x-linked-size"),
                d.size().to_string(),
            ),
        ];
        Ok(crate::models::download_response(d, extra))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// A revoked version, as the Hub's disabled repository.
fn revoked(c: &warden_registry::Caller, repo: &str, version: &str) -> RegistryError {
    RegistryError::Denied {
        principal: c.principal.clone(),
        action: "load".into(),
        resource: format!("{repo}@{version}"),
        reason: "forbid:revoked-version".into(),
        revoked: true,
    }
}

fn with_commit(e: RegistryError, commit: Option<String>) -> HubError {
    HubError {
        err: Box::new(ApiError::Registry(e)),
        commit,
    }
}

/// The file's metadata under the rule the download itself meets (`load`; recorded as a
/// decision), so a client that sends `HEAD` before `GET` needs no other permission.
async fn head(
    s: &AppState,
    c: &warden_registry::Caller,
    repo: &str,
    sel: &Selector,
    file: &str,
) -> Result<Response, HubError> {
    let info = s
        .manager
        .load_info(c, repo, sel)
        .await
        .map_err(|e| with_commit(e, None))?;
    let commit = Some(info.commit.clone());
    let Some(f) = info.files.iter().find(|f| f.name == file) else {
        return Err(with_commit(
            RegistryError::UnknownFile {
                model: info.model.clone(),
                version: info.version.clone(),
                file: file.to_owned(),
            },
            commit,
        ));
    };
    let mut r = Response::new(axum::body::Body::empty());
    let h = r.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_TYPE.as_str(),
            "application/octet-stream".to_owned(),
        ),
        (header::CONTENT_LENGTH.as_str(), f.size.to_string()),
        (header::ACCEPT_RANGES.as_str(), "bytes".to_owned()),
        (header::ETAG.as_str(), format!("\"{}\"", f.digest)),
        ("x-linked-etag", format!("\"{}\"", f.digest)),
        ("x-linked-size", f.size.to_string()),
        (X_REPO_COMMIT, info.commit.clone()),
        ("x-warden-digest", format!("sha256:{}", f.digest)),
        ("x-warden-version", info.version.clone()),
    ] {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    Ok(r)
}

/// Splits `{repo_id}/resolve/{revision}/{filename}` (repo id of one or two segments).
fn split_resolve(path: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    for n in [2usize, 1] {
        if parts.get(n) == Some(&"resolve") && parts.len() > n + 2 {
            let repo = parts.get(..n)?.join("/");
            let rev = (*parts.get(n + 1)?).to_owned();
            let file = parts.get(n + 2..)?.join("/");
            if repo.is_empty() || rev.is_empty() || file.is_empty() {
                return None;
            }
            return Some((repo, rev, file));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_repo_revision_and_file() {
        assert_eq!(
            split_resolve("org/m/resolve/main/sub/w.bin"),
            Some(("org/m".into(), "main".into(), "sub/w.bin".into()))
        );
        assert_eq!(
            split_resolve("m/resolve/v1/w.bin"),
            Some(("m".into(), "v1".into(), "w.bin".into()))
        );
        assert_eq!(split_resolve("m/resolve/v1"), None);
        assert_eq!(split_resolve("v1/models/x"), None);
        assert_eq!(
            split_api("org/m/tree/main/sub"),
            Some(("org/m".into(), "tree", "main".into(), "sub".into()))
        );
        assert_eq!(
            split_api("m/revision/v2"),
            Some(("m".into(), "revision", "v2".into(), String::new()))
        );
        assert_eq!(
            split_api("org/m"),
            Some(("org/m".into(), "info", "main".into(), String::new()))
        );
        assert_eq!(split_api("a/b/c"), None);
    }
}
