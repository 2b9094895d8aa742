//! SIEM export against real receivers on loopback (rsyslog and syslog-ng, installed by
//! `scripts/install-receivers`): every format over TCP and TLS arrives entry for entry;
//! killing the receiver or the exporter mid-stream loses nothing; the policy's own
//! `jq`/`nc` pipeline delivers the same lines as `--format policy`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

#[path = "siem/receivers.rs"]
mod receivers;
mod serve;

use receivers::{Kind, Msg, Receiver};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FORMATS: [&str; 6] = ["policy", "rfc5424", "cef", "ocsf", "ecs", "json"];
/// A user agent that needs escaping in every format.
const TRICKY_UA: &str = "curl/8 \"quoted\" ]bracket[ back\\slash a=b|pipe\nnewline \u{e9}t\u{e9}";

struct Fx {
    tmp: tempfile::TempDir,
    data: PathBuf,
    auditor: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn warden(fx: &Fx) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.env("WARDEN_DATA_DIR", &fx.data)
        .env_remove("WARDEN_PASSPHRASE")
        .stdin(Stdio::null());
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `i`-th test event: several kinds, users and outcomes, and text to escape.
fn event(i: usize) -> Value {
    let users = ["alice", "bob", "eve \"x\" ]y[ z\\w=v|u"];
    let (kind, action, decision) = match i % 5 {
        0 | 1 => (
            "model.access",
            if i.is_multiple_of(2) {
                "load"
            } else {
                "download"
            },
            "allow",
        ),
        2 => ("model.denied", "load", "deny"),
        3 => ("registry.register", "register", "allow"),
        _ => ("incident", "load", "deny"),
    };
    let mut ev = json!({
        "user": users[i % users.len()],
        "ip": if i.is_multiple_of(7) { "2001:db8::7".to_owned() } else { format!("192.0.2.{}", i % 250) },
        "model": format!("model-{}", i % 4),
        "version": "1.0.0",
        "action": action,
        "decision": decision,
        "reason": "permit:grant-load",
        "request_id": format!("req-{i}"),
        "user_agent": if i.is_multiple_of(3) { TRICKY_UA } else { "python-requests/2.32" },
        "digest": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    });
    if kind == "incident" {
        ev["details"] = json!({"severity": "CRITICAL", "type": "integrity", "n": i});
    }
    json!({"kind": kind, "event": ev})
}

fn setup(events: usize) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let auditor = tmp.path().join("auditor.key");
    let fx = Fx {
        cert: data.join("tls/server.crt"),
        key: data.join("tls/server.key"),
        data,
        auditor,
        tmp,
    };
    run_ok(
        warden(&fx)
            .args(["auditor", "keygen", "--out"])
            .arg(&fx.auditor),
    );
    run_ok(
        warden(&fx)
            .args(["init", "--dev", "--origin", "test.local/siem", "--data-dir"])
            .arg(&fx.data)
            .arg("--auditor")
            .arg(fx.auditor.with_extension("key.pub")),
    );
    if events > 0 {
        append(&fx, 0..events);
    }
    fx
}

fn append(fx: &Fx, range: std::ops::Range<usize>) {
    let (mut child, feeder) = producer(fx, range, usize::MAX);
    feeder.join().unwrap();
    assert!(child.wait().unwrap().success());
}

/// The ledger's lines and each entry's decrypted event.
fn ledger(fx: &Fx) -> (Vec<String>, Vec<Value>) {
    let lines: Vec<String> = std::fs::read_to_string(fx.data.join("logs/model_access.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let shown = run_ok(
        warden(fx)
            .args(["log", "show", "--json", "--auditor-key"])
            .arg(&fx.auditor),
    );
    let events: Vec<Value> = shown
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["event"].clone()
        })
        .collect();
    assert_eq!(lines.len(), events.len());
    (lines, events)
}

fn export(fx: &Fx, url: &str, format: &str, name: &str, extra: &[&str]) -> Value {
    let mut c = warden(fx);
    c.args([
        "export", "--json", "--to", url, "--format", format, "--name", name,
    ])
    .args(extra);
    if format != "policy" {
        c.arg("--auditor-key").arg(&fx.auditor);
    }
    if url.starts_with("tls://") {
        c.arg("--tls-ca").arg(&fx.cert);
    }
    serde_json::from_str(&run_ok(&mut c)).unwrap()
}

fn is_checkpoint(m: &Msg) -> bool {
    m.msg.contains("warden-checkpoint:")
}

/// RFC 5424 PARAM-VALUE as the exporter writes it, after a receiver unescaped it:
/// control characters stay `#ooo`.
fn sd_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 0x20 || c == '\u{7f}' {
                format!("#{:03o}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// CEF extension key/value pairs, unescaped.
fn cef_extensions(msg: &str) -> HashMap<String, String> {
    let mut pipes = 0;
    let mut prev = ' ';
    let mut start = None;
    for (i, c) in msg.char_indices() {
        if c == '|' && prev != '\\' {
            pipes += 1;
            if pipes == 7 {
                start = Some(i + 1);
                break;
            }
        }
        prev = c;
    }
    let ext = &msg[start.expect("7 header fields")..];
    // Positions of unescaped '='.
    let b = ext.as_bytes();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'=' => {
                eqs.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let key_start = |eq: usize| ext[..eq].rfind(' ').map_or(0, |s| s + 1);
    let mut out = HashMap::new();
    for (n, &eq) in eqs.iter().enumerate() {
        let k = &ext[key_start(eq)..eq];
        let end = eqs
            .get(n + 1)
            .map_or(ext.len(), |&e| key_start(e).saturating_sub(1));
        let raw = &ext[eq + 1..end];
        let mut v = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => v.push('\n'),
                    Some('r') => v.push('\r'),
                    Some(o) => v.push(o),
                    None => {}
                }
            } else {
                v.push(c);
            }
        }
        out.insert(k.to_owned(), v);
    }
    out
}

fn field<'a>(ev: &'a Value, k: &str) -> Option<&'a str> {
    ev.get(k).and_then(Value::as_str)
}

/// Checks that `msgs` are exactly the ledger's entries in order, in `format`, plus
/// checkpoints that verify; returns the checkpoint messages.
fn check_delivery(
    format: &str,
    msgs: &[Msg],
    lines: &[String],
    events: &[Value],
    what: &str,
) -> Vec<Msg> {
    let (cps, entries): (Vec<&Msg>, Vec<&Msg>) = msgs.iter().partition(|m| is_checkpoint(m));
    assert_eq!(entries.len(), lines.len(), "{what}: entry count");
    if format == "policy" {
        assert!(cps.is_empty(), "{what}: policy carries entry lines only");
    } else {
        assert_eq!(
            cps.len(),
            1,
            "{what}: one checkpoint after the entries it covers"
        );
        assert!(
            std::ptr::eq(*cps.last().unwrap(), msgs.last().unwrap()),
            "{what}: the checkpoint follows the entries"
        );
    }
    for (i, (m, (line, ev))) in entries.iter().zip(lines.iter().zip(events)).enumerate() {
        let header: Value = serde_json::from_str(line).unwrap();
        let kind = header["kind"].as_str().unwrap();
        let ctx = format!("{what}: entry {i}");
        match format {
            "policy" => {
                let hex = header["encrypted"].as_str().unwrap();
                assert_eq!(m.msg, format!("AUDIT_LOG_ENTRY:{hex}"), "{ctx}");
            }
            "rfc5424" => {
                assert_eq!(m.msg, *line, "{ctx}: MSG is the ledger line");
                assert_eq!(m.msgid, kind, "{ctx}");
                let w = &m.sd["warden@32473"];
                assert_eq!(w["index"], i.to_string(), "{ctx}: {m:?}");
                assert_eq!(w["kind"], kind, "{ctx}");
                assert_eq!(w["epoch"], header["epoch"].to_string(), "{ctx}");
                let e = &m.sd["event@32473"];
                for k in [
                    "user",
                    "ip",
                    "model",
                    "action",
                    "decision",
                    "user_agent",
                    "request_id",
                ] {
                    assert_eq!(
                        field(e, k).map(str::to_owned),
                        field(ev, k).map(sd_text),
                        "{ctx}: {k}"
                    );
                }
                if let Some(d) = ev.get("details") {
                    assert_eq!(field(e, "details"), Some(d.to_string().as_str()), "{ctx}");
                }
            }
            "json" => {
                let mut v: Value = serde_json::from_str(&m.msg).unwrap();
                let got = v.as_object_mut().unwrap().remove("event").unwrap();
                assert_eq!(&got, ev, "{ctx}: decrypted event");
                assert_eq!(v, header, "{ctx}: the rest is the ledger line");
            }
            "ecs" => {
                let v: Value = serde_json::from_str(&m.msg).unwrap();
                assert_eq!(v["event"]["original"], *line, "{ctx}");
                assert_eq!(v["event"]["sequence"], i, "{ctx}");
                assert_eq!(v["event"]["action"], kind, "{ctx}");
                assert_eq!(field(&v["user"], "name"), field(ev, "user"), "{ctx}");
                assert_eq!(
                    field(&v["user_agent"], "original"),
                    field(ev, "user_agent"),
                    "{ctx}"
                );
                assert_eq!(v["warden"]["index"], i, "{ctx}");
                if kind == "incident" {
                    assert_eq!(v["event"]["kind"], "alert", "{ctx}");
                }
            }
            "ocsf" => {
                let v: Value = serde_json::from_str(&m.msg).unwrap();
                assert_eq!(v["raw_data"], *line, "{ctx}");
                assert_eq!(v["metadata"]["sequence"], i, "{ctx}");
                let class = match kind {
                    "model.access" | "model.denied" => 6006,
                    "incident" => 2004,
                    k if k.starts_with("auth.") => 3002,
                    _ => 6003,
                };
                assert_eq!(v["class_uid"], class, "{ctx}");
                assert_eq!(
                    v["type_uid"].as_u64().unwrap() / 100,
                    class,
                    "{ctx}: type_uid"
                );
                assert_eq!(
                    field(&v["actor"]["user"], "name"),
                    field(ev, "user"),
                    "{ctx}"
                );
                if kind == "incident" {
                    assert_eq!(v["severity_id"], 5, "{ctx}: CRITICAL");
                    assert_eq!(v["finding_info"]["title"], "integrity", "{ctx}");
                    assert_eq!(
                        v["finding_info"]["uid"],
                        format!("test.local/siem/{i}"),
                        "{ctx}"
                    );
                }
            }
            "cef" => {
                assert!(
                    m.msg.starts_with("CEF:0|Warden|Warden|"),
                    "{ctx}: {}",
                    m.msg
                );
                let x = cef_extensions(&m.msg);
                assert_eq!(x["externalId"], i.to_string(), "{ctx}");
                assert_eq!(x["cat"], kind, "{ctx}");
                assert_eq!(
                    x.get("suser").map(String::as_str),
                    field(ev, "user"),
                    "{ctx}"
                );
                assert_eq!(
                    x.get("requestClientApplication").map(String::as_str),
                    field(ev, "user_agent"),
                    "{ctx}"
                );
            }
            other => panic!("unknown format {other}"),
        }
    }
    cps.into_iter().cloned().collect()
}

/// `warden verify --trusted-checkpoint` accepts the checkpoint as the SIEM stored it,
/// and the same checkpoint exposes a ledger cut short.
fn check_checkpoint(fx: &Fx, cp: &Msg, lines: usize, truncate_too: bool) {
    let file = fx.tmp.path().join("siem-checkpoint.txt");
    std::fs::write(&file, &cp.msg).unwrap();
    let st = warden(fx)
        .arg("verify")
        .arg("--trusted-checkpoint")
        .arg(&file)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "the exported checkpoint verifies against the ledger"
    );
    if truncate_too {
        let cut = fx.tmp.path().join("cut");
        std::fs::create_dir_all(&cut).unwrap();
        let text = std::fs::read_to_string(fx.data.join("logs/model_access.jsonl")).unwrap();
        let keep: String = text
            .lines()
            .take(lines / 2)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(cut.join("model_access.jsonl"), keep).unwrap();
        // Keep only checkpoints within what is left, as a truncating attacker would.
        let cps = std::fs::read_to_string(fx.data.join("logs/model_access.checkpoints")).unwrap();
        let kept: String = cps
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l).unwrap()["size"]
                    .as_u64()
                    .unwrap()
                    <= (lines / 2) as u64
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(cut.join("model_access.checkpoints"), kept).unwrap();
        let out = warden(fx)
            .env_remove("WARDEN_DATA_DIR")
            .arg("verify")
            .arg("--log")
            .arg(cut.join("model_access.jsonl"))
            .arg("--root-pub")
            .arg(fx.data.join("keys/root.pub"))
            .arg("--trusted-checkpoint")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "a truncated ledger fails against the SIEM's checkpoint: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_format_reaches_rsyslog_and_syslog_ng_over_tcp_and_tls() {
    let fx = setup(300);
    let (lines, events) = ledger(&fx);
    for kind in [Kind::Rsyslog, Kind::SyslogNg] {
        let r = Receiver::start(
            kind,
            &fx.tmp.path().join(format!("{kind:?}")),
            &fx.cert,
            &fx.key,
        );
        for format in FORMATS {
            for tls in [false, true] {
                let url = match (tls, format == "policy") {
                    (false, false) => format!("tcp://127.0.0.1:{}", r.ports.tcp),
                    (true, false) => format!("tls://localhost:{}", r.ports.tls),
                    (false, true) => format!("tcp://127.0.0.1:{}", r.ports.tcp_lines),
                    (true, true) => format!("tls://localhost:{}", r.ports.tls_lines),
                };
                let what = format!("{kind:?} {format} {}", if tls { "TLS" } else { "TCP" });
                let before = r.messages().len();
                let name = format!("{kind:?}-{format}-{tls}");
                let summary = export(&fx, &url, format, &name, &[]);
                assert_eq!(summary["delivered"], lines.len(), "{what}: {summary}");
                assert_eq!(summary["lag"], 0, "{what}");
                let want = lines.len() + usize::from(format != "policy");
                let msgs = r.wait_for(before + want, Duration::from_secs(20));
                assert_eq!(msgs.len(), before + want, "{what}: messages stored");
                let cps = check_delivery(format, &msgs[before..], &lines, &events, &what);
                if let Some(cp) = cps.last() {
                    check_checkpoint(&fx, cp, lines.len(), format == "rfc5424" && !tls);
                }
                // A second run finds nothing new: the cursor is durable.
                let again = export(&fx, &url, format, &name, &[]);
                assert_eq!(again["delivered"], 0, "{what}: {again}");
            }
        }
    }
    // The status command reports every sink with no lag.
    let status: Value =
        serde_json::from_str(&run_ok(warden(&fx).args(["export", "status", "--json"]))).unwrap();
    let sinks = status["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2 * FORMATS.len() * 2);
    assert!(
        sinks
            .iter()
            .all(|s| s["lag"] == 0 && s["next"] == lines.len()),
        "{status}"
    );
}

/// Feeds events `range` to `warden log append --stdin` at about `per_sec`.
fn producer(
    fx: &Fx,
    range: std::ops::Range<usize>,
    per_sec: usize,
) -> (Child, std::thread::JoinHandle<()>) {
    let mut child = warden(fx)
        .args(["log", "append", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let start = Instant::now();
        let step = 500;
        for chunk in range.clone().step_by(step) {
            let mut buf = String::new();
            for i in chunk..(chunk + step).min(range.end) {
                buf.push_str(&event(i).to_string());
                buf.push('\n');
            }
            stdin.write_all(buf.as_bytes()).unwrap();
            let due = Duration::from_secs_f64((chunk - range.start + step) as f64 / per_sec as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    });
    (child, feeder)
}

fn follower(fx: &Fx, url: &str, format: &str, name: &str) -> Child {
    let mut c = warden(fx);
    c.args([
        "export", "--follow", "--to", url, "--format", format, "--name", name,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if format != "policy" {
        c.arg("--auditor-key").arg(&fx.auditor);
    }
    if url.starts_with("tls://") {
        c.arg("--tls-ca").arg(&fx.cert);
    }
    c.spawn().unwrap()
}

fn signal(child: &mut Child, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn lag(fx: &Fx, name: &str) -> Option<u64> {
    let status: Value =
        serde_json::from_str(&run_ok(warden(fx).args(["export", "status", "--json"]))).ok()?;
    status["sinks"]
        .as_array()?
        .iter()
        .find(|s| s["sink"] == name)
        .and_then(|s| s["lag"].as_u64())
}

/// Kills the receiver and the exporter (SIGKILL) while entries are being appended and
/// exported; afterwards every index is at the receiver. The receiver is frozen first,
/// so that it dies with data unread in its socket and read but not yet written.
fn survive_kills(kind: Kind, format: &str, tls: bool) {
    let fx = setup(0);
    let mut r = Receiver::start(kind, &fx.tmp.path().join("receiver"), &fx.cert, &fx.key);
    let url = match (tls, format == "policy") {
        (false, false) => format!("tcp://127.0.0.1:{}", r.ports.tcp),
        (true, false) => format!("tls://localhost:{}", r.ports.tls),
        (false, true) => format!("tcp://127.0.0.1:{}", r.ports.tcp_lines),
        (true, true) => format!("tls://localhost:{}", r.ports.tls_lines),
    };
    let name = "faults";
    let n = 60_000;
    let (mut prod, feeder) = producer(&fx, 0..n, 12_000);
    let mut exp = follower(&fx, &url, format, name);
    std::thread::sleep(Duration::from_millis(1500));
    r.freeze();
    std::thread::sleep(Duration::from_millis(800));
    r.kill("KILL");
    std::thread::sleep(Duration::from_millis(700));
    r.restart();
    std::thread::sleep(Duration::from_millis(1000));
    signal(&mut exp, "KILL");
    std::thread::sleep(Duration::from_millis(300));
    exp = follower(&fx, &url, format, name);
    feeder.join().unwrap();
    assert!(prod.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(120);
    while lag(&fx, name) != Some(0) {
        assert!(Instant::now() < deadline, "the exporter did not catch up");
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&mut exp, "TERM");
    let (lines, _) = ledger(&fx);
    let total = lines.len();
    assert!(total > n, "all appended");
    let index_of: std::collections::BTreeMap<String, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["encrypted"].as_str().unwrap().to_owned(), i)
        })
        .collect();
    let msgs = r.wait_for(total, Duration::from_secs(30));
    let mut seen = HashSet::new();
    let mut count = 0usize;
    // An exporter killed in the middle of a write leaves the receiver the start of a
    // message (TCP framing cannot mark it); the whole message is sent again. Such a
    // fragment must be a true prefix of an entry's message, and rare.
    let mut fragments = 0usize;
    for m in msgs.iter().filter(|m| !is_checkpoint(m)) {
        let index = if format == "policy" {
            let hex = m.msg.strip_prefix("AUDIT_LOG_ENTRY:").unwrap_or(&m.msg);
            match index_of.get(hex) {
                Some(&i) => Some(i),
                None => {
                    let prefix = "AUDIT_LOG_ENTRY:";
                    let truncated = if m.msg.len() <= prefix.len() {
                        prefix.starts_with(&m.msg)
                    } else {
                        m.msg.starts_with(prefix)
                            && index_of
                                .range(hex.to_owned()..)
                                .next()
                                .is_some_and(|(h, _)| h.starts_with(hex))
                    };
                    assert!(
                        truncated,
                        "{kind:?}: a message that is no entry's: {}",
                        m.msg
                    );
                    None
                }
            }
        } else {
            m.sd["warden@32473"]["index"]
                .as_str()
                .and_then(|s| s.parse().ok())
        };
        match index {
            Some(i) => {
                seen.insert(i);
                count += 1;
            }
            None => fragments += 1,
        }
    }
    assert!(fragments <= 2, "{kind:?}: {fragments} truncated messages");
    let missing: Vec<usize> = (0..total).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{kind:?}: {} of {total} indices missing (first: {:?}); {count} messages",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!(
        "{kind:?} {format}: {total} entries, {count} messages ({} duplicates, {fragments} truncated)",
        count - total
    );
}

#[test]
fn rsyslog_killed_and_exporter_killed_mid_stream_lose_nothing() {
    survive_kills(Kind::Rsyslog, "policy", false);
}

#[test]
fn syslog_ng_killed_and_exporter_killed_mid_stream_lose_nothing() {
    survive_kills(Kind::SyslogNg, "rfc5424", true);
}

/// The pipeline the policy documents, run as written (Debian's OpenBSD netcat waits for
/// the server after its input ends unless given -N, so `nc` is that), and the exporter
/// deliver the same lines to the same listener.
#[test]
fn policy_pipeline_and_policy_format_deliver_the_same_lines() {
    let fx = setup(40);
    let (lines, _) = ledger(&fx);
    let r = Receiver::start(Kind::Rsyslog, &fx.tmp.path().join("rs"), &fx.cert, &fx.key);
    let port = r.ports.tcp_lines;
    let script = format!(
        "nc() {{ command nc -N \"$@\"; }}\n\
         jq -r '.encrypted' logs/model_access.jsonl | while read enc; do echo \"AUDIT_LOG_ENTRY:$enc\" | nc 127.0.0.1 {port}; done"
    );
    let st = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&fx.data)
        .status()
        .unwrap();
    assert!(st.success());
    let piped: Vec<String> = r
        .wait_for(lines.len(), Duration::from_secs(20))
        .into_iter()
        .map(|m| m.msg)
        .collect();
    assert_eq!(piped.len(), lines.len());
    let summary = export(
        &fx,
        &format!("tcp://127.0.0.1:{port}"),
        "policy",
        "policy",
        &[],
    );
    assert_eq!(summary["delivered"], lines.len());
    let all: Vec<String> = r
        .wait_for(2 * lines.len(), Duration::from_secs(20))
        .into_iter()
        .map(|m| m.msg)
        .collect();
    assert_eq!(all.len(), 2 * lines.len());
    assert_eq!(
        &all[lines.len()..],
        &piped[..],
        "the same lines, in the same order"
    );
    assert!(piped.iter().all(|l| l.starts_with("AUDIT_LOG_ENTRY:")));
}

/// A minimal HEC endpoint: answers 503 to the first request, 200 afterwards, and keeps
/// every event it accepted.
fn hec_server(token: &'static str) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{BufRead, BufReader, Read};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut requests = 0;
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let mut rd = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            loop {
                let mut head = Vec::new();
                let mut len = 0usize;
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    if rd.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if lower.starts_with("authorization:") {
                        auth = line["authorization:".len()..].trim().to_owned();
                    }
                    head.push(line);
                }
                if head.is_empty() {
                    break;
                }
                let mut body = vec![0u8; len];
                rd.read_exact(&mut body).unwrap();
                requests += 1;
                let ok = requests > 1 && auth == format!("Splunk {token}");
                if ok {
                    let mut de = serde_json::Deserializer::from_slice(&body).into_iter::<Value>();
                    let mut g = g.lock().unwrap();
                    while let Some(Ok(v)) = de.next() {
                        g.push(v);
                    }
                }
                let (status, text) = if ok {
                    ("200 OK", "{\"text\":\"Success\",\"code\":0}")
                } else {
                    ("503 Service Unavailable", "{\"text\":\"busy\"}")
                };
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
            }
        }
    });
    (port, got)
}

#[test]
fn file_and_http_sinks_deliver_every_entry() {
    let fx = setup(50);
    let (lines, events) = ledger(&fx);
    // file: one ECS document per line, fsynced before the cursor moves.
    let file = fx.tmp.path().join("siem/ecs.jsonl");
    export(&fx, &format!("file:{}", file.display()), "ecs", "file", &[]);
    let got: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), lines.len() + 1);
    for (i, v) in got.iter().take(lines.len()).enumerate() {
        assert_eq!(v["event"]["original"], lines[i]);
        assert_eq!(field(&v["user"], "name"), field(&events[i], "user"));
    }
    // http: HEC events; the first answer is a 503, so delivery is retried.
    let (port, got) = hec_server("hec-secret");
    let mut c = warden(&fx);
    c.env("HEC", "hec-secret").args([
        "export",
        "--json",
        "--to",
        &format!("http://127.0.0.1:{port}/services/collector/event"),
        "--format",
        "json",
        "--hec-token-env",
        "HEC",
        "--auditor-key",
    ]);
    c.arg(&fx.auditor);
    let summary: Value = serde_json::from_str(&run_ok(&mut c)).unwrap();
    assert_eq!(summary["delivered"], lines.len());
    let got = got.lock().unwrap();
    let entries: Vec<&Value> = got
        .iter()
        .filter(|e| e["event"]["type"] != "checkpoint")
        .collect();
    assert_eq!(entries.len(), lines.len());
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["sourcetype"], "warden:json");
        assert_eq!(e["event"]["index"], i);
        assert_eq!(e["event"]["event"], events[i]);
    }
    // Plain TCP off this machine is refused for decrypted events.
    let out = warden(&fx)
        .args([
            "export",
            "--to",
            "tcp://192.0.2.1:514",
            "--format",
            "ecs",
            "--auditor-key",
        ])
        .arg(&fx.auditor)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only over tls://"));
}

/// Starts `warden serve` on a free loopback port; returns it, its address, and what it
/// printed until it was serving.
fn start_serve(fx: &Fx) -> (Child, String, String) {
    serve::start(warden(fx))
}

/// `[[siem]]` in warden.toml: `warden serve` exports beside the service, shows the
/// exporter's lag at /metrics, and delivers the last entries (its own `system.stop`)
/// before it exits.
#[test]
fn serve_exports_to_configured_sinks() {
    use std::io::Read;
    let fx = setup(20);
    let r = Receiver::start(
        Kind::SyslogNg,
        &fx.tmp.path().join("sng"),
        &fx.cert,
        &fx.key,
    );
    let cfg = fx.data.join("warden.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[[siem]]\nname = \"soc\"\nto = \"tls://localhost:{}\"\nformat = \"rfc5424\"\nauditor_key = \"{}\"\ntls_ca = \"tls/server.crt\"\n",
        r.ports.tls,
        fx.auditor.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let (mut serve, addr, seen) = start_serve(&fx);
    assert!(seen.contains("exporting to tls://localhost"), "{seen}");
    // An unauthenticated request: an auth.failure entry, exported while serving.
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    assert!(get("/v1/models").starts_with("HTTP/1.1 401"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !r.messages().iter().any(|m| m.msgid == "auth.failure") {
        assert!(
            Instant::now() < deadline,
            "auth.failure was not exported while serving"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = get("/metrics");
    assert!(
        metrics.contains("warden_siem_lag_entries{sink=\"soc\"}"),
        "lag gauge at /metrics"
    );
    signal(&mut serve, "TERM");
    let (lines, events) = ledger(&fx);
    assert!(lines.last().unwrap().contains("\"kind\":\"system.stop\""));
    let msgs = r.wait_for(lines.len() + 1, Duration::from_secs(20));
    let entries: Vec<&Msg> = msgs.iter().filter(|m| !is_checkpoint(m)).collect();
    assert_eq!(
        entries.len(),
        lines.len(),
        "every entry, system.stop included"
    );
    for (i, m) in entries.iter().enumerate() {
        assert_eq!(m.msg, lines[i]);
        assert_eq!(
            field(&m.sd["event@32473"], "user").map(str::to_owned),
            field(&events[i], "user").map(sd_text)
        );
    }
    let status: Value =
        serde_json::from_str(&run_ok(warden(&fx).args(["export", "status", "--json"]))).unwrap();
    assert_eq!(status["sinks"][0]["sink"], "soc");
    assert_eq!(status["sinks"][0]["lag"], 0, "{status}");
}

/// UDP: one datagram per message, in order (best effort: nothing confirms receipt).
#[test]
fn udp_sends_one_datagram_per_entry() {
    let fx = setup(30);
    let (lines, _) = ledger(&fx);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let summary = export(
        &fx,
        &format!("udp://127.0.0.1:{port}"),
        "rfc5424",
        "udp",
        &[],
    );
    assert_eq!(summary["delivered"], lines.len());
    let mut buf = vec![0u8; 65_536];
    for (i, line) in lines.iter().enumerate() {
        let n = sock.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(msg.starts_with('<'), "{msg}");
        assert!(msg.contains(&format!(" index=\"{i}\" ")), "{msg}");
        assert!(
            msg.ends_with(line.as_str()),
            "datagram {i} carries the ledger line"
        );
    }
    let n = sock.recv(&mut buf).unwrap();
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .contains("warden-checkpoint:")
    );
}

/// A cursor whose saved offset no longer holds its saved index (the ledger was replaced)
/// stops the export instead of sending from a wrong place.
#[test]
fn a_cursor_that_no_longer_matches_the_ledger_is_refused() {
    let fx = setup(10);
    let file = fx.tmp.path().join("out.jsonl");
    let url = format!("file:{}", file.display());
    export(&fx, &url, "json", "f", &[]);
    let other = setup(3);
    for f in ["model_access.jsonl", "model_access.checkpoints"] {
        std::fs::copy(
            other.data.join("logs").join(f),
            fx.data.join("logs").join(f),
        )
        .unwrap();
    }
    // The same sink (decrypting, as `export` above): only the ledger changed.
    let out = warden(&fx)
        .args(["export", "--to", &url, "--format", "json", "--name", "f"])
        .arg("--auditor-key")
        .arg(&fx.auditor)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match the ledger"), "{err}");
    // The cursor is untouched: the same refusal again, nothing appended.
    let before = std::fs::metadata(&file).unwrap().len();
    let again = warden(&fx)
        .args(["export", "--to", &url, "--format", "json", "--name", "f"])
        .arg("--auditor-key")
        .arg(&fx.auditor)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), before);
}

/// RFC 5425 mutual authentication: a receiver that requires a client certificate
/// refuses the exporter without one and accepts it with `--tls-cert`/`--tls-key`.
#[test]
fn tls_client_certificates_reach_a_receiver_that_requires_them() {
    let fx = setup(10);
    let (lines, _) = ledger(&fx);
    let pki = fx.tmp.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let sh = |cmd: &str| {
        let st = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&pki)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=siem-clients",
    );
    sh(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj /CN=warden-exporter",
    );
    std::fs::write(
        pki.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    sh(
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 -extfile client.ext",
    );
    let r = Receiver::start_with(
        Kind::SyslogNg,
        &fx.tmp.path().join("sng"),
        &fx.cert,
        &fx.key,
        Some(&pki.join("ca.pem")),
    );
    let url = format!("tls://localhost:{}", r.ports.tls);
    // The same sink as the delivery below (decrypting), without a client certificate.
    let refused = warden(&fx)
        .args(["export", "--to", &url, "--format", "rfc5424", "--name", "m"])
        .arg("--tls-ca")
        .arg(&fx.cert)
        .arg("--auditor-key")
        .arg(&fx.auditor)
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "no client certificate, no delivery"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("gave up after"));
    assert!(r.messages().is_empty());
    let cert = pki.join("client.pem");
    let key = pki.join("client.key");
    let summary = export(
        &fx,
        &url,
        "rfc5424",
        "m",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(summary["delivered"], lines.len());
    let msgs = r.wait_for(lines.len() + 1, Duration::from_secs(20));
    assert_eq!(msgs.len(), lines.len() + 1);
}

/// `[schedule]`: `warden serve` verifies the live ledger incrementally, writes signed
/// reports and removes archived reports past retention, each run a ledger entry; the
/// ledger verifies afterwards.
#[test]
fn serve_verifies_and_reports_on_a_schedule() {
    let fx = setup(30);
    let cfg = fx.data.join("warden.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "[schedule]\n",
        &format!("[schedule]\nauditor_key = \"{}\"\n", fx.auditor.display()),
    );
    let text = text
        .replace("verify_every_secs = 86400", "verify_every_secs = 1")
        .replace("report_every_secs = 604800", "report_every_secs = 2")
        .replace("retention_every_secs = 86400", "retention_every_secs = 2");
    assert!(
        text.contains("verify_every_secs = 1")
            && text.contains("report_every_secs = 2")
            && text.contains("retention_every_secs = 2")
            && text.contains("reports_days = 365"),
        "{text}"
    );
    std::fs::write(&cfg, text).unwrap();
    // An archived report from two years ago, past the default retention of 365 days.
    let old = fx.data.join("reports/report-20241130T000000.json");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, b"{}").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(730 * 86_400))
        .unwrap();
    let (mut serve, addr, _) = start_serve(&fx);
    // Keep the ledger busy while the jobs run: unauthenticated requests are entries.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reports = fx.data.join("reports");
    let has_report = || {
        std::fs::read_dir(&reports).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".html.sig"))
        })
    };
    let mut requests = 0;
    while !(has_report() && reports.join("verify.state").exists() && requests > 40) || old.exists()
    {
        assert!(
            Instant::now() < deadline,
            "no scheduled report or verification"
        );
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = write!(
                s,
                "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut b = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut b);
            requests += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    signal(&mut serve, "TERM");
    let shown = run_ok(
        warden(&fx)
            .args(["log", "show", "--json", "--auditor-key"])
            .arg(&fx.auditor),
    );
    let entries: Vec<Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let runs: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "verification.run")
        .collect();
    assert!(runs.len() >= 2, "verification runs: {}", runs.len());
    for r in &runs {
        assert_eq!(
            r["event"]["details"]["clean"], true,
            "a live ledger verifies: {r}"
        );
    }
    assert!(
        runs.iter()
            .any(|r| r["event"]["details"]["incremental"] == true),
        "later runs resume from the saved state"
    );
    let generated: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "report.generated")
        .collect();
    assert!(!generated.is_empty());
    let removed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "retention.delete")
        .collect();
    assert_eq!(
        removed.len(),
        1,
        "one retention run had something to remove"
    );
    assert_eq!(
        removed[0]["event"]["details"]["reports"],
        serde_json::json!(["reports/report-20241130T000000.json"])
    );
    // Every report file named in the ledger exists, has that digest, and its
    // signature holds.
    for g in &generated {
        for f in g["event"]["details"]["files"].as_array().unwrap() {
            let path = fx.data.join(f["file"].as_str().unwrap());
            let st = warden(&fx)
                .args(["report", "verify"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(st.status.success(), "{}", path.display());
        }
    }
    let json_report = std::fs::read_dir(&reports)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let r: Value = serde_json::from_slice(&std::fs::read(&json_report).unwrap()).unwrap();
    assert_eq!(r["integrity"]["clean"], true, "{}", r["integrity"]);
    assert!(
        r["accesses"]["unique_users"].is_u64(),
        "decrypted with the auditor key"
    );
    let st = warden(&fx).arg("verify").status().unwrap();
    assert!(st.success());
}
