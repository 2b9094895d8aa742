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
use cli::pg::{Pg, psql};

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
    fx.register("m", "1", "w.bin", "eng");
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
