//! Regression: a registry change committed by another process (a `warden model revoke`
//! or `warden token revoke` command while `warden serve` runs) was never seen by the
//! serving process, whose read cache was invalidated only by its own writes: the
//! revoked version kept loading there until a restart. Two `Db` handles on one file
//! stand in for the two processes (each has its own cache and connections, as two
//! processes do).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use warden_registry::db::{Db, VersionRow};

fn version(state: &str) -> VersionRow {
    VersionRow {
        model: "m".into(),
        version: "1".into(),
        state: state.into(),
        registrant: "eng".into(),
        root_digest: "00".repeat(32),
        manifest: "{}".into(),
        created_at: 1,
        updated_at: 1,
        validated_by: None,
        validation: None,
        approved_by: None,
        revoked_reason: None,
    }
}

#[test]
fn a_revocation_committed_by_another_process_is_seen_by_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let serving = Db::open(&path).await.unwrap();
        let command = Db::open(&path).await.unwrap();
        let mut tx = command.begin().await.unwrap();
        Db::ensure_model(&mut tx, "m", "eng", 1).await.unwrap();
        Db::insert_version(&mut tx, &version("production"), &[])
            .await
            .unwrap();
        command.commit(tx).await.unwrap();
        // The serving process reads (and caches) the version, twice.
        for _ in 0..2 {
            let v = serving.version("m", "1").await.unwrap().unwrap();
            assert_eq!(v.state, "production");
        }
        // The command revokes it.
        let mut revoked = version("revoked");
        revoked.revoked_reason = Some("poisoned".into());
        let mut tx = command.begin().await.unwrap();
        Db::update_version(&mut tx, &revoked).await.unwrap();
        command.commit(tx).await.unwrap();
        // The next read in the serving process (a request starting after the command
        // returned) sees it.
        tokio::time::sleep(warden_registry::db::FRESH).await;
        let v = serving.version("m", "1").await.unwrap().unwrap();
        assert_eq!(v.state, "revoked");
        serving.close().await;
        command.close().await;
    });
}
