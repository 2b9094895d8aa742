//! Running the `warden` command as a user would, in a fresh temporary directory.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

pub mod pg;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A temporary working directory (`root`) and a data directory beneath it (`data`).
pub struct Fx {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    /// Variables every command gets (e.g. a bucket's credentials).
    pub env: Vec<(String, String)>,
}

impl Fx {
    /// An empty working directory; nothing initialised.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        Fx {
            root: tmp.path().to_path_buf(),
            data: tmp.path().join("data"),
            env: Vec::new(),
            _tmp: tmp,
        }
    }

    /// A development data directory whose entries `auditor.key` decrypts.
    pub fn initialised() -> Self {
        let fx = Self::new();
        fx.ok(&["auditor", "keygen", "--out", "auditor.key"]);
        fx.ok(&["init", "--dev", "--auditor", "auditor.key.pub"]);
        fx
    }

    /// `warden` in the working directory, on the data directory, with no passphrase,
    /// user or standard input inherited.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
        c.env("WARDEN_DATA_DIR", &self.data)
            .env_remove("WARDEN_PASSPHRASE")
            .env_remove("WARDEN_USER")
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `args`, which must succeed; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// `principal add NAME --role ROLE EXTRA… --as admin`, which must succeed.
    pub fn add_principal(&self, name: &str, role: &str, extra: &[&str]) -> String {
        let mut args = vec!["principal", "add", name, "--role", role];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--as", "admin"]);
        self.ok(&args)
    }

    /// Registers the file `file` (under the working directory) as `model@version`,
    /// signed by `signer`, which must succeed.
    pub fn register(&self, model: &str, version: &str, file: &str, signer: &str) -> String {
        let path = self.root.join(file);
        self.ok(&[
            "model",
            "register",
            model,
            "--version",
            version,
            path.to_str().unwrap(),
            "--as",
            signer,
        ])
    }

    /// A token for `principal` with `scopes` (comma-separated), valid one hour, issued
    /// by `admin`.
    pub fn token(&self, principal: &str, scopes: &str) -> String {
        self.token_with_id(principal, scopes, "1h").0
    }

    /// A token for `principal` with `scopes`, valid for `expires` (`1h`, `1s`), issued
    /// by `admin`, and the token's id.
    pub fn token_with_id(&self, principal: &str, scopes: &str, expires: &str) -> (String, String) {
        let out = self.ok(&[
            "token",
            "create",
            "--principal",
            principal,
            "--scopes",
            scopes,
            "--expires",
            expires,
            "--as",
            "admin",
        ]);
        // "token <id> for …", then the token alone on the last line.
        let id = out.split_whitespace().nth(1).unwrap().to_owned();
        (out.lines().last().unwrap().trim().to_owned(), id)
    }

    /// `log append` of a `model.access` entry for `user`, which must succeed.
    pub fn append_access(&self, user: &str) -> String {
        self.ok(&[
            "log",
            "append",
            "--kind",
            "model.access",
            "--event",
            &format!(r#"{{"user":"{user}"}}"#),
        ])
    }

    /// Every entry's public header (no key needed).
    pub fn headers(&self) -> Vec<Value> {
        self.ok(&["log", "show", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// How many entries are of `kind` (from the public headers).
    pub fn count_kind(&self, kind: &str) -> usize {
        self.headers().iter().filter(|e| e["kind"] == kind).count()
    }

    /// The pid of the writer answering for the data directory, if one does.
    pub fn writer_pid(&self) -> Option<u32> {
        let out = self.run(&["writer", "--status", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["pid"].as_u64().map(|p| u32::try_from(p).unwrap())
    }

    /// SIGKILLs the data directory's writer (a power cut for the process that owns the
    /// ledger) and waits until it is gone; `false` when none ran.
    pub fn kill_writer(&self) -> bool {
        let Some(pid) = self.writer_pid() else {
            return false;
        };
        let st = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -KILL {pid}");
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let t = std::time::Instant::now();
        // Gone, or a zombie its parent has not reaped (it holds nothing any more).
        while proc.exists()
            && !std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| s.contains(") Z "))
        {
            assert!(t.elapsed().as_secs() < 10, "writer {pid} survived SIGKILL");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        true
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Ledger entries of `kind`, decrypted with `auditor.key`.
    pub fn entries(&self, kind: &str) -> Vec<Value> {
        self.ok(&["log", "show", "--auditor-key", "auditor.key", "--json"])
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}
