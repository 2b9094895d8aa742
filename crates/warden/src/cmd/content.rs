//! `warden content show|expire`: the prompts and answers the gateway sealed to the
//! auditors (`[gateway] seal_content`). `show` opens them with an auditor key and checks
//! each against its `inference.request` entry (the entry's digests must be the
//! content's); `expire` removes days past `[retention] inference_content_days`. Both
//! are recorded in the ledger.

use crate::common::{DataDirArg, EXIT_INVALID, print_json, read_auditor};
use crate::journal::Recorder;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_store::content::{self, Opened, Part};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Open sealed content with an auditor key and check it against the ledger.
    ///
    /// Each record must match its `inference.request` entry: the same request id, and
    /// the SHA-256 of its prompt and answer equal to the entry's. Exit status: 0 every
    /// record opened and matched; 1 a record is altered, torn, or does not match its
    /// entry (each is named); 2 the command could not run. The reading is itself
    /// recorded (`content.read`).
    Show(ShowArgs),
    /// Remove sealed content of days past `[retention] inference_content_days`.
    ///
    /// The removal is recorded first (`retention.delete`, naming the days and parts);
    /// each day's key goes with its records, so nothing of them can be read again.
    Expire(ExpireArgs),
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// Auditor secret key (the content is sealed to the keys in `auditors/`).
    #[arg(long, value_name = "FILE")]
    auditor_key: PathBuf,
    /// Only this UTC day (YYYY-MM-DD).
    #[arg(long)]
    day: Option<String>,
    /// Only this request.
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// Who reads (default: the operating-system user).
    #[arg(long, value_name = "PRINCIPAL")]
    as_principal: Option<String>,
    /// One JSON object per record.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExpireArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// Days to keep, before today (default: `[retention] inference_content_days`; 0
    /// keeps everything).
    #[arg(long)]
    days: Option<u64>,
    /// Name what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Show(a) => show(a),
        Command::Expire(a) => expire(a),
    }
}

/// What the ledger says of one request.
struct Recorded {
    index: u64,
    prompt_sha256: Option<String>,
    response_sha256: Option<String>,
}

/// The `inference.request` entries of the ledger, by request id.
fn recorded(
    log: &Path,
    key: &warden_core::crypto::RecipientSecretKey,
) -> Result<HashMap<String, Recorded>> {
    let mut out = HashMap::new();
    let filter = warden_store::audit::EntryFilter {
        kind: Some("inference.request".into()),
        ..Default::default()
    };
    warden_store::audit::for_each_entry(log, Some(key), &filter, |e| {
        let Some(ev) = e.event.as_ref() else {
            return Ok(true);
        };
        let s = |p: &str| ev.pointer(p).and_then(Value::as_str).map(str::to_owned);
        if let Some(rid) = s("/request_id") {
            out.insert(
                rid,
                Recorded {
                    index: e.index,
                    prompt_sha256: s("/details/prompt_sha256"),
                    response_sha256: s("/details/response_sha256"),
                },
            );
        }
        Ok(true)
    })?;
    Ok(out)
}

fn show(a: &ShowArgs) -> Result<ExitCode> {
    if let Some(d) = &a.day
        && !content::is_day(d)
    {
        bail!("--day {d:?}: use YYYY-MM-DD");
    }
    let d = a.dir.dir();
    let key = read_auditor(&a.auditor_key)?;
    let parts: Vec<Part> = content::parts(&content::dir(&d.root))?
        .into_iter()
        .filter(|p| a.day.as_ref().is_none_or(|d| &p.day == d))
        .collect();
    let rec = Recorder::open(&d, a.as_principal.as_deref())
        .context("every reading of sealed content is recorded in the ledger")?;
    let cfg = crate::cluster::config_for_reading(&d)?;
    let entries = recorded(&d.log(&cfg), &key)?;
    let mut out = std::io::stdout().lock();
    let (mut shown, mut problems, mut not_ours) = (0u64, 0u64, 0u64);
    for p in &parts {
        let r = content::read(p, &key)?;
        if r.not_for_this_key {
            not_ours += 1;
            continue;
        }
        if r.torn {
            problems += 1;
            report(
                &mut out,
                a.json,
                p,
                json!({"problem": "torn", "detail": "the last record was cut short (the writer stopped mid-write)"}),
            )?;
        }
        for (n, o) in r.records.into_iter().enumerate() {
            let c = match o {
                Opened::Content(c) => c,
                Opened::Bad { line, why } => {
                    problems += 1;
                    report(
                        &mut out,
                        a.json,
                        p,
                        json!({"line": line, "problem": "unreadable", "detail": why}),
                    )?;
                    continue;
                }
            };
            if a.request_id.as_ref().is_some_and(|r| r != &c.request_id) {
                continue;
            }
            let check = match entries.get(&c.request_id) {
                None => Err("no inference.request entry has this request id".to_owned()),
                Some(e) if e.prompt_sha256.as_deref() != Some(&c.prompt_sha256()) => {
                    Err(format!("the prompt does not match entry {}", e.index))
                }
                Some(e) if c.response.is_some() || c.response_base64.is_some() => {
                    if e.response_sha256.as_deref() == Some(&c.response_sha256()) {
                        Ok(e.index)
                    } else {
                        Err(format!("the answer does not match entry {}", e.index))
                    }
                }
                Some(e) => Ok(e.index),
            };
            shown += 1;
            let (entry, problem) = match &check {
                Ok(i) => (Some(*i), None),
                Err(why) => {
                    problems += 1;
                    (None, Some(why.clone()))
                }
            };
            let v = json!({
                "line": n + 1, "request_id": c.request_id, "time": c.time,
                "endpoint": c.endpoint, "deployment": c.deployment, "entry": entry,
                "problem": problem, "prompt": c.prompt, "response": c.response,
                "response_base64": c.response_base64,
            });
            report(&mut out, a.json, p, v)?;
        }
    }
    let index = rec.record(
        "content.read",
        "content.read",
        json!({"day": a.day, "request_id": a.request_id, "records": shown, "problems": problems}),
    )?;
    rec.close();
    if !a.json {
        crate::common::eprint(&format!(
            "{shown} record(s) in {} part(s), {problems} problem(s){}; recorded as entry {index}",
            parts.len(),
            if not_ours > 0 {
                format!(", {not_ours} part(s) not sealed to this key")
            } else {
                String::new()
            }
        ));
    }
    Ok(if problems > 0 {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

fn report(out: &mut impl std::io::Write, json: bool, p: &Part, mut v: Value) -> Result<()> {
    if let Some(m) = v.as_object_mut() {
        m.insert("day".into(), json!(p.day));
        m.insert("part".into(), json!(p.id));
    }
    if json {
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let s = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    match s("problem") {
        Value::String(why) => writeln!(
            out,
            "{} {} line {}\tPROBLEM\t{why}\t{}",
            p.day,
            p.id,
            s("line"),
            s("detail")
        )?,
        _ => writeln!(
            out,
            "{}\t{}\t{}\tentry {}\n  prompt:   {}\n  response: {}",
            s("time").as_str().unwrap_or_default(),
            s("request_id").as_str().unwrap_or_default(),
            s("deployment").as_str().unwrap_or_default(),
            s("entry"),
            s("prompt"),
            s("response")
        )?,
    }
    Ok(())
}

/// The first day kept when keeping `days` whole UTC days before today's (`now`).
#[must_use]
pub fn first_kept_day(now: warden_core::time::Timestamp, days: u64) -> String {
    let cut = now
        .as_micros()
        .saturating_sub(days.saturating_mul(86_400_000_000));
    warden_core::time::Timestamp::from_micros(cut)
        .map(|t| t.to_string())
        .and_then(|t| t.get(..10).map(str::to_owned))
        .unwrap_or_default()
}

/// The parts retention removes: `None` when it is off.
pub fn expired(
    root: &Path,
    days: u64,
    now: warden_core::time::Timestamp,
) -> Result<Option<(String, Vec<Part>)>> {
    if days == 0 {
        return Ok(None);
    }
    let first = first_kept_day(now, days);
    let parts = content::before(&content::dir(root), &first)?;
    Ok(Some((first, parts)))
}

/// The `retention.delete` details of removing `parts`.
pub fn expiry_details(parts: &[Part], first_kept: &str, days: u64) -> Value {
    let mut days_removed: Vec<&str> = parts.iter().map(|p| p.day.as_str()).collect();
    days_removed.dedup();
    json!({
        "inference_content": {
            "days": days_removed,
            "parts": parts.iter().map(|p| format!("{}.{}", p.day, p.id)).collect::<Vec<_>>(),
            "first_kept_day": first_kept,
        },
        "retention_secs": days.saturating_mul(86_400),
    })
}

fn expire(a: &ExpireArgs) -> Result<ExitCode> {
    let d = a.dir.dir();
    let cfg = d.read_config()?;
    let days = a.days.unwrap_or(cfg.retention.inference_content_days);
    let now = warden_core::time::Timestamp::from_micros(u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros(),
    )?)
    .context("the clock is past year 9999")?;
    let Some((first, parts)) = expired(&d.root, days, now)? else {
        println!("content retention is off (0 days): nothing removed");
        return Ok(ExitCode::SUCCESS);
    };
    let details = expiry_details(&parts, &first, days);
    let index = if a.dry_run || parts.is_empty() {
        None
    } else {
        let i = crate::journal::record(
            &d,
            warden_store::retention::KIND_RETENTION,
            None,
            "retention",
            details.clone(),
        )?;
        content::remove(&content::dir(&d.root), &parts)?;
        Some(i)
    };
    if a.json {
        print_json(&json!({"removed": !a.dry_run, "entry": index, "details": details}))?;
    } else {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        match index {
            Some(i) => println!(
                "{verb} {} part(s) of sealed content before {first}; recorded as entry {i} (retention.delete)",
                parts.len()
            ),
            None => println!(
                "{verb} {} part(s) of sealed content before {first}",
                parts.len()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
