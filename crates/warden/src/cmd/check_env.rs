//! `warden check-env`: is this a fit place to train on sensitive data?

use crate::common::{DataDirArg, EXIT_INVALID, print_json};
use crate::journal::record;
use anyhow::Result;
use clap::Args as ClapArgs;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_data::envcheck::{self, Check};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Training data (file or directory): must be on encrypted storage and not
    /// readable by other users.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the model will be written: must be owned by this user and writable by
    /// nobody else.
    #[arg(long)]
    output: Option<PathBuf>,
    /// A mount point known to be encrypted (adds to `[training] encrypted_mounts`).
    #[arg(long = "encrypted-mount")]
    encrypted_mounts: Vec<PathBuf>,
    /// Require network isolation (as `[training] require_network_isolation = true`).
    #[arg(long)]
    require_isolation: bool,
    #[command(flatten)]
    dir: DataDirArg,
    /// Who runs it, for the ledger entry (default: the operating-system user).
    #[arg(long = "as", env = "WARDEN_USER", value_name = "PRINCIPAL")]
    as_principal: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the checks; the result is a `training.check_env` ledger entry, and writing it
/// is itself the last check (the audit ledger is reachable and writable). Exit status:
/// 0 every check passed, 1 one failed, 2 the checks could not run.
pub fn run(a: &Args) -> Result<ExitCode> {
    let dir = a.dir.dir();
    let cfg = dir.read_config().ok();
    let training = cfg.map(|c| c.training).unwrap_or_default();
    let mut mounts = training.encrypted_mounts.clone();
    mounts.extend(a.encrypted_mounts.iter().cloned());
    let mounts: Vec<PathBuf> = mounts.iter().map(|m| dir.resolve(m)).collect();
    let mut checks: Vec<Check> = Vec::new();
    if let Some(d) = &a.data {
        checks.push(envcheck::data_encrypted(d, &mounts));
        checks.push(envcheck::not_world_readable(d));
    }
    if let Some(o) = &a.output {
        checks.push(envcheck::output_owner_only(o));
    }
    checks.push(envcheck::network(
        a.require_isolation || training.require_network_isolation,
    ));
    let passed = checks.iter().all(|c| c.ok);
    let ledger = record(
        &dir,
        "training.check_env",
        a.as_principal.as_deref(),
        "check_env",
        json!({"passed": passed, "checks": checks, "data": a.data, "output": a.output}),
    );
    checks.push(match &ledger {
        Ok(i) => Check {
            name: "ledger_writable",
            ok: true,
            reason: format!("this result is ledger entry {i}"),
        },
        Err(e) => Check {
            name: "ledger_writable",
            ok: false,
            reason: format!("{e:#}"),
        },
    });
    let ok = checks.iter().all(|c| c.ok);
    if a.json {
        print_json(&json!({
            "passed": ok, "checks": checks,
            "ledger_index": ledger.as_ref().ok(),
        }))?;
    } else {
        for c in &checks {
            println!(
                "{} {:<24} {}",
                if c.ok { "PASS" } else { "FAIL" },
                c.name,
                c.reason
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}
