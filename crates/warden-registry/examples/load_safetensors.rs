//! A real safetensors model registered and loaded through `SecureModelManager`, then
//! parsed with the `safetensors` crate. Run:
//!
//! ```sh
//! cargo run --release -p warden-registry --example load_safetensors
//! ```
//!
//! Everything lives in a temporary directory: a ledger, a SQLite registry and a local
//! blob store. The load is policy-checked, verified against the signed manifest while
//! streaming, and recorded in the ledger before the bytes are handed over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use warden_core::crypto::SigAlg;
use warden_policy::{Engine, VersionState};
use warden_registry::blobs::BlobStore;
use warden_registry::manifest::Provenance;
use warden_registry::{
    Caller, ManagerOptions, Registration, SecureModelManager, Selector, Staging, keyfile,
};
use warden_store::keys::{self, KdfParams};
use warden_store::ledger::{Ledger, LedgerOptions, SystemClock, SystemEntropy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let p = dir.path();

    // A small two-layer model in the safetensors format.
    let w1: Vec<u8> = (0..16 * 8)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect();
    let b1: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let tensors = HashMap::from([
        (
            "layer1.weight".to_owned(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![16, 8], &w1)?,
        ),
        (
            "layer1.bias".to_owned(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8], &b1)?,
        ),
    ]);
    let model_file = p.join("model.safetensors");
    safetensors::tensor::serialize_to_file(&tensors, None, &model_file)?;

    // Ledger (development root key), registry, blobs.
    let kdf = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    keys::create_root(
        &p.join("root.key"),
        &p.join("root.pub"),
        "example.local/warden",
        SigAlg::MlDsa65,
        b"",
        kdf,
    )?;
    keys::create_recipient(&p.join("auditor.key"), &p.join("auditor.key.pub"))?;
    std::fs::create_dir_all(p.join("logs"))?;
    let ledger = Ledger::open(
        &p.join("logs/model_access.jsonl"),
        keys::unlock_root(&p.join("root.key"), b"")?,
        LedgerOptions {
            origin: "example.local/warden".into(),
            alg: SigAlg::MlDsa65,
            rotation_interval: Duration::from_secs(7200),
            strict: false,
            recipients: vec![keys::read_recipient_public(&p.join("auditor.key.pub"))?],
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            segments: warden_store::segments::SegmentPolicy::default(),
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let m = SecureModelManager::open(
            ManagerOptions {
                database: warden_registry::db::Database::Sqlite(p.join("registry.db")),
                blobs: BlobStore::local(&p.join("blobs"))?,
                engine: Engine::default_policy()?,
                policy_digest: "shipped-default".into(),
                config_digest: None,
                clock: Arc::new(SystemClock),
            },
            std::sync::Arc::new(ledger),
        )
        .await?;
        // Principals: an admin, an engineer who registers, a second who approves, and a
        // data scientist who loads.
        m.add_principal(None, "admin", &["admin".into()], false, None)
            .await?;
        let admin = Caller::local("admin");
        let key = keyfile::create(&p.join("eng.key"), "eng", SigAlg::MlDsa65)?;
        m.add_principal(
            Some(&admin),
            "eng",
            &["ml-engineer".into()],
            false,
            Some(&key.key.verifying_key()),
        )
        .await?;
        m.add_principal(Some(&admin), "lead", &["ml-engineer".into()], false, None)
            .await?;
        m.add_principal(Some(&admin), "ds", &["data-scientist".into()], false, None)
            .await?;

        let (info, _) = m
            .register(
                &Caller::local("eng"),
                Registration {
                    model: "tiny-mlp",
                    version: "1.0.0",
                    path: &model_file,
                    provenance: Provenance::default(),
                },
                &key,
                &|_, _| {},
            )
            .await?;
        println!(
            "registered tiny-mlp@1.0.0, root sha256:{}",
            info.root_digest
        );
        let lead = Caller {
            mfa: true,
            ..Caller::local("lead")
        };
        let v = Selector::Version("1.0.0".into());
        m.promote(&lead, "tiny-mlp", &v, VersionState::Validated, None)
            .await?;
        m.promote(&lead, "tiny-mlp", &v, VersionState::Production, None)
            .await?;

        // The data scientist loads @production into memory and parses it.
        let ds = Caller {
            ip: "192.0.2.44".parse()?,
            ..Caller::local("ds")
        };
        let loaded = m
            .load(
                &ds,
                "tiny-mlp",
                &Selector::Alias("production".into()),
                None,
                &Staging::Memory,
            )
            .await?;
        println!(
            "access recorded at ledger index {}, covered by a checkpoint of size {}",
            loaded.receipt().index,
            loaded.receipt().size
        );
        let bytes = loaded.into_single_bytes().ok_or("expected one file")?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let mut names = st.names();
        names.sort();
        for n in names {
            let t = st.tensor(n)?;
            println!("  {n}: {:?} {:?}", t.dtype(), t.shape());
        }
        assert_eq!(st.tensor("layer1.bias")?.data(), b1.as_slice());
        m.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    println!("ok");
    Ok(())
}
