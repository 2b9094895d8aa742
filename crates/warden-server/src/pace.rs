//! Request bodies must keep moving. A client that sends a body a byte at a time holds
//! a connection (and whatever the handler holds) for as long as it likes; here every
//! body must average at least [`Pace::min_rate`] bytes a second once [`Pace::grace`]
//! has passed, and never stall longer than [`Pace::idle`]. A body that falls behind
//! ends with an error, and the request is answered 408 with `Connection: close`.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How fast a request body must arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Time allowed before the average rate counts.
    pub grace: Duration,
    /// Least average rate after the grace period, in bytes a second.
    pub min_rate: u64,
    /// Longest wait for the next part of a body.
    pub idle: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            min_rate: 1024,
            idle: Duration::from_secs(30),
        }
    }
}

impl Pace {
    /// When the body must have sent more than `read` bytes.
    fn due(&self, started: Instant, read: u64) -> Instant {
        let by_rate = Duration::from_millis(
            read.saturating_mul(1000)
                .checked_div(self.min_rate.max(1))
                .unwrap_or(u64::MAX),
        );
        started + self.grace.max(by_rate).min(Duration::from_secs(1 << 32))
    }
}

/// A body that errors once it falls behind its pace, raising `tripped`.
struct Paced {
    inner: Body,
    pace: Pace,
    started: Instant,
    read: u64,
    timer: Pin<Box<Sleep>>,
    tripped: Arc<AtomicBool>,
}

impl Paced {
    fn rearm(&mut self) {
        let now = Instant::now();
        let at = self
            .pace
            .due(self.started, self.read)
            .min(now + self.pace.idle);
        self.timer.as_mut().reset(at);
    }

    fn trip(&mut self) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.tripped.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body arrived too slowly",
        )))))
    }
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.tripped.load(Ordering::Relaxed) {
            return this.trip();
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.read = this.read.saturating_add(d.len() as u64);
                }
                if Instant::now() > this.pace.due(this.started, this.read) {
                    return this.trip();
                }
                this.rearm();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    return this.trip();
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps every request body in its pace; a request whose body fell behind is answered
/// 408 and its connection closed, whatever the handler made of the cut body.
pub(crate) async fn enforce(
    axum::extract::State(pace): axum::extract::State<Pace>,
    req: Request,
    next: Next,
) -> Response {
    // Most requests (downloads, reads) have no body: nothing to pace.
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let tripped = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let started = Instant::now();
    let mut paced = Paced {
        inner: body,
        pace,
        started,
        read: 0,
        timer: Box::pin(tokio::time::sleep_until(started + pace.idle)),
        tripped: Arc::clone(&tripped),
    };
    paced.rearm();
    let r = next.run(Request::from_parts(parts, Body::new(paced))).await;
    if !tripped.load(Ordering::Relaxed) {
        return r;
    }
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({"error": {
            "code": "body_too_slow",
            "message": "the request body arrived too slowly",
        }})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_follows_the_bytes_received() {
        let p = Pace {
            grace: Duration::from_secs(10),
            min_rate: 1000,
            idle: Duration::from_secs(30),
        };
        let t = Instant::now();
        assert_eq!(p.due(t, 0), t + Duration::from_secs(10));
        assert_eq!(p.due(t, 5_000), t + Duration::from_secs(10));
        assert_eq!(p.due(t, 20_000), t + Duration::from_secs(20));
        assert!(p.due(t, u64::MAX) > t);
    }
}
