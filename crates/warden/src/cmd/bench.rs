//! `warden bench ledger`: throughput and latency of the real append and verification
//! paths, printed next to this machine's ceilings measured in the same run.

use crate::common::print_json;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::crypto::{DataKey, SigAlg, SigningKey};
use warden_core::entry::{Event, Header, seal_line};
use warden_core::merkle::leaf_hash;
use warden_core::time::Timestamp;
use warden_core::verify::VerifyConfig;
use warden_store::journal::Journal;
use warden_store::keys::{self, KdfParams, random_seed};
use warden_store::ledger::{
    Ledger, LedgerOptions, SystemClock, SystemEntropy, Ticket, checkpoints_path,
};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ledger append and verification performance.
    Ledger {
        /// Events for the sustained-throughput run.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Also (or only, with --events 0) measure strict per-entry signing.
        #[arg(long)]
        strict: bool,
        /// Event size in bytes (plaintext JSON).
        #[arg(long, default_value_t = 300)]
        event_size: usize,
        /// Working directory (default: a fresh temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Policy decision latency at scale and the verified load path against plain
    /// read+hash and the single-core SHA-256 rate.
    Registry(crate::cmd::bench_registry::Args),
    /// Durable appends through the writer's socket from 1, 8 and 32 `log append
    /// --stdin` processes, next to the in-process ledger measured in the same run, and
    /// acknowledgement latency through the socket at half the 32-client rate.
    Writers(crate::cmd::bench_writers::Args),
    /// Durable appends on a cluster's ledger (PostgreSQL) with 1 and 3 nodes, next to
    /// the embedded ledger in the same run, and the failover when the lease lapses.
    Cluster(crate::cmd::bench_cluster::Args),
    /// An OpenAI-compatible endpoint answering after a fixed delay, for `bench/gateway`
    /// to measure what the inference gateway adds to an upstream of known latency.
    Upstream(crate::cmd::bench_upstream::Args),
    /// Grow a data directory's ledger to a size with entries spread over simulated
    /// time (days, epochs and batches as a deployment at that rate has them), for
    /// `bench/scale`.
    Fill(crate::cmd::bench_scale::Args),
}

pub(crate) fn event(size: usize, i: u64) -> Event {
    let base = Event {
        user: Some(format!("user{:04}@example.com", i % 1000)),
        ip: Some(format!("10.0.{}.{}", (i / 256) % 256, i % 256)),
        model: Some(format!("fraud-detector-{}", i % 50)),
        version: Some("3.1.4".into()),
        action: Some("load".into()),
        decision: Some("allow".into()),
        request_id: Some(format!("req-{i:016x}")),
        ..Event::default()
    };
    let len = base.to_plaintext().map(|v| v.len()).unwrap_or(0);
    let pad = size.saturating_sub(len + 14);
    Event {
        reason: Some("x".repeat(pad)),
        ..base
    }
}

pub(crate) fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub(crate) fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Best of three runs: a ceiling is what the machine can do, and short runs on a
/// shared machine are noisy.
fn sign_ceiling(parallel: usize) -> Result<f64> {
    let mut best = 0.0f64;
    for _ in 0..3 {
        best = best.max(sign_rate(parallel)?);
    }
    Ok(best)
}

fn sign_rate(parallel: usize) -> Result<f64> {
    let per = 600u64;
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..parallel)
            .map(|_| {
                s.spawn(move || -> Result<()> {
                    let k = SigningKey::from_seed(SigAlg::MlDsa65, random_seed()?)?;
                    for i in 0..per {
                        k.sign(format!("origin\n{i}\nAAAA\n").as_bytes())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| anyhow::anyhow!("thread failed"))??;
        }
        Ok(())
    })?;
    Ok(rate(per * parallel as u64, start.elapsed()))
}

fn seal_hash_ceiling(size: usize) -> Result<f64> {
    let key = DataKey::new(random_seed()?)?;
    let pt = event(size, 1).to_plaintext()?;
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let n = 200_000u64;
    let t = Timestamp::from_micros(1_700_000_000_000_000).context("time")?;
    let start = Instant::now();
    for i in 0..n {
        out.clear();
        let h = Header {
            origin: "bench.local/ledger",
            index: i,
            time: t,
            epoch: 0,
            kind: "model.access",
            nonce: [0; 12],
            rotation: None,
            rid: None,
        };
        seal_line(&h, &key, &pt, &mut out, &mut scratch)?;
        std::hint::black_box(leaf_hash(&out));
    }
    Ok(rate(n, start.elapsed()))
}

fn fsync_ceiling(dir: &Path) -> Result<f64> {
    use std::io::Write;
    let p = dir.join("fsync.probe");
    let mut f = std::fs::File::create(&p)?;
    let buf = vec![7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        f.write_all(&buf)?;
        f.sync_data()?;
        n += 1;
    }
    let r = rate(n, start.elapsed());
    drop(f);
    std::fs::remove_file(&p)?;
    Ok(r)
}

pub(crate) struct Fixture {
    pub(crate) root: PathBuf,
    auditor: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub(crate) fn fixture(dir: Option<&PathBuf>) -> Result<Fixture> {
    let (root, tmp) = match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("warden-bench").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let auditor = root.join("auditor.key");
    if !auditor.exists() {
        keys::create_recipient(&auditor, &root.join("auditor.key.pub"))?;
    }
    Ok(Fixture {
        root,
        auditor,
        _tmp: tmp,
    })
}

/// The root key in `dir` (created with light KDF parameters when missing), unlocked.
pub(crate) fn bench_root(dir: &Path, origin: &str) -> Result<warden_store::keys::RootKey> {
    let key = dir.join("root.key");
    if !key.exists() {
        keys::create_root(
            &key,
            &dir.join("root.pub"),
            origin,
            SigAlg::MlDsa65,
            b"",
            KdfParams {
                m_kib: 8,
                t: 1,
                p: 1,
            },
        )?;
    }
    Ok(keys::unlock_root(&key, b"")?)
}

/// Segment size of the benchmark ledgers: 64 MiB, sealed about every 0.1 M entries.
const BENCH_SEGMENT_BYTES: u64 = 64 << 20;

pub(crate) fn open(fx: &Fixture, name: &str, strict: bool) -> Result<(Ledger, PathBuf)> {
    let d = fx.root.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    let rk = bench_root(&d, "bench.local/ledger")?;
    let opts = LedgerOptions {
        origin: "bench.local/ledger".into(),
        alg: SigAlg::MlDsa65,
        rotation_interval: Duration::from_secs(7200),
        strict,
        recipients: vec![keys::read_recipient_public(
            &fx.root.join("auditor.key.pub"),
        )?],
        clock: Arc::new(SystemClock),
        entropy: Arc::new(SystemEntropy),
        // Segments far smaller than the default, so every run seals several times,
        // the half-rate latency phase included: a seal's cost shows in its figures.
        segments: warden_store::segments::SegmentPolicy {
            daily: true,
            max_bytes: BENCH_SEGMENT_BYTES,
        },
    };
    let log = d.join("model_access.jsonl");
    Ok((Ledger::open(&log, rk, opts)?, log))
}

/// Submits `n` events from `producers` threads, each keeping up to `window` in flight.
pub(crate) fn sustained(
    ledger: &dyn Journal,
    n: u64,
    size: usize,
    producers: usize,
) -> Result<Duration> {
    let events: Arc<Vec<Event>> = Arc::new((0..64).map(|i| event(size, i)).collect());
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..producers)
            .map(|p| {
                let events = Arc::clone(&events);
                s.spawn(move || -> Result<()> {
                    let mut inflight: VecDeque<Ticket> = VecDeque::new();
                    let mine = n / producers as u64 + u64::from((p as u64) < n % producers as u64);
                    for i in 0..mine {
                        let ev = events.get((i % 64) as usize).context("event")?;
                        inflight.push_back(ledger.submit("model.access", ev)?);
                        if inflight.len() >= 30_000
                            && let Some(t) = inflight.pop_front()
                        {
                            t.wait()?;
                        }
                    }
                    for t in inflight {
                        t.wait()?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| anyhow::anyhow!("producer failed"))??;
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

/// Paced load at `per_sec` for `secs`; returns ack latencies.
pub(crate) fn paced(
    ledger: &dyn Journal,
    per_sec: f64,
    secs: f64,
    size: usize,
) -> Result<Vec<Duration>> {
    let ev = event(size, 7);
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Ticket)>();
    let collector = std::thread::spawn(move || -> Result<Vec<Duration>> {
        let mut lat = Vec::new();
        for (t0, t) in rx {
            t.wait()?;
            lat.push(t0.elapsed());
        }
        Ok(lat)
    });
    let start = Instant::now();
    let total = (per_sec * secs) as u64;
    let mut sent = 0u64;
    while sent < total {
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        while sent < due.min(total) {
            tx.send((Instant::now(), ledger.submit("model.access", &ev)?))
                .map_err(|_| anyhow::anyhow!("collector stopped"))?;
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    drop(tx);
    collector
        .join()
        .map_err(|_| anyhow::anyhow!("collector failed"))?
}

fn verify_rate(log: &Path, root_pub: &Path, auditor: Option<&Path>) -> Result<(u64, Duration)> {
    let cfg = VerifyConfig {
        root: keys::read_root_public(root_pub)?,
        max_epoch_micros: 7200 * 1_000_000,
        auditor: auditor.map(keys::read_recipient_secret).transpose()?,
    };
    let start = Instant::now();
    let out = warden_store::verify::verify_files(
        log,
        &checkpoints_path(log),
        cfg,
        Vec::new(),
        None,
        &mut |_, _| {},
    )?;
    let d = start.elapsed();
    if !out.report.is_clean() {
        anyhow::bail!(
            "verification of the benchmark log found problems: {:?}",
            out.report.findings.first()
        );
    }
    Ok((out.report.entries, d))
}

pub fn run(c: &Command) -> Result<ExitCode> {
    if let Command::Registry(a) = c {
        return crate::cmd::bench_registry::run(a);
    }
    if let Command::Cluster(a) = c {
        return crate::cmd::bench_cluster::run(a);
    }
    if let Command::Writers(a) = c {
        return crate::cmd::bench_writers::run(a);
    }
    if let Command::Fill(a) = c {
        return crate::cmd::bench_scale::run(a);
    }
    if let Command::Upstream(a) = c {
        return crate::cmd::bench_upstream::run(a);
    }
    let Command::Ledger {
        events,
        strict,
        event_size,
        dir,
        json,
    } = c
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let fx = fixture(dir.as_ref())?;
    let cores = threads();
    let say = |m: &str| {
        if !*json {
            crate::common::eprint(m);
        }
    };
    say("measuring ceilings ...");
    let sign1 = sign_ceiling(1)?;
    let sign_all = sign_ceiling(cores)?;
    let seal = seal_hash_ceiling(*event_size)?;
    let fsync = fsync_ceiling(&fx.root)?;
    let mut res = serde_json::json!({
        "machine": {"cores": cores},
        "event_size": event_size,
        "ceilings": {"mldsa65_sign_per_s_1core": sign1, "mldsa65_sign_per_s_all_cores": sign_all,
                     "seal_and_hash_per_s_1core": seal, "fsync_per_s": fsync},
    });
    if *events > 0 {
        say(&format!("sustained run: {events} events ..."));
        let (ledger, log) = open(&fx, "sustained", false)?;
        let d = sustained(&ledger, *events, *event_size, cores.max(2))?;
        let tput = rate(*events, d);
        say("latency at half the sustained rate ...");
        let sealed_before = warden_store::segments::load_index(&log)?.len();
        let mut lat = paced(&ledger, tput / 2.0, 3.0, *event_size)?;
        let seals = warden_store::segments::load_index(&log)?.len() - sealed_before;
        let (p50h, p99h, maxh) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
        say("idle single appends ...");
        let ev = event(*event_size, 3);
        let mut idle = Vec::new();
        for _ in 0..300 {
            std::thread::sleep(Duration::from_millis(2));
            let t0 = Instant::now();
            ledger.append("model.access", &ev)?;
            idle.push(t0.elapsed());
        }
        let (p50i, p99i) = (pct(&mut idle, 0.5), pct(&mut idle, 0.99));
        ledger.close();
        say("verification ...");
        let root_pub = fx.root.join("sustained/root.pub");
        // Medians of three, with one thread and with every core.
        let median = |auditor: Option<&Path>, jobs: usize| -> Result<(u64, Duration)> {
            warden_store::verify::set_jobs(jobs);
            let mut runs = (0..3)
                .map(|_| verify_rate(&log, &root_pub, auditor))
                .collect::<Result<Vec<_>>>()?;
            warden_store::verify::set_jobs(0);
            runs.sort_by_key(|r| r.1);
            runs.get(1).copied().context("three runs")
        };
        let (_, dv1) = median(None, 1)?;
        let (n, dv) = median(None, cores)?;
        let (_, dd) = median(Some(&fx.auditor), cores)?;
        res.as_object_mut().context("report")?.insert("append".into(), serde_json::json!({
            "events": events, "seconds": d.as_secs_f64(), "events_per_s": tput, "target_events_per_s": 300_000,
            "ratio_to_seal_and_hash_ceiling_all_cores": tput / (seal * cores as f64),
            "half_rate_ack_ms": {"rate_per_s": tput / 2.0, "p50": p50h, "p99": p99h, "max": maxh, "segments_sealed": seals, "target_p99": 5.0},
            "idle_single_append_ms": {"p50": p50i, "p99": p99i, "target_p50": 1.0, "ratio_p50_to_fsync": p50i / (1000.0 / fsync)},
        }));
        res.as_object_mut().context("report")?.insert(
            "verify".into(),
            serde_json::json!({
                "entries": n,
                "jobs": cores,
                "no_decrypt_entries_per_s_1_job": rate(n, dv1),
                "no_decrypt_entries_per_s": rate(n, dv), "target_no_decrypt": 1_000_000,
                "decrypt_entries_per_s": rate(n, dd), "target_decrypt": 500_000,
                "ratio_no_decrypt_to_seal_and_hash_ceiling": rate(n, dv) / (seal * cores as f64),
                "target_ratio_no_decrypt": 0.75,
                "ratio_decrypt_to_seal_and_hash_ceiling": rate(n, dd) / (seal * cores as f64),
                "target_ratio_decrypt": 0.4,
            }),
        );
    }
    if *strict {
        say("strict per-entry signing ...");
        let (ledger, _) = open(&fx, "strict", true)?;
        let n = (sign_all * 3.0) as u64;
        let d = sustained(&ledger, n, *event_size, cores.max(2))?;
        ledger.close();
        let r = rate(n, d);
        res.as_object_mut().context("report")?.insert("strict".into(), serde_json::json!({"events": n, "events_per_s": r, "ratio_to_sign_ceiling_all_cores": r / sign_all, "target_ratio": 0.8}));
    }
    if *json {
        print_json(&res)?;
    } else {
        println!("{}", serde_json::to_string_pretty(&res)?);
    }
    Ok(ExitCode::SUCCESS)
}
