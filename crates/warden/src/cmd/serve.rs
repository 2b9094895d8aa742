//! `warden serve`: the HTTP API.

use crate::common::{DataDirArg, eprint, open_ledger};
use crate::registry::{load_policy, open_with, runtime};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use warden_server::{AppState, app};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    dir: DataDirArg,
    /// Address to listen on. Plain HTTP is served on loopback addresses only; other
    /// addresses need TLS 1.3, which this version does not serve yet.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

pub fn run(a: &Args) -> Result<ExitCode> {
    if !a.listen.ip().is_loopback() {
        bail!(
            "refusing to serve plain HTTP on {}: off loopback Warden requires TLS 1.3, which `warden serve` does not provide yet; listen on 127.0.0.1 or ::1 behind a TLS-terminating proxy on the same host",
            a.listen
        );
    }
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    let (engine, digest) = load_policy(&dir, &cfg)?;
    let (ledger, _) = open_ledger(&dir)?;
    runtime()?.block_on(async {
        let m = Arc::new(open_with(&dir, &cfg, ledger, engine, digest).await?);
        let served = async {
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("listening on {}", a.listen))?;
            let local = listener.local_addr()?;
            eprint(&format!("warden: serving http://{local}"));
            axum::serve(
                listener,
                app(AppState {
                    manager: Arc::clone(&m),
                })
                .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown())
            .await
            .context("serving")
        }
        .await;
        // In-flight requests have drained; record the stop and the final checkpoint.
        match Arc::try_unwrap(m) {
            Ok(m) => m.close().await?,
            Err(_) => eprint("warning: requests still held the manager at shutdown"),
        }
        eprint("warden: stopped");
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    ctrl_c.await.ok();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c.await.ok();
    }
}
