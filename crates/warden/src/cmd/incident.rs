//! `warden incident list|show|ack`: incidents the detectors (and the load path's
//! integrity checks) recorded in the ledger, and their acknowledgement.
//!
//! These open the ledger, so they run while `warden serve` is stopped; against a
//! running service use `GET /v1/incidents` and `POST /v1/incidents/{index}/ack`.

use crate::common::{DataDirArg, print_json, read_auditor};
use crate::registry::{CallerArgs, with_manager};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use warden_store::audit::IncidentView;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List incidents, oldest first (severity and details need the auditor key).
    List(List),
    /// Show one incident with its evidence and acknowledgement.
    Show(Show),
    /// Acknowledge an incident (an `incident.ack` ledger entry).
    Ack(Ack),
}

#[derive(Args, Debug)]
pub struct List {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// Auditor secret key: decrypts severities, detectors and summaries.
    #[arg(long)]
    auditor_key: Option<PathBuf>,
    /// Only incidents not yet acknowledged.
    #[arg(long)]
    open: bool,
    /// Only this severity or above: LOW, MEDIUM, HIGH, CRITICAL.
    #[arg(long)]
    min_severity: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct Show {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// The incident's ledger index.
    index: u64,
    #[arg(long)]
    auditor_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct Ack {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// The incident's ledger index.
    index: u64,
    /// What was done about it.
    #[arg(long)]
    note: String,
}

fn rank(s: &str) -> u8 {
    match s {
        "LOW" => 1,
        "MEDIUM" => 2,
        "HIGH" => 3,
        "CRITICAL" => 4,
        _ => 0,
    }
}

fn list_of(
    dir: &DataDirArg,
    caller: &CallerArgs,
    key: Option<&PathBuf>,
) -> Result<Vec<IncidentView>> {
    let auditor = key.map(|p| read_auditor(p).map(Arc::new)).transpose()?;
    with_manager(dir, async |m| {
        Ok(m.incidents(&caller.caller_in(m).await?, auditor.clone())
            .await?)
    })
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::List(a) => {
            let min = match &a.min_severity {
                None => 0,
                Some(s) => match rank(&s.to_ascii_uppercase()) {
                    0 => bail!("--min-severity: use LOW, MEDIUM, HIGH or CRITICAL"),
                    r => r,
                },
            };
            let list: Vec<IncidentView> = list_of(&a.dir, &a.caller, a.auditor_key.as_ref())?
                .into_iter()
                .filter(|i| !a.open || i.acknowledged.is_none())
                .filter(|i| rank(&i.severity) >= min)
                .collect();
            if a.json {
                print_json(&serde_json::to_value(&list)?)?;
            } else {
                println!(
                    "{:>10}  {:<27}  {:<8}  {:<16}  {:<5}  SUMMARY",
                    "INDEX", "TIME", "SEVERITY", "DETECTOR", "ACK"
                );
                for i in &list {
                    println!(
                        "{:>10}  {:<27}  {:<8}  {:<16}  {:<5}  {}",
                        i.index,
                        i.time,
                        i.severity,
                        i.detector,
                        if i.acknowledged.is_some() {
                            "yes"
                        } else {
                            "no"
                        },
                        i.summary
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show(a) => {
            let list = list_of(&a.dir, &a.caller, a.auditor_key.as_ref())?;
            let Some(i) = list.into_iter().find(|i| i.index == a.index) else {
                bail!("entry {} is not an incident", a.index)
            };
            print_json(&serde_json::to_value(&i)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ack(a) => with_manager(&a.dir, async |m| {
            let r = m
                .ack_incident(&a.caller.caller_in(m).await?, a.index, &a.note)
                .await?;
            println!(
                "incident {} acknowledged (ledger index {})",
                a.index, r.index
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}
