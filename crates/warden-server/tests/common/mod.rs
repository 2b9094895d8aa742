//! The HTTP API tests' shared fixture: a registry with one production model, tokens,
//! JWTs from a test identity provider, and helpers that send requests through the
//! router without a socket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use warden_core::crypto::SigAlg;
use warden_core::entry::Event;
use warden_policy::{Engine, VersionState};
use warden_registry::blobs::BlobStore;
use warden_registry::manifest::Provenance;
use warden_registry::{
    Caller, ManagerOptions, Registration, SecureModelManager, Selector, keyfile,
};
use warden_server::{AppState, app};
use warden_store::keys::{self, KdfParams};
use warden_store::ledger::{Ledger, LedgerOptions, SystemClock, SystemEntropy};

/// Opens the ledger and the registry under `p`.
pub async fn open_manager(p: &std::path::Path) -> SecureModelManager {
    let ledger = Ledger::open(
        &p.join("logs/model_access.jsonl"),
        keys::unlock_root(&p.join("root.key"), b"").unwrap(),
        LedgerOptions {
            origin: "test.local/api".into(),
            alg: SigAlg::MlDsa65,
            rotation_interval: Duration::from_secs(7200),
            strict: false,
            recipients: vec![keys::read_recipient_public(&p.join("aud.key.pub")).unwrap()],
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            segments: warden_store::segments::SegmentPolicy::default(),
        },
    )
    .unwrap();
    SecureModelManager::open(
        ManagerOptions {
            database: warden_registry::db::Database::Sqlite(p.join("registry.db")),
            blobs: BlobStore::local(&p.join("blobs")).unwrap(),
            engine: Engine::default_policy().unwrap(),
            policy_digest: "test".into(),
            config_digest: None,
            clock: Arc::new(SystemClock),
        },
        std::sync::Arc::new(ledger),
    )
    .await
    .unwrap()
}

pub struct Fx {
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub m: Option<Arc<SecureModelManager>>,
    pub weights: Vec<u8>,
    pub limits: Arc<warden_server::limits::Limits>,
    pub jwt: Option<Arc<warden_server::jwt::JwtVerifier>>,
    /// The identity provider's Ed25519 key (PKCS#8) and a rogue one.
    pub idp: Vec<u8>,
    pub rogue: Vec<u8>,
}

pub const ISSUER: &str = "https://idp.test.local";
pub const AUDIENCE: &str = "warden-api";

pub fn ed25519() -> (Vec<u8>, Vec<u8>) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    (doc.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
}

pub fn jwt_verifier(public: &[u8]) -> warden_server::jwt::JwtVerifier {
    use base64::Engine as _;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "idp-1", "alg": "EdDSA", "use": "sig"}
    ]});
    let cfg: warden_store::config::JwtConfig = toml::from_str(&format!(
        r#"
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        jwks = "jwks.json"
        role_claim = "groups"
        [scope_map]
        "warden.read" = ["model:read"]
        [role_map]
        "ml-team" = "ml-engineer"
        "#
    ))
    .unwrap();
    warden_server::jwt::JwtVerifier::new(cfg, jwks.to_string().as_bytes()).unwrap()
}

impl Fx {
    pub fn new() -> Self {
        Self::with_weights(200_000)
    }

    /// A fixture whose model file is `size` bytes (over 256 KiB streams from a reader
    /// thread instead of being read inline).
    pub fn with_weights(size: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let kdf = KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
        };
        keys::create_root(
            &p.join("root.key"),
            &p.join("root.pub"),
            "test.local/api",
            SigAlg::MlDsa65,
            b"",
            kdf,
        )
        .unwrap();
        keys::create_recipient(&p.join("aud.key"), &p.join("aud.key.pub")).unwrap();
        std::fs::create_dir_all(p.join("logs")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let weights: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        std::fs::write(p.join("model.safetensors"), &weights).unwrap();
        let m = rt.block_on(async {
            let m = open_manager(p).await;
            m.add_principal(None, "admin", &["admin".into()], false, None)
                .await
                .unwrap();
            let admin = Caller::local("admin");
            let key = keyfile::create(&p.join("eng.key"), "eng", SigAlg::MlDsa65).unwrap();
            m.add_principal(
                Some(&admin),
                "eng",
                &["ml-engineer".into()],
                false,
                Some(&key.key.verifying_key()),
            )
            .await
            .unwrap();
            m.register(
                &Caller::local("eng"),
                Registration {
                    model: "fraud",
                    version: "1.0",
                    path: &p.join("model.safetensors"),
                    provenance: Provenance::default(),
                },
                &key,
                &|_, _| {},
            )
            .await
            .unwrap();
            let approver = Caller {
                mfa: true,
                ..Caller::local("admin")
            };
            let v = Selector::Version("1.0".into());
            m.promote(&approver, "fraud", &v, VersionState::Validated, None)
                .await
                .unwrap();
            m.promote(&approver, "fraud", &v, VersionState::Production, None)
                .await
                .unwrap();
            m
        });
        let (idp, idp_pub) = ed25519();
        let (rogue, _) = ed25519();
        Self {
            jwt: Some(Arc::new(jwt_verifier(&idp_pub))),
            idp,
            rogue,
            dir,
            rt,
            m: Some(Arc::new(m)),
            weights,
            limits: Arc::new(warden_server::limits::Limits::new(
                warden_server::limits::LimitConfig {
                    auth_failures_per_min: 8,
                    per_principal_per_sec: 5,
                    per_principal_burst: 30,
                    ..Default::default()
                },
            )),
        }
    }

    /// Stops the manager (as `warden serve` stops) and opens a new one on the same
    /// data, as a restart would.
    pub fn restart(&mut self) {
        let m = Arc::try_unwrap(self.m.take().unwrap()).unwrap();
        self.rt.block_on(m.close()).unwrap();
        let m = self.rt.block_on(open_manager(self.dir.path()));
        self.m = Some(Arc::new(m));
    }

    pub fn m(&self) -> &SecureModelManager {
        self.m.as_ref().unwrap()
    }

    pub fn token(&self, principal: &str, scopes: &[&str], ttl: i64) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.rt
            .block_on(
                self.m()
                    .create_token(&Caller::local("admin"), principal, &scopes, ttl),
            )
            .unwrap()
            .0
    }

    /// A JWT over `claims`, signed by the identity provider's key (or the rogue one),
    /// with the standard claims filled in unless `claims` sets them.
    pub fn jwt(&self, claims: serde_json::Value, rogue: bool) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut c = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "eng",
            "iat": now, "nbf": now - 5, "exp": now + 300, "jti": "j-1",
        });
        for (k, v) in claims.as_object().unwrap() {
            c[k] = v.clone();
        }
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some("idp-1".into());
        let key =
            jsonwebtoken::EncodingKey::from_ed_der(if rogue { &self.rogue } else { &self.idp });
        jsonwebtoken::encode(&h, &c, &key).unwrap()
    }

    /// Starts the real accept loop on a loopback port (TLS when `tls` is given) with
    /// the default state; returns its address, the stop signal and the task.
    pub fn serve(
        &self,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(AppState::new(Arc::clone(self.m.as_ref().unwrap())));
        let server = self
            .rt
            .spawn(warden_server::tls::serve(listener, router, tls, async {
                rx.await.ok();
            }));
        (addr, tx, server)
    }

    pub fn router(&self) -> axum::Router {
        app(AppState {
            manager: Arc::clone(self.m.as_ref().unwrap()),
            limits: Arc::clone(&self.limits),
            jwt: self.jwt.clone(),
            max_upload: 1 << 20,
            auditor: Some(Arc::new(
                keys::read_recipient_secret(&self.dir.path().join("aud.key")).unwrap(),
            )),
            mtls_scopes: warden_server::default_mtls_scopes(),
            pace: warden_server::pace::Pace::default(),
            dashboard: Default::default(),
            gateway: Default::default(),
        })
        .layer(MockConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))))
    }

    /// Sends a request; returns status, headers and body.
    pub fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        self.rt.block_on(async {
            let r = self.router().oneshot(req).await.unwrap();
            let (parts, body) = r.into_parts();
            (
                parts.status,
                parts.headers,
                body.collect().await.unwrap().to_bytes().to_vec(),
            )
        })
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Vec<u8>) {
        let mut b = Request::get(path)
            .header("user-agent", "api-test/1")
            .header("x-request-id", format!("rq-{path}"));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let (s, _, body) = self.send(b.body(Body::empty()).unwrap());
        (s, body)
    }

    pub fn close_and_read(&mut self) -> Vec<(String, Event)> {
        let m = Arc::try_unwrap(self.m.take().unwrap()).unwrap();
        self.rt.block_on(m.close()).unwrap();
        let p = self.dir.path();
        let sk = keys::read_recipient_secret(&p.join("aud.key")).unwrap();
        let data = std::fs::read(p.join("logs/model_access.jsonl")).unwrap();
        let mut key = None;
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let e = warden_core::entry::parse_line(line).unwrap();
            if let Some(r) = e.header.rotation {
                key = warden_core::epoch::RotationRecord::decode(r)
                    .unwrap()
                    .unwrap_data_key(&sk)
                    .unwrap();
            }
            let mut pt = Vec::new();
            e.open(key.as_ref().unwrap(), &mut pt).unwrap();
            out.push((
                e.header.kind.to_owned(),
                Event::from_plaintext(&pt).unwrap(),
            ));
        }
        out
    }
}

pub const FILE: &str = "/v1/models/fraud/versions/1.0/files/model.safetensors";
pub const SHOW: &str = "/v1/models/fraud/versions/1.0";

/// Sends `method path` with a bearer token and an optional JSON body; returns status
/// and parsed JSON (Null when the body is not JSON).
pub fn call(
    fx: &Fx,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    call_via(fx, &fx.router(), method, path, token, body)
}

/// [`call`] through `router`.
pub fn call_via(
    fx: &Fx,
    router: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", format!("rq-{method}-{path}"));
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .unwrap();
    let r = fx.rt.block_on(async {
        let r = router.clone().oneshot(req).await.unwrap();
        let (parts, body) = r.into_parts();
        (parts.status, body.collect().await.unwrap().to_bytes())
    });
    (r.0, serde_json::from_slice(&r.1).unwrap_or_default())
}

/// Registers `path` as `model@version`, signed by `eng`.
pub fn register(fx: &Fx, model: &str, version: &str, path: &std::path::Path) {
    let key = keyfile::read(&fx.dir.path().join("eng.key")).unwrap();
    fx.rt
        .block_on(fx.m().register(
            &Caller::local("eng"),
            Registration {
                model,
                version,
                path,
                provenance: Provenance::default(),
            },
            &key,
            &|_, _| {},
        ))
        .unwrap();
}

pub fn sha256_hex(b: &[u8]) -> String {
    warden_core::hex::encode(&warden_core::merkle::sha256(b))
}

/// Polls `done` every 5 ms for at most a second.
pub fn wait_until(done: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !done() && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(5));
    }
}
