//! What a new user meets following the README, and the remote registration path:
//! `model sign`, `verify --log` with `WARDEN_DATA_DIR` exported, grants on models that
//! exist, readable expiries, an unset passphrase named as such, the published
//! provenance schema, and attestations only from verified training records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cli;

use cli::Fx;
use std::path::Path;

/// An initialised data directory with an engineer, `eng`, and a small file `w.bin`.
fn with_engineer() -> Fx {
    let fx = Fx::initialised();
    fx.add_principal("eng", "ml-engineer", &[]);
    std::fs::write(fx.path("w.bin"), b"weights").unwrap();
    fx
}

/// Runs `args`, which must fail with exit status 2; returns standard error.
fn refused(fx: &Fx, args: &[&str]) -> String {
    let o = fx.run(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    err
}

/// `warden model sign` writes the body of `POST /v1/models/NAME/versions/VERSION`: a
/// manifest of the files signed with the caller's key, verifiable against its public key,
/// without touching the registry or the ledger.
#[test]
fn model_sign_writes_a_verifiable_registration_body_and_records_nothing() {
    let fx = with_engineer();
    let count = || fx.ok(&["log", "show", "--json"]).lines().count();
    let before = count();
    let body = fx.json(&[
        "model",
        "sign",
        "churn",
        "--version",
        "2.0",
        "w.bin",
        "--as",
        "eng",
    ]);
    assert_eq!(count(), before, "signing records nothing");
    let env = warden_registry::manifest::parse_envelope(
        serde_json::to_string(&body["envelope"]).unwrap().as_bytes(),
    )
    .unwrap();
    let (_, key) =
        warden_registry::keyfile::read_pub(&fx.data.join("keys/principals/eng.key.pub")).unwrap();
    let m = warden_registry::manifest::verify(&env, "eng", &key, "churn", "2.0").unwrap();
    assert_eq!(m.resources().len(), 1);
    assert_eq!(
        m.resources()[0].digest,
        warden_core::hex::encode(&warden_core::merkle::sha256(b"weights"))
    );
    assert!(
        warden_registry::manifest::verify(&env, "eng", &key, "churn", "3.0").is_err(),
        "the signature binds the version"
    );
    refused(
        &fx,
        &[
            "model",
            "sign",
            "churn",
            "--version",
            "../x",
            "w.bin",
            "--as",
            "eng",
        ],
    );
}

/// `verify --log … --root-pub …` was refused after `export WARDEN_DATA_DIR`, a grant on
/// a misspelt model passed silently, expiries were printed as Unix seconds, and an
/// unset passphrase was reported as a wrong one.
#[test]
fn readme_newcomer_verify_log_with_data_dir_exported_grant_typo_and_readable_expiry() {
    let fx = Fx::initialised();
    // The helper exports WARDEN_DATA_DIR; --log names the ledger and wins.
    fx.ok(&[
        "verify",
        "--log",
        "data/logs/model_access.jsonl",
        "--root-pub",
        "data/keys/root.pub",
    ]);
    fx.add_principal("svc", "service", &["--service"]);
    let grant = |model: &str| {
        vec![
            "principal",
            "grant",
            "svc",
            "--model",
            model,
            "--actions",
            "load",
            "--expires",
            "1h",
            "--as",
            "admin",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let typo = grant("fraud-detectr");
    let err = refused(&fx, &typo.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("no model named \"fraud-detectr\""), "{err}");
    let all = grant("*");
    fx.ok(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let out = fx.ok(&[
        "token",
        "create",
        "--principal",
        "svc",
        "--scopes",
        "model:load",
        "--expires",
        "1h",
        "--as",
        "admin",
    ]);
    let first = out.lines().next().unwrap();
    let when = first
        .split("expires ")
        .nth(1)
        .unwrap()
        .trim_end_matches("; shown once:");
    assert!(
        when.len() == 20 && when.ends_with('Z') && when.as_bytes()[10] == b'T',
        "{first}"
    );
    // A production data directory used without WARDEN_PASSPHRASE says so.
    let prod = fx.path("prod");
    let init = fx
        .cmd()
        .env("WARDEN_DATA_DIR", &prod)
        .env("WARDEN_PASSPHRASE", "correct horse battery")
        .args(["init", "--auditor", "auditor.key.pub"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let o = fx
        .cmd()
        .env("WARDEN_DATA_DIR", &prod)
        .args(["principal", "list", "--as", "admin"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("WARDEN_PASSPHRASE is not set"), "{err}");
    assert!(!err.contains("wrong passphrase"), "{err}");
}

/// Plain provenance JSON may not carry `attestation`: that field is filled in from a
/// training record the registry verified, and would otherwise be a claim in the
/// trainer's name.
#[test]
fn plain_provenance_cannot_claim_a_training_attestation() {
    let fx = with_engineer();
    std::fs::write(
        fx.path("prov.json"),
        r#"{"code_commit": "abc123", "attestation": {"signer": "trainer", "digest": "00", "root": "00"}}"#,
    )
    .unwrap();
    for cmd in ["register", "sign"] {
        let err = refused(
            &fx,
            &[
                "model",
                cmd,
                "churn",
                "--version",
                "1.0",
                "w.bin",
                "--provenance",
                "prov.json",
                "--as",
                "eng",
            ],
        );
        assert!(
            err.contains("\"attestation\" is set from a verified training record"),
            "{cmd}: {err}"
        );
    }
    std::fs::write(fx.path("prov.json"), r#"{"code_commit": "abc123"}"#).unwrap();
    fx.ok(&[
        "model",
        "register",
        "churn",
        "--version",
        "1.0",
        "w.bin",
        "--provenance",
        "prov.json",
        "--as",
        "eng",
    ]);
}

/// The published provenance schema names exactly the fields a plain provenance file may
/// carry, and the published example registers.
#[test]
fn published_provenance_schema_and_example_match_what_register_accepts() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docs.join("provenance.schema.json")).unwrap())
            .unwrap();
    let documented: std::collections::BTreeSet<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let full = warden_registry::manifest::Provenance {
        datasets: vec![warden_registry::manifest::DatasetRef {
            uri: "u".into(),
            digest: Some("d".into()),
        }],
        code_commit: Some("c".into()),
        config_digest: Some("d".into()),
        environment: Some(serde_json::json!({})),
        parent_model: Some("m@1".into()),
        attestation: None,
    };
    let accepted: std::collections::BTreeSet<String> = serde_json::to_value(&full)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, accepted);
    let fx = with_engineer();
    let example = docs.join("provenance.example.json");
    fx.ok(&[
        "model",
        "register",
        "fraud-detector",
        "--version",
        "1.4.0",
        "w.bin",
        "--provenance",
        example.to_str().unwrap(),
        "--as",
        "eng",
    ]);
    // The commit id the Hub accepts as a revision is in the human output too.
    let json = fx.json(&[
        "model",
        "show",
        "fraud-detector@1.4.0",
        "--json",
        "--as",
        "eng",
    ]);
    let shown = fx.ok(&["model", "show", "fraud-detector@1.4.0", "--as", "eng"]);
    let commit = json["commit"].as_str().unwrap();
    assert!(shown.contains(&format!("commit {commit}")), "{shown}");
}
