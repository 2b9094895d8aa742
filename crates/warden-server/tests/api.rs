//! The HTTP API: token scopes × endpoints, token states, input errors, and every request
//! that touches a model present in the ledger. Most tests call the router directly
//! (`oneshot`); one drives a real server on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use warden_core::entry::Event;
use warden_registry::manifest::Provenance;
use warden_registry::{Caller, Registration, Selector, keyfile};
use warden_store::keys;

#[test]
fn token_scopes_decide_what_each_endpoint_serves() {
    let mut fx = Fx::new();
    let read = fx.token("eng", &["model:read"], 3600);
    let load = fx.token("eng", &["model:load"], 3600);
    let both = fx.token("eng", &["model:read", "model:load"], 3600);
    let audit = fx.token("eng", &["audit:read"], 3600);
    // (token, endpoint, expected status)
    let cases = [
        (&read, SHOW, StatusCode::OK),
        (&read, FILE, StatusCode::FORBIDDEN),
        (&load, SHOW, StatusCode::FORBIDDEN),
        (&load, FILE, StatusCode::OK),
        (&both, SHOW, StatusCode::OK),
        (&both, FILE, StatusCode::OK),
        (&audit, SHOW, StatusCode::FORBIDDEN),
        (&audit, FILE, StatusCode::FORBIDDEN),
        (
            &both,
            "/v1/models/fraud/versions/production/files/model.safetensors",
            StatusCode::OK,
        ),
        (
            &both,
            "/v1/models/fraud/versions/9.9/files/model.safetensors",
            StatusCode::NOT_FOUND,
        ),
        (
            &both,
            "/v1/models/fraud/versions/1.0/files/missing.bin",
            StatusCode::NOT_FOUND,
        ),
        (&both, "/v1/models/nope/versions/1.0", StatusCode::NOT_FOUND),
    ];
    for (t, path, want) in cases {
        let (s, body) = fx.get(path, Some(t));
        assert_eq!(s, want, "{path}: {}", String::from_utf8_lossy(&body));
        if s == StatusCode::OK && path.contains("/files/") {
            assert_eq!(body, fx.weights);
        }
        if s != StatusCode::OK {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(v["error"]["code"].is_string(), "{v}");
        }
    }
    // The auth scheme is case-insensitive.
    let req = Request::get(SHOW)
        .header("authorization", format!("bearer {read}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(fx.send(req).0, StatusCode::OK);
    // Listing shows only what the token may read.
    let (_, body) = fx.get("/v1/models", Some(&read));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["versions"].as_array().unwrap().len(), 1);
    let (_, body) = fx.get("/v1/models", Some(&load));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["versions"].as_array().unwrap().len(), 0);

    let ev = fx.close_and_read();
    // Every download is in the ledger, with the token's principal, the client's address,
    // user agent and request id.
    let access: Vec<_> = ev.iter().filter(|(k, _)| k == "model.access").collect();
    assert_eq!(access.len(), 3);
    for (_, e) in &access {
        assert_eq!(e.user.as_deref(), Some("eng"));
        assert_eq!(e.ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(e.user_agent.as_deref(), Some("api-test/1"));
        assert!(
            e.request_id
                .as_deref()
                .unwrap()
                .starts_with("rq-/v1/models/fraud")
        );
    }
    let denied = ev
        .iter()
        .filter(|(k, e)| {
            k == "model.denied" && e.reason.as_deref().is_some_and(|r| r.contains("scope"))
        })
        .count();
    assert_eq!(denied, 4); // the four FORBIDDEN rows above
}

#[test]
fn missing_bad_expired_and_revoked_tokens_get_401_and_are_recorded() {
    let mut fx = Fx::new();
    let scopes = vec!["model:load".to_owned()];
    let (revoked, info, _) = fx
        .rt
        .block_on(
            fx.m()
                .create_token(&Caller::local("admin"), "eng", &scopes, 3600),
        )
        .unwrap();
    let id = info.id;
    let expiring = fx.token("eng", &["model:load"], 1);
    // Listing shows both tokens, never their secrets.
    let listed = fx
        .rt
        .block_on(fx.m().tokens(&Caller::local("admin"), Some("eng")))
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!format!("{listed:?}").contains("wdn_"));
    fx.rt
        .block_on(fx.m().revoke_token(&Caller::local("admin"), &id))
        .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let long = "wdn_".to_owned() + &"a".repeat(500);
    for t in [
        None,
        Some("nonsense"),
        Some("wdn_00"),
        Some(long.as_str()),
        Some(revoked.as_str()),
        Some(expiring.as_str()),
    ] {
        let mut b = Request::get(FILE);
        if let Some(t) = t {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let (s, h, body) = fx.send(b.body(Body::empty()).unwrap());
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{t:?}");
        assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
        assert!(
            !body.windows(4).any(|w| w == b"wdn_"),
            "no token text in the answer"
        );
    }
    let ev = fx.close_and_read();
    let reasons: Vec<_> = ev
        .iter()
        .filter(|(k, _)| k == "auth.failure")
        .map(|(_, e)| e.reason.clone().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "no token",
            "malformed token",
            "unknown token",
            "malformed token",
            "revoked token",
            "expired token"
        ]
    );
    assert!(ev.iter().all(|(k, _)| k != "model.access"));
}

#[test]
fn bad_input_gets_4xx_json_never_5xx() {
    let fx = Fx::new();
    let t = fx.token("eng", &["model:read", "model:load"], 3600);
    let post = |body: Vec<u8>, ct: &str| {
        Request::post("/v1/models/fraud/versions/1.0/decision")
            .header("authorization", format!("Bearer {t}"))
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap()
    };
    let (s, _, b) = fx.send(post(br#"{"action":"load"}"#.to_vec(), "application/json"));
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["allowed"], true);
    for (body, ct) in [
        (br#"{"action":"#.to_vec(), "application/json"),
        (br#"{"action":"fly"}"#.to_vec(), "application/json"),
        (
            br#"{"action":"load","extra":1}"#.to_vec(),
            "application/json",
        ),
        (br#"{"action":"load"}"#.to_vec(), "text/plain"),
        (vec![b'['; 200_000], "application/json"),
    ] {
        let (s, _, b) = fx.send(post(body, ct));
        assert!(s.is_client_error(), "{s}: {}", String::from_utf8_lossy(&b));
    }
    let (s, _) = fx.get("/v1/nothing/here", Some(&t));
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = fx.get("/v1/models/..%2F..%2Fetc/versions/1.0", Some(&t));
    assert!(s.is_client_error(), "{s}");
}

#[test]
fn a_real_server_on_loopback_serves_and_records_the_client_address() {
    use std::io::{Read, Write};
    let mut fx = Fx::new();
    let t = fx.token("eng", &["model:load"], 3600);
    let (addr, tx, server) = fx.serve(None);
    let fetch = |path: &str, auth: bool| -> Vec<u8> {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let auth = if auth {
            format!("Authorization: Bearer {t}\r\n")
        } else {
            String::new()
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    };
    assert!(fetch("/healthz", false).starts_with(b"HTTP/1.1 200"));
    let r = fetch(FILE, true);
    assert!(
        r.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&r[..100.min(r.len())])
    );
    assert!(r.ends_with(&fx.weights));
    tx.send(()).unwrap();
    fx.rt.block_on(server).unwrap();
    let ev = fx.close_and_read();
    let (_, e) = ev.iter().find(|(k, _)| k == "model.access").unwrap();
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
}

/// TLS 1.3 only: a TLS 1.3 client is served, a TLS 1.2-only client is refused.
#[test]
fn tls_serves_1_3_and_refuses_1_2() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fx::new();
    let (cert, key) = (
        fx.dir.path().join("tls/c.pem"),
        fx.dir.path().join("tls/k.pem"),
    );
    warden_server::tls::write_dev_certificate(&cert, &key).unwrap();
    let cfg = warden_server::tls::server_config(&cert, &key).unwrap();
    let (addr, tx, server) = fx.serve(Some(cfg));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let client = |v: &'static rustls::SupportedProtocolVersion| {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[v])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    };
    fx.rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = client(&rustls::version::TLS13)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.ok();
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let r = client(&rustls::version::TLS12)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await;
        assert!(r.is_err(), "a TLS 1.2 handshake must fail");
    });
    tx.send(()).unwrap();
    fx.rt.block_on(server).unwrap();
}

#[test]
fn rate_limits_answer_429_with_retry_after_and_ratelimit_fields() {
    let fx = Fx::new();
    // Failed authentications from one address: 8 answers of 401, then 429.
    let mut codes = Vec::new();
    for _ in 0..10 {
        let req = Request::get(SHOW)
            .header("authorization", "Bearer wdn_ffff")
            .body(Body::empty())
            .unwrap();
        codes.push(fx.send(req).0);
    }
    assert_eq!(&codes[..8], &[StatusCode::UNAUTHORIZED; 8]);
    assert_eq!(&codes[8..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
    let req = Request::get(SHOW)
        .header("authorization", "Bearer wdn_ffff")
        .body(Body::empty())
        .unwrap();
    let (s, h, _) = fx.send(req);
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        h.get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        h.get("ratelimit-policy").unwrap(),
        "\"auth-failures\";q=8;w=60"
    );
    assert!(
        h.get("ratelimit")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("\"auth-failures\";r=0;t=")
    );
    // A valid token from that address still works: the failure budget only stops guessing.
    let t = fx.token("eng", &["model:read"], 3600);
    assert_eq!(fx.get(SHOW, Some(&t)).0, StatusCode::OK);
    // Per principal: a burst of 30, then 429 with the principal policy.
    let mut limited = None;
    for i in 0..40 {
        let (s, _) = fx.get(SHOW, Some(&t));
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(i);
            break;
        }
    }
    assert!(
        limited.is_some_and(|i| (25..40).contains(&i)),
        "{limited:?}"
    );
}

#[test]
fn jwt_bearer_tokens_are_verified_mapped_and_every_refusal_recorded() {
    let mut fx = Fx::new();
    fx.rt
        .block_on(
            fx.m()
                .add_principal(Some(&Caller::local("admin")), "dana", &[], false, None),
        )
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let bearer = |t: &str| format!("Bearer {t}");
    let get = |fx: &Fx, path: &str, t: &str| {
        let req = Request::get(path)
            .header("authorization", bearer(t))
            .body(Body::empty())
            .unwrap();
        fx.send(req).0
    };
    // Accepted: scopes from the claim, a provider scope mapped to a Warden scope.
    let good = fx.jwt(serde_json::json!({"scope": "model:read model:load"}), false);
    assert_eq!(get(&fx, FILE, &good), StatusCode::OK);
    let mapped = fx.jwt(serde_json::json!({"scope": "warden.read openid"}), false);
    assert_eq!(get(&fx, SHOW, &mapped), StatusCode::OK);
    assert_eq!(
        get(&fx, FILE, &mapped),
        StatusCode::FORBIDDEN,
        "no model:load"
    );
    // A mapped group adds a role: dana has none of her own.
    let plain = fx.jwt(
        serde_json::json!({"sub": "dana", "scope": "model:load"}),
        false,
    );
    assert_eq!(get(&fx, FILE, &plain), StatusCode::FORBIDDEN);
    let grouped = fx.jwt(
        serde_json::json!({"sub": "dana", "scope": "model:load", "groups": ["ml-team", "x"]}),
        false,
    );
    assert_eq!(get(&fx, FILE, &grouped), StatusCode::OK);
    // `amr` carries MFA: revoking needs it. (Asking for a decision needs model:read.)
    let decide = |fx: &Fx, t: &str| {
        let req = Request::post("/v1/models/fraud/versions/1.0/decision")
            .header("authorization", bearer(t))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"action":"revoke"}"#))
            .unwrap();
        let (s, _, body) = fx.send(req);
        assert_eq!(s, StatusCode::OK);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["allowed"].clone()
    };
    let pwd = fx.jwt(
        serde_json::json!({"sub": "admin", "scope": "model:admin model:read", "amr": ["pwd"]}),
        false,
    );
    assert_eq!(decide(&fx, &pwd), false);
    let hwk = fx.jwt(
        serde_json::json!({"sub": "admin", "scope": "model:admin model:read", "amr": ["pwd", "hwk"]}),
        false,
    );
    assert_eq!(decide(&fx, &hwk), true);

    // Refused, each for its reason.
    let hs256 = {
        let c = serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "eng", "exp": now + 300});
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("idp-1".into());
        jsonwebtoken::encode(&h, &c, &jsonwebtoken::EncodingKey::from_secret(b"k")).unwrap()
    };
    let mut tampered = good.clone();
    let mid = tampered.len() / 2;
    tampered.replace_range(mid..=mid, if &good[mid..=mid] == "A" { "B" } else { "A" });
    let scope = serde_json::json!("model:read model:load");
    // Eight cases: the fixture allows eight failed authentications a minute per address.
    let cases = [
        (
            fx.jwt(serde_json::json!({"scope": scope}), true),
            "token signature invalid or signed by an unknown key",
        ),
        (hs256, "token signature invalid or signed by an unknown key"),
        (
            tampered,
            "token signature invalid or signed by an unknown key",
        ),
        (
            fx.jwt(serde_json::json!({"iss": "https://evil.test"}), false),
            "token from an untrusted issuer",
        ),
        (
            fx.jwt(serde_json::json!({"aud": "another-api"}), false),
            "token for another audience",
        ),
        (
            fx.jwt(serde_json::json!({"exp": now - 120}), false),
            "expired token",
        ),
        (
            fx.jwt(serde_json::json!({"nbf": now + 600}), false),
            "token not yet valid",
        ),
        (
            fx.jwt(serde_json::json!({"sub": "ghost"}), false),
            "token names no registered, active principal",
        ),
    ];
    for (t, _) in &cases {
        let (s, h, body) = fx.send(
            Request::get(FILE)
                .header("authorization", bearer(t))
                .body(Body::empty())
                .unwrap(),
        );
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{t}");
        assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["error"]["code"], "unauthenticated",
            "one answer for every cause"
        );
    }
    let ev = fx.close_and_read();
    let reasons: Vec<_> = ev
        .iter()
        .filter(|(k, _)| k == "auth.failure")
        .map(|(_, e)| e.reason.clone().unwrap())
        .collect();
    let expected: Vec<_> = cases.iter().map(|(_, r)| (*r).to_owned()).collect();
    assert_eq!(reasons, expected);
    // The accepted JWTs acted as their principals, from the client's address.
    let loads: Vec<_> = ev
        .iter()
        .filter(|(k, _)| k == "model.access")
        .map(|(_, e)| (e.user.clone().unwrap(), e.ip.clone().unwrap()))
        .collect();
    assert_eq!(
        loads,
        [
            ("eng".to_owned(), "203.0.113.7".to_owned()),
            ("dana".into(), "203.0.113.7".into())
        ]
    );
}

#[test]
fn the_whole_lifecycle_over_http_is_in_the_ledger() {
    let mut fx = Fx::new();
    let p = fx.dir.path().to_path_buf();
    // The registrant uploads with a register-scoped token and signs the manifest on
    // its own side; the server never holds its key.
    let eng = fx.token("eng", &["model:register", "model:read"], 3600);
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let digest = sha256_hex(&weights);
    let put = |token: &str, digest: &str, body: Vec<u8>| {
        let req = Request::put(format!("/v1/models/churn/blobs/sha256:{digest}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body))
            .unwrap();
        let (s, _, b) = fx.send(req);
        (
            s,
            serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default(),
        )
    };
    let (s, v) = put(&eng, &"0".repeat(64), weights.clone());
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("digest_mismatch"))
    );
    let (s, v) = put(&eng, &digest, vec![7u8; (1 << 20) + 1]);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let reader = fx.token("eng", &["model:read"], 3600);
    assert_eq!(
        put(&reader, &digest, weights.clone()).0,
        StatusCode::FORBIDDEN
    );
    let (s, v) = put(&eng, &digest, weights.clone());
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["digest"], format!("sha256:{digest}"));

    let key = keyfile::read(&p.join("eng.key")).unwrap();
    let signed = |files: Vec<warden_registry::manifest::Resource>| {
        let st = warden_registry::manifest::statement("churn", "2.0", files, Provenance::default());
        warden_registry::manifest::sign(&st, "eng", &key.key).unwrap()
    };
    let file = |name: &str, digest: &str, size: u64| warden_registry::manifest::Resource {
        name: name.into(),
        algorithm: "sha256".into(),
        digest: digest.into(),
        size,
    };
    // A manifest naming a file that was never uploaded is refused.
    let missing = signed(vec![file("w.bin", &"1".repeat(64), 5)]);
    let (s, v) = call(
        &fx,
        "POST",
        "/v1/models/churn/versions/2.0",
        &eng,
        Some(serde_json::json!({"envelope": missing})),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let env = signed(vec![file("w.bin", &digest, weights.len() as u64)]);
    let (s, v) = call(
        &fx,
        "POST",
        "/v1/models/churn/versions/2.0",
        &eng,
        Some(serde_json::json!({"envelope": env})),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["version"]["state"], "registered");

    // An administrator with MFA (from the identity provider) runs the lifecycle; it
    // administers other principals too, which takes the explicit principal:admin scope.
    let admin = fx.jwt(
        serde_json::json!({"sub": "admin", "scope": "model:admin model:read model:load principal:admin", "amr": ["hwk"]}),
        false,
    );
    let base = "/v1/models/churn/versions/2.0";
    let (s, v) = call(
        &fx,
        "POST",
        &format!("{base}/promote"),
        &admin,
        Some(serde_json::json!({"to": "validated", "evidence": {"auc": 0.91}})),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &fx,
        "POST",
        &format!("{base}/promote"),
        &admin,
        Some(serde_json::json!({"to": "production"})),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &fx,
        "POST",
        &format!("{base}/promote"),
        &admin,
        Some(serde_json::json!({"to": "revoked"})),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = call(
        &fx,
        "PUT",
        "/v1/models/churn/aliases/stable",
        &admin,
        Some(serde_json::json!({"version": "2.0"})),
    );
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &fx,
        "GET",
        "/v1/models/churn/versions/stable/files/w.bin",
        &admin,
        None,
    );
    assert_eq!(s, StatusCode::OK);
    // Directory: a new principal, a grant, a token for it, then its revocation.
    let (s, v) = call(
        &fx,
        "POST",
        "/v1/principals",
        &admin,
        Some(serde_json::json!({"name": "svc-scoring", "roles": ["service"], "service": true})),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = call(
        &fx,
        "POST",
        "/v1/principals/svc-scoring/grants",
        &admin,
        // Nothing the JWT issues outlives it (it expires in 300 s).
        Some(serde_json::json!({"model": "churn", "actions": ["load"], "expires_in_secs": 240})),
    );
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &fx,
        "POST",
        "/v1/tokens",
        &admin,
        Some(
            serde_json::json!({"principal": "svc-scoring", "scopes": ["model:load"], "expires_in_secs": 240}),
        ),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let svc = v["token"].as_str().unwrap().to_owned();
    let id = v["info"]["id"].as_str().unwrap().to_owned();
    let (s, v) = call(&fx, "GET", "/v1/tokens?principal=svc-scoring", &admin, None);
    assert_eq!(
        (s, v["tokens"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    assert!(
        !v.to_string().contains(&svc),
        "a listing never shows a secret"
    );
    let (s, _) = call(
        &fx,
        "GET",
        "/v1/models/churn/versions/production/files/w.bin",
        &svc,
        None,
    );
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&fx, "DELETE", &format!("/v1/tokens/{id}"), &admin, None);
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &fx,
        "GET",
        "/v1/models/churn/versions/production/files/w.bin",
        &svc,
        None,
    );
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused at once"
    );
    let (s, v) = call(&fx, "GET", "/v1/principals", &admin, None);
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["principals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "svc-scoring")
    );
    // Revocation needs MFA; with it, the version is gone for everyone.
    let no_mfa = fx.jwt(
        serde_json::json!({"sub": "admin", "scope": "model:admin"}),
        false,
    );
    let (s, _) = call(
        &fx,
        "POST",
        &format!("{base}/revoke"),
        &no_mfa,
        Some(serde_json::json!({"reason": "leak"})),
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &fx,
        "POST",
        &format!("{base}/revoke"),
        &admin,
        Some(serde_json::json!({"reason": "training data leak"})),
    );
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&fx, "GET", &format!("{base}/files/w.bin"), &admin, None);
    assert_eq!(s, StatusCode::FORBIDDEN);

    let ev = fx.close_and_read();
    let seen =
        |kind: &str, pred: &dyn Fn(&Event) -> bool| ev.iter().any(|(k, e)| k == kind && pred(e));
    let rid = |e: &Event, m: &str| e.request_id.as_deref().is_some_and(|r| r.starts_with(m));
    assert!(seen("registry.upload", &|e| e.digest.as_deref()
        == Some(&format!("sha256:{digest}"))
        && e.user.as_deref() == Some("eng")));
    assert!(seen("registry.register", &|e| e.version.as_deref()
        == Some("2.0")
        && rid(e, "rq-POST")));
    assert!(seen("model.denied", &|e| e.user.as_deref() == Some("eng")
        && e.action.as_deref() == Some("register")));
    let changes: Vec<_> = ev
        .iter()
        .filter(|(k, e)| k.starts_with("registry.") && e.model.as_deref() == Some("churn"))
        .map(|(k, e)| (k.as_str(), e.action.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        changes,
        [
            ("registry.upload", "register".to_owned()),
            ("registry.register", "register".into()),
            ("registry.promote", "deploy".into()),
            ("registry.promote", "deploy".into()),
            ("registry.alias", "write".into()),
            ("registry.principal", "write".into()), // the grant on churn
            ("registry.revoke", "revoke".into()),
        ],
        "every model-affecting request, in order"
    );
    let accesses: Vec<_> = ev
        .iter()
        .filter(|(k, e)| k == "model.access" && e.model.as_deref() == Some("churn"))
        .map(|(_, e)| e.user.clone().unwrap())
        .collect();
    assert_eq!(accesses, ["admin", "svc-scoring"]);
    assert!(seen("registry.token", &|e| e
        .details
        .as_ref()
        .is_some_and(|d| d["op"] == "token.revoke")));
}

#[test]
fn ranges_are_served_from_a_verified_stream() {
    let fx = Fx::new();
    let t = fx.token("eng", &["model:load"], 3600);
    let get = |range: Option<&str>| {
        let mut b = Request::get(FILE).header("authorization", format!("Bearer {t}"));
        if let Some(r) = range {
            b = b.header("range", r);
        }
        fx.send(b.body(Body::empty()).unwrap())
    };
    let (s, h, body) = get(None);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, fx.weights);
    assert_eq!(h["etag"], format!("\"{}\"", sha256_hex(&fx.weights)));
    assert_eq!(h["accept-ranges"], "bytes");
    let (s, h, body) = get(Some("bytes=1000-1999"));
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &fx.weights[1000..2000]);
    assert_eq!(
        h["content-range"],
        format!("bytes 1000-1999/{}", fx.weights.len())
    );
    let (s, _, body) = get(Some("bytes=-10"));
    assert_eq!(
        (s, body.as_slice()),
        (
            StatusCode::PARTIAL_CONTENT,
            &fx.weights[fx.weights.len() - 10..]
        )
    );
    let (s, h, _) = get(Some("bytes=999999999-"));
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], format!("bytes */{}", fx.weights.len()));
}

#[test]
fn a_blob_tampered_after_registration_never_completes_a_download() {
    let mut fx = Fx::new();
    let t = fx.token("eng", &["model:load"], 3600);
    let digest = sha256_hex(&fx.weights);
    let blob = fx.m().blobs().local_path(&digest).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[150_000] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    for range in [None, Some("bytes=0-99")] {
        let mut b = Request::get(FILE).header("authorization", format!("Bearer {t}"));
        if let Some(r) = range {
            b = b.header("range", r);
        }
        let body = fx.rt.block_on(async {
            let r = fx
                .router()
                .oneshot(b.body(Body::empty()).unwrap())
                .await
                .unwrap();
            r.into_body().collect().await
        });
        assert!(
            body.is_err(),
            "the stream ends in an error, not a complete body ({range:?})"
        );
    }
    let ev = fx.close_and_read();
    let incidents: Vec<_> = ev
        .iter()
        .filter(|(k, _)| k == "incident")
        .map(|(_, e)| e.details.clone().unwrap())
        .collect();
    assert_eq!(incidents.len(), 2);
    for d in incidents {
        assert_eq!(d["severity"], "CRITICAL");
        assert_eq!(d["evidence"]["expected"], digest);
        assert_ne!(d["evidence"]["actual"], digest);
    }
}

/// Files over the inline size stream from a reader thread in 1 MiB chunks: whole and
/// ranged downloads are exact, and damage in the first or the last chunk never yields a
/// complete body.
#[test]
fn streamed_downloads_are_exact_and_cut_short_on_damage_in_any_chunk() {
    let mut fx = Fx::with_weights(3 * 1024 * 1024 + 17);
    let t = fx.token("eng", &["model:load"], 3600);
    let get = |fx: &Fx, range: Option<&str>| {
        let mut b = Request::get(FILE).header("authorization", format!("Bearer {t}"));
        if let Some(r) = range {
            b = b.header("range", r);
        }
        fx.rt.block_on(async {
            let r = fx
                .router()
                .oneshot(b.body(Body::empty()).unwrap())
                .await
                .unwrap();
            r.into_body().collect().await.map(|b| b.to_bytes())
        })
    };
    assert_eq!(get(&fx, None).unwrap(), fx.weights.as_slice());
    let (a, z) = (1_048_570usize, 2_097_160usize);
    assert_eq!(
        get(&fx, Some(&format!("bytes={a}-{z}"))).unwrap(),
        &fx.weights[a..=z]
    );
    let digest = sha256_hex(&fx.weights);
    let blob = fx.m().blobs().local_path(&digest).unwrap();
    for at in [10, fx.weights.len() - 5] {
        let mut bytes = fx.weights.clone();
        bytes[at] ^= 1;
        std::fs::write(&blob, &bytes).unwrap();
        assert!(get(&fx, None).is_err(), "damage at {at} is caught");
        assert!(get(&fx, Some("bytes=0-99")).is_err(), "also for a range");
    }
    let ev = fx.close_and_read();
    assert_eq!(ev.iter().filter(|(k, _)| k == "incident").count(), 4);
}

/// Blob handles are reused between requests; reads are positional on the shared handle,
/// so a change made in place after a download is caught by the very next one.
#[test]
fn a_blob_changed_in_place_after_a_download_is_caught_by_the_next_download() {
    let mut fx = Fx::new();
    let t = fx.token("eng", &["model:load"], 3600);
    let get = |fx: &Fx| {
        let req = Request::get(FILE)
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap();
        fx.rt.block_on(async {
            let r = fx.router().oneshot(req).await.unwrap();
            r.into_body().collect().await.map(|b| b.to_bytes())
        })
    };
    assert_eq!(get(&fx).unwrap(), fx.weights.as_slice());
    let digest = sha256_hex(&fx.weights);
    let blob = fx.m().blobs().local_path(&digest).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1000)).unwrap();
    std::io::Write::write_all(&mut f, &[fx.weights[1000] ^ 1]).unwrap();
    drop(f);
    assert!(get(&fx).is_err(), "the changed blob is not served whole");
    let ev = fx.close_and_read();
    assert_eq!(ev.iter().filter(|(k, _)| k == "incident").count(), 1);
}

#[test]
fn json_bodies_are_limited_in_type_depth_and_size() {
    let fx = Fx::new();
    let admin = fx.jwt(
        serde_json::json!({"sub": "admin", "scope": "model:admin", "amr": ["hwk"]}),
        false,
    );
    let send = |path: &str, ct: &str, body: Vec<u8>| {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap();
        let (s, _, b) = fx.send(req);
        (
            s,
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()["error"]["code"].clone(),
        )
    };
    let deep = format!(
        "{{\"to\":\"validated\",\"evidence\":{}1{}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    assert_eq!(
        send(
            &format!("{SHOW}/promote"),
            "application/json",
            deep.into_bytes()
        ),
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );
    assert_eq!(
        send(&format!("{SHOW}/promote"), "text/plain", b"{}".to_vec()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".into()
        )
    );
    assert_eq!(
        send("/v1/principals", "application/json", vec![b' '; 100_000]),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large".into())
    );
    assert_eq!(
        send(SHOW, "application/json", vec![b' '; 5 << 20]),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large".into())
    );
}

#[test]
fn auditors_read_decrypted_entries_and_proofs_that_verify() {
    use warden_core::checkpoint::{Checkpoint, TlogProof};
    use warden_core::merkle::{leaf_hash, verify_consistency, verify_inclusion};
    let mut fx = Fx::new();
    let admin = Caller::local("admin");
    fx.rt
        .block_on(
            fx.m()
                .add_principal(Some(&admin), "aud", &["auditor".into()], false, None),
        )
        .unwrap();
    let auditor = fx.token("aud", &["audit:read"], 3600);
    let no_scope = fx.token("aud", &["model:read"], 3600);
    let engineer = fx.token("eng", &["audit:read", "model:load"], 3600);
    assert_eq!(
        call(&fx, "GET", "/v1/audit/checkpoint", &no_scope, None).0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&fx, "GET", "/v1/audit/checkpoint", &engineer, None).0,
        StatusCode::FORBIDDEN,
        "role"
    );

    let note_of = |fx: &Fx| {
        let req = Request::get("/v1/audit/checkpoint")
            .header("authorization", format!("Bearer {auditor}"))
            .body(Body::empty())
            .unwrap();
        let (s, _, b) = fx.send(req);
        assert_eq!(s, StatusCode::OK);
        let note = warden_core::note::Note::parse(&b).unwrap();
        Checkpoint::from_text(note.text()).unwrap()
    };
    let old = note_of(&fx);
    for _ in 0..3 {
        assert_eq!(fx.get(FILE, Some(&engineer)).0, StatusCode::OK);
    }
    let new = note_of(&fx);
    assert!(new.size > old.size);
    let (s, v) = call(
        &fx,
        "GET",
        &format!("/v1/audit/proof/consistency?old={}", old.size),
        &auditor,
        None,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let hashes: Vec<[u8; 32]> = v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| b64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    let served = Checkpoint::from_text(
        warden_core::note::Note::parse(v["checkpoint"].as_str().unwrap().as_bytes())
            .unwrap()
            .text(),
    )
    .unwrap();
    verify_consistency(old.size, served.size, &old.root, &served.root, &hashes).unwrap();

    // Entries: decrypted, filtered, paged.
    let (s, v) = call(
        &fx,
        "GET",
        "/v1/audit/entries?kind=model.access&user=eng&limit=2",
        &auditor,
        None,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let list = v["entries"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(v["next"].is_u64(), "a third access remains");
    for e in list {
        assert_eq!(e["event"]["user"], "eng");
        assert_eq!(e["event"]["model"], "fraud");
        assert_eq!(e["event"]["ip"], "203.0.113.7");
    }
    let index = list[0]["index"].as_u64().unwrap();
    let req = Request::get(format!("/v1/audit/proof/inclusion?index={index}"))
        .header("authorization", format!("Bearer {auditor}"))
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = fx.send(req);
    assert_eq!(s, StatusCode::OK);
    let proof = TlogProof::parse(&b).unwrap();
    assert_eq!(proof.index, index);
    let cp = Checkpoint::from_text(proof.checkpoint.text()).unwrap();
    let leaf = leaf_hash(proof.extra.as_deref().unwrap());
    verify_inclusion(&leaf, index, cp.size, &proof.hashes, &cp.root).unwrap();
    // Bad requests are 400s, not 500s.
    for q in [
        "/v1/audit/proof/inclusion?index=99999999",
        "/v1/audit/proof/inclusion?index=x",
        "/v1/audit/proof/consistency?old=99999999",
        "/v1/audit/entries?bogus=1",
    ] {
        assert_eq!(
            call(&fx, "GET", q, &auditor, None).0,
            StatusCode::BAD_REQUEST,
            "{q}"
        );
    }
    let ev = fx.close_and_read();
    let reads = ev
        .iter()
        .filter(|(k, e)| k == "audit.read" && e.user.as_deref() == Some("aud"))
        .count();
    assert_eq!(
        reads, 7,
        "every authorized audit read is recorded, even one it cannot answer"
    );
}

#[test]
fn every_path_in_the_openapi_document_is_served() {
    let fx = Fx::new();
    let doc: serde_json::Value = serde_json::from_str(warden_server::OPENAPI).unwrap();
    let (s, body) = fx.get("/v1/openapi.json", None);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        doc
    );
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{model}", "fraud")
            .replace("{version}", "1.0")
            .replace("{file}", "model.safetensors")
            .replace("{digest}", &format!("sha256:{}", "0".repeat(64)))
            .replace("{alias}", "stable")
            .replace("{name}", "eng")
            .replace("{id}", "0123456789abcdef")
            .replace("{index}", "0");
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let (s, _, _) = fx.send(req);
            assert!(
                ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&s),
                "{method} {path}: {s}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 31);
}

#[test]
fn oversized_request_heads_and_targets_are_refused_with_4xx() {
    use std::io::{Read, Write};
    let fx = Fx::new();
    let (s, body) = fx.get(&format!("/v1/models/{}", "m".repeat(5000)), None);
    assert_eq!(s, StatusCode::URI_TOO_LONG);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "uri_too_long");
    // Through a real server: too many header fields, and a head larger than the limit.
    let (addr, tx, server) = fx.serve(None);
    let status_of = |head: String| {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(head.as_bytes());
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let head = |extra: &str| {
        format!("GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n{extra}\r\n")
    };
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let line = status_of(head(&many));
    assert!(line.contains(" 431 "), "{line}");
    let big = format!("x-big: {}\r\n", "a".repeat(20_000));
    let line = status_of(head(&big));
    assert!(line.contains(" 431 "), "{line}");
    let ok = status_of("GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n".into());
    assert!(ok.contains(" 200 "), "{ok}");
    tx.send(()).unwrap();
    fx.rt.block_on(server).unwrap();
}

#[test]
fn client_certificates_identify_principals_over_mtls() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut fx = Fx::new();
    let p = fx.dir.path().to_path_buf();
    let (cert, key, ca_file) = (
        p.join("tls/c.pem"),
        p.join("tls/k.pem"),
        p.join("tls/ca.pem"),
    );
    warden_server::tls::write_dev_certificate(&cert, &key).unwrap();
    let ca_of = |name: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    };
    let ca = ca_of("Warden test client CA");
    let rogue_ca = ca_of("Someone else's CA");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let client_cert = |cn: &str, issuer: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let k = rcgen::KeyPair::generate().unwrap();
        let c = params.signed_by(&k, issuer).unwrap();
        (
            c.der().clone(),
            PrivateKeyDer::try_from(k.serialize_der()).unwrap(),
        )
    };
    let cfg = warden_server::tls::server_config_with_clients(&cert, &key, Some(&ca_file)).unwrap();
    let (addr, tx, server) = fx.serve(Some(cfg));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    // The status line of GET FILE, or None when the connection failed.
    let fetch = |identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>| {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone());
        let cfg = match identity {
            Some((c, k)) => builder.with_client_auth_cert(vec![c], k).unwrap(),
            None => builder.with_no_client_auth(),
        };
        fx.rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .ok()?;
            tls.write_all(
                format!("GET {FILE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .ok()?;
            let mut out = Vec::new();
            tls.read_to_end(&mut out).await.ok()?;
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .map(str::to_owned)
        })
    };
    let status = |s: Option<String>| s.unwrap_or_default();
    assert!(
        status(fetch(Some(client_cert("eng", &ca)))).contains(" 200 "),
        "a registered principal"
    );
    assert!(
        status(fetch(Some(client_cert("ghost", &ca)))).contains(" 401 "),
        "an unknown name"
    );
    assert!(
        status(fetch(None)).contains(" 401 "),
        "no certificate and no token"
    );
    let rogue = status(fetch(Some(client_cert("eng", &rogue_ca))));
    assert!(
        !rogue.contains(" 200 "),
        "a certificate from another CA: {rogue}"
    );
    tx.send(()).unwrap();
    fx.rt.block_on(server).unwrap();
    let ev = fx.close_and_read();
    let access: Vec<_> = ev
        .iter()
        .filter(|(k, _)| k == "model.access")
        .map(|(_, e)| (e.user.clone().unwrap(), e.ip.clone().unwrap()))
        .collect();
    assert_eq!(access, [("eng".to_owned(), "127.0.0.1".to_owned())]);
    assert!(ev.iter().any(|(k, e)| {
        k == "auth.failure"
            && e.details
                .as_ref()
                .is_some_and(|d| d["client_certificate"]["cn"] == "ghost")
    }));
}

#[test]
fn a_jwks_url_is_fetched_and_refetched_when_the_provider_rotates_keys() {
    use base64::Engine as _;
    let fx = Fx::new();
    let jwk = |public: &[u8], kid: &str| {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA"})
    };
    let (old_key, old_pub) = ed25519();
    let (new_key, new_pub) = ed25519();
    let doc = Arc::new(std::sync::Mutex::new(
        serde_json::json!({"keys": [jwk(&old_pub, "k-old")]}).to_string(),
    ));
    // The identity provider's JWKS endpoint, on loopback.
    let served = Arc::clone(&doc);
    let idp = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let d = served.lock().unwrap().clone();
            async move { d }
        }),
    );
    let listener = fx
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    fx.rt
        .spawn(async move { axum::serve(listener, idp).await.ok() });

    let fetched = fx
        .rt
        .block_on(warden_server::jwks::fetch(&url, None))
        .unwrap();
    let mut cfg: warden_store::config::JwtConfig = toml::from_str(&format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks = \"{url}\"\n"
    ))
    .unwrap();
    cfg.scope_map.clear();
    let v = warden_server::jwt::JwtVerifier::new(cfg, &fetched).unwrap();
    let token = |key: &[u8], kid: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(kid.into());
        let c = serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "eng", "exp": now + 60});
        jsonwebtoken::encode(&h, &c, &jsonwebtoken::EncodingKey::from_ed_der(key)).unwrap()
    };
    assert!(v.verify(&token(&old_key, "k-old")).is_ok());
    // The provider rotates: a token with the new key is refused until the set is fetched
    // again, and the refusal asks for an early fetch.
    *doc.lock().unwrap() = serde_json::json!({"keys": [jwk(&new_pub, "k-new")]}).to_string();
    assert!(v.verify(&token(&new_key, "k-new")).is_err());
    assert!(v.take_unknown_kid());
    let again = fx
        .rt
        .block_on(warden_server::jwks::fetch(&url, None))
        .unwrap();
    assert_eq!(v.set_keys(&again).unwrap(), 1);
    assert!(v.verify(&token(&new_key, "k-new")).is_ok());
    assert!(
        v.verify(&token(&old_key, "k-old")).is_err(),
        "the retired key is gone"
    );
    // A broken document keeps the keys in force.
    assert!(v.set_keys(b"{not json").is_err());
    assert!(v.verify(&token(&new_key, "k-new")).is_ok());
    // Plain http is for loopback only; other schemes are refused.
    for bad in [
        "http://192.0.2.1/jwks.json",
        "ftp://127.0.0.1/jwks.json",
        "jwks.json",
    ] {
        assert!(
            fx.rt
                .block_on(warden_server::jwks::fetch(bad, None))
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn undecodable_paths_and_wrong_methods_get_json_errors_and_every_answer_a_request_id() {
    let fx = Fx::new();
    let t = fx.token("eng", &["model:read"], 3600);
    let send = |method: &str, path: &str, rid: Option<&str>| {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {t}"));
        if let Some(r) = rid {
            b = b.header("x-request-id", r);
        }
        let (s, h, body) = fx.send(b.body(Body::empty()).unwrap());
        let code = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default()["error"]
            ["code"]
            .clone();
        (
            s,
            code,
            h.get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    };
    let (s, code, _) = send("GET", "/v1/models/%FF%FE/versions/1.0", None);
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (s, code, _) = send("DELETE", "/v1/models", None);
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (_, _, rid) = send("GET", SHOW, Some("trace-42"));
    assert_eq!(rid.as_deref(), Some("trace-42"));
    let (_, _, rid) = send("GET", SHOW, Some("bad id with spaces"));
    let rid = rid.unwrap();
    assert!(
        rid.len() == 24 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{rid}"
    );
}

/// The Hub endpoint at the protocol level (the real client's test is in the `warden`
/// crate): tree pages linked by `Link`, HEAD metadata without a body or an access
/// entry, `Range` on resolve, and error codes in header fields.
#[test]
fn hub_trees_page_with_link_and_resolve_speaks_the_hub_protocol() {
    let fx = Fx::new();
    let p = fx.dir.path();
    // A model with more files than one tree page holds.
    let many = p.join("many");
    for i in 0..1203 {
        let d = many.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i:04}.txt")), format!("file {i}\n")).unwrap();
    }
    let key = keyfile::read(&p.join("eng.key")).unwrap();
    fx.rt
        .block_on(fx.m().register(
            &Caller::local("eng"),
            Registration {
                model: "org/many",
                version: "1",
                path: &many,
                provenance: Provenance::default(),
            },
            &key,
            &|_, _| {},
        ))
        .unwrap();
    let t = fx.token("eng", &["model:read", "model:load"], 3600);
    let req = |method: &str, uri: &str, range: Option<&str>| {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {t}"));
        if let Some(r) = range {
            b = b.header("range", r);
        }
        fx.send(b.body(Body::empty()).unwrap())
    };

    // Tree pages: 1203 files and 3 folders, 1000 a page, the next page in `Link`.
    let (s, h, body) = req("GET", "/api/models/org/many/tree/main?recursive=true", None);
    assert_eq!(s, StatusCode::OK);
    let first: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(first.len(), 1000);
    let link = h["link"].to_str().unwrap().to_owned();
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .unwrap()
        .0
        .to_owned();
    let (s, h, body) = req("GET", &next, None);
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("link").is_none(), "the last page links nowhere");
    let second: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    let all: Vec<&serde_json::Value> = first.iter().chain(&second).collect();
    assert_eq!(all.len(), 1206);
    let paths: std::collections::BTreeSet<&str> =
        all.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 1206, "no entry twice across pages");
    assert_eq!(all.iter().filter(|e| e["type"] == "directory").count(), 3);
    // Without `recursive`: the top level only.
    let (_, _, body) = req("GET", "/api/models/org/many/tree/main", None);
    let top: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(top.len(), 3);

    // HEAD: the file's metadata, no body, no access entry.
    let accesses = || {
        warden_store::audit::read_entries(
            &p.join("logs/model_access.jsonl"),
            None,
            &warden_store::audit::EntryFilter {
                kind: Some("model.access".into()),
                limit: 1000,
                ..Default::default()
            },
        )
        .unwrap()
        .0
        .len()
    };
    let before = accesses();
    let digest = sha256_hex(&fx.weights);
    let (s, h, body) = req("HEAD", "/fraud/resolve/1.0/model.safetensors", None);
    assert_eq!(s, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(h["x-linked-etag"], format!("\"{digest}\""));
    assert_eq!(h["x-linked-size"], fx.weights.len().to_string());
    let commit = h["x-repo-commit"].to_str().unwrap().to_owned();
    assert_eq!(commit.len(), 40);
    assert!(h.get("x-xet-hash").is_none());
    assert_eq!(accesses(), before);
    // GET with a range: 206, the same commit, one access entry.
    let (s, h, body) = req(
        "GET",
        &format!("/fraud/resolve/{commit}/model.safetensors"),
        Some("bytes=10-19"),
    );
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &fx.weights[10..20]);
    assert_eq!(h["x-repo-commit"], commit.as_str());
    assert_eq!(accesses(), before + 1);

    // Errors: codes in header fields, HEAD without a body.
    for (uri, code) in [
        ("/nope/resolve/main/x.bin", "RepoNotFound"),
        ("/fraud/resolve/9.9/model.safetensors", "RevisionNotFound"),
        ("/fraud/resolve/1.0/missing.bin", "EntryNotFound"),
    ] {
        let (s, h, body) = req("HEAD", uri, None);
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(h["x-error-code"], code, "{uri}");
        assert!(body.is_empty());
        if code == "EntryNotFound" {
            assert_eq!(h["x-repo-commit"], commit.as_str());
        }
    }
    let (s, h, _) = fx.send(
        Request::head("/fraud/resolve/1.0/model.safetensors")
            .header("authorization", "Bearer wdn_nope")
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h["x-error-message"],
        "Invalid credentials in Authorization header"
    );
    // Paths outside the Hub's shapes keep the API's JSON 404.
    let (s, _, body) = req("GET", "/no/such/path", None);
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
}

/// Inline detection and the playbook through the API: a bulk download of one artifact
/// is a HIGH incident whose principal is suspended (its token refused on the next
/// request), failed logins from one address are a brute-force incident, and a tampered
/// artifact is a CRITICAL incident whose version is revoked. Incidents are ledger
/// entries naming their evidence, and so is every action.
#[test]
fn detection_raises_incidents_and_the_playbook_suspends_and_revokes() {
    let mut fx = Fx::new();
    let cfg = warden_detect::DetectionConfig {
        thresholds: warden_detect::Config {
            brute_force_failures: 6,
            exfiltration_new_artifacts: 5,
            learn_events: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let m = Arc::clone(fx.m.as_ref().unwrap());
    fx.rt
        .block_on(async { m.enable_detection(&cfg, Vec::new()) })
        .unwrap();
    drop(m);
    let eng = fx.token("eng", &["model:load"], 3600);
    let admin = fx.token("admin", &["model:load"], 3600);
    let log = fx.dir.path().join("logs/model_access.jsonl");
    let sk = keys::read_recipient_secret(&fx.dir.path().join("aud.key")).unwrap();
    let entries = |kind: &str| {
        warden_store::audit::read_entries(
            &log,
            Some(&sk),
            &warden_store::audit::EntryFilter {
                kind: Some(kind.into()),
                limit: 1000,
                ..Default::default()
            },
        )
        .unwrap()
        .0
    };
    let detections = || {
        entries("incident")
            .into_iter()
            .filter(|e| e.event.as_ref().unwrap()["details"]["type"] == "detection")
            .collect::<Vec<_>>()
    };
    // Waits (at most 1 s) for `n` detection incidents; returns them and the wait.
    let wait_for = |n: usize| {
        let t = std::time::Instant::now();
        loop {
            let d = detections();
            if d.len() >= n || t.elapsed() > Duration::from_secs(1) {
                return (d, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let get = |token: &str| {
        fx.send(
            Request::get(FILE)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .0
    };

    // Downloading the same bytes again and again discloses nothing new: no incident.
    for _ in 0..12 {
        assert_eq!(get(&eng), StatusCode::OK);
    }
    let (d, _) = wait_for(1);
    assert!(d.is_empty(), "repeats raise nothing: {d:?}");
    // Exfiltration: artifacts eng never had, far above its own baseline (none yet);
    // the fifth new one (counting the model above) raises it.
    let bulk = fx.dir.path().join("bulk");
    std::fs::create_dir_all(&bulk).unwrap();
    for i in 0..4 {
        std::fs::write(bulk.join(format!("f{i}.bin")), format!("shard {i}")).unwrap();
    }
    register(&fx, "bulk", "1", &bulk);
    for i in 0..4 {
        let (s, _, _) = fx.send(
            Request::get(format!("/v1/models/bulk/versions/1/files/f{i}.bin"))
                .header("authorization", format!("Bearer {eng}"))
                .body(Body::empty())
                .unwrap(),
        );
        assert_eq!(s, StatusCode::OK);
    }
    let (d, waited) = wait_for(1);
    assert_eq!(d.len(), 1, "one incident, raised in {waited:?}");
    let ev = d[0].event.as_ref().unwrap();
    assert_eq!(ev["details"]["detector"], "exfiltration");
    assert_eq!(ev["details"]["severity"], "HIGH");
    assert_eq!(ev["user"], "eng");
    let evidence: Vec<u64> = serde_json::from_value(ev["details"]["evidence"].clone()).unwrap();
    assert_eq!(evidence.len(), 5, "the five first-time downloads");
    let accesses: Vec<u64> = entries("model.access").iter().map(|e| e.index).collect();
    assert!(
        evidence.iter().all(|i| accesses.contains(i)),
        "evidence names the downloads"
    );
    // The playbook suspended eng: its token is refused on the next request.
    wait_until(|| !entries("playbook.suspend").is_empty());
    let s = entries("playbook.suspend");
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].event.as_ref().unwrap()["details"]["incident"],
        d[0].index
    );
    assert_eq!(
        s[0].event.as_ref().unwrap()["details"]["token"]
            .as_str()
            .map(str::len),
        Some(16),
        "the attack's token is suspended, not its principal"
    );
    assert_ne!(get(&eng), StatusCode::OK, "the suspended token is refused");

    // Credential stuffing: failed logins from one address.
    for k in 0..6 {
        let (s, _, _) = fx.send(
            Request::get(FILE)
                .header("authorization", format!("Bearer wdn_stuffed{k}"))
                .body(Body::empty())
                .unwrap(),
        );
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (d, _) = wait_for(2);
    let bf = d
        .iter()
        .find(|e| e.event.as_ref().unwrap()["details"]["detector"] == "brute_force")
        .expect("a brute-force incident");
    assert_eq!(bf.event.as_ref().unwrap()["details"]["severity"], "HIGH");
    assert_eq!(bf.event.as_ref().unwrap()["ip"], "203.0.113.7");

    // A tampered artifact: CRITICAL, and the version is revoked.
    let blob = fx.m().blobs().local_path(&sha256_hex(&fx.weights)).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[150_000] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let body = fx.rt.block_on(async {
        let r = fx
            .router()
            .oneshot(
                Request::get(FILE)
                    .header("authorization", format!("Bearer {admin}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        r.into_body().collect().await
    });
    assert!(body.is_err(), "the tampered download never completes");
    let (d, _) = wait_for(3);
    let crit = d
        .iter()
        .find(|e| e.event.as_ref().unwrap()["details"]["detector"] == "integrity")
        .expect("an integrity incident");
    assert_eq!(
        crit.event.as_ref().unwrap()["details"]["severity"],
        "CRITICAL"
    );
    wait_until(|| !entries("playbook.revoke").is_empty());
    let r = entries("playbook.revoke");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].event.as_ref().unwrap()["version"], "1.0");
    // The entry is written ahead of the registry's commit: the state follows at once.
    let state = || {
        fx.rt
            .block_on(fx.m().show(
                &Caller::local("admin"),
                "fraud",
                &Selector::Version("1.0".into()),
            ))
            .unwrap()
            .state
    };
    wait_until(|| state() == "revoked");
    assert_eq!(state(), "revoked");

    // Incidents over the API: listed with severity and playbook, acknowledged once.
    let auditor = fx.token("admin", &["audit:read"], 3600);
    let (s, list) = call(&fx, "GET", "/v1/incidents", &auditor, None);
    assert_eq!(s, StatusCode::OK, "{list}");
    let list = list["incidents"].as_array().unwrap().clone();
    let exfil = list
        .iter()
        .find(|i| i["detector"] == "exfiltration")
        .unwrap();
    assert_eq!(exfil["severity"], "HIGH");
    assert_eq!(exfil["playbook"], serde_json::json!(["suspend"]));
    assert!(exfil["acknowledged"].is_null());
    let idx = exfil["index"].as_u64().unwrap();
    let (s, r) = call(
        &fx,
        "POST",
        &format!("/v1/incidents/{idx}/ack"),
        &auditor,
        Some(serde_json::json!({"note": "token rotated, user contacted"})),
    );
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, one) = call(&fx, "GET", &format!("/v1/incidents/{idx}"), &auditor, None);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["acknowledged"]["note"], "token rotated, user contacted");
    assert_eq!(one["acknowledged"]["by"], "admin");
    // Only incidents can be acknowledged; only auditors may.
    let (s, _) = call(
        &fx,
        "POST",
        "/v1/incidents/0/ack",
        &auditor,
        Some(serde_json::json!({"note": "x"})),
    );
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "entry 0 is no incident, as for GET"
    );
    let (s, _) = call(&fx, "GET", "/v1/incidents", &admin, None);
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "model:load scope cannot read incidents"
    );
    let ev = fx.close_and_read();
    assert!(ev.iter().any(|(k, _)| k == "playbook.revoke"));
    assert!(ev.iter().any(|(k, _)| k == "incident.ack"));
}
