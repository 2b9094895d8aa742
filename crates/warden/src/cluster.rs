//! A process on a cluster (`backend = "postgres://…"` in `warden.toml`): while it runs
//! it is a node of the cluster's ledger. It appends through the shared queue, keeps its
//! copy of the ledger's files at the data directory's `log` path, and writes the ledger
//! whenever it holds the sequencer lease (see `warden_cluster::node`).

use crate::common::{ledger_options, unlock};
use anyhow::{Context, Result};
use std::sync::Arc;
use warden_cluster::node::{ClusterNode, LEASE_TTL, NodeOptions};
use warden_store::config::{Config, DataDir};

/// This node's name: `WARDEN_NODE`, else the host's name.
#[must_use]
pub fn node_name() -> String {
    std::env::var("WARDEN_NODE")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Joins the cluster named by `cfg.backend`, if there is one. The root key is unsealed
/// now (so a wrong passphrase stops the process before it does anything) and a copy is
/// handed to each ledger the node opens as sequencer.
pub fn join(dir: &DataDir, cfg: &Config) -> Result<Option<Arc<ClusterNode>>> {
    let Some(url) = cfg.backend.clone() else {
        return Ok(None);
    };
    cfg.validate()?;
    let root = unlock(dir)?;
    let (dir2, cfg2) = (dir.clone(), cfg.clone());
    let node = ClusterNode::start(NodeOptions {
        database_url: url,
        log: dir.log(cfg),
        name: node_name(),
        lease_ttl: LEASE_TTL,
        open: Arc::new(move || {
            let opts = ledger_options(&dir2, &cfg2)
                .map_err(|e| warden_store::error::StoreError::Config(format!("{e:#}")))?;
            Ok((root.try_clone()?, opts))
        }),
    })
    .context("joining the cluster (backend in warden.toml)")?;
    Ok(Some(Arc::new(node)))
}

/// The data directory's configuration, for a command that reads the ledger's files: on
/// a cluster node the local copy is first brought up to the cluster's database (unless
/// another process of this data directory is writing it, which keeps it current).
pub fn config_for_reading(dir: &DataDir) -> Result<Config> {
    let cfg = dir.read_config()?;
    if let Some(url) = &cfg.backend {
        let log = dir.log(&cfg);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let pool = warden_cluster::node::connect(url).await?;
                warden_cluster::schema::ensure(&pool).await?;
                warden_cluster::mirror::sync(&pool, &log, None).await
            })
            .context("bringing this node's copy of the ledger up to the cluster's database")?;
    }
    Ok(cfg)
}

/// The SIEM sinks' cursors the cluster's database keeps (none off a cluster). Runs on a
/// thread of its own, so it may be called from anywhere, a runtime's threads included.
pub fn shared_cursors(cfg: &Config) -> Result<Vec<Vec<u8>>> {
    let Some(url) = cfg.backend.clone() else {
        return Ok(Vec::new());
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let pool = warden_cluster::node::connect(&url).await?;
                    warden_cluster::schema::ensure(&pool).await?;
                    warden_cluster::cursors::all(&pool).await
                })
                .context("reading the SIEM cursors from the cluster's database")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("reading the SIEM cursors failed"))?
    })
}
