//! Prometheus metrics at `/metrics`. Latencies are histograms in seconds with buckets
//! fine enough to read a 50 µs p99 (`le="5e-5"`). Labels never carry identities, model
//! names or addresses: routes appear as their templates.

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

/// Counts and times every request by method, route template and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
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
/// router's own patterns and methods are bounded by the router, so this stays small.
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

pub(crate) async fn render() -> Response {
    let body = install().map(PrometheusHandle::render).unwrap_or_default();
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
