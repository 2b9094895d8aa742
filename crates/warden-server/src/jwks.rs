//! Talking to the identity provider: fetching its JWKS (and discovery document), and
//! posting a form to its token endpoint. `https://` (TLS 1.3, trusting the configured
//! CA file or the system bundle), or plain `http://` only to a loopback address. An
//! answer is at most [`MAX_JWKS_LEN`] bytes; connecting and reading are bounded in time.
//! A refresher fetches the JWKS again on a schedule, and early (at most once a minute)
//! when a token names a key the set lacks; a failed fetch keeps the old keys.

use crate::jwt::{JwtVerifier, MAX_JWKS_LEN};
use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Time allowed to connect, and to receive the whole document.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The system CA bundle used when no `jwks_ca` is configured.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Whether a configured `jwks` value is a URL (rather than a file path).
#[must_use]
pub fn is_url(jwks: &str) -> bool {
    jwks.starts_with("https://") || jwks.starts_with("http://")
}

/// Fetches the JSON document at `url` (the JWKS, the discovery document).
pub async fn fetch(url: &str, ca: Option<&Path>) -> Result<Vec<u8>, String> {
    tokio::time::timeout(FETCH_TIMEOUT, exchange(url, ca, None))
        .await
        .map_err(|_| format!("fetching {url}: timed out"))?
        .map_err(|e| format!("fetching {url}: {e}"))
}

/// A form to post, and the `Authorization` header to send with it.
pub struct Form {
    pub body: String,
    pub authorization: Option<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for Form {
    // Neither the form (a code, a verifier) nor the credentials are ever printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form").finish_non_exhaustive()
    }
}

/// Posts `form` (`application/x-www-form-urlencoded`) to `url`; the JSON answer. An
/// error status is returned with its body (an OAuth error names its cause there).
pub async fn post_form(url: &str, ca: Option<&Path>, form: Form) -> Result<Vec<u8>, String> {
    tokio::time::timeout(FETCH_TIMEOUT, exchange(url, ca, Some(form)))
        .await
        .map_err(|_| format!("posting to {url}: timed out"))?
        .map_err(|e| format!("posting to {url}: {e}"))
}

async fn exchange(url: &str, ca: Option<&Path>, form: Option<Form>) -> Result<Vec<u8>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("use an https:// URL".into()),
    };
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // The Host header names the port unless it is the scheme's (a provider builds the
    // URLs of its discovery document from it).
    let authority = match uri.port_u16() {
        Some(p) if p != if https { 443 } else { 80 } => format!("{host}:{p}"),
        _ => host.clone(),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .collect();
    if !https && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err("plain http:// is accepted only for a loopback address".into());
    }
    let tcp = tokio::net::TcpStream::connect(addrs.as_slice())
        .await
        .map_err(|e| e.to_string())?;
    if !https {
        return send(tcp, &authority, &path, form).await;
    }
    let roots = roots(ca.unwrap_or(Path::new(SYSTEM_CA_BUNDLE)))?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    send(tls, &authority, &path, form).await
}

pub(crate) fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
        // A bundle may hold certificates this verifier cannot use; skip those.
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate", ca.display()));
    }
    Ok(roots)
}

async fn send<IO>(io: IO, host: &str, path: &str, form: Option<Form>) -> Result<Vec<u8>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header(header::HOST, host)
        .header(header::ACCEPT, "application/json");
    let req = match form {
        None => req.method("GET").body(Full::new(Bytes::new())),
        Some(f) => {
            let req = req
                .method("POST")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let req = match &f.authorization {
                Some(a) => req.header(header::AUTHORIZATION, a.as_str()),
                None => req,
            };
            req.body(Full::new(Bytes::from(f.body)))
        }
    }
    .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_JWKS_LEN)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes()
        .to_vec();
    if !status.is_success() {
        let said = String::from_utf8_lossy(body.get(..body.len().min(512)).unwrap_or_default())
            .into_owned();
        return Err(format!("HTTP {status}: {said}"));
    }
    Ok(body)
}

/// Fetches the key set again every `every`, and early (at most once a minute) after a
/// token named an unknown key. Failures are logged; the old keys stay in force.
pub fn spawn_refresh(
    verifier: Arc<JwtVerifier>,
    url: String,
    ca: Option<std::path::PathBuf>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    const EARLY: Duration = Duration::from_secs(60);
    tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let since = last.elapsed();
            let due = since >= every || (since >= EARLY && verifier.take_unknown_kid());
            if !due {
                continue;
            }
            last = tokio::time::Instant::now();
            match fetch(&url, ca.as_deref()).await {
                Ok(doc) => {
                    if let Err(e) = verifier.set_keys(&doc) {
                        crate::log(&format!("JWKS refresh: {e}; keeping the previous keys"));
                    }
                }
                Err(e) => crate::log(&format!("JWKS refresh: {e}; keeping the previous keys")),
            }
        }
    })
}
