//! `warden init --registry-database postgres://…`: the registry's metadata in a real
//! PostgreSQL (the loopback server `scripts/postgres` starts), used by every command
//! through `warden.toml`, with no SQLite file made; a password in the URL is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cli;

use cli::Fx;
use std::path::Path;
use std::process::Command;

/// `psql -Atc SQL` against `url`; its output.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A database of its own on the loopback server (dropped at the end), and its URL.
struct Pg {
    base: String,
    name: String,
}

impl Pg {
    fn new() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
        let out = Command::new(&script).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/postgres: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let base = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let name = format!("cli_{}", std::process::id());
        psql(
            &base,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(&base, &format!("CREATE DATABASE {name}"));
        Pg { base, name }
    }

    fn url(&self) -> String {
        format!("{}/{}", self.base.rsplit_once('/').unwrap().0, self.name)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.base,
                "-Atc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

#[test]
fn init_with_a_postgres_registry_keeps_every_commands_metadata_there() {
    let pg = Pg::new();
    let url = pg.url();
    let fx = Fx::new();
    fx.ok(&["auditor", "keygen", "--out", "auditor.key"]);
    // A password in the configuration is refused before anything is created.
    let with_password = url.replacen("://warden@", "://warden:secret@", 1);
    let out = fx.run(&["init", "--dev", "--registry-database", &with_password]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PGPASSWORD"));
    assert!(!fx.data.join("warden.toml").exists());
    fx.ok(&[
        "init",
        "--dev",
        "--auditor",
        "auditor.key.pub",
        "--registry-database",
        &url,
    ]);
    let toml = std::fs::read_to_string(fx.data.join("warden.toml")).unwrap();
    assert!(
        toml.contains(&format!("registry_database = \"{url}\"")),
        "{toml}"
    );
    fx.add_principal("eng", "ml-engineer", &[]);
    let model = fx.root.join("w.bin");
    std::fs::write(&model, b"weights".repeat(1000)).unwrap();
    fx.ok(&[
        "model",
        "register",
        "m",
        "--version",
        "1",
        model.to_str().unwrap(),
        "--as",
        "eng",
    ]);
    let out = fx.root.join("out.bin");
    fx.ok(&[
        "model",
        "load",
        "m@1",
        "--as",
        "eng",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&model).unwrap());
    // The metadata is in PostgreSQL, and no SQLite registry was made.
    assert_eq!(
        psql(&url, "SELECT version FROM versions WHERE model = 'm'"),
        "1"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM principals WHERE name IN ('admin', 'eng')"
        ),
        "2"
    );
    assert!(!fx.data.join("registry").join("registry.db").exists());
    fx.ok(&["verify", "--auditor-key", "auditor.key"]);
    let _ = fx.run(&["writer", "--stop"]);
}
