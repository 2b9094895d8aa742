//! Incidents as an operator meets them: `warden serve` with a webhook configured in
//! `warden.toml`, credential stuffing against it, the alert delivered (signed, with the
//! bearer token) after the receiver first refuses it, and `warden incident list|show|ack`
//! on the data directory afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod cli;
mod serve;

use cli::Fx;

/// `warden incident list --json` with `extra` arguments.
fn list(fx: &Fx, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "incident",
        "list",
        "--auditor-key",
        "auditor.key",
        "--json",
        "--as",
        "admin",
    ];
    args.extend_from_slice(extra);
    let v: Value = serde_json::from_str(&fx.ok(&args)).unwrap();
    v.as_array()
        .or_else(|| v["incidents"].as_array())
        .unwrap()
        .clone()
}

/// One request the webhook receiver got: its head lines and body.
#[derive(Clone, Debug)]
struct Got {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        self.head.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// A webhook receiver on loopback that answers 503 to its first request and 204 after.
fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/warden", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end().to_owned();
                if line.is_empty() {
                    break;
                }
                head.push(line);
            }
            let got = Got {
                head,
                body: Vec::new(),
            };
            let len: usize = got
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let mut all = g.lock().unwrap();
            all.push(Got { body, ..got });
            let status = if all.len() == 1 {
                "503 Service Unavailable"
            } else {
                "204 No Content"
            };
            drop(all);
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

/// A request with a token that is not one of ours.
fn bad_login(addr: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /v1/models/small/versions/1.0/files/small.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer wdn_guessed\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn credential_stuffing_alerts_the_webhook_and_the_cli_lists_and_acknowledges_it() {
    let fx = Fx::initialised();
    let (url, got) = receiver();
    // The operator's configuration: a lower brute-force threshold, and the webhook.
    let cfg = fx.data.join("warden.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("brute_force_failures = 20"), "{text}");
    let text = text.replace("brute_force_failures = 20", "brute_force_failures = 5")
        + &format!(
            "\n[[detection.webhooks]]\nurl = \"{url}\"\nmin_severity = \"HIGH\"\n\
             token_env = \"HOOK_TOKEN\"\nsecret_env = \"HOOK_SECRET\"\nbackoff_ms = 100\n"
        );
    std::fs::write(&cfg, text).unwrap();

    // A missing secret is a clear error at start, not a silent alert-less service.
    let out = fx.run(&["serve", "--listen", "127.0.0.1:0"]);
    let (good, err) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!good);
    assert!(err.contains("environment variable HOOK_"), "{err}");

    let mut cmd = fx.cmd();
    cmd.env("HOOK_TOKEN", "hook-token-1")
        .env("HOOK_SECRET", "hook-secret-1");
    let (mut child, addr, _) = serve::start(cmd);
    for _ in 0..6 {
        assert_eq!(bad_login(&addr), 401);
    }
    let t = Instant::now();
    while got.lock().unwrap().len() < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "refused once, then delivered: {got:?}");
    assert_eq!(got[0].body, got[1].body, "the retry resends the same alert");
    let alert = &got[1];
    assert!(
        alert.head[0].starts_with("POST /hooks/warden "),
        "{:?}",
        alert.head
    );
    assert_eq!(
        alert.header("authorization").unwrap(),
        "Bearer hook-token-1"
    );
    // The receiver can check the signature with nothing but the shared key.
    let sig = alert.header("x-warden-signature").unwrap();
    let (t, v1) = sig.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
    let check = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; d=sys.stdin.buffer.read(); \
             print(hmac.new(b'hook-secret-1', sys.argv[1].encode()+b'.'+d, hashlib.sha256).hexdigest())",
            t,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(&alert.body)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8(check.stdout).unwrap().trim(), v1);
    let body: Value = serde_json::from_slice(&alert.body).unwrap();
    assert_eq!(body["type"], "warden.incident");
    assert_eq!(body["detector"], "brute_force");
    assert_eq!(body["severity"], "HIGH");
    assert_eq!(body["ip"], "127.0.0.1");
    assert_eq!(body["evidence"].as_array().unwrap().len(), 5);
    let index = body["incident"].as_u64().unwrap();

    // The CLI, after the service stopped.
    let incidents = list(&fx, &[]);
    let inc = incidents
        .iter()
        .find(|i| i["index"] == index)
        .unwrap_or_else(|| panic!("incident {index} listed: {incidents:?}"));
    assert_eq!(inc["detector"], "brute_force");
    assert_eq!(inc["severity"], "HIGH");
    assert!(
        inc["playbook"]
            .as_array()
            .unwrap()
            .contains(&"alert".into()),
        "{inc}"
    );
    let shown = fx.ok(&[
        "incident",
        "show",
        &index.to_string(),
        "--auditor-key",
        "auditor.key",
        "--as",
        "admin",
    ]);
    assert!(
        shown.contains("brute_force") && shown.contains("HIGH"),
        "{shown}"
    );
    // The alert's outcome is a ledger entry naming the incident.
    let entries = fx.ok(&["log", "show", "--auditor-key", "auditor.key", "--json"]);
    let alerts: Vec<Value> = entries
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "playbook.alert")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let d = &alerts[0]["event"]["details"];
    assert_eq!(d["incident"], index);
    assert_eq!(d["delivered"], true);
    assert_eq!(d["attempts"], 2);
    assert!(!entries.contains("hook-token-1") && !entries.contains("hook-secret-1"));

    // Acknowledging needs the audit right, is recorded, and closes the incident.
    let out = fx.run(&[
        "incident",
        "ack",
        &index.to_string(),
        "--note",
        "x",
        "--as",
        "nobody",
    ]);
    let (good, err) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!good, "an unknown principal cannot acknowledge");
    assert!(!err.is_empty());
    fx.ok(&[
        "incident",
        "ack",
        &index.to_string(),
        "--note",
        "blocked 127.0.0.1 upstream",
        "--as",
        "admin",
    ]);
    let open = list(&fx, &["--open"]);
    assert!(open.iter().all(|i| i["index"] != index), "{open:?}");
    let out = fx.run(&["incident", "ack", "0", "--note", "x", "--as", "admin"]);
    let (good, err) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!good && err.contains("not an incident"), "{err}");
    fx.ok(&["verify", "--auditor-key", "auditor.key"]);
}

/// Entries local clients record through the service's writer socket (the CLI, Python
/// workers) reach the service's detectors, as the entries it records itself do: 16
/// denials of one principal recorded by the CLI raise `repeated_denials` (15 in 10
/// minutes). They used to reach the ledger only.
#[test]
fn denials_recorded_by_local_clients_reach_the_service_s_detectors() {
    let fx = Fx::initialised();
    let (mut child, _addr, _) = serve::start(fx.cmd());
    for i in 0..16 {
        fx.ok(&[
            "log",
            "append",
            "--kind",
            "model.denied",
            "--event",
            &format!(r#"{{"user":"mallory","model":"m{i}","reason":"no grant"}}"#),
        ]);
    }
    let t = Instant::now();
    let raised = |fx: &Fx| {
        fx.entries("incident")
            .iter()
            .filter(|e| e["event"]["details"]["detector"] == "repeated_denials")
            .count()
    };
    while raised(&fx) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no incident for 16 denials recorded through the writer socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    assert_eq!(raised(&fx), 1);
    // They went through the service's socket, not around it.
    let denied = fx.entries("model.denied");
    assert_eq!(denied.len(), 16);
    assert!(
        denied.iter().all(|e| !e["event"]["via"].is_null()),
        "{denied:?}"
    );
}

/// A restart of the service keeps what its detectors learnt: 5 failed authentications,
/// a stop and a start, 5 more (threshold 8) raise one brute force. Before, the
/// restarted service started over and saw 5: none. The state it keeps is sealed, 0600.
#[test]
fn a_brute_force_split_by_a_restart_is_one_brute_force() {
    let fx = Fx::initialised();
    let cfg = fx.data.join("warden.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("brute_force_failures = 20", "brute_force_failures = 8"),
    )
    .unwrap();
    let stop = |mut child: std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(child.wait().unwrap().success());
    };
    let (child, addr, _) = serve::start(fx.cmd());
    for _ in 0..5 {
        assert_eq!(bad_login(&addr), 401);
    }
    stop(child);
    let state = fx.data.join("detection.state");
    let sealed = std::fs::read(&state).expect("the detectors' state is kept");
    assert!(!sealed.windows(9).any(|w| w == b"127.0.0.1"), "sealed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let brute_forces = |fx: &Fx| {
        fx.entries("incident")
            .iter()
            .filter(|e| e["event"]["details"]["detector"] == "brute_force")
            .count()
    };
    assert_eq!(brute_forces(&fx), 0);
    let (child, addr, _) = serve::start(fx.cmd());
    for _ in 0..5 {
        assert_eq!(bad_login(&addr), 401);
    }
    let t = Instant::now();
    while brute_forces(&fx) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no incident for 5 + 5 failures on both sides of a restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(child);
    assert_eq!(brute_forces(&fx), 1);
}
