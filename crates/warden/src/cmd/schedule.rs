//! What `warden serve` does on a schedule (`[schedule]` in `warden.toml`): incremental
//! verification of the ledger, signed compliance reports archived under `reports/`,
//! and retention (`[retention]`) of sealed segments and archived reports. Each run is a
//! ledger entry (`verification.run`, `report.generated`, `retention.delete`).
//!
//! Both read a consistent prefix of the live ledger (its state after the last durable
//! batch), so entries still in flight are neither reported uncovered nor half-read.

use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use warden_core::crypto::RecipientSecretKey;
use warden_core::time::Timestamp;
use warden_core::verify::{ResumeState, VerifyConfig};
use warden_registry::SecureModelManager;
use warden_store::config::{Config, DataDir, ScheduleConfig};
use warden_store::keys::RootKey;
use warden_store::ledger::checkpoints_path;
use warden_store::report::ReportInput;

/// Everything a scheduled job needs.
struct Jobs {
    m: Arc<SecureModelManager>,
    dir: DataDir,
    config: Config,
    reports: PathBuf,
    cfg: ScheduleConfig,
    max_epoch_micros: u64,
    root: Arc<RootKey>,
    auditor: Option<Arc<RecipientSecretKey>>,
    /// On a cluster, this node: jobs run only while it holds [`SCHEDULE_LEASE`].
    cluster: Option<Arc<warden_cluster::node::ClusterNode>>,
    /// Held while a report is written: the schedule's and one asked for run in turn.
    reporting: tokio::sync::Mutex<()>,
}

/// The lease under which one node of a cluster runs the schedule.
const SCHEDULE_LEASE: &str = "jobs.schedule";

fn now() -> Result<Timestamp> {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_micros();
    Timestamp::from_micros(u64::try_from(micros)?).context("the clock is past year 9999")
}

/// Starts the schedule. The task ends once `stop` turns true, after any job under way.
pub fn spawn(
    m: Arc<SecureModelManager>,
    dir: &DataDir,
    cfg: &Config,
    root: RootKey,
    mut stop: tokio::sync::watch::Receiver<bool>,
    cluster: Option<Arc<warden_cluster::node::ClusterNode>>,
) -> Result<(tokio::task::JoinHandle<()>, OnDemand)> {
    let s = cfg.schedule.clone();
    for f in &s.report_formats {
        anyhow::ensure!(
            matches!(f.as_str(), "json" | "csv" | "html"),
            "[schedule] report_formats: unknown format {f:?} (json, csv, html)"
        );
    }
    let auditor = s
        .auditor_key
        .as_ref()
        .map(|p| crate::common::read_auditor(&dir.resolve(p)).map(Arc::new))
        .transpose()?;
    let jobs = Arc::new(Jobs {
        m,
        reports: dir.root.join("reports"),
        dir: dir.clone(),
        config: cfg.clone(),
        max_epoch_micros: cfg.rotation_interval_secs.saturating_mul(1_000_000),
        cfg: s,
        root: Arc::new(root),
        auditor,
        cluster,
        reporting: tokio::sync::Mutex::new(()),
    });
    let on_demand = OnDemand(Arc::clone(&jobs));
    let task = tokio::spawn(async move {
        let every = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        let verify_every = every(jobs.cfg.verify_every_secs);
        let report_every = every(jobs.cfg.report_every_secs);
        let retention_every = every(jobs.cfg.retention_every_secs);
        let start = tokio::time::Instant::now();
        let mut next_verify = verify_every.map(|d| start + d);
        let mut next_report = report_every.map(|d| start + d);
        let mut next_retention = retention_every.map(|d| start + d);
        // The holder keeps the lease across runs; a dead holder's passes to another
        // node after twice the shortest interval (at least a minute).
        let lease_ttl = [verify_every, report_every, retention_every]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::from_secs(60), |d| {
                (d * 2).max(Duration::from_secs(60))
            });
        loop {
            let Some(next) = [next_verify, next_report, next_retention]
                .into_iter()
                .flatten()
                .min()
            else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
            }
            let t = tokio::time::Instant::now();
            let here = match &jobs.cluster {
                None => true,
                Some(n) => n.hold(SCHEDULE_LEASE, lease_ttl).await.unwrap_or_else(|e| {
                    crate::common::eprint(&format!("warden: scheduled jobs: {e}"));
                    false
                }),
            };
            if let (Some(due), Some(d)) = (next_verify, verify_every)
                && t >= due
            {
                if here && let Err(e) = verify(&jobs).await {
                    crate::common::eprint(&format!("warden: scheduled verification: {e:#}"));
                }
                next_verify = Some(t + d);
            }
            if let (Some(due), Some(d)) = (next_report, report_every)
                && t >= due
            {
                if here && let Err(e) = report(&jobs, None).await {
                    crate::common::eprint(&format!("warden: scheduled report: {e:#}"));
                }
                next_report = Some(t + d);
            }
            if let (Some(due), Some(d)) = (next_retention, retention_every)
                && t >= due
            {
                if here && let Err(e) = retention(&jobs).await {
                    crate::common::eprint(&format!("warden: scheduled retention: {e:#}"));
                }
                // Sealed content is kept by the node that sealed it: every node expires
                // its own.
                if let Err(e) = content_retention(&jobs).await {
                    crate::common::eprint(&format!("warden: scheduled content retention: {e:#}"));
                }
                next_retention = Some(t + d);
            }
        }
    });
    Ok((task, on_demand))
}

/// Runs the schedule's report on request (the dashboard's "generate now").
#[derive(Clone)]
pub struct OnDemand(Arc<Jobs>);

impl OnDemand {
    /// Where the reports are archived.
    pub fn reports(&self) -> PathBuf {
        self.0.reports.clone()
    }

    /// The key their signatures are checked with.
    pub fn root_public(&self) -> warden_core::epoch::RootPublic {
        self.0.root.public.clone()
    }

    /// A report for the scheduled period ending now, as the schedule makes one, with
    /// its `report.generated` entry naming `by`; the names of the files written.
    pub async fn report(&self, by: String) -> Result<Vec<String>> {
        report(&self.0, Some(by)).await
    }
}

/// Verifies what was appended since the last clean run (or everything), records a
/// `verification.run` entry, and saves the state to resume from.
async fn verify(j: &Arc<Jobs>) -> Result<()> {
    let (log, bound) = j.m.ledger_state();
    let log = log.to_path_buf();
    let Some(bound) = bound else {
        return Ok(());
    };
    let state_path = j.reports.join("verify.state");
    let root = j.root.public.clone();
    let max = j.max_epoch_micros;
    let jobs = Arc::clone(j);
    let (report, incremental) = tokio::task::spawn_blocking(move || -> Result<_> {
        let cfg = || VerifyConfig {
            root: root.clone(),
            max_epoch_micros: max,
            auditor: None,
        };
        let saved: Option<ResumeState> = std::fs::read(&state_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let cps = checkpoints_path(&log);
        let run = |resume: Option<&ResumeState>| {
            warden_store::verify::verify_prefix(
                &log,
                &cps,
                cfg(),
                Vec::new(),
                resume,
                Some(bound),
                &mut |_, _| {},
            )
        };
        // A state that does not fit this ledger any more: verify everything.
        let (out, incremental) = match saved.as_ref().map(|s| run(Some(s))) {
            Some(Ok(o)) => (o, true),
            _ => (run(None)?, false),
        };
        if let Some(state) = &out.resume {
            std::fs::create_dir_all(&jobs.reports)?;
            warden_store::durable::write_atomic(&state_path, &serde_json::to_vec(state)?, 0o600)?;
        }
        Ok((out.report, incremental))
    })
    .await??;
    let codes: Vec<String> = report
        .findings
        .iter()
        .take(20)
        .map(|f| {
            format!(
                "{}:{}",
                f.index,
                serde_json::to_value(f.code).unwrap_or_default()
            )
        })
        .collect();
    j.m.record_system(
        "verification.run",
        "verify",
        json!({
            "clean": report.is_clean(), "incremental": incremental,
            "entries": report.entries, "verified_size": report.verified_size,
            "findings": report.findings.len(), "first_findings": codes,
        }),
    )
    .await?;
    if !report.is_clean() {
        crate::common::eprint(&format!(
            "warden: scheduled verification found {} problem(s); run `warden verify` for the details",
            report.findings.len()
        ));
    }
    Ok(())
}

/// Writes a signed report for the period ending now, in every configured format, and
/// records a `report.generated` entry naming the files and their digests (and who
/// asked for it, when someone did). Answers the files' names.
async fn report(j: &Arc<Jobs>, requested_by: Option<String>) -> Result<Vec<String>> {
    anyhow::ensure!(
        !j.cfg.report_formats.is_empty(),
        "no report format is configured ([schedule] report_formats)"
    );
    let _one = j.reporting.lock().await;
    let (log, bound) = j.m.ledger_state();
    let log = log.to_path_buf();
    let jobs = Arc::clone(j);
    let (files, summary) = tokio::task::spawn_blocking(move || -> Result<_> {
        let to = now()?;
        let from = Timestamp::from_micros(
            to.as_micros()
                .saturating_sub(jobs.cfg.report_period_secs.saturating_mul(1_000_000)),
        )
        .context("report period")?;
        let sinks = crate::cmd::report::sink_positions(&jobs.dir)?;
        let r = warden_store::report::build(&ReportInput {
            log: &log,
            root: &jobs.root.public,
            auditor: jobs.auditor.as_deref(),
            from,
            to,
            max_epoch_micros: jobs.max_epoch_micros,
            generated: to,
            sinks: &sinks,
            bound,
        })?;
        let stamp: String = to
            .to_string()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(15)
            .collect();
        let mut files = Vec::new();
        for f in &jobs.cfg.report_formats {
            let bytes = crate::cmd::report::render(&r, f)?;
            let out = jobs.reports.join(format!("report-{stamp}.{f}"));
            crate::cmd::report::write_signed(&out, &bytes, &jobs.root)?;
            files.push(json!({
                "file": rel(&jobs.dir.root, &out),
                "sha256": warden_core::hex::encode(&sha256(&bytes)),
            }));
        }
        let summary = json!({
            "from": r.period.from, "to": r.period.to, "entries": r.entries.total,
            "accesses": r.accesses.total, "invalid": r.integrity.invalid.len(),
            "rotation_violations": r.key_rotation.violations.len(),
        });
        Ok((files, summary))
    })
    .await??;
    let names = files
        .iter()
        .filter_map(|f| f.get("file").and_then(|v| v.as_str()))
        .filter_map(|f| Path::new(f).file_name()?.to_str().map(str::to_owned))
        .collect();
    let mut details = json!({"files": files, "report": summary});
    if let (Some(by), Some(d)) = (requested_by, details.as_object_mut()) {
        d.insert("requested_by".into(), json!(by));
    }
    j.m.record_system("report.generated", "report", details)
        .await?;
    Ok(names)
}

/// Removes sealed segments and archived reports past `[retention]`. The ledger's
/// removal records itself; reports are recorded in one `retention.delete` entry
/// before their files are deleted.
async fn retention(j: &Arc<Jobs>) -> Result<()> {
    let jobs = Arc::clone(j);
    // A cluster's ledger is one stream in its database; segments are not sealed there,
    // so only archived reports expire.
    let on_cluster = j.cluster.is_some();
    let outcome = tokio::task::spawn_blocking(move || {
        if on_cluster {
            return Ok(None);
        }
        let ledger = jobs
            .m
            .ledger()
            .ok_or_else(|| anyhow::anyhow!("retention runs where the ledger is open"))?;
        crate::cmd::retention::ledger(
            ledger,
            &jobs.dir,
            &jobs.config,
            &jobs.root.public,
            jobs.config.retention.ledger_days,
            false,
        )
    })
    .await??;
    if let Some((plan, _)) = outcome {
        crate::common::eprint(&format!(
            "warden: retention removed {} sealed segment(s), entries up to {}",
            plan.segments.len(),
            plan.end
        ));
    }
    let expired = crate::cmd::retention::expired_reports(
        &j.reports,
        j.config.retention.reports_days,
        SystemTime::now(),
    )?;
    if expired.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = expired.iter().map(|p| rel(&j.dir.root, p)).collect();
    j.m.record_system(
        warden_store::retention::KIND_RETENTION,
        "retention",
        json!({"reports": names, "retention_secs": j.config.retention.reports_days.saturating_mul(86_400)}),
    )
    .await?;
    for p in &expired {
        std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
    }
    warden_store::durable::sync_dir(&j.reports)?;
    Ok(())
}

/// Removes sealed inference content past `[retention] inference_content_days`,
/// recorded first as one `retention.delete` entry.
async fn content_retention(j: &Arc<Jobs>) -> Result<()> {
    let days = j.config.retention.inference_content_days;
    let Some((first, parts)) = crate::cmd::content::expired(&j.dir.root, days, j.m.now())? else {
        return Ok(());
    };
    if parts.is_empty() {
        return Ok(());
    }
    let details = crate::cmd::content::expiry_details(&parts, &first, days);
    j.m.record_system(
        warden_store::retention::KIND_RETENTION,
        "retention",
        details,
    )
    .await?;
    warden_store::content::remove(&warden_store::content::dir(&j.dir.root), &parts)?;
    crate::common::eprint(&format!(
        "warden: retention removed {} part(s) of sealed inference content before {first}",
        parts.len()
    ));
    Ok(())
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
