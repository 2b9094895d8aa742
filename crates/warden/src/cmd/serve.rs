//! `warden serve`: the HTTP API.

use crate::cmd::exporters::Exporters;
use crate::common::{DataDirArg, eprint};
use crate::registry::{load_policy, open_with, runtime};
use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use warden_server::{AppState, app};
use warden_store::journal::Journal;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    dir: DataDirArg,
    /// Address to listen on. Plain HTTP is served on loopback addresses only; any other
    /// address is served over TLS 1.3.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve TLS 1.3 on loopback too.
    #[arg(long)]
    tls: bool,
    /// Certificate chain (PEM); default: tls_cert in warden.toml (the development
    /// certificate `warden init` wrote).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Requests per second per client address (burst: twice this).
    #[arg(long, default_value_t = 500)]
    rate_ip: u32,
    /// Requests per second per principal (burst: twice this).
    #[arg(long, default_value_t = 200)]
    rate_principal: u32,
    /// Requests per second from one /24 (IPv4) or /64 (IPv6) network (burst: twice
    /// this). Behind a proxy every request comes from its address: raise this with
    /// --rate-ip.
    #[arg(long, default_value_t = 2000)]
    rate_network: u32,
    /// Failed authentications per minute per client address before answers turn to 429.
    #[arg(long, default_value_t = 10)]
    auth_failures_per_min: u32,
    /// Failed authentications per minute per /24 or /64 network.
    #[arg(long, default_value_t = 50)]
    auth_failures_per_network_per_min: u32,
    /// Failed authentications per minute from everywhere written one by one; past it
    /// they are answered 429 and counted, one entry per address a minute.
    #[arg(long, default_value_t = 600)]
    auth_failures_total_per_min: u32,
    /// CA certificates (PEM) for optional client certificates (mTLS): a certificate
    /// chaining to one identifies the principal named by its subject CN. Needs TLS.
    #[arg(long)]
    client_ca: Option<std::path::PathBuf>,
    /// Scopes of callers identified by a client certificate.
    #[arg(long, value_delimiter = ',', default_value = "model:read,model:load")]
    mtls_scopes: Vec<String>,
    /// Auditor secret key: lets the audit endpoints return decrypted events. Without
    /// it they return the public headers only.
    #[arg(long)]
    auditor_key: Option<std::path::PathBuf>,
    /// Largest file accepted by an upload, in bytes.
    #[arg(long, default_value_t = warden_server::DEFAULT_MAX_UPLOAD)]
    max_upload: u64,
    /// Connections served at once; one more is answered 503 with Retry-After.
    #[arg(long, default_value_t = warden_server::tls::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    let limits = warden_server::limits::LimitConfig {
        per_ip_per_sec: a.rate_ip,
        per_ip_burst: a.rate_ip.saturating_mul(2),
        per_principal_per_sec: a.rate_principal,
        per_principal_burst: a.rate_principal.saturating_mul(2),
        per_network_per_sec: a.rate_network,
        per_network_burst: a.rate_network.saturating_mul(2),
        auth_failures_per_min: a.auth_failures_per_min,
        auth_failures_per_network_per_min: a.auth_failures_per_network_per_min,
        auth_failures_total_per_min: a.auth_failures_total_per_min,
    };
    // Plain HTTP on loopback only: anything else is TLS 1.3.
    let tls = if a.tls || !a.listen.ip().is_loopback() {
        let cert = a
            .tls_cert
            .clone()
            .unwrap_or_else(|| dir.resolve(&cfg.tls_cert));
        let key = a
            .tls_key
            .clone()
            .unwrap_or_else(|| dir.resolve(&cfg.tls_key));
        Some(
            warden_server::tls::server_config_with_clients(&cert, &key, a.client_ca.as_deref())
                .with_context(|| format!("TLS is required on {}", a.listen))?,
        )
    } else {
        None
    };
    if a.client_ca.is_some() && !a.tls && a.listen.ip().is_loopback() {
        anyhow::bail!("--client-ca needs TLS: add --tls (or listen off loopback)");
    }
    // A JWKS file is read now; a JWKS URL is fetched once the runtime runs.
    let jwt_file = match &cfg.jwt {
        Some(j) if !warden_server::jwks::is_url(&j.jwks.to_string_lossy()) => {
            let path = dir.resolve(&j.jwks);
            Some(
                read_limited(&path, warden_server::jwt::MAX_JWKS_LEN)
                    .with_context(|| format!("reading the JWKS {}", path.display()))?,
            )
        }
        _ => None,
    };
    let auditor = a
        .auditor_key
        .as_deref()
        .map(crate::common::read_auditor)
        .transpose()?
        .map(Arc::new);
    let (engine, digest) = load_policy(&dir, &cfg)?;
    // SIEM sinks are checked before the ledger is touched; they start once it is open.
    let sinks = cfg
        .siem
        .iter()
        .map(|c| crate::cmd::export::spec(&dir, c).with_context(|| format!("[[siem]] to {}", c.to)))
        .collect::<Result<Vec<_>>>()?;
    // On a cluster this process is a node of the shared ledger; on one machine it owns
    // the data directory's ledger and serves local clients through its writer socket.
    let node = crate::cluster::join(&dir, &cfg)?;
    let ledger = match node {
        Some(_) => None,
        None => Some(Arc::new(crate::journal::open_owned(&dir, true)?)),
    };
    // The metrics recorder first, so the exporters' lag gauges are served at /metrics.
    warden_server::metrics::install();
    let exporters = Exporters::start(
        &dir.log(&cfg),
        &crate::cmd::export::export_dir(&dir),
        sinks,
        node.clone(),
    )?;
    let rt = runtime()?;
    // Witnesses asked to cosign each newer checkpoint (`[witnessing]`); on a cluster the
    // sequencer does not yet write the epoch record witnesses need, so not there.
    let _witnessing = match node {
        None => crate::cmd::cosign::schedule(&cfg.witnessing, &dir.log(&cfg))?,
        Some(_) if !cfg.witnessing.witness.is_empty() => {
            anyhow::bail!(
                "[witnessing] is not supported on a cluster yet; remove it or run `warden log cosign` on one node"
            )
        }
        Some(_) => None,
    };
    // The committed ledger, published to a bucket as tlog-tiles (`publish_log`).
    let publishing = crate::publish::Publishing::start(node.as_ref(), &cfg)?;
    rt.block_on(async {
        let jwt = match &cfg.jwt {
            None => None,
            Some(j) => {
                let url = j.jwks.to_string_lossy().into_owned();
                let ca = j.jwks_ca.as_ref().map(|p| dir.resolve(p));
                let doc = match &jwt_file {
                    Some(doc) => doc.clone(),
                    None => warden_server::jwks::fetch(&url, ca.as_deref())
                        .await
                        .map_err(anyhow::Error::msg)
                        .context("[jwt] jwks")?,
                };
                let v = Arc::new(
                    warden_server::jwt::JwtVerifier::new(j.clone(), &doc)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("[jwt] in {}", dir.config().display()))?,
                );
                if jwt_file.is_none() {
                    warden_server::jwks::spawn_refresh(
                        Arc::clone(&v),
                        url,
                        ca,
                        std::time::Duration::from_secs(j.jwks_refresh_secs.max(10)),
                    );
                }
                Some(v)
            }
        };
        let journal: Arc<dyn Journal> = match (&node, &ledger) {
            (Some(n), _) => Arc::clone(n) as Arc<dyn Journal>,
            (None, Some(l)) => Arc::clone(l) as Arc<dyn Journal>,
            (None, None) => anyhow::bail!("no ledger to serve"),
        };
        let m = Arc::new(open_with(&dir, &cfg, journal, engine, digest).await?);
        // Local clients (the CLI, Python workers) append through this process; on a
        // cluster each of them joins the cluster itself.
        let writer = match ledger {
            Some(l) => Some(crate::cmd::writer::listen(
                &dir,
                &cfg,
                l,
                Arc::clone(&m),
                cfg.detection.enabled,
            )?),
            None => {
                eprint(&format!(
                    "warden: cluster node {}: the ledger is shared through the backend database",
                    crate::cluster::node_name()
                ));
                None
            }
        };
        // Inline threat detection and its playbook (`[detection]`).
        let alerts = webhooks(&dir, &cfg.detection.webhooks)?;
        let root = crate::common::unlock(&dir)?;
        // Prompts and answers sealed to the auditors, when `[gateway] seal_content`.
        let vault = if cfg.gateway.seal_content {
            Some(Arc::new(
                warden_store::content::Vault::start(
                    warden_store::content::dir(&dir.root),
                    root.public.origin.clone(),
                    dir.read_auditors()?,
                )
                .context("[gateway] seal_content")?,
            ))
        } else {
            None
        };
        let _responder = m.enable_detection_with(
            &cfg.detection,
            alerts,
            Some(baselines(&dir, &root, node.as_deref())?),
        )?;
        let (stop_schedule, stopped) = tokio::sync::watch::channel(false);
        let (schedule, on_demand) =
            crate::cmd::schedule::spawn(Arc::clone(&m), &dir, &cfg, root, stopped, node.clone())?;
        // On a cluster each budget is one for all the nodes.
        let budgets = crate::cluster::Budgets::connect(&cfg).await?;
        let served = async {
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("listening on {}", a.listen))?;
            let local = listener.local_addr()?;
            let oidc = oidc_client(&dir, &cfg).await?;
            let dashboard = Arc::new(
                warden_server::dashboard::Dashboard::with_sinks({
                    let dir = dir.clone();
                    Box::new(move || crate::cmd::report::sink_positions(&dir).unwrap_or_default())
                })
                .with_reports(warden_server::dashboard::Archive::new(
                    on_demand.reports(),
                    on_demand.root_public(),
                    Some(Box::new(move |by| {
                        let o = on_demand.clone();
                        Box::pin(async move { o.report(by).await.map_err(|e| format!("{e:#}")) })
                    })),
                ))
                .with_oidc_if(oidc),
            );
            // The dashboard's counts are built from now on, not on its first view.
            let _counting =
                dashboard.count_from_start(m.ledger_state().0.to_path_buf(), auditor.clone());
            let gateway = Arc::new({
                let g = warden_server::gateway::Gateway::new(cfg.gateway.clone());
                match &vault {
                    Some(v) => g.with_vault(Arc::clone(v)),
                    None => g,
                }
            });
            let probes = (cfg.gateway.health_check_secs > 0).then(|| {
                warden_server::gateway::health::spawn(
                    Arc::clone(&gateway),
                    Arc::clone(&m),
                    std::time::Duration::from_secs(cfg.gateway.health_check_secs),
                )
            });
            let router = app(AppState {
                manager: Arc::clone(&m),
                limits: Arc::new(match budgets {
                    Some(b) => warden_server::limits::Limits::shared(limits, Arc::new(b)),
                    None => warden_server::limits::Limits::new(limits),
                }),
                jwt: jwt.clone(),
                max_upload: a.max_upload,
                auditor: auditor.clone(),
                mtls_scopes: a.mtls_scopes.clone().into(),
                pace: warden_server::pace::Pace::default(),
                dashboard: Arc::clone(&dashboard),
                gateway,
            });
            match &tls {
                Some(_) => eprint(&format!("warden: serving https://{local} (TLS 1.3)")),
                None => eprint(&format!("warden: serving http://{local}")),
            }
            warden_server::tls::serve_limited(
                listener,
                router,
                tls,
                a.max_connections,
                async move {
                    crate::common::shutdown_signal().await;
                    // Live dashboard streams end, so the connections can drain.
                    dashboard.close();
                },
            )
            .await;
            // The probes let go of the manager before it closes.
            if let Some(p) = probes {
                p.abort();
                let _ = p.await;
            }
            anyhow::Ok(())
        }
        .await;
        // Scheduled jobs finish what they are doing and let go of the manager; local
        // clients get the replies already due, then their connections close.
        let _ = stop_schedule.send(true);
        let _ = schedule.await;
        if let Some(w) = writer {
            w.stop();
        }
        // In-flight requests have drained; record the stop and the final checkpoint.
        match Arc::try_unwrap(m) {
            Ok(m) => m.close().await?,
            Err(_) => eprint("warning: requests still held the manager at shutdown"),
        }
        // The exporters deliver the last entries; then the node writes what it took and
        // gives its leases up.
        if let Some(v) = vault {
            v.stop();
        }
        exporters.stop();
        if let Some(p) = publishing {
            p.stop().await;
        }
        drop(node);
        eprint("warden: stopped");
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Where the detectors keep what they learnt between processes: on a cluster the
/// database (for whichever node sequences next), else a file of the data directory.
/// Sealed under a key derived from the root key.
fn baselines(
    dir: &warden_store::config::DataDir,
    root: &warden_store::keys::RootKey,
    node: Option<&warden_cluster::node::ClusterNode>,
) -> Result<Arc<dyn warden_store::baselines::Baselines>> {
    let sealer = warden_store::baselines::Sealer::new(root)?;
    Ok(match node {
        Some(n) => Arc::new(n.baselines(sealer)?),
        None => Arc::new(warden_store::baselines::FileBaselines::new(
            dir.root.join(DETECTION_STATE),
            sealer,
        )),
    })
}

/// The detectors' sealed state in an embedded data directory.
pub const DETECTION_STATE: &str = "detection.state";

/// A webhook as an alert sink.
#[derive(Debug)]
struct WebhookSink {
    url: String,
    hook: std::sync::Mutex<warden_siem::transport::webhook::Webhook>,
}

impl warden_registry::respond::AlertSink for WebhookSink {
    fn name(&self) -> String {
        self.url.clone()
    }
    fn deliver(&self, body: &[u8], now_secs: u64) -> Result<(), String> {
        self.hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .post(body, now_secs)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The alert sinks of `[[detection.webhooks]]`, with their secrets from the environment.
fn webhooks(
    dir: &warden_store::config::DataDir,
    hooks: &[warden_detect::WebhookConfig],
) -> Result<Vec<warden_registry::respond::AlertTarget>> {
    let secret = |var: &Option<String>| -> Result<Option<zeroize::Zeroizing<String>>> {
        let Some(var) = var else { return Ok(None) };
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(zeroize::Zeroizing::new(v))),
            _ => anyhow::bail!("[[detection.webhooks]]: the environment variable {var} is not set"),
        }
    };
    let mut out = Vec::new();
    for h in hooks {
        let tls = warden_siem::transport::TlsFiles {
            ca: h.ca.as_ref().map(|p| dir.resolve(p)),
            ..Default::default()
        };
        let key = secret(&h.secret_env)?.map(|k| zeroize::Zeroizing::new(k.as_bytes().to_vec()));
        let hook =
            warden_siem::transport::webhook::Webhook::new(&h.url, &tls, secret(&h.token_env)?, key)
                .with_context(|| format!("[[detection.webhooks]] {}", h.url))?;
        out.push(warden_registry::respond::AlertTarget {
            sink: Arc::new(WebhookSink {
                url: hook.url().to_owned(),
                hook: std::sync::Mutex::new(hook),
            }),
            min_severity: h.min_severity.clone(),
            attempts: h.attempts,
            backoff: std::time::Duration::from_millis(h.backoff_ms),
        });
    }
    Ok(out)
}

fn read_limited(path: &std::path::Path, max: usize) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buf)?;
    anyhow::ensure!(buf.len() <= max, "larger than {max} bytes");
    Ok(buf)
}

/// The dashboard's sign-in through the identity provider, when `[oidc]` is configured
/// (it needs `[jwt]`, which checks the tokens the provider issues).
async fn oidc_client(
    dir: &warden_store::config::DataDir,
    cfg: &warden_store::config::Config,
) -> Result<Option<warden_server::dashboard::OidcClient>> {
    let Some(o) = &cfg.oidc else {
        return Ok(None);
    };
    let Some(jwt) = &cfg.jwt else {
        anyhow::bail!("[oidc] needs [jwt]: the provider's tokens are checked as JWTs");
    };
    let secret = match &o.client_secret_env {
        Some(var) => Some(zeroize::Zeroizing::new(
            std::env::var(var)
                .with_context(|| format!("[oidc] client_secret_env: {var} is not set"))?,
        )),
        None => None,
    };
    let ca = jwt.jwks_ca.as_ref().map(|p| dir.resolve(p));
    let c = warden_server::dashboard::OidcClient::connect(o.clone(), &jwt.issuer, secret, ca)
        .await
        .map_err(|e| anyhow::anyhow!("[oidc]: {e}"))?;
    Ok(Some(c))
}
