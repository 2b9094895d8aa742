//! Writers started on demand: with no writer running, short-lived commands share one
//! writer (one epoch) instead of opening the ledger each; that writer hands the ledger
//! to `warden serve`, to retention and to `auditor add`, refuses anyone else, and does
//! not outlive its data directory or its idle time. Readers beside a busy writer see a
//! consistent prefix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cli;
mod serve;

use cli::Fx;
use serde_json::Value;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use warden_store::error::AppendError;
use warden_store::writer::client::request_yield;

fn socket(fx: &Fx) -> PathBuf {
    fx.data.join("run/writer.sock")
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Waits up to `secs` for `done`.
fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// `init` does not leave a writer behind (it closes its ledger).
fn no_writer(fx: &Fx) {
    assert!(
        eventually(5, || fx.writer_pid().is_none()),
        "a writer still answers"
    );
}

/// Build item 5: 37 `log append` calls made 38 epochs. Now eight at once and 92 more in
/// a row start one writer and one epoch between them.
#[test]
fn a_hundred_appends_with_no_writer_running_share_one_epoch() {
    let fx = Fx::initialised();
    no_writer(&fx);
    let before = fx.count_kind("key.rotation");
    std::thread::scope(|s| {
        for i in 0..8 {
            let fx = &fx;
            s.spawn(move || fx.append_access(&format!("racer{i}")));
        }
    });
    for i in 0..92 {
        fx.append_access(&format!("u{i}"));
    }
    assert_eq!(fx.count_kind("key.rotation"), before + 1);
    assert_eq!(fx.count_kind("model.access"), 100);
    let pid = fx
        .writer_pid()
        .expect("the writer started on demand answers");
    assert!(cmdline(pid).contains("--on-demand"), "{}", cmdline(pid));
    // Each entry says it came through the writer, from which operating-system user.
    let e = fx.entries("model.access");
    assert!(e.iter().all(|e| {
        e["event"]["via"]
            .as_str()
            .is_some_and(|v| v.starts_with("os-user="))
    }));
    assert!(fx.run(&["verify"]).status.success());
}

/// `warden serve` takes the ledger from a writer started on demand; the service does
/// not hand it on, and the refusal is an entry.
#[test]
fn serve_takes_over_from_a_writer_started_on_demand_and_does_not_yield_itself() {
    let fx = Fx::initialised();
    fx.append_access("before");
    let first = fx.writer_pid().unwrap();
    let (mut serve, _addr, _) = serve::start(fx.cmd());
    assert!(
        eventually(10, || !std::path::Path::new(&format!("/proc/{first}"))
            .exists()
            || std::fs::read_to_string(format!("/proc/{first}/stat"))
                .is_ok_and(|s| s.contains(") Z "))),
        "the writer started on demand is still running"
    );
    let pid = fx.writer_pid().unwrap();
    assert_eq!(pid, serve.id(), "serve owns the ledger and answers");
    fx.append_access("during");
    match request_yield(&socket(&fx), Duration::from_secs(5)) {
        Err(AppendError::Refused(m)) => assert!(m.contains("does not hand"), "{m}"),
        other => panic!("serve yielded: {other:?}"),
    }
    assert_eq!(fx.writer_pid(), Some(serve.id()));
    let refusals: Vec<_> = fx
        .entries("auth.failure")
        .into_iter()
        .filter(|e| e["event"]["action"] == "writer.yield")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    serve.kill().unwrap();
    serve.wait().unwrap();
    // Everything the commands sent, before and during, is in the ledger.
    let users: Vec<_> = fx
        .entries("model.access")
        .iter()
        .map(|e| e["event"]["user"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(users, ["before", "during"]);
}

/// The writer exits after `[writer] idle_exit_secs` without a client, and at once when
/// its data directory is removed (a test's temporary directory leaves no process).
#[test]
fn a_writer_started_on_demand_exits_when_idle_or_when_its_directory_is_gone() {
    let fx = Fx::initialised();
    let cfg = fx.data.join("warden.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[writer]\nidle_exit_secs = 1\n");
    std::fs::write(&cfg, text).unwrap();
    fx.append_access("a");
    assert!(fx.writer_pid().is_some());
    assert!(
        eventually(10, || fx.writer_pid().is_none()),
        "still running after its idle time"
    );
    // It closed its epoch cleanly: no recovery at the next start.
    fx.append_access("b");
    assert_eq!(fx.count_kind("system.recovery"), 0);
    // An operator puts the files at rest before a backup.
    assert!(fx.ok(&["writer", "--stop"]).contains("stopped"));
    assert!(fx.writer_pid().is_none());
    assert!(fx.ok(&["writer", "--stop"]).contains("no writer answers"));

    let other = Fx::initialised();
    other.append_access("c");
    let pid = other.writer_pid().unwrap();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    std::fs::remove_dir_all(&other.data).unwrap();
    assert!(
        eventually(5, || !proc.exists()
            || std::fs::read_to_string(proc.join("stat"))
                .is_ok_and(|s| s.contains(") Z "))),
        "the writer outlived its data directory"
    );
}

/// `auditor add` stops a writer started on demand, so the very next entry is sealed
/// under an epoch whose data key the new auditor can unwrap.
#[test]
fn auditor_add_makes_the_next_entry_readable_by_the_new_auditor() {
    let fx = Fx::initialised();
    fx.append_access("old");
    fx.ok(&["auditor", "keygen", "--out", "second.key"]);
    fx.ok(&["auditor", "add", "second.key.pub"]);
    fx.append_access("new");
    let out = fx.ok(&["log", "show", "--json", "--auditor-key", "second.key"]);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"]["user"], "new", "{last}");
}

/// Regression (verify_read_checkpoints_newer_than_its_entries): `warden verify` beside
/// a busy writer took the entries file's length, then read checkpoints written after
/// it, and reported "entries were removed". It reads the checkpoints' complete part
/// first now, so every run is clean.
#[test]
fn verify_beside_a_busy_writer_reports_no_removed_entries() {
    let fx = Fx::initialised();
    let mut child = fx
        .cmd()
        .args(["log", "append", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = std::sync::Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let line = r#"{"kind":"model.access","event":{"user":"alice","action":"load"}}"#;
        let batch = format!("{line}\n").repeat(200);
        while !s2.load(std::sync::atomic::Ordering::Relaxed)
            && stdin.write_all(batch.as_bytes()).is_ok()
        {}
    });
    // At least 20 runs, and on until the ledger has grown between two of them: the
    // appender first has to start a writer, which on a loaded machine can take longer
    // than 20 runs of verify.
    let mut runs = 0;
    let mut saw_growth = false;
    let mut last = 0;
    let started = std::time::Instant::now();
    while runs < 20 || (!saw_growth && started.elapsed() < std::time::Duration::from_secs(60)) {
        let out = fx.run(&["verify", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success() && v["ok"] == true, "run {runs}: {v}");
        let n = v["entries"].as_u64().unwrap();
        saw_growth |= runs > 0 && n > last;
        last = n;
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
    child.wait().unwrap();
    assert!(saw_growth, "the ledger did not grow while verify ran");
}
