//! Three `warden witness serve` processes on loopback and a real ledger: cosigning to a
//! quorum, one witness down, a fork by the root key's holder, rollbacks, malformed
//! requests, and a witness killed with SIGKILL that accepts no rollback afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{build, event, lines, open_with};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use warden_core::cosign::VerifierKey;
use warden_core::entry::EntrySpans;
use warden_core::merkle::{Hash, consistency_proof, leaf_hash};
use warden_core::note::Note;
use warden_core::record::CheckpointRecord;
use warden_store::ledger::ManualClock;

const INTERVAL: u64 = 60;

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

struct Witness {
    child: Child,
    addr: String,
    vkeys: Vec<VerifierKey>,
    key: PathBuf,
    state: PathBuf,
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, Vec<VerifierKey>) {
    let key = dir.join(format!("{}.key", name.replace('/', "_")));
    let out = warden()
        .args(["witness", "keygen", "--name", name, "--ed25519", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = warden()
        .args(["witness", "vkey", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    let vkeys = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| VerifierKey::parse(l).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(vkeys.len(), 2, "an ML-DSA-44 and an Ed25519 key");
    (key, vkeys)
}

fn start(key: &Path, state: &Path, root_pub: &Path, vkeys: Vec<VerifierKey>) -> Witness {
    let mut child = warden()
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(key)
        .arg("--state")
        .arg(state)
        .arg("--log")
        .arg(root_pub)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("warden: witness serving http://")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("witness did not start: {line}"))
        .to_owned();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    Witness {
        child,
        addr,
        vkeys,
        key: key.to_owned(),
        state: state.to_owned(),
    }
}

/// One HTTP/1.1 request; the status, content type and body of the answer.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A server refusing an oversized body may answer before it has read it all.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, ctype, body.to_owned())
}

/// A ledger as a log presents it to witnesses: its leaves, its signed checkpoints and
/// its epochs' rotation records.
struct Log {
    leaves: Vec<Hash>,
    checkpoints: Vec<CheckpointRecord>,
    rotations: Vec<(u64, String)>,
}

fn read_log(log: &Path) -> Log {
    let all = common::all_lines(log);
    let leaves = all.iter().map(|l| leaf_hash(l)).collect();
    let rotations = all
        .iter()
        .filter_map(|l| {
            let s = EntrySpans::parse(l).unwrap();
            let r = s.rotation(l)?;
            let rec = warden_core::epoch::RotationRecord::decode(r).unwrap();
            Some((rec.cert.epoch, r.to_owned()))
        })
        .collect();
    let checkpoints = lines(&log.with_extension("checkpoints"))
        .iter()
        .map(|l| CheckpointRecord::decode(l).unwrap())
        .collect();
    Log {
        leaves,
        checkpoints,
        rotations,
    }
}

impl Log {
    fn at(&self, size: u64) -> &CheckpointRecord {
        self.checkpoints.iter().find(|c| c.size == size).unwrap()
    }

    fn request(&self, old: u64, size: u64) -> String {
        let mut s = format!("old {old}\n");
        if old != 0 && old < size {
            for h in consistency_proof(&self.leaves[..size as usize], old).unwrap() {
                s.push_str(&base64_encode(&h));
                s.push('\n');
            }
        }
        s.push('\n');
        s.push_str(&self.at(size).note);
        s
    }

    fn rotation(&self, epoch: u64) -> &str {
        &self.rotations.iter().find(|(e, _)| *e == epoch).unwrap().1
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Submits checkpoint `size` (from `old`), presenting its epoch's certificate when the
/// witness does not know the key yet, as a log does; the cosignature lines.
fn submit(w: &Witness, log: &Log, old: u64, size: u64) -> (u16, String, String) {
    let body = log.request(old, size);
    let r = http(&w.addr, "POST", "/add-checkpoint", body.as_bytes());
    if r.0 != 403 {
        return r;
    }
    let (st, _, b) = http(
        &w.addr,
        "POST",
        "/warden/epoch",
        log.rotation(log.at(size).epoch).as_bytes(),
    );
    assert_eq!(st, 200, "{b}");
    http(&w.addr, "POST", "/add-checkpoint", body.as_bytes())
}

/// Checks that `lines` hold a valid cosignature by each of `w`'s keys on the note.
fn assert_cosigned(w: &Witness, note: &str, lines: &str) {
    let text = Note::parse(note.as_bytes()).unwrap().text().to_owned();
    assert_cosigned_note(w, &format!("{text}\n{lines}"));
}

/// Checks that the note `full` carries a valid cosignature by each of `w`'s keys.
fn assert_cosigned_note(w: &Witness, full: &str) {
    let cosigned = Note::parse(full.as_bytes()).unwrap();
    let text = cosigned.text().to_owned();
    for k in &w.vkeys {
        let sig = cosigned
            .signatures()
            .iter()
            .find(|s| k.names(s))
            .unwrap_or_else(|| panic!("no cosignature by {k}"));
        let ts = k.verify_cosignature(&text, sig).unwrap();
        assert!(ts > 1_700_000_000);
    }
}

/// Reopens the ledger of the fixture in `dir` and appends `n` more entries.
fn grow(dir: &Path, log: &Path, clock_start: u64, from: u64, n: u64) {
    let clock = ManualClock::new(clock_start);
    let ledger = open_with(
        &dir.join("root.key"),
        &dir.join("aud.key.pub"),
        log,
        INTERVAL,
        clock.clone(),
        false,
        common::RecordingEntropy::default(),
    );
    for i in from..from + n {
        ledger.append("model.access", &event(i)).unwrap();
        clock.advance(1_000_000);
    }
    ledger.close();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn witnesses_cosign_a_consistent_log_and_refuse_forks_and_rollbacks() {
    let fx = build(40, INTERVAL, 3);
    let tmp = tempfile::tempdir().unwrap();
    // The fork's starting point: the ledger as it is now, copied aside.
    let fork_fx_dir = tmp.path().join("fork");
    copy_dir(fx.dir.path(), &fork_fx_dir);

    let mut ws: Vec<Witness> = (1..=3)
        .map(|i| {
            let (key, vkeys) = keygen(tmp.path(), &format!("witness.test/w{i}"));
            start(
                &key,
                &tmp.path().join(format!("state{i}")),
                &fx.root_pub,
                vkeys,
            )
        })
        .collect();

    // Quorum: every witness cosigns the log's checkpoint, then the next one.
    let a = read_log(&fx.log);
    let s0 = a.checkpoints.last().unwrap().size;
    for w in &ws {
        let (st, ctype, body) = submit(w, &a, 0, s0);
        assert_eq!(st, 200, "{body}");
        assert!(ctype.starts_with("text/plain"));
        assert_cosigned(w, &a.at(s0).note, &body);
    }
    grow(fx.dir.path(), &fx.log, common::T0 + 3_600_000_000, 40, 12);
    let a = read_log(&fx.log);
    let s1 = a.checkpoints.last().unwrap().size;
    assert!(s1 > s0);
    for w in &ws {
        let (st, _, body) = submit(w, &a, s0, s1);
        assert_eq!(st, 200, "{body}");
        assert_cosigned(w, &a.at(s1).note, &body);
    }

    // Rollbacks: an older checkpoint from the cosigned size → 400; from its own old
    // size → 409 naming the latest cosigned size.
    let (st, _, _) = http(
        &ws[0].addr,
        "POST",
        "/add-checkpoint",
        a.request(s1, s0).as_bytes(),
    );
    assert_eq!(st, 400);
    let older = a
        .checkpoints
        .iter()
        .find(|c| c.size > 0 && c.size < s0)
        .unwrap()
        .size;
    let (st, ctype, body) = http(
        &ws[0].addr,
        "POST",
        "/add-checkpoint",
        a.request(older, s0).as_bytes(),
    );
    assert_eq!(
        (st, ctype.as_str(), body.as_str()),
        (409, "text/x.tlog.size", format!("{s1}\n").as_str())
    );

    // A fork by the root key's holder: the copy taken at s0 grows other entries under
    // a new epoch (the same number the real log used when it reopened, another key).
    let fork_log = fork_fx_dir.join("logs/model_access.jsonl");
    grow(
        &fork_fx_dir,
        &fork_log,
        common::T0 + 3_600_000_000,
        1_000,
        12,
    );
    let b = read_log(&fork_log);
    let fb = b.checkpoints.last().unwrap();
    assert_eq!(fb.size, s1, "the fork has the same size");
    assert_ne!(fb.note, a.at(s1).note, "and another root");
    for w in &ws {
        // Its epoch certificate contradicts the one the witness learned: refused.
        let (st, _, _) = http(
            &w.addr,
            "POST",
            "/warden/epoch",
            b.rotation(fb.epoch).as_bytes(),
        );
        assert_eq!(st, 422);
        // Its checkpoint is signed by a key the witness does not trust: no cosignature.
        let (st, _, _) = http(
            &w.addr,
            "POST",
            "/add-checkpoint",
            b.request(s1, s1).as_bytes(),
        );
        assert_eq!(st, 403);
    }

    // Malformed requests, an unknown origin, an oversized body.
    let w = &ws[1];
    for body in ["", "old x\n\nnope", "old 0\nAAAA\n\n"] {
        assert_eq!(
            http(&w.addr, "POST", "/add-checkpoint", body.as_bytes()).0,
            400,
            "{body:?}"
        );
    }
    let foreign = a
        .request(s1, s1)
        .replacen("test.local/ledger", "other.example/log", 1);
    assert_eq!(
        http(&w.addr, "POST", "/add-checkpoint", foreign.as_bytes()).0,
        404
    );
    let huge = vec![b'a'; warden_core::witness::MAX_REQUEST_LEN + 1];
    assert_eq!(http(&w.addr, "POST", "/add-checkpoint", &huge).0, 413);

    // One witness down: the other two still cosign the next checkpoint (2 of 3).
    let mut down = ws.remove(2);
    down.child.kill().unwrap();
    down.child.wait().unwrap();
    grow(fx.dir.path(), &fx.log, common::T0 + 7_200_000_000, 52, 5);
    let a = read_log(&fx.log);
    let s2 = a.checkpoints.last().unwrap().size;
    let cosigned = ws.iter().filter(|w| submit(w, &a, s1, s2).0 == 200).count();
    assert_eq!(cosigned, 2);

    // SIGKILL, restart on the same state: the cosigned checkpoint is still there and a
    // rollback is still refused.
    let mut w = ws.remove(0);
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    let (key, state, vkeys) = (w.key.clone(), w.state.clone(), w.vkeys.clone());
    let mut w = start(&key, &state, &fx.root_pub, vkeys);
    let hash = warden_core::hex::encode(&warden_core::merkle::sha256(b"test.local/ledger"));
    let (st, _, note) = http(&w.addr, "GET", &format!("/{hash}/checkpoint"), b"");
    assert_eq!(st, 200);
    assert!(
        note.starts_with(&format!("test.local/ledger\n{s2}\n")),
        "{note}"
    );
    assert_cosigned_note(&w, &note);
    let (st, _, body) = http(
        &w.addr,
        "POST",
        "/add-checkpoint",
        a.request(s0, s1).as_bytes(),
    );
    assert_eq!((st, body), (409, format!("{s2}\n")));
    // The restarted witness came back down, and the down one back up, still agree.
    let mut back = start(&down.key, &down.state, &fx.root_pub, down.vkeys.clone());
    assert_eq!(submit(&back, &a, s1, s2).0, 200);
    for c in [&mut w.child, &mut back.child, &mut ws[0].child] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

/// `warden` with the data directory `dir/d`.
fn in_dir(dir: &Path, args: &[&str]) -> std::process::Output {
    warden()
        .args(args)
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", dir.join("d"))
        .env_remove("WARDEN_PASSPHRASE")
        .env_remove("WARDEN_USER")
        .output()
        .unwrap()
}

fn append(dir: &Path, n: u32) {
    for i in 0..n {
        let ev = format!(r#"{{"user":"u{i}","model":"m","action":"load"}}"#);
        let o = in_dir(
            dir,
            &["log", "append", "--kind", "model.access", "--event", &ev],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// The ML-DSA-44 key of a witness: the one the log and the verifier count.
fn vkey(w: &Witness) -> String {
    w.vkeys[0].to_string()
}

/// `warden log cosign` against `ws` (2 s per witness).
fn cosign_with(dir: &Path, ws: &[&Witness], quorum: &str) -> std::process::Output {
    let mut args: Vec<String> = [
        "log",
        "cosign",
        "--json",
        "--timeout",
        "2",
        "--quorum",
        quorum,
    ]
    .map(str::to_owned)
    .to_vec();
    for w in ws {
        args.extend([
            "--witness".into(),
            format!("http://{}", w.addr),
            "--witness-key".into(),
            vkey(w),
        ]);
    }
    in_dir(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `warden verify --json` requiring `quorum` of the witnesses `ws`.
fn verify_with(dir: &Path, ws: &[&Witness], quorum: &str) -> (Option<i32>, serde_json::Value) {
    let mut args: Vec<String> = ["verify", "--json", "--witness-quorum", quorum]
        .map(str::to_owned)
        .to_vec();
    for w in ws {
        args.extend(["--witness".into(), vkey(w)]);
    }
    let o = in_dir(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code(), v)
}

/// A development data directory at `dir/d` and three witnesses of its ledger.
fn init_with_witnesses(dir: &Path) -> Vec<Witness> {
    let o = in_dir(dir, &["init", "--dev"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root_pub = dir.join("d/keys/root.pub");
    (1..=3)
        .map(|i| {
            let (key, vkeys) = keygen(dir, &format!("witness.test/w{i}"));
            start(&key, &dir.join(format!("state{i}")), &root_pub, vkeys)
        })
        .collect()
}

#[test]
fn a_log_publishes_what_a_quorum_cosigned_and_verify_holds_it_to_that() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut ws = init_with_witnesses(dir);
    append(dir, 3);

    // No cosigned checkpoint yet: a verifier that requires witnesses refuses.
    let every: Vec<&Witness> = ws.iter().collect();
    let (code, v) = verify_with(dir, &every, "2");
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["witnessed"]["ok"], false);

    let o = cosign_with(dir, &every, "3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let (code, v) = verify_with(dir, &every, "3");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["witnessed"]["cosigned_by"].as_array().unwrap().len(), 3);

    // One witness down: appends go on, and 2 of 3 still publish the newer checkpoint.
    ws[2].child.kill().unwrap();
    ws[2].child.wait().unwrap();
    append(dir, 2);
    let every: Vec<&Witness> = ws.iter().collect();
    let o = cosign_with(dir, &every, "2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["round"]["cosigned_by"].as_array().unwrap().len(), 2);
    assert_eq!(r["round"]["failed"].as_array().unwrap().len(), 1);
    // Two of three meets a quorum of 2, never one of 3.
    assert_eq!(verify_with(dir, &every, "2").0, Some(0));
    let (code, v) = verify_with(dir, &every, "3");
    assert_eq!(code, Some(1), "{v}");

    // A cosigned checkpoint the ledger does not contain (its root altered, and the
    // cosignatures with it no longer verify) is never accepted.
    let cosigned = dir.join("d/logs/model_access.cosigned");
    let text = std::fs::read_to_string(&cosigned).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2] = base64_encode(&[9u8; 32]);
    std::fs::write(&cosigned, lines.join("\n") + "\n").unwrap();
    assert_eq!(verify_with(dir, &every, "2").0, Some(1));
    for w in &mut ws[..2] {
        w.child.kill().unwrap();
        w.child.wait().unwrap();
    }
}

mod serve;

/// The size the published cosigned checkpoint signs, if there is one.
fn cosigned_size(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("d/logs/model_access.cosigned")).ok()?;
    text.lines().nth(1)?.parse().ok()
}

fn latest_size(dir: &Path) -> u64 {
    let o = in_dir(dir, &["log", "checkpoint", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["size"].as_u64().unwrap()
}

/// Waits until the published cosigned checkpoint reaches the ledger's latest one.
fn wait_cosigned(dir: &Path) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let want = latest_size(dir);
        if cosigned_size(dir) == Some(want) {
            return want;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cosigned checkpoint stayed at {:?}, the ledger is at {want}",
            cosigned_size(dir)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn serve_asks_the_configured_witnesses_to_cosign_each_newer_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut ws = init_with_witnesses(dir);
    let mut toml = "\n[witnessing]\ninterval_secs = 1\ntimeout_secs = 2\nquorum = 2\n".to_owned();
    for w in &ws {
        toml.push_str(&format!(
            "\n[[witnessing.witness]]\nurl = \"http://{}\"\nkey = \"{}\"\n",
            w.addr,
            vkey(w)
        ));
    }
    let config = dir.join("d/warden.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&toml);
    std::fs::write(&config, text).unwrap();

    let mut cmd = warden();
    cmd.current_dir(dir)
        .env("WARDEN_DATA_DIR", dir.join("d"))
        .env_remove("WARDEN_PASSPHRASE")
        .env_remove("WARDEN_USER");
    let (mut server, _addr, _) = serve::start(cmd);
    append(dir, 3);
    let first = wait_cosigned(dir);
    assert_eq!(
        verify_with(dir, &ws.iter().collect::<Vec<_>>(), "3").0,
        Some(0)
    );

    // A witness down: appends are not held up, and the other two keep cosigning.
    ws[0].child.kill().unwrap();
    ws[0].child.wait().unwrap();
    let t = std::time::Instant::now();
    append(dir, 2);
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    let second = wait_cosigned(dir);
    assert!(second > first);
    let (code, v) = verify_with(dir, &ws.iter().collect::<Vec<_>>(), "2");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["witnessed"]["cosigned_by"].as_array().unwrap().len(), 2);

    server.kill().unwrap();
    server.wait().unwrap();
    for w in &mut ws[1..] {
        w.child.kill().unwrap();
        w.child.wait().unwrap();
    }
}
