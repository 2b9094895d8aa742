//! Regression tests for the security review's findings, one or more per finding and
//! named after it, plus the class-level tests: bounded metrics, boundary numbers, the
//! issuance matrix and bounded anonymous writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower::ServiceExt;
use warden_policy::VersionState;
use warden_registry::manifest::Provenance;
use warden_registry::{Caller, Registration, Selector, keyfile};
use warden_server::{AppState, app};
use warden_store::keys;

/// A router with `limits`, as seen from `ip`.
fn router_at(fx: &Fx, limits: &Arc<warden_server::limits::Limits>, ip: IpAddr) -> axum::Router {
    app(AppState {
        manager: Arc::clone(fx.m.as_ref().unwrap()),
        limits: Arc::clone(limits),
        jwt: fx.jwt.clone(),
        max_upload: 1 << 20,
        auditor: None,
        mtls_scopes: warden_server::default_mtls_scopes(),
        pace: warden_server::pace::Pace::default(),
        dashboard: Default::default(),
        gateway: Default::default(),
    })
    .layer(MockConnectInfo(SocketAddr::new(ip, 40000)))
}

/// A router whose rate limits stay out of the way of a test that sends many requests.
fn open_router(fx: &Fx) -> axum::Router {
    let limits = Arc::new(warden_server::limits::Limits::new(
        warden_server::limits::LimitConfig {
            per_principal_per_sec: 100_000,
            per_principal_burst: 100_000,
            ..Default::default()
        },
    ));
    router_at(fx, &limits, IpAddr::from([192, 0, 2, 1]))
}

fn send_via(fx: &Fx, r: axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    fx.rt.block_on(async {
        let r = r.oneshot(req).await.unwrap();
        let (parts, body) = r.into_parts();
        (
            parts.status,
            body.collect().await.unwrap().to_bytes().to_vec(),
        )
    })
}

/// Entries of `kind` (decrypted), read from the ledger file.
fn entries(fx: &Fx, kind: &str) -> Vec<serde_json::Value> {
    let sk = keys::read_recipient_secret(&fx.dir.path().join("aud.key")).unwrap();
    warden_store::audit::read_entries(
        &fx.dir.path().join("logs/model_access.jsonl"),
        Some(&sk),
        &warden_store::audit::EntryFilter {
            kind: Some(kind.into()),
            limit: 100_000,
            ..Default::default()
        },
    )
    .unwrap()
    .0
    .into_iter()
    .map(|e| e.event.unwrap())
    .collect()
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// A tiny deterministic generator, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn token_chars(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*";
        (0..n)
            .map(|_| A[(self.next() % A.len() as u64) as usize] as char)
            .collect()
    }
}

// ------------------------------------------------------------------- finding 1

/// Finding 1: every new request method created metric series kept forever, and the
/// metrics page showed incident counts per detector to anyone. Class test (a): 10 000
/// requests with random methods, paths, headers and query strings, authenticated and
/// not, leave `/metrics` under 64 KiB and the process within 50 MB of its start.
#[test]
fn metrics_label_values_come_from_a_bounded_set_whatever_clients_send() {
    let fx = Fx::new();
    let token = fx.token("eng", &["model:read", "model:load"], 3600);
    let limits = Arc::new(warden_server::limits::Limits::new(
        warden_server::limits::LimitConfig::default(),
    ));
    let router = router_at(&fx, &limits, IpAddr::from([198, 51, 100, 9]));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let send = |i: usize, rng: &mut Rng| {
        let method_len = 1 + (rng.next() % 2000) as usize;
        let method = rng
            .token_chars(method_len)
            .replace(['!', '~', '*', '.'], "X");
        let path = match i % 4 {
            0 => format!("/v1/models/{}", rng.token_chars(20)),
            1 => format!("/{}/{}", rng.token_chars(10), rng.token_chars(30)),
            2 => FILE.to_owned(),
            _ => format!(
                "/v1/audit/entries?from={}&x={}",
                rng.next(),
                rng.token_chars(50)
            ),
        };
        let mut b = Request::builder()
            .method(method.as_str())
            .uri(path)
            .header(format!("x-{}", rng.token_chars(12)), rng.token_chars(100));
        if i.is_multiple_of(2) {
            b = b.header("authorization", format!("Bearer {token}"));
        }
        let (s, _) = send_via(&fx, router.clone(), b.body(Body::empty()).unwrap());
        assert!(s.as_u16() < 500, "request {i}: {s}");
    };
    for i in 0..200 {
        send(i, &mut rng);
    }
    let before = rss_bytes();
    for i in 200..10_000 {
        send(i, &mut rng);
    }
    let after = rss_bytes();
    let (s, body) = send_via(
        &fx,
        router.clone(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    );
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(text.len() < 64 * 1024, "/metrics is {} bytes", text.len());
    let http = text.lines().filter(|l| l.starts_with("warden_http_"));
    for label in http.flat_map(|l| l.split("method=\"").skip(1)) {
        let m = label.split('"').next().unwrap();
        assert!(
            [
                "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"
            ]
            .contains(&m),
            "method label {m:?}"
        );
    }
    assert!(
        after.saturating_sub(before) < 50 << 20,
        "RSS grew by {} MB",
        after.saturating_sub(before) >> 20
    );
}

/// Finding 1, second half: incident counts per detector are for auditors only.
#[test]
fn metrics_hide_detection_state_from_anonymous_callers() {
    let fx = Fx::new();
    let router = fx.router();
    // An incident counter exists once detection has counted one (the router installed
    // the recorder).
    metrics::counter!("warden_incidents_total", "severity" => "HIGH", "detector" => "brute_force")
        .increment(1);
    let (s, anon) = send_via(
        &fx,
        router.clone(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    );
    assert_eq!(s, StatusCode::OK);
    let anon = String::from_utf8(anon).unwrap();
    assert!(anon.contains("warden_http_requests_total") || anon.contains("# TYPE"));
    assert!(!anon.contains("warden_incidents_total"), "{anon}");
    let auditor = fx.token("admin", &["audit:read"], 600);
    let (s, full) = send_via(
        &fx,
        router.clone(),
        Request::get("/metrics")
            .header("authorization", format!("Bearer {auditor}"))
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(s, StatusCode::OK);
    assert!(
        String::from_utf8(full)
            .unwrap()
            .contains("warden_incidents_total")
    );
    let loader = fx.token("admin", &["model:load"], 600);
    let (_, partial) = send_via(
        &fx,
        router.clone(),
        Request::get("/metrics")
            .header("authorization", format!("Bearer {loader}"))
            .body(Body::empty())
            .unwrap(),
    );
    assert!(
        !String::from_utf8(partial)
            .unwrap()
            .contains("warden_incidents_total")
    );
    let (s, _) = send_via(
        &fx,
        router,
        Request::get("/metrics")
            .header("authorization", "Bearer wdn_bogus")
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED, "bad credentials are refused");
}

// ------------------------------------------------------------------- finding 2

/// Finding 2: `?cursor=2^64-1` overflowed `start + TREE_PAGE` and dropped the
/// connection with a panic.
#[test]
fn hub_tree_cursor_at_the_top_of_u64_is_a_400_not_a_panic() {
    let fx = Fx::new();
    let t = fx.token("eng", &["model:read"], 600);
    for cursor in [
        "18446744073709551615",
        "18446744073709550616",
        "2",
        "-1",
        "1e3",
    ] {
        let (s, _) = fx.get(
            &format!("/api/models/fraud/tree/main?cursor={cursor}"),
            Some(&t),
        );
        assert_eq!(s, StatusCode::BAD_REQUEST, "cursor {cursor}");
    }
    let (s, _) = fx.get("/api/models/fraud/tree/main?cursor=1", Some(&t));
    assert_eq!(
        s,
        StatusCode::OK,
        "the end of the listing is a valid cursor"
    );
}

/// Class test (b): every numeric query, path and header parameter of the OpenAPI
/// document (and the Hub's cursor and `Range`) at 0, -1, 2^63, 2^64-1 and a huge digit
/// string: never a 5xx, never a panic.
#[test]
fn numeric_parameters_at_their_boundaries_never_get_a_5xx() {
    let fx = Fx::new();
    let t = fx.token(
        "admin",
        &["model:read", "model:load", "model:admin", "audit:read"],
        3600,
    );
    let huge = format!("1{}", "0".repeat(60));
    let values = [
        "0",
        "-1",
        "9223372036854775808",
        "18446744073709551615",
        huge.as_str(),
    ];
    let doc: serde_json::Value = serde_json::from_str(warden_server::OPENAPI).unwrap();
    let mut sent = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let shared = ops["parameters"].as_array().cloned().unwrap_or_default();
        for (method, op) in ops.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let mut params = op["parameters"].as_array().cloned().unwrap_or_default();
            params.extend(shared.iter().cloned());
            let numeric: Vec<(String, String)> = params
                .iter()
                .filter(|p| {
                    matches!(p["schema"]["type"].as_str(), Some("integer" | "number"))
                        && p["in"] != "header"
                })
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_owned(),
                        p["in"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            for (name, place) in &numeric {
                for v in values {
                    let mut uri = path
                        .replace("{model}", "fraud")
                        .replace("{version}", "1.0")
                        .replace("{file}", "model.safetensors");
                    if place == "path" {
                        uri = uri.replace(&format!("{{{name}}}"), v);
                    } else {
                        uri = format!("{uri}?{name}={v}");
                    }
                    let req = Request::builder()
                        .method(method.to_uppercase().as_str())
                        .uri(&uri)
                        .header("authorization", format!("Bearer {t}"))
                        .header("content-type", "application/json")
                        .body(Body::from("{\"note\":\"x\"}"))
                        .unwrap();
                    let (s, _, _) = fx.send(req);
                    assert!(s.as_u16() < 500, "{method} {uri}: {s}");
                    sent += 1;
                }
            }
        }
    }
    // from, to, limit, index (inclusion), old, and the incident index of two routes.
    assert_eq!(
        sent,
        7 * values.len(),
        "every numeric parameter of the document"
    );
    for v in values {
        for range in [
            format!("bytes=0-{v}"),
            format!("bytes={v}-"),
            format!("bytes=-{v}"),
        ] {
            let req = Request::get(FILE)
                .header("authorization", format!("Bearer {t}"))
                .header("range", &range)
                .body(Body::empty())
                .unwrap();
            let (s, _, _) = fx.send(req);
            assert!(s.as_u16() < 500, "Range {range}: {s}");
        }
        let (s, _) = fx.get(&format!("/api/models/fraud/tree/main?cursor={v}"), Some(&t));
        assert!(s.as_u16() < 500, "cursor {v}: {s}");
    }
}

// ------------------------------------------------------------------- finding 3

/// Finding 3 and class test (c): no token or grant issued over the API exceeds the
/// issuing credential's scopes, lifetime or principal; roles (which never expire) and
/// tokens for other principals need `principal:admin`; each refusal is an entry.
#[test]
fn issued_credentials_never_exceed_their_issuer() {
    let mut fx = Fx::new();
    let r = open_router(&fx);
    let issuers: [&[&str]; 3] = [
        &["model:admin"],
        &["model:admin", "model:load"],
        &["model:admin", "principal:admin"],
    ];
    let requests: [&[&str]; 4] = [
        &["model:admin"],
        &["model:load"],
        &["audit:read"],
        &["model:admin", "principal:admin"],
    ];
    let mut refused = 0;
    for held in issuers {
        // The issuing token has 600 s left.
        let issuer = fx.token("admin", held, 600);
        for wanted in requests {
            for ttl in [300i64, 601, 366 * 86_400] {
                for principal in ["admin", "eng"] {
                    let body = serde_json::json!({
                        "principal": principal, "scopes": wanted, "expires_in_secs": ttl,
                    });
                    let (s, v) = call_via(&fx, &r, "POST", "/v1/tokens", &issuer, Some(body));
                    let within = wanted.iter().all(|w| held.contains(w))
                        && ttl <= 600
                        && (principal == "admin" || held.contains(&"principal:admin"));
                    let case = format!("{held:?} -> {principal} {wanted:?} {ttl}s: {v}");
                    if within {
                        assert_eq!(s, StatusCode::CREATED, "{case}");
                        let scopes: Vec<String> =
                            serde_json::from_value(v["info"]["scopes"].clone()).unwrap();
                        assert!(scopes.iter().all(|x| held.contains(&x.as_str())), "{case}");
                        // The minted token works, and only as far as it should.
                        let minted = v["token"].as_str().unwrap();
                        let (s, _) = call_via(&fx, &r, "GET", "/v1/tokens", minted, None);
                        assert_ne!(s, StatusCode::UNAUTHORIZED, "{case}");
                    } else {
                        assert_eq!(s, StatusCode::FORBIDDEN, "{case}");
                        refused += 1;
                    }
                }
            }
        }
        // Grants: actions within the token's scopes, expiring within its lifetime.
        for (actions, ttl, ok) in [
            (vec!["revoke"], 300i64, true),
            (vec!["load"], 300, held.contains(&"model:load")),
            (vec!["audit"], 300, false),
            (vec!["revoke"], 601, false),
        ] {
            let body =
                serde_json::json!({"model": "fraud", "actions": actions, "expires_in_secs": ttl});
            let (s, v) = call_via(
                &fx,
                &r,
                "POST",
                "/v1/principals/eng/grants",
                &issuer,
                Some(body),
            );
            let want = if ok {
                StatusCode::OK
            } else {
                refused += 1;
                StatusCode::FORBIDDEN
            };
            assert_eq!(s, want, "{held:?} grants {actions:?} for {ttl}s: {v}");
        }
        // Roles never expire: only principal:admin may give them.
        let (s, _) = call_via(
            &fx,
            &r,
            "POST",
            "/v1/principals/eng/roles",
            &issuer,
            Some(serde_json::json!({"role": "admin"})),
        );
        if held.contains(&"principal:admin") {
            assert_eq!(s, StatusCode::OK);
        } else {
            assert_eq!(s, StatusCode::FORBIDDEN);
            refused += 1;
        }
    }
    // A JWT's `exp` bounds what it issues the same way.
    let jwt = fx.jwt(
        serde_json::json!({"sub": "admin", "scope": "model:admin principal:admin"}),
        false,
    );
    let (s, _) = call_via(
        &fx,
        &r,
        "POST",
        "/v1/tokens",
        &jwt,
        Some(
            serde_json::json!({"principal": "admin", "scopes": ["model:admin"], "expires_in_secs": 3600}),
        ),
    );
    assert_eq!(s, StatusCode::FORBIDDEN, "the JWT expires in 300 s");
    refused += 1;
    drop(r);
    let denied: Vec<(String, serde_json::Value)> = fx
        .close_and_read()
        .into_iter()
        .filter(|(k, e)| {
            k == "model.denied" && e.reason.as_deref().is_some_and(|r| r.starts_with("issue:"))
        })
        .map(|(k, e)| (k, e.details.unwrap_or_default()))
        .collect();
    assert_eq!(denied.len(), refused, "every refusal is in the ledger");
    assert!(
        denied
            .iter()
            .any(|(_, d)| d["op"] == "token.create" && d["principal"] == "eng"),
        "a refused mint names what was asked"
    );
}

/// Found by `scripts/api-fuzz`: an administrator's token suspended its own principal
/// (`POST /v1/principals/admin/suspend`) and locked every later request out, and a token
/// holding only `model:admin` could suspend, re-enable or revoke the tokens of anyone.
/// Those are principal administration (`principal:admin`), nobody suspends itself, and
/// each refusal is an entry.
#[test]
fn a_principal_cannot_suspend_itself_and_suspension_needs_principal_admin() {
    let mut fx = Fx::new();
    let r = open_router(&fx);
    let root = fx.token("admin", &["model:admin", "principal:admin"], 600);
    let ops = fx.token("admin", &["model:admin"], 600);
    let post = |t: &str, path: &str| call_via(&fx, &r, "POST", path, t, None).0;
    assert_eq!(
        post(&root, "/v1/principals/admin/suspend"),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&ops, "/v1/principals/eng/suspend"),
        StatusCode::FORBIDDEN
    );
    // The administrator is still active: it suspends someone else.
    assert_eq!(post(&root, "/v1/principals/eng/suspend"), StatusCode::OK);
    assert_eq!(
        post(&ops, "/v1/principals/eng/enable"),
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(&root, "/v1/principals/eng/enable"), StatusCode::OK);
    // The same holds for revoking another principal's token; one's own is signing out.
    let mint = |t: &str, who: &str| {
        let body =
            serde_json::json!({"principal": who, "scopes": ["model:admin"], "expires_in_secs": 60});
        let (s, v) = call_via(&fx, &r, "POST", "/v1/tokens", t, Some(body));
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["info"]["id"].as_str().unwrap().to_owned()
    };
    let theirs = mint(&root, "eng");
    let own = mint(&root, "admin");
    let delete =
        |t: &str, id: &str| call_via(&fx, &r, "DELETE", &format!("/v1/tokens/{id}"), t, None).0;
    assert_eq!(delete(&ops, &theirs), StatusCode::FORBIDDEN);
    assert_eq!(delete(&ops, &own), StatusCode::OK);
    assert_eq!(delete(&root, &theirs), StatusCode::OK);
    assert_eq!(delete(&root, "0123456789abcdef"), StatusCode::NOT_FOUND);
    drop(r);
    let refused: Vec<String> = fx
        .close_and_read()
        .into_iter()
        .filter(|(k, _)| k == "model.denied")
        .filter_map(|(_, e)| e.reason)
        .collect();
    assert_eq!(
        refused,
        [
            "issue:self",
            "issue:principal",
            "issue:principal",
            "issue:principal"
        ],
        "every refusal is in the ledger, naming its rule"
    );
}

// ------------------------------------------------------------------- finding 4

/// Finding 4: an alias named after another version's commit id redirected clients
/// pinning `revision=<sha>`. Commit ids resolve first, and no alias or version may look
/// like one (or take an existing alias's name).
#[test]
fn a_commit_id_pin_cannot_be_redirected_by_an_alias() {
    let fx = Fx::new();
    let p = fx.dir.path();
    let key = keyfile::read(&p.join("eng.key")).unwrap();
    let other = p.join("other.bin");
    std::fs::write(&other, b"other bytes").unwrap();
    let m = fx.m();
    register(&fx, "fraud", "2.0", &other);
    let admin = Caller {
        mfa: true,
        ..Caller::local("admin")
    };
    let v1 = fx
        .rt
        .block_on(m.show(&admin, "fraud", &Selector::Version("1.0".into())))
        .unwrap();
    // The alias the review used: version 2.0 under 1.0's commit id, in either case.
    for name in [v1.commit.clone(), v1.commit.to_uppercase()] {
        let e = fx
            .rt
            .block_on(m.set_alias(&admin, "fraud", &name, "2.0"))
            .unwrap_err();
        assert!(e.to_string().contains("commit id"), "{e}");
    }
    // A pinned commit id still names 1.0.
    let t = fx.token("eng", &["model:read", "model:load"], 600);
    let (s, body) = fx.get(
        &format!("/api/models/fraud/revision/{}", v1.commit),
        Some(&t),
    );
    assert_eq!(s, StatusCode::OK);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["cardData"]["warden"]["version"], "1.0");
    // A version may not be named like a commit id, nor like an existing alias.
    fx.rt
        .block_on(m.set_alias(&admin, "fraud", "stable", "1.0"))
        .unwrap();
    for version in [v1.commit.as_str(), "stable", "main"] {
        let e = fx
            .rt
            .block_on(m.register(
                &Caller::local("eng"),
                Registration {
                    model: "fraud",
                    version,
                    path: &other,
                    provenance: Provenance::default(),
                },
                &key,
                &|_, _| {},
            ))
            .unwrap_err();
        assert!(
            matches!(
                e,
                warden_registry::RegistryError::Invalid { .. }
                    | warden_registry::RegistryError::Exists { .. }
            ),
            "{version}: {e}"
        );
    }
}

// ------------------------------------------------------------------- finding 5

/// Finding 5 and class test (d): 10 000 refused logins from 1 000 addresses write a
/// bounded number of entries, lose no count, and raise a brute-force incident.
#[test]
fn refused_logins_from_many_addresses_write_bounded_entries_and_raise_an_incident() {
    let fx = Fx::new();
    let m = Arc::clone(fx.m.as_ref().unwrap());
    fx.rt
        .block_on(async {
            m.enable_detection(&warden_detect::DetectionConfig::default(), Vec::new())
        })
        .unwrap();
    let limits = Arc::new(warden_server::limits::Limits::new(
        warden_server::limits::LimitConfig::default(),
    ));
    let before = entries(&fx, "auth.failure").len();
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for a in 0..1000u32 {
        // 1 000 addresses over four /24s and a scatter of IPv6 /64s.
        let ip: IpAddr = if a.is_multiple_of(2) {
            IpAddr::from([198, 18, (a % 4) as u8, (a / 4 % 250) as u8])
        } else {
            format!("2001:db8:{:x}::{:x}", a % 7, a).parse().unwrap()
        };
        let r = router_at(&fx, &limits, ip);
        for i in 0..10 {
            let (s, _) = send_via(
                &fx,
                r.clone(),
                Request::get(FILE)
                    .header("authorization", format!("Bearer wdn_{a}x{i}"))
                    .body(Body::empty())
                    .unwrap(),
            );
            *answered.entry(s.as_u16()).or_default() += 1;
        }
    }
    assert_eq!(answered.values().sum::<usize>(), 10_000);
    assert!(
        answered.keys().all(|s| [401, 429].contains(s)),
        "{answered:?}"
    );
    let written = fx.rt.block_on(m.flush_throttled()).unwrap();
    assert!(written <= warden_registry::throttle::MAX_ADDRESSES + 1);
    let failures = entries(&fx, "auth.failure");
    let new = &failures[before..];
    let limit = warden_server::limits::LimitConfig::default().auth_failures_total_per_min as usize
        + warden_registry::throttle::MAX_ADDRESSES
        + 1;
    assert!(
        new.len() <= limit,
        "{} entries for 10 000 refusals",
        new.len()
    );
    // Nothing is lost: one per entry written alone, plus the counts of the summaries.
    let counted: u64 = new
        .iter()
        .map(|e| e["details"]["throttled"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, 10_000, "every refused attempt is counted");
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(2)
        && !entries(&fx, "incident")
            .iter()
            .any(|e| e["details"]["detector"] == "brute_force")
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        entries(&fx, "incident")
            .iter()
            .any(|e| e["details"]["detector"] == "brute_force"),
        "a brute-force incident"
    );
}

// ------------------------------------------------------------------- finding 9

/// Finding 9: the decision endpoint answered any scope and told the version's state.
#[test]
fn the_decision_endpoint_needs_model_read_and_the_right_to_see_the_version() {
    let fx = Fx::new();
    let load_only = fx.token("eng", &["model:load"], 600);
    let body = Some(serde_json::json!({"action": "load"}));
    let (s, v) = call(
        &fx,
        "POST",
        &format!("{SHOW}/decision"),
        &load_only,
        body.clone(),
    );
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v.get("allowed").is_none());
    let reader = fx.token("eng", &["model:read"], 600);
    let (s, v) = call(&fx, "POST", &format!("{SHOW}/decision"), &reader, body);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["allowed"], false, "the token holds no model:load");
}

/// Finding 9: HEAD needed `read` and GET `load` on the Hub's resolve route, so a
/// service account set up with `load` alone failed in `huggingface_hub`.
#[test]
fn hub_head_and_get_need_the_same_permission() {
    let fx = Fx::new();
    let rt = &fx.rt;
    let admin = Caller::local("admin");
    rt.block_on(
        fx.m()
            .add_principal(Some(&admin), "scorer", &["service".into()], true, None),
    )
    .unwrap();
    rt.block_on(fx.m().grant(
        &admin,
        "scorer",
        "fraud",
        &[warden_policy::Action::Load],
        fx.m().now_secs() + 600,
    ))
    .unwrap();
    let t = fx.token("scorer", &["model:load"], 600);
    for method in ["HEAD", "GET"] {
        let (s, _, _) = fx.send(
            Request::builder()
                .method(method)
                .uri("/fraud/resolve/production/model.safetensors")
                .header("authorization", format!("Bearer {t}"))
                .body(Body::empty())
                .unwrap(),
        );
        assert_eq!(s, StatusCode::OK, "{method}");
    }
}

/// Finding 9: `main` resolved to a revoked latest version instead of the newest one
/// that can be served.
#[test]
fn hub_main_is_the_newest_version_that_is_not_revoked() {
    let fx = Fx::new();
    let p = fx.dir.path();
    let other = p.join("bad.bin");
    std::fs::write(&other, b"poisoned").unwrap();
    register(&fx, "fraud", "2.0", &other);
    let admin = Caller {
        mfa: true,
        ..Caller::local("admin")
    };
    fx.rt
        .block_on(fx.m().revoke(
            &admin,
            "fraud",
            &Selector::Version("2.0".into()),
            "poisoned",
        ))
        .unwrap();
    let t = fx.token("eng", &["model:read", "model:load"], 600);
    let (s, body) = fx.get("/api/models/fraud/revision/main", Some(&t));
    assert_eq!(s, StatusCode::OK);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["cardData"]["warden"]["version"], "1.0");
    let (s, body) = fx.get("/fraud/resolve/main/model.safetensors", Some(&t));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, fx.weights);
    let _ = VersionState::Production;
}

// ------------------------------------------------------------------- finding 15

/// Finding 15: `huggingface_hub` 0.36 sends `recursive=True`, which the tree listing
/// took for false, dropping files in subfolders.
#[test]
fn hub_tree_accepts_the_boolean_forms_clients_send() {
    let fx = Fx::new();
    let p = fx.dir.path();
    let dir = p.join("nested");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("top.txt"), b"top").unwrap();
    std::fs::write(dir.join("sub/inner.txt"), b"inner").unwrap();
    register(&fx, "nested", "1", &dir);
    let t = fx.token("eng", &["model:read"], 600);
    for (flag, deep) in [
        ("True", true),
        ("true", true),
        ("1", true),
        ("False", false),
        ("0", false),
    ] {
        let (s, body) = fx.get(
            &format!("/api/models/nested/tree/main?recursive={flag}"),
            Some(&t),
        );
        assert_eq!(s, StatusCode::OK, "{flag}");
        let listed = String::from_utf8(body).unwrap();
        assert_eq!(listed.contains("sub/inner.txt"), deep, "{flag}: {listed}");
    }
    let (s, _) = fx.get("/api/models/nested/tree/main?recursive=maybe", Some(&t));
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

// ------------------------------------------------------------------- finding 6

/// Finding 6: a client sending its body a byte every 0.5 s held a connection for as long
/// as it liked, and nothing capped the number of connections. A body that falls behind
/// its pace is answered 408; a connection past the limit is answered 503 + Retry-After.
#[test]
fn slow_bodies_get_408_and_connections_past_the_limit_get_503() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let fx = Fx::new();
    let admin = fx.token("admin", &["model:admin", "principal:admin"], 600);
    let listener = fx
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(AppState {
        pace: warden_server::pace::Pace {
            grace: std::time::Duration::from_secs(1),
            min_rate: 1000,
            idle: std::time::Duration::from_secs(2),
        },
        ..AppState::new(Arc::clone(fx.m.as_ref().unwrap()))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = fx.rt.spawn(warden_server::tls::serve_limited(
        listener,
        router,
        None,
        3,
        async {
            stopped.await.ok();
        },
    ));
    let read_head = |s: &mut TcpStream| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(8)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };

    // A byte every 200 ms: far below 1000 B/s once the grace second has passed.
    let mut slow = TcpStream::connect(addr).unwrap();
    write!(
        slow,
        "POST /v1/principals HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    )
    .unwrap();
    let t = std::time::Instant::now();
    let trickle = std::thread::spawn({
        let mut s = slow.try_clone().unwrap();
        move || {
            for _ in 0..40 {
                if s.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    });
    let head = read_head(&mut slow);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    drop(slow);
    trickle.join().unwrap();

    // Three connections held open (headers not finished) fill the server.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut fourth = TcpStream::connect(addr).unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let head = read_head(&mut fourth);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // Once they go, the server takes connections again.
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut again = TcpStream::connect(addr).unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut again).starts_with("HTTP/1.1 200"));
    stop.send(()).unwrap();
    fx.rt.block_on(server).unwrap();
}

// ------------------------------------------------------------------- finding 12

/// A webhook that refuses until told to accept, counting deliveries.
#[derive(Debug, Default)]
struct Receiver {
    accept: std::sync::atomic::AtomicBool,
    delivered: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl warden_registry::respond::AlertSink for Receiver {
    fn name(&self) -> String {
        "test-webhook".into()
    }
    fn deliver(&self, body: &[u8], _now: u64) -> Result<(), String> {
        if self.accept.load(std::sync::atomic::Ordering::Relaxed) {
            self.delivered.lock().unwrap().push(body.to_vec());
            Ok(())
        } else {
            Err("503 from the receiver".into())
        }
    }
}

/// Finding 12: a webhook alert still retrying when `serve` stopped was never resent.
/// The pending alert survives the restart and is delivered, and its outcome recorded.
#[test]
fn an_alert_pending_at_shutdown_is_sent_after_the_restart() {
    let mut fx = Fx::new();
    let receiver = Arc::new(Receiver::default());
    let cfg = warden_detect::DetectionConfig {
        thresholds: warden_detect::Config {
            brute_force_failures: 5,
            ..Default::default()
        },
        ..Default::default()
    };
    let target = |attempts| warden_registry::respond::AlertTarget {
        sink: Arc::clone(&receiver) as Arc<dyn warden_registry::respond::AlertSink>,
        min_severity: "HIGH".into(),
        attempts,
        backoff: std::time::Duration::from_secs(60),
    };
    let m = Arc::clone(fx.m.as_ref().unwrap());
    fx.rt
        .block_on(async { m.enable_detection(&cfg, vec![target(10)]) })
        .unwrap();
    let limits = Arc::new(warden_server::limits::Limits::new(
        warden_server::limits::LimitConfig::default(),
    ));
    let r = router_at(&fx, &limits, IpAddr::from([203, 0, 113, 99]));
    for i in 0..6 {
        send_via(
            &fx,
            r.clone(),
            Request::get(FILE)
                .header("authorization", format!("Bearer wdn_bad{i}"))
                .body(Body::empty())
                .unwrap(),
        );
    }
    drop(r);
    let t = std::time::Instant::now();
    while fx.rt.block_on(m.pending_alerts()).unwrap().is_empty()
        && t.elapsed() < std::time::Duration::from_secs(5)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pending = fx.rt.block_on(m.pending_alerts()).unwrap();
    assert_eq!(pending.len(), 1, "the alert waits for its retry");
    let incident = pending[0].incident;
    drop(m);
    // The first delivery failed; the retry is a minute away when the service stops.
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Stop: the runtime's tasks (the retrying alert among them) end with it.
    let rt = std::mem::replace(
        &mut fx.rt,
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let m = fx.m.take().unwrap();
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let m = Arc::try_unwrap(m).unwrap_or_else(|_| panic!("the manager is still shared"));
    fx.rt.block_on(m.close()).unwrap();
    fx.m = Some(Arc::new(fx.rt.block_on(open_manager(fx.dir.path()))));
    assert_eq!(
        fx.rt.block_on(fx.m().pending_alerts()).unwrap().len(),
        1,
        "still pending after the restart"
    );
    receiver
        .accept
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let m = Arc::clone(fx.m.as_ref().unwrap());
    fx.rt
        .block_on(async { m.enable_detection(&cfg, vec![target(3)]) })
        .unwrap();
    let t = std::time::Instant::now();
    while receiver.delivered.lock().unwrap().is_empty()
        && t.elapsed() < std::time::Duration::from_secs(5)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let delivered = receiver.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1, "sent again after the restart");
    let body: serde_json::Value = serde_json::from_slice(&delivered[0]).unwrap();
    assert_eq!(body["incident"], incident);
    let t = std::time::Instant::now();
    while !fx.rt.block_on(m.pending_alerts()).unwrap().is_empty()
        && t.elapsed() < std::time::Duration::from_secs(5)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(fx.rt.block_on(m.pending_alerts()).unwrap().is_empty());
    let outcomes = entries(&fx, "playbook.alert");
    assert!(
        outcomes
            .iter()
            .any(|e| e["details"]["incident"] == incident && e["details"]["delivered"] == true),
        "{outcomes:?}"
    );
}

// ------------------------------------------------------------------- finding 13

/// Drives `GET path` over `conns` keep-alive connections for `secs`, each request with
/// the next of `tokens`; returns the count of each status.
fn load(
    fx: &Fx,
    addr: SocketAddr,
    path: &str,
    tokens: &[String],
    conns: usize,
    secs: u64,
) -> std::collections::BTreeMap<u16, u64> {
    let tokens = Arc::new(tokens.to_vec());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|k| {
            let tokens = Arc::clone(&tokens);
            let path = path.to_owned();
            fx.rt.spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut seen = std::collections::BTreeMap::<u16, u64>::new();
                let mut n = k;
                while std::time::Instant::now() < until {
                    let req = Request::get(&path)
                        .header("host", "bench")
                        .header(
                            "authorization",
                            format!("Bearer {}", tokens[n % tokens.len()]),
                        )
                        .body(http_body_util::Empty::<axum::body::Bytes>::new())
                        .unwrap();
                    let r = tx.send_request(req).await.unwrap();
                    *seen.entry(r.status().as_u16()).or_default() += 1;
                    r.into_body().collect().await.unwrap();
                    n += conns;
                }
                seen
            })
        })
        .collect();
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for (s, n) in fx.rt.block_on(t).unwrap() {
            *all.entry(s).or_default() += n;
        }
    }
    all
}

/// Finding 13: with detection at its defaults, `bench/serve`'s traffic (20 service
/// accounts reloading the one model they are granted, 64 connections) had every
/// account suspended within a second. Repeats disclose nothing: nobody is suspended and
/// nothing refused. One token fetching many distinct artifacts is still an incident,
/// and only that token is suspended.
#[test]
fn a_fleet_reloading_its_model_is_normal_and_an_abused_token_is_suspended_alone() {
    let fx = Fx::with_weights(4096);
    let admin = Caller::local("admin");
    let approver = Caller {
        mfa: true,
        ..Caller::local("admin")
    };
    // 45 artifacts in production for the second half.
    let many = fx.dir.path().join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..45 {
        std::fs::write(many.join(format!("shard{i:02}.bin")), format!("shard {i}")).unwrap();
    }
    register(&fx, "many", "1", &many);
    let m = fx.m();
    for to in [VersionState::Validated, VersionState::Production] {
        fx.rt
            .block_on(m.promote(&approver, "many", &Selector::Version("1".into()), to, None))
            .unwrap();
    }
    let mut tokens = Vec::new();
    for i in 0..20 {
        let name = format!("svc{i}");
        fx.rt
            .block_on(m.add_principal(Some(&admin), &name, &["service".into()], true, None))
            .unwrap();
        fx.rt
            .block_on(m.grant(
                &admin,
                &name,
                "*",
                &[warden_policy::Action::Load],
                m.now_secs() + 86_400,
            ))
            .unwrap();
        tokens.push(fx.token(&name, &["model:load"], 86_400));
    }
    let spare = fx.token("svc0", &["model:load"], 86_400);
    let mgr = Arc::clone(fx.m.as_ref().unwrap());
    fx.rt
        .block_on(async {
            mgr.enable_detection(&warden_detect::DetectionConfig::default(), Vec::new())
        })
        .unwrap();
    let listener = fx
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let unlimited = warden_server::limits::LimitConfig {
        per_ip_per_sec: 10_000_000,
        per_ip_burst: 10_000_000,
        per_network_per_sec: 10_000_000,
        per_network_burst: 10_000_000,
        per_principal_per_sec: 10_000_000,
        per_principal_burst: 10_000_000,
        ..Default::default()
    };
    let unlimited = Arc::new(warden_server::limits::Limits::new(unlimited));
    let router = app(AppState {
        limits: Arc::clone(&unlimited),
        ..AppState::new(Arc::clone(&mgr))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = fx
        .rt
        .spawn(warden_server::tls::serve(listener, router, None, async {
            stopped.await.ok();
        }));
    let statuses = load(
        &fx,
        addr,
        "/v1/models/fraud/versions/production/files/model.safetensors",
        &tokens,
        64,
        10,
    );
    let served = statuses.get(&200).copied().unwrap_or(0);
    assert_eq!(statuses.len(), 1, "every request served: {statuses:?}");
    assert!(served > 1000, "{served} requests in 10 s");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(entries(&fx, "playbook.suspend").is_empty());
    let high: Vec<_> = entries(&fx, "incident")
        .into_iter()
        .filter(|e| matches!(e["details"]["severity"].as_str(), Some("HIGH" | "CRITICAL")))
        .collect();
    assert!(high.is_empty(), "{high:?}");

    // One token walks the 45 artifacts: enumeration, and that token alone suspended.
    let abused = &tokens[1];
    let direct = router_at(&fx, &unlimited, IpAddr::from([127, 0, 0, 1]));
    let mut refused_at = None;
    for i in 0..45 {
        let (s, _) = call_via(
            &fx,
            &direct,
            "GET",
            &format!("/v1/models/many/versions/production/files/shard{i:02}.bin"),
            abused,
            None,
        );
        if s != StatusCode::OK {
            refused_at = Some(i);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(refused_at.is_some(), "the abused token was stopped");
    wait_until(|| !entries(&fx, "playbook.suspend").is_empty());
    let suspended = entries(&fx, "playbook.suspend");
    assert_eq!(suspended.len(), 1, "{suspended:?}");
    assert_eq!(suspended[0]["details"]["principal"], "svc1");
    assert!(suspended[0]["details"]["token"].is_string());
    // svc1 itself is still active; everyone else's token, and svc0's spare, still work.
    let principals = fx.rt.block_on(m.principals(&admin)).unwrap();
    assert!(
        principals.iter().all(|(p, _)| p.active),
        "no principal suspended"
    );
    for t in [&tokens[0], &tokens[2], &spare] {
        let (s, _) = call_via(
            &fx,
            &direct,
            "GET",
            "/v1/models/fraud/versions/production/files/model.safetensors",
            t,
            None,
        );
        assert_eq!(s, StatusCode::OK);
    }
    drop(direct);
    stop.send(()).unwrap();
    fx.rt.block_on(server).unwrap();
}

/// A manifest signed on the client may not claim a training attestation: only a
/// training record the registry verified names its trainer (`warden model register
/// --provenance record.json`). Otherwise a registrant could sign a claim in the
/// trainer's name.
#[test]
fn a_client_signed_manifest_cannot_claim_a_training_attestation() {
    let fx = Fx::new();
    let p = fx.dir.path();
    let eng = fx.token("eng", &["model:register", "model:read"], 3600);
    let weights = b"weights signed elsewhere".to_vec();
    let digest = sha256_hex(&weights);
    let put = Request::put(format!("/v1/models/churn/blobs/sha256:{digest}"))
        .header("authorization", format!("Bearer {eng}"))
        .body(Body::from(weights.clone()))
        .unwrap();
    assert_eq!(fx.send(put).0, StatusCode::CREATED);
    let key = keyfile::read(&p.join("eng.key")).unwrap();
    let files = vec![warden_registry::manifest::Resource {
        name: "w.bin".into(),
        algorithm: "sha256".into(),
        digest: digest.clone(),
        size: weights.len() as u64,
    }];
    let root = warden_registry::manifest::root_digest(&files);
    let claimed = Provenance {
        attestation: Some(warden_registry::manifest::AttestationRef {
            signer: "trainer".into(),
            digest: "0".repeat(64),
            root,
        }),
        ..Provenance::default()
    };
    let sign = |prov: Provenance, version: &str| {
        let st = warden_registry::manifest::statement("churn", version, files.clone(), prov);
        warden_registry::manifest::sign(&st, "eng", &key.key).unwrap()
    };
    let (s, v) = call(
        &fx,
        "POST",
        "/v1/models/churn/versions/2.0",
        &eng,
        Some(serde_json::json!({"envelope": sign(claimed, "2.0")})),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attestation"),
        "{v}"
    );
    // The same files without the claim register.
    let (s, v) = call(
        &fx,
        "POST",
        "/v1/models/churn/versions/2.1",
        &eng,
        Some(serde_json::json!({"envelope": sign(Provenance::default(), "2.1")})),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
}
