//! `warden bench upstream`: an OpenAI-compatible endpoint that answers every request
//! after a fixed delay, with a canned answer and its usage. It exists so that
//! `bench/gateway` can measure what the gateway adds to an upstream of known latency
//! (a real model's latency varies more than the gateway's cost); the gateway's tests
//! talk to a real inference server.

use anyhow::{Context, Result};
use axum::Router;
use axum::response::IntoResponse;
use axum::routing::post;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How long each answer takes, milliseconds.
    #[arg(long, default_value_t = 1)]
    delay_ms: u64,
}

async fn answer(delay: Duration, body: axum::body::Bytes) -> axum::response::Response {
    tokio::time::sleep(delay).await;
    let chat = body.windows(10).any(|w| w == b"\"messages\"");
    let choice = if chat {
        r#"{"index":0,"message":{"role":"assistant","content":"a canned answer of eight tokens"},"finish_reason":"length"}"#
    } else {
        r#"{"index":0,"text":"a canned answer of eight tokens","finish_reason":"length"}"#
    };
    let out = format!(
        r#"{{"id":"bench","object":"{}","created":0,"model":"bench","choices":[{choice}],"usage":{{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}}}"#,
        if chat {
            "chat.completion"
        } else {
            "text_completion"
        }
    );
    ([("content-type", "application/json")], out).into_response()
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let delay = Duration::from_millis(a.delay_ms);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        crate::common::eprint(&format!(
            "warden: bench upstream on http://{} ({} ms per answer)",
            listener.local_addr()?,
            a.delay_ms
        ));
        let app = Router::new()
            .route(
                "/v1/chat/completions",
                post(move |b: axum::body::Bytes| answer(delay, b)),
            )
            .route(
                "/v1/completions",
                post(move |b: axum::body::Bytes| answer(delay, b)),
            );
        axum::serve(listener, app)
            .with_graceful_shutdown(crate::common::shutdown_signal())
            .await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
