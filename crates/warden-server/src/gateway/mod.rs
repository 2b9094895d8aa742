//! The audited inference gateway: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings` (the OpenAI HTTP API that vLLM, TGI, llama.cpp and Ollama speak)
//! and the guide's `/api/v1/generate`, forwarded to a deployment's upstreams.
//!
//! Before a request leaves: the caller is authenticated (token, JWT or client
//! certificate) within the API's rate limits; the deployment it names is looked up and
//! the policy asked for `generate` on its version (scope `model:generate`, revoked or
//! retired versions refused); the input is checked (`max_tokens` capped); the caller's
//! requests, tokens per minute and tokens per day are within budget. Each answered
//! request is one `inference.request` entry (who, from where, which version and digest,
//! upstream, status, tokens, latency, SHA-256 of prompt and answer); each refusal one
//! `model.denied` or `inference.refused` entry. A whole answer is released once its
//! entry is durable; a stream's closing `[DONE]` event likewise. A client that goes
//! away cancels the upstream request, and the entry says so.

pub mod health;
mod meter;
mod seal;
mod tally;
mod upstream;

pub use meter::{Meter, OverBudget};
pub use upstream::Upstreams;

use crate::{ApiError, AppState, Authenticated, limits};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tally::Tally;
use warden_registry::deploy::Deployed;
use warden_registry::{Caller, RegistryError};
use warden_store::config::GatewayConfig;
use warden_store::ledger::Receipt;

/// The gateway's parts.
#[derive(Debug)]
pub struct Gateway {
    pub meter: Meter,
    pub upstreams: Upstreams,
    cfg: GatewayConfig,
    /// `release = "queued"`.
    queued: bool,
    /// An append of a queued entry failed; answers wait for durability until one
    /// succeeds again.
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Where prompts and answers are sealed to the auditors (`seal_content`).
    vault: Option<Arc<warden_store::content::Vault>>,
}

impl Gateway {
    /// The gateway with `cfg`'s limits.
    #[must_use]
    pub fn new(cfg: GatewayConfig) -> Self {
        Self {
            meter: Meter::new(cfg.clone()),
            upstreams: Upstreams::new(&cfg),
            queued: cfg.release == "queued",
            failing: Arc::default(),
            vault: None,
            cfg,
        }
    }

    /// Seals each answered request's prompt and answer into `vault`.
    #[must_use]
    pub fn with_vault(mut self, vault: Arc<warden_store::content::Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Its limits.
    #[must_use]
    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new(GatewayConfig::default())
    }
}

/// One of the gateway's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// The guide's `/api/v1/generate`: `{model, prompt, max_tokens?, stream?}`, served
    /// by the upstream's completions and answered as `{model, text, usage}`.
    Generate,
}

impl Endpoint {
    fn route(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Generate => "/api/v1/generate",
        }
    }

    fn upstream_path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions | Endpoint::Generate => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    /// The request field holding the prompt.
    fn prompt_field(self) -> &'static str {
        match self {
            Endpoint::Chat => "messages",
            Endpoint::Completions | Endpoint::Generate => "prompt",
            Endpoint::Embeddings => "input",
        }
    }

    fn generates(self) -> bool {
        self != Endpoint::Embeddings
    }
}

pub(crate) async fn chat(s: State<AppState>, a: Authenticated, body: Body) -> Response {
    serve(s, a, Endpoint::Chat, body).await
}

pub(crate) async fn completions(s: State<AppState>, a: Authenticated, body: Body) -> Response {
    serve(s, a, Endpoint::Completions, body).await
}

pub(crate) async fn embeddings(s: State<AppState>, a: Authenticated, body: Body) -> Response {
    serve(s, a, Endpoint::Embeddings, body).await
}

pub(crate) async fn generate(s: State<AppState>, a: Authenticated, body: Body) -> Response {
    serve(s, a, Endpoint::Generate, body).await
}

async fn serve(
    State(s): State<AppState>,
    Authenticated(c): Authenticated,
    ep: Endpoint,
    body: Body,
) -> Response {
    let started = Instant::now();
    let r = match admit(&s, &c, ep, body).await {
        Ok(admitted) => forward(s, c, ep, admitted, started).await,
        Err(e) => Err(e),
    };
    ::metrics::histogram!("warden_gateway_duration_seconds", "endpoint" => ep.route())
        .record(started.elapsed().as_secs_f64());
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A request let through, ready to send.
struct Admitted {
    deployed: Deployed,
    body: Bytes,
    stream: bool,
    prompt_sha256: String,
    /// The prompt's SimHash (16 hex digits), for the extraction detector.
    prompt_shape: String,
    /// The prompt itself, when it is sealed to the auditors.
    prompt: Option<Value>,
    left: meter::Left,
}

/// Reads and checks the request, and asks the policy and the budgets.
async fn admit(s: &AppState, c: &Caller, ep: Endpoint, body: Body) -> Result<Admitted, ApiError> {
    let max = s.gateway.cfg.max_body_bytes;
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| ApiError::BodyTooLarge)?;
    if crate::json_depth(&bytes) > crate::MAX_JSON_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "JSON nested deeper than {} levels",
            crate::MAX_JSON_DEPTH
        )));
    }
    let mut req: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let name = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("\"model\" must name a deployment".into()))?
        .to_owned();
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "\"stream\" must be true or false".into(),
            ));
        }
    };
    if !req.contains_key(ep.prompt_field()) {
        return Err(ApiError::BadRequest(format!(
            "\"{}\" is required",
            ep.prompt_field()
        )));
    }
    let deployed = s.manager.deployed_for_generate(c, &name).await?;
    let prompt_sha256 = tally::json_sha256_hex(req.get(ep.prompt_field()).unwrap_or(&Value::Null));
    let prompt_shape = format!(
        "{:016x}",
        warden_detect::inference::shape(&prompt_text(req.get(ep.prompt_field())))
    );
    // The guide's threat check: a principal named by an open HIGH incident is refused.
    if let Some(suspect) = s.manager.suspect(&c.principal) {
        let reason = format!("suspicious:{}:{}", suspect.detector, suspect.incident);
        refuse(s, c, &deployed, ep, &reason, &prompt_sha256).await?;
        return Err(ApiError::Suspicious(suspect.incident));
    }
    if ep.generates() {
        let cap = s.gateway.cfg.max_tokens;
        let asked = ["max_tokens", "max_completion_tokens"]
            .iter()
            .find_map(|k| req.get(*k).filter(|v| !v.is_null()));
        match asked.map(Value::as_u64) {
            None => {
                req.insert("max_tokens".into(), json!(cap));
            }
            Some(Some(n)) if n <= cap => {}
            Some(_) => {
                let why = format!("max_tokens must be a whole number up to {cap}");
                refuse(s, c, &deployed, ep, "input:max-tokens", &prompt_sha256).await?;
                return Err(ApiError::BadRequest(why));
            }
        }
        if stream && ep != Endpoint::Generate && !req.contains_key("stream_options") {
            // Ask for the usage chunk, so the tokens charged are the upstream's count.
            req.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    let now_secs = u64::try_from(s.manager.now_secs()).unwrap_or_default();
    let left = match s
        .gateway
        .meter
        .admit(&c.principal, &deployed.name, now_secs)
    {
        Ok(l) => l,
        Err(o) => {
            let reason = format!("budget:{}", o.policy);
            refuse(s, c, &deployed, ep, &reason, &prompt_sha256).await?;
            return Err(ApiError::RateLimited(limits::Limited {
                policy: o.policy,
                quota: u32::try_from(o.quota).unwrap_or(u32::MAX),
                window_secs: u32::try_from(o.window_secs).unwrap_or(u32::MAX),
                retry_after: o.retry_after,
            }));
        }
    };
    let body =
        Bytes::from(serde_json::to_vec(&req).map_err(|e| ApiError::Internal(e.to_string()))?);
    let prompt = s
        .gateway
        .vault
        .as_ref()
        .and_then(|_| req.get(ep.prompt_field()).cloned());
    Ok(Admitted {
        deployed,
        body,
        stream,
        prompt_sha256,
        prompt_shape,
        prompt,
        left,
    })
}

/// The text of a prompt field: a string, the strings of an array, or the contents of
/// chat messages (a string, or parts with `text`).
fn prompt_text(v: Option<&Value>) -> String {
    let mut out = String::new();
    let mut add = |t: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(t);
    };
    match v {
        Some(Value::String(t)) => add(t),
        Some(Value::Array(items)) => {
            for i in items {
                match i {
                    Value::String(t) => add(t),
                    Value::Object(m) => match m.get("content") {
                        Some(Value::String(t)) => add(t),
                        Some(Value::Array(parts)) => {
                            for p in parts {
                                if let Some(t) = p.get("text").and_then(Value::as_str) {
                                    add(t);
                                }
                            }
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

/// Records a refused request (`inference.refused`, with why).
async fn refuse(
    s: &AppState,
    c: &Caller,
    d: &Deployed,
    ep: Endpoint,
    reason: &str,
    prompt_sha256: &str,
) -> Result<Receipt, RegistryError> {
    s.manager
        .record_inference(
            c,
            "inference.refused",
            Some(d),
            "deny",
            reason,
            json!({"endpoint": ep.route(), "deployment": d.name, "prompt_sha256": prompt_sha256}),
        )
        .await
}

/// What one request's entry records beyond who and which version.
struct Outcome<'a> {
    upstream: Option<&'a str>,
    status: u16,
    outcome: &'static str,
    tally: Option<&'a Tally>,
    failed: &'a [upstream::Failed],
    /// What was kept of the content, when it is sealed.
    content: Option<seal::Kept>,
}

fn details(ep: Endpoint, a: &Admitted, started: Instant, o: &Outcome<'_>) -> Value {
    let mut d = json!({
        "endpoint": ep.route(),
        "deployment": a.deployed.name,
        "upstream": o.upstream,
        "status": o.status,
        "stream": a.stream,
        "outcome": o.outcome,
        "latency_ms": (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "prompt_sha256": a.prompt_sha256,
        "prompt_shape": a.prompt_shape,
    });
    if let (Some(t), Some(m)) = (o.tally, d.as_object_mut()) {
        m.insert("prompt_tokens".into(), json!(t.prompt_tokens));
        m.insert("completion_tokens".into(), json!(t.completion()));
        m.insert("response_sha256".into(), json!(t.digest()));
        m.insert("response_bytes".into(), json!(t.bytes));
    }
    if !o.failed.is_empty()
        && let Some(m) = d.as_object_mut()
    {
        m.insert("failover".into(), json!(o.failed));
    }
    if let (Some(k), Some(m)) = (o.content, d.as_object_mut()) {
        m.insert("content".into(), json!(k));
    }
    d
}

async fn record(
    s: &AppState,
    c: &Caller,
    ep: Endpoint,
    a: &Admitted,
    started: Instant,
    o: &Outcome<'_>,
) -> Result<Receipt, RegistryError> {
    s.manager
        .record_inference(
            c,
            "inference.request",
            Some(&a.deployed),
            "allow",
            &a.deployed.reason,
            details(ep, a, started, o),
        )
        .await
}

/// Records a request whose client went away before it was answered, when dropped
/// unanswered (the handler's future is dropped with the connection).
struct Unanswered {
    state: Option<(AppState, Caller, Endpoint, Admitted, Instant)>,
}

impl Unanswered {
    /// The request, now answered: nothing is recorded on drop.
    fn answered(mut self) -> Result<(AppState, Caller, Endpoint, Admitted, Instant), ApiError> {
        self.state
            .take()
            .ok_or_else(|| ApiError::Internal("a request was answered twice".into()))
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((s, c, ep, a, started)) = self.state.take() {
            tokio::spawn(async move {
                let o = Outcome {
                    upstream: None,
                    status: 499,
                    outcome: "client-disconnected",
                    tally: None,
                    failed: &[],
                    content: None,
                };
                if let Err(e) = record(&s, &c, ep, &a, started, &o).await {
                    crate::log(&format!("recording a request the client left: {e}"));
                }
            });
        }
    }
}

async fn forward(
    s: AppState,
    c: Caller,
    ep: Endpoint,
    a: Admitted,
    started: Instant,
) -> Result<Response, ApiError> {
    let gw = Arc::clone(&s.gateway);
    let sent = gw
        .upstreams
        .send(
            &a.deployed.upstreams,
            ep.upstream_path(),
            a.body.clone(),
            c.request_id.as_deref(),
        )
        .await;
    let guard = Unanswered {
        state: Some((s, c, ep, a, started)),
    };
    let answer = match sent {
        Ok(answer) => answer,
        Err(u) => {
            let (s, c, ep, a, started) = guard.answered()?;
            let o = Outcome {
                upstream: None,
                status: 502,
                outcome: "upstream-unavailable",
                tally: None,
                failed: &u.failed,
                content: None,
            };
            record(&s, &c, ep, &a, started, &o).await?;
            return Ok(error(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "no upstream of this deployment answered",
            ));
        }
    };
    let status = answer.response.status();
    let is_stream = answer
        .response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_stream && status.is_success() {
        let (s, c, ep, a, started) = guard.answered()?;
        return Ok(stream(s, c, ep, a, started, answer));
    }
    let max = gw.cfg.max_response_bytes;
    let body = read_capped(answer.response, max).await;
    let (s, c, ep, a, started) = guard.answered()?;
    let body = match body {
        Ok(b) => b,
        Err(why) => {
            let o = Outcome {
                upstream: Some(&answer.upstream),
                status: 502,
                outcome: why,
                tally: None,
                failed: &answer.failed,
                content: None,
            };
            record(&s, &c, ep, &a, started, &o).await?;
            return Ok(error(StatusCode::BAD_GATEWAY, "upstream_failed", why));
        }
    };
    let mut t = tally_for(&gw);
    t.answer(&body, ep == Endpoint::Embeddings);
    gw.meter.charge(
        &c.principal,
        &a.deployed.name,
        t.prompt_tokens.unwrap_or_default() + t.completion(),
    );
    let (content, unsealed) =
        match seal::seal(&gw, &c, ep, &a, s.manager.now(), t.take_kept()).await {
            Ok(k) => (k, None),
            Err(why) => (None, Some(why)),
        };
    let o = Outcome {
        upstream: Some(&answer.upstream),
        status: status.as_u16(),
        outcome: if unsealed.is_some() {
            "content-not-sealed"
        } else {
            "complete"
        },
        tally: Some(&t),
        failed: &answer.failed,
        content,
    };
    if let Some(why) = unsealed {
        // The content must be kept and could not be: the answer is not released.
        record(&s, &c, ep, &a, started, &o).await?;
        crate::log(&format!("sealing inference content: {why}"));
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the request's content could not be sealed for the auditors",
        ));
    }
    let index = if gw.queued && !gw.failing.load(Ordering::Relaxed) {
        // Released once the entry has its place in the ledger; made durable with the
        // next group commit, off this answer's path.
        let durable = s.manager.record_inference_queued(
            &c,
            &a.deployed,
            &a.deployed.reason,
            details(ep, &a, started, &o),
        )?;
        let failing = Arc::clone(&gw.failing);
        tokio::spawn(async move {
            if let Err(e) = durable.await {
                failing.store(true, Ordering::Relaxed);
                crate::log(&format!("a queued inference entry failed: {e}"));
            }
        });
        None
    } else {
        let r = record(&s, &c, ep, &a, started, &o).await?;
        gw.failing.store(false, Ordering::Relaxed);
        Some(r.index)
    };
    let body = if ep == Endpoint::Generate && status.is_success() {
        generate_answer(&a.deployed, &body)
    } else {
        Bytes::from(body)
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = index.and_then(|i| HeaderValue::from_str(&i.to_string()).ok()) {
        h.insert("x-warden-audit-index", v);
    }
    rate_headers(&gw, a.left, h);
    Ok(r)
}

/// The guide's answer shape from an upstream's completions answer.
fn generate_answer(d: &Deployed, body: &[u8]) -> Bytes {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = v
        .pointer("/choices/0/text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Bytes::from(
        json!({
            "model": d.name,
            "version": d.version,
            "text": text,
            "finish_reason": v.pointer("/choices/0/finish_reason"),
            "usage": v.get("usage"),
        })
        .to_string(),
    )
}

/// Reads an answer of at most `max` bytes.
async fn read_capped(r: reqwest::Response, max: usize) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| "upstream-broke-off")?;
        if out.len() + chunk.len() > max {
            return Err("upstream-answer-too-large");
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    if status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields of a request let through.
fn rate_headers(gw: &Gateway, left: meter::Left, h: &mut axum::http::HeaderMap) {
    let c = &gw.cfg;
    let policy = format!(
        "\"requests\";q={};w=60, \"tokens\";q={};w=60, \"tokens-daily\";q={};w=86400",
        c.requests_per_minute, c.tokens_per_minute, c.tokens_per_day
    );
    let now = format!(
        "\"requests\";r={};t=60, \"tokens\";r={};t=60, \"tokens-daily\";r={}",
        left.requests, left.tokens, left.tokens_today
    );
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", now)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

/// Passes a stream on event by event. A task reads the upstream, so a client that
/// goes away is noticed at once (the channel closes) and the upstream request dropped
/// with it; the channel's one slot is the backpressure. The closing `[DONE]` event is
/// sent once the request's entry is durable.
fn stream(
    s: AppState,
    c: Caller,
    ep: Endpoint,
    a: Admitted,
    started: Instant,
    answer: upstream::Answer,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let gw = Arc::clone(&s.gateway);
    let mut r = Response::new(Body::from_stream(receiver_stream(rx)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    rate_headers(&gw, a.left, h);
    let chunk_timeout = std::time::Duration::from_secs(gw.cfg.upstream_timeout_secs.max(1));
    tokio::spawn(async move {
        let upstream::Answer {
            upstream,
            response,
            failed,
        } = answer;
        let mut body = response.bytes_stream();
        let mut t = tally_for(&gw);
        let outcome = loop {
            tokio::select! {
                () = tx.closed() => break "client-disconnected",
                next = tokio::time::timeout(chunk_timeout, body.next()) => match next {
                    Err(_) => break "upstream-timed-out",
                    Ok(None) => break "complete",
                    Ok(Some(Err(_))) => break "upstream-broke-off",
                    Ok(Some(Ok(bytes))) => {
                        let (pass, done) = t.feed(&bytes);
                        if !pass.is_empty() && tx.send(Ok(Bytes::from(pass))).await.is_err() {
                            break "client-disconnected";
                        }
                        if done {
                            break "complete";
                        }
                    }
                },
            }
        };
        // Dropping the upstream's body closes its connection: the upstream stops.
        drop(body);
        gw.meter.charge(
            &c.principal,
            &a.deployed.name,
            t.prompt_tokens.unwrap_or_default() + t.completion(),
        );
        let kept = t.take_kept();
        let (content, outcome) = match seal::seal(&gw, &c, ep, &a, s.manager.now(), kept).await {
            Ok(k) => (k, outcome),
            Err(why) => {
                crate::log(&format!("sealing inference content: {why}"));
                (None, "content-not-sealed")
            }
        };
        let o = Outcome {
            upstream: Some(&upstream),
            status: 200,
            outcome,
            tally: Some(&t),
            failed: &failed,
            content,
        };
        let recorded = record(&s, &c, ep, &a, started, &o).await;
        if matches!(outcome, "complete" | "content-not-sealed") {
            let last: &[u8] = match recorded {
                Ok(_) if outcome == "complete" => tally::DONE,
                // Everything but the end was sent; the client learns the request was
                // not recorded (or its content not kept) instead of being told it
                // completed.
                _ => b"event: error\ndata: {\"error\":{\"code\":\"audit_unavailable\",\"message\":\"the audit ledger cannot record this request\"}}\n\n",
            };
            let _ = tx.send(Ok(Bytes::from_static(last))).await;
        } else if let Err(e) = recorded {
            crate::log(&format!("recording a stream that ended early: {e}"));
        }
    });
    r
}

/// A tally of an answer, keeping its text when the content is sealed.
fn tally_for(gw: &Gateway) -> Tally {
    if gw.vault.is_some() {
        Tally::keeping()
    } else {
        Tally::default()
    }
}

/// A receiver as a stream.
fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
