//! `warden migrate` moves an embedded data directory (files, SQLite, local blobs) onto
//! PostgreSQL and a bucket with its history: the cluster's nodes serve the same models
//! to the same tokens, the ledger verifies under the same root key, and a checkpoint
//! kept from before the move is consistent with the ledger after it.
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

use cli::Fx;
use cli::pg::{Pg, psql};
use nodes::{MODEL_BYTES, access_ids, download, ledger, nodes};
use std::process::Command;

/// The ledger of the node at `data` verifies under the data directory's root key, with
/// the checkpoint `kept` from before the move.
fn verifies_with(fx: &Fx, data: &std::path::Path, kept: &std::path::Path) {
    let out = fx
        .cmd()
        .env("WARDEN_DATA_DIR", data)
        .args([
            "verify",
            "--root-pub",
            fx.data.join("keys/root.pub").to_str().unwrap(),
            "--trusted-checkpoint",
            kept.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `system.migrate` entries among `entries`.
fn moves(entries: &[serde_json::Value]) -> usize {
    entries
        .iter()
        .filter(|e| e["kind"] == "system.migrate")
        .count()
}

#[test]
fn an_embedded_data_directory_moves_onto_the_cluster_with_its_history() {
    let pg = Pg::new();
    let mut fx = Fx::new();
    let (bucket, env, objects) = nodes::bucket();
    fx.env = env;
    fx.ok(&["auditor", "keygen", "--out", "auditor.key"]);
    fx.ok(&["init", "--dev", "--auditor", "auditor.key.pub"]);
    fx.add_principal("eng", "ml-engineer", &[]);
    std::fs::write(fx.root.join("m.bin"), vec![7u8; MODEL_BYTES]).unwrap();
    fx.register("m", "1", "m.bin", "eng");
    let token = fx.token("eng", "model:read,model:load");

    // A while on one machine.
    let (mut child, addr, _) = serve::start(fx.cmd());
    for i in 0..20 {
        assert_eq!(
            download(&addr, &token, &format!("before-{i}")).unwrap().0,
            200
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    // A checkpoint an outside party kept from then.
    let kept = fx.root.join("kept.json");
    std::fs::write(&kept, fx.ok(&["log", "checkpoint", "--json"])).unwrap();
    let before = ledger(&fx, &fx.data).len();

    let url = format!("s3://{bucket}/blobs");
    let v = fx.json(&["migrate", "--to", &pg.url(), "--blobs", &url, "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() > before as u64, "{v}");
    assert_eq!(v["blobs"], 1, "{v}");
    assert_eq!(v["registry"]["principals"], 2, "admin and eng: {v}");
    assert!(v["registry"]["tokens"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        objects.join("blobs/sha256").is_dir(),
        "no blob in the bucket"
    );
    // Once moved, it is a cluster node: a second move is refused.
    let again = fx.run(&["migrate", "--to", &pg.url()]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already a cluster node"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Another data directory cannot move into the same database: refused before it
    // records or changes anything.
    let other = Fx::initialised();
    let entries_before = std::fs::read(other.data.join("logs/model_access.jsonl")).unwrap();
    let out = other.run(&["migrate", "--to", &pg.url()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a cluster's ledger"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(other.data.join("logs/model_access.jsonl")).unwrap(),
        entries_before
    );

    // Two nodes serve the model from the bucket to the token made before the move.
    let (nodes, addrs) = nodes(&fx, 2);
    for (n, addr) in addrs.iter().enumerate() {
        for i in 0..5 {
            let (code, size) = download(addr, &token, &format!("after-{n}-{i}")).unwrap();
            assert_eq!((code, size), (200, MODEL_BYTES), "node {n}");
        }
    }
    // The ledger verifies on the new node's copy under the same root key, with the
    // checkpoint kept from before the move, and holds both eras and the move itself.
    verifies_with(&fx, &nodes[1].data, &kept);
    let entries = ledger(&fx, &nodes[1].data);
    let ids = access_ids(&entries);
    assert!((0..20).all(|i| ids.get(&format!("before-{i}")) == Some(&1)));
    assert!((0..5).all(|i| ids.get(&format!("after-1-{i}")) == Some(&1)));
    assert_eq!(moves(&entries), 1);
}

#[test]
fn a_ledger_that_does_not_verify_is_not_moved() {
    let pg = Pg::new();
    let fx = Fx::initialised();
    fx.append_access("alice");
    // An entry altered on disk: the move must stop before anything is written.
    let log = fx.data.join("logs/model_access.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let out = fx.run(&["migrate", "--to", &pg.url()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was moved"), "{err}");
    assert!(
        !std::fs::read_to_string(fx.data.join("warden.toml"))
            .unwrap()
            .contains("backend"),
        "the configuration was changed"
    );
}

/// A move stopped half-way is carried on by running it again: the first run stops
/// after copying the registry (a node of the new cluster was started meanwhile and
/// holds the sequencer lease), the second moves the ledger, and a third, as after a
/// crash between the import and rewriting `warden.toml`, finds the database holding a
/// prefix of the ledger (the files gained the third run's own entry) and imports the
/// rest. Before, every run after the first was refused: the database was not empty.
#[test]
fn an_interrupted_move_carries_on_when_run_again() {
    let pg = Pg::new();
    let fx = Fx::initialised();
    for i in 0..5 {
        fx.append_access(&format!("user-{i}"));
    }
    let kept = fx.root.join("kept.json");
    std::fs::write(&kept, fx.ok(&["log", "checkpoint", "--json"])).unwrap();
    let config = std::fs::read_to_string(fx.data.join("warden.toml")).unwrap();
    // The cluster's tables exist once anything connected; a node holds the lease.
    let probe = fx.run(&["migrate", "--to", &pg.url(), "--json"]);
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // (that run moved everything: start again from a database a first run left
    // half-filled.)
    std::fs::write(fx.data.join("warden.toml"), &config).unwrap();
    psql(&pg.url(), "DELETE FROM ledger_chunks");
    psql(
        &pg.url(),
        "UPDATE cluster_lease SET holder = 'n9/1/0000', expires_at = clock_timestamp() + interval '60 seconds' WHERE name = 'ledger.sequencer'",
    );
    let out = fx.run(&["migrate", "--to", &pg.url()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds the sequencer lease"), "{err}");
    assert!(err.contains("run the same `warden migrate` again"), "{err}");
    assert_ne!(psql(&pg.url(), "SELECT count(*) FROM principals"), "0");
    assert_eq!(psql(&pg.url(), "SELECT count(*) FROM ledger_chunks"), "0");
    assert!(
        !std::fs::read_to_string(fx.data.join("warden.toml"))
            .unwrap()
            .contains("backend")
    );

    // The node is stopped: the move carries on, the registry left as it was copied.
    psql(&pg.url(), "DELETE FROM cluster_lease");
    let v = fx.json(&["migrate", "--to", &pg.url(), "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["registry"],
        serde_json::json!({}),
        "not copied twice: {v}"
    );
    let imported = v["entries"].as_u64().unwrap();

    // A crash before `warden.toml` named the cluster: run again.
    std::fs::write(fx.data.join("warden.toml"), &config).unwrap();
    let out = fx.run(&["migrate", "--to", &pg.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the database holds the first {imported} entries")),
        "{err}"
    );

    let (nodes, _) = nodes(&fx, 1);
    verifies_with(&fx, &nodes[0].data, &kept);
    let entries = ledger(&fx, &nodes[0].data);
    for i in 0..5 {
        let user = format!("user-{i}");
        assert_eq!(
            entries
                .iter()
                .filter(|e| e["kind"] == "model.access" && e["event"]["user"] == user.as_str())
                .count(),
            1,
            "{user}"
        );
    }
    // Every run recorded itself: the probe, the refused one, and the two that moved.
    assert_eq!(moves(&entries), 4);
}

/// A ledger sealed into segments moves as the one stream its segments make: the
/// cluster's copy verifies with a checkpoint kept from before, and the segments are
/// set aside, not deleted. Before, the move was refused.
#[test]
fn a_ledger_sealed_into_segments_moves_as_one_stream() {
    let pg = Pg::new();
    let fx = Fx::initialised();
    let cfg = fx.data.join("warden.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("max_bytes = 1073741824", "max_bytes = 4096"),
    )
    .unwrap();
    for i in 0..12 {
        fx.append_access(&format!("user-{i}"));
    }
    let log = fx.data.join("logs/model_access.jsonl");
    let sealed = warden_store::segments::load_index(&log).unwrap().len();
    assert!(sealed >= 2, "{sealed} sealed segments");
    let kept = fx.root.join("kept.json");
    std::fs::write(&kept, fx.ok(&["log", "checkpoint", "--json"])).unwrap();
    let before = ledger(&fx, &fx.data);

    let v = fx.json(&["migrate", "--to", &pg.url(), "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() > before.len() as u64, "{v}");
    let aside = fx.data.join("logs/before-migrate");
    let kept_files = std::fs::read_dir(&aside).unwrap().count();
    assert!(kept_files >= sealed + 3, "{kept_files} files set aside");

    let (nodes, _) = nodes(&fx, 1);
    verifies_with(&fx, &nodes[0].data, &kept);
    let after = ledger(&fx, &nodes[0].data);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the history, entry for entry"
    );
}

/// Writes ten days of a ledger into `fx`'s data directory (in place of the one `init`
/// began), one access every six hours
/// by an injected clock that ends now, sealed by day, then lets retention remove what
/// is older than three days. Returns the index of the first entry left.
fn ten_days_then_retention(fx: &Fx) -> u64 {
    use std::sync::Arc;
    use warden_store::ledger::{Ledger, LedgerOptions, ManualClock, SystemEntropy};
    const HOUR: u64 = 3_600_000_000;
    let d = warden_store::config::DataDir::new(&fx.data);
    let cfg = d.read_config().unwrap();
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    // `init` began the ledger today; this one begins ten days ago instead.
    std::fs::remove_dir_all(fx.data.join("logs")).unwrap();
    let clock = ManualClock::new(now - 240 * HOUR);
    let opts = LedgerOptions {
        origin: cfg.origin.clone(),
        alg: cfg.validate().unwrap(),
        rotation_interval: std::time::Duration::from_secs(cfg.rotation_interval_secs),
        strict: false,
        recipients: d.read_auditors().unwrap(),
        clock: Arc::new(clock.clone()),
        entropy: Arc::new(SystemEntropy),
        segments: warden_store::segments::SegmentPolicy::default(),
    };
    let root = warden_store::keys::unlock_root(&d.root_key(), b"").unwrap();
    let ledger = Ledger::open(&d.log(&cfg), root, opts).unwrap();
    for i in 0..39 {
        let ev = warden_core::entry::Event {
            user: Some(format!("past-{i}")),
            action: Some("load".into()),
            decision: Some("allow".into()),
            ..Default::default()
        };
        ledger.append("model.access", &ev).unwrap();
        clock.advance(6 * HOUR);
    }
    let vcfg = warden_core::verify::VerifyConfig {
        root: warden_store::keys::read_root_public(&d.root_pub()).unwrap(),
        max_epoch_micros: cfg.rotation_interval_secs * 1_000_000,
        auditor: None,
    };
    let (plan, receipt) = ledger
        .apply_retention(3 * 24 * 3600, None, vcfg, false)
        .unwrap()
        .expect("segments older than three days");
    assert!(receipt.is_some());
    ledger.close();
    plan.end
}

/// A ledger whose oldest segments retention removed moves with the record of that
/// removal: the cluster's ledger starts where the embedded one did, every node's copy
/// verifies from the removal's anchor with a checkpoint kept from before the move, and
/// the nodes go on appending to it. Before, such a ledger was refused.
#[test]
fn a_ledger_trimmed_by_retention_moves_with_the_record_of_its_removal() {
    let pg = Pg::new();
    let fx = Fx::initialised();
    let removed = ten_days_then_retention(&fx);
    assert!(removed > 0);
    fx.append_access("today");
    let log = fx.data.join("logs/model_access.jsonl");
    let view = warden_store::segments::LogView::open(&log).unwrap();
    assert_eq!(view.first_index(), removed);
    let kept = fx.root.join("kept.json");
    std::fs::write(&kept, fx.ok(&["log", "checkpoint", "--json"])).unwrap();
    let before = ledger(&fx, &fx.data);
    assert_eq!(before[0]["index"], removed, "{}", before[0]);

    // It cannot be published as tlog-tiles (every entry from the first): refused
    // before anything is moved or recorded.
    let out = fx.run(&["migrate", "--to", &pg.url(), "--publish-log", "s3://b/log"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be published"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ledger(&fx, &fx.data), before);

    let v = fx.json(&["migrate", "--to", &pg.url(), "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["removed_by_retention"], removed, "{v}");

    // Two nodes: the first's copy is rebuilt from the database, the second starts
    // with none. Both verify with the kept checkpoint and hold the history.
    let (nodes, _) = nodes(&fx, 2);
    for n in &nodes {
        verifies_with(&fx, &n.data, &kept);
        let after = ledger(&fx, &n.data);
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "the history, entry for entry, on {}",
            n.name
        );
        assert_eq!(moves(&after), 1);
        assert!(
            warden_store::segments::load_index(&n.data.join("logs/model_access.jsonl"))
                .unwrap()
                .iter()
                .all(|r| r.removed.is_some()),
            "the copy's index names the removed segments only"
        );
    }
    // And the cluster writes on from there: an entry appended through a node lands
    // after the history, and every copy still verifies.
    let out = nodes[1]
        .cmd(&fx)
        .args([
            "log",
            "append",
            "--kind",
            "model.access",
            "--event",
            r#"{"user":"later"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in &nodes {
        let after = ledger(&fx, &n.data);
        assert!(
            after.iter().any(|e| e.to_string().contains("\"later\"")),
            "the new entry on {}",
            n.name
        );
        verifies_with(&fx, &n.data, &kept);
    }
}
