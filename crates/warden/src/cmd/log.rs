//! `warden log append|show|checkpoint|prove`.

use crate::common::{DataDirArg, EXIT_ERROR, open_ledger, print_json};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use warden_core::checkpoint::TlogProof;
use warden_core::crypto::DataKey;
use warden_core::entry::{self, Event, KIND_ROTATION};
use warden_core::epoch::RotationRecord;
use warden_core::merkle::inclusion_proof;
use warden_core::note::Note;
use warden_store::keys;
use warden_store::ledger::{Receipt, Ticket, checkpoints_path, read_leaves};

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
    /// Print an offline inclusion proof (C2SP tlog-proof) of entry INDEX.
    Prove {
        /// Entry index.
        #[arg(long)]
        index: u64,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Append {
            kind,
            event,
            stdin,
            dir,
            json,
        } => {
            if *stdin {
                return append_stdin(dir, *json);
            }
            let (Some(kind), Some(event)) = (kind, event) else {
                bail!("--kind and --event are required")
            };
            let ev = Event::from_plaintext(event.as_bytes()).context("--event")?;
            let (ledger, _) = open_ledger(&dir.dir())?;
            let r = ledger.append(kind, &ev);
            ledger.close();
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
            let cfg = d.read_config()?;
            let cp = checkpoints_path(&d.log(&cfg));
            let data = std::fs::read(&cp).with_context(|| format!("reading {}", cp.display()))?;
            let Some(line) = data.split(|&b| b == b'\n').rfind(|l| !l.is_empty()) else {
                bail!("the ledger has no checkpoint yet")
            };
            let rec = warden_core::record::CheckpointRecord::decode(line)?;
            if *json {
                print_json(
                    &serde_json::json!({"size": rec.size, "epoch": rec.epoch, "note": rec.note}),
                )?;
            } else {
                print!("{}", rec.note);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prove { index, dir } => {
            let d = dir.dir();
            let cfg = d.read_config()?;
            let log = d.log(&cfg);
            let data = std::fs::read(checkpoints_path(&log))?;
            let Some(line) = data.split(|&b| b == b'\n').rfind(|l| !l.is_empty()) else {
                bail!("the ledger has no checkpoint yet")
            };
            let rec = warden_core::record::CheckpointRecord::decode(line)?;
            let (leaves, lines) = read_leaves(&log)?;
            let size = usize::try_from(rec.size)?;
            if *index >= rec.size {
                bail!(
                    "index {index} is not covered by the latest checkpoint (size {})",
                    rec.size
                );
            }
            let leaves = leaves
                .get(..size)
                .context("entries file is shorter than the checkpoint")?;
            let hashes = inclusion_proof(leaves, *index)?;
            let extra = lines.get(usize::try_from(*index)?).cloned();
            let proof = TlogProof {
                extra,
                index: *index,
                hashes,
                checkpoint: Note::parse(rec.note.as_bytes())?,
            };
            print!("{}", proof.to_text());
            Ok(ExitCode::SUCCESS)
        }
    }
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

/// Reads entries from stdin, submits them without waiting, and prints receipts in
/// order as they become durable (a second thread waits on the tickets).
fn append_stdin(dir: &DataDirArg, json: bool) -> Result<ExitCode> {
    let (ledger, _) = open_ledger(&dir.dir())?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Ticket>(100_000);
    let printer = std::thread::spawn(move || -> Result<u64> {
        let mut n = 0;
        let stdout = std::io::stdout();
        for t in rx {
            let r = t.wait()?;
            let mut out = stdout.lock();
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"index": r.index, "size": r.size})
                )?;
            } else {
                writeln!(out, "{}", r.index)?;
            }
            out.flush()?;
            n += 1;
        }
        Ok(n)
    });
    let mut status = Ok(());
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: StdinEntry = match serde_json::from_str(&line) {
            Ok(e) => e,
            Err(err) => {
                status = Err(anyhow::anyhow!("line {}: {err}", i + 1));
                break;
            }
        };
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
    }
    drop(tx);
    let printed = printer
        .join()
        .map_err(|_| anyhow::anyhow!("receipt thread failed"))?;
    ledger.close();
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
    let cfg = d.read_config()?;
    let log = d.log(&cfg);
    let sk = auditor
        .map(|p| keys::read_recipient_secret(p))
        .transpose()?;
    let file = std::fs::File::open(&log).with_context(|| format!("opening {}", log.display()))?;
    let mut keys_by_epoch: HashMap<u64, Option<DataKey>> = HashMap::new();
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut index = 0u64;
    let mut bad = false;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let i = index;
        index += 1;
        if to.is_some_and(|t| i > t) {
            break;
        }
        let Ok(e) = entry::parse_line(&buf) else {
            bad = true;
            if i >= from {
                writeln!(out, "{i}\tMALFORMED")?;
            }
            continue;
        };
        if e.header.kind == KIND_ROTATION
            && let Some(sk) = &sk
        {
            let k = RotationRecord::decode(e.header.rotation.unwrap_or_default())
                .ok()
                .and_then(|r| r.unwrap_data_key(sk).ok().flatten());
            keys_by_epoch.insert(e.header.epoch, k);
        }
        if i < from {
            continue;
        }
        let mut event = serde_json::Value::Null;
        let mut note = "";
        if sk.is_some() {
            match keys_by_epoch.get(&e.header.epoch) {
                Some(Some(k)) => {
                    let mut pt = Vec::new();
                    match e.open(k, &mut pt) {
                        Ok(()) => {
                            event = serde_json::from_slice(&pt).unwrap_or(serde_json::Value::Null)
                        }
                        Err(_) => {
                            note = "DECRYPTION FAILED";
                            bad = true;
                        }
                    }
                }
                _ => note = "not wrapped to this auditor",
            }
        }
        if json {
            let v = serde_json::json!({
                "index": i, "time": e.header.time.to_string(), "epoch": e.header.epoch, "kind": e.header.kind,
                "event": event, "error": if note.is_empty() { serde_json::Value::Null } else { note.into() },
            });
            writeln!(out, "{v}")?;
        } else {
            let ev = if event.is_null() {
                note.to_owned()
            } else {
                event.to_string()
            };
            writeln!(
                out,
                "{i}\t{}\tepoch {}\t{}\t{ev}",
                e.header.time, e.header.epoch, e.header.kind
            )?;
        }
    }
    Ok(if bad {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}
