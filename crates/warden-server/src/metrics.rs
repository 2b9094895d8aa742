//! Prometheus metrics at `/metrics`. Latencies are histograms in seconds with buckets
//! fine enough to read a 50 µs p99 (`le="5e-5"`). Labels never carry identities, model
//! names or addresses, and every label value comes from a bounded set: routes appear as
//! the router's templates, methods as one of the standard ones or `other`, statuses as
//! the server's own. What detection has seen (incidents, alert failures) is shown only
//! to callers whose token holds `audit:read`; anonymous scrapes get the rest.

use crate::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Instant;

/// Bucket bounds for every `*_duration_seconds` and `*_cpu_seconds` histogram.
pub const BUCKETS: [f64; 24] = [
    5e-6, 1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 7.5e-5, 1e-4, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 2.5e-3, 5e-3,
    7.5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; `None` when another recorder was installed
/// first (metrics are then not served).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_cpu_seconds".into()), &BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            // Histogram samples are buffered until drained: drain them on a timer so
            // memory stays bounded when nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("warden-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The label of a request method: one of a fixed set, so a client cannot mint series.
fn method_label(m: &Method) -> Method {
    match *m {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::OPTIONS => m.clone(),
        _ => OTHER_METHOD.clone(),
    }
}

static OTHER_METHOD: LazyLock<Method> =
    LazyLock::new(|| Method::from_bytes(b"other").unwrap_or(Method::TRACE));

/// Counts and times every request by method, route template and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let r = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (duration, count) = HTTP.handles(route, &method, r.status().as_u16());
    duration.record(start.elapsed().as_secs_f64());
    count.increment(1);
    r
}

/// The request histogram and counter of each route, method and status, registered on
/// first use: recording then touches no registry and allocates nothing. Routes are the
/// router's own patterns, methods the fixed set of [`method_label`] and statuses the
/// server's own, so this stays small whatever clients send.
struct HttpHandles {
    #[allow(clippy::type_complexity)]
    by_route: RwLock<HashMap<String, HashMap<(Method, u16), (Histogram, Counter)>>>,
}

static HTTP: LazyLock<HttpHandles> = LazyLock::new(|| HttpHandles {
    by_route: RwLock::new(HashMap::new()),
});

impl HttpHandles {
    fn handles(&self, route: &str, method: &Method, status: u16) -> (Histogram, Counter) {
        if let Ok(m) = self.by_route.read()
            && let Some(h) = m.get(route).and_then(|r| r.get(&(method.clone(), status)))
        {
            return h.clone();
        }
        let (m, r) = (method.as_str().to_owned(), route.to_owned());
        let h = (
            metrics::histogram!("warden_http_request_duration_seconds",
                "method" => m.clone(), "route" => r.clone()),
            metrics::counter!("warden_http_requests_total",
                "method" => m, "route" => r, "status" => status.to_string()),
        );
        if let Ok(mut map) = self.by_route.write() {
            map.entry(route.to_owned())
                .or_default()
                .insert((method.clone(), status), h.clone());
        }
        h
    }
}

/// Series that tell what detection has seen: shown only to auditors.
const DETECTION_SERIES: [&str; 2] = ["warden_incidents_total", "warden_alert_failures_total"];

/// `GET /metrics`. Without credentials: every series but [`DETECTION_SERIES`]. With a
/// token (or JWT) holding `audit:read`: all of them. Bad credentials are refused (and
/// recorded) like anywhere else.
pub(crate) async fn render(
    headers: axum::http::HeaderMap,
    auth: Result<crate::Authenticated, ApiError>,
) -> Result<Response, ApiError> {
    let full = if headers.contains_key(axum::http::header::AUTHORIZATION) {
        let crate::Authenticated(c) = auth?;
        c.scopes
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == "audit:read"))
    } else {
        false
    };
    let body = install().map(PrometheusHandle::render).unwrap_or_default();
    let body = if full { body } else { public(&body) };
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

/// The exposition without the lines (samples, `# HELP`, `# TYPE`) of detection series.
fn public(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        if !DETECTION_SERIES.iter().any(|d| name.starts_with(d)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        let odd = Method::from_bytes(b"XYZZY").unwrap_or(Method::GET);
        assert_eq!(method_label(&odd).as_str(), "other");
        assert_eq!(method_label(&Method::GET), Method::GET);
        assert_eq!(method_label(&Method::TRACE).as_str(), "other");
    }

    #[test]
    fn public_metrics_leave_out_detection_series() {
        let text = "# HELP warden_incidents_total x\n# TYPE warden_incidents_total counter\n\
                    warden_incidents_total{detector=\"brute_force\"} 3\n\
                    warden_http_requests_total{method=\"GET\"} 1\n";
        assert_eq!(
            public(text),
            "warden_http_requests_total{method=\"GET\"} 1\n"
        );
    }
}
