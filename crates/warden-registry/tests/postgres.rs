//! The registry on PostgreSQL: the real server `scripts/postgres` starts on loopback
//! (PostgreSQL 15 from Debian's packages, installed when missing), a fresh database per
//! test. Two managers on one database stand for two nodes: a revocation or a revoked
//! token on one is refused by the other within a second.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "../../warden-cluster/tests/common/pg.rs"]
mod pg;

use common::{Fixture, write_model};
use pg::fresh_database;
use std::sync::Arc;
use warden_policy::{Engine, VersionState};
use warden_registry::blobs::BlobStore;
use warden_registry::db::{Database, Db, FRESH};
use warden_registry::{
    Caller, ManagerOptions, RegistryError, SecureModelManager, Selector, Staging,
};
use warden_store::ledger::SystemClock;

/// A second node: another manager on the same database, blob store and ledger.
fn second_node(fx: &Fixture, url: &str) -> SecureModelManager {
    fx.rt
        .block_on(SecureModelManager::open(
            ManagerOptions {
                database: Database::Postgres(url.to_owned()),
                blobs: BlobStore::local(&fx.dir.path().join("blobs")).unwrap(),
                engine: Engine::default_policy().unwrap(),
                policy_digest: "test".into(),
                config_digest: None,
                clock: Arc::new(SystemClock),
            },
            Arc::clone(fx.m().journal()),
        ))
        .unwrap()
}

#[test]
fn postgres_register_promote_load_and_revoke_across_two_nodes() {
    let db = fresh_database();
    let url = db.url.clone();
    let mut fx = Fixture::with_database(Some(Database::Postgres(url.clone())));
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    fx.add("approver", &["ml-engineer"], false, Some("admin"));
    fx.add("sec", &["security-officer"], false, Some("admin"));
    let file = fx.dir.path().join("w.bin");
    write_model(&file, 300_000, 5);
    fx.register_file("eng", "1", &file);
    let v1 = Selector::Version("1".into());
    let mut approver = Caller::local("approver");
    approver.mfa = true;
    for to in [VersionState::Validated, VersionState::Production] {
        fx.rt
            .block_on(fx.m().promote(&approver, "m", &v1, to, None))
            .unwrap();
    }
    let node_b = second_node(&fx, &url);
    let load = |m: &SecureModelManager| {
        fx.rt.block_on(m.load(
            &Caller::local("eng"),
            "m",
            &Selector::parse("production"),
            None,
            &Staging::Memory,
        ))
    };
    // Node B serves what node A registered, byte for byte.
    let got = load(&node_b).unwrap().into_single_bytes().unwrap().to_vec();
    assert_eq!(got, std::fs::read(&file).unwrap());
    // Node A revokes; node B refuses the next load (typed as a revocation, or the alias
    // is gone) within a second.
    let mut sec = Caller::local("sec");
    sec.mfa = true;
    fx.rt
        .block_on(fx.m().revoke(&sec, "m", &v1, "poisoned"))
        .unwrap();
    std::thread::sleep(FRESH);
    let r = fx
        .rt
        .block_on(node_b.load(&Caller::local("eng"), "m", &v1, None, &Staging::Memory));
    assert!(
        matches!(r, Err(RegistryError::Denied { revoked: true, .. })),
        "{r:?}"
    );
    assert!(matches!(
        load(&node_b),
        Err(RegistryError::UnknownVersion { .. })
    ));
    // A token created on node A authenticates on node B until A revokes it.
    let admin = Caller::local("admin");
    let (secret, info, _) = fx
        .rt
        .block_on(
            fx.m()
                .create_token(&admin, "eng", &["model:read".into()], 3600),
        )
        .unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let auth = |m: &SecureModelManager| {
        fx.rt
            .block_on(m.authenticate(Some(&secret), ip, None, None))
            .unwrap()
    };
    assert!(auth(&node_b).is_ok());
    fx.rt
        .block_on(fx.m().revoke_token(&admin, &info.id))
        .unwrap();
    std::thread::sleep(FRESH);
    assert!(
        auth(&node_b).is_err(),
        "a revoked token is refused on every node"
    );
    fx.rt.block_on(node_b.close()).unwrap();
    fx.close();
    assert_eq!(fx.verify(), Vec::<String>::new());
}

#[test]
fn postgres_commits_by_another_node_reach_the_cache() {
    let db = fresh_database();
    let url = db.url.clone();
    let rt = common::runtime();
    rt.block_on(async {
        let a = Db::connect(&url).await.unwrap();
        let b = Db::connect(&url).await.unwrap();
        assert!(a.is_postgres());
        let mut tx = a.begin().await.unwrap();
        Db::ensure_model(&mut tx, "m", "eng", 1).await.unwrap();
        a.commit(tx).await.unwrap();
        assert!(b.principal("nobody").await.unwrap().is_none());
        let mut tx = a.begin().await.unwrap();
        Db::insert_principal(
            &mut tx,
            &warden_registry::db::PrincipalRow {
                name: "nobody".into(),
                service: false,
                active: true,
                signing_alg: None,
                signing_key: None,
                created_at: 1,
                roles: Vec::new(),
            },
            "admin",
        )
        .await
        .unwrap();
        a.commit(tx).await.unwrap();
        tokio::time::sleep(FRESH).await;
        assert!(b.principal("nobody").await.unwrap().is_some());
        a.close().await;
        b.close().await;
    });
}
