//! `warden model`: register, list, show, promote, retire, revoke, alias, check, load.

use crate::common::{DataDirArg, print_json};
use crate::registry::{CallerArgs, with_manager};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_policy::{Action, VersionState};
use warden_registry::manager::VersionInfo;
use warden_registry::manifest::{self, Provenance};
use warden_registry::{Selector, Staging, keyfile};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Register a file or directory as a new model version: hash every file, store the
    /// blobs by digest, sign the manifest with your key, record it in the ledger.
    Register(Register),
    /// Sign a file or directory's manifest for registration over HTTP, without touching
    /// the registry: writes the body of `POST /v1/models/NAME/versions/VERSION`.
    ///
    /// Upload each file first (`PUT /v1/models/NAME/blobs/sha256:DIGEST`, digests in the
    /// manifest); the server checks the signature against your registered key.
    Sign(Sign),
    /// List the versions of every model you may read.
    List(List),
    /// Show one version: state, files and digests, aliases, provenance.
    Show(Show),
    /// Promote a version: registered -> validated -> production.
    ///
    /// Production needs a validated version and an approver other than its registrant
    /// (two-person rule); the default policy requires --mfa.
    Promote(Promote),
    /// Retire a version (it is no longer served, except to admins).
    Retire(Target),
    /// Revoke a version: terminal, from any state; it never loads again.
    Revoke(Revoke),
    /// Point an alias at a version (`production` and `latest` follow the lifecycle).
    Alias(Alias),
    /// Ask the policy whether an action is allowed; the decision is recorded.
    Check(Check),
    /// Load a model through the audited path: policy check, integrity check while
    /// streaming, durable audit entry, then delivery.
    ///
    /// Exit status: 0 delivered; 3 denied by policy; 4 integrity failure (an incident
    /// is recorded); 5 the audit ledger could not record the access; 2 other errors.
    Load(Load),
}

/// What a manifest covers and who signs it: shared by `register` and `sign`.
#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// Model name.
    name: String,
    /// Version to create.
    #[arg(long)]
    version: String,
    /// File or directory to register.
    path: PathBuf,
    /// Provenance, included in the signed manifest: a signed training record from
    /// `warden training record` (verified against its signer's registered key, and it
    /// must attest exactly these files; `register` only), or plain JSON (datasets,
    /// code_commit, config_digest, environment, parent_model).
    #[arg(long)]
    provenance: Option<PathBuf>,
    /// Your signing key (default: keys/principals/<you>.key in the data directory).
    #[arg(long)]
    key: Option<PathBuf>,
}

impl ManifestArgs {
    fn signing_key(
        &self,
        dir: &DataDirArg,
        caller: &CallerArgs,
    ) -> Result<warden_registry::PrincipalKey> {
        let path = match &self.key {
            Some(k) => k.clone(),
            None => dir.dir().principal_key(caller.named()?),
        };
        keyfile::read(&path).with_context(|| format!("reading the signing key {}", path.display()))
    }
}

#[derive(Args, Debug)]
// `--version` names the model version here (flattened from ManifestArgs).
#[command(disable_version_flag = true)]
pub struct Register {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    #[command(flatten)]
    m: ManifestArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
// `--version` names the model version here (flattened from ManifestArgs).
#[command(disable_version_flag = true)]
pub struct Sign {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    #[command(flatten)]
    m: ManifestArgs,
    /// Where to write the request body (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct List {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct Show {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// NAME, NAME@VERSION or NAME@ALIAS.
    reference: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct Promote {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// NAME@VERSION.
    reference: String,
    /// Target state: validated or production.
    #[arg(long)]
    to: String,
    /// Validation evidence (JSON file), kept with the validation record.
    #[arg(long)]
    evidence: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct Target {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// NAME@VERSION.
    reference: String,
}

#[derive(Args, Debug)]
pub struct Revoke {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// NAME@VERSION.
    reference: String,
    /// Why (recorded in the registry and the ledger).
    #[arg(long)]
    reason: String,
}

#[derive(Args, Debug)]
pub struct Alias {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    name: String,
    alias: String,
    /// The version the alias points at.
    #[arg(id = "target_version", value_name = "VERSION")]
    version: String,
}

#[derive(Args, Debug)]
pub struct Check {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// NAME, NAME@VERSION or NAME@ALIAS.
    reference: String,
    /// read, write, register, deploy, retire, load, revoke or audit.
    #[arg(long)]
    action: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct Load {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// NAME, NAME@VERSION or NAME@ALIAS (NAME alone is @latest).
    reference: String,
    /// Where to deliver: a file for a single-file model, else a directory.
    #[arg(long)]
    out: PathBuf,
    /// Load only this file of the version.
    #[arg(long)]
    file: Option<String>,
    #[arg(long)]
    json: bool,
}

fn reference(r: &str) -> Result<(String, Selector)> {
    let (m, s) = Selector::parse_ref(r);
    if m.is_empty() {
        bail!("{r:?}: expected NAME, NAME@VERSION or NAME@ALIAS");
    }
    Ok((m, s))
}

pub(crate) fn versioned(r: &str) -> Result<(String, Selector)> {
    let (m, s) = reference(r)?;
    if s == Selector::Latest {
        bail!("{r:?}: name a version, as NAME@VERSION");
    }
    Ok((m, s))
}

fn print_version(v: &VersionInfo) {
    println!(
        "{}@{}  {}  sha256:{}  by {}{}",
        v.model,
        v.version,
        v.state,
        v.root_digest,
        v.registrant,
        if v.aliases.is_empty() {
            String::new()
        } else {
            format!("  [{}]", v.aliases.join(", "))
        }
    );
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Register(a) => register(a),
        Command::Sign(a) => sign(a),
        Command::List(a) => with_manager(&a.dir, async |m| {
            let list = m.list(&a.caller.caller_in(m).await?).await?;
            if a.json {
                print_json(&serde_json::to_value(&list)?)?;
            } else {
                if list.is_empty() {
                    println!("no models you may read");
                }
                list.iter().for_each(print_version);
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Show(a) => with_manager(&a.dir, async |m| {
            let (model, sel) = reference(&a.reference)?;
            let v = m.show(&a.caller.caller_in(m).await?, &model, &sel).await?;
            if a.json {
                print_json(&serde_json::to_value(&v)?)?;
            } else {
                print_version(&v);
                // The commit id pins this version for Hub clients (`revision=`).
                println!("  commit {}", v.commit);
                for f in &v.files {
                    println!("  {}  {} bytes  sha256:{}", f.name, f.size, f.digest);
                }
                if let Some(r) = &v.revoked_reason {
                    println!("  revoked: {r}");
                }
                if let Some(p) = &v.provenance {
                    println!("  provenance: {p}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Promote(a) => {
            let target = match a.to.as_str() {
                "validated" => VersionState::Validated,
                "production" => VersionState::Production,
                other => bail!("--to {other:?}: promote to validated or production"),
            };
            let evidence = a
                .evidence
                .as_ref()
                .map(|p| -> Result<serde_json::Value> {
                    let b = crate::common::read_limited(p, 1 << 20)?;
                    serde_json::from_slice(&b)
                        .with_context(|| format!("{} is not JSON", p.display()))
                })
                .transpose()?;
            with_manager(&a.dir, async |m| {
                let (model, sel) = versioned(&a.reference)?;
                let r = m
                    .promote(
                        &a.caller.caller_in(m).await?,
                        &model,
                        &sel,
                        target,
                        evidence,
                    )
                    .await?;
                println!("{} is now {target} (ledger index {})", a.reference, r.index);
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Retire(a) => with_manager(&a.dir, async |m| {
            let (model, sel) = versioned(&a.reference)?;
            let r = m
                .retire(&a.caller.caller_in(m).await?, &model, &sel)
                .await?;
            println!("{} retired (ledger index {})", a.reference, r.index);
            Ok(ExitCode::SUCCESS)
        }),
        Command::Revoke(a) => with_manager(&a.dir, async |m| {
            let (model, sel) = versioned(&a.reference)?;
            let r = m
                .revoke(&a.caller.caller_in(m).await?, &model, &sel, &a.reason)
                .await?;
            println!("{} revoked (ledger index {})", a.reference, r.index);
            Ok(ExitCode::SUCCESS)
        }),
        Command::Alias(a) => with_manager(&a.dir, async |m| {
            let r = m
                .set_alias(&a.caller.caller_in(m).await?, &a.name, &a.alias, &a.version)
                .await?;
            println!(
                "{}@{} -> {} (ledger index {})",
                a.name, a.alias, a.version, r.index
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Check(a) => with_manager(&a.dir, async |m| {
            let action = Action::parse(&a.action)?;
            let (model, sel) = reference(&a.reference)?;
            let sel = a.reference.contains('@').then_some(sel);
            let d = m
                .check(
                    &a.caller.caller_in(m).await?,
                    action,
                    &model,
                    sel.as_ref(),
                    None,
                )
                .await?;
            if a.json {
                print_json(&json!({"allowed": d.allowed, "reason": d.reason()}))?;
            } else {
                println!(
                    "{}: {}",
                    if d.allowed { "allow" } else { "deny" },
                    d.reason()
                );
            }
            Ok(if d.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::registry::EXIT_DENIED)
            })
        }),
        Command::Load(a) => load(a),
    }
}

fn register(a: &Register) -> Result<ExitCode> {
    // A signed training record, or plain provenance JSON.
    let (mut provenance, record): (Provenance, Option<(manifest::Envelope, String)>) =
        match &a.m.provenance {
            Some(p) => {
                let b = crate::common::read_limited(p, manifest::MAX_ENVELOPE as u64)?;
                let v: serde_json::Value = serde_json::from_slice(&b)
                    .with_context(|| format!("{}: not JSON", p.display()))?;
                if v.get("payloadType").is_some() {
                    let env =
                        manifest::parse_envelope(&b).with_context(|| format!("{}", p.display()))?;
                    let digest = warden_core::hex::encode(&warden_core::merkle::sha256(&b));
                    (Provenance::default(), Some((env, digest)))
                } else {
                    let prov: Provenance = serde_json::from_value(v)
                        .with_context(|| format!("{}: not a provenance document", p.display()))?;
                    refuse_claimed_attestation(&prov, p)?;
                    (prov, None)
                }
            }
            None => (Provenance::default(), None),
        };
    let key = a.m.signing_key(&a.dir, &a.caller)?;
    with_manager(&a.dir, async |m| {
        if let Some((env, digest)) = &record {
            let (signer, st) = m
                .verify_training_record(env)
                .await
                .context("the training record")?;
            provenance = st.predicate.provenance.clone();
            provenance.attestation = Some(manifest::AttestationRef {
                signer,
                digest: digest.clone(),
                root: st
                    .subject
                    .first()
                    .map(|s| s.digest.sha256.clone())
                    .unwrap_or_default(),
            });
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "hashing {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let (info, receipt) = m
            .register(
                &a.caller.caller_in(m).await?,
                warden_registry::Registration {
                    model: &a.m.name,
                    version: &a.m.version,
                    path: &a.m.path,
                    provenance,
                },
                &key,
                &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )
            .await?;
        bar.finish_and_clear();
        if a.json {
            let mut v = serde_json::to_value(&info)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("ledger_index".into(), json!(receipt.index));
            }
            print_json(&v)?;
        } else {
            println!(
                "registered {}@{}: {} file(s), root sha256:{} (ledger index {})",
                info.model,
                info.version,
                info.files.len(),
                info.root_digest,
                receipt.index
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `attestation` is filled in from a verified training record, never taken from plain
/// provenance JSON: there it would be a claim in the trainer's name.
fn refuse_claimed_attestation(prov: &Provenance, path: &std::path::Path) -> Result<()> {
    if prov.attestation.is_some() {
        bail!(
            "{}: \"attestation\" is set from a verified training record; pass the record from `warden training record` as --provenance instead",
            path.display()
        );
    }
    Ok(())
}

fn sign(a: &Sign) -> Result<ExitCode> {
    warden_registry::names::check_name("model name", &a.m.name)?;
    warden_registry::names::check_name("version", &a.m.version)?;
    let provenance = match &a.m.provenance {
        Some(p) => {
            let b = crate::common::read_limited(p, manifest::MAX_ENVELOPE as u64)?;
            let v: serde_json::Value =
                serde_json::from_slice(&b).with_context(|| format!("{}: not JSON", p.display()))?;
            if v.get("payloadType").is_some() {
                bail!(
                    "{}: a signed training record is verified on registration; use `warden model register`",
                    p.display()
                );
            }
            let prov: Provenance = serde_json::from_value(v)
                .with_context(|| format!("{}: not a provenance document", p.display()))?;
            refuse_claimed_attestation(&prov, p)?;
            prov
        }
        None => Provenance::default(),
    };
    let key = a.m.signing_key(&a.dir, &a.caller)?;
    let files = warden_registry::fingerprint(&a.m.path, &|_, _| {})?;
    let st = manifest::statement(&a.m.name, &a.m.version, files, provenance);
    let env = manifest::sign(&st, a.caller.named()?, &key.key)?;
    let body = serde_json::to_vec_pretty(&json!({ "envelope": env }))?;
    match &a.out {
        Some(p) => std::fs::write(p, &body).with_context(|| format!("writing {}", p.display()))?,
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(&body)?;
            out.write_all(b"\n")?;
        }
    }
    for r in &st.predicate.resources {
        crate::common::eprint(&format!(
            "{}  sha256:{}  {} bytes",
            r.name, r.digest, r.size
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn load(a: &Load) -> Result<ExitCode> {
    let out = &a.out;
    let existing_dir = out.is_dir();
    if !existing_dir && out.exists() {
        bail!("{} exists; choose a new path", out.display());
    }
    // Staging lives beside the destination, so delivery is a rename.
    let stage_dir = if existing_dir {
        out.clone()
    } else {
        match out.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("."),
        }
    };
    std::fs::create_dir_all(&stage_dir)
        .with_context(|| format!("creating {}", stage_dir.display()))?;
    with_manager(&a.dir, async |m| {
        let (model, sel) = reference(&a.reference)?;
        let loaded = m
            .load(
                &a.caller.caller_in(m).await?,
                &model,
                &sel,
                a.file.as_deref(),
                &Staging::Dir(stage_dir.clone()),
            )
            .await?;
        let receipt = loaded.receipt().clone();
        let (model, version, root) = (
            loaded.model().to_owned(),
            loaded.version().to_owned(),
            loaded.root_digest().to_owned(),
        );
        let files: Vec<_> = loaded
            .files()
            .iter()
            .map(|f| json!({"name": f.name(), "digest": f.digest(), "size": f.size()}))
            .collect();
        let written = loaded.persist(out)?;
        if a.json {
            print_json(&json!({
                "model": model, "version": version, "root_digest": root, "files": files,
                "written": written, "ledger_index": receipt.index, "checkpoint_size": receipt.size,
            }))?;
        } else {
            println!(
                "loaded {model}@{version} (sha256:{root}) to {}; audit entry {}",
                out.display(),
                receipt.index
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
