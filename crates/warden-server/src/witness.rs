//! `warden witness`: the C2SP tlog-witness HTTP API over a witness's durable state.
//!
//! - `POST /add-checkpoint`: the specification's call. The answer is the witness's
//!   cosignature lines (200), or the status the specification assigns to the refusal,
//!   with the latest cosigned size as `text/x.tlog.size` on 409.
//! - `POST /warden/epoch`: a Warden log's epoch certificate (its `key.rotation`
//!   record, base64 as in the entry header), checked against the log's root key, so
//!   the witness can check checkpoints that epoch's key signs. A log presents it when
//!   `add-checkpoint` answers 403.
//! - `GET /<sha256(origin) hex>/checkpoint`: the latest cosigned checkpoint, with the
//!   log's signature and the witness's cosignatures (the monitoring endpoint).
//!
//! Nothing here trusts the request: bodies are size-limited before they are read and
//! every refusal is decided by `warden_core::witness`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Arc;
use warden_core::cosign::Cosigner;
use warden_core::epoch::{RootPublic, RotationRecord};
use warden_core::note::Note;
use warden_core::witness::{self as rules, AddCheckpoint, Latest, Refusal};
use warden_store::error::StoreError;
use warden_store::witness::{LogState, WitnessState};

/// A running witness: the logs it witnesses, its state and its keys.
pub struct Witness {
    roots: HashMap<String, RootPublic>,
    state: WitnessState,
    cosigners: Vec<Cosigner>,
    now: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("logs", &self.roots.keys().collect::<Vec<_>>())
            .field("cosigners", &self.cosigners.len())
            .finish_non_exhaustive()
    }
}

/// Why a request failed: refused by the rules, or the witness could not keep its state.
#[derive(Debug)]
enum Failure {
    Refused(Refusal),
    Internal(String),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::Refused(Refusal::Conflict { latest }) => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{latest}\n"),
            )
                .into_response(),
            Self::Refused(r) => (
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST),
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{r}\n"),
            )
                .into_response(),
            Self::Internal(detail) => {
                crate::log(&format!("witness: cannot keep its state: {detail}"));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the witness cannot store its state\n",
                )
                    .into_response()
            }
        }
    }
}

impl Witness {
    /// A witness of the logs `roots` (each log's trust anchor), with its state in
    /// `state`, cosigning with `cosigners` at the times `now` gives (POSIX seconds).
    pub fn new(
        roots: Vec<RootPublic>,
        state: WitnessState,
        cosigners: Vec<Cosigner>,
        now: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        Self {
            roots: roots.into_iter().map(|r| (r.origin.clone(), r)).collect(),
            state,
            cosigners,
            now,
        }
    }

    fn root(&self, origin: &str) -> Result<&RootPublic, Refusal> {
        self.roots
            .get(origin)
            .filter(|_| self.state.knows(origin))
            .ok_or_else(|| Refusal::UnknownOrigin(origin.to_owned()))
    }

    /// `add-checkpoint`: the cosignature lines, or why not. The check against the
    /// latest cosigned checkpoint and the durable write of the new one happen under
    /// the log's lock.
    fn add_checkpoint(&self, body: &[u8]) -> Result<String, Failure> {
        let req = AddCheckpoint::parse(body)?;
        let origin = rules::origin_of(&req.note)?.to_owned();
        let root = self.root(&origin)?;
        let r = self.state.update(&origin, |s: &LogState| {
            let cp = match rules::check(root, &s.keys, s.latest, &req) {
                Ok(cp) => cp,
                Err(r) => {
                    if matches!(r, Refusal::Unprocessable(_)) {
                        // Validly signed, yet inconsistent with what was cosigned:
                        // evidence of a fork, kept in the witness's log.
                        crate::log(&format!(
                            "witness: refused an inconsistent checkpoint of {origin}: {r}; checkpoint: {:?}",
                            req.note.to_string()
                        ));
                    }
                    return Err(r.into());
                }
            };
            let ts = (self.now)();
            let mut lines = String::new();
            let mut sigs = req.note.signatures().to_vec();
            for c in &self.cosigners {
                let sig = c
                    .cosign(&cp, ts)
                    .map_err(|e| Failure::Internal(format!("cosigning: {e}")))?;
                lines.push_str(&sig.line());
                sigs.retain(|s| (&s.name, s.key_id) != (&sig.name, sig.key_id));
                sigs.push(sig);
            }
            let note = Note::new(cp.to_text(), sigs)
                .map_err(|e| Failure::Internal(format!("cosigned note: {e}")))?;
            let next = LogState {
                latest: Some(Latest {
                    size: cp.size,
                    root: cp.root,
                }),
                note: Some(note.to_string()),
                keys: s.keys.clone(),
            };
            Ok((lines, Some(next)))
        });
        r.unwrap_or_else(|| Err(Refusal::UnknownOrigin(origin).into()))
    }

    /// `warden/epoch`: learns an epoch key from its root-signed certificate.
    fn add_epoch(&self, body: &[u8]) -> Result<String, Failure> {
        let text = std::str::from_utf8(body)
            .map_err(|_| Refusal::BadRequest("body is not UTF-8".into()))?;
        let rec = RotationRecord::decode(text.trim())
            .map_err(|e| Refusal::BadRequest(format!("rotation record: {e}")))?;
        let origin = rec.cert.origin.clone();
        let root = self.root(&origin)?;
        let r = self.state.update(&origin, |s: &LogState| {
            let mut keys = s.keys.clone();
            if rules::learn_epoch(root, &mut keys, &rec)? {
                let next = LogState { keys, ..s.clone() };
                Ok((format!("learned epoch {}\n", rec.cert.epoch), Some(next)))
            } else {
                Ok((format!("epoch {} already known\n", rec.cert.epoch), None))
            }
        });
        r.unwrap_or_else(|| Err(Refusal::UnknownOrigin(origin).into()))
    }

    fn checkpoint(&self, origin_hash: &str) -> Option<String> {
        let origin = self.roots.keys().find(|o| {
            warden_core::hex::encode(&warden_core::merkle::sha256(o.as_bytes())) == origin_hash
        })?;
        self.state.get(origin)?.note
    }
}

/// The witness's routes.
pub fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/warden/epoch", post(add_epoch))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(rules::MAX_REQUEST_LEN))
        .with_state(w)
}

async fn blocking(
    w: Arc<Witness>,
    body: Bytes,
    f: fn(&Witness, &[u8]) -> Result<String, Failure>,
) -> Response {
    // Cosigning (ML-DSA) and the fsync of the state are blocking work.
    match tokio::task::spawn_blocking(move || f(&w, &body)).await {
        Ok(Ok(lines)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            lines,
        )
            .into_response(),
        Ok(Err(f)) => f.into_response(),
        Err(_) => Failure::Internal("the request's task failed".into()).into_response(),
    }
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    blocking(w, body, Witness::add_checkpoint).await
}

async fn add_epoch(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    blocking(w, body, Witness::add_epoch).await
}

async fn checkpoint(State(w): State<Arc<Witness>>, Path(origin_hash): Path<String>) -> Response {
    match w.checkpoint(&origin_hash) {
        Some(note) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            note,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no checkpoint cosigned for that log\n",
        )
            .into_response(),
    }
}
