//! The Hugging Face Hub client's side of the tests: a repository of three versions
//! (one revoked, one aliased), the spec `tests/hub/client.py` checks downloads against,
//! and running its steps with the real `huggingface_hub` client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::cli::Fx;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const REPO: &str = "org/fraud";

pub fn python() -> PathBuf {
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

pub fn write_version(dir: &Path, seed: u32) {
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

pub fn register(fx: &Fx, version: &str, seed: u32) -> Value {
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

pub fn token(fx: &Fx, principal: &str) -> String {
    fx.token(principal, "model:read,model:load")
}

/// Runs one step of `tests/hub/client.py` with the real client.
pub fn client(fx: &Fx, addr: &str, step: &str, token: &str, cache: &str) {
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

/// What [`prepare`] made: a token of `eng`, the 2.0 weights' blob file and the bytes to
/// alter it to.
pub struct Prepared {
    pub eng: String,
    pub blob: PathBuf,
    pub altered: Vec<u8>,
}

/// Registers the repository's versions as `eng` (which must exist) and adds `outsider`;
/// 3.0 is revoked, `stable` names 1.0. Blobs are kept under `blobs` (a directory, or a
/// bucket's directory on the test server), where the 2.0 weights are found to alter.
/// Writes `spec.json` for the client.
pub fn prepare(fx: &Fx, blobs: &Path) -> Prepared {
    fx.ok(&[
        "principal",
        "add",
        "outsider",
        "--role",
        "auditor",
        "--as",
        "admin",
    ]);
    let v1 = register(fx, "1.0", 1);
    // 3.0 is registered before 2.0, so 2.0 is the latest (`main`), and revoked.
    let v3 = register(fx, "3.0", 3);
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
    let v2 = register(fx, "2.0", 2);
    fx.ok(&["model", "alias", REPO, "stable", "1.0", "--as", "eng"]);
    let eng = token(fx, "eng");
    let outsider = token(fx, "outsider");

    // The 2.0 weights' blob, to alter later.
    let digest = v2["files"]["model.safetensors"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = blobs.join(format!("sha256/{}/{digest}", &digest[..2]));
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
    Prepared { eng, blob, altered }
}
