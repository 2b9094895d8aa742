//! Threat detection through the HTTP service: the traffic generator of `warden-detect`'s
//! tests (200 principals over two weeks with daily patterns, over 100 000 events, and
//! five scripted attacks) is replayed as real requests (bearer tokens, policy, audited
//! downloads) against the API with detection, the playbook and an alert sink on. Only
//! the clock is the generator's: each request is served at its event's time.
//!
//! Every attack raises its incident with its severity within a second of the request
//! that crosses the threshold; benign traffic flags fewer than 2 % of principals; the
//! playbook suspends the attackers (their next request is refused) and revokes the
//! tampered version; each alert is delivered, after a retry, and recorded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "../../warden-detect/tests/generator/mod.rs"]
mod generator;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use generator::{DAY, Ev, HOUR, T0, USERS, attacks, benign};
use http_body_util::BodyExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read as _, Seek as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;
use warden_core::crypto::SigAlg;
use warden_detect::Category;
use warden_policy::{Engine, VersionState};
use warden_registry::blobs::BlobStore;
use warden_registry::manifest::Provenance;
use warden_registry::respond::{AlertSink, AlertTarget};
use warden_registry::{
    Caller, ManagerOptions, Registration, SecureModelManager, Selector, keyfile,
};
use warden_server::{AppState, app};
use warden_store::keys::{self, KdfParams};
use warden_store::ledger::{Ledger, LedgerOptions, ManualClock, SystemEntropy};

const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
const MODELS: u64 = 50;

/// An alert receiver that refuses each alert's first delivery.
#[derive(Debug, Default)]
struct Receiver {
    tries: Mutex<HashMap<u64, u32>>,
    got: Mutex<Vec<serde_json::Value>>,
}

impl AlertSink for Receiver {
    fn name(&self) -> String {
        "test-receiver".into()
    }
    fn deliver(&self, body: &[u8], _now: u64) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let n = v["incident"].as_u64().ok_or("no incident")?;
        let mut tries = self.tries.lock().unwrap();
        let t = tries.entry(n).or_default();
        *t += 1;
        if *t == 1 {
            return Err("503 on the first try".into());
        }
        self.got.lock().unwrap().push(v);
        Ok(())
    }
}

/// Reads the entries appended to the ledger since the last call: (index, kind).
struct Tail {
    file: std::fs::File,
    buf: Vec<u8>,
}

impl Tail {
    fn read(&mut self) -> Vec<(u64, String)> {
        let mut chunk = Vec::new();
        self.file.read_to_end(&mut chunk).unwrap();
        self.buf.extend_from_slice(&chunk);
        let mut out = Vec::new();
        let end = self
            .buf
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        for line in self.buf[..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let h: serde_json::Value = serde_json::from_slice(line).unwrap();
            out.push((
                h["index"].as_u64().unwrap(),
                h["kind"].as_str().unwrap().to_owned(),
            ));
        }
        self.buf.drain(..end);
        out
    }
}

fn content(model: &str, version: &str, file: &str) -> Vec<u8> {
    format!("{model}@{version}/{file}: {}\n", "w".repeat(64)).into_bytes()
}

#[test]
fn generated_traffic_through_the_service_raises_every_attack_and_few_false_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let clock = ManualClock::new(T0 - DAY);
    let mut now = T0 - DAY;
    keys::create_root(
        &p.join("root.key"),
        &p.join("root.pub"),
        "test.local/detect",
        SigAlg::MlDsa65,
        b"",
        KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
        },
    )
    .unwrap();
    keys::create_recipient(&p.join("aud.key"), &p.join("aud.key.pub")).unwrap();
    std::fs::create_dir_all(p.join("logs")).unwrap();
    let log = p.join("logs/model_access.jsonl");
    let ledger = Ledger::open(
        &log,
        keys::unlock_root(&p.join("root.key"), b"").unwrap(),
        LedgerOptions {
            origin: "test.local/detect".into(),
            alg: SigAlg::MlDsa65,
            rotation_interval: Duration::from_secs(7200),
            strict: false,
            recipients: vec![keys::read_recipient_public(&p.join("aud.key.pub")).unwrap()],
            clock: Arc::new(clock.clone()),
            entropy: Arc::new(SystemEntropy),
            // One file, so the test can follow it as it grows.
            segments: warden_store::segments::SegmentPolicy {
                daily: false,
                max_bytes: 0,
            },
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let admin = Caller::local("admin");
    let approver = Caller {
        mfa: true,
        ..Caller::local("admin")
    };
    let receiver = Arc::new(Receiver::default());
    let (m, tokens) = rt.block_on(async {
        let m = Arc::new(
            SecureModelManager::open(
                ManagerOptions {
                    database: warden_registry::db::Database::Sqlite(p.join("registry.db")),
                    blobs: BlobStore::local(&p.join("blobs")).unwrap(),
                    engine: Engine::default_policy().unwrap(),
                    policy_digest: "test".into(),
                    config_digest: None,
                    clock: Arc::new(clock.clone()),
                },
                std::sync::Arc::new(ledger),
            )
            .await
            .unwrap(),
        );
        m.add_principal(None, "admin", &["admin".into()], false, None)
            .await
            .unwrap();
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
        // 50 models of two versions, a draft nobody may load yet (the denials), and
        // the version whose stored weights will be tampered with.
        let mut versions: Vec<(String, &str, bool)> = (0..MODELS)
            .flat_map(|i| {
                [
                    (format!("m{i:02}"), "1.0", true),
                    (format!("m{i:02}"), "2.0", true),
                ]
            })
            .collect();
        versions.push(("draft".into(), "1.0", false));
        versions.push(("victim".into(), "1.0", true));
        for (model, version, validate) in &versions {
            let src = p.join("src").join(model).join(version);
            std::fs::create_dir_all(&src).unwrap();
            for f in FILES {
                std::fs::write(src.join(f), content(model, version, f)).unwrap();
            }
            m.register(
                &Caller::local("eng"),
                Registration {
                    model,
                    version,
                    path: &src,
                    provenance: Provenance::default(),
                },
                &key,
                &|_, _| {},
            )
            .await
            .unwrap();
            if *validate {
                let v = Selector::Version((*version).into());
                m.promote(&approver, model, &v, VersionState::Validated, None)
                    .await
                    .unwrap();
            }
        }
        let scopes = ["model:read".to_owned(), "model:load".to_owned()];
        let mut tokens = HashMap::new();
        for i in 0..USERS {
            let u = generator::user(i);
            m.add_principal(Some(&admin), &u, &["data-scientist".into()], false, None)
                .await
                .unwrap();
            let (t, _, _) = m
                .create_token(&admin, &u, &scopes, 30 * 86_400)
                .await
                .unwrap();
            tokens.insert(u, t);
        }
        let cfg = warden_detect::DetectionConfig::default();
        let alerts = vec![AlertTarget {
            sink: Arc::clone(&receiver) as Arc<dyn AlertSink>,
            min_severity: "HIGH".into(),
            attempts: 3,
            backoff: Duration::from_millis(20),
        }];
        m.enable_detection(&cfg, alerts).unwrap();
        (m, tokens)
    });
    let router = app(AppState {
        manager: Arc::clone(&m),
        limits: Arc::new(warden_server::limits::Limits::new(
            warden_server::limits::LimitConfig {
                per_ip_per_sec: 1_000_000,
                per_ip_burst: 1_000_000,
                per_principal_per_sec: 1_000_000,
                per_principal_burst: 1_000_000,
                auth_failures_per_min: 1_000_000,
                per_network_per_sec: 1_000_000,
                per_network_burst: 1_000_000,
                auth_failures_per_network_per_min: 1_000_000,
                auth_failures_total_per_min: 1_000_000,
            },
        )),
        jwt: None,
        max_upload: 1 << 20,
        auditor: None,
        mtls_scopes: warden_server::default_mtls_scopes(),
        pace: warden_server::pace::Pace::default(),
        dashboard: Default::default(),
        gateway: Default::default(),
    });
    let send = |token: Option<&str>, ip: IpAddr, path: &str| -> StatusCode {
        let mut b = Request::get(path).header("user-agent", "generator/1");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let mut req = b.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
        rt.block_on(async {
            let r = router.clone().oneshot(req).await.unwrap();
            let status = r.status();
            // A tampered download fails mid-body; the status is what the client saw.
            let _ = r.into_body().collect().await;
            status
        })
    };

    // The traffic, in time order, each request at its event's time.
    let mut events: Vec<Ev> = benign();
    let n_benign = events.len();
    events.extend(attacks());
    events.sort_by_key(|e| e.time);
    assert!(n_benign >= 100_000, "{n_benign} benign events");
    let mut tail = Tail {
        file: std::fs::File::open(&log).unwrap(),
        buf: Vec::new(),
    };
    tail.file.seek(std::io::SeekFrom::End(0)).unwrap();
    // When each entry was first seen.
    let mut seen: HashMap<u64, Instant> = HashMap::new();
    let observe = |tail: &mut Tail, seen: &mut HashMap<u64, Instant>| {
        let t = Instant::now();
        for (index, _) in tail.read() {
            seen.insert(index, t);
        }
    };
    let mut statuses: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut last_of_attack: HashMap<&str, usize> = HashMap::new();
    for (k, e) in events.iter().enumerate() {
        if let Some(a) = e.attack {
            last_of_attack.insert(a, k);
        }
    }
    let mut after_attack: Vec<(&str, StatusCode)> = Vec::new();
    let started = Instant::now();
    for (k, e) in events.iter().enumerate() {
        if e.time > now {
            clock.advance(e.time - now);
            now = e.time;
        }
        let token = e.principal.as_ref().map(|u| tokens[u].as_str());
        let file = |model: &str, version: &str, f: &str| {
            format!("/v1/models/{model}/versions/{version}/files/{f}")
        };
        let (token, path) = match e.category {
            Category::Access => (token, file(&e.model, &e.version, &e.file)),
            Category::Read => (
                token,
                format!("/v1/models/{}/versions/{}", e.model, e.version),
            ),
            Category::Denied => (token, file("draft", "1.0", "model.safetensors")),
            Category::AuthFailure => (
                Some("wdn_not-a-real-token"),
                file(&e.model, "1.0", "config.json"),
            ),
            Category::IntegrityFailure => {
                // The attacker altered the stored weights; a user's download finds it.
                let digest = warden_core::hex::encode(&warden_core::merkle::sha256(&content(
                    "victim",
                    "1.0",
                    "model.safetensors",
                )));
                let blob = m.blobs().local_path(&digest).unwrap();
                let mut bytes = std::fs::read(&blob).unwrap();
                bytes[10] ^= 1;
                std::fs::write(&blob, &bytes).unwrap();
                (token, file("victim", "1.0", "model.safetensors"))
            }
            // The generated workload has no inference traffic.
            Category::Other | Category::Inference => unreachable!(),
        };
        let s = send(token, e.ip, &path);
        *statuses
            .entry((e.attack.unwrap_or("benign"), s.as_u16()))
            .or_default() += 1;
        observe(&mut tail, &mut seen);
        // Right after an attack with a stolen or abused token, that token's next
        // request: the playbook must have suspended it.
        if let Some(a) = e.attack
            && last_of_attack[a] == k
            && matches!(a, "enumeration" | "exfiltration")
        {
            // The incident was raised mid-attack and the suspension follows it; give
            // it at most a second to commit.
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut s = send(token, e.ip, &file("m00", "1.0", "config.json"));
            while s == StatusCode::OK && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
                s = send(token, e.ip, &file("m00", "1.0", "config.json"));
            }
            observe(&mut tail, &mut seen);
            after_attack.push((a, s));
        }
    }
    let elapsed = started.elapsed();
    // Let the responder and the alert retries finish.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        observe(&mut tail, &mut seen);
    }
    println!(
        "{} requests in {:.1} s ({:.0}/s); statuses {statuses:?}",
        events.len(),
        elapsed.as_secs_f64(),
        events.len() as f64 / elapsed.as_secs_f64()
    );
    // Benign traffic was served as a user would expect.
    let ok = statuses.get(&("benign", 200)).copied().unwrap_or_default();
    assert!(ok as f64 > 0.9 * n_benign as f64, "{statuses:?}");

    let victim_state = rt
        .block_on(m.show(&admin, "victim", &Selector::Version("1.0".into())))
        .unwrap()
        .state;
    drop(router);
    let m = Arc::try_unwrap(m).unwrap();
    rt.block_on(m.close()).unwrap();
    let sk = keys::read_recipient_secret(&p.join("aud.key")).unwrap();
    let entries = |kind: &str| {
        warden_store::audit::read_entries(
            &log,
            Some(&sk),
            &warden_store::audit::EntryFilter {
                kind: Some(kind.into()),
                limit: 100_000,
                ..Default::default()
            },
        )
        .unwrap()
        .0
    };
    let incidents: Vec<(u64, serde_json::Value)> = entries("incident")
        .into_iter()
        .map(|e| (e.index, e.event.unwrap()))
        .filter(|(_, ev)| ev["details"]["type"] == "detection")
        .collect();
    let detail =
        |ev: &serde_json::Value, k: &str| ev["details"][k].as_str().unwrap_or("").to_owned();

    // Who each incident is about: its principal, or the owner of its home network.
    let attackers = ["u020", "u030", "u040", "u050"];
    let subject = |ev: &serde_json::Value| -> String {
        if let Some(u) = ev["user"].as_str() {
            return u.to_owned();
        }
        let ip: IpAddr = ev["ip"].as_str().unwrap_or("0.0.0.0").parse().unwrap();
        match ip {
            IpAddr::V4(v4) if v4.octets()[0] == 10 => {
                let o = v4.octets();
                generator::user(u64::from(o[1]) * 250 + u64::from(o[2]))
            }
            other => other.to_string(),
        }
    };
    let benign_flagged: BTreeSet<String> = incidents
        .iter()
        .map(|(_, ev)| subject(ev))
        .filter(|s| s.starts_with('u') && !attackers.contains(&s.as_str()))
        .collect();
    let rate = benign_flagged.len() as f64 / USERS as f64;
    println!(
        "{} incidents; benign principals flagged: {} of {USERS} ({:.1} %): {:?}",
        incidents.len(),
        benign_flagged.len(),
        rate * 100.0,
        incidents
            .iter()
            .map(|(_, ev)| (detail(ev, "detector"), subject(ev)))
            .collect::<Vec<_>>()
    );
    assert!(
        rate < 0.02,
        "false-positive rate {rate}: {benign_flagged:?}"
    );

    // Every attack: its incident, its severity, raised within a second.
    let expect = [
        ("credential_stuffing", "brute_force", "203.0.113.50", "HIGH"),
        ("enumeration", "enumeration", "u040", "HIGH"),
        ("exfiltration", "exfiltration", "u020", "HIGH"),
        // A new network alone is at most MEDIUM: it alerts nobody and suspends nothing.
        ("stolen_token", "new_network", "u030", "MEDIUM"),
        ("tampered_artifact", "integrity", "u050", "CRITICAL"),
    ];
    for (attack, detector, who, severity) in expect {
        let hits: Vec<&(u64, serde_json::Value)> = incidents
            .iter()
            .filter(|(_, ev)| detail(ev, "detector") == detector && subject(ev) == who)
            .collect();
        assert_eq!(hits.len(), 1, "{attack}: one {detector} incident for {who}");
        let (index, ev) = hits[0];
        assert_eq!(detail(ev, "severity"), severity, "{attack}");
        let evidence: Vec<u64> = serde_json::from_value(ev["details"]["evidence"].clone()).unwrap();
        let trigger = *evidence.iter().max().unwrap();
        let latency = seen[index].duration_since(seen[&trigger]);
        println!(
            "{attack}: {detector} {severity}, raised {latency:?} after its triggering entry {trigger}"
        );
        assert!(latency < Duration::from_secs(1), "{attack}: {latency:?}");
        if attack == "stolen_token" {
            assert_eq!(ev["ip"], "198.51.100.7");
        }
    }
    // The playbook: each abused token refused on its next request, the tampered
    // version revoked, and every action a ledger entry naming its incident.
    // Nothing was served to an attacker after its suspension was recorded.
    assert_eq!(after_attack.len(), 2, "{after_attack:?}");
    let accesses = entries("model.access");
    for e in entries("playbook.suspend") {
        let u = e.event.as_ref().unwrap()["details"]["principal"].clone();
        let late: Vec<u64> = accesses
            .iter()
            .filter(|a| a.index > e.index && a.event.as_ref().unwrap()["user"] == u)
            .map(|a| a.index)
            .collect();
        assert!(
            late.is_empty(),
            "{u} served after suspension at {}: {late:?}",
            e.index
        );
    }
    for (a, s) in &after_attack {
        assert!(
            matches!(*s, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "{a}: the suspended token got {s}"
        );
    }
    let suspended: BTreeSet<String> = entries("playbook.suspend")
        .iter()
        .map(|e| {
            e.event.as_ref().unwrap()["details"]["principal"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for u in ["u020", "u040"] {
        assert!(suspended.contains(u), "{u} suspended: {suspended:?}");
    }
    // Each attack was carried by one token: that token is suspended, not its principal.
    for e in entries("playbook.suspend") {
        let d = &e.event.as_ref().unwrap()["details"];
        assert!(d["token"].is_string(), "a token, not the principal: {d}");
    }
    assert_eq!(victim_state, "revoked");
    let revoked = entries("playbook.revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].event.as_ref().unwrap()["model"], "victim");
    // Alerts: HIGH and above went to the receiver, delivered on the second try.
    let alerted: Vec<u64> = entries("playbook.alert")
        .iter()
        .map(|e| {
            let d = &e.event.as_ref().unwrap()["details"];
            assert_eq!(d["delivered"], true, "{d}");
            assert_eq!(d["attempts"], 2, "{d}");
            d["incident"].as_u64().unwrap()
        })
        .collect();
    let high: Vec<u64> = incidents
        .iter()
        .filter(|(_, ev)| matches!(detail(ev, "severity").as_str(), "HIGH" | "CRITICAL"))
        .map(|(i, _)| *i)
        .collect();
    let mut a = alerted.clone();
    a.sort_unstable();
    assert_eq!(a, high, "one delivered alert per HIGH or CRITICAL incident");
    let got = receiver.got.lock().unwrap();
    assert_eq!(got.len(), high.len());
    assert!(
        got.iter()
            .all(|v| v["type"] == "warden.incident" && v["evidence"].is_array())
    );
    let _ = HOUR;
}
