//! Three `warden serve` nodes on one PostgreSQL and one S3-compatible bucket, each
//! tested the way the single-machine server is: the HTTP matrix (token scopes ×
//! endpoints, token states, bad input), the real `huggingface_hub` client, and SIEM
//! export. A token revoked or a principal suspended through one node is refused by
//! every node within a second, and a `[[siem]]` sink configured on every node is
//! exported once per cluster, carried on by another node when its exporter dies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

mod cli;
mod hubclient;
mod nodes;
#[path = "../../warden-registry/tests/common/s3.rs"]
mod s3;
mod serve;

use cli::pg::{Pg, psql};
use nodes::{
    MODEL_BYTES, MODEL_PATH, Node, access_ids, cluster, exported, get, ledger, nodes, nodes_with,
};
use serde_json::Value;
use std::time::{Duration, Instant};

const SHOW: &str = "/v1/models/m/versions/1";

/// Waits until every node refuses `path` with `token` (401 or 403); returns how long
/// the slowest took, counted from `since`.
fn refused_everywhere(addrs: &[String], token: &str, since: Instant, what: &str) -> Duration {
    for addr in addrs {
        loop {
            let a = get(addr, MODEL_PATH, token, "after", 10).expect("an answer");
            if a.code == 401 || a.code == 403 {
                break;
            }
            assert_eq!(a.code, 200, "{what} on {addr}: {}", a.text);
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "{addr} still serves {what}"
            );
        }
    }
    since.elapsed()
}

#[test]
fn every_node_answers_the_http_matrix_and_refuses_revocations_within_a_second() {
    let pg = Pg::new();
    let (fx, both, _) = cluster(&pg);
    fx.add_principal("eng2", "ml-engineer", &[]);
    let (read, _) = fx.token_with_id("eng", "model:read", "1h");
    let (load, _) = fx.token_with_id("eng", "model:load", "1h");
    let (audit, _) = fx.token_with_id("eng", "audit:read", "1h");
    let (doomed, doomed_id) = fx.token_with_id("eng", "model:read,model:load", "1h");
    let (expiring, _) = fx.token_with_id("eng", "model:read,model:load", "1s");
    let (suspended, _) = fx.token_with_id("eng2", "model:read,model:load", "1h");
    // The matrix refuses more than ten tokens a minute from this one address, which
    // the cluster's failure budget (one for all nodes) would turn into 429s.
    let (mut nodes, addrs) = nodes_with(
        &fx,
        3,
        &[
            "--auth-failures-per-min",
            "1000",
            "--auth-failures-per-network-per-min",
            "1000",
        ],
    );
    std::thread::sleep(Duration::from_millis(1100)); // `expiring` has expired.
    // (token, path, status, error code when refused)
    let cases: &[(&str, &str, u16, &str)] = &[
        (&read, SHOW, 200, ""),
        (&read, MODEL_PATH, 403, "denied"),
        (&load, SHOW, 403, "denied"),
        (&load, MODEL_PATH, 200, ""),
        (&both, SHOW, 200, ""),
        (&both, MODEL_PATH, 200, ""),
        (&audit, SHOW, 403, "denied"),
        (&audit, MODEL_PATH, 403, "denied"),
        (
            &both,
            "/v1/models/m/versions/9/files/m.bin",
            404,
            "not_found",
        ),
        (
            &both,
            "/v1/models/m/versions/1/files/missing.bin",
            404,
            "not_found",
        ),
        (&both, "/v1/models/nope/versions/1", 404, "not_found"),
        ("", MODEL_PATH, 401, "unauthenticated"),
        ("wdn_0000", MODEL_PATH, 401, "unauthenticated"),
        (&expiring, MODEL_PATH, 401, "unauthenticated"),
        (&both, "/v1/models/%ff%fe/versions/1", 400, "bad_request"),
        (&both, "/v1/nothing-here", 404, "not_found"),
    ];
    let mut served = Vec::new();
    for (n, addr) in nodes.iter().zip(&addrs) {
        for (i, (token, path, want, code)) in cases.iter().enumerate() {
            let rid = format!("m-{}-{i}", n.name);
            let a = get(addr, path, token, &rid, 10).expect("an answer");
            assert_eq!(a.code, *want, "{} {path}: {}", n.name, a.text);
            assert!(
                a.text.contains(&format!("x-request-id: {rid}")),
                "{} {path}: no request id in {}",
                n.name,
                a.text
            );
            if a.code == 200 && path.contains("/files/") {
                assert_eq!(a.size, MODEL_BYTES);
                served.push(rid);
            } else if a.code != 200 {
                let body = &a.text[a.text.find('{').expect("a JSON error body")..];
                let v: Value = serde_json::from_str(body).unwrap();
                assert!(v["error"]["code"].is_string(), "{v}");
                if !code.is_empty() {
                    assert_eq!(v["error"]["code"], *code, "{} {path}", n.name);
                }
            }
        }
    }
    // Revoking a token through the second node, and suspending a principal through
    // the third, are refused by every node within a second.
    for (addr, t) in addrs.iter().zip([&doomed, &suspended]) {
        assert_eq!(get(addr, MODEL_PATH, t, "before", 10).unwrap().code, 200);
    }
    let steps: [(&Node, [&str; 5], &str, &str); 2] = [
        (
            &nodes[1],
            ["token", "revoke", &doomed_id, "--as", "admin"],
            &doomed,
            "a revoked token",
        ),
        (
            &nodes[2],
            ["principal", "suspend", "eng2", "--as", "admin"],
            &suspended,
            "a suspended principal",
        ),
    ];
    for (node, args, token, what) in steps {
        let out = node.cmd(&fx).args(args).arg("--mfa").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let took = refused_everywhere(&addrs, token, Instant::now(), what);
        eprintln!("{what} refused by all three nodes after {took:?}");
    }

    for n in &mut nodes {
        n.signal("-TERM");
    }
    // Each served download once; each scope refusal a `model.denied` entry.
    let entries = ledger(&fx, &nodes[0].data);
    let ids = access_ids(&entries);
    for rid in &served {
        assert_eq!(ids.get(rid), Some(&1), "{rid}");
    }
    for n in &nodes {
        for (i, (_, _, want, _)) in cases.iter().enumerate() {
            if *want == 403 {
                let rid = format!("m-{}-{i}", n.name);
                assert!(
                    entries
                        .iter()
                        .any(|e| e["kind"] == "model.denied"
                            && e["event"]["request_id"] == rid.as_str()),
                    "no model.denied entry for {rid}"
                );
            }
        }
    }
}

#[test]
fn every_node_serves_the_huggingface_hub_client() {
    let pg = Pg::new();
    let (fx, _, objects) = cluster(&pg);
    let prep = hubclient::prepare(&fx, &objects.join("blobs"));
    let (mut nodes, addrs) = nodes(&fx, 3);
    for (n, addr) in nodes.iter().zip(&addrs) {
        let cache = format!("cache-{}", n.name);
        hubclient::client(&fx, addr, "download", &prep.eng, &cache);
        hubclient::client(&fx, addr, "repeat", &prep.eng, &cache);
        hubclient::client(&fx, addr, "failures", &prep.eng, &format!("f-{}", n.name));
    }
    // An object altered in the bucket is refused by every node.
    std::fs::write(&prep.blob, &prep.altered).unwrap();
    for (n, addr) in nodes.iter().zip(&addrs) {
        hubclient::client(&fx, addr, "tampered", &prep.eng, &format!("t-{}", n.name));
    }
    for n in &mut nodes {
        n.signal("-TERM");
    }
    let entries = ledger(&fx, &nodes[0].data);
    let hub: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "model.access" && e["event"]["model"] == hubclient::REPO)
        .collect();
    // Each node served the client's downloads (three files, several revisions).
    assert!(hub.len() >= 18, "{} downloads", hub.len());
    for e in &hub {
        let ua = e["event"]["user_agent"].as_str().unwrap_or_default();
        assert!(ua.contains("hf_hub/"), "the client's user agent: {ua:?}");
        assert_eq!(e["event"]["user"], "eng");
    }
    let incidents = entries.iter().filter(|e| e["kind"] == "incident").count();
    assert!(
        incidents >= 3,
        "the tampered blob raised an incident on each node"
    );
}

/// Waits until the sink holds the entry of download `rid`.
fn wait_exported(path: &std::path::Path, rid: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(&format!("\"{rid}\"")) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "{rid} was not exported within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn export_holder(pg: &Pg) -> String {
    psql(
        &pg.url(),
        "SELECT holder FROM cluster_lease WHERE name = 'export.soc' AND expires_at > clock_timestamp()",
    )
    .split('/')
    .next()
    .unwrap_or_default()
    .to_owned()
}

fn download_all(nodes: &[Node], addrs: &[String], token: &str, tag: &str) -> Vec<String> {
    let mut rids = Vec::new();
    for (n, addr) in nodes.iter().zip(addrs) {
        if n.child.is_none() {
            continue;
        }
        let rid = format!("{tag}-{}", n.name);
        assert_eq!(get(addr, MODEL_PATH, token, &rid, 10).unwrap().code, 200);
        rids.push(rid);
    }
    rids
}

#[test]
fn siem_export_runs_once_per_cluster_and_moves_when_its_node_dies() {
    let pg = Pg::new();
    let (fx, token, _) = cluster(&pg);
    let sink = fx.root.join("soc.jsonl");
    let cfg = fx.data.join("warden.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[[siem]]\nname = \"soc\"\nto = \"file:{}\"\nformat = \"ecs\"\nauditor_key = \"{}\"\n",
        sink.display(),
        fx.root.join("auditor.key").display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let (mut nodes, addrs) = nodes(&fx, 3);
    let first = download_all(&nodes, &addrs, &token, "dl-a");
    for rid in &first {
        wait_exported(&sink, rid, Duration::from_secs(15));
    }
    // Once per cluster: three nodes configured with the sink, each entry delivered once.
    let before = exported(&sink);
    let mut seen = std::collections::HashSet::new();
    assert!(
        before.iter().all(|l| seen.insert(l)),
        "an entry was exported twice while every node ran"
    );
    let holder = export_holder(&pg);
    let k = nodes
        .iter()
        .position(|n| n.name == holder)
        .expect("an exporting node");
    nodes[k].signal("-KILL");
    let killed = Instant::now();
    let second = download_all(&nodes, &addrs, &token, "dl-b");
    for rid in &second {
        wait_exported(&sink, rid, Duration::from_secs(20));
    }
    eprintln!(
        "{holder} (the exporter) SIGKILLed; the sink resumed on {} within {:?}",
        export_holder(&pg),
        killed.elapsed()
    );
    for n in &mut nodes {
        n.signal("-TERM");
    }
    // Every entry up to the last download reached the sink, in order: duplicates only
    // where the killed exporter had sent entries it had not yet recorded as delivered.
    // (The survivor's copy, brought up to the database and verified first.)
    let survivor = &nodes[(k + 1) % 3].data;
    let _ = ledger(&fx, survivor);
    let lines: Vec<String> = std::fs::read_to_string(survivor.join("logs/model_access.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let got = exported(&sink);
    let mut distinct = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for l in &got {
        if seen.insert(l.clone()) {
            distinct.push(l.clone());
        }
    }
    assert!(
        got.len() - distinct.len() <= 1000,
        "{} duplicates",
        got.len() - distinct.len()
    );
    assert_eq!(
        distinct[..],
        lines[..distinct.len()],
        "exported out of order or with gaps"
    );
    let text = std::fs::read_to_string(&sink).unwrap();
    for rid in first.iter().chain(&second) {
        assert!(
            text.contains(&format!("\"{rid}\"")),
            "{rid} was not exported"
        );
    }
    // Every node, the ones that never exported included, reports how far the sink got
    // (from the cursor the cluster keeps).
    for n in &nodes {
        let out = n
            .cmd(&fx)
            .args(["export", "status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let soc = v["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sink"] == "soc")
            .unwrap_or_else(|| panic!("{}: no sink soc in {v}", n.name));
        assert!(
            soc["next"].as_u64().unwrap() >= distinct.len() as u64,
            "{}: {soc}",
            n.name
        );
    }
}

#[test]
fn every_node_exports_its_copy_of_the_ledger_whole() {
    let pg = Pg::new();
    let (fx, token, _) = cluster(&pg);
    let (mut nodes, addrs) = nodes(&fx, 3);
    download_all(&nodes, &addrs, &token, "x");
    for n in &mut nodes {
        n.signal("-TERM");
    }
    let mut outputs = Vec::new();
    for n in &nodes {
        let file = fx.root.join(format!("cli-{}.jsonl", n.name));
        let out = n
            .cmd(&fx)
            .args([
                "export",
                "--json",
                "--name",
                "cli",
                "--format",
                "ecs",
                "--auditor-key",
                "auditor.key",
                "--to",
            ])
            .arg(format!("file:{}", file.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = std::fs::read_to_string(n.data.join("logs/model_access.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let got = exported(&file);
        assert_eq!(
            got, lines,
            "{}: the export is the ledger, entry by entry",
            n.name
        );
        outputs.push(got);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

/// The `brute_force` incidents among `entries`.
fn brute_forces(entries: &[Value]) -> usize {
    entries
        .iter()
        .filter(|e| e["kind"] == "incident" && e["event"]["details"]["detector"] == "brute_force")
        .count()
}

/// Failed authentications from one address spread over three nodes, fewer on each
/// than the brute-force threshold (20 in 5 minutes), more in all: the node that
/// sequences sees every node's entries, so the cluster raises one incident, as one
/// server would.
#[test]
fn a_brute_force_spread_over_three_nodes_is_one_brute_force() {
    let pg = Pg::new();
    let (fx, _, _) = cluster(&pg);
    // The failure budget is one for the cluster (the test below): room for all 24.
    let (_nodes, addrs) = nodes_with(&fx, 3, &["--auth-failures-per-min", "30"]);
    let started = Instant::now();
    for i in 0..24 {
        let a = get(
            &addrs[i % 3],
            MODEL_PATH,
            &format!("wdn_not-a-token-{i}"),
            &format!("bf-{i}"),
            10,
        )
        .expect("an answer");
        assert_eq!(a.code, 401, "{}", a.text);
    }
    let mut entries = ledger(&fx, &fx.data);
    while brute_forces(&entries) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no brute-force incident after 24 failures over three nodes: {:?}",
            entries
                .iter()
                .filter(|e| e["kind"] != "model.access")
                .map(|e| format!("{} {}", e["kind"], e["event"]["details"]))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
        entries = ledger(&fx, &fx.data);
    }
    eprintln!(
        "brute force over three nodes raised its incident {:?} after the first failure",
        started.elapsed()
    );
    let failures = entries
        .iter()
        .filter(|e| e["kind"] == "auth.failure")
        .count();
    assert_eq!(failures, 24, "each failure is an entry");
    // Give a second detector the time it would need, then count again: one incident.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(brute_forces(&ledger(&fx, &fx.data)), 1);
}

/// What the detectors learnt survives a change of sequencer: 12 failed
/// authentications from one address, the sequencer SIGKILLed once its detectors'
/// state was saved, 12 more through the nodes left. Before, the node that took the
/// lease started over and saw 12 of the 24 (threshold 20): no incident.
#[test]
fn a_brute_force_split_by_a_change_of_sequencer_is_one_brute_force() {
    let pg = Pg::new();
    let (fx, _, _) = cluster(&pg);
    let (mut nodes, addrs) = nodes_with(&fx, 3, &["--auth-failures-per-min", "30"]);
    let holder = || {
        psql(
            &pg.url(),
            "SELECT holder FROM cluster_lease WHERE name = 'ledger.sequencer' AND expires_at > clock_timestamp()",
        )
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
    };
    let first = holder();
    let seq = nodes
        .iter()
        .position(|n| n.name == first)
        .expect("a node sequences");
    let fail = |addr: &str, i: usize| {
        let a = get(
            addr,
            MODEL_PATH,
            &format!("wdn_nope-{i}"),
            &format!("f-{i}"),
            10,
        )
        .expect("an answer");
        assert_eq!(a.code, 401, "{}", a.text);
    };
    let others: Vec<usize> = (0..3).filter(|i| *i != seq).collect();
    for i in 0..12 {
        fail(&addrs[others[i % 2]], i);
    }
    // Every failure is written (so seen by the sequencer's detectors); then wait for
    // a save of their state made after that.
    std::thread::sleep(Duration::from_millis(300));
    let since = psql(&pg.url(), "SELECT clock_timestamp()");
    let deadline = Instant::now() + Duration::from_secs(15);
    while psql(
        &pg.url(),
        &format!("SELECT count(*) FROM detector_state WHERE saved_at > '{since}'"),
    ) != "1"
    {
        assert!(
            Instant::now() < deadline,
            "the detectors' state was never saved"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let saved = psql(
        &pg.url(),
        "SELECT encode(sealed, 'escape') FROM detector_state",
    );
    assert!(
        !saved.contains("127.0.0.1") && !saved.contains("auth_failures"),
        "the saved state is sealed"
    );
    nodes[seq].signal("-KILL");
    let killed = Instant::now();
    let mut next = holder();
    while next.is_empty() || next == first {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no node took the lease"
        );
        std::thread::sleep(Duration::from_millis(100));
        next = holder();
    }
    for i in 12..24 {
        fail(&addrs[others[i % 2]], i);
    }
    let data = &nodes[others[0]].data;
    let started = Instant::now();
    let mut entries = ledger(&fx, data);
    while brute_forces(&entries) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no brute-force incident after 12 + 12 failures on both sides of a failover"
        );
        std::thread::sleep(Duration::from_millis(200));
        entries = ledger(&fx, data);
    }
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["kind"] == "auth.failure")
            .count(),
        24
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(brute_forces(&ledger(&fx, data)), 1);
}

/// A client spreading its requests over three nodes meets one budget, not one per
/// node: ten failed authentications a minute from one address (each node admitted ten
/// before, thirty in all), and a principal's burst of ten requests.
#[test]
fn rate_limits_are_one_budget_over_three_nodes() {
    let pg = Pg::new();
    let (fx, token, _) = cluster(&pg);
    let (_nodes, addrs) = nodes_with(
        &fx,
        3,
        &["--auth-failures-per-min", "10", "--rate-principal", "5"],
    );
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..30 {
        let a = get(
            &addrs[i % 3],
            SHOW,
            &format!("wdn_guess-{i}"),
            &format!("g-{i}"),
            10,
        )
        .expect("an answer");
        if a.code == 429 {
            assert!(
                a.text.contains("retry-after:") && a.text.contains("auth-failures"),
                "{}",
                a.text
            );
        }
        *codes.entry(a.code).or_default() += 1;
    }
    assert_eq!(
        codes,
        [(401, 10), (429, 20)].into_iter().collect(),
        "30 guesses from one address over three nodes"
    );
    let started = Instant::now();
    let mut admitted = 0usize;
    for i in 0..60 {
        let a = get(&addrs[i % 3], SHOW, &token, &format!("p-{i}"), 10).expect("an answer");
        match a.code {
            200 => admitted += 1,
            429 => assert!(a.text.contains("principal"), "{}", a.text),
            c => panic!("{c}: {}", a.text),
        }
    }
    // The burst (10) and what frees meanwhile (5 a second), rounded up.
    let most = 10 + (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    eprintln!(
        "principal budget over three nodes: {admitted} of 60 admitted in {:?} (at most {most})",
        started.elapsed()
    );
    assert!(
        (10..=most).contains(&admitted),
        "{admitted} admitted; one budget allows {most}"
    );
}
