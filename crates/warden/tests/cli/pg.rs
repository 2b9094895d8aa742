//! A database of its own on the loopback PostgreSQL server `scripts/postgres` starts
//! (installing PostgreSQL 15 from Debian's packages when missing).
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

/// `psql -Atc SQL` against `url`; its output.
pub fn psql(url: &str, sql: &str) -> String {
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
pub struct Pg {
    base: String,
    name: String,
    /// `WARDEN_PG_PORT` and `WARDEN_PG_DIR` for a server of the test's own.
    server: Vec<(String, String)>,
}

impl Pg {
    pub fn new() -> Self {
        Self::on_server(Vec::new())
    }

    /// A database on a server of this test's own (port, cluster directory), which the
    /// test may stop and restart without disturbing the others.
    pub fn own_server(port: u16, dir: &str) -> Self {
        Self::on_server(vec![
            ("WARDEN_PG_PORT".into(), port.to_string()),
            ("WARDEN_PG_DIR".into(), dir.into()),
        ])
    }

    fn script(server: &[(String, String)]) -> Command {
        let mut c =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres"));
        c.envs(server.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Restarts the server (only for [`Pg::own_server`]).
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    /// Stops this test's own server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        assert!(!self.server.is_empty(), "stopping the shared server");
        assert!(
            Self::script(&self.server)
                .arg("stop")
                .status()
                .unwrap()
                .success()
        );
    }

    /// Starts this test's own server again.
    pub fn start(&self) {
        assert!(!self.server.is_empty(), "starting the shared server");
        assert!(
            Self::script(&self.server)
                .output()
                .unwrap()
                .status
                .success()
        );
    }

    fn on_server(server: Vec<(String, String)>) -> Self {
        let out = Self::script(&server).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/postgres: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let base = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let name = format!(
            "cli_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        psql(
            &base,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(&base, &format!("CREATE DATABASE {name}"));
        Pg { base, name, server }
    }

    pub fn url(&self) -> String {
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
