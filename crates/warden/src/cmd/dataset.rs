//! `warden dataset encrypt|decrypt|inspect`: training data encrypted at rest.
//!
//! Chunked ChaCha20-Poly1305 (`warden_data::dataset`), the data key wrapped to each
//! recipient's hybrid ML-KEM-768 + X25519 key. Without `--recipient`, the data
//! directory's own dataset key (`keys/dataset.key.pub`, created by `warden init`) is
//! the recipient. Every encryption and decryption is a ledger entry.

use crate::common::{DataDirArg, Output, byte_bar, input, print_json};
use crate::journal::Recorder;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_data::dataset;
use warden_store::keys;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt a file for one or more recipients.
    Encrypt(Encrypt),
    /// Decrypt a file; nothing is written unless every chunk authenticates.
    Decrypt(Decrypt),
    /// Show an encrypted file's id and recipients (no key needed).
    Inspect(Inspect),
}

#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    dir: DataDirArg,
    /// Who runs it, for the ledger entry (default: the operating-system user).
    #[arg(long = "as", env = "WARDEN_USER", value_name = "PRINCIPAL")]
    as_principal: Option<String>,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct Encrypt {
    /// Plaintext file (`-` for standard input).
    input: PathBuf,
    /// Encrypted file (`-` for standard output).
    output: PathBuf,
    /// Recipient public key (`warden auditor keygen` writes one); repeatable. Default:
    /// the data directory's dataset key.
    #[arg(long = "recipient")]
    recipients: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub struct Decrypt {
    /// Encrypted file (`-` for standard input).
    input: PathBuf,
    /// Plaintext file (`-` for standard output, which may receive a verified prefix
    /// before a later chunk fails).
    output: PathBuf,
    /// Recipient secret key. Default: the data directory's dataset key.
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub struct Inspect {
    /// Encrypted file.
    input: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Encrypt(a) => encrypt(a),
        Command::Decrypt(a) => decrypt(a),
        Command::Inspect(a) => inspect(a),
    }
}

fn abs(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Opens the ledger that will record the run, before doing the work.
fn recorder(c: &Common, output: &Path) -> Result<Recorder> {
    if c.json && output == Path::new("-") {
        bail!("--json prints the result on standard output: give an output file");
    }
    Recorder::open(&c.dir.dir(), c.as_principal.as_deref())
        .context("every dataset encryption and decryption is recorded in the ledger")
}

fn encrypt(a: &Encrypt) -> Result<ExitCode> {
    let dir = a.common.dir.dir();
    let paths = if a.recipients.is_empty() {
        vec![dir.dataset_pub()]
    } else {
        a.recipients.clone()
    };
    if a.recipients.is_empty() && !dir.dataset_pub().exists() {
        bail!(
            "{} has no dataset key ({}): give --recipient, or create one with `warden auditor keygen --out {}`",
            dir.root.display(),
            dir.dataset_pub().display(),
            dir.dataset_key().display()
        );
    }
    let mut recipients = Vec::new();
    for p in &paths {
        recipients.push(
            keys::read_recipient_public(p)
                .with_context(|| format!("reading the recipient key {}", p.display()))?,
        );
    }
    let rec = recorder(&a.common, &a.output)?;
    let (mut reader, len) = input(&a.input)?;
    let mut out = Output::create(&a.output, a.common.force, 0o600)?;
    let bar = byte_bar(len, "encrypting", a.output == Path::new("-"));
    let started = std::time::Instant::now();
    let s = {
        let mut w = out.writer();
        let s = dataset::encrypt(&mut reader, &mut w, &recipients, &mut |n| {
            bar.set_position(n);
        })
        .with_context(|| format!("encrypting {}", a.input.display()))?;
        w.flush()?;
        s
    };
    bar.finish_and_clear();
    out.finish()?;
    let secs = started.elapsed().as_secs_f64();
    let index = rec.record(
        "dataset.encrypt",
        "encrypt",
        json!({
            "input": abs(&a.input), "output": abs(&a.output), "dataset_id": s.dataset_id,
            "bytes": s.plaintext_bytes, "chunks": s.chunks, "recipients": s.recipients,
        }),
    )?;
    rec.close();
    report(&s, secs, index, a.common.json, "encrypted")
}

fn report(s: &dataset::Summary, secs: f64, index: u64, json: bool, verb: &str) -> Result<ExitCode> {
    if json {
        print_json(&json!({
            "dataset_id": s.dataset_id, "bytes": s.plaintext_bytes, "chunks": s.chunks,
            "recipients": s.recipients, "seconds": secs,
            "mb_per_s": s.plaintext_bytes as f64 / secs.max(1e-9) / 1e6,
            "ledger_index": index,
        }))?;
    } else {
        crate::common::eprint(&format!(
            "{verb} {} bytes in {:.2} s (dataset {}, recipients {}); ledger entry {index}",
            s.plaintext_bytes,
            secs,
            s.dataset_id.get(..16).unwrap_or_default(),
            s.recipients.join(", ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn decrypt(a: &Decrypt) -> Result<ExitCode> {
    let dir = a.common.dir.dir();
    let key_path = a.key.clone().unwrap_or_else(|| dir.dataset_key());
    let key = keys::read_recipient_secret(&key_path)
        .with_context(|| format!("reading the dataset key {}", key_path.display()))?;
    let rec = recorder(&a.common, &a.output)?;
    let (mut reader, len) = input(&a.input)?;
    let mut out = Output::create(&a.output, a.common.force, 0o600)?;
    let bar = byte_bar(len, "decrypting", a.output == Path::new("-"));
    let started = std::time::Instant::now();
    let r = {
        let mut w = out.writer();
        dataset::decrypt(&mut reader, &mut w, &key, &mut |n| bar.set_position(n))
            .map_err(anyhow::Error::from)
            .and_then(|s| {
                w.flush()?;
                Ok(s)
            })
    };
    bar.finish_and_clear();
    let s = match r {
        Ok(s) => s,
        Err(e) => {
            // The temporary output is removed when `out` is dropped; the failure is
            // recorded too, so a tampered dataset leaves a trace.
            drop(out);
            let _ = rec.record(
                "dataset.decrypt",
                "decrypt",
                json!({"input": abs(&a.input), "ok": false, "error": e.to_string()}),
            );
            rec.close();
            return Err(e.context(format!("decrypting {}", a.input.display())));
        }
    };
    out.finish()?;
    let secs = started.elapsed().as_secs_f64();
    let index = rec.record(
        "dataset.decrypt",
        "decrypt",
        json!({
            "input": abs(&a.input), "output": abs(&a.output), "dataset_id": s.dataset_id,
            "bytes": s.plaintext_bytes, "chunks": s.chunks, "key": key.public().id(), "ok": true,
        }),
    )?;
    rec.close();
    report(&s, secs, index, a.common.json, "decrypted")
}

fn inspect(a: &Inspect) -> Result<ExitCode> {
    let mut f =
        std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
    let h = dataset::read_header(&mut f).with_context(|| a.input.display().to_string())?;
    let size = f.metadata()?.len();
    if a.json {
        print_json(
            &json!({"dataset_id": h.id(), "recipients": h.recipients(), "file_bytes": size}),
        )?;
    } else {
        println!("dataset {}", h.id());
        println!("recipients: {}", h.recipients().join(", "));
    }
    if h.recipients().is_empty() {
        bail!("the file has no recipients: nobody can decrypt it");
    }
    Ok(ExitCode::SUCCESS)
}
