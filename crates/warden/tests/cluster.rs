//! Several `warden serve` nodes on one PostgreSQL and one S3-compatible bucket (`warden
//! init --backend … --blobs s3://…`): each node serves the shared registry and its
//! blobs from the bucket and appends to the one ledger; a revocation made through
//! one node is refused by every node within a second; SIGKILLing nodes (the sequencer
//! among them) and restarting PostgreSQL under load loses no acknowledged entry, forks
//! nothing, and the longest stretch without a served download stays under 5 s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

mod cli;
mod nodes;
#[path = "../../warden-registry/tests/common/s3.rs"]
mod s3;
mod serve;

use cli::pg::{Pg, psql};
use nodes::{MODEL_BYTES, access_ids, cluster, download, ledger, nodes};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn three_nodes_share_one_registry_and_one_ledger() {
    let pg = Pg::new();
    let (fx, token, _) = cluster(&pg);
    // Scheduled verification every second: it must run on one node at a time.
    let toml = fx.data.join("warden.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("verify_every_secs = 86400", "verify_every_secs = 1"),
    )
    .unwrap();
    let started = Instant::now();
    let (mut nodes, addrs) = nodes(&fx, 3);
    for (n, addr) in nodes.iter().zip(&addrs) {
        for i in 0..3 {
            let rid = format!("dl-{}-{i}", n.name);
            assert_eq!(
                download(addr, &token, &rid),
                Some((200, MODEL_BYTES)),
                "{rid}"
            );
        }
    }
    // The sequencer lease is held, by one of the three nodes.
    let holder = psql(
        &pg.url(),
        "SELECT holder FROM cluster_lease WHERE name = 'ledger.sequencer' AND expires_at > clock_timestamp()",
    );
    let holder = holder.split('/').next().unwrap_or_default();
    assert!(
        nodes.iter().any(|n| n.name == holder),
        "sequencer lease held by {holder:?}"
    );
    // A revocation made on the second node is refused by every node within a second.
    let mut revoke = nodes[1].cmd(&fx);
    revoke.args([
        "model", "revoke", "m@1", "--reason", "leaked", "--as", "admin", "--mfa",
    ]);
    let out = revoke.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = Instant::now();
    for addr in &addrs {
        loop {
            let r = download(addr, &token, "after-revoke");
            if r.is_some_and(|(c, _)| c != 200) {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "{addr} still serves a revoked model"
            );
        }
    }
    eprintln!(
        "revocation refused by all three nodes after {:?}",
        revoked.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    for n in &mut nodes {
        n.signal("-TERM");
    }
    let ran_for = started.elapsed().as_secs_f64();
    // Every node's copy verifies and holds each download exactly once.
    let mut copies = Vec::new();
    for n in &nodes {
        let entries = ledger(&fx, &n.data);
        let ids = access_ids(&entries);
        for m in &nodes {
            for i in 0..3 {
                assert_eq!(
                    ids.get(&format!("dl-{}-{i}", m.name)),
                    Some(&1),
                    "on {}",
                    n.name
                );
            }
        }
        copies.push(std::fs::read(n.data.join("logs/model_access.jsonl")).unwrap());
        // The schedule ran on one node at a time, each run verifying the copy clean.
        let runs: Vec<&Value> = entries
            .iter()
            .filter(|e| e["kind"] == "verification.run")
            .collect();
        assert!(!runs.is_empty(), "no scheduled verification ran");
        assert!(
            (runs.len() as f64) <= ran_for + 1.0,
            "{} scheduled verifications in {ran_for:.1} s: more than one node ran them",
            runs.len()
        );
        assert!(
            runs.iter().all(|r| r["event"]["details"]["clean"] == true),
            "{runs:?}"
        );
    }
    assert!(
        copies.windows(2).all(|w| w[0] == w[1]),
        "the nodes' copies differ"
    );
}

/// Seconds of chaos (`WARDEN_CHAOS_SECS`, default 60).
fn chaos_secs() -> u64 {
    std::env::var("WARDEN_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

#[test]
fn chaos_sigkill_and_a_postgres_restart_lose_no_acknowledged_entry() {
    // A server of its own: this test restarts it.
    let pg = Pg::own_server(25433, "/opt/warden-test/postgres-chaos");
    let (fx, token, _) = cluster(&pg);
    let (mut nodes, addrs) = nodes(&fx, 3);
    let addrs: Arc<Mutex<Vec<Option<String>>>> =
        Arc::new(Mutex::new(addrs.into_iter().map(Some).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let start = Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (addrs, stop, acked, token) = (
                Arc::clone(&addrs),
                Arc::clone(&stop),
                Arc::clone(&acked),
                token.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    // A load balancer: the next live node, round robin.
                    let addr = {
                        let a = addrs.lock().unwrap();
                        let live: Vec<String> = a.iter().flatten().cloned().collect();
                        live.get(i % live.len().max(1)).cloned()
                    };
                    i += 1;
                    let Some(addr) = addr else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let rid = format!("chaos-{c}-{i}");
                    match download(&addr, &token, &rid) {
                        Some((200, n)) => {
                            assert_eq!(n, MODEL_BYTES, "{rid}: a short download was served");
                            acked.lock().unwrap().push((Instant::now(), rid));
                        }
                        // Refused while the audit is unavailable (fail closed), or the
                        // node died under the request.
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let secs = chaos_secs();
    let mut restarted_pg = false;
    let mut kills = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(5));
        if !restarted_pg && start.elapsed() >= Duration::from_secs(secs / 2) {
            eprintln!("restarting PostgreSQL at {:?}", start.elapsed());
            pg.restart();
            restarted_pg = true;
            continue;
        }
        // Every other kill takes the sequencer (the lease holder), the rest a node at
        // random.
        let k = if kills % 2 == 0 {
            let holder = psql(
                &pg.url(),
                "SELECT holder FROM cluster_lease WHERE name = 'ledger.sequencer'",
            );
            let name = holder.split('/').next().unwrap_or_default().to_owned();
            nodes.iter().position(|n| n.name == name).unwrap_or(0)
        } else {
            usize::try_from(rnd() % 3).unwrap()
        };
        eprintln!(
            "SIGKILL {}{} at {:?}",
            nodes[k].name,
            if kills % 2 == 0 {
                " (the sequencer)"
            } else {
                ""
            },
            start.elapsed()
        );
        addrs.lock().unwrap()[k] = None;
        nodes[k].signal("-KILL");
        kills += 1;
        let addr = nodes[k].start(&fx);
        addrs.lock().unwrap()[k] = Some(addr);
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut times: Vec<Instant> = acked.iter().map(|(t, _)| *t).collect();
    times.sort_unstable();
    // The longest stretch without an acknowledged download, and where it began.
    let (longest, at) =
        std::iter::once((times.first().map_or(Duration::ZERO, |t| *t - start), start))
            .chain(times.windows(2).map(|w| (w[1] - w[0], w[0])))
            .max()
            .unwrap_or((Duration::ZERO, start));
    eprintln!(
        "{} downloads acknowledged in {secs} s, {kills} SIGKILLs, one PostgreSQL restart; longest stretch without one: {longest:?} (from {:?})",
        acked.len(),
        at - start
    );
    for n in &mut nodes {
        n.signal("-TERM");
    }
    assert!(!acked.is_empty());
    let entries = ledger(&fx, &nodes[0].data);
    let ids = access_ids(&entries);
    for (_, rid) in &acked {
        assert_eq!(
            ids.get(rid),
            Some(&1),
            "acknowledged download {rid} is missing or twice"
        );
    }
    let twice: Vec<&String> = ids
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(r, _)| r)
        .collect();
    assert!(twice.is_empty(), "written twice: {twice:?}");
    // No fork: one checkpoint record per size in the database's copy, and every node's
    // copy is the same bytes.
    let forks = psql(
        &pg.url(),
        "SELECT count(*) FROM ledger_chunks a JOIN ledger_chunks b ON a.stream = b.stream AND a.off < b.off AND a.off + length(a.data) > b.off",
    );
    assert_eq!(forks, "0", "overlapping chunks");
    let first = std::fs::read(nodes[0].data.join("logs/model_access.jsonl")).unwrap();
    for n in &nodes[1..] {
        let _ = ledger(&fx, &n.data);
        assert_eq!(
            std::fs::read(n.data.join("logs/model_access.jsonl")).unwrap(),
            first,
            "{} differs",
            n.name
        );
    }
    let seen: HashSet<&String> = acked.iter().map(|(_, r)| r).collect();
    assert_eq!(seen.len(), acked.len());
    assert!(
        longest <= Duration::from_secs(5),
        "the cluster served nothing for {longest:?} (failover goal 5 s)"
    );
}
