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

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

mod cli;
mod serve;

use cli::Fx;

const REPO: &str = "org/fraud";

fn python() -> PathBuf {
    let venv =
        std::env::var("WARDEN_HF_VENV").unwrap_or_else(|_| "/opt/warden-test/hf-venv".into());
    let p = Path::new(&venv).join("bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-hub-client (scripts/test does)",
        p.display()
    );
    p
}

fn write_version(dir: &Path, seed: u32) {
    std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!("{{\"model_type\":\"fraud\",\"seed\":{seed}}}\n"),
    )
    .unwrap();
    let weights: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8)
        .collect();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    std::fs::write(
        dir.join("tokenizer/vocab.txt"),
        format!("[PAD]\n[UNK]\nseed{seed}\n"),
    )
    .unwrap();
}

fn register(fx: &Fx, version: &str, seed: u32) -> Value {
    let dir = fx.root.join(format!("v{version}"));
    write_version(&dir, seed);
    let reg: Value = serde_json::from_str(&fx.ok(&[
        "model",
        "register",
        REPO,
        "--version",
        version,
        dir.to_str().unwrap(),
        "--as",
        "eng",
        "--json",
    ]))
    .unwrap();
    let show: Value = serde_json::from_str(&fx.ok(&[
        "model",
        "show",
        &format!("{REPO}@{version}"),
        "--as",
        "eng",
        "--json",
    ]))
    .unwrap();
    let mut files = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for f in reg["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap().to_owned();
        files.insert(name.clone(), f["digest"].clone());
        sizes.insert(name, f["size"].clone());
    }
    json!({"commit": show["commit"], "files": files, "sizes": sizes})
}

fn token(fx: &Fx, principal: &str) -> String {
    fx.token(principal, "model:read,model:load")
}

fn start_serve(fx: &Fx) -> (Child, String) {
    let (child, addr, _) = serve::start(fx.cmd());
    (child, addr)
}

/// Runs one step of `tests/hub/client.py` with the real client.
fn client(fx: &Fx, addr: &str, step: &str, token: &str, cache: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hub/client.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(step)
        .arg(fx.root.join("spec.json"))
        .env("HF_ENDPOINT", format!("http://{addr}"))
        .env("HF_TOKEN", token)
        .env("HF_HUB_CACHE", fx.root.join(cache))
        .env("HF_HOME", fx.root.join("hf-home"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client step {step} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    fx.ok(&[
        "principal",
        "add",
        "outsider",
        "--role",
        "auditor",
        "--as",
        "admin",
    ]);
    let v1 = register(&fx, "1.0", 1);
    // 3.0 is registered before 2.0, so 2.0 is the latest (`main`), and revoked.
    let v3 = register(&fx, "3.0", 3);
    fx.ok(&[
        "model",
        "revoke",
        &format!("{REPO}@3.0"),
        "--reason",
        "leaked",
        "--as",
        "admin",
        "--mfa",
    ]);
    let v2 = register(&fx, "2.0", 2);
    fx.ok(&["model", "alias", REPO, "stable", "1.0", "--as", "eng"]);
    let eng = token(&fx, "eng");
    let outsider = token(&fx, "outsider");

    // The 2.0 weights' blob, to alter later.
    let digest = v2["files"]["model.safetensors"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = fx
        .data
        .join(format!("blobs/sha256/{}/{digest}", &digest[..2]));
    assert!(blob.exists(), "{}", blob.display());
    let mut altered = std::fs::read(&blob).unwrap();
    altered[1000] ^= 1;
    let altered_digest = warden_core::hex::encode(&warden_core::merkle::sha256(&altered));
    std::fs::write(
        fx.root.join("spec.json"),
        serde_json::to_vec(&json!({
            "repo": REPO,
            "versions": {"1.0": v1, "2.0": v2, "3.0": v3},
            "outsider_token": outsider,
            "tampered_file": "model.safetensors",
            "tampered_digest_of_altered_bytes": altered_digest,
        }))
        .unwrap(),
    )
    .unwrap();

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
