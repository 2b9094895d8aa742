//! Training-side protections as a user runs them: `warden sanitize` over text, JSON
//! Lines and CSV; `warden dataset encrypt|decrypt` from 0 bytes to over 2 GiB, with
//! tampering refused and nothing written; `warden check-env` failing and passing for
//! stated reasons; `warden fingerprint` and a signed `warden training record` that
//! `warden model register --provenance` accepts only for the files it attests. Every
//! run that the issue says is audited is found in the ledger.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cli;

use cli::Fx;
use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn sanitize_replaces_pii_in_each_format_and_audits_only_counts() {
    let fx = Fx::initialised();
    std::fs::write(
        fx.path("notes.txt"),
        "mail jane.doe@example.com or call +44 20 7946 0958\nssn 123-45-6789, card 4111 1111 1111 1111, ip 10.1.2.3, iban DE89 3704 0044 0532 0130 00\nnot pii: 4111 1111 1111 1112, 2024-01-15\n",
    )
    .unwrap();
    let s = fx.json(&[
        "sanitize",
        "notes.txt",
        "clean.txt",
        "--audit",
        "--json",
        "--as",
        "eng",
    ]);
    let clean = std::fs::read_to_string(fx.path("clean.txt")).unwrap();
    assert_eq!(
        clean,
        "mail [EMAIL] or call [PHONE]\nssn [SSN], card [CREDIT_CARD], ip [IP], iban [IBAN]\nnot pii: 4111 1111 1111 1112, 2024-01-15\n"
    );
    for k in ["EMAIL", "PHONE", "SSN", "CREDIT_CARD", "IP", "IBAN"] {
        assert_eq!(s["replaced"][k], 1, "{k}: {s}");
    }
    assert_eq!(s["records"], 3);
    // The audit entry has the counts and the files, never the PII.
    let e = fx.entries("data.sanitize");
    assert_eq!(e.len(), 1);
    let ev = &e[0]["event"];
    assert_eq!(ev["user"], "eng");
    assert_eq!(ev["details"]["replaced"]["SSN"], 1);
    let text = e[0].to_string();
    for pii in [
        "jane.doe",
        "7946",
        "123-45",
        "4111 1111 1111 1111",
        "10.1.2.3",
        "DE89",
    ] {
        assert!(!text.contains(pii), "{pii} in the audit entry");
    }
    // An existing output is not replaced without --force.
    let out = fx.run(&["sanitize", "notes.txt", "clean.txt"]);
    assert!(!out.status.success());

    // JSON Lines: only string values change; --fields limits it.
    std::fs::write(
        fx.path("rows.jsonl"),
        "{\"id\": 4111111111111111, \"user\": {\"email\": \"a@example.org\"}, \"note\": \"call 415-555-0132\"}\n",
    )
    .unwrap();
    fx.ok(&["sanitize", "rows.jsonl", "rows.clean.jsonl"]);
    assert_eq!(
        std::fs::read_to_string(fx.path("rows.clean.jsonl")).unwrap(),
        "{\"id\": 4111111111111111, \"user\": {\"email\": \"[EMAIL]\"}, \"note\": \"call [PHONE]\"}\n"
    );
    fx.ok(&[
        "sanitize",
        "rows.jsonl",
        "rows.user.jsonl",
        "--fields",
        "user",
    ]);
    assert!(
        std::fs::read_to_string(fx.path("rows.user.jsonl"))
            .unwrap()
            .contains("call 415-555-0132")
    );
    // A line that is not JSON fails, names the line, shows none of it, writes nothing.
    std::fs::write(
        fx.path("bad.jsonl"),
        "{\"a\": 1}\n{\"ssn\": \"123-45-6789\"\n",
    )
    .unwrap();
    let out = fx.run(&["sanitize", "bad.jsonl", "bad.clean.jsonl"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("line 2"), "{err}");
    assert!(!err.contains("6789"), "{err}");
    assert!(!fx.path("bad.clean.jsonl").exists(), "no partial output");

    // CSV, with a rules file adding an organisation's identifier.
    std::fs::write(
        fx.path("people.csv"),
        "name,contact,employee\nAnn,\"a@example.org, +1 415 555 0132\",EMP-123456\n",
    )
    .unwrap();
    std::fs::write(
        fx.path("rules.toml"),
        "[[rule]]\nname = \"EMPLOYEE_ID\"\npattern = '\\bEMP-[0-9]{6}\\b'\n",
    )
    .unwrap();
    let s = fx.json(&[
        "sanitize",
        "people.csv",
        "people.clean.csv",
        "--rules",
        "rules.toml",
        "--json",
    ]);
    assert_eq!(
        std::fs::read_to_string(fx.path("people.clean.csv")).unwrap(),
        "name,contact,employee\nAnn,\"[EMAIL], [PHONE]\",[EMPLOYEE_ID]\n"
    );
    assert_eq!(s["replaced"]["EMPLOYEE_ID"], 1);
    // Standard input to standard output.
    let mut child = fx
        .cmd()
        .args(["sanitize", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"x 192.168.0.1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "x [IP]\n");
}

fn sha256_file(p: &Path) -> String {
    use std::io::Read as _;
    let mut f = std::fs::File::open(p).unwrap();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    warden_core::hex::encode(ctx.finish().as_ref())
}

#[test]
fn datasets_round_trip_from_empty_to_over_two_gib_and_tampering_writes_nothing() {
    let fx = Fx::initialised();
    // The data directory's dataset key is the default recipient; it is owner-only.
    let key = fx.data.join("keys/dataset.key");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for (name, len) in [
        ("empty", 0usize),
        ("one", 1),
        ("chunk", 1 << 20),
        ("odd", (3 << 20) + 7),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(fx.path(name), &data).unwrap();
        fx.ok(&["dataset", "encrypt", name, &format!("{name}.enc")]);
        fx.ok(&[
            "dataset",
            "decrypt",
            &format!("{name}.enc"),
            &format!("{name}.dec"),
        ]);
        assert_eq!(
            std::fs::read(fx.path(&format!("{name}.dec"))).unwrap(),
            data,
            "{name}"
        );
    }
    // Over 2 GiB, streamed (never held in memory).
    let big = fx.path("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let block: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for i in 0..2048u32 {
            let mut b = block.clone();
            b[..4].copy_from_slice(&i.to_be_bytes());
            f.write_all(&b).unwrap();
        }
        f.write_all(b"tail").unwrap();
    }
    let want = sha256_file(&big);
    let e = fx.json(&["dataset", "encrypt", "big.bin", "big.enc", "--json"]);
    assert_eq!(e["bytes"], (2u64 << 30) + 4);
    std::fs::remove_file(&big).unwrap();
    let d = fx.json(&["dataset", "decrypt", "big.enc", "big.dec", "--json"]);
    assert_eq!(d["dataset_id"], e["dataset_id"]);
    assert_eq!(sha256_file(&fx.path("big.dec")), want);
    std::fs::remove_file(fx.path("big.dec")).unwrap();
    std::fs::remove_file(fx.path("big.enc")).unwrap();

    // Tampering: the command fails, no output appears, and the failure is recorded.
    let ct = std::fs::read(fx.path("odd.enc")).unwrap();
    let mut flipped = ct.clone();
    let n = flipped.len();
    flipped[n - 100] ^= 1;
    let mut truncated = ct.clone();
    truncated.truncate(n - (1 << 20) - 23);
    for (what, bytes) in [("flipped", flipped), ("truncated", truncated)] {
        std::fs::write(fx.path("t.enc"), bytes).unwrap();
        let out = fx.run(&["dataset", "decrypt", "t.enc", "t.dec"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}");
        assert!(err.contains("failed authentication"), "{what}: {err}");
        assert!(!fx.path("t.dec").exists(), "{what}: nothing written");
    }
    let failures: Vec<Value> = fx
        .entries("dataset.decrypt")
        .into_iter()
        .filter(|e| e["event"]["details"]["ok"] == false)
        .collect();
    assert_eq!(failures.len(), 2);

    // Other recipients: an auditor key; the data directory's key is then not one.
    fx.ok(&[
        "dataset",
        "encrypt",
        "one",
        "one.aud",
        "--recipient",
        "auditor.key.pub",
    ]);
    let out = fx.run(&["dataset", "decrypt", "one.aud", "one.x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a recipient"));
    fx.ok(&[
        "dataset",
        "decrypt",
        "one.aud",
        "one.y",
        "--key",
        "auditor.key",
    ]);
    let info = fx.json(&["dataset", "inspect", "one.aud", "--json"]);
    assert_eq!(info["recipients"].as_array().unwrap().len(), 1);
    // Every encryption and decryption is in the ledger.
    assert_eq!(fx.entries("dataset.encrypt").len(), 6);
    assert_eq!(
        fx.entries("dataset.decrypt")
            .iter()
            .filter(|e| e["event"]["details"]["ok"] == true)
            .count(),
        6
    );
}

#[test]
fn check_env_fails_and_passes_for_stated_reasons() {
    let fx = Fx::initialised();
    let data = fx.path("train");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("sub/x.csv"), "a\n").unwrap();
    let out_dir = fx.path("model-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    chmod(&data, 0o755);
    chmod(&data.join("sub/x.csv"), 0o644);
    chmod(&out_dir, 0o777);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "check-env",
            "--data",
            "train",
            "--output",
            "model-out",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = fx.run(&args);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    let check = |v: &Value, name: &str| -> (bool, String) {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone();
        (
            c["ok"].as_bool().unwrap(),
            c["reason"].as_str().unwrap().to_owned(),
        )
    };
    let (code, v) = run(&[]);
    assert_eq!(code, Some(1));
    let (ok, why) = check(&v, "data_not_world_readable");
    assert!(!ok && why.contains("readable by other users"), "{why}");
    let (ok, why) = check(&v, "output_owner_only");
    assert!(!ok && why.contains("writable by everyone"), "{why}");
    // The test machine's temporary directory is not on encrypted storage; the check
    // names the device and file system it found.
    let (ok, why) = check(&v, "data_encrypted");
    if !ok {
        assert!(
            why.contains("mounted at") && why.contains("not dm-crypt"),
            "{why}"
        );
    }
    assert!(check(&v, "ledger_writable").0);

    chmod(&data, 0o750);
    chmod(&data.join("sub"), 0o750);
    chmod(&data.join("sub/x.csv"), 0o640);
    chmod(&out_dir, 0o700);
    let mount = data.to_str().unwrap().to_owned();
    let (code, v) = run(&["--encrypted-mount", &mount]);
    assert_eq!(code, Some(0), "{v}");
    assert!(
        check(&v, "data_encrypted")
            .1
            .contains("configured encrypted mount")
    );
    // Each run is a ledger entry with its results.
    let e = fx.entries("training.check_env");
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["event"]["details"]["passed"], false);
    assert_eq!(e[1]["event"]["details"]["passed"], true);

    // Network isolation, when required: refused where routes leave the machine,
    // accepted in a network namespace with none (unshare, when this user may).
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    if routes.lines().skip(1).any(|l| !l.starts_with("lo")) {
        let (code, v) = run(&["--encrypted-mount", &mount, "--require-isolation"]);
        assert_eq!(code, Some(1));
        assert!(check(&v, "network_isolated").1.contains("routes over"));
    }
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if isolated {
        let out = Command::new("unshare")
            .arg("-n")
            .arg(env!("CARGO_BIN_EXE_warden"))
            .args(["check-env", "--require-isolation", "--json"])
            .env("WARDEN_DATA_DIR", &fx.data)
            .current_dir(&fx.root)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{v}");
        assert!(
            check(&v, "network_isolated")
                .1
                .contains("no routes except loopback")
        );
    }

    // An unreachable ledger is a failed check, not a silent pass.
    let out = fx
        .cmd()
        .args(["check-env", "--json"])
        .env("WARDEN_DATA_DIR", fx.path("no-such-dir"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!check(&v, "ledger_writable").0);
}

#[test]
fn a_signed_training_record_is_accepted_only_for_the_files_it_attests() {
    let fx = Fx::initialised();
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
        "mallory",
        "--role",
        "ml-engineer",
        "--as",
        "admin",
    ]);
    let m = fx.path("model");
    std::fs::create_dir_all(m.join("tok")).unwrap();
    std::fs::write(m.join("weights.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(m.join("tok/vocab.txt"), "a\nb\n").unwrap();
    std::fs::write(fx.path("train.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(fx.path("train.yaml"), "lr: 0.1\n").unwrap();
    // The code is a git checkout; its HEAD is recorded.
    let code = fx.path("code");
    std::fs::create_dir_all(&code).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .arg("-C")
            .arg(&code)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        String::from_utf8(ok.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    std::fs::write(code.join("train.py"), "print('hi')\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "train"]);
    let head = git(&["rev-parse", "HEAD"]);

    let fp = fx.json(&["fingerprint", "model", "--json"]);
    let root = fp["root_digest"].as_str().unwrap().to_owned();
    assert_eq!(fp["files"].as_array().unwrap().len(), 2);
    let r = fx.json(&[
        "training",
        "record",
        "--model",
        "model",
        "--name",
        "fraud",
        "--data",
        "train.csv",
        "--code",
        "code",
        "--config",
        "train.yaml",
        "--env",
        "gpu=none",
        "--as",
        "eng",
        "--out",
        "record.json",
        "--json",
    ]);
    assert_eq!(r["root_digest"], root.as_str());
    // A dirty checkout is refused unless allowed.
    std::fs::write(code.join("train.py"), "print('changed')\n").unwrap();
    let out = fx.run(&[
        "training", "record", "--model", "model", "--name", "fraud", "--code", "code", "--as",
        "eng",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("uncommitted changes"));

    let reg = fx.json(&[
        "model",
        "register",
        "fraud",
        "--version",
        "1.0",
        "model",
        "--provenance",
        "record.json",
        "--as",
        "eng",
        "--json",
    ]);
    let p = &reg["provenance"];
    assert_eq!(p["code_commit"], head.as_str());
    assert_eq!(p["attestation"]["signer"], "eng");
    assert_eq!(p["attestation"]["root"], root.as_str());
    assert_eq!(p["environment"]["gpu"], "none");
    assert!(p["config_digest"].as_str().unwrap().starts_with("sha256:"));
    let ds = &p["datasets"][0];
    assert!(ds["uri"].as_str().unwrap().ends_with("/train.csv"));
    let want = format!("sha256:{}", sha256_file(&fx.path("train.csv")));
    assert_eq!(ds["digest"], want.as_str());
    assert_eq!(reg["root_digest"], root.as_str());

    // Other files than the record attests: refused.
    std::fs::write(m.join("weights.bin"), vec![8u8; 300_000]).unwrap();
    let out = fx.run(&[
        "model",
        "register",
        "fraud",
        "--version",
        "2.0",
        "model",
        "--provenance",
        "record.json",
        "--as",
        "eng",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("attests files with root"),
        "{err}"
    );
    std::fs::write(m.join("weights.bin"), vec![7u8; 300_000]).unwrap();
    // An altered record: refused.
    let mut env: Value =
        serde_json::from_slice(&std::fs::read(fx.path("record.json")).unwrap()).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut st: Value =
        serde_json::from_slice(&b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    st["predicate"]["provenance"]["code_commit"] = "0000000".into();
    env["payload"] = b64.encode(serde_json::to_vec(&st).unwrap()).into();
    std::fs::write(fx.path("forged.json"), serde_json::to_vec(&env).unwrap()).unwrap();
    let out = fx.run(&[
        "model",
        "register",
        "fraud",
        "--version",
        "3.0",
        "model",
        "--provenance",
        "forged.json",
        "--as",
        "eng",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A record whose signature names eng but was made with another principal's key.
    fx.ok(&[
        "training", "record", "--model", "model", "--name", "fraud", "--as", "mallory", "--out",
        "m.json",
    ]);
    let mut env: Value =
        serde_json::from_slice(&std::fs::read(fx.path("m.json")).unwrap()).unwrap();
    let keyid = env["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .replace("mallory:", "eng:");
    env["signatures"][0]["keyid"] = keyid.into();
    std::fs::write(fx.path("claimed.json"), serde_json::to_vec(&env).unwrap()).unwrap();
    let out = fx.run(&[
        "model",
        "register",
        "fraud",
        "--version",
        "4.0",
        "model",
        "--provenance",
        "claimed.json",
        "--as",
        "eng",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("registered key"),
        "{err}"
    );
    // Someone else's key cannot sign as eng.
    let mallory_key = fx.data.join("keys/principals/mallory.key");
    let out = fx.run(&[
        "training",
        "record",
        "--model",
        "model",
        "--name",
        "fraud",
        "--as",
        "eng",
        "--key",
        mallory_key.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to mallory"));
    // Registration and the record are in the ledger.
    let recs = fx.entries("training.record");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["event"]["details"]["root_digest"], root.as_str());
}
