//! `warden export`: deliver the ledger to a SIEM, and `warden export status`.

use crate::common::{DataDirArg, eprint, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use warden_siem::transport::{Ack, Destination, TlsFiles};
use warden_siem::{Exporter, Format, Options, SinkSpec, Stats};
use warden_store::config::{DataDir, SiemConfig};

/// `warden export` (its help text is on the command in `main.rs`).
#[derive(ClapArgs, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show every sink's cursor: next index, lag behind the ledger, last error.
    Status {
        #[command(flatten)]
        dir: DataDirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(ClapArgs, Debug)]
struct RunArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// Destination URL.
    #[arg(long, required = true)]
    to: Option<String>,
    /// Message format: policy (AUDIT_LOG_ENTRY:<hex> lines, as the policy documents),
    /// rfc5424, cef, ocsf, ecs, json.
    #[arg(long, required = true)]
    format: Option<String>,
    /// Keep following the ledger as it grows (until interrupted).
    #[arg(long)]
    follow: bool,
    /// Auditor secret key: every format but policy then carries the decrypted event.
    #[arg(long)]
    auditor_key: Option<PathBuf>,
    /// CA certificates (PEM) trusted for tls:// and https://; default: the system bundle.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM), for receivers that require mutual TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Sink name (names its cursor); default: derived from --to, --format and what is
    /// sent (decrypted with which auditor key, checkpoints or not).
    #[arg(long)]
    name: Option<String>,
    /// First index to export when the sink has no cursor yet.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Export signed checkpoints (default: yes, except with --format policy).
    #[arg(long, conflicts_with = "no_checkpoints")]
    checkpoints: bool,
    /// Do not export signed checkpoints.
    #[arg(long)]
    no_checkpoints: bool,
    /// How a stream confirms delivery: close (the receiver closes after reading
    /// everything), the only mode: a completed write is not delivery.
    #[arg(long, default_value = "close")]
    ack: String,
    /// Environment variable holding the HEC token for http(s):// destinations.
    #[arg(long)]
    hec_token_env: Option<String>,
    /// Print the final cursor as JSON.
    #[arg(long)]
    json: bool,
    /// Export a ledger published as tlog-tiles (`s3://bucket/prefix`, or a directory
    /// holding `checkpoint`) instead of the data directory's. Its entries and
    /// checkpoint records are copied under the data directory's `export/published/`
    /// and exported from there (with --follow, copied again every second); the data
    /// directory then needs no configuration: it keeps the copy and the cursor.
    #[arg(long, value_name = "URL")]
    log: Option<String>,
}

/// How often a followed published log is copied again.
const COPY_EVERY: Duration = Duration::from_secs(1);

pub fn run(a: &Args) -> Result<ExitCode> {
    match &a.command {
        Some(Command::Status { dir, json }) => status(&dir.dir(), *json),
        None => export(&a.run),
    }
}

/// The sink a `[[siem]]` section (or the command line) describes.
pub fn spec(dir: &DataDir, c: &SiemConfig) -> Result<SinkSpec> {
    let dest = Destination::parse(&c.to)?;
    let format = Format::parse(&c.format).with_context(|| {
        format!(
            "unknown format {:?}: use one of {}",
            c.format,
            Format::ALL.map(Format::name).join(", ")
        )
    })?;
    let mut s = SinkSpec::new(dest, format);
    if let Some(n) = &c.name {
        s.name.clone_from(n);
    }
    if let Some(p) = &c.auditor_key {
        let p = dir.resolve(p);
        s.auditor = Some(Arc::new(crate::common::read_auditor(&p)?));
    }
    s.tls = TlsFiles {
        ca: c.tls_ca.as_ref().map(|p| dir.resolve(p)),
        cert: c.tls_cert.as_ref().map(|p| dir.resolve(p)),
        key: c.tls_key.as_ref().map(|p| dir.resolve(p)),
    };
    if let Some(b) = c.checkpoints {
        s.checkpoints = b;
    }
    if c.name.is_none() {
        s.derive_name();
    }
    s.ack = match c.ack.as_deref() {
        None | Some("close") => Ack::Close,
        // A completed write only put bytes in a socket buffer: under receiver faults
        // it lost thousands of entries in the fault test, so it is not offered.
        Some("write") => bail!(
            "ack = \"write\" is not offered: a completed write is not delivery, and a receiver that dies loses what it had not read; use a receiver that closes the stream after reading it (rsyslog, syslog-ng: ack = \"close\") or an https:// (HEC) destination, which answers each batch"
        ),
        Some(other) => bail!("unknown ack {other:?}: the only mode is close"),
    };
    if let Some(var) = &c.hec_token_env {
        let t = std::env::var(var)
            .with_context(|| format!("the HEC token variable {var} is not set"))?;
        s.hec_token = Some(zeroize::Zeroizing::new(t));
    }
    s.validate()?;
    Ok(s)
}

/// Where sinks keep their cursors.
pub fn export_dir(dir: &DataDir) -> PathBuf {
    warden_siem::cursor::export_dir(dir)
}

fn export(a: &RunArgs) -> Result<ExitCode> {
    let dir = a.dir.dir();
    // The ledger read: the data directory's, or a copy of a published one.
    let mut copy = match &a.log {
        Some(url) => {
            let mut c = crate::cmd::export_bucket::Copy::open(url, &export_dir(&dir))?;
            c.sync()?;
            Some(c)
        }
        None => None,
    };
    let log = match &copy {
        Some(c) => c.log().to_path_buf(),
        None => dir.log(&crate::cluster::config_for_reading(&dir)?),
    };
    // Paths on the command line are relative to the working directory; in warden.toml,
    // to the data directory.
    let abs = |p: &Option<PathBuf>| p.as_deref().map(std::path::absolute).transpose();
    let sc = SiemConfig {
        to: a.to.clone().unwrap_or_default(),
        format: a.format.clone().unwrap_or_default(),
        name: a.name.clone(),
        auditor_key: abs(&a.auditor_key)?,
        tls_ca: abs(&a.tls_ca)?,
        tls_cert: abs(&a.tls_cert)?,
        tls_key: abs(&a.tls_key)?,
        checkpoints: if a.checkpoints {
            Some(true)
        } else if a.no_checkpoints {
            Some(false)
        } else {
            None
        },
        ack: Some(a.ack.clone()),
        hec_token_env: a.hec_token_env.clone(),
    };
    let mut s = spec(&dir, &sc)?;
    s.start = a.from;
    let name = s.name.clone();
    let to = s.dest.to_string();
    let mut exporter = Exporter::open(&log, &export_dir(&dir), s)?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(Arc::clone(&stop));
    let copier = match copy.take().filter(|_| a.follow) {
        Some(mut c) => {
            let stop = Arc::clone(&stop);
            Some(
                std::thread::Builder::new()
                    .name("warden-export-copy".into())
                    .spawn(move || {
                        let mut failing = false;
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(COPY_EVERY);
                            match c.sync() {
                                Ok(_) => failing = false,
                                Err(e) if !failing => {
                                    failing = true;
                                    eprint(&format!("warden export: {e:#}; retrying"));
                                }
                                Err(_) => {}
                            }
                        }
                    })?,
            )
        }
        None => None,
    };
    let stats = Arc::new(Stats::default());
    let opts = Options {
        follow: a.follow,
        ..Options::default()
    };
    let bar = progress(a.json, a.follow);
    let start = exporter.cursor().delivered;
    let worker = {
        let (stop, stats) = (Arc::clone(&stop), Arc::clone(&stats));
        std::thread::Builder::new()
            .name(format!("warden-export-{name}"))
            .spawn(move || exporter.run(&opts, &stop, &stats))?
    };
    let mut errors_seen = 0;
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let next = stats.next.load(Ordering::Relaxed);
        let covered = stats.covered.load(Ordering::Relaxed);
        bar.set_length(covered);
        bar.set_position(next);
        let failures = stats.failures.load(Ordering::Relaxed);
        if failures > errors_seen {
            errors_seen = failures;
            if let Ok(l) = stats.last_error.lock()
                && let Some(e) = l.as_ref()
            {
                bar.suspend(|| eprint(&format!("warden export: {e}; retrying")));
            }
        }
    }
    bar.finish_and_clear();
    if let Some(c) = copier {
        stop.store(true, Ordering::Relaxed);
        let _ = c.join();
    }
    let cursor = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the exporter thread failed"))??;
    if a.json {
        print_json(&serde_json::json!({
            "sink": cursor.sink, "to": cursor.to, "format": cursor.format,
            "next": cursor.position.next, "covered": cursor.covered, "lag": cursor.lag(),
            "delivered": cursor.delivered - start, "delivered_total": cursor.delivered,
        }))?;
    } else {
        eprint(&format!(
            "warden export: sink {name}: delivered {} entries to {to}; next index {}, lag {}",
            cursor.delivered - start,
            cursor.position.next,
            cursor.lag()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(json: bool, follow: bool) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if follow {
        "{spinner} exported {pos}/{len} entries ({per_sec}) - following"
    } else {
        "{spinner} exporting {pos}/{len} {wide_bar} {per_sec} {eta}"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Sets `stop` on SIGINT or SIGTERM, so the exporter confirms and saves its cursor.
fn stop_on_signal(stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("warden-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut term) = signal(SignalKind::terminate()) else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            });
            stop.store(true, Ordering::Relaxed);
        });
}

fn status(dir: &DataDir, json: bool) -> Result<ExitCode> {
    let cfg = crate::cluster::config_for_reading(dir)?;
    let covered = warden_store::audit::latest_checkpoint(&dir.log(&cfg))?.map_or(0, |c| c.size);
    let shared = crate::cluster::shared_cursors(&cfg)?;
    let cursors = warden_siem::cursor::list_with(&export_dir(dir), &shared)?;
    if json {
        let sinks: Vec<_> = cursors
            .iter()
            .map(|c| {
                serde_json::json!({
                    "sink": c.sink, "to": c.to, "format": c.format,
                    "next": c.position.next, "covered": covered,
                    "lag": covered.saturating_sub(c.position.next),
                    "delivered": c.delivered, "updated": c.updated,
                    "last_error": c.last_error, "last_error_at": c.last_error_at,
                })
            })
            .collect();
        print_json(&serde_json::json!({"covered": covered, "sinks": sinks}))?;
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if cursors.is_empty() {
        writeln!(
            out,
            "no sinks yet (ledger: {covered} entries covered by checkpoints)"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let w = cursors
        .iter()
        .map(|c| c.sink.len())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        out,
        "{:<w$} {:<8} {:>10} {:>10}  {:<27} to / last error",
        "sink", "format", "next", "lag", "updated"
    )?;
    for c in &cursors {
        writeln!(
            out,
            "{:<w$} {:<8} {:>10} {:>10}  {:<27} {}",
            c.sink,
            c.format,
            c.position.next,
            covered.saturating_sub(c.position.next),
            c.updated.as_deref().unwrap_or("-"),
            c.to
        )?;
        if let Some(e) = &c.last_error {
            writeln!(
                out,
                "{:<w$} last error {}: {e}",
                "",
                c.last_error_at.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
