//! A fresh, empty database on the loopback PostgreSQL server that `scripts/postgres`
//! starts (installing PostgreSQL 15 from Debian's packages when missing), dropped when
//! the test ends. Shared by every crate's PostgreSQL tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use sqlx::Connection;
use std::path::Path;
use std::process::Command;

pub struct TestDb {
    base: String,
    name: String,
    pub url: String,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        block_on(async {
            if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
            }
        });
    }
}

/// Starts the server if needed and creates a database for this test.
pub fn fresh_database() -> TestDb {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
    let out = Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/postgres failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    block_on(async {
        let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
    });
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    TestDb { base, name, url }
}
