//! Cluster nodes for a test: a data directory on PostgreSQL and a bucket of the
//! loopback S3-compatible server, more nodes' data directories made from it, real
//! `warden serve` processes on them, and reading what each node's copy of the ledger
//! holds.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::cli::Fx;
use crate::cli::pg::Pg;
use crate::s3;
use crate::serve;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub const MODEL_BYTES: usize = 64 * 1024;

/// A fresh bucket on the loopback S3-compatible server (`scripts/s3`): its name, the
/// variables that reach it, and the directory the server keeps its objects in.
pub fn bucket() -> (String, Vec<(String, String)>, PathBuf) {
    let (endpoint, name, root) = s3::bucket("c");
    (name, s3_env(&endpoint), root)
}

/// The variables that reach the test server at `endpoint`.
pub fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// A data directory on the cluster (PostgreSQL for the registry and ledger, a bucket
/// for blobs), the model registered, a token that loads it, and the directory the
/// bucket's objects are kept in.
pub fn cluster(pg: &Pg) -> (Fx, String, PathBuf) {
    let mut fx = Fx::new();
    let (bucket, env, objects) = bucket();
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
    (fx, token, objects)
}

/// Another node's data directory: the same configuration and keys, its own copy of the
/// ledger (made from the database when it starts), the blobs shared.
pub fn node_dir(fx: &Fx, name: &str) -> PathBuf {
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

pub struct Node {
    pub name: String,
    pub data: PathBuf,
    pub child: Option<Child>,
    /// More arguments for `warden serve`.
    pub args: Vec<String>,
}

impl Node {
    pub fn cmd(&self, fx: &Fx) -> Command {
        let mut c = fx.cmd();
        c.env("WARDEN_DATA_DIR", &self.data)
            .env("WARDEN_NODE", &self.name);
        c
    }

    pub fn start(&mut self, fx: &Fx) -> String {
        let (child, addr, _) = serve::start_with(self.cmd(fx), &self.args);
        self.child = Some(child);
        addr
    }

    pub fn signal(&mut self, sig: &str) {
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

pub fn nodes(fx: &Fx, n: usize) -> (Vec<Node>, Vec<String>) {
    nodes_with(fx, n, &[])
}

/// `nodes`, each `warden serve` given `args` too.
pub fn nodes_with(fx: &Fx, n: usize, args: &[&str]) -> (Vec<Node>, Vec<String>) {
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
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        addrs.push(node.start(fx));
        nodes.push(node);
    }
    (nodes, addrs)
}

/// What a node answered to a request.
pub struct Answer {
    pub code: u16,
    /// The response head in lower case, followed by the body unless the status is 200.
    pub text: String,
    /// Bytes of body received.
    pub size: usize,
}

/// `GET http://{addr}{path}` with `token` (none when empty) and request id `rid`,
/// within `limit` seconds;
/// `None` when the connection failed or broke mid-transfer (as when the node is killed
/// while it streams: a client does not count that as served).
pub fn get(addr: &str, path: &str, token: &str, rid: &str, limit: u32) -> Option<Answer> {
    let body = std::env::temp_dir().join(format!(
        "warden-answer-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut curl = Command::new("curl");
    curl.args(["-s", "-D", "-", "-w", "\n%{http_code} %{size_download}"])
        .args(["--max-time", &limit.to_string(), "-o"])
        .arg(&body)
        .arg("-H")
        .arg(format!("x-request-id: {rid}"));
    if !token.is_empty() {
        curl.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let out = curl.arg(format!("http://{addr}{path}")).output().unwrap();
    let content = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&body);
    // curl's own failure (refused, reset, a body shorter than announced) is no answer;
    // an HTTP error status is one.
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, last) = text.trim_end().rsplit_once('\n')?;
    let (code, size) = last.trim().split_once(' ')?;
    let code: u16 = code.parse().ok()?;
    let mut text = head.to_ascii_lowercase();
    if code != 200 {
        text.push_str(&String::from_utf8_lossy(&content));
    }
    (code != 0).then(|| Answer {
        code,
        text,
        size: size.parse().unwrap_or(0),
    })
}

/// Downloads the model through `addr` with request id `rid`: the status and the bytes
/// received, or `None` as [`get`] says.
pub fn download(addr: &str, token: &str, rid: &str) -> Option<(u16, usize)> {
    get(addr, MODEL_PATH, token, rid, 15).map(|a| (a.code, a.size))
}

/// Where the model's file is served.
pub const MODEL_PATH: &str = "/v1/models/m/versions/1/files/m.bin";

/// The ledger as the node with data directory `data` sees it: verified, decrypted.
pub fn ledger(fx: &Fx, data: &Path) -> Vec<Value> {
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
pub fn access_ids(entries: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in entries.iter().filter(|e| e["kind"] == "model.access") {
        if let Some(r) = e["event"]["request_id"].as_str() {
            *m.entry(r.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

/// A `file://` sink's exported ECS lines' `event.original`: the ledger lines delivered.
pub fn exported(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["event"]["original"].as_str().map(str::to_owned))
        .filter(|l| l.starts_with("{\"v\""))
        .collect()
}
