//! TLS 1.3 termination (rustls with the aws-lc-rs provider) and the accept loop that
//! serves the router over it.

use axum::Router;
use axum::extract::ConnectInfo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest PEM file read.
const MAX_PEM: u64 = 1 << 20;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Pem {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_PEM {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            detail: format!("larger than {MAX_PEM} bytes"),
        });
    }
    std::fs::read(path).map_err(io)
}

/// A server configuration that speaks TLS 1.3 only, from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with_clients(cert, key, None)
}

/// [`server_config`], optionally asking clients for a certificate that chains to one of
/// the CA certificates in `client_ca` (PEM). Clients without one may still connect and
/// authenticate with a bearer token; a presented certificate that does not verify
/// fails the handshake.
pub fn server_config_with_clients(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem = |path: &Path, detail: String| TlsError::Pem {
        path: path.to_path_buf(),
        detail,
    };
    let cert_pem = read(cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem(cert, "no certificate found".into()));
    }
    let key_pem = zeroize::Zeroizing::new(read(key)?);
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_pem = read(ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca_pem) {
                roots
                    .add(c.map_err(|e| pem(ca, e.to_string()))?)
                    .map_err(|e| pem(ca, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(pem(ca, "no CA certificate found".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| pem(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key_der)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Writes a self-signed development certificate for `localhost`, 127.0.0.1 and ::1
/// (the key file 0600). Clients must be told to trust it; it is for development only.
pub fn write_dev_certificate(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    let key_pem = zeroize::Zeroizing::new(ck.signing_key.serialize_pem());
    warden_store::durable::write_new(key, key_pem.as_bytes(), 0o600).map_err(io(key))?;
    warden_store::durable::write_new(cert, ck.cert.pem().as_bytes(), 0o644).map_err(io(cert))?;
    Ok(())
}

/// Most request header fields accepted; more is a 431.
pub const MAX_HEADERS: usize = 64;
/// Largest buffered request head (request line and headers), in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` over TLS on `listener` until `shutdown` completes, then stops
/// accepting and lets every open connection finish its request.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve(listener, router, Some(config), shutdown).await;
}

/// Serves plain HTTP (loopback only; the caller checks) with the same contract.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve(listener, router, None, shutdown).await;
}

/// Connections served at once by default; past that a connection is answered 503.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections past the limit that are still answered 503 (the rest are closed).
const OVERFLOW_ANSWERS: usize = 64;
/// The answer to a connection past the limit.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 77\r\n\r\n{\"error\":{\"code\":\"overloaded\",\"message\":\"too many connections; retry later\"}}";

/// The one accept loop with [`DEFAULT_MAX_CONNECTIONS`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_limited(listener, router, tls, DEFAULT_MAX_CONNECTIONS, shutdown).await;
}

/// The one accept loop: TLS when `tls` is given, the same HTTP/1.1 limits and timeouts
/// either way (header count and size, header read timeout, handshake timeout), and at
/// most `max_connections` connections at once: one more is answered `503` with
/// `Retry-After` and closed (past a small number of such answers in flight, closed at
/// once).
pub async fn serve_limited(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let overflow = Arc::new(tokio::sync::Semaphore::new(OVERFLOW_ANSWERS));
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        while tasks.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(_) => {
                // Out of descriptors or a reset before accept: back off briefly.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if let Ok(permit) = Arc::clone(&overflow).try_acquire_owned() {
                tasks.spawn(async move {
                    let _permit = permit;
                    overloaded(tcp, acceptor).await;
                });
            }
            continue;
        };
        let router = router.clone().layer(axum::Extension(ConnectInfo(peer)));
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            let _slot = slot;
            match acceptor {
                None => connection(tcp, router, stop).await,
                Some(acceptor) => {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        // A verified client certificate names the caller (mTLS).
                        let id = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(crate::mtls::common_name);
                        let router = match id {
                            Some(name) => {
                                router.layer(axum::Extension(crate::mtls::ClientIdentity(name)))
                            }
                            None => router,
                        };
                        connection(tls, router, stop).await;
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

/// Answers a connection past the limit with 503 and closes it, within the handshake
/// timeout.
async fn overloaded(tcp: tokio::net::TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>) {
    use tokio::io::AsyncWriteExt;
    let answer = async {
        match acceptor {
            None => {
                let mut tcp = tcp;
                let _ = tcp.write_all(OVERLOADED).await;
                let _ = tcp.shutdown().await;
            }
            Some(a) => {
                if let Ok(mut tls) = a.accept(tcp).await {
                    let _ = tls.write_all(OVERLOADED).await;
                    let _ = tls.shutdown().await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, answer).await;
}

async fn connection<IO>(io: IO, router: Router, mut stop: tokio::sync::watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// An HTTP client for Warden's outgoing calls (inference upstreams, witnesses): TLS 1.3
/// only, the system's CA bundle, no proxies from the environment, no redirects
/// followed, `pool` idle connections kept per host.
pub fn http_client(
    connect: std::time::Duration,
    read: std::time::Duration,
    pool: usize,
) -> Result<reqwest::Client, String> {
    let roots = crate::jwks::roots(Path::new(crate::jwks::SYSTEM_CA_BUNDLE))
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
        .connect_timeout(connect)
        .read_timeout(read)
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}

/// What went wrong with an outgoing call, without the URL's text repeated.
pub fn http_error_text(e: &reqwest::Error) -> String {
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
