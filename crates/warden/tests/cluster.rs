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
#[path = "../../warden-registry/tests/common/s3.rs"]
mod s3;
mod serve;

use cli::Fx;
use cli::pg::{Pg, psql};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL_BYTES: usize = 64 * 1024;

/// A fresh bucket on the loopback S3-compatible server (`scripts/s3`), and the
/// variables that reach it.
fn bucket() -> (String, Vec<(String, String)>) {
    let (endpoint, name, _) = s3::bucket("c");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
    ];
    (
        name,
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// A data directory on the cluster (PostgreSQL for the registry and ledger, a bucket
/// for blobs), the model registered, and a token that loads it.
fn cluster(pg: &Pg) -> (Fx, String) {
    let mut fx = Fx::new();
    let (bucket, env) = bucket();
    fx.env = env;
    fx.ok(&["auditor", "keygen", "--out", "auditor.key"]);
    fx.ok(&[
        "init",
        "--dev",
        "--auditor",
        "auditor.key.pub",
        "--backend",
        &pg.url(),
        "--blobs",
        &format!("s3://{bucket}/blobs"),
    ]);
    let toml = std::fs::read_to_string(fx.data.join("warden.toml")).unwrap();
    assert!(
        toml.contains(&format!("backend = \"{}\"", pg.url())),
        "{toml}"
    );
    fx.add_principal("eng", "ml-engineer", &[]);
    std::fs::write(fx.root.join("m.bin"), vec![7u8; MODEL_BYTES]).unwrap();
    fx.register("m", "1", "m.bin", "eng");
    assert!(
        !fx.data.join("blobs").exists(),
        "a blob was kept in the data directory instead of the bucket"
    );
    let token = fx.token("eng", "model:read,model:load");
    (fx, token)
}

/// Another node's data directory: the same configuration and keys, its own copy of the
/// ledger (made from the database when it starts), the blobs shared.
fn node_dir(fx: &Fx, name: &str) -> PathBuf {
    let d = fx.root.join(name);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&fx.data)
            .arg(&d)
            .status()
            .unwrap()
            .success()
    );
    for sub in ["logs", "run", "blobs"] {
        let _ = std::fs::remove_dir_all(d.join(sub));
    }
    std::os::unix::fs::symlink(fx.data.join("blobs"), d.join("blobs")).unwrap();
    d
}

struct Node {
    name: String,
    data: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn cmd(&self, fx: &Fx) -> Command {
        let mut c = fx.cmd();
        c.env("WARDEN_DATA_DIR", &self.data)
            .env("WARDEN_NODE", &self.name);
        c
    }

    fn start(&mut self, fx: &Fx) -> String {
        let (child, addr, _) = serve::start(self.cmd(fx));
        self.child = Some(child);
        addr
    }

    fn signal(&mut self, sig: &str) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("-KILL");
    }
}

fn nodes(fx: &Fx, n: usize) -> (Vec<Node>, Vec<String>) {
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for i in 1..=n {
        let name = format!("n{i}");
        let data = if i == 1 {
            fx.data.clone()
        } else {
            node_dir(fx, &name)
        };
        let mut node = Node {
            name,
            data,
            child: None,
        };
        addrs.push(node.start(fx));
        nodes.push(node);
    }
    (nodes, addrs)
}

/// Downloads the model through `addr` with request id `rid`: the status, and the bytes
/// received (`None` when the connection failed or broke mid-transfer, as when the node
/// is killed while it streams: a client does not count that as served).
fn download(addr: &str, token: &str, rid: &str) -> Option<(u16, usize)> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "--max-time",
            "15",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("-H")
        .arg(format!("x-request-id: {rid}"))
        .arg(format!("http://{addr}/v1/models/m/versions/1/files/m.bin"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, size) = text.trim().split_once(' ')?;
    // curl's own failure (refused, reset, a body shorter than announced) is no answer;
    // an HTTP error status is one.
    if !out.status.success() {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    (code != 0).then(|| (code, size.parse().unwrap_or(0)))
}

/// The ledger as the node with data directory `data` sees it: verified, decrypted.
fn ledger(fx: &Fx, data: &Path) -> Vec<Value> {
    let mut verify = fx.cmd();
    verify
        .env("WARDEN_DATA_DIR", data)
        .args(["verify", "--auditor-key", "auditor.key"]);
    let out = verify.output().unwrap();
    assert!(
        out.status.success(),
        "verify on {}: {}",
        data.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut show = fx.cmd();
    show.env("WARDEN_DATA_DIR", data).args([
        "log",
        "show",
        "--auditor-key",
        "auditor.key",
        "--json",
    ]);
    let out = show.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// How often each request id occurs among the ledger's model accesses.
fn access_ids(entries: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in entries.iter().filter(|e| e["kind"] == "model.access") {
        if let Some(r) = e["event"]["request_id"].as_str() {
            *m.entry(r.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn three_nodes_share_one_registry_and_one_ledger() {
    let pg = Pg::new();
    let (fx, token) = cluster(&pg);
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
    let pg = Pg::own_server(55433, "/opt/warden-test/postgres-chaos");
    let (fx, token) = cluster(&pg);
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
