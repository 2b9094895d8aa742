//! `warden bench registry`: policy decision latency with many models and principals, and
//! the verified load path next to plain read+hash and the single-core SHA-256 rate, all
//! measured in the same run on this machine.

use crate::common::print_json;
use anyhow::{Context, Result};
use aws_lc_rs::digest;
use clap::Args as ClapArgs;
use serde_json::json;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::crypto::SigAlg;
use warden_policy::{Action, Engine, VersionState};
use warden_registry::blobs::BlobStore;
use warden_registry::db::{Db, PrincipalRow, VersionRow};
use warden_registry::manifest::Provenance;
use warden_registry::{
    Caller, ManagerOptions, Registration, SecureModelManager, Selector, Staging, keyfile,
};
use warden_store::keys::{self, KdfParams};
use warden_store::ledger::{Ledger, LedgerOptions, SystemClock, SystemEntropy};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Model versions in the registry.
    #[arg(long, default_value_t = 10_000)]
    models: u64,
    /// Principals.
    #[arg(long, default_value_t = 1_000)]
    principals: u64,
    /// Decisions to time.
    #[arg(long, default_value_t = 100_000)]
    decisions: u64,
    /// Artifact size for the load benchmark, MiB (0 skips it).
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Working directory (default: a fresh temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn micros(mut v: Vec<Duration>, p: f64) -> f64 {
    crate::cmd::bench::pct(&mut v, p) * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let fx = crate::cmd::bench::fixture(a.dir.as_ref())?;
    let root = fx.root.join("registry-bench");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(root.join("logs"))?;
    let say = |m: &str| {
        if !a.json {
            crate::common::eprint(m);
        }
    };
    let kdf = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    let (rk, rp) = (root.join("root.key"), root.join("root.pub"));
    keys::create_root(&rk, &rp, "bench.local/registry", SigAlg::MlDsa65, b"", kdf)?;
    let ledger = Ledger::open(
        &root.join("logs/model_access.jsonl"),
        keys::unlock_root(&rk, b"")?,
        LedgerOptions {
            origin: "bench.local/registry".into(),
            alg: SigAlg::MlDsa65,
            rotation_interval: Duration::from_secs(7200),
            strict: false,
            recipients: vec![keys::read_recipient_public(
                &fx.root.join("auditor.key.pub"),
            )?],
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            segments: warden_store::segments::SegmentPolicy::default(),
        },
    )?;
    let rt = crate::registry::runtime()?;
    let db_path = root.join("registry.db");
    let roles = [
        "ml-engineer",
        "data-scientist",
        "service",
        "auditor",
        "security-officer",
    ];
    let states = [
        "registered",
        "validated",
        "production",
        "retired",
        "revoked",
    ];
    say(&format!(
        "populating {} principals and {} model versions ...",
        a.principals, a.models
    ));
    rt.block_on(async {
        let db = Db::open(&db_path).await?;
        let mut tx = db.begin().await?;
        for i in 0..a.principals {
            let role = roles
                .get(i as usize % roles.len())
                .copied()
                .unwrap_or("service");
            let row = PrincipalRow {
                name: format!("p{i}"),
                service: role == "service",
                active: true,
                signing_alg: None,
                signing_key: None,
                roles: vec![role.to_owned()],
                created_at: 0,
            };
            Db::insert_principal(&mut tx, &row, "bench").await?;
            if role == "service" {
                Db::put_grant(
                    &mut tx,
                    &warden_registry::db::GrantRow {
                        principal: row.name.clone(),
                        model: format!("model{}", i % a.models.max(1)),
                        action: "load".into(),
                        expires_at: i64::MAX,
                    },
                    "bench",
                    0,
                )
                .await?;
            }
        }
        for i in 0..a.models {
            let name = format!("model{i}");
            Db::ensure_model(&mut tx, &name, "bench", 0).await?;
            let state = states
                .get(i as usize % states.len())
                .copied()
                .unwrap_or("registered");
            Db::insert_version(
                &mut tx,
                &VersionRow {
                    model: name,
                    version: "1".into(),
                    state: state.into(),
                    registrant: "p0".into(),
                    root_digest: "00".repeat(32),
                    manifest: String::new(),
                    created_at: 0,
                    updated_at: 0,
                    validated_by: (state != "registered").then(|| "p1".to_owned()),
                    validation: None,
                    approved_by: None,
                    revoked_reason: None,
                },
                &[],
            )
            .await?;
        }
        db.commit(tx).await?;
        db.close().await;
        anyhow::Ok(())
    })?;
    let m = rt.block_on(SecureModelManager::open(
        ManagerOptions {
            database: warden_registry::db::Database::Sqlite(db_path),
            blobs: BlobStore::local(&root.join("blobs"))?,
            engine: Engine::default_policy()?,
            policy_digest: "bench".into(),
            config_digest: None,
            clock: Arc::new(SystemClock),
        },
        std::sync::Arc::new(ledger),
    ))?;
    let result = rt.block_on(measure(a, &m, &root, &say));
    rt.block_on(m.close())?;
    let out = result?;
    if a.json {
        print_json(&out)?;
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    a: &Args,
    m: &SecureModelManager,
    root: &std::path::Path,
    say: &dyn Fn(&str),
) -> Result<serde_json::Value> {
    say("timing policy decisions ...");
    let actions = [Action::Load, Action::Read, Action::Deploy, Action::Retire];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Pure policy evaluation: the request's entity slice built and evaluated by Cedar.
    let engine = m.engine();
    let mut engine_t = Vec::with_capacity(a.decisions as usize);
    let mut allowed = 0u64;
    for _ in 0..a.decisions {
        let p = next() % a.principals.max(1);
        let mo = next() % a.models.max(1);
        let action = actions
            .get((next() % 4) as usize)
            .copied()
            .unwrap_or(Action::Load);
        let state = VersionState::ALL
            .get((mo % 5) as usize)
            .copied()
            .unwrap_or(VersionState::Registered);
        let req = warden_policy::AccessRequest {
            principal: warden_policy::PrincipalFacts {
                name: format!("p{p}"),
                service: p % 5 == 2,
                active: true,
                roles: vec![
                    [
                        "ml-engineer",
                        "data-scientist",
                        "service",
                        "auditor",
                        "security-officer",
                    ]
                    .get((p % 5) as usize)
                    .copied()
                    .unwrap_or("service")
                    .to_owned(),
                ],
                grants: if p % 5 == 2 {
                    vec![(Action::Load, i64::MAX)]
                } else {
                    Vec::new()
                },
            },
            action,
            resource: warden_policy::ResourceFacts::Version {
                model: format!("model{mo}"),
                version: "1".into(),
                state,
                registrant: "p0".into(),
                validated: state != VersionState::Registered,
            },
            context: warden_policy::ContextFacts {
                now: 1_800_000_000,
                // One address per principal: 1 000 distinct clients.
                ip: std::net::IpAddr::from([10, 0, (p / 256) as u8, (p % 256) as u8]),
                mfa: true,
                scopes: None,
                target: (action == Action::Deploy).then_some(VersionState::Production),
            },
        };
        let t = Instant::now();
        let d = engine.decide(&req);
        engine_t.push(t.elapsed());
        allowed += u64::from(d.allowed);
    }
    // The whole decision as the manager makes it: principal, roles, grants and version
    // read from SQLite, then the policy.
    let n_full = (a.decisions / 10).max(1);
    let mut full_t = Vec::with_capacity(n_full as usize);
    for _ in 0..n_full {
        let p = next() % a.principals.max(1);
        let mo = next() % a.models.max(1);
        let c = Caller {
            mfa: true,
            ..Caller::local(&format!("p{p}"))
        };
        let model = format!("model{mo}");
        let t = Instant::now();
        let v = m.db_version_facts(&model, "1").await?;
        let _d = m.decide(&c, Action::Load, &v, None).await?;
        full_t.push(t.elapsed());
    }
    let mut out = json!({
        "principals": a.principals, "model_versions": a.models,
        "policy_decision_us": {"p50": micros(engine_t.clone(), 0.5), "p99": micros(engine_t.clone(), 0.99),
            "max": micros(engine_t, 1.0), "allowed_fraction": allowed as f64 / a.decisions.max(1) as f64,
            "target_p99": 50.0},
        "decision_with_sqlite_lookups_us": {"p50": micros(full_t.clone(), 0.5), "p99": micros(full_t, 0.99)},
    });
    if a.size_mib == 0 {
        return Ok(out);
    }
    say(&format!("writing a {} MiB artifact ...", a.size_mib));
    let size = a.size_mib << 20;
    let art = root.join("artifact.bin");
    {
        let mut f = std::fs::File::create(&art)?;
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..a.size_mib {
            for (j, b) in buf.iter_mut().enumerate() {
                *b = (j as u64).wrapping_mul(2_654_435_761).wrapping_add(i) as u8;
            }
            f.write_all(&buf)?;
        }
    }
    let key = keyfile::create(&root.join("eng.key"), "eng", SigAlg::MlDsa65)?;
    let admin = Caller::local("bench-admin");
    m.add_principal(None, "bench-admin", &["admin".into()], false, None)
        .await?;
    m.add_principal(
        Some(&admin),
        "eng",
        &["ml-engineer".into()],
        false,
        Some(&key.key.verifying_key()),
    )
    .await?;
    say("registering it (hash + store) ...");
    let t = Instant::now();
    let (info, _) = m
        .register(
            &Caller::local("eng"),
            Registration {
                model: "big",
                version: "1",
                path: &art,
                provenance: Provenance::default(),
            },
            &key,
            &|_, _| {},
        )
        .await?;
    let register_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&art).ok();
    let blob = m
        .blobs()
        .local_path(info.files.first().map_or("", |f| f.digest.as_str()))
        .context("the bench needs the local blob store")?;
    let gib = size as f64 / f64::from(1u32 << 30);
    let mut sha_rate = Vec::new();
    let mut plain_rate = Vec::new();
    let mut load_mem = Vec::new();
    let mut load_file = Vec::new();
    let stage = root.join("stage");
    std::fs::create_dir_all(&stage)?;
    let eng = Caller::local("eng");
    for round in 0..3 {
        say(&format!("round {} of 3 ...", round + 1));
        // Single-core SHA-256 over memory: the ceiling.
        let chunk = vec![0x5au8; 4 << 20];
        let t = Instant::now();
        let mut ctx = digest::Context::new(&digest::SHA256);
        for _ in 0..(size / chunk.len() as u64) {
            ctx.update(&chunk);
        }
        let _ = ctx.finish();
        sha_rate.push(gib / t.elapsed().as_secs_f64());
        // Plain read + hash of the stored blob (the baseline the load path adds to).
        let t = Instant::now();
        let mut f = std::fs::File::open(&blob)?;
        let mut buf = vec![0u8; 4 << 20];
        let mut ctx = digest::Context::new(&digest::SHA256);
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            ctx.update(buf.get(..n).unwrap_or_default());
        }
        let _ = ctx.finish();
        plain_rate.push(gib / t.elapsed().as_secs_f64());
        // The whole load path, into memory and into a staged file.
        let t = Instant::now();
        let l = m
            .load(
                &eng,
                "big",
                &Selector::Version("1".into()),
                None,
                &Staging::Memory,
            )
            .await?;
        load_mem.push(gib / t.elapsed().as_secs_f64());
        drop(l);
        let t = Instant::now();
        let l = m
            .load(
                &eng,
                "big",
                &Selector::Version("1".into()),
                None,
                &Staging::Dir(stage.clone()),
            )
            .await?;
        load_file.push(gib / t.elapsed().as_secs_f64());
        drop(l);
    }
    let (sha, plain, mem, file) = (
        median(sha_rate),
        median(plain_rate),
        median(load_mem),
        median(load_file),
    );
    if let Some(o) = out.as_object_mut() {
        o.insert(
            "load".into(),
            json!({
                "artifact_mib": a.size_mib, "register_seconds": register_s,
                "sha256_single_core_gib_s": sha, "plain_read_hash_gib_s": plain,
                "load_to_memory_gib_s": mem, "load_to_file_gib_s": file,
                "load_to_memory_vs_sha256": mem / sha, "load_to_file_vs_sha256": file / sha,
                "overhead_vs_plain_read_hash_memory": 1.0 - mem / plain,
                "overhead_vs_plain_read_hash_file": 1.0 - file / plain,
                "targets": {"vs_sha256": 0.9, "overhead": 0.05},
            }),
        );
    }
    Ok(out)
}
