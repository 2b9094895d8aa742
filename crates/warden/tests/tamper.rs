//! Acceptance: tampering with a ledger of ≥ 10 000 entries over ≥ 3 epochs is reported
//! by `warden verify` with exit status 1 and the right index; clean logs pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use std::io::{Read, Seek, SeekFrom, Write};
use warden_core::checkpoint::{Checkpoint, sign_checkpoint};
use warden_core::crypto::{DataKey, SigAlg, SigningKey};
use warden_core::entry::{Header, parse_line, seal_line};
use warden_core::epoch::RotationRecord;
use warden_core::record::CheckpointRecord;
use zeroize::Zeroizing;

const MAX_EPOCH: u64 = 60;

/// `warden verify` with one thread and with two: the findings, their order and every
/// count must be the same (only the time taken differs).
fn verify_all_jobs(fx: &Fixture, max_epoch: u64, extra: &[&str]) -> Verdict {
    let run = |jobs: &str| {
        let args: Vec<&str> = extra.iter().copied().chain(["--jobs", jobs]).collect();
        let mut v = verify(fx, max_epoch, &args);
        if let Some(m) = v.json.as_object_mut() {
            m.remove("seconds");
        }
        v
    };
    let (one, two) = (run("1"), run("2"));
    assert_eq!(one.code, two.code, "--jobs 1 and 2 differ in exit status");
    assert_eq!(one.json, two.json, "--jobs 1 and 2 differ in findings");
    one
}

fn big() -> Fixture {
    build(10_000, MAX_EPOCH, 120)
}

#[test]
fn clean_log_verifies_with_and_without_auditor_key() {
    let fx = big();
    let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
    assert_eq!(v.code, 0, "{:?}", v.findings());
    assert!(v.json["entries"].as_u64().unwrap() >= 10_000);
    assert!(v.json["epochs"].as_u64().unwrap() >= 3, "{}", v.json);
    let aud = fx.auditor.to_str().unwrap().to_owned();
    let v = verify_all_jobs(&fx, MAX_EPOCH, &["--auditor-key", &aud]);
    assert_eq!(v.code, 0, "{:?}", v.findings());
    assert_eq!(v.json["decrypted"], v.json["entries"]);
}

fn flip(path: &std::path::Path, offset: u64, bit: u8) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    b[0] ^= 1 << bit;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
}

fn line_of(data: &[u8], offset: u64) -> u64 {
    data[..usize::try_from(offset).unwrap()]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

#[test]
fn every_sampled_single_bit_flip_is_detected_at_its_index() {
    let fx = big();
    let entries = std::fs::read(&fx.log).unwrap();
    let cps = std::fs::read(&fx.cps).unwrap();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut failures = Vec::new();
    let trials = 1000;
    for t in 0..trials {
        let (path, data, location) = if t % 5 < 3 {
            (&fx.log, &entries, "entry")
        } else {
            (&fx.cps, &cps, "checkpoint")
        };
        let offset = rng.below(data.len() as u64);
        let bit = u8::try_from(rng.below(8)).unwrap();
        let index = line_of(data, offset);
        flip(path, offset, bit);
        let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
        flip(path, offset, bit);
        let named = v.has(location, index)
            || v.findings()
                .iter()
                .any(|f| f.3.contains(&format!("checkpoint {index} ")));
        if v.code != 1 || !named {
            failures.push(format!(
                "{location} byte {offset} bit {bit} (line {index}): exit {} findings {:?}",
                v.code,
                v.findings().iter().take(3).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {trials} flips not reported at the right index:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The files are back to their original bytes and verify again.
    assert_eq!(verify_all_jobs(&fx, MAX_EPOCH, &[]).code, 0);
}

#[test]
fn deleted_line_is_reported_at_its_index() {
    let fx = big();
    let mut l = lines(&fx.log);
    l.remove(4321);
    write_lines(&fx.log, &l);
    let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
    assert_eq!(v.code, 1);
    assert!(
        v.has_code("index_mismatch", 4321),
        "{:?}",
        &v.findings()[..3.min(v.findings().len())]
    );
    assert_eq!(v.findings()[0].1, 4321);
}

#[test]
fn swapped_lines_are_reported_at_the_first() {
    let fx = big();
    let mut l = lines(&fx.log);
    l.swap(5000, 5007);
    write_lines(&fx.log, &l);
    let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
    assert_eq!(v.code, 1);
    assert_eq!(v.findings()[0].1, 5000, "{:?}", &v.findings()[..3]);
    assert!(v.has("entry", 5007));
}

#[test]
fn duplicated_line_is_reported() {
    let fx = big();
    let mut l = lines(&fx.log);
    let dup = l[6000].clone();
    l.insert(6001, dup);
    write_lines(&fx.log, &l);
    let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
    assert_eq!(v.code, 1);
    assert_eq!(v.findings()[0].1, 6001, "{:?}", &v.findings()[..3]);
    assert!(v.has_code("index_mismatch", 6001));
}

#[test]
fn truncated_tail_is_reported_against_a_trusted_checkpoint() {
    let fx = big();
    let cps = lines(&fx.cps);
    let last = CheckpointRecord::decode(cps.last().unwrap()).unwrap();
    let trusted = fx.dir.path().join("trusted.note");
    std::fs::write(&trusted, &last.note).unwrap();
    let trusted = trusted.to_str().unwrap().to_owned();
    assert_eq!(
        verify_all_jobs(&fx, MAX_EPOCH, &["--trusted-checkpoint", &trusted]).code,
        0
    );
    // Cut entries and checkpoints consistently back to an earlier checkpoint: the log
    // alone looks whole, only the trusted checkpoint reveals the cut.
    let keep = &cps[..cps.len() - 5];
    let size = CheckpointRecord::decode(keep.last().unwrap()).unwrap().size;
    write_lines(&fx.cps, keep);
    let l = lines(&fx.log);
    write_lines(&fx.log, &l[..usize::try_from(size).unwrap()]);
    assert_eq!(
        verify_all_jobs(&fx, MAX_EPOCH, &[]).code,
        0,
        "a consistent cut is invisible without a trusted checkpoint"
    );
    let v = verify_all_jobs(&fx, MAX_EPOCH, &["--trusted-checkpoint", &trusted]);
    assert_eq!(v.code, 1);
    assert!(v.has_code("truncated", size), "{:?}", v.findings());
}

#[test]
fn line_forged_with_another_key_is_reported() {
    let fx = big();
    let mut l = lines(&fx.log);
    let orig = l[7000].clone();
    let e = parse_line(&orig).unwrap();
    let other = DataKey::new(Zeroizing::new([42u8; 32])).unwrap();
    let h = Header { ..e.header };
    let mut forged = Vec::new();
    seal_line(
        &h,
        &other,
        br#"{"user":"mallory","decision":"allow"}"#,
        &mut forged,
        &mut Vec::new(),
    )
    .unwrap();
    l[7000] = forged;
    write_lines(&fx.log, &l);
    assert_reported(&fx, MAX_EPOCH, "entry_not_in_signed_tree", 7000);
    let aud = fx.auditor.to_str().unwrap().to_owned();
    let v = verify_all_jobs(&fx, MAX_EPOCH, &["--auditor-key", &aud]);
    assert!(v.has_code("decrypt_failed", 7000), "{:?}", v.findings());
}

fn rotation_indices(fx: &Fixture) -> Vec<usize> {
    lines(&fx.log)
        .iter()
        .enumerate()
        .filter(|(_, l)| parse_line(l).unwrap().header.kind == "key.rotation")
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn altered_rotation_entry_is_reported() {
    let fx = big();
    let rot = rotation_indices(&fx);
    assert!(rot.len() >= 3);
    let i = rot[1];
    let mut l = lines(&fx.log);
    let s = String::from_utf8(l[i].clone()).unwrap();
    let e = parse_line(s.as_bytes()).unwrap();
    let b64 = e.header.rotation.unwrap().to_owned();
    let mut rec = RotationRecord::decode(&b64).unwrap();
    // Stretch the epoch's validity window without the root key's signature.
    rec.cert.not_after = "2099-01-01T00:00:00.000000Z".into();
    l[i] = s.replace(&b64, &rec.encode().unwrap()).into_bytes();
    write_lines(&fx.log, &l);
    assert_reported(&fx, MAX_EPOCH, "bad_certificate", i as u64);
}

#[test]
fn replaced_checkpoint_is_reported() {
    let fx = big();
    let mut cps = lines(&fx.cps);
    let k = cps.len() / 2;
    let mut rec = CheckpointRecord::decode(&cps[k]).unwrap();
    let attacker = SigningKey::from_seed(SigAlg::MlDsa65, Zeroizing::new([7; 32])).unwrap();
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: rec.size,
        root: [0; 32],
    };
    let name = warden_core::checkpoint::epoch_key_name(ORIGIN, rec.epoch);
    rec.note = sign_checkpoint(&cp, &name, &attacker, 0)
        .unwrap()
        .to_string();
    cps[k] = rec.encode().unwrap();
    write_lines(&fx.cps, &cps);
    assert_reported(&fx, MAX_EPOCH, "checkpoint_bad_signature", k as u64);
}

#[test]
fn over_long_epoch_is_reported() {
    // Written with a 120 s rotation interval, verified against a 60 s policy.
    let fx = build(600, 120, 5);
    let v = verify_all_jobs(&fx, 120, &[]);
    assert_eq!(v.code, 0, "{:?}", v.findings());
    let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
    assert_eq!(v.code, 1);
    assert!(v.has_code("epoch_too_long", 0), "{:?}", v.findings());
    for i in rotation_indices(&fx) {
        assert!(v.has_code("epoch_too_long", i as u64));
    }
}

/// The signing and data keys of epoch 0, recovered from what the writer drew: the
/// attacker of the next test stole them while epoch 0 was live.
fn stolen_epoch0(fx: &Fixture) -> (SigningKey, DataKey) {
    let all = lines(&fx.log);
    let first = parse_line(&all[0]).unwrap();
    let rec = RotationRecord::decode(first.header.rotation.unwrap()).unwrap();
    let signer = fx
        .secrets
        .iter()
        .map(|s| {
            SigningKey::from_seed(
                SigAlg::MlDsa65,
                Zeroizing::new(s.as_slice().try_into().unwrap()),
            )
            .unwrap()
        })
        .find(|k| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
                == rec.cert.public_key
        })
        .expect("epoch 0 signing seed among the recorded secrets");
    let e1 = parse_line(&all[1]).unwrap();
    let data = fx
        .secrets
        .iter()
        .map(|s| DataKey::new(Zeroizing::new(s.as_slice().try_into().unwrap())).unwrap())
        .find(|k| e1.open(k, &mut Vec::new()).is_ok())
        .expect("epoch 0 data key among the recorded secrets");
    (signer, data)
}

#[test]
fn checkpoint_resigned_with_an_old_epoch_key_is_reported() {
    let fx = big();
    let (old, _) = stolen_epoch0(&fx);
    let mut cps = lines(&fx.cps);
    let k = cps.len() - 1;
    let mut rec = CheckpointRecord::decode(&cps[k]).unwrap();
    assert!(rec.epoch >= 2);
    let note = warden_core::note::Note::parse(rec.note.as_bytes()).unwrap();
    let cp = Checkpoint::from_text(note.text()).unwrap();
    rec.epoch = 0;
    let name = warden_core::checkpoint::epoch_key_name(ORIGIN, 0);
    rec.note = sign_checkpoint(&cp, &name, &old, 0).unwrap().to_string();
    cps[k] = rec.encode().unwrap();
    write_lines(&fx.cps, &cps);
    assert_reported(&fx, MAX_EPOCH, "checkpoint_wrong_signer", k as u64);
}

#[test]
fn entries_appended_under_an_old_epoch_key_are_reported() {
    let fx = big();
    let (old, data) = stolen_epoch0(&fx);
    let mut l = lines(&fx.log);
    let n = l.len() as u64;
    let header = Header {
        origin: ORIGIN,
        index: n,
        time: warden_core::time::Timestamp::from_micros(T0 + 10).unwrap(),
        epoch: 0,
        kind: "model.access",
        nonce: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff],
        rotation: None,
        rid: None,
    };
    let mut forged = Vec::new();
    seal_line(
        &header,
        &data,
        br#"{"user":"mallory","model":"m","decision":"allow"}"#,
        &mut forged,
        &mut Vec::new(),
    )
    .unwrap();
    l.push(forged.clone());
    write_lines(&fx.log, &l);
    // A checkpoint over the extended tree, signed with the stolen key, so the forged
    // entry is "covered" by a valid signature.
    let mut range = warden_core::merkle::CompactRange::new();
    for line in &l {
        range.push(warden_core::merkle::leaf_hash(line));
    }
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: n + 1,
        root: range.root(),
    };
    let name = warden_core::checkpoint::epoch_key_name(ORIGIN, 0);
    let rec = CheckpointRecord {
        first: n,
        size: n + 1,
        epoch: 0,
        leaves: vec![warden_core::merkle::leaf_hash(&forged)],
        note: sign_checkpoint(&cp, &name, &old, 0).unwrap().to_string(),
    };
    let mut cps = lines(&fx.cps);
    cps.push(rec.encode().unwrap());
    write_lines(&fx.cps, &cps);
    let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
    assert_eq!(v.code, 1);
    assert!(v.has("entry", n), "{:?}", v.findings());
}

/// Checkpoint signatures are checked ahead, on every core, with the key each
/// rotation's certificate names before the ordered pass has verified that certificate.
/// A certificate the root key did not sign must lend its key to no checkpoint: an
/// attacker who swaps in their own epoch key and re-signs that epoch's checkpoints
/// with it (right sizes, right roots) is still reported, with one job and with two.
#[test]
fn a_certificate_the_root_did_not_sign_lends_its_key_to_no_checkpoint() {
    use base64::Engine as _;
    let fx = big();
    let rot = rotation_indices(&fx);
    let i = rot[1];
    let mut l = lines(&fx.log);
    let s = String::from_utf8(l[i].clone()).unwrap();
    let e = parse_line(s.as_bytes()).unwrap();
    let epoch = e.header.epoch;
    let b64 = e.header.rotation.unwrap().to_owned();
    let mut rec = RotationRecord::decode(&b64).unwrap();
    let attacker = SigningKey::from_seed(SigAlg::MlDsa65, Zeroizing::new([9; 32])).unwrap();
    rec.cert.public_key =
        base64::engine::general_purpose::STANDARD.encode(attacker.verifying_key().as_bytes());
    l[i] = s.replace(&b64, &rec.encode().unwrap()).into_bytes();
    write_lines(&fx.log, &l);
    let name = warden_core::checkpoint::epoch_key_name(ORIGIN, epoch);
    let mut cps = lines(&fx.cps);
    let mut first = None;
    for (k, line) in cps.iter_mut().enumerate() {
        let mut r = CheckpointRecord::decode(line).unwrap();
        if r.epoch != epoch {
            continue;
        }
        first.get_or_insert(k);
        let note = warden_core::note::Note::parse(r.note.as_bytes()).unwrap();
        let cp = Checkpoint::from_text(note.text()).unwrap();
        r.note = sign_checkpoint(&cp, &name, &attacker, 0)
            .unwrap()
            .to_string();
        *line = r.encode().unwrap();
    }
    write_lines(&fx.cps, &cps);
    let v = verify_all_jobs(&fx, MAX_EPOCH, &[]);
    assert_eq!(v.code, 1, "{:?}", v.findings());
    assert!(
        v.has_code("bad_certificate", i as u64),
        "{:?}",
        v.findings()
    );
    let k = first.expect("the epoch has checkpoints") as u64;
    assert!(
        v.has_code("checkpoint_bad_signature", k),
        "{:?}",
        v.findings()
    );
}
