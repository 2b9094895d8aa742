//! `warden report`: signed compliance reports; `warden report verify`.

use crate::common::{DataDirArg, EXIT_INVALID, eprint, print_json, unlock};
use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;
use warden_core::time::Timestamp;
use warden_store::report::{self, ComplianceReport, ReportInput, ReportSignature, SinkPosition};

/// `warden report` (its help text is on the command in `main.rs`).
#[derive(ClapArgs, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a report against its detached signature and the log's root public key.
    ///
    /// Exit status: 0 the signature is valid; 1 it is not; 2 the check could not run.
    Verify {
        /// The report file (any format).
        file: PathBuf,
        /// The signature; default: the report's path with `.sig` appended.
        #[arg(long)]
        sig: Option<PathBuf>,
        /// The log's root public key; default: keys/root.pub in the data directory.
        #[arg(long)]
        root_pub: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(ClapArgs, Debug)]
struct RunArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The period ending now: day, week (default) or month (30 days).
    #[arg(long, value_parser = ["day", "week", "month"], conflicts_with_all = ["from", "to"])]
    period: Option<String>,
    /// Start of the period (RFC 3339, or a date: 2026-11-23), inclusive.
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of the period, exclusive.
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// json, csv, or html (one self-contained page with charts, for screen and print).
    #[arg(long, default_value = "json", value_parser = ["json", "csv", "html"])]
    format: String,
    /// Auditor secret key: per-user and per-model counts and incident severities.
    #[arg(long)]
    auditor_key: Option<PathBuf>,
    /// Where to write the report (its signature goes beside it, `.sig`); `-` prints it
    /// unsigned. Default: reports/<period>-<from>.<format> in the data directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Longest allowed epoch in seconds; default: the configured rotation interval.
    #[arg(long)]
    max_epoch: Option<u64>,
    /// Entries file, for a ledger outside a data directory (with --root-pub, --root-key).
    #[arg(long, requires_all = ["root_pub", "root_key"])]
    log: Option<PathBuf>,
    /// The log's root public key.
    #[arg(long)]
    root_pub: Option<PathBuf>,
    /// The sealed root key that signs the report (WARDEN_PASSPHRASE unlocks it).
    #[arg(long)]
    root_key: Option<PathBuf>,
}

pub fn run(a: &Args) -> Result<ExitCode> {
    match &a.command {
        Some(Command::Verify {
            file,
            sig,
            root_pub,
            dir,
        }) => verify(file, sig.as_deref(), root_pub.as_deref(), dir),
        None => generate(&a.run),
    }
}

/// Parses `2026-11-23`, `2026-11-23T10:00:00Z` or the six-digit form.
fn parse_time(s: &str) -> Result<Timestamp> {
    let full = match s.len() {
        10 => format!("{s}T00:00:00.000000Z"),
        20 if s.ends_with('Z') => format!("{}.000000Z", &s[..19]),
        _ => s.to_owned(),
    };
    Timestamp::parse(full.as_bytes())
        .with_context(|| format!("{s:?} is not a time: use 2026-11-23 or 2026-11-23T10:00:00Z"))
}

fn now() -> Result<Timestamp> {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_micros();
    Timestamp::from_micros(u64::try_from(micros)?).context("the clock is past year 9999")
}

fn generate(a: &RunArgs) -> Result<ExitCode> {
    let generated = now()?;
    let (name, from, to) = match (&a.from, &a.to, a.period.as_deref()) {
        (Some(f), Some(t), _) => ("custom", parse_time(f)?, parse_time(t)?),
        (_, _, p) => {
            let (name, days) = match p.unwrap_or("week") {
                "day" => ("day", 1),
                "month" => ("month", 30),
                _ => ("week", 7),
            };
            let span = days * 86_400 * 1_000_000;
            let from = Timestamp::from_micros(generated.as_micros().saturating_sub(span))
                .context("period start")?;
            (name, from, generated)
        }
    };
    if from >= to {
        bail!("the period is empty: --from must be before --to");
    }
    let dir = a.dir.dir();
    let (log, root_pub, root_key, max_epoch, sinks) = match &a.log {
        Some(log) => (
            log.clone(),
            a.root_pub.clone().context("--log needs --root-pub")?,
            a.root_key.clone().context("--log needs --root-key")?,
            a.max_epoch
                .unwrap_or(warden_store::config::MAX_ROTATION_SECS),
            Vec::new(),
        ),
        None => {
            let cfg = crate::cluster::config_for_reading(&dir)?;
            let sinks = sink_positions(&dir)?;
            (
                dir.log(&cfg),
                a.root_pub.clone().unwrap_or_else(|| dir.root_pub()),
                a.root_key.clone().unwrap_or_else(|| dir.root_key()),
                a.max_epoch.unwrap_or(cfg.rotation_interval_secs),
                sinks,
            )
        }
    };
    let root = warden_store::keys::read_root_public(&root_pub)
        .with_context(|| format!("reading {}", root_pub.display()))?;
    let auditor = a
        .auditor_key
        .as_deref()
        .map(crate::common::read_auditor)
        .transpose()?;
    let r = report::build(&ReportInput {
        log: &log,
        root: &root,
        auditor: auditor.as_ref(),
        from,
        to,
        max_epoch_micros: max_epoch.saturating_mul(1_000_000),
        generated,
        sinks: &sinks,
        bound: None,
    })?;
    let bytes = render(&r, &a.format)?;
    if a.out.as_deref() == Some(Path::new("-")) {
        use std::io::Write as _;
        std::io::stdout().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = a.out.clone().unwrap_or_else(|| {
        dir.root.join("reports").join(format!(
            "{name}-{}.{}",
            from.to_string().get(..10).unwrap_or("report"),
            a.format
        ))
    });
    let key = if a.log.is_some() {
        crate::common::unlock_root_file(&root_key)?
    } else {
        unlock(&dir)?
    };
    let sig_path = write_signed(&out, &bytes, &key)?;
    eprint(&format!(
        "report: {} ({} entries, {} accesses, {} invalid, {} rotation violations); signature: {}",
        out.display(),
        r.entries.total,
        r.accesses.total,
        r.integrity.invalid.len(),
        r.key_rotation.violations.len(),
        sig_path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Where each SIEM sink of the data directory stands (on a cluster, as far as any node
/// has delivered it).
pub fn sink_positions(dir: &warden_store::config::DataDir) -> Result<Vec<SinkPosition>> {
    let shared = crate::cluster::shared_cursors(&dir.read_config()?)?;
    Ok(warden_siem::cursor::positions_with(dir, &shared)?)
}

/// The report in `format` (json, csv or html).
pub fn render(r: &ComplianceReport, format: &str) -> Result<Vec<u8>> {
    Ok(match format {
        "json" => {
            let mut v = serde_json::to_vec_pretty(r)?;
            v.push(b'\n');
            v
        }
        "csv" => csv(r).into_bytes(),
        "html" => crate::cmd::report_html::render(r).into_bytes(),
        other => bail!("unknown report format {other:?}: use json, csv or html"),
    })
}

/// Writes a report and its detached signature (`<out>.sig`) durably; returns the
/// signature's path.
pub fn write_signed(
    out: &Path,
    bytes: &[u8],
    key: &warden_store::keys::RootKey,
) -> Result<PathBuf> {
    let sig = report::sign(bytes, key)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    warden_store::durable::write_atomic(out, bytes, 0o600)
        .with_context(|| format!("writing {}", out.display()))?;
    let sig_path = sig_path(out);
    let mut sig_bytes = serde_json::to_vec_pretty(&sig)?;
    sig_bytes.push(b'\n');
    warden_store::durable::write_atomic(&sig_path, &sig_bytes, 0o644)
        .with_context(|| format!("writing {}", sig_path.display()))?;
    Ok(sig_path)
}

fn sig_path(report: &Path) -> PathBuf {
    let mut s = report.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

fn verify(
    file: &Path,
    sig: Option<&Path>,
    root_pub: Option<&Path>,
    dir: &DataDirArg,
) -> Result<ExitCode> {
    let bytes = crate::common::read_limited(file, 256 << 20)?;
    let sig_file = sig.map_or_else(|| sig_path(file), Path::to_path_buf);
    let sig: ReportSignature =
        serde_json::from_slice(&crate::common::read_limited(&sig_file, 64 << 10)?)
            .with_context(|| format!("{} is not a report signature", sig_file.display()))?;
    let rp = root_pub.map_or_else(|| dir.dir().root_pub(), Path::to_path_buf);
    let root = warden_store::keys::read_root_public(&rp)
        .with_context(|| format!("reading {}", rp.display()))?;
    match report::verify(&bytes, &sig, &root) {
        Ok(()) => {
            print_json(&serde_json::json!({"ok": true, "report": file, "origin": root.origin}))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            print_json(&serde_json::json!({"ok": false, "report": file, "error": e.to_string()}))?;
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// RFC 4180 field.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `section,key,value` rows: the summary, per-day, per-model and per-user counts,
/// incidents, invalid entries, rotation violations and SIEM coverage.
fn csv(r: &ComplianceReport) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut add = |s: &str, k: &str, v: String| rows.push((s.into(), k.into(), v));
    add("report", "origin", r.origin.clone());
    add("report", "generated", r.generated.clone());
    add("report", "period_from", r.period.from.clone());
    add("report", "period_to", r.period.to.clone());
    add("summary", "entries", r.entries.total.to_string());
    add("summary", "accesses", r.accesses.total.to_string());
    add("summary", "granted", r.accesses.granted.to_string());
    add("summary", "denied", r.accesses.denied.to_string());
    if let (Some(u), Some(m)) = (r.accesses.unique_users, r.accesses.unique_models) {
        add("summary", "unique_users", u.to_string());
        add("summary", "unique_models", m.to_string());
    }
    add("summary", "incidents", r.incidents.total.to_string());
    add(
        "summary",
        "key_rotations",
        r.key_rotation.events.to_string(),
    );
    add(
        "summary",
        "longest_epoch_secs",
        format!("{:.0}", r.key_rotation.longest_epoch_secs),
    );
    add(
        "summary",
        "rotation_violations",
        r.key_rotation.violations.len().to_string(),
    );
    add(
        "summary",
        "invalid_entries",
        r.integrity.invalid.len().to_string(),
    );
    add("summary", "ledger_verifies", r.integrity.clean.to_string());
    add(
        "summary",
        "verification_runs",
        r.verification_runs.to_string(),
    );
    for (k, n) in &r.entries.by_kind {
        add("kind", k, n.to_string());
    }
    for d in &r.daily {
        add("day", &format!("{}/granted", d.date), d.granted.to_string());
        add("day", &format!("{}/denied", d.date), d.denied.to_string());
        add(
            "day",
            &format!("{}/incidents", d.date),
            d.incidents.to_string(),
        );
    }
    for (section, map) in [
        ("model", &r.accesses.by_model),
        ("user", &r.accesses.by_user),
    ] {
        for (k, o) in map.iter().flatten() {
            add(section, &format!("{k}/granted"), o.granted.to_string());
            add(section, &format!("{k}/denied"), o.denied.to_string());
        }
    }
    for (sev, n) in &r.incidents.by_severity {
        add("incident", sev, n.to_string());
    }
    for i in &r.integrity.invalid {
        add(
            "invalid",
            &format!("{}/{}", i.location, i.index),
            format!("{}: {}", i.code, i.message),
        );
    }
    for v in &r.key_rotation.violations {
        add(
            "rotation_violation",
            &format!("epoch/{}", v.epoch),
            v.reason.clone(),
        );
    }
    for s in &r.siem {
        add(
            "siem",
            &format!("{}/coverage", s.sink),
            format!("{:.6}", s.coverage),
        );
        add("siem", &format!("{}/lag", s.sink), s.lag.to_string());
    }
    let mut out = String::from("section,key,value\n");
    for (s, k, v) in rows {
        out.push_str(&format!("{},{},{}\n", field(&s), field(&k), field(&v)));
    }
    out
}
