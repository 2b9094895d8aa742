//! `warden verify`.

use crate::common::{EXIT_INVALID, print_json, read_limited};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use warden_core::note::Note;
use warden_core::verify::{ResumeState, VerifyConfig};
use warden_store::config::DataDir;
use warden_store::keys;
use warden_store::ledger::checkpoints_path;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Data directory whose ledger to verify (uses its warden.toml and keys/root.pub).
    /// Ignored when --log names the ledger.
    #[arg(long, env = "WARDEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Entries file to verify (its checkpoints file is beside it), or a ledger a
    /// cluster published as tlog-tiles: `s3://bucket/prefix` (credentials and endpoint
    /// from the standard AWS variables) or a directory holding `checkpoint`, read
    /// straight from there, every hash tile checked. Needs --root-pub.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The log's root public key (the trust anchor). Default: DATA_DIR/keys/root.pub.
    #[arg(long)]
    pub root_pub: Option<PathBuf>,
    /// An auditor secret key: also decrypt every entry.
    #[arg(long)]
    pub auditor_key: Option<PathBuf>,
    /// A checkpoint held by an outside party (SIEM, witness): the log must contain it.
    /// Either a signed note, the JSON printed by `warden log checkpoint --json`, or
    /// checkpoint messages exported to a SIEM in any format (the last one in the file).
    #[arg(long = "trusted-checkpoint")]
    pub trusted: Vec<PathBuf>,
    /// A witness's verifier key (`name+keyid+key`, from `warden witness vkey`): accept
    /// the ledger only with a checkpoint cosigned by --witness-quorum of the witnesses
    /// given (read from --cosigned), and only if the ledger contains that checkpoint.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// Witnesses that must have cosigned (default: every one given).
    #[arg(long, requires = "witnesses")]
    pub witness_quorum: Option<usize>,
    /// The cosigned checkpoint (default: the one `warden log cosign` publishes beside
    /// the ledger, `<log>.cosigned`).
    #[arg(long, requires = "witnesses")]
    pub cosigned: Option<PathBuf>,
    /// Resume from a state saved by --save-checkpoint: verify only newer entries.
    #[arg(long)]
    pub since_checkpoint: Option<PathBuf>,
    /// After a clean run, save the verified state here for --since-checkpoint.
    #[arg(long)]
    pub save_checkpoint: Option<PathBuf>,
    /// Longest allowed epoch in seconds (the rotation interval policy).
    #[arg(long, default_value_t = 7200)]
    pub max_epoch: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Most findings to print in text mode (all are in --json).
    #[arg(long, default_value_t = 50)]
    pub max_findings: usize,
    /// Threads that hash, parse and decrypt entries (default: one per core). The
    /// findings are the same, in the same order, whatever the number.
    #[arg(long, value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,
}

fn read_trusted(p: &std::path::Path) -> Result<Note> {
    let bytes = read_limited(p, 1 << 20)?;
    // A checkpoint message as a SIEM stored it, in any export format.
    if let Some(note) = warden_core::checkpoint::find_export_token(&bytes) {
        return Note::parse(&note).with_context(|| {
            format!(
                "{}: the exported checkpoint is not a signed note",
                p.display()
            )
        });
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && let Some(n) = v.get("note").and_then(|n| n.as_str())
    {
        return Ok(Note::parse(n.as_bytes())?);
    }
    Note::parse(&bytes).with_context(|| format!("{} is not a signed checkpoint", p.display()))
}

pub fn run(a: &Args) -> Result<ExitCode> {
    match verify(a) {
        Ok(code) => Ok(code),
        Err(e) => {
            if a.json {
                print_json(&serde_json::json!({"ok": false, "error": format!("{e:#}")}))?;
            }
            Err(e)
        }
    }
}

fn verify(a: &Args) -> Result<ExitCode> {
    warden_store::verify::set_jobs(a.jobs.map_or(0, std::num::NonZeroUsize::get));
    let (log, root_pub) = match (&a.log, &a.data_dir) {
        (Some(log), _) => {
            let Some(rp) = &a.root_pub else {
                bail!("--log needs --root-pub (the log's trust anchor)")
            };
            (log.clone(), rp.clone())
        }
        (None, dd) => {
            let d = DataDir::new(dd.as_deref().unwrap_or(std::path::Path::new(".")));
            let cfg = crate::cluster::config_for_reading(&d)?;
            (
                d.log(&cfg),
                a.root_pub.clone().unwrap_or_else(|| d.root_pub()),
            )
        }
    };
    let root = keys::read_root_public(&root_pub)?;
    let auditor = a
        .auditor_key
        .as_ref()
        .map(|p| keys::read_recipient_secret(p))
        .transpose()?;
    let mut trusted = a
        .trusted
        .iter()
        .map(|p| read_trusted(p))
        .collect::<Result<Vec<_>>>()?;
    let witnessed = if a.witnesses.is_empty() {
        None
    } else {
        let (keys, quorum) = crate::cmd::verify_witness::keys(&a.witnesses, a.witness_quorum)?;
        let path = a
            .cosigned
            .clone()
            .unwrap_or_else(|| warden_server::cosigning::cosigned_path(&log));
        let (note, w) = crate::cmd::verify_witness::check(&path, &keys, quorum);
        // The log must contain what the witnesses cosigned.
        trusted.extend(note);
        Some(w)
    };
    let resume: Option<ResumeState> = match &a.since_checkpoint {
        Some(p) => Some(
            serde_json::from_slice(&read_limited(p, 16 << 20)?)
                .with_context(|| format!("{} is not a saved verification state", p.display()))?,
        ),
        None => None,
    };
    let cfg = VerifyConfig {
        root,
        max_epoch_micros: a.max_epoch.saturating_mul(1_000_000),
        auditor,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} verifying {bytes}/{total_bytes} {wide_bar} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if a.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let start = std::time::Instant::now();
    let mut progress = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let (out, tiles) = if crate::cmd::verify_bucket::is_published(&log) {
        let url = log.to_string_lossy().into_owned();
        let o = crate::cmd::verify_bucket::open(&url, resume.as_ref())?;
        let mut trusted = trusted;
        trusted.push(o.latest);
        let out = warden_store::verify::verify_streams(
            o.entries,
            o.entries_len,
            o.checkpoints,
            &log,
            cfg,
            trusted,
            resume.as_ref(),
            &mut progress,
        )?;
        let tiles = o
            .tiles
            .join()
            .map_err(|_| anyhow::anyhow!("the tile check failed"))?;
        (out, Some(tiles))
    } else {
        let out = warden_store::verify::verify_files(
            &log,
            &checkpoints_path(&log),
            cfg,
            trusted,
            resume.as_ref(),
            &mut progress,
        )?;
        (out, None)
    };
    bar.finish_and_clear();
    let tiles_clean = tiles.as_ref().is_none_or(|t| t.count == 0);
    let witnessed_ok = witnessed.as_ref().is_none_or(|w| w.ok);
    let clean = out.report.is_clean() && tiles_clean && witnessed_ok;
    let secs = start.elapsed().as_secs_f64();
    let r = &out.report;
    if let (Some(p), Some(st)) = (&a.save_checkpoint, &out.resume) {
        let j = serde_json::to_vec_pretty(st)?;
        warden_store::durable::write_atomic(p, &j, 0o644)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        print_json(&serde_json::json!({
            "ok": clean, "tiles": tiles, "entries": r.entries, "checkpoints": r.checkpoints, "epochs": r.epochs,
            "decrypted": r.decrypted, "verified_size": r.verified_size, "seconds": secs, "findings": r.findings,
            "resumed_from": out.resumed_from, "removed_by_retention": r.removed,
            "pending_recovery": r.pending, "witnessed": witnessed,
        }))?;
    } else {
        if let Some(t) = &tiles {
            for f in &t.findings {
                println!("INVALID tile {f}");
            }
            if t.count > t.findings.len() as u64 {
                println!(
                    "... and {} more tile findings",
                    t.count - t.findings.len() as u64
                );
            }
        }
        if let Some(w) = &witnessed {
            match &w.problem {
                None => println!(
                    "WITNESSED: the checkpoint of size {} is cosigned by {} of the {} witnesses needed ({})",
                    w.size.unwrap_or_default(),
                    w.cosigned_by.len(),
                    w.quorum,
                    w.cosigned_by.join(", ")
                ),
                Some(p) => println!("INVALID witnesses: {p}"),
            }
        }
        for f in r.findings.iter().take(a.max_findings) {
            let loc = match f.location {
                warden_core::verify::Location::Entry => "entry",
                warden_core::verify::Location::Checkpoint => "checkpoint",
            };
            println!("INVALID {loc} {}: {:?}: {}", f.index, f.code, f.message);
        }
        if r.findings.len() > a.max_findings {
            println!(
                "... and {} more findings (use --json to see all)",
                r.findings.len() - a.max_findings
            );
        }
        let decrypted = if r.decrypted > 0 {
            format!(", {} decrypted", r.decrypted)
        } else {
            String::new()
        };
        let verdict = if clean { "OK" } else { "FAILED" };
        let tiled = tiles.as_ref().map_or(String::new(), |t| {
            format!(", {} hash tiles checked ({} findings)", t.checked, t.count)
        });
        let removed = if r.removed > 0 {
            format!(
                " (entries 0..{} were removed by retention; verified from there)",
                r.removed
            )
        } else {
            String::new()
        };
        if let Some(p) = &r.pending {
            println!(
                "PENDING RECOVERY: entries {}..{} ({} entries) follow the last signed checkpoint: \
                 never acknowledged, not part of the log; the next writer to open the ledger \
                 cuts them and records a system.recovery entry",
                p.from,
                p.to,
                p.to.saturating_sub(p.from)
            );
        }
        println!(
            "{verdict}: {} entries, {} checkpoints, {} epochs{decrypted}, {} findings{tiled} ({secs:.2} s){removed}",
            r.entries,
            r.checkpoints,
            r.epochs,
            r.findings.len()
        );
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}
