//! `warden bench cluster`: durable appends on a cluster's ledger (PostgreSQL; nodes in
//! this process, each with its own copy) with 1 and 3 nodes, next to the embedded
//! ledger measured in the same run; and how long appends stall when the sequencer's
//! lease lapses under load (the failover).

use crate::cmd::bench::{bench_root, fixture, open, rate, sustained};
use crate::common::print_json;
use anyhow::{Context, Result};
use sqlx::Connection;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_cluster::node::{ClusterNode, NodeOptions};
use warden_core::crypto::SigAlg;
use warden_store::journal::Journal;
use warden_store::keys;
use warden_store::ledger::{LedgerOptions, SystemClock, SystemEntropy};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A PostgreSQL server to measure on (postgres://user@host:port/db): each
    /// measurement makes a fresh database there and drops it afterwards.
    #[arg(long, value_name = "URL")]
    database: String,
    /// Entries per measurement, split across the nodes.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Numbers of nodes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// Event size in bytes (plaintext JSON).
    #[arg(long, default_value_t = 300)]
    event_size: usize,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
}

/// A fresh database on the server of `url`, dropped when this is.
struct Scratch {
    base: String,
    name: String,
    url: String,
}

impl Scratch {
    fn new(rt: &tokio::runtime::Runtime, base: &str, n: usize) -> Result<Self> {
        let name = format!("warden_bench_{}_{n}", std::process::id());
        rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(base).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await?;
            anyhow::Ok(())
        })
        .with_context(|| format!("creating a scratch database on {base}"))?;
        let url = format!("{}/{name}", base.rsplit_once('/').map_or(base, |(b, _)| b));
        Ok(Self {
            base: base.to_owned(),
            name,
            url,
        })
    }

    fn drop_with(self, rt: &tokio::runtime::Runtime) {
        let _ = rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&self.base).await?;
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut c)
            .await?;
            anyhow::Ok(())
        });
    }
}

/// Starts `n` nodes on `url`, each with a copy under `dir`, and waits for a sequencer.
fn start_nodes(url: &str, dir: &Path, auditor_pub: &Path, n: usize) -> Result<Vec<ClusterNode>> {
    let recipient = keys::read_recipient_public(auditor_pub)?;
    let root = Arc::new(bench_root(dir, "bench.local/cluster")?);
    let nodes = (0..n)
        .map(|i| {
            let (root, recipient) = (Arc::clone(&root), recipient.clone());
            ClusterNode::start(NodeOptions {
                database_url: url.to_owned(),
                log: dir.join(format!("n{i}")).join("model_access.jsonl"),
                name: format!("bench-n{i}"),
                lease_ttl: warden_cluster::node::LEASE_TTL,
                open: Arc::new(move || {
                    Ok((
                        root.try_clone()?,
                        LedgerOptions {
                            origin: "bench.local/cluster".into(),
                            alg: SigAlg::MlDsa65,
                            rotation_interval: Duration::from_secs(7200),
                            strict: false,
                            recipients: vec![recipient.clone()],
                            clock: Arc::new(SystemClock),
                            entropy: Arc::new(SystemEntropy),
                            segments: warden_store::segments::SegmentPolicy::never(),
                        },
                    ))
                }),
            })
            .context("starting a node")
        })
        .collect::<Result<Vec<_>>>()?;
    let t = Instant::now();
    while !nodes.iter().any(|n| n.sequencer_token().is_some()) {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "no node became sequencer"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(nodes)
}

/// Appends `events` through all nodes at once (as many producers per node as cores);
/// entries per second, until the last is acknowledged.
fn cluster_rate(nodes: &[ClusterNode], events: u64, size: usize) -> Result<f64> {
    let journals: Vec<Arc<dyn Journal>> = nodes
        .iter()
        .map(|n| n.journal() as Arc<dyn Journal>)
        .collect();
    let per = events / journals.len() as u64;
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = journals
            .iter()
            .map(|j| s.spawn(move || sustained(j.as_ref(), per, size, 2)))
            .collect();
        for h in hs {
            h.join().map_err(|_| anyhow::anyhow!("producer failed"))??;
        }
        Ok(())
    })?;
    Ok(rate(per * journals.len() as u64, start.elapsed()))
}

/// Two nodes under a steady stream of appends through the second; the lease lapses
/// under the sequencer. The longest wait between consecutive acknowledgements.
fn failover(
    url: &str,
    dir: &Path,
    auditor_pub: &Path,
    rt: &tokio::runtime::Runtime,
) -> Result<Duration> {
    let nodes = start_nodes(url, dir, auditor_pub, 2)?;
    let j = nodes.get(1).context("node")?.journal();
    let ev = crate::cmd::bench::event(300, 1);
    let mut acks = Vec::new();
    let start = Instant::now();
    let mut lapsed = false;
    while start.elapsed() < Duration::from_secs(6) {
        if !lapsed && start.elapsed() > Duration::from_secs(1) {
            rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::query(
                    "UPDATE cluster_lease SET expires_at = clock_timestamp() - interval '1 second'",
                )
                .execute(&mut c)
                .await?;
                anyhow::Ok(())
            })?;
            lapsed = true;
        }
        j.append("model.access", &ev)?;
        acks.push(Instant::now());
    }
    let longest = acks
        .windows(2)
        .filter_map(|w| w.get(1).zip(w.first()).map(|(b, a)| *b - *a))
        .max()
        .unwrap_or_default();
    for n in nodes {
        n.stop();
    }
    Ok(longest)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let fx = fixture(None)?;
    let auditor_pub = fx.root.join("auditor.key.pub");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runs = a.runs.max(1);
    let mut embedded = Vec::new();
    let mut clustered: Vec<(usize, Vec<f64>)> = a.nodes.iter().map(|n| (*n, Vec::new())).collect();
    let mut k = 0;
    for _ in 0..runs {
        let (ledger, _) = open(&fx, "embedded", false)?;
        let d = sustained(&ledger, a.events, a.event_size, 2)?;
        ledger.close();
        embedded.push(rate(a.events, d));
        for (n, rates) in &mut clustered {
            k += 1;
            let db = Scratch::new(&rt, &a.database, k)?;
            let dir = fx.root.join(format!("cluster-{k}"));
            std::fs::create_dir_all(&dir)?;
            let nodes = start_nodes(&db.url, &dir, &auditor_pub, *n)?;
            let r = cluster_rate(&nodes, a.events, a.event_size);
            for node in nodes {
                node.stop();
            }
            db.drop_with(&rt);
            rates.push(r?);
        }
    }
    k += 1;
    let db = Scratch::new(&rt, &a.database, k)?;
    let dir = fx.root.join("failover");
    std::fs::create_dir_all(&dir)?;
    let gap = failover(&db.url, &dir, &auditor_pub, &rt);
    db.drop_with(&rt);
    let gap = gap?;
    let base = median(embedded.clone());
    let rows: Vec<(usize, f64)> = clustered
        .iter()
        .map(|(n, r)| (*n, median(r.clone())))
        .collect();
    if a.json {
        print_json(&serde_json::json!({
            "events": a.events, "runs": runs,
            "embedded_appends_per_sec": base,
            "cluster": rows.iter().map(|(n, r)| serde_json::json!({
                "nodes": n, "appends_per_sec": r, "ratio_to_embedded": r / base,
            })).collect::<Vec<_>>(),
            "failover_longest_wait_ms": gap.as_secs_f64() * 1000.0,
        }))?;
    } else {
        println!(
            "durable appends, median of {runs} runs of {} entries:",
            a.events
        );
        println!("  embedded ledger (files, this process)   {base:>10.0}/s");
        for (n, r) in &rows {
            println!(
                "  cluster, {n} node(s) on PostgreSQL        {r:>10.0}/s  ({:.2}x embedded)",
                r / base
            );
        }
        println!(
            "failover: longest wait for an acknowledgement after the lease lapsed: {:.0} ms",
            gap.as_secs_f64() * 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
