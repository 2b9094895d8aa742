//! Regression tests for the security review's command-line findings, run through the
//! built `warden` binary as a user would: failed commands write nothing (8), secrets
//! and data directories with loose permissions are refused (7), an interrupted append
//! reads as pending recovery rather than tampering (16), and a weekly report has a row
//! for every day (17).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod cli;

use cli::Fx;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `warden log append --stdin` with its standard streams piped.
fn append_stdin(fx: &Fx) -> std::process::Child {
    fx.cmd()
        .args(["log", "append", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn log_bytes(fx: &Fx) -> (u64, u64) {
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    (
        size(fx.data.join("logs/model_access.jsonl")),
        size(fx.data.join("logs/model_access.checkpoints")),
    )
}

/// Finding 8: `log append --kind ''` opened the ledger (writing a ~12 KB key.rotation)
/// before refusing the kind, and `--stdin` read a whole line before its size check.
#[test]
fn failed_commands_write_nothing_and_read_bounded_input() {
    let fx = Fx::initialised();
    let before = log_bytes(&fx);
    let event = r#"{"user":"alice","model":"m","action":"load","decision":"allow"}"#;
    let big = format!(
        r#"{{"user":"alice","details":{{"pad":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    for args in [
        vec!["log", "append", "--kind", "", "--event", event],
        vec!["log", "append", "--kind", "key.rotation", "--event", event],
        vec!["log", "append", "--kind", "Model Access", "--event", event],
        vec!["log", "append", "--kind", "model.access", "--event", &big],
        vec![
            "log",
            "append",
            "--kind",
            "model.access",
            "--event",
            "{not json",
        ],
    ] {
        let out = fx.run(&args);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(log_bytes(&fx), before, "{args:?} wrote to the ledger");
    }
    // --stdin: a first line of 8 MiB is refused without being held whole, and nothing
    // is written.
    let mut child = append_stdin(&fx);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..8 {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = stdin.write_all(b"\n");
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1") && err.contains("longer than"),
        "{err}"
    );
    assert_eq!(
        log_bytes(&fx),
        before,
        "an oversized first line writes nothing"
    );
    // A bad line after good ones: the good ones are recorded, the error names the line.
    let mut child = append_stdin(&fx);
    let line = format!(r#"{{"kind":"model.access","event":{event}}}"#);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!("{line}\n\n{line}\n{{\"kind\":\"\",\"event\":{{}}}}\n{line}\n").as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert_eq!(fx.entries("model.access").len(), 2);
}

/// Finding 7: a 0644 root key, principal key or auditor key, or a world-writable data
/// directory, were used without a word. Each is refused with the file and the fix.
#[test]
fn loose_key_permissions_and_writable_data_directories_are_refused() {
    let fx = Fx::initialised();
    let event = r#"{"user":"alice","action":"load"}"#;
    let append = || fx.run(&["log", "append", "--kind", "model.access", "--event", event]);
    let chmod = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let root_key = fx.data.join("keys/root.key");
    let before = log_bytes(&fx);
    chmod(&root_key, 0o644);
    let out = append();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&root_key.display().to_string()) && err.contains("chmod 600"),
        "{err}"
    );
    assert_eq!(log_bytes(&fx), before);
    chmod(&root_key, 0o600);

    for dir in [fx.data.clone(), fx.data.join("keys")] {
        let old = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        chmod(&dir, 0o777);
        let out = append();
        assert!(!out.status.success(), "{}", dir.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("chmod go-w"), "{err}");
        chmod(&dir, old);
    }
    assert_eq!(log_bytes(&fx), before);

    let auditor = fx.path("auditor.key");
    chmod(&auditor, 0o640);
    let out = fx.run(&["verify", "--auditor-key", "auditor.key"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    chmod(&auditor, 0o600);

    fx.ok(&[
        "principal",
        "add",
        "alice",
        "--role",
        "ml-engineer",
        "--as",
        "admin",
    ]);
    let alice = fx.data.join("keys/principals/alice.key");
    chmod(&alice, 0o644);
    std::fs::write(fx.path("w.bin"), b"weights").unwrap();
    let out = fx.run(&[
        "model",
        "register",
        "m",
        "--version",
        "1",
        "w.bin",
        "--as",
        "alice",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alice.key") && err.contains("chmod 600"),
        "{err}"
    );
    chmod(&alice, 0o600);
    assert!(append().status.success(), "fixed modes work again");
}

/// Finding 16: after a power cut (SIGKILL) mid-append, `warden verify` called the
/// unacknowledged tail tampering (exit 1). It is pending recovery: named, exit 0.
#[test]
fn an_interrupted_append_reads_as_pending_recovery_not_tampering() {
    let fx = Fx::initialised();
    let log = fx.data.join("logs/model_access.jsonl");
    let line = r#"{"kind":"model.access","event":{"user":"alice","action":"load"}}"#;
    // A few real SIGKILLs mid-stream: each leaves whatever the kill left.
    for _ in 0..3 {
        let mut child = append_stdin(&fx);
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            let batch = format!("{line}\n").repeat(2000);
            while stdin.write_all(batch.as_bytes()).is_ok() {}
        });
        let mut receipts = BufReader::new(child.stdout.take().unwrap());
        let t = Instant::now();
        let mut seen = String::new();
        while t.elapsed() < Duration::from_secs(10) {
            seen.clear();
            if receipts.read_line(&mut seen).unwrap() == 0 {
                break;
            }
            if seen.trim().parse::<u64>().is_ok_and(|i| i > 3000) {
                break;
            }
        }
        // The power cut: the writer the command started (which owns the ledger) dies,
        // then the command.
        assert!(fx.kill_writer(), "the command appended through a writer");
        child.kill().unwrap();
        child.wait().unwrap();
        feeder.join().unwrap();
        let out = fx.run(&["verify"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a crash is not tampering: {text}");
    }
    // The same deterministically: a torn, unacknowledged last line.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(br#"{"v":1,"origin":"torn"#).unwrap();
    drop(f);
    let out = fx.run(&["verify", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let p = &v["pending_recovery"];
    assert!(
        p["to"].as_u64().unwrap() > p["from"].as_u64().unwrap(),
        "{v}"
    );
    let out = fx.run(&["verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PENDING RECOVERY"));
    // The next writer cuts the tail and records it; the log verifies clean.
    fx.append_access("bob");
    let v = fx.json(&["verify", "--json"]);
    assert_eq!(v["ok"], true);
    assert!(v["pending_recovery"].is_null(), "{v}");
    assert!(!fx.entries("system.recovery").is_empty());
    // Without any signed checkpoint nothing vouches for the entries: still a failure.
    std::fs::write(fx.data.join("logs/model_access.checkpoints"), b"").unwrap();
    let out = fx.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
}

/// Finding 17: a weekly report drew only the days with data; it has all seven.
#[test]
fn a_weekly_report_has_a_row_for_every_day() {
    let fx = Fx::initialised();
    let out = fx.ok(&[
        "report",
        "--from",
        "2026-11-23",
        "--to",
        "2026-11-30",
        "--format",
        "json",
        "--out",
        "-",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let days: Vec<&str> = v["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date"].as_str().unwrap())
        .collect();
    assert_eq!(
        days,
        [
            "2026-11-23",
            "2026-11-24",
            "2026-11-25",
            "2026-11-26",
            "2026-11-27",
            "2026-11-28",
            "2026-11-29"
        ]
    );
}

/// Finding 11: a second export to the same destination and format but with
/// `--auditor-key` reused the first sink's cursor and delivered nothing.
#[test]
fn sinks_that_send_different_things_never_share_a_cursor() {
    let fx = Fx::initialised();
    for user in ["alice", "bob", "carol"] {
        fx.ok(&[
            "log",
            "append",
            "--kind",
            "model.access",
            "--event",
            &format!(r#"{{"user":"{user}","action":"load"}}"#),
        ]);
    }
    let lines = |name: &str| {
        std::fs::read_to_string(fx.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    fx.ok(&["export", "--to", "file:out.jsonl", "--format", "json"]);
    let plain = lines("out.jsonl");
    assert!(!plain.is_empty());
    assert!(
        !plain.iter().any(|l| l.contains("\"carol\"")),
        "encrypted only"
    );
    fx.ok(&[
        "export",
        "--to",
        "file:out.jsonl",
        "--format",
        "json",
        "--auditor-key",
        "auditor.key",
    ]);
    let both = lines("out.jsonl");
    assert!(both.len() > plain.len(), "the decrypting sink delivered");
    assert!(
        both.iter().any(|l| l.contains("\"carol\"")),
        "decrypted events"
    );
    // A named sink keeps what it sends: other settings need another name.
    fx.ok(&[
        "export",
        "--to",
        "file:n.jsonl",
        "--format",
        "json",
        "--name",
        "soc",
    ]);
    let out = fx.run(&[
        "export",
        "--to",
        "file:n.jsonl",
        "--format",
        "json",
        "--name",
        "soc",
        "--auditor-key",
        "auditor.key",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another --name"));
    // The removed write-acknowledgement mode is refused with the reason.
    let out = fx.run(&[
        "export",
        "--to",
        "tcp://127.0.0.1:9",
        "--format",
        "policy",
        "--ack",
        "write",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not delivery"));
}
