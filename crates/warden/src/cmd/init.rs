//! `warden init`.

use crate::common::{DataDirArg, passphrase, print_json};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_store::config::Config;
use warden_store::keys::{self, KdfParams};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Log origin: the name every checkpoint carries (a schema-less URL).
    #[arg(long, default_value = "warden.local/ledger")]
    pub origin: String,
    /// Signature algorithm for the root and epoch keys: ML-DSA-65 or ML-DSA-44.
    #[arg(long, default_value = "ML-DSA-65")]
    pub signing: String,
    /// Seconds between key rotations (at most 7200).
    #[arg(long, default_value_t = 7200)]
    pub rotation_interval: u64,
    /// Sign a checkpoint for every entry instead of one per group commit.
    #[arg(long)]
    pub strict: bool,
    /// Keep the registry's metadata in this PostgreSQL database
    /// (postgres://user@host:port/db; the password from PGPASSWORD, never the file)
    /// instead of a SQLite file in the data directory, so several nodes share it.
    #[arg(long, value_name = "URL")]
    pub registry_database: Option<String>,
    /// Run as a cluster: the registry's metadata and the ledger in this PostgreSQL
    /// database (postgres://user@host:port/db; the password from PGPASSWORD). Every
    /// node's data directory names the same database; whichever node holds the
    /// sequencer lease writes the ledger, and each keeps a copy of it at its log path.
    #[arg(long, value_name = "URL")]
    pub backend: Option<String>,
    /// Where model blobs are kept: a directory (default `blobs` in the data directory)
    /// or an S3-compatible bucket, s3://bucket/prefix, reached with the standard AWS
    /// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL;
    /// plain HTTP to a loopback endpoint only). Nodes of a cluster share one bucket.
    #[arg(long, value_name = "DIR|URL")]
    pub blobs: Option<PathBuf>,
    /// Auditor public keys (from `warden auditor keygen`) to wrap data keys to.
    #[arg(long = "auditor")]
    pub auditors: Vec<PathBuf>,
    /// Development mode: seal the root key under an empty passphrase instead of
    /// WARDEN_PASSPHRASE. Never for production.
    #[arg(long)]
    pub dev: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let dir = a.dir.dir();
    let cfg = Config {
        origin: a.origin.clone(),
        rotation_interval_secs: a.rotation_interval,
        signing_algorithm: a.signing.clone(),
        strict: a.strict,
        registry_database: a.registry_database.clone(),
        backend: a.backend.clone(),
        blobs: a
            .blobs
            .clone()
            .unwrap_or_else(|| Config::new(&a.origin).blobs),
        ..Config::new(&a.origin)
    };
    let alg = cfg.validate()?;
    if dir.config().exists() || dir.root_key().exists() {
        bail!(
            "{} is already initialised (found {})",
            dir.root.display(),
            dir.config().display()
        );
    }
    let pass = passphrase();
    if pass.is_empty() && !a.dev {
        bail!(
            "set WARDEN_PASSPHRASE to protect the root key, or pass --dev for a development setup"
        );
    }
    if !pass.is_empty() && a.dev {
        bail!("--dev uses an empty passphrase; unset WARDEN_PASSPHRASE or drop --dev");
    }
    // The data directory holds keys, metadata and artifacts: owner only, so no local
    // user can read models around the audited path.
    std::fs::create_dir_all(&dir.root)
        .with_context(|| format!("creating {}", dir.root.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir.root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to its owner", dir.root.display()))?;
    }
    for sub in ["keys", "auditors", "logs"] {
        std::fs::create_dir_all(dir.root.join(sub))
            .with_context(|| format!("creating {}", dir.root.join(sub).display()))?;
    }
    let mut auditor_ids = Vec::new();
    for p in &a.auditors {
        let k = keys::read_recipient_public(p)?;
        let dest = dir.auditors().join(format!("{}.pub", k.id()));
        std::fs::copy(p, &dest)
            .with_context(|| format!("copying {} to {}", p.display(), dest.display()))?;
        auditor_ids.push(k.id());
    }
    let root = keys::create_root(
        &dir.root_key(),
        &dir.root_pub(),
        &cfg.origin,
        alg,
        &pass,
        KdfParams::default(),
    )?;
    // The default recipient of `warden dataset encrypt`.
    keys::create_recipient(&dir.dataset_key(), &dir.dataset_pub())
        .context("creating the dataset key")?;
    let toml = toml::to_string(&cfg).unwrap_or_default();
    warden_store::durable::write_new(&dir.config(), toml.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", dir.config().display()))?;
    let log = dir.log(&cfg);
    let info = root.origin.clone();
    // The shipped policy, for operators to edit; validated at every start.
    let pdir = dir.resolve(&cfg.policies);
    std::fs::create_dir_all(&pdir).with_context(|| format!("creating {}", pdir.display()))?;
    for (name, text) in [
        ("warden.cedarschema", warden_policy::DEFAULT_SCHEMA),
        ("warden.cedar", warden_policy::DEFAULT_POLICIES),
    ] {
        let p = pdir.join(name);
        warden_store::durable::write_new(&p, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let (engine, digest) = crate::registry::load_policy(&dir, &cfg)?;
    // A development certificate for `warden serve --tls`; replace it for production.
    warden_server::tls::write_dev_certificate(
        &dir.resolve(&cfg.tls_cert),
        &dir.resolve(&cfg.tls_key),
    )
    .context("writing the development TLS certificate")?;
    // Open the ledger so it exists from the start, beginning with epoch 0, and create
    // the registry with its first principal, `admin`, whose signing key is written 0600.
    let ledger: std::sync::Arc<dyn warden_store::journal::Journal> =
        match crate::cluster::join(&dir, &cfg)? {
            Some(node) => node,
            None => {
                let key = keys::unlock_root(&dir.root_key(), &pass)?;
                std::sync::Arc::new(crate::common::open_unlocked(&dir, &cfg, key)?)
            }
        };
    let admin_key = dir.principal_key("admin");
    crate::registry::runtime()?.block_on(async {
        let m = crate::registry::open_with(&dir, &cfg, ledger, engine, digest).await?;
        let r = async {
            let k = warden_registry::keyfile::create(&admin_key, "admin", alg)?;
            m.add_principal(
                None,
                "admin",
                &["admin".to_owned()],
                false,
                Some(&k.key.verifying_key()),
            )
            .await?;
            anyhow::Ok(())
        }
        .await;
        let closed = m.close().await;
        r?;
        closed?;
        anyhow::Ok(())
    })?;
    if a.json {
        print_json(&serde_json::json!({
            "data_dir": dir.root, "origin": info, "signing": alg.name(), "log": log,
            "root_public_key": dir.root_pub(), "auditors": auditor_ids, "dev": a.dev,
            "admin_key": admin_key, "dataset_key": dir.dataset_pub(),
        }))?;
    } else {
        println!(
            "initialised {} (origin {}, {})",
            dir.root.display(),
            info,
            alg.name()
        );
        println!("  trust anchor for verifiers: {}", dir.root_pub().display());
        println!("  ledger: {}", log.display());
        println!(
            "  principal admin created; its signing key: {}",
            admin_key.display()
        );
        println!(
            "  development TLS certificate (self-signed, localhost): {}",
            dir.resolve(&cfg.tls_cert).display()
        );
        if auditor_ids.is_empty() {
            println!(
                "  no auditor keys yet: `warden auditor keygen --out auditor.key` then `warden auditor add auditor.key.pub`"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
