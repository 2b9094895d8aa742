//! The Hugging Face Hub endpoint against the real `huggingface_hub` client (installed
//! from PyPI by `scripts/install-hub-client`): downloads by branch-like alias, version
//! and commit id hash to the registered digests, repeated downloads come from the
//! client's cache, failures raise the client's own exceptions, a tampered blob is never
//! served, and every download is in the ledger with the client's user agent
//! (`hf_hub/<version>; python/...`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde_json::Value;
use std::process::{Child, Command};

mod cli;
mod hubclient;
mod serve;

use cli::Fx;
use hubclient::{Prepared, REPO, client, prepare};

fn start_serve(fx: &Fx) -> (Child, String) {
    let (child, addr, _) = serve::start(fx.cmd());
    (child, addr)
}

/// The ledger's entries (decrypted).
fn entries(fx: &Fx) -> Vec<Value> {
    fx.ok(&[
        "log",
        "show",
        "--json",
        "--auditor-key",
        fx.root.join("aud.key").to_str().unwrap(),
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

fn accesses(fx: &Fx) -> Vec<Value> {
    entries(fx)
        .into_iter()
        .filter(|e| e["kind"] == "model.access")
        .collect()
}

#[test]
fn huggingface_hub_downloads_through_warden() {
    let fx = Fx::new();
    fx.ok(&[
        "auditor",
        "keygen",
        "--out",
        fx.root.join("aud.key").to_str().unwrap(),
    ]);
    fx.ok(&[
        "init",
        "--dev",
        "--origin",
        "test.local/hub",
        "--data-dir",
        fx.data.to_str().unwrap(),
        "--auditor",
        fx.root.join("aud.key.pub").to_str().unwrap(),
    ]);
    fx.ok(&[
        "principal",
        "add",
        "eng",
        "--role",
        "ml-engineer",
        "--as",
        "admin",
    ]);
    let Prepared { eng, blob, altered } = prepare(&fx, &fx.data.join("blobs"));

    let (mut serve, addr) = start_serve(&fx);
    client(&fx, &addr, "download", &eng, "cache");
    let after_download = accesses(&fx).len();
    // 3 files x (4 single-file revisions + 2 snapshots), less what the cache already
    // held: the same version by another revision is not fetched again.
    assert!(after_download >= 6, "{after_download} downloads");
    client(&fx, &addr, "repeat", &eng, "cache");
    assert_eq!(
        accesses(&fx).len(),
        after_download,
        "repeated downloads come from the client's cache"
    );
    client(&fx, &addr, "failures", &eng, "cache-f");
    assert_eq!(
        accesses(&fx).len(),
        after_download,
        "refused requests are not accesses"
    );
    std::fs::write(&blob, &altered).unwrap();
    client(&fx, &addr, "tampered", &eng, "cache-t");
    let incidents: Vec<Value> = entries(&fx)
        .into_iter()
        .filter(|e| e["kind"] == "incident")
        .collect();
    assert!(
        !incidents.is_empty(),
        "the tampered blob raised an incident"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    assert!(serve.wait().unwrap().success());

    // Every download is in the ledger with the client's user agent, user and IP (the
    // tampered file's attempts too: each access is recorded before its bytes are
    // verified and sent, and each failed verification is an incident).
    let acc = accesses(&fx);
    assert!(acc.len() > after_download);
    assert!(incidents.len() >= acc.len() - after_download);
    for e in &acc {
        let ev = &e["event"];
        assert_eq!(ev["user"], "eng", "{e}");
        assert_eq!(ev["model"], REPO);
        assert_eq!(ev["ip"], "127.0.0.1");
        let ua = ev["user_agent"].as_str().unwrap_or_default();
        assert!(ua.contains("hf_hub/"), "the client's user agent: {ua:?}");
    }
    let denied = entries(&fx)
        .into_iter()
        .filter(|e| e["kind"] == "model.denied" && e["event"]["user"] == "outsider")
        .count();
    assert!(denied >= 1, "the policy denial is recorded");
    let st = fx.cmd().arg("verify").status().unwrap();
    assert!(st.success(), "the ledger verifies afterwards");
}
