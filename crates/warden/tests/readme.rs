//! The README's "Using it" section works verbatim: its shell block runs in order on a
//! fresh data directory, with `warden serve` running from the line that starts it, and
//! every command exits 0 and appends through the service. Only placeholders are replaced: the install line (the binary
//! under test goes on PATH), `/srv/warden`, the passphrase, and the service's port (a
//! free one, since tests run side by side). `./model-dir` and `prov.json` are the
//! user's files; the test provides them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap()
}

/// The `sh` blocks of the section titled `title`.
fn shell_blocks(text: &str, title: &str) -> Vec<String> {
    let start = text.find(&format!("\n## {title}\n")).expect("section");
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    let section = &rest[..end];
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in section.lines() {
        match (&mut cur, line.trim_start()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(_), "```") => blocks.push(cur.take().unwrap()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_using_it_section_runs_verbatim_with_serve_running() {
    let blocks = shell_blocks(&readme(), "Using it");
    assert_eq!(blocks.len(), 1, "one runnable block");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("model-dir")).unwrap();
    std::fs::write(work.join("model-dir/w.bin"), b"model weights").unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/provenance.example.json"),
        work.join("prov.json"),
    )
    .unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_warden")).parent().unwrap();
    let srv = tmp.path().join("srv/warden");
    let port = free_port().to_string();
    let mut script = String::new();
    for line in blocks[0].lines() {
        let line = if line.starts_with("cargo build --release && export PATH=") {
            format!("export PATH=\"{}:$PATH\"", bin.display())
        } else {
            line.replace("/srv/warden", &srv.display().to_string())
                .replace("'…'", "'correct horse battery staple'")
                .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
                .replace(
                    "warden serve &",
                    &format!("warden serve --listen 127.0.0.1:{port} &"),
                )
        };
        script.push_str(&line);
        script.push('\n');
    }
    assert!(script.contains("warden serve --listen"), "{script}");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env_remove("WARDEN_DATA_DIR")
        .env_remove("WARDEN_USER")
        .env_remove("WARDEN_PASSPHRASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README's block failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything went through the running service: one epoch for `init`, one for
    // `serve`, none for the commands; the entries name their actors.
    let show = Command::new(bin.join("warden"))
        .args(["log", "show", "--json", "--auditor-key", "auditor.key"])
        .env("WARDEN_DATA_DIR", &srv)
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(show.status.success());
    let entries: Vec<Value> = String::from_utf8(show.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kind = |k: &str| {
        entries
            .iter()
            .filter(|e| e["kind"] == k)
            .collect::<Vec<_>>()
    };
    let kinds: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {} {}", e["index"], e["kind"], e["event"]["user"]))
        .collect();
    assert_eq!(
        kind("key.rotation").len(),
        2,
        "no command started an epoch: {kinds:#?}"
    );
    let reg = kind("registry.register");
    assert_eq!(reg.len(), 1);
    assert_eq!(reg[0]["event"]["user"], "alice");
    assert!(
        reg[0]["event"]["via"]
            .as_str()
            .unwrap()
            .starts_with("os-user=")
    );
    let loads = kind("model.access");
    assert!(
        loads.iter().any(|e| e["event"]["user"] == "scorer"),
        "{loads:?}"
    );
    assert_eq!(
        kind("system.stop").len(),
        2,
        "init's and serve's, none per command"
    );
}
