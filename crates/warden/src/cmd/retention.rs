//! Ledger retention, shared by `warden log retention` and `warden serve`'s schedule,
//! and report archive retention.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use warden_core::epoch::RootPublic;
use warden_core::verify::VerifyConfig;
use warden_store::config::{Config, DataDir};
use warden_store::ledger::{Ledger, Receipt};
use warden_store::retention::Plan;

const DAY_SECS: u64 = 86_400;

/// What a retention run removed (or, dry, would remove).
pub type Outcome = Option<(Plan, Option<Receipt>)>;

/// Removes the ledger's sealed segments older than `days` (see
/// [`warden_store::retention`]). Unless `[retention] hold_for_siem` is off, segments a
/// SIEM export cursor has not passed are kept.
pub fn ledger(
    ledger: &Ledger,
    dir: &DataDir,
    cfg: &Config,
    root: &RootPublic,
    days: u64,
    dry_run: bool,
) -> Result<Outcome> {
    if days == 0 {
        return Ok(None);
    }
    let hold = if cfg.retention.hold_for_siem {
        crate::cmd::report::sink_positions(dir)?
            .iter()
            .map(|s| s.next)
            .min()
    } else {
        None
    };
    let vcfg = VerifyConfig {
        root: root.clone(),
        max_epoch_micros: cfg.rotation_interval_secs.saturating_mul(1_000_000),
        auditor: None,
    };
    Ok(ledger.apply_retention(days.saturating_mul(DAY_SECS), hold, vcfg, dry_run)?)
}

/// Archived reports (and their signatures) under `reports/` last modified more than
/// `days` ago, which a run removes.
pub fn expired_reports(reports: &Path, days: u64, now: SystemTime) -> Result<Vec<PathBuf>> {
    if days == 0 {
        return Ok(Vec::new());
    }
    let keep = Duration::from_secs(days.saturating_mul(DAY_SECS));
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(reports) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("report-") {
            continue;
        }
        let modified = e.metadata()?.modified()?;
        if now.duration_since(modified).unwrap_or_default() > keep {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}
