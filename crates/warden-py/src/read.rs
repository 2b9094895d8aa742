//! What reads a data directory's files without the writer: verification and the
//! compliance report, both without the GIL.

use crate::errors::{IntegrityError, InvalidInput, WardenError, store_error};
use pyo3::prelude::*;
use std::path::{Path, PathBuf};
use warden_core::crypto::RecipientSecretKey;
use warden_core::epoch::RootPublic;
use warden_store::config::{Config, DataDir};

/// What both readers need: the configuration, the log, the root public key, and the
/// auditor key when given.
struct Reading {
    cfg: Config,
    log: PathBuf,
    root: RootPublic,
    auditor: Option<RecipientSecretKey>,
}

fn reading(data_dir: &Path, auditor_key: Option<&Path>) -> PyResult<Reading> {
    let dir = DataDir::new(data_dir);
    let cfg = dir.read_config().map_err(|e| store_error(&e))?;
    let root = warden_store::keys::read_root_public(&dir.root_pub())
        .map_err(|e| InvalidInput::new_err(e.to_string()))?;
    let auditor = auditor_key
        .map(warden_store::keys::read_recipient_secret)
        .transpose()
        .map_err(|e| InvalidInput::new_err(e.to_string()))?;
    let log = dir.log(&cfg);
    Ok(Reading {
        cfg,
        log,
        root,
        auditor,
    })
}

/// Verifies the ledger of `data_dir` against its root public key (and decrypts every
/// entry with `auditor_key` when given); returns the report as JSON: `ok`, `entries`,
/// `checkpoints`, `epochs`, `decrypted`, `findings` (each with `location`, `index`,
/// `code`, `message`), `pending`.
#[pyfunction]
#[pyo3(signature = (data_dir, *, auditor_key=None, max_epoch_secs=7200))]
pub fn verify(
    py: Python<'_>,
    data_dir: PathBuf,
    auditor_key: Option<PathBuf>,
    max_epoch_secs: u64,
) -> PyResult<String> {
    let Reading {
        log, root, auditor, ..
    } = reading(&data_dir, auditor_key.as_deref())?;
    let cfg = warden_core::verify::VerifyConfig {
        root,
        max_epoch_micros: max_epoch_secs.saturating_mul(1_000_000),
        auditor,
    };
    let out = py.detach(|| {
        warden_store::verify::verify_files(
            &log,
            &warden_store::ledger::checkpoints_path(&log),
            cfg,
            Vec::new(),
            None,
            &mut |_, _| {},
        )
    });
    let out = out.map_err(|e| IntegrityError::new_err(e.to_string()))?;
    let mut v =
        serde_json::to_value(&out.report).map_err(|e| WardenError::new_err(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("ok".into(), out.report.is_clean().into());
    }
    Ok(v.to_string())
}

/// The compliance report of `data_dir` for entries in `[start_micros, end_micros)`
/// (Unix microseconds), as JSON: what `warden report` computes (counts, incidents,
/// integrity, key rotation, SIEM coverage from the sinks' cursors), with users and
/// models when `auditor_key` decrypts them.
#[pyfunction]
#[pyo3(signature = (data_dir, start_micros, end_micros, *, auditor_key=None))]
pub fn compliance_report(
    py: Python<'_>,
    data_dir: PathBuf,
    start_micros: u64,
    end_micros: u64,
    auditor_key: Option<PathBuf>,
) -> PyResult<String> {
    use warden_core::time::Timestamp;
    let stamp = |us: u64| {
        Timestamp::from_micros(us)
            .ok_or_else(|| InvalidInput::new_err(format!("{us} is not a time Warden records")))
    };
    let (from, to) = (stamp(start_micros)?, stamp(end_micros)?);
    if to <= from {
        return Err(InvalidInput::new_err("the period ends before it starts"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let generated = stamp(now)?;
    let Reading {
        cfg,
        log,
        root,
        auditor,
    } = reading(&data_dir, auditor_key.as_deref())?;
    let max_epoch_micros = cfg.rotation_interval_secs.saturating_mul(1_000_000);
    let sinks = warden_siem::cursor::positions(&DataDir::new(&data_dir))
        .map_err(|e| InvalidInput::new_err(format!("reading the SIEM sinks' cursors: {e}")))?;
    let r = py.detach(|| {
        warden_store::report::build(&warden_store::report::ReportInput {
            log: &log,
            root: &root,
            auditor: auditor.as_ref(),
            from,
            to,
            max_epoch_micros,
            generated,
            sinks: &sinks,
            bound: None,
        })
    });
    let r = r.map_err(|e| IntegrityError::new_err(e.to_string()))?;
    serde_json::to_string(&r).map_err(|e| WardenError::new_err(e.to_string()))
}

/// The log file of a data directory (for tools that read it directly).
#[pyfunction]
pub fn log_path(data_dir: PathBuf) -> PyResult<PathBuf> {
    let dir = DataDir::new(&data_dir);
    let cfg = dir.read_config().map_err(|e| store_error(&e))?;
    Ok(dir.log(&cfg))
}
