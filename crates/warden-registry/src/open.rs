//! Opening a data directory's manager: its policy (validated before anything else is
//! touched), its blob store and registry database, over a journal the caller chose (the
//! directory's writer, or the ledger opened in-process). Shared by the `warden` binary
//! and the Python module, so both load the same policy the same way.

use crate::blobs::BlobStore;
use crate::db::Database;
use crate::error::RegistryError;
use crate::manager::{ManagerOptions, SecureModelManager};
use aws_lc_rs::digest;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use warden_core::hex;
use warden_policy::Engine;
use warden_store::config::{Config, DataDir};
use warden_store::journal::Journal;
use warden_store::ledger::SystemClock;

/// The largest policy or schema file read.
pub const MAX_POLICY_BYTES: u64 = 4 << 20;

/// A data directory's validated policy.
#[derive(Debug)]
pub struct Policy {
    pub engine: Engine,
    /// SHA-256 over the schema, a zero byte and the policy text.
    pub digest: String,
    /// The directory has no policy files; the shipped default is in force (callers
    /// warn about it).
    pub shipped_default: bool,
}

fn read_text(path: &Path, what: &'static str) -> Result<String, RegistryError> {
    let file = std::fs::File::open(path).map_err(RegistryError::io("read", path))?;
    let mut buf = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(RegistryError::io("read", path))?;
    if buf.len() as u64 > MAX_POLICY_BYTES {
        return Err(RegistryError::invalid(
            what,
            format!("{} is larger than {MAX_POLICY_BYTES} bytes", path.display()),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| RegistryError::invalid(what, format!("{} is not UTF-8", path.display())))
}

/// Reads and strictly validates the data directory's policy (the shipped default when
/// the directory has none), with its digest.
pub fn policy(dir: &DataDir, cfg: &Config) -> Result<Policy, RegistryError> {
    let pdir = dir.resolve(&cfg.policies);
    let schema_p = pdir.join("warden.cedarschema");
    let policy_p = pdir.join("warden.cedar");
    let shipped_default = !(schema_p.exists() || policy_p.exists());
    let (schema, text) = if shipped_default {
        (
            warden_policy::DEFAULT_SCHEMA.to_owned(),
            warden_policy::DEFAULT_POLICIES.to_owned(),
        )
    } else {
        (
            read_text(&schema_p, "policy schema")?,
            read_text(&policy_p, "policy")?,
        )
    };
    let engine = Engine::new(&schema, &text)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(schema.as_bytes());
    ctx.update(&[0]);
    ctx.update(text.as_bytes());
    Ok(Policy {
        engine,
        digest: hex::encode(ctx.finish().as_ref()),
        shipped_default,
    })
}

/// SHA-256 of `warden.toml` as it is on disk.
#[must_use]
pub fn config_digest(dir: &DataDir) -> Option<String> {
    let text = std::fs::read(dir.config()).ok()?;
    Some(hex::encode(digest::digest(&digest::SHA256, &text).as_ref()))
}

/// Opens the manager of `dir` over `journal`.
pub async fn manager(
    dir: &DataDir,
    cfg: &Config,
    journal: Arc<dyn Journal>,
    policy: Policy,
) -> Result<SecureModelManager, RegistryError> {
    let blobs = BlobStore::configured(&cfg.blobs, |p| dir.resolve(p))?;
    SecureModelManager::open(
        ManagerOptions {
            database: match cfg.registry_url() {
                Some(url) => Database::Postgres(url.to_owned()),
                None => Database::Sqlite(dir.resolve(&cfg.registry_db)),
            },
            blobs,
            engine: policy.engine,
            policy_digest: policy.digest,
            config_digest: config_digest(dir),
            clock: Arc::new(SystemClock),
        },
        journal,
    )
    .await
}
