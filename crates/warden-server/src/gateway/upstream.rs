//! The upstream inference servers: one pooled HTTP client (TLS 1.3 only, no proxies
//! from the environment, the client's credentials never forwarded), a short memory of
//! which upstreams failed, and failover in the deployment's order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use warden_store::config::GatewayConfig;

/// Upstreams remembered as failed before old entries are dropped.
const MAX_DOWN: usize = 4096;

/// One upstream that was tried and failed, for the audit entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Failed {
    pub upstream: String,
    pub error: String,
}

/// An upstream's answer, with the upstream that gave it and those that failed first.
#[derive(Debug)]
pub struct Answer {
    pub upstream: String,
    pub response: reqwest::Response,
    pub failed: Vec<Failed>,
}

/// No upstream answered.
#[derive(Debug)]
pub struct Unavailable {
    pub failed: Vec<Failed>,
}

/// The client and the upstreams' health.
#[derive(Debug)]
pub struct Upstreams {
    /// `Err` when the client could not be built (every request is then a 502).
    client: Result<reqwest::Client, String>,
    down_for: Duration,
    /// Upstreams that failed, and until when they are tried last.
    down: Mutex<HashMap<String, Instant>>,
}

impl Upstreams {
    /// The client, trusting the system's CA bundle.
    #[must_use]
    pub fn new(cfg: &GatewayConfig) -> Self {
        Self {
            client: client(cfg),
            down_for: Duration::from_secs(cfg.upstream_down_secs),
            down: Mutex::new(HashMap::new()),
        }
    }

    /// The order to try `upstreams` in: those not known to be down first (in the
    /// deployment's order), then the others (they may have recovered).
    fn order<'a>(&self, upstreams: &'a [String]) -> Vec<&'a String> {
        let now = Instant::now();
        let down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        let is_down = |u: &String| down.get(u).is_some_and(|t| *t > now);
        let mut out: Vec<&String> = upstreams.iter().filter(|u| !is_down(u)).collect();
        out.extend(upstreams.iter().filter(|u| is_down(u)));
        out
    }

    fn mark(&self, upstream: &str, failed: bool) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if failed {
            if down.len() > MAX_DOWN {
                let now = Instant::now();
                down.retain(|_, t| *t > now);
            }
            down.insert(upstream.to_owned(), Instant::now() + self.down_for);
        } else if !down.is_empty() {
            down.remove(upstream);
        }
    }

    /// Sends `body` to `path` on the first upstream that answers. A connection that
    /// fails, a timeout before the answer's head, or a 502/503/504 moves on to the next
    /// upstream; any other answer (errors included) is the upstream's to give.
    pub async fn send(
        &self,
        upstreams: &[String],
        path: &str,
        body: axum::body::Bytes,
        request_id: Option<&str>,
    ) -> Result<Answer, Unavailable> {
        let mut failed = Vec::new();
        let client = match &self.client {
            Ok(c) => c,
            Err(e) => {
                failed.push(Failed {
                    upstream: String::new(),
                    error: format!("no HTTP client: {e}"),
                });
                return Err(Unavailable { failed });
            }
        };
        for u in self.order(upstreams) {
            let mut req = client
                .post(format!("{u}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            // Under a name of its own: some servers insist that `X-Request-Id` is a
            // UUID (llama-cpp-python answers 400 otherwise), and the client's id is
            // not always one.
            if let Some(id) = request_id {
                req = req.header("x-warden-request-id", id);
            }
            match req.send().await {
                Ok(r) if matches!(r.status().as_u16(), 502..=504) => {
                    self.mark(u, true);
                    failed.push(Failed {
                        upstream: u.clone(),
                        error: format!("answered {}", r.status().as_u16()),
                    });
                }
                Ok(response) => {
                    self.mark(u, false);
                    return Ok(Answer {
                        upstream: u.clone(),
                        response,
                        failed,
                    });
                }
                Err(e) => {
                    self.mark(u, true);
                    failed.push(Failed {
                        upstream: u.clone(),
                        error: error_text(&e),
                    });
                }
            }
        }
        Err(Unavailable { failed })
    }
}

/// The pooled client: TLS 1.3 only, the system's CA bundle, no proxies from the
/// environment, no redirects followed.
fn client(cfg: &GatewayConfig) -> Result<reqwest::Client, String> {
    let roots = crate::jwks::roots(std::path::Path::new(crate::jwks::SYSTEM_CA_BUNDLE))
        .unwrap_or_else(|_| rustls::RootCertStore::empty());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
        .read_timeout(Duration::from_secs(cfg.upstream_timeout_secs.max(1)))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}

/// What went wrong with an upstream, without the URL's text repeated.
pub fn error_text(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", cause.chars().take(200).collect::<String>())
    }
}
