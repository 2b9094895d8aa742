//! A fresh bucket on the loopback S3-compatible server `scripts/s3` starts (s3s-fs from
//! crates.io, built once). Shared by every crate's object-storage tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Credentials the test server accepts.
pub const ACCESS_KEY: &str = "warden-test";
pub const SECRET_KEY: &str = "warden-test-secret";

/// A new bucket whose name starts with `prefix`: the server's endpoint, the bucket's
/// name, and the directory the server keeps its objects in.
pub fn bucket(prefix: &str) -> (String, String, PathBuf) {
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3");
    let out = Command::new(&script)
        .args(["bucket", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/s3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let endpoint = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let root = std::env::var("WARDEN_S3_DIR")
        .map_or_else(|_| PathBuf::from("/opt/warden-test/s3"), PathBuf::from)
        .join(&name);
    (endpoint, name, root)
}
