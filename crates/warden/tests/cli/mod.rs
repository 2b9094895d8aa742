//! Running the `warden` command as a user would, in a fresh temporary directory.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A temporary working directory (`root`) and a data directory beneath it (`data`).
pub struct Fx {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
}

impl Fx {
    /// An empty working directory; nothing initialised.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        Fx {
            root: tmp.path().to_path_buf(),
            data: tmp.path().join("data"),
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
            .stdin(Stdio::null());
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
