//! `warden log append|show|checkpoint|prove|segments|retention`.

use crate::common::{DataDirArg, EXIT_ERROR, open_ledger, print_json};
use crate::journal::open_journal;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use warden_core::entry::Event;
use warden_store::keys;
use warden_store::ledger::{Receipt, Ticket};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Append an entry and print its receipt once it is durable.
    ///
    /// With --stdin, reads one JSON object per line ({"kind": K, "event": {...}}) and
    /// prints one receipt line per entry as each becomes durable.
    Append {
        /// Public category, e.g. model.access, model.denied, incident.
        #[arg(long, required_unless_present = "stdin")]
        kind: Option<String>,
        /// The event as JSON: user, ip, model, version, action, decision, reason,
        /// request_id, user_agent, digest, details.
        #[arg(long, required_unless_present = "stdin")]
        event: Option<String>,
        /// Read entries from standard input instead.
        #[arg(long, conflicts_with_all = ["kind", "event"])]
        stdin: bool,
        /// The principal the entries are recorded for (events without a `user` get
        /// it). Through a running writer this must be the principal bound to your
        /// operating-system user, unless you own the data directory or are root;
        /// default: that bound principal.
        #[arg(long = "as", env = "WARDEN_USER", value_name = "PRINCIPAL")]
        as_principal: Option<String>,
        #[command(flatten)]
        dir: DataDirArg,
        /// Print receipts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show entries; decrypts them with an auditor key.
    Show {
        /// Auditor secret key; without it only public headers are shown.
        #[arg(long)]
        auditor_key: Option<PathBuf>,
        /// First index to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Last index to show (inclusive).
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        dir: DataDirArg,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint (a C2SP signed note).
    Checkpoint {
        #[command(flatten)]
        dir: DataDirArg,
        /// Print {"size", "epoch", "note"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an offline inclusion proof (C2SP tlog-proof) of entry INDEX, or with
    /// --from-size a consistency proof.
    ///
    /// From this data directory's ledger against its latest checkpoint, or with --log
    /// from a ledger published as tlog-tiles against the published checkpoint.
    Prove {
        /// Entry index.
        #[arg(
            long,
            required_unless_present = "from_size",
            conflicts_with = "from_size"
        )]
        index: Option<u64>,
        /// Instead: prove that the tree of this many entries (a checkpoint someone holds)
        /// is a prefix of the latest checkpoint's, printed as JSON {"old_size",
        /// "new_size", "hashes" (base64), "checkpoint"}.
        #[arg(long, conflicts_with = "log")]
        from_size: Option<u64>,
        /// A published ledger (`s3://bucket/prefix`, or a directory holding
        /// `checkpoint`) to prove from instead of the data directory's.
        #[arg(long, value_name = "URL")]
        log: Option<String>,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Ask witnesses to cosign the latest checkpoint (C2SP tlog-witness) and, once a
    /// quorum did, publish it beside the ledger (`<log>.cosigned`), where `warden
    /// verify --witness` reads it.
    ///
    /// Each witness gets a consistency proof from the size it cosigned last, and the
    /// epoch's root-signed certificate when it does not know the key yet. A witness
    /// that is down or refuses never blocks appends: the published checkpoint only
    /// falls behind. Exit status: 0 published; 2 quorum not reached, or an error.
    Cosign(crate::cmd::cosign::Args),
    /// List the ledger's segments: sealed ones (oldest first), removed ones, the active file.
    ///
    /// The active entries file is sealed and a new one started at each UTC day and at
    /// `[segments] max_bytes`; each segment is a JSONL file `jq` reads on its own.
    Segments {
        #[command(flatten)]
        dir: DataDirArg,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Remove sealed segments older than the retention period.
    ///
    /// The segments are verified first (nothing is removed unless they verify), the
    /// removal is recorded as a `retention.delete` ledger entry, and the checkpoints are
    /// kept, so what remains still verifies. `warden serve` does this once a day; this
    /// command needs the ledger not to be open in another process.
    Retention {
        /// Days to keep a sealed segment after its last entry; default: `[retention]
        /// ledger_days` (365).
        #[arg(long)]
        days: Option<u64>,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        dir: DataDirArg,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Append {
            kind,
            event,
            stdin,
            as_principal,
            dir,
            json,
        } => {
            let who = as_principal.as_deref();
            if *stdin {
                return append_stdin(dir, who, *json);
            }
            let (Some(kind), Some(event)) = (kind, event) else {
                bail!("--kind and --event are required")
            };
            let mut ev = Event::from_plaintext(event.as_bytes()).context("--event")?;
            if ev.user.is_none() {
                ev.user = who.map(str::to_owned);
            }
            // Bad input stops here, before the ledger is opened (which would start an
            // epoch and write its key.rotation entry).
            warden_store::ledger::check_submission(kind, &ev)?;
            let journal = open_journal(&dir.dir(), who)?;
            let r = journal.append(kind, &ev);
            drop(journal);
            let r = r?;
            print_receipt(&r, *json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show {
            auditor_key,
            from,
            to,
            dir,
            json,
        } => show(dir, auditor_key.as_ref(), *from, *to, *json),
        Command::Checkpoint { dir, json } => {
            let d = dir.dir();
            let cfg = crate::cluster::config_for_reading(&d)?;
            let Some(rec) = warden_store::audit::latest_checkpoint(&d.log(&cfg))? else {
                bail!("the ledger has no checkpoint yet")
            };
            if *json {
                print_json(
                    &serde_json::json!({"size": rec.size, "epoch": rec.epoch, "note": rec.note}),
                )?;
            } else {
                print!("{}", rec.note);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Segments { dir, json } => segments(dir, *json),
        Command::Cosign(a) => crate::cmd::cosign::run(a),
        Command::Retention {
            days,
            dry_run,
            dir,
            json,
        } => retention(dir, *days, *dry_run, *json),
        Command::Prove {
            index: Some(index),
            log: Some(url),
            ..
        } => {
            let proof = crate::cmd::prove_bucket::prove(url, *index)?;
            print!("{}", proof.to_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Prove {
            index,
            from_size,
            log: None,
            dir,
        } => {
            let d = dir.dir();
            let cfg = crate::cluster::config_for_reading(&d)?;
            if let Some(old) = from_size {
                let c = warden_store::audit::consistency(&d.log(&cfg), *old)?;
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD;
                print_json(&serde_json::json!({
                    "old_size": c.old_size, "new_size": c.new_size,
                    "hashes": c.hashes.iter().map(|h| b64.encode(h)).collect::<Vec<_>>(),
                    "checkpoint": c.checkpoint,
                }))?;
                return Ok(ExitCode::SUCCESS);
            }
            let index = index.context("--index or --from-size")?;
            let proof = warden_store::audit::inclusion(&d.log(&cfg), index)?;
            print!("{}", proof.to_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Prove { .. } => anyhow::bail!("--log proves inclusion only: give --index"),
    }
}

fn segments(dir: &DataDirArg, json: bool) -> Result<ExitCode> {
    let d = dir.dir();
    let cfg = crate::cluster::config_for_reading(&d)?;
    let log = d.log(&cfg);
    let index = warden_store::segments::load_index(&log)?;
    let active_first = index.last().map_or(0, |r| r.end);
    let active_bytes = std::fs::metadata(&log).map_or(0, |m| m.len());
    let covered = warden_store::audit::latest_checkpoint(&log)?.map_or(0, |r| r.size);
    let status = |r: &warden_store::segments::SegmentRecord| {
        if r.removed.is_some() {
            "removed"
        } else {
            "sealed"
        }
    };
    if json {
        let segs: Vec<_> = index
            .iter()
            .map(|r| {
                serde_json::json!({
                    "segment": r.segment, "file": r.file, "status": status(r),
                    "first": r.first, "end": r.end, "bytes": r.bytes,
                    "first_time": r.first_time, "last_time": r.last_time,
                    "removed_at": r.removed.as_ref().map(|x| &x.at),
                    "removal_entry": r.removed.as_ref().map(|x| x.entry),
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "segments": segs,
            "active": {
                "file": log.file_name().and_then(|n| n.to_str()),
                "first": active_first, "end": covered.max(active_first), "bytes": active_bytes,
            },
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let width = index
        .iter()
        .map(|r| r.file.len())
        .chain([log.file_name().map_or(0, |n| n.len())])
        .max()
        .unwrap_or(0);
    writeln!(
        out,
        "{:<width$}  {:<7}  {:>12}  {:>10}  {:>12}  span",
        "FILE", "STATUS", "FIRST", "ENTRIES", "BYTES"
    )?;
    for r in &index {
        writeln!(
            out,
            "{:<width$}  {:<7}  {:>12}  {:>10}  {:>12}  {} .. {}",
            r.file,
            status(r),
            r.first,
            r.end - r.first,
            r.bytes,
            r.first_time,
            r.last_time
        )?;
    }
    writeln!(
        out,
        "{:<width$}  {:<7}  {:>12}  {:>10}  {:>12}",
        log.file_name().and_then(|n| n.to_str()).unwrap_or(""),
        "active",
        active_first,
        covered.saturating_sub(active_first),
        active_bytes
    )?;
    Ok(ExitCode::SUCCESS)
}

fn retention(dir: &DataDirArg, days: Option<u64>, dry_run: bool, json: bool) -> Result<ExitCode> {
    let d = dir.dir();
    let root = keys::read_root_public(&d.root_pub())?;
    crate::journal::needs_own_ledger(&d, &d.read_config()?, "retention")?;
    let (ledger, cfg) = open_ledger(&d)?;
    let days = days.unwrap_or(cfg.retention.ledger_days);
    let r = crate::cmd::retention::ledger(&ledger, &d, &cfg, &root, days, dry_run);
    ledger.close();
    let outcome = r?;
    if json {
        let v = match &outcome {
            None => serde_json::json!({"removed": false, "dry_run": dry_run, "segments": []}),
            Some((plan, receipt)) => serde_json::json!({
                "removed": receipt.is_some(), "dry_run": dry_run,
                "entry": receipt.as_ref().map(|r| r.index),
                "details": plan.details(days.saturating_mul(86_400)),
            }),
        };
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    match outcome {
        None if days == 0 => println!("retention is off (0 days): nothing removed"),
        None => println!("no sealed segment is older than {days} days: nothing removed"),
        Some((plan, receipt)) => {
            let what = format!(
                "{} segment(s), entries {}..{} ({} bytes)",
                plan.segments.len(),
                plan.end - plan.entries(),
                plan.end,
                plan.bytes()
            );
            match receipt {
                None => println!("would remove {what}"),
                Some(r) => println!(
                    "removed {what}; recorded as entry {} (retention.delete)",
                    r.index
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_receipt(r: &Receipt, json: bool) -> Result<()> {
    if json {
        print_json(
            &serde_json::json!({"index": r.index, "size": r.size, "checkpoint": &*r.checkpoint}),
        )
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "index {} durable; covered by checkpoint of size {}",
            r.index, r.size
        )?;
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinEntry {
    kind: String,
    event: Event,
}

/// Longest line read from `log append --stdin`: an event may take 64 KiB as the ledger
/// stores it, and its JSON here a little more.
const MAX_STDIN_LINE: usize = 2 * warden_core::entry::MAX_EVENT_LEN;

/// Reads the next line of at most `max` bytes (without its `\n`) into `buf`, keeping no
/// more than `max` bytes in memory however long the line is. `Ok(None)` at the end of
/// input; a longer line is an error naming its number.
fn read_line_bounded(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
    line_no: usize,
) -> Result<Option<()>> {
    buf.clear();
    let mut read_any = false;
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        read_any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (chunk.get(..i).unwrap_or_default(), Some(i + 1)),
            None => (chunk, None),
        };
        if buf.len() + part.len() > max {
            too_long = true;
        } else {
            buf.extend_from_slice(part);
        }
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            break;
        }
    }
    if too_long {
        bail!("line {line_no}: longer than {max} bytes");
    }
    Ok(read_any.then_some(()))
}

/// The next entry of `--stdin`: skips blank lines; `None` at the end of input.
fn next_stdin_entry(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    line_no: &mut usize,
) -> Result<Option<StdinEntry>> {
    loop {
        *line_no += 1;
        if read_line_bounded(r, buf, MAX_STDIN_LINE, *line_no)?.is_none() {
            return Ok(None);
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let e: StdinEntry =
            serde_json::from_slice(buf).with_context(|| format!("line {line_no}"))?;
        warden_store::ledger::check_submission(&e.kind, &e.event)
            .with_context(|| format!("line {line_no}"))?;
        return Ok(Some(e));
    }
}

/// Reads entries from stdin, submits them without waiting, and prints receipts in
/// order as they become durable (a second thread waits on the tickets). The first entry
/// is read and checked before the ledger is opened, so input that is bad from the start
/// writes nothing.
fn append_stdin(dir: &DataDirArg, who: Option<&str>, json: bool) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let Some(first) = next_stdin_entry(&mut input, &mut buf, &mut line_no)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let ledger = open_journal(&dir.dir(), who)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Ticket>(100_000);
    let printer = std::thread::spawn(move || -> Result<u64> {
        // Receipts are printed as they become durable; output is flushed whenever no
        // further receipt is waiting, so a reader sees each one promptly without a
        // write per entry under load.
        let mut n = 0;
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        let mut next = rx.recv().ok();
        while let Some(t) = next.take() {
            if !t.is_ready() {
                out.flush()?;
            }
            let r = t.wait()?;
            if json {
                writeln!(out, "{{\"index\":{},\"size\":{}}}", r.index, r.size)?;
            } else {
                writeln!(out, "{}", r.index)?;
            }
            n += 1;
            next = match rx.try_recv() {
                Ok(t) => Some(t),
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    out.flush()?;
                    rx.recv().ok()
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            };
        }
        out.flush()?;
        Ok(n)
    });
    let mut status = Ok(());
    let mut next = Some(first);
    while let Some(mut e) = next.take() {
        if e.event.user.is_none() {
            e.event.user = who.map(str::to_owned);
        }
        match ledger.submit(&e.kind, &e.event) {
            Ok(t) => {
                if tx.send(t).is_err() {
                    break;
                }
            }
            Err(err) => {
                status = Err(err.into());
                break;
            }
        }
        match next_stdin_entry(&mut input, &mut buf, &mut line_no) {
            Ok(e) => next = e,
            Err(err) => status = Err(err),
        }
    }
    drop(tx);
    let printed = printer
        .join()
        .map_err(|_| anyhow::anyhow!("receipt thread failed"))?;
    drop(ledger);
    status?;
    printed?;
    Ok(ExitCode::SUCCESS)
}

fn show(
    dir: &DataDirArg,
    auditor: Option<&PathBuf>,
    from: u64,
    to: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let d = dir.dir();
    let cfg = crate::cluster::config_for_reading(&d)?;
    let log = d.log(&cfg);
    let sk = auditor
        .map(|p| keys::read_recipient_secret(p))
        .transpose()?;
    let mut out = std::io::stdout().lock();
    let mut bad = false;
    let filter = warden_store::audit::EntryFilter {
        from,
        to,
        ..Default::default()
    };
    warden_store::audit::for_each_entry(&log, sk.as_ref(), &filter, |e| {
        if matches!(e.error, Some("malformed line" | "decryption failed")) {
            bad = true;
        }
        let written = if e.error == Some("malformed line") {
            writeln!(out, "{}\tMALFORMED", e.index)
        } else if json {
            let v = serde_json::json!({
                "index": e.index, "time": e.time, "epoch": e.epoch, "kind": e.kind,
                "event": e.event, "error": e.error.map(str::to_uppercase),
            });
            writeln!(out, "{v}")
        } else {
            let ev = match (&e.event, e.error) {
                (Some(v), _) => v.to_string(),
                (None, Some(why)) => why.to_uppercase(),
                (None, None) => String::new(),
            };
            writeln!(
                out,
                "{}\t{}\tepoch {}\t{}\t{ev}",
                e.index, e.time, e.epoch, e.kind
            )
        };
        // A closed pipe (`| head`) ends the listing.
        Ok(written.is_ok())
    })?;
    Ok(if bad {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}
