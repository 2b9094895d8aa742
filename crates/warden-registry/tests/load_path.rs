//! Acceptance 2: a tampered blob fails the next load with an `incident` entry; a revoked
//! version never loads; a load whose audit entry cannot be made durable is refused.
//! Also: registration rejects unknown and invalid signers; loaded bytes are the
//! registered bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{Fixture, write_model};
use std::sync::atomic::Ordering;
use warden_policy::{Action, VersionState};
use warden_registry::manifest::Provenance;
use warden_registry::{Caller, Registration, RegistryError, Selector, Staging, keyfile};

fn load(fx: &Fixture, who: &str, sel: &str, staging: &Staging) -> Result<Vec<u8>, RegistryError> {
    let (m, s) = Selector::parse_ref(&format!("m@{sel}"));
    fx.rt
        .block_on(fx.m().load(&Caller::local(who), &m, &s, None, staging))
        .map(|l| {
            l.into_single_bytes()
                .map(|b| b.to_vec())
                .unwrap_or_default()
        })
}

/// The digest and stored file of the first file of `m@version` (to damage it).
fn first_blob(fx: &Fixture, version: &str) -> (String, std::path::PathBuf) {
    let info = fx
        .rt
        .block_on(fx.m().show(
            &Caller::local("eng"),
            "m",
            &Selector::Version(version.into()),
        ))
        .unwrap();
    let digest = info.files[0].digest.clone();
    let blob = fx.m().blobs().local_path(&digest).unwrap();
    (digest, blob)
}

fn staging_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn tampered_blob_is_refused_with_an_incident_and_nothing_is_delivered() {
    let mut fx = Fixture::new();
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    let file = fx.dir.path().join("w.bin");
    write_model(&file, 1 << 20, 7);
    fx.register_file("eng", "1", &file);
    assert_eq!(
        load(&fx, "eng", "1", &Staging::Memory).unwrap(),
        std::fs::read(&file).unwrap()
    );
    // Flip one byte of the stored blob.
    let (digest, blob) = first_blob(&fx, "1");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[4242] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    let stage = fx.dir.path().join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    let err = load(&fx, "eng", "1", &Staging::Dir(stage.clone())).unwrap_err();
    assert!(matches!(err, RegistryError::Integrity { .. }), "{err}");
    assert_eq!(staging_files(&stage), 0, "nothing may be left staged");
    // A truncated blob too.
    std::fs::write(&blob, &bytes[..1000]).unwrap();
    assert!(matches!(
        load(&fx, "eng", "1", &Staging::Memory),
        Err(RegistryError::Integrity { .. })
    ));
    fx.close();
    let ev = fx.events();
    let incidents: Vec<_> = ev.iter().filter(|(k, _)| k == "incident").collect();
    assert_eq!(incidents.len(), 2);
    let e = &incidents[0].1;
    assert_eq!(e.user.as_deref(), Some("eng"));
    assert_eq!(e.model.as_deref(), Some("m"));
    assert_eq!(e.reason.as_deref(), Some("integrity-failure"));
    let d = e.details.as_ref().unwrap();
    assert_eq!(d["severity"], "CRITICAL");
    assert_eq!(d["evidence"]["expected"], digest.as_str());
    // Exactly one access was granted: the load before the tampering.
    assert_eq!(ev.iter().filter(|(k, _)| k == "model.access").count(), 1);
    assert_eq!(fx.verify(), Vec::<String>::new());
}

#[test]
fn revoked_version_never_loads() {
    let mut fx = Fixture::new();
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    fx.add("approver", &["ml-engineer"], false, Some("admin"));
    fx.add("sec", &["security-officer"], false, Some("admin"));
    let file = fx.dir.path().join("w.bin");
    write_model(&file, 5000, 3);
    fx.register_file("eng", "1", &file);
    let mut approver = Caller::local("approver");
    approver.mfa = true;
    let v1 = Selector::Version("1".into());
    fx.rt.block_on(async {
        let m = fx.m();
        m.promote(&approver, "m", &v1, VersionState::Validated, None)
            .await
            .unwrap();
        m.promote(&approver, "m", &v1, VersionState::Production, None)
            .await
            .unwrap();
    });
    load(&fx, "eng", "production", &Staging::Memory).unwrap();
    let mut sec = Caller::local("sec");
    sec.mfa = true;
    fx.rt
        .block_on(fx.m().revoke(&sec, "m", &v1, "poisoned training data"))
        .unwrap();
    for who in ["admin", "eng", "approver", "sec"] {
        let err = load(&fx, who, "1", &Staging::Memory).unwrap_err();
        // Typed as a revocation (what the SDK's `Revoked` and the Hub's "disabled" read),
        // never recognised from the reason's text.
        assert!(
            matches!(err, RegistryError::Denied { revoked: true, .. }),
            "{who}: {err}"
        );
    }
    // The production alias no longer points at it.
    assert!(matches!(
        load(&fx, "admin", "production", &Staging::Memory),
        Err(RegistryError::UnknownVersion { .. })
    ));
    // Revocation is final.
    let again = fx.rt.block_on(
        fx.m()
            .promote(&approver, "m", &v1, VersionState::Production, None),
    );
    assert!(again.is_err());
    let unrevoke = fx.rt.block_on(fx.m().revoke(&sec, "m", &v1, "again"));
    assert!(matches!(unrevoke, Err(RegistryError::Transition { .. })));
    fx.close();
    let ev = fx.events();
    let revoke = ev.iter().find(|(k, _)| k == "registry.revoke").unwrap();
    assert_eq!(revoke.1.reason.as_deref(), Some("poisoned training data"));
    assert_eq!(ev.iter().filter(|(k, _)| k == "model.access").count(), 1);
    assert_eq!(fx.verify(), Vec::<String>::new());
}

#[test]
fn load_is_refused_when_the_ledger_cannot_record_it() {
    let fx = Fixture::new();
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    let file = fx.dir.path().join("w.bin");
    write_model(&file, 100_000, 9);
    fx.register_file("eng", "1", &file);
    let stage = fx.dir.path().join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    fx.fail.store(true, Ordering::SeqCst);
    let err = load(&fx, "eng", "1", &Staging::Dir(stage.clone())).unwrap_err();
    assert!(matches!(err, RegistryError::Audit(_)), "{err}");
    assert_eq!(staging_files(&stage), 0, "no bytes may be delivered");
    // A denied request is refused too, and registry changes are not made.
    fx.fail.store(false, Ordering::SeqCst);
    let err = load(&fx, "eng", "1", &Staging::Memory).unwrap_err();
    assert!(
        matches!(err, RegistryError::Audit(_)),
        "the ledger stays closed: {err}"
    );
    let eng = Caller::local("eng");
    let r = fx.rt.block_on(fx.m().set_alias(&eng, "m", "stable", "1"));
    assert!(matches!(r, Err(RegistryError::Audit(_))));
    let info = fx
        .rt
        .block_on(fx.m().check(&eng, Action::Load, "m", None, None));
    assert!(matches!(info, Err(RegistryError::Audit(_))));
}

#[test]
fn registration_rejects_unknown_and_invalid_signers() {
    let mut fx = Fixture::new();
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    let file = fx.dir.path().join("w.bin");
    write_model(&file, 1000, 1);
    // A key that is not eng's registered key (same name, new key pair).
    let rogue = fx.dir.path().join("rogue.key");
    let rogue_key = keyfile::create(&rogue, "eng", warden_core::crypto::SigAlg::MlDsa65).unwrap();
    let reg = |v: &'static str| Registration {
        model: "m",
        version: v,
        path: &file,
        provenance: Provenance::default(),
    };
    let r =
        fx.rt.block_on(
            fx.m()
                .register(&Caller::local("eng"), reg("1"), &rogue_key, &|_, _| {}),
        );
    assert!(matches!(r, Err(RegistryError::Signer(_))), "{r:?}");
    // Someone else's key.
    let admin_key = keyfile::read(&fx.key_path("admin")).unwrap();
    let r =
        fx.rt.block_on(
            fx.m()
                .register(&Caller::local("eng"), reg("1"), &admin_key, &|_, _| {}),
        );
    assert!(matches!(r, Err(RegistryError::Signer(_))), "{r:?}");
    // A principal with no registered signing key.
    let caller = Caller::local("admin");
    fx.rt
        .block_on(fx.m().add_principal(
            Some(&caller),
            "nokey",
            &["ml-engineer".into()],
            false,
            None,
        ))
        .unwrap();
    let nokey = keyfile::create(
        &fx.dir.path().join("nokey.key"),
        "nokey",
        warden_core::crypto::SigAlg::MlDsa65,
    )
    .unwrap();
    let r = fx.rt.block_on(
        fx.m()
            .register(&Caller::local("nokey"), reg("1"), &nokey, &|_, _| {}),
    );
    assert!(matches!(r, Err(RegistryError::Signer(_))), "{r:?}");
    // Nothing was registered by the rejected attempts.
    let r = fx.rt.block_on(
        fx.m()
            .show(&Caller::local("eng"), "m", &Selector::Version("1".into())),
    );
    assert!(
        matches!(r, Err(RegistryError::UnknownModel { .. })),
        "{r:?}"
    );
    // The real key works, and a directory registers every file.
    let d = fx.dir.path().join("model-dir");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    write_model(&d.join("config.json"), 100, 2);
    write_model(&d.join("sub/weights.bin"), 10_000, 3);
    fx.register_file("eng", "2", &d);
    let loaded = fx
        .rt
        .block_on(fx.m().load(
            &Caller::local("eng"),
            "m",
            &Selector::Latest,
            None,
            &Staging::Memory,
        ))
        .unwrap();
    let names: Vec<_> = loaded.files().iter().map(|f| f.name().to_owned()).collect();
    assert_eq!(names, ["config.json", "sub/weights.bin"]);
    assert_eq!(
        loaded.files()[1].bytes().unwrap(),
        std::fs::read(d.join("sub/weights.bin")).unwrap()
    );
    fx.close();
    assert_eq!(fx.verify(), Vec::<String>::new());
}

/// Regression: registering content whose blob already existed but was damaged kept the
/// damaged blob (the upload was dropped as a duplicate), so the new version never loaded.
#[test]
fn reregistering_content_repairs_a_damaged_blob() {
    let fx = Fixture::new();
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    let file = fx.dir.path().join("w.bin");
    write_model(&file, 50_000, 5);
    let root = fx.register_file("eng", "1", &file);
    let (_, blob) = first_blob(&fx, "1");
    let mut b = std::fs::read(&blob).unwrap();
    b[10] ^= 1;
    std::fs::write(&blob, &b).unwrap();
    assert!(load(&fx, "eng", "1", &Staging::Memory).is_err());
    assert_eq!(fx.register_file("eng", "2", &file), root);
    assert_eq!(
        load(&fx, "eng", "2", &Staging::Memory).unwrap(),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(
        load(&fx, "eng", "1", &Staging::Memory).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

/// The two-step load (the Python SDK's `load`): admitting reads no byte and records no
/// access; completing it delivers the registered bytes with one access entry, and a
/// blob tampered with between the two steps is still an incident.
#[test]
fn an_admitted_load_reads_nothing_until_completed_and_still_verifies() {
    let mut fx = Fixture::new();
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    let file = fx.dir.path().join("w.bin");
    write_model(&file, (1 << 20) + 17, 3);
    fx.register_file("eng", "1", &file);
    let caller = Caller::local("eng");
    let sel = Selector::Version("1".into());
    let admit = || {
        fx.rt
            .block_on(fx.m().admit_load(&caller, "m", &sel, None))
            .unwrap()
    };
    let a = admit();
    assert_eq!(a.files(), vec![("w.bin", (1u64 << 20) + 17)]);
    let l = fx
        .rt
        .block_on(fx.m().load_admitted(&caller, a, &Staging::Memory))
        .unwrap();
    assert_eq!(
        l.into_single_bytes().unwrap().to_vec(),
        std::fs::read(&file).unwrap()
    );
    let a = admit();
    let (_, blob) = first_blob(&fx, "1");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[(1 << 20) + 3] ^= 0x80;
    std::fs::write(&blob, &bytes).unwrap();
    let r = fx
        .rt
        .block_on(fx.m().load_admitted(&caller, a, &Staging::Memory));
    assert!(matches!(r, Err(RegistryError::Integrity { .. })), "{r:?}");
    fx.close();
    let ev = fx.events();
    assert_eq!(ev.iter().filter(|(k, _)| k == "model.access").count(), 1);
    assert_eq!(ev.iter().filter(|(k, _)| k == "incident").count(), 1);
    assert_eq!(fx.verify(), Vec::<String>::new());
}
