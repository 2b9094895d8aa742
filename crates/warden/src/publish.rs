//! The ledger published to a bucket (`publish_log` in `warden.toml`): on a cluster,
//! the node holding the lease `ledger.publish` writes the committed ledger there as
//! C2SP tlog-tiles (`warden_cluster::publish`); `warden verify --log URL` reads it
//! back (`cmd::verify_bucket`).

use crate::common::eprint;
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use warden_cluster::node::ClusterNode;
use warden_registry::logbucket::LogBucket;
use warden_store::config::Config;

/// Largest object read back while resuming (a bundle of checkpoint records).
const MAX_OBJECT: u64 = 256 << 20;

/// The bucket as the publisher sees it.
#[derive(Clone, Debug)]
struct Bucket(LogBucket);

impl warden_cluster::publish::Objects for Bucket {
    fn put(&self, path: &str, data: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send {
        let (b, p) = (self.0.clone(), path.to_owned());
        async move { b.put(&p, data).await }
    }

    fn get(&self, path: &str) -> impl Future<Output = Result<Option<Vec<u8>>, String>> + Send {
        let (b, p) = (self.0.clone(), path.to_owned());
        async move { b.get(&p, MAX_OBJECT).await }
    }
}

/// The running publisher of a node.
#[derive(Debug)]
pub struct Publishing {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Publishing {
    /// Starts publishing on `node` when `cfg.publish_log` names where.
    pub fn start(node: Option<&Arc<ClusterNode>>, cfg: &Config) -> Result<Option<Self>> {
        let (Some(node), Some(url)) = (node, &cfg.publish_log) else {
            return Ok(None);
        };
        let bucket = LogBucket::open(url).with_context(|| format!("publish_log {url}"))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let to = url.clone();
        let task = node.publish(Bucket(bucket), stopped, move |m| {
            eprint(&format!("warden: published log {to}: {m}"));
        })?;
        eprint(&format!(
            "warden: publishing the ledger to {url} whenever this node holds the lease {}",
            warden_cluster::publish::LEASE
        ));
        Ok(Some(Self { stop, task }))
    }

    /// Stops after the step in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
