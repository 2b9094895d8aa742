//! The upstream inference servers: one pooled HTTP client (TLS 1.3 only, no proxies
//! from the environment, the client's credentials never forwarded), a short memory of
//! which upstreams failed, and failover in the deployment's order.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
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
    probe_timeout: Duration,
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
            probe_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
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
        self.mark_until(upstream, failed.then(|| Instant::now() + self.down_for));
    }

    /// Marks `upstream` down until `until`, or (`None`) up.
    fn mark_until(&self, upstream: &str, until: Option<Instant>) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        match until {
            Some(t) => {
                if down.len() > MAX_DOWN {
                    let now = Instant::now();
                    down.retain(|_, t| *t > now);
                }
                down.insert(upstream.to_owned(), t);
            }
            None if !down.is_empty() => {
                down.remove(upstream);
            }
            None => {}
        }
    }

    /// Asks each of `upstreams` for `/v1/models`, which every OpenAI-compatible server
    /// answers: any answer below 500 is up; a failed connection, a timeout (the connect
    /// timeout) or a 5xx marks it down until the next probe at least (`next`). Returns
    /// each upstream's health.
    pub async fn probe(&self, upstreams: &[String], next: Duration) -> Vec<(String, bool)> {
        let Ok(client) = &self.client else {
            return Vec::new();
        };
        let timeout = self.probe_timeout;
        let checks = upstreams.iter().map(|u| async move {
            let r = client
                .get(format!("{u}/v1/models"))
                .timeout(timeout)
                .send()
                .await;
            let up = matches!(r, Ok(r) if r.status().as_u16() < 500);
            (u.clone(), up)
        });
        let out = futures_util::future::join_all(checks).await;
        let until = Instant::now() + self.down_for.max(next);
        for (u, up) in &out {
            self.mark_until(u, (!up).then_some(until));
        }
        out
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
                        error: crate::tls::http_error_text(&e),
                    });
                }
            }
        }
        Err(Unavailable { failed })
    }
}

/// The pooled client (see [`crate::tls::http_client`]).
fn client(cfg: &GatewayConfig) -> Result<reqwest::Client, String> {
    crate::tls::http_client(
        Duration::from_secs(cfg.connect_timeout_secs.max(1)),
        Duration::from_secs(cfg.upstream_timeout_secs.max(1)),
        256,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_models(listener: tokio::net::TcpListener) {
        let app = axum::Router::new().route(
            "/v1/models",
            axum::routing::get(|| async { r#"{"object":"list","data":[]}"# }),
        );
        let _ = axum::serve(listener, app).await;
    }

    #[tokio::test]
    async fn probes_put_a_dead_upstream_last_and_a_recovered_one_first_again() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_url = format!("http://{}", live.local_addr().unwrap());
        tokio::spawn(serve_models(live));
        // A port with nothing behind it (yet).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead_url = format!("http://127.0.0.1:{port}");
        let u = Upstreams::new(&GatewayConfig::default());
        let both = vec![dead_url.clone(), live_url.clone()];
        assert_eq!(u.order(&both), vec![&dead_url, &live_url]);
        let health = u.probe(&both, Duration::from_secs(60)).await;
        assert_eq!(
            health,
            vec![(dead_url.clone(), false), (live_url.clone(), true)]
        );
        // Skipped before any request pays for it, and for as long as the probes say so.
        assert_eq!(u.order(&both), vec![&live_url, &dead_url]);
        let back = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::spawn(serve_models(back));
        let health = u.probe(&both, Duration::from_secs(60)).await;
        assert!(health.iter().all(|(_, up)| *up), "{health:?}");
        assert_eq!(u.order(&both), vec![&dead_url, &live_url]);
    }
}
