//! The registry through the `warden` command, as an operator runs it: init, principals,
//! register, promote, load, tamper (exit 4), revoke (exit 3), and `warden verify` clean
//! over the ledger the whole workload wrote (acceptance 2 and 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};

fn warden(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", dir.join("d"))
        .env_remove("WARDEN_PASSPHRASE")
        .env_remove("WARDEN_USER")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = warden(dir, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn code(dir: &Path, args: &[&str]) -> (i32, String) {
    let o = warden(dir, args);
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn entries(dir: &Path) -> Vec<serde_json::Value> {
    ok(dir, &["log", "show", "--auditor-key", "aud.key", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn registry_workload_through_the_cli_with_exit_codes_and_a_clean_verify() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    ok(p, &["auditor", "keygen", "--out", "aud.key"]);
    ok(p, &["init", "--dev", "--auditor", "aud.key.pub"]);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(p.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("d"), 0o700, "the data directory is owner-only");
        assert_eq!(mode("d/blobs"), 0o700);
        assert_eq!(mode("d/registry/registry.db"), 0o600);
        assert_eq!(mode("d/keys/principals/admin.key"), 0o600);
        assert_eq!(mode("d/tls/server.key"), 0o600);
    }
    for (name, role) in [("eng", "ml-engineer"), ("approver", "ml-engineer")] {
        ok(
            p,
            &["principal", "add", name, "--role", role, "--as", "admin"],
        );
    }
    ok(
        p,
        &[
            "principal",
            "add",
            "svc",
            "--role",
            "service",
            "--service",
            "--as",
            "admin",
        ],
    );
    // Only admins manage principals.
    let (c, err) = code(
        p,
        &["principal", "add", "x", "--role", "admin", "--as", "eng"],
    );
    assert_eq!(c, 3, "{err}");
    assert!(!p.join("d/keys/principals/x.key").exists());

    let weights: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(p.join("model.bin"), &weights).unwrap();
    std::fs::write(
        p.join("prov.json"),
        r#"{"datasets":[{"uri":"s3://data/fraud-2026","digest":"sha256:00"}],"code_commit":"abc123"}"#,
    )
    .unwrap();
    let reg: serde_json::Value = serde_json::from_str(&ok(
        p,
        &[
            "model",
            "register",
            "fraud",
            "--version",
            "1.0",
            "model.bin",
            "--as",
            "eng",
            "--provenance",
            "prov.json",
            "--json",
        ],
    ))
    .unwrap();
    let digest = reg["files"][0]["digest"].as_str().unwrap().to_owned();
    // The registrant cannot approve their own model for production.
    ok(
        p,
        &[
            "model",
            "promote",
            "fraud@1.0",
            "--to",
            "validated",
            "--as",
            "approver",
            "--mfa",
        ],
    );
    let (c, err) = code(
        p,
        &[
            "model",
            "promote",
            "fraud@1.0",
            "--to",
            "production",
            "--as",
            "eng",
            "--mfa",
        ],
    );
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("two-person-rule"), "{err}");
    ok(
        p,
        &[
            "model",
            "promote",
            "fraud@1.0",
            "--to",
            "production",
            "--as",
            "approver",
            "--mfa",
        ],
    );

    // A service account needs a grant.
    let (c, _) = code(
        p,
        &[
            "model",
            "load",
            "fraud@production",
            "--as",
            "svc",
            "--ip",
            "10.1.2.3",
            "--out",
            "a.bin",
        ],
    );
    assert_eq!(c, 3);
    assert!(!p.join("a.bin").exists());
    ok(
        p,
        &[
            "principal",
            "grant",
            "svc",
            "--model",
            "fraud",
            "--actions",
            "load",
            "--expires",
            "1h",
            "--as",
            "admin",
        ],
    );
    ok(
        p,
        &[
            "model",
            "load",
            "fraud@production",
            "--as",
            "svc",
            "--ip",
            "10.1.2.3",
            "--out",
            "a.bin",
        ],
    );
    assert_eq!(std::fs::read(p.join("a.bin")).unwrap(), weights);
    let show: serde_json::Value = serde_json::from_str(&ok(
        p,
        &["model", "show", "fraud@1.0", "--as", "eng", "--json"],
    ))
    .unwrap();
    assert_eq!(show["provenance"]["code_commit"], "abc123");
    assert_eq!(show["state"], "production");

    // Tamper with the stored blob: exit 4, an incident, nothing written.
    let blob = p.join("d/blobs/sha256").join(&digest[..2]).join(&digest);
    let mut b = std::fs::read(&blob).unwrap();
    b[1000] ^= 0x80;
    std::fs::write(&blob, &b).unwrap();
    let (c, err) = code(
        p,
        &[
            "model",
            "load",
            "fraud@1.0",
            "--as",
            "eng",
            "--out",
            "b.bin",
        ],
    );
    assert_eq!(c, 4, "{err}");
    assert!(!p.join("b.bin").exists());
    let last = entries(p);
    let incident = last.iter().rev().find(|e| e["kind"] == "incident").unwrap();
    assert_eq!(incident["event"]["user"], "eng");
    assert_eq!(incident["event"]["reason"], "integrity-failure");
    std::fs::write(&blob, &weights).unwrap();

    // Revoked: never loads again, for anyone.
    ok(
        p,
        &[
            "model",
            "revoke",
            "fraud@1.0",
            "--reason",
            "leaked",
            "--as",
            "admin",
            "--mfa",
        ],
    );
    for who in ["admin", "eng", "svc"] {
        let (c, err) = code(
            p,
            &["model", "load", "fraud@1.0", "--as", who, "--out", "c.bin"],
        );
        assert_eq!(c, 3, "{who}: {err}");
    }

    // Every access in the ledger carries user, model, version and IP.
    let all = entries(p);
    let access: Vec<_> = all.iter().filter(|e| e["kind"] == "model.access").collect();
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["event"]["user"], "svc");
    assert_eq!(access[0]["event"]["ip"], "10.1.2.3");
    assert_eq!(access[0]["event"]["model"], "fraud");
    assert_eq!(access[0]["event"]["version"], "1.0");
    assert!(all.iter().any(|e| e["kind"] == "policy.change"));
    assert_eq!(
        all.iter().filter(|e| e["kind"] == "config.change").count(),
        1
    );
    let count = |k: &str| all.iter().filter(|e| e["kind"] == k).count();
    // Every command of the workload appended through one writer started on demand:
    // `init`'s start and epoch, then the writer's, not one per command.
    assert_eq!((count("system.start"), count("key.rotation")), (2, 2));
    assert!(all.iter().any(|e| e["kind"] == "registry.register"));

    // Acceptance 3: the ledger of the whole workload verifies, every entry decrypted.
    let (c, err) = code(p, &["verify", "--auditor-key", "aud.key"]);
    assert_eq!(c, 0, "{err}");

    // Editing the configuration is recorded at the next start.
    let cfg = std::fs::read_to_string(p.join("d/warden.toml")).unwrap();
    std::fs::write(
        p.join("d/warden.toml"),
        cfg.replace(
            "rotation_interval_secs = 7200",
            "rotation_interval_secs = 3600",
        ),
    )
    .unwrap();
    ok(p, &["model", "list", "--as", "admin"]);
    let changes: Vec<_> = entries(p)
        .into_iter()
        .filter(|e| e["kind"] == "config.change")
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        changes[1]["event"]["details"]["previous"],
        changes[0]["event"]["details"]["digest"]
    );

    // Off loopback, serving needs TLS: without a certificate it refuses to start.
    std::fs::rename(p.join("d/tls/server.crt"), p.join("d/tls/moved.crt")).unwrap();
    let (c, err) = code(p, &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(c, 2);
    assert!(err.contains("TLS is required"), "{err}");
    std::fs::rename(p.join("d/tls/moved.crt"), p.join("d/tls/server.crt")).unwrap();

    // A policy that does not validate stops every command before anything is written.
    let size = std::fs::metadata(p.join("d/logs/model_access.jsonl"))
        .unwrap()
        .len();
    std::fs::write(
        p.join("d/policies/warden.cedar"),
        r#"@id("bad") permit(principal, action, resource) when { resource.owner == principal };"#,
    )
    .unwrap();
    let (c, err) = code(p, &["model", "list", "--as", "admin"]);
    assert_eq!(c, 2);
    assert!(err.contains("do not validate"), "{err}");
    assert_eq!(
        std::fs::metadata(p.join("d/logs/model_access.jsonl"))
            .unwrap()
            .len(),
        size
    );
}
