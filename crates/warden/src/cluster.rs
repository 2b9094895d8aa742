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

/// The cluster's rate-limit budgets (`warden_cluster::budgets`) for the server's
/// limiter, over a pool of the server's own runtime. Budgets idle for an hour are
/// deleted by whichever node notices a minute has passed since it last looked.
#[derive(Debug)]
pub struct Budgets {
    pool: sqlx::PgPool,
    tidied: std::sync::Mutex<std::time::Instant>,
}

/// How often a node deletes idle budgets.
const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Budgets {
    /// Connects to the cluster named by `cfg.backend`; `None` off a cluster.
    pub async fn connect(cfg: &Config) -> Result<Option<Self>> {
        let Some(url) = &cfg.backend else {
            return Ok(None);
        };
        let pool = warden_cluster::node::connect(url)
            .await
            .context("connecting the rate limits to the cluster's database")?;
        Ok(Some(Self {
            pool,
            tidied: std::sync::Mutex::new(std::time::Instant::now()),
        }))
    }

    fn tidy_if_due(&self) {
        let mut last = self
            .tidied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < TIDY_EVERY {
            return;
        }
        *last = std::time::Instant::now();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let _ = warden_cluster::budgets::tidy(&pool).await;
        });
    }
}

impl warden_server::limits::SharedBudgets for Budgets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        period: std::time::Duration,
        burst: u32,
        want: u32,
        unused: u32,
    ) -> warden_server::limits::Taking<'a> {
        use warden_cluster::budgets::Taken;
        use warden_server::limits::Take;
        Box::pin(async move {
            self.tidy_if_due();
            match warden_cluster::budgets::take(&self.pool, key, period, burst, want, unused).await
            {
                Ok(Taken::Cells(n)) => Ok(Take::Cells(n)),
                Ok(Taken::Wait(d)) => Ok(Take::Wait(d)),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
