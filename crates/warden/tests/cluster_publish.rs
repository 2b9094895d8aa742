//! A cluster publishes its ledger to the bucket as C2SP tlog-tiles, and `warden verify
//! --log s3://…` verifies it from there: every entry, every checkpoint, every hash
//! tile. Publishing runs on one node at a time and moves on when that node dies; an
//! altered bundle or tile in the bucket is found and named.
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
use nodes::{cluster, download, exported, ledger, nodes};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The published size, read from the bucket's `checkpoint` (0 before the first).
fn published_size(objects: &Path) -> u64 {
    std::fs::read_to_string(objects.join("ledger/checkpoint"))
        .ok()
        .and_then(|t| t.lines().nth(1).and_then(|l| l.parse().ok()))
        .unwrap_or(0)
}

/// Waits until the bucket's checkpoint covers at least `size` entries.
fn published(objects: &Path, size: u64) -> Duration {
    let t = Instant::now();
    while published_size(objects) < size {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the bucket's checkpoint stayed at {} (want {size})",
            published_size(objects)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

/// `warden verify --log URL --json`: exit code and report.
fn verify(fx: &cli::Fx, log: &str, extra: &[&str]) -> (i32, Value) {
    let root_pub = fx.data.join("keys/root.pub");
    let mut args = vec![
        "verify",
        "--log",
        log,
        "--root-pub",
        root_pub.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = fx.cmd().args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "verify {log}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn downloads(addr: &str, token: &str, n: usize, tag: &str) {
    for i in 0..n {
        let (code, _) = download(addr, token, &format!("{tag}-{i}")).expect("an answer");
        assert_eq!(code, 200, "download {tag}-{i} from {addr}");
    }
}

#[test]
fn the_cluster_publishes_tlog_tiles_that_verify_from_the_bucket() {
    let pg = Pg::new();
    let (fx, token, objects) = cluster(&pg);
    // `publish_log` beside `blobs`, in the same bucket.
    let toml_path = fx.data.join("warden.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    let blobs = toml
        .lines()
        .find_map(|l| l.strip_prefix("blobs = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("blobs in warden.toml")
        .to_owned();
    let url = blobs.replace("/blobs", "/ledger");
    std::fs::write(&toml_path, format!("publish_log = \"{url}\"\n{toml}")).unwrap();
    let (mut nodes, addrs) = nodes(&fx, 2);

    // Enough entries for full bundles and tiles as well as partial ones.
    downloads(&addrs[0], &token, 300, "a");
    downloads(&addrs[1], &token, 300, "b");
    let size = ledger(&fx, &nodes[0].data).len() as u64;
    let took = published(&objects, size);
    eprintln!(
        "published {size} entries; the bucket's checkpoint caught up {took:?} after the last download"
    );
    let (code, v) = verify(&fx, &url, &["--auditor-key", "auditor.key"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    let entries = v["entries"].as_u64().unwrap();
    assert!(
        entries >= size,
        "{entries} entries verified, {size} written"
    );
    assert_eq!(v["decrypted"].as_u64(), Some(entries), "{v}");
    let tiles = v["tiles"]["checked"].as_u64().unwrap();
    assert!(tiles > entries / 256, "{tiles} tiles checked: {v}");
    assert_eq!(v["tiles"]["count"], 0, "{v}");
    // A clean run saves its state; a later run resumes from it (below).
    let saved = fx.root.join("verified.json");
    let (code, v) = verify(&fx, &url, &["--save-checkpoint", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    let saved_size =
        serde_json::from_slice::<Value>(&std::fs::read(&saved).unwrap()).unwrap()["size"]
            .as_u64()
            .unwrap();
    assert!(saved_size >= size, "saved at {saved_size}");
    // The bucket's directory is a tlog-tiles tree a plain directory reader verifies too.
    let dir = objects.join("ledger");
    let (code, v) = verify(&fx, dir.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{v}");
    assert!(dir.join("tile/entries/000").is_file());
    assert!(dir.join("tile/0/000").is_file());

    // The publishing node dies: another takes over and the bucket keeps up.
    let holder = psql(
        &pg.url(),
        "SELECT holder FROM cluster_lease WHERE name = 'ledger.publish'",
    );
    let (dead, live) = if holder.starts_with("n1/") {
        (0, 1)
    } else {
        (1, 0)
    };
    nodes[dead].signal("-KILL");
    downloads(&addrs[live], &token, 50, "c");
    let size = ledger(&fx, &nodes[live].data).len() as u64;
    let took = published(&objects, size);
    eprintln!("after the publishing node's SIGKILL the bucket reached {size} entries in {took:?}");
    let (code, v) = verify(&fx, &url, &[]);
    assert_eq!(code, 0, "{v}");
    let total = v["entries"].as_u64().unwrap();
    let all_tiles = v["tiles"]["checked"].as_u64().unwrap();
    // Resumed from the saved state, a run reads only the entries published since, and
    // checks every tile they reach.
    let since = ["--since-checkpoint", saved.to_str().unwrap()];
    let (code, v) = verify(&fx, &url, &since);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["resumed_from"].as_u64(), Some(saved_size), "{v}");
    assert_eq!(v["verified_size"].as_u64(), Some(total), "{v}");
    let reached = v["tiles"]["checked"].as_u64().unwrap();
    assert!(
        reached > 0 && reached < all_tiles,
        "{v}: the tiles the new entries reach, of {all_tiles}"
    );
    assert_eq!(v["tiles"]["count"], 0, "{v}");

    // Inclusion proofs from the bucket's tiles are the proofs the node prints from its
    // ledger, once both stand at the same checkpoint: in the first bundle, on a
    // bundle's edge, in the partial bundle, the last entry.
    for index in [0, 255, 256, 300, size - 1] {
        let t = Instant::now();
        loop {
            let from_bucket = prove(fx.cmd(), index, Some(&url));
            let from_node = prove(nodes[live].cmd(&fx), index, None);
            let cp = |p: &str| p.lines().skip_while(|l| !l.is_empty()).collect::<String>();
            if cp(&from_bucket) == cp(&from_node) {
                assert_eq!(from_bucket, from_node, "proof of {index}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the bucket's checkpoint never matched the node's:\n{from_bucket}\n{from_node}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let out = fx
        .cmd()
        .args(["log", "prove", "--index", &size.to_string(), "--log", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not covered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A SIEM host that is not a node (its data directory an empty directory) exports
    // the ledger from the bucket: the same lines, entry for entry, as the node exports
    // from its own copy; a second run copies and delivers only what is new.
    let host = fx.root.join("siem-host");
    std::fs::create_dir(&host).unwrap();
    let from_bucket = fx.root.join("from-bucket.ecs");
    let from_node = fx.root.join("from-node.ecs");
    let export = |mut c: std::process::Command, log: Option<&str>, to: &Path| -> Value {
        c.args([
            "export",
            "--to",
            &format!("file://{}", to.display()),
            "--format",
            "ecs",
            "--json",
        ]);
        if let Some(l) = log {
            c.args(["--log", l]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "export {log:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let on_host = || {
        let mut c = fx.cmd();
        c.env("WARDEN_DATA_DIR", &host);
        c
    };
    let v = export(on_host(), Some(&url), &from_bucket);
    let first = v["delivered"].as_u64().unwrap();
    assert!(first >= size, "{v}: {size} entries published");
    export(nodes[live].cmd(&fx), None, &from_node);
    let (a, b) = (exported(&from_bucket), exported(&from_node));
    assert_eq!(a.len() as u64, first);
    assert_eq!(
        a[..],
        b[..a.len()],
        "the bucket's export differs from the node's"
    );
    downloads(&addrs[live], &token, 20, "d");
    let size = ledger(&fx, &nodes[live].data).len() as u64;
    published(&objects, size);
    let v = export(on_host(), Some(&url), &from_bucket);
    let again = v["delivered"].as_u64().unwrap();
    assert!(again >= 20 && again < first, "{v}: only the new entries");
    export(nodes[live].cmd(&fx), None, &from_node);
    let (a, b) = (exported(&from_bucket), exported(&from_node));
    assert_eq!(a.len() as u64, first + again);
    assert_eq!(a[..], b[..a.len()]);

    // An altered entry in a full bundle is named, and so is its level-0 tile's
    // mismatch once the tile is altered instead.
    let bundle = dir.join("tile/entries/000");
    let original = std::fs::read(&bundle).unwrap();
    let mut altered = original.clone();
    let at = 10; // inside the first entry
    altered[at] ^= 0x01;
    std::fs::write(&bundle, &altered).unwrap();
    let (code, v) = verify(&fx, &url, &[]);
    assert_ne!(code, 0, "an altered bundle verified: {v}");
    assert_eq!(v["ok"], false);
    assert!(
        v["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{v}"
    );
    assert!(
        v["tiles"]["findings"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("tile/0/000"))),
        "{v}"
    );
    // A resumed run does not read what the saved run verified (its cost is the new
    // entries'), so it does not see this bundle; it does see one it has not verified.
    let (code, v) = verify(&fx, &url, &since);
    assert_eq!(code, 0, "{v}");
    std::fs::write(&bundle, &original).unwrap();
    let now =
        serde_json::from_slice::<Value>(&std::fs::read(dir.join("warden/state.json")).unwrap())
            .unwrap()["size"]
            .as_u64()
            .unwrap();
    assert!(
        !now.is_multiple_of(256) && now > saved_size,
        "{now} published"
    );
    let last = dir.join(format!("tile/entries/{:03}.p/{}", now / 256, now % 256));
    let kept = std::fs::read(&last).unwrap();
    let mut altered = kept.clone();
    let n = altered.len();
    altered[n - 5] ^= 0x01;
    std::fs::write(&last, &altered).unwrap();
    let (code, v) = verify(&fx, &url, &since);
    assert_ne!(code, 0, "an altered new entry passed a resumed run: {v}");
    assert!(
        v["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{v}"
    );
    std::fs::write(&last, &kept).unwrap();
    let tile = dir.join("tile/0/001");
    let mut t = std::fs::read(&tile).unwrap();
    t[5] ^= 0x80;
    std::fs::write(&tile, &t).unwrap();
    let (code, v) = verify(&fx, &url, &[]);
    assert_ne!(code, 0, "an altered tile verified: {v}");
    assert_eq!(v["findings"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["tiles"]["count"], 1, "{v}");
    assert!(
        v["tiles"]["findings"][0]
            .as_str()
            .unwrap()
            .contains("tile/0/001"),
        "{v}"
    );
    // A proof that reads the altered tile is refused; one that does not still stands.
    let out = fx
        .cmd()
        .args(["log", "prove", "--index", "300", "--log", &url])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a proof through an altered tile");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not prove entry 300"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(prove(fx.cmd(), 5, Some(&url)).starts_with("c2sp.org/tlog-proof@v1"));
}

/// `warden log prove --index INDEX [--log URL]`, as `cmd` runs it: the proof's text.
fn prove(mut c: std::process::Command, index: u64, log: Option<&str>) -> String {
    c.args(["log", "prove", "--index", &index.to_string()]);
    if let Some(l) = log {
        c.args(["--log", l]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "prove {index} {log:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
