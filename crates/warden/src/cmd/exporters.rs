//! The `[[siem]]` exporters of `warden serve`, each on its own thread, following the
//! ledger. On one machine every sink is exported by this process. On a cluster every
//! node is configured with the same sinks, and each sink is exported by one node at a
//! time: the holder of the lease `export.<sink>`. The holder keeps the sink's cursor in
//! the cluster's database as well as in its data directory, so when it dies (or stops)
//! the next node to take the lease resumes where it stopped; the nodes' copies of the
//! ledger are byte-identical, so the cursor's file positions hold on every node.

use crate::common::eprint;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use warden_cluster::node::ClusterNode;
use warden_siem::cursor::SharedCursors;

/// How long a node's hold on a sink's export lasts without renewal: the longest a
/// sink waits after its exporting node dies.
pub const EXPORT_LEASE_TTL: Duration = Duration::from_secs(6);

/// The running exporters.
pub struct Exporters {
    stop: Arc<AtomicBool>,
    running: Vec<(String, Arc<warden_siem::Stats>, std::thread::JoinHandle<()>)>,
}

/// Sinks' cursors in the cluster's database.
#[derive(Debug)]
struct DbCursors(Arc<ClusterNode>);

impl SharedCursors for DbCursors {
    fn load(&self, sink: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.load_cursor(sink).map_err(|e| e.to_string())
    }

    fn save(&self, sink: &str, next: u64, cursor: &[u8]) -> Result<(), String> {
        self.0
            .save_cursor(sink, next, cursor)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn follow() -> warden_siem::Options {
    warden_siem::Options {
        follow: true,
        ..warden_siem::Options::default()
    }
}

/// Sleeps up to `d`, waking early once `wake()` holds.
fn sleep_unless(wake: &dyn Fn() -> bool, d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !wake() && !left.is_zero() {
        let s = left.min(step);
        std::thread::sleep(s);
        left = left.saturating_sub(s);
    }
}

impl Exporters {
    /// Starts one exporter per sink: at once on one machine (a sink that cannot be
    /// opened stops the start), under the sink's lease on a cluster.
    pub fn start(
        log: &Path,
        export_dir: &Path,
        sinks: Vec<warden_siem::SinkSpec>,
        node: Option<Arc<ClusterNode>>,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut running = Vec::new();
        for s in sinks {
            let name = s.name.clone();
            let to = s.dest.to_string();
            let stats = Arc::new(warden_siem::Stats::default());
            let (st, stop2) = (Arc::clone(&stats), Arc::clone(&stop));
            let thread = std::thread::Builder::new().name(format!("warden-siem-{name}"));
            let h = match &node {
                None => {
                    let mut e = warden_siem::Exporter::open(log, export_dir, s)
                        .with_context(|| format!("[[siem]] sink {name}"))?;
                    let n = name.clone();
                    let h = thread.spawn(move || {
                        if let Err(err) = e.run(&follow(), &stop2, &st) {
                            eprint(&format!("warden: SIEM sink {n} stopped: {err}"));
                        }
                    })?;
                    eprint(&format!("warden: exporting to {to} (sink {name})"));
                    h
                }
                Some(node) => {
                    let leased = Leased {
                        node: Arc::clone(node),
                        log: log.to_path_buf(),
                        export_dir: export_dir.to_path_buf(),
                        spec: s,
                    };
                    let h = thread.spawn(move || leased.run(&stop2, &st))?;
                    eprint(&format!(
                        "warden: exporting to {to} (sink {name}) whenever this node holds the lease export.{name}"
                    ));
                    h
                }
            };
            running.push((name, stats, h));
        }
        Ok(Self { stop, running })
    }

    /// Gives the exporters up to 5 s to deliver the last entries, then stops them.
    pub fn stop(self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Let them see the final checkpoint before judging their lag.
        std::thread::sleep(Duration::from_millis(200));
        while std::time::Instant::now() < deadline
            && self
                .running
                .iter()
                .any(|(_, s, h)| !h.is_finished() && s.lag() > 0)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::Relaxed);
        for (name, stats, h) in self.running {
            if h.join().is_err() {
                eprint(&format!("warden: SIEM sink {name} failed"));
            } else if stats.lag() > 0 {
                eprint(&format!(
                    "warden: SIEM sink {name}: {} entries left for the next start",
                    stats.lag()
                ));
            }
        }
    }
}

/// One sink on a cluster node: exported while this node holds its lease.
struct Leased {
    node: Arc<ClusterNode>,
    log: PathBuf,
    export_dir: PathBuf,
    spec: warden_siem::SinkSpec,
}

impl Leased {
    fn run(self, stop: &AtomicBool, stats: &warden_siem::Stats) {
        let name = self.spec.name.clone();
        let lease_name = format!("export.{name}");
        let shared: Arc<dyn SharedCursors> = Arc::new(DbCursors(Arc::clone(&self.node)));
        let mut failed_before = false;
        while !stop.load(Ordering::Relaxed) {
            let lease = match self.node.hold_now(&lease_name, EXPORT_LEASE_TTL) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    sleep_unless(&|| stop.load(Ordering::Relaxed), Duration::from_millis(500));
                    continue;
                }
                Err(e) => {
                    if !failed_before {
                        eprint(&format!("warden: SIEM sink {name}: {e}"));
                    }
                    failed_before = true;
                    sleep_unless(&|| stop.load(Ordering::Relaxed), Duration::from_secs(1));
                    continue;
                }
            };
            failed_before = false;
            // The cursor may stand past this node's copy if the copy lags: bring it up.
            let _ = self.node.sync();
            let mut e = match warden_siem::Exporter::open_shared(
                &self.log,
                &self.export_dir,
                self.spec.clone(),
                Some(Arc::clone(&shared)),
            ) {
                Ok(e) => e,
                Err(err) => {
                    eprint(&format!("warden: SIEM sink {name}: {err}"));
                    let _ = self.node.release_now(&lease);
                    sleep_unless(&|| stop.load(Ordering::Relaxed), Duration::from_secs(5));
                    continue;
                }
            };
            eprint(&format!(
                "warden: exporting sink {name} for the cluster from entry {}",
                e.cursor().position.next
            ));
            // Delivery stops when the lease is lost or the process stops.
            let done = AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let wake = || done.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
                    while !done.load(Ordering::Relaxed) {
                        sleep_unless(&wake, EXPORT_LEASE_TTL / 3);
                        if stop.load(Ordering::Relaxed)
                            || !matches!(self.node.renew_now(&lease, EXPORT_LEASE_TTL), Ok(true))
                        {
                            done.store(true, Ordering::Relaxed);
                        }
                    }
                });
                if let Err(err) = e.run(&follow(), &done, stats) {
                    eprint(&format!("warden: SIEM sink {name}: {err}"));
                }
                done.store(true, Ordering::Relaxed);
            });
            drop(e);
            // What this node did not deliver is the next holder's.
            stats
                .covered
                .store(stats.next.load(Ordering::Relaxed), Ordering::Relaxed);
            let _ = self.node.release_now(&lease);
            if !stop.load(Ordering::Relaxed) {
                eprint(&format!(
                    "warden: SIEM sink {name}: lost the lease export.{name}"
                ));
                sleep_unless(&|| stop.load(Ordering::Relaxed), Duration::from_secs(1));
            }
        }
    }
}
