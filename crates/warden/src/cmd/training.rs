//! `warden fingerprint` and `warden training record`: what a training run produced,
//! and a signed record of where it came from.

use crate::common::{DataDirArg, Output, print_json};
use crate::journal::record;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_registry::manifest::{self, DatasetRef, Provenance, Resource};
use warden_registry::{fingerprint, keyfile};

#[derive(Args, Debug)]
pub struct FingerprintArgs {
    /// A model file or directory.
    path: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Hashes `path` with a progress bar.
fn hash(path: &Path, quiet: bool) -> Result<Vec<Resource>> {
    let bar = crate::common::byte_bar(Some(0), "hashing", quiet);
    let r = fingerprint(path, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("fingerprinting {}", path.display()))?;
    bar.finish_and_clear();
    Ok(r)
}

pub fn fingerprint_cmd(a: &FingerprintArgs) -> Result<ExitCode> {
    let files = hash(&a.path, false)?;
    let root = manifest::root_digest(&files);
    if a.json {
        print_json(&json!({"root_digest": root, "files": files}))?;
    } else {
        for f in &files {
            println!("{}  {:>12}  {}", f.digest, f.size, f.name);
        }
        println!("root sha256:{root} ({} file(s))", files.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a signed training record (provenance) for a trained model, which
    /// `warden model register --provenance` accepts.
    ///
    /// Captures the model's fingerprint (per-file SHA-256 and root digest), the
    /// training data (references and digests), the code commit, the configuration's
    /// digest and the environment, signed with your key as an in-toto statement in a
    /// DSSE envelope, and records it in the ledger.
    Record(Record),
}

#[derive(Args, Debug)]
pub struct Record {
    /// The trained model (file or directory).
    #[arg(long)]
    model: PathBuf,
    /// The model's name in the record.
    #[arg(long)]
    name: String,
    /// Training data: a local file or directory (hashed), or a URI (recorded as
    /// given, with `@sha256:HEX` to pin a digest); repeatable.
    #[arg(long = "data")]
    data: Vec<String>,
    /// A git checkout of the training code: its HEAD commit is recorded (refused if it
    /// has uncommitted changes, unless --allow-dirty).
    #[arg(long)]
    code: Option<PathBuf>,
    /// Record this commit instead of reading one from --code.
    #[arg(long, conflicts_with = "code")]
    commit: Option<String>,
    /// Record a commit whose checkout has uncommitted changes (marked `-dirty`).
    #[arg(long)]
    allow_dirty: bool,
    /// The training configuration file: its SHA-256 is recorded.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `name@version` of the model this one was fine-tuned from.
    #[arg(long)]
    parent: Option<String>,
    /// Extra environment facts, KEY=VALUE; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Where to write the record (`-` for standard output).
    #[arg(long, default_value = "-")]
    out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// Your signing key (default: keys/principals/<you>.key in the data directory).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Who signs it.
    #[arg(long = "as", env = "WARDEN_USER", value_name = "PRINCIPAL")]
    as_principal: String,
    #[command(flatten)]
    dir: DataDirArg,
    /// Print a summary as JSON (needs --out FILE).
    #[arg(long)]
    json: bool,
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Record(a) => record_cmd(a),
    }
}

fn sha256_file(p: &Path) -> Result<String> {
    let r = fingerprint(p, &|_, _| {}).with_context(|| format!("hashing {}", p.display()))?;
    Ok(match r.as_slice() {
        [one] if p.is_file() => one.digest.clone(),
        _ => manifest::root_digest(&r),
    })
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn environment(extra: &[String]) -> Result<serde_json::Value> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let mut env = serde_json::Map::new();
    env.insert("hostname".into(), json!(read("/proc/sys/kernel/hostname")));
    env.insert("kernel".into(), json!(read("/proc/sys/kernel/osrelease")));
    env.insert("arch".into(), json!(std::env::consts::ARCH));
    env.insert(
        "cpus".into(),
        json!(std::thread::available_parallelism().map_or(1, std::num::NonZero::get)),
    );
    env.insert("warden".into(), json!(env!("CARGO_PKG_VERSION")));
    for kv in extra {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: use KEY=VALUE"))?;
        if k.is_empty() || k.len() > 64 || v.len() > 4096 {
            bail!("--env {kv:?}: key 1 to 64 bytes, value at most 4096");
        }
        env.insert(k.to_owned(), json!(v));
    }
    Ok(serde_json::Value::Object(env))
}

fn record_cmd(a: &Record) -> Result<ExitCode> {
    if a.json && a.out == Path::new("-") {
        bail!("--json prints a summary on standard output: give --out FILE");
    }
    warden_registry::names::check_name("model", &a.name)?;
    let dir = a.dir.dir();
    let key_path = a
        .key
        .clone()
        .unwrap_or_else(|| dir.principal_key(&a.as_principal));
    let key = keyfile::read(&key_path)
        .with_context(|| format!("reading the signing key {}", key_path.display()))?;
    if key.principal != a.as_principal {
        bail!(
            "the key belongs to {}, not to {}",
            key.principal,
            a.as_principal
        );
    }
    let mut datasets = Vec::new();
    for d in &a.data {
        let p = Path::new(d);
        if p.exists() {
            let abs = std::fs::canonicalize(p)?;
            datasets.push(DatasetRef {
                uri: format!("file://{}", abs.display()),
                digest: Some(format!("sha256:{}", sha256_file(p)?)),
            });
        } else if let Some((uri, hex)) = d.rsplit_once("@sha256:") {
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--data {d:?}: the digest is not 64 hex digits");
            }
            datasets.push(DatasetRef {
                uri: uri.to_owned(),
                digest: Some(format!("sha256:{}", hex.to_ascii_lowercase())),
            });
        } else if d.contains("://") {
            datasets.push(DatasetRef {
                uri: d.clone(),
                digest: None,
            });
        } else {
            bail!("--data {d:?}: no such file, and not a URI");
        }
    }
    let code_commit = match (&a.code, &a.commit) {
        (_, Some(c)) => Some(c.clone()),
        (Some(code), None) => {
            let head = git(code, &["rev-parse", "HEAD"])?;
            let dirty = !git(code, &["status", "--porcelain"])?.is_empty();
            if dirty && !a.allow_dirty {
                bail!(
                    "{} has uncommitted changes: commit them, or pass --allow-dirty",
                    code.display()
                );
            }
            Some(if dirty { format!("{head}-dirty") } else { head })
        }
        (None, None) => None,
    };
    let config_digest = match &a.config {
        Some(c) => Some(format!("sha256:{}", sha256_file(c)?)),
        None => None,
    };
    let files = hash(&a.model, a.out == Path::new("-"))?;
    let provenance = Provenance {
        datasets,
        code_commit,
        config_digest,
        environment: Some(environment(&a.env)?),
        parent_model: a.parent.clone(),
        attestation: None,
    };
    let mut now = Vec::new();
    warden_store::ledger::Clock::now(&warden_store::ledger::SystemClock).write_to(&mut now);
    let st = manifest::training_statement(
        &a.name,
        files,
        provenance,
        String::from_utf8_lossy(&now).into_owned(),
    );
    let env = manifest::sign_training(&st, &a.as_principal, &key.key)?;
    let bytes = serde_json::to_vec_pretty(&env)?;
    let digest = warden_core::hex::encode(&warden_core::merkle::sha256(&bytes));
    let root = st
        .subject
        .first()
        .map(|s| s.digest.sha256.clone())
        .unwrap_or_default();
    let index = record(
        &dir,
        "training.record",
        Some(&a.as_principal),
        "record",
        json!({
            "model": a.name, "root_digest": root, "record_sha256": digest,
            "datasets": st.predicate.provenance.datasets,
            "code_commit": st.predicate.provenance.code_commit,
            "config_digest": st.predicate.provenance.config_digest,
        }),
    )?;
    let mut out = Output::create(&a.out, a.force, 0o644)?;
    {
        let mut w = out.writer();
        w.write_all(&bytes)?;
        w.write_all(b"\n")?;
        w.flush()?;
    }
    out.finish()?;
    if a.json {
        print_json(&json!({
            "out": a.out, "root_digest": root, "record_sha256": digest, "ledger_index": index,
            "files": st.predicate.resources.len(),
        }))?;
    } else if a.out != Path::new("-") {
        crate::common::eprint(&format!(
            "training record for {} (root sha256:{root}) written to {}; ledger entry {index}",
            a.name,
            a.out.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
