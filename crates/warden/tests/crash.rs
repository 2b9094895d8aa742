//! Acceptance: SIGKILL at random moments during a high-rate append run loses nothing
//! that was acknowledged; the reopened log records the recovery and verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

mod common;
use common::Rng;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRIALS: u64 = 20;

fn warden(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    // Each command owns the ledger itself (no writer started on demand): the kill below
    // must land on the process that appends. tests/writers.rs kills writers.
    c.env_remove("WARDEN_PASSPHRASE")
        .env("WARDEN_WRITER_AUTOSTART", "0")
        .env("WARDEN_DATA_DIR", dir);
    c
}

fn run_ok(c: &mut Command) -> Vec<u8> {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        c,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Number of entry lines and the size of the last checkpoint on disk.
fn disk_state(log: &Path) -> (u64, bool, u64) {
    let data = std::fs::read(log).unwrap();
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let torn = data.last().is_some_and(|&b| b != b'\n');
    let cps = std::fs::read(log.with_extension("checkpoints")).unwrap();
    let last = cps
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .rev()
        .find_map(|l| warden_core::record::CheckpointRecord::decode(l).ok())
        .map_or(0, |r| r.size);
    (lines, torn, last)
}

/// One SIGKILL trial: returns the acknowledged (stdin line number, index) pairs.
fn trial(dir: &Path, t: u64, rng: &mut Rng) -> Vec<(u64, u64)> {
    let mut child = warden(dir)
        .args(["log", "append", "--stdin", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let pad = "x".repeat(180);
        let mut buf = Vec::new();
        for j in 0u64.. {
            buf.clear();
            writeln!(
                buf,
                r#"{{"kind":"model.access","event":{{"user":"u{}","ip":"192.0.2.7","model":"m","request_id":"t{t}-{j}","details":{{"pad":"{pad}"}}}}}}"#,
                j % 13
            )
            .unwrap();
            if stdin.write_all(&buf).is_err() {
                return;
            }
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut acks = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A receipt cut off by the kill was never delivered.
            if line.last() != Some(&b'\n') {
                break;
            }
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            if acks.is_empty() {
                let _ = first_tx.send(());
            }
            acks.push((acks.len() as u64, v["index"].as_u64().unwrap()));
        }
        acks
    });
    first_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no receipt within 60 s");
    std::thread::sleep(Duration::from_micros(rng.below(250_000)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acks = reader.join().unwrap();
    let _ = feeder.join();
    acks
}

#[test]
fn sigkill_during_high_rate_appends_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let aud: PathBuf = tmp.path().join("auditor.key");
    run_ok(warden(&dir).args(["auditor", "keygen", "--out"]).arg(&aud));
    run_ok(
        warden(&dir)
            .args(["init", "--dev", "--auditor"])
            .arg(aud.with_extension("key.pub")),
    );
    let log = dir.join("logs/model_access.jsonl");
    let mut rng = Rng(0x5eed_cafe_f00d_0001 ^ u64::from(std::process::id()));
    let mut recoveries = 0;
    let mut total_acked = 0;
    let started = Instant::now();
    for t in 0..TRIALS {
        let acks = trial(&dir, t, &mut rng);
        assert!(!acks.is_empty());
        total_acked += acks.len();
        let (lines, torn, covered) = disk_state(&log);
        let dirty = torn || lines > covered;

        // Reopen: this appends the new epoch's entries and, after a dirty stop, the
        // recovery record.
        run_ok(warden(&dir).args(["log", "append", "--kind", "system.check", "--event", "{}"]));
        let out = run_ok(
            warden(&dir)
                .args(["verify", "--json", "--auditor-key"])
                .arg(&aud),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ok"], true, "trial {t}: {v}");
        assert_eq!(v["decrypted"], v["entries"], "trial {t}: {v}");

        // Every acknowledged entry is present, at its receipt's index, with its content.
        let from = acks[0].1;
        let out = run_ok(
            warden(&dir)
                .args(["log", "show", "--json", "--auditor-key"])
                .arg(&aud)
                .args(["--from", &from.to_string()]),
        );
        let mut by_index = HashMap::new();
        let mut recovery = None;
        for l in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let e: serde_json::Value = serde_json::from_slice(l).unwrap();
            let i = e["index"].as_u64().unwrap();
            if e["kind"] == "system.recovery" && i >= covered {
                recovery = Some(e["event"]["details"].clone());
            }
            by_index.insert(i, e["event"]["request_id"].as_str().map(str::to_owned));
        }
        for (j, index) in &acks {
            let want = format!("t{t}-{j}");
            assert_eq!(
                by_index.get(index).cloned().flatten().as_deref(),
                Some(want.as_str()),
                "trial {t}: acknowledged entry {j} (index {index}) is missing"
            );
        }
        if dirty {
            let details = recovery
                .unwrap_or_else(|| panic!("trial {t}: dirty stop but no system.recovery entry"));
            assert_eq!(
                details["covered"].as_u64(),
                Some(covered),
                "trial {t}: {details}"
            );
            recoveries += 1;
        } else {
            assert!(
                recovery.is_none(),
                "trial {t}: recovery recorded after a clean stop"
            );
        }
    }
    eprintln!(
        "{TRIALS} kills, {total_acked} acknowledged entries, {recoveries} recoveries, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        recoveries > 0,
        "no kill left an unacknowledged tail; the test did not exercise recovery"
    );
}
