//! `warden migrate --to postgres://… [--blobs s3://…]`: moves an embedded data
//! directory onto a cluster's engines with its history. The ledger's bytes move as
//! they are, so the cluster continues the same log under the same root key and every
//! checkpoint signed before stays consistent with those signed after; the registry's
//! rows are copied; the blobs are uploaded and each is checked against its digest on
//! the way. `warden.toml` is rewritten last: until then the data directory is as it
//! was, and a move that stopped half-way is carried on by running it again (the
//! database must then hold this data directory's registry and a prefix of its ledger).

use crate::common::{DataDirArg, eprint, print_json};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_core::verify::VerifyConfig;
use warden_registry::blobs::BlobStore;
use warden_registry::db::Database;
use warden_store::config::{Config, DataDir};
use warden_store::ledger::checkpoints_path;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The cluster's PostgreSQL (postgres://user@host:port/db; the password from
    /// PGPASSWORD): the registry's metadata and the ledger go there. It must hold
    /// neither yet, or only what an interrupted move of this data directory left (the
    /// move then carries on). Stop every process of this data directory first.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Also move the model blobs to this S3-compatible bucket (s3://bucket/prefix;
    /// credentials and endpoint from the standard AWS variables). Without it the blobs
    /// stay where `blobs` says, which every node must then reach.
    #[arg(long, value_name = "URL")]
    pub blobs: Option<String>,
    /// Publish the ledger as tlog-tiles there once the cluster runs (`publish_log`).
    #[arg(long, value_name = "URL")]
    pub publish_log: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A URL with any password left out, for the ledger and the screen.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!(
            "{}{}",
            url.get(..s + 3).unwrap_or_default(),
            url.get(at + 1..).unwrap_or_default()
        ),
        _ => url.to_owned(),
    }
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    if cfg.backend.is_some() {
        bail!(
            "{} is already a cluster node (backend in warden.toml)",
            dir.root.display()
        );
    }
    let mut new = cfg.clone();
    new.backend = Some(a.to.clone());
    if let Some(b) = &a.blobs {
        if !warden_registry::s3::is_bucket_url(b) {
            bail!("--blobs {b}: name a bucket, s3://bucket/prefix");
        }
        new.blobs = PathBuf::from(b);
    }
    if a.publish_log.is_some() {
        new.publish_log.clone_from(&a.publish_log);
    }
    new.validate().context("the migrated configuration")?;
    let say = |m: &str| {
        if !a.json {
            eprint(&format!("warden migrate: {m}"));
        }
    };

    let log = dir.log(&cfg);
    let segmented = !warden_store::segments::load_index(&log)?.is_empty();
    let removed = warden_store::segments::LogView::open(&log)?.first_index();
    if removed > 0 && new.publish_log.is_some() {
        bail!(
            "retention removed this ledger's entries before {removed}: tlog-tiles publishes every entry from the first, so a ledger without them cannot be published (leave out --publish-log and publish_log); nothing was moved"
        );
    }
    // Where it goes must be empty, or hold what an interrupted move of this same data
    // directory left (then the move carries on), and what is moved must verify: both
    // before anything is written.
    let rt = crate::registry::runtime()?;
    let (pool, resumed, registry_copied) = rt.block_on(async {
        let pool = warden_cluster::node::connect(&a.to).await?;
        let resumed = warden_cluster::import::resumable(&pool, &log)
            .await
            .with_context(|| shown(&a.to))?;
        let mut copied = false;
        if cfg.registry_url().is_none() {
            let dst = Database::Postgres(a.to.clone()).open().await?;
            if !warden_registry::copy::is_empty(&dst).await? {
                let src = Database::Sqlite(dir.resolve(&cfg.registry_db)).open().await?;
                copied = warden_registry::copy::same(&src, &dst).await?;
                src.close().await;
                if !copied {
                    dst.close().await;
                    bail!("{} already holds a registry, and not this one: a data directory moves into an empty database, or into what an interrupted move of it left", shown(&a.to));
                }
            }
            dst.close().await;
        }
        anyhow::Ok((pool, resumed, copied))
    })?;
    if let Some(r) = &resumed {
        say(&format!(
            "resuming an interrupted move: the database holds the first {} entries already",
            r.entries
        ));
    }
    // What is moved must verify: once before anything is written, and again after the
    // move's own entry (from where the first run stopped).
    say("verifying the ledger before moving it");
    let root = warden_store::keys::read_root_public(&dir.root_pub())?;
    let check = |resume: Option<&warden_core::verify::ResumeState>| {
        warden_store::verify::verify_files(
            &log,
            &checkpoints_path(&log),
            VerifyConfig {
                root: root.clone(),
                max_epoch_micros: cfg.rotation_interval_secs.saturating_mul(1_000_000),
                auditor: None,
            },
            Vec::new(),
            resume,
            &mut |_, _| {},
        )
    };
    let first = check(None)?;
    if !first.report.is_clean() {
        bail!(
            "the ledger does not verify ({} findings): run `warden verify`; nothing was moved",
            first.report.findings.len()
        );
    }
    // The move is itself an entry; opening the ledger also recovers a torn tail, and
    // fails while another process writes it.
    let ledger = crate::journal::open_owned(&dir, true)
        .context("opening the ledger (stop `warden serve` and every writer first)")?;
    let ev = warden_core::entry::Event {
        user: std::env::var("USER").ok(),
        action: Some("migrate".into()),
        decision: Some("allow".into()),
        details: Some(serde_json::json!({
            "to": shown(&a.to),
            "blobs": a.blobs.as_deref().map(shown),
            "publish_log": a.publish_log.as_deref().map(shown),
            "note": "begun here; the new configuration's first start records it in force",
        })),
        ..Default::default()
    };
    let recorded = warden_store::journal::Journal::append(&ledger, "system.migrate", &ev)?.index;
    ledger.close();
    let out = check(first.resume.as_ref())?;
    if !out.report.is_clean() || out.report.pending.is_some() {
        bail!(
            "the ledger does not verify after recording the move ({} findings); nothing was moved",
            out.report.findings.len()
        );
    }
    let (tables, blobs, imported) = rt.block_on(async {
        // Blobs first (content-addressed: uploading again is harmless), then the
        // registry (one transaction), then the ledger.
        let blobs = match &a.blobs {
            Some(url) => {
                say(&format!("uploading the blobs to {url}"));
                move_blobs(&dir, &cfg, url).await?
            }
            None => 0,
        };
        let tables = match cfg.registry_url() {
            Some(_) => {
                say("the registry is in PostgreSQL already: left where it is");
                Vec::new()
            }
            None if registry_copied => {
                say("the registry was copied by the interrupted move: left as it is");
                Vec::new()
            }
            None => {
                say("copying the registry");
                let src = Database::Sqlite(dir.resolve(&cfg.registry_db)).open().await?;
                let dst = Database::Postgres(a.to.clone()).open().await?;
                let t = warden_registry::copy::copy(&src, &dst).await?;
                src.close().await;
                dst.close().await;
                t
            }
        };
        say("importing the ledger");
        let holder = format!("migrate/{}", crate::cluster::node_name());
        let total = warden_store::segments::LogView::open(&log)?.len()?;
        let bar = crate::common::byte_bar(Some(total), "importing the ledger", a.json);
        let imported = warden_cluster::import::import(&pool, &holder, &log, &mut |done| {
            bar.set_position(done);
        })
        .await
        .context(
            "importing the ledger (run the same `warden migrate` again: it carries on after what was imported)",
        )?;
        bar.finish_and_clear();
        pool.close().await;
        anyhow::Ok((tables, blobs, imported))
    })?;
    if segmented {
        // The node's copy of the cluster's ledger is one file: the segments (and the
        // active file, which the copy replaces) are set aside, and the node rebuilds
        // its copy from the database when it starts.
        let aside = set_aside(&log)?;
        say(&format!(
            "the ledger's segments are set aside in {} (remove them once the cluster serves)",
            aside.display()
        ));
    }
    let toml = toml::to_string(&new).context("writing the configuration")?;
    warden_store::durable::write_atomic(&dir.config(), toml.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", dir.config().display()))?;
    if a.json {
        print_json(&serde_json::json!({
            "ok": true, "recorded": recorded, "entries": imported.entries,
            "removed_by_retention": imported.removed,
            "checkpoints": imported.checkpoints, "ledger_bytes": imported.bytes,
            "registry": tables.iter().map(|(t, n)| (t.clone(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
            "blobs": blobs, "backend": shown(&a.to),
        }))?;
    } else {
        println!(
            "migrated {}: {} entries and {} checkpoints ({} bytes) into {}, {} registry rows, {} blobs; the move is entry {recorded}",
            dir.root.display(),
            imported.entries,
            imported.checkpoints,
            imported.bytes,
            shown(&a.to),
            tables.iter().map(|(_, n)| n).sum::<u64>(),
            blobs
        );
        if imported.removed > 0 {
            println!(
                "retention had removed the entries before {}: the cluster's ledger holds the rest, and the record of that removal verifies it",
                imported.removed
            );
        }
        println!(
            "warden.toml now names the cluster; the old registry file and blob directory are left in place (remove them once the cluster serves)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Moves the ledger's local files (the segments, their index, the active entries file,
/// the checkpoints and the tree state) into a directory beside them. Returns it.
fn set_aside(log: &Path) -> Result<PathBuf> {
    let dir = log.parent().unwrap_or(Path::new("."));
    let aside = dir.join("before-migrate");
    std::fs::create_dir_all(&aside).with_context(|| format!("creating {}", aside.display()))?;
    let mut paths: Vec<PathBuf> = warden_store::segments::load_index(log)?
        .iter()
        .map(|r| warden_store::segments::segment_path(log, r))
        .collect();
    paths.extend([
        warden_store::segments::index_path(log),
        log.to_path_buf(),
        checkpoints_path(log),
        warden_store::ledger::tree_state_path(log),
    ]);
    for p in paths {
        let Some(name) = p.file_name() else { continue };
        match std::fs::rename(&p, aside.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("moving {}", p.display())),
        }
    }
    warden_store::durable::sync_dir(dir)?;
    Ok(aside)
}

/// Uploads every blob of the local store to `url`, each checked against the digest it
/// is stored under. Returns how many.
async fn move_blobs(dir: &DataDir, cfg: &Config, url: &str) -> Result<u64> {
    let root = dir.resolve(&cfg.blobs);
    let dst = BlobStore::configured(Path::new(url), |p| p.to_path_buf())?;
    let mut n = 0u64;
    let top = root.join("sha256");
    let Ok(prefixes) = std::fs::read_dir(&top) else {
        return Ok(0);
    };
    for prefix in prefixes {
        let prefix = prefix?.path();
        for blob in
            std::fs::read_dir(&prefix).with_context(|| format!("reading {}", prefix.display()))?
        {
            let path = blob?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let stored = dst
                .put_file(&path, &|_| {})
                .await
                .with_context(|| format!("uploading {}", path.display()))?;
            if stored.digest != name {
                bail!(
                    "{} does not hash to the digest it is stored under (it hashes to {}): the local blob store was altered; nothing else was moved after it",
                    path.display(),
                    stored.digest
                );
            }
            n += 1;
        }
    }
    Ok(n)
}
