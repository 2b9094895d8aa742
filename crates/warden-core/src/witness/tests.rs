//! The witness's rules on a small log: every refusal the specification names, with
//! its status.

use super::*;
use crate::checkpoint::sign_checkpoint;
use crate::crypto::{SigAlg, SigningKey};
use crate::epoch::{EpochParams, EpochSecrets, start_epoch};
use crate::merkle::{consistency_proof, leaf_hash, root_of};
use crate::time::Timestamp;
use zeroize::Zeroizing;

const ORIGIN: &str = "warden.example/ledger";

struct Log {
    root: SigningKey,
    anchor: RootPublic,
    leaves: Vec<Hash>,
}

impl Log {
    fn new(seed: u8) -> Self {
        let root = SigningKey::from_seed(SigAlg::MlDsa65, Zeroizing::new([seed; 32])).unwrap();
        let anchor = RootPublic {
            origin: ORIGIN.into(),
            key: root.verifying_key(),
        };
        let leaves = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        Self {
            root,
            anchor,
            leaves,
        }
    }

    /// Epoch `n`'s rotation record and signing key.
    fn epoch(&self, n: u64) -> (RotationRecord, std::sync::Arc<SigningKey>) {
        self.epoch_seeded(n, n as u8 + 100)
    }

    /// Epoch `n`, its signing key made from `seed`: the root's holder can certify
    /// another key for an epoch number already used.
    fn epoch_seeded(&self, n: u64, seed: u8) -> (RotationRecord, std::sync::Arc<SigningKey>) {
        let p = EpochParams {
            origin: ORIGIN,
            epoch: n,
            alg: SigAlg::MlDsa65,
            not_before: Timestamp::from_micros(1_700_000_000_000_000).unwrap(),
            interval_micros: 7_200_000_000,
            recipients: &[],
            closes: None,
            reason: "start",
        };
        let secrets = EpochSecrets {
            signing_seed: Zeroizing::new([seed; 32]),
            data_key: Zeroizing::new([1; 32]),
            ephemeral: Vec::new(),
        };
        let (keys, rec) = start_epoch(&self.root, &p, secrets).unwrap();
        (rec, keys.signer)
    }

    fn checkpoint(&self, size: u64, signer: &SigningKey, epoch: u64) -> Note {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: root_of(&self.leaves[..size as usize]),
        };
        sign_checkpoint(&cp, &epoch_key_name(ORIGIN, epoch), signer, 0).unwrap()
    }

    fn request(&self, old: u64, size: u64, signer: &SigningKey, epoch: u64) -> AddCheckpoint {
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            consistency_proof(&self.leaves[..size as usize], old).unwrap()
        };
        AddCheckpoint {
            old_size: old,
            proof,
            note: self.checkpoint(size, signer, epoch),
        }
    }
}

/// The status `check` refuses `req` with.
fn refused(log: &Log, keys: &EpochKeys, latest: Option<Latest>, req: &AddCheckpoint) -> u16 {
    check(&log.anchor, keys, latest, req).unwrap_err().status()
}

fn latest(cp: &Checkpoint) -> Option<Latest> {
    Some(Latest {
        size: cp.size,
        root: cp.root,
    })
}

#[test]
fn a_consistent_chain_is_accepted_and_every_refusal_has_its_status() {
    let log = Log::new(1);
    let (rec, signer) = log.epoch(0);
    let mut keys = EpochKeys::default();
    // Before the certificate, the epoch key is unknown: 403.
    let first = log.request(0, 10, &signer, 0);
    assert_eq!(refused(&log, &keys, None, &first), 403);
    assert!(learn_epoch(&log.anchor, &mut keys, &rec).unwrap());
    assert!(!learn_epoch(&log.anchor, &mut keys, &rec).unwrap());
    let cp10 = check(&log.anchor, &keys, None, &first).unwrap();
    assert_eq!(cp10.size, 10);
    // The body survives its encoding.
    assert_eq!(
        AddCheckpoint::parse(first.encode().as_bytes()).unwrap(),
        first
    );

    let next = log.request(10, 25, &signer, 0);
    let cp25 = check(&log.anchor, &keys, latest(&cp10), &next).unwrap();
    assert_eq!(cp25.size, 25);
    // The same checkpoint again, from its own size: accepted (nothing rolls back).
    let again = log.request(25, 25, &signer, 0);
    check(&log.anchor, &keys, latest(&cp25), &again).unwrap();

    // A rollback: old size 10 when 25 was cosigned → 409 naming 25.
    let stale = log.request(10, 12, &signer, 0);
    assert_eq!(
        check(&log.anchor, &keys, latest(&cp25), &stale).unwrap_err(),
        Refusal::Conflict { latest: 25 }
    );
    // A smaller checkpoint presented from the cosigned size: old > size → 400.
    let mut back = log.request(10, 12, &signer, 0);
    back.old_size = 25;
    assert_eq!(refused(&log, &keys, latest(&cp25), &back), 400);
    // A non-empty proof from size 0 → 422.
    let mut padded = log.request(0, 10, &signer, 0);
    padded.proof = vec![[0; 32]];
    assert_eq!(refused(&log, &keys, None, &padded), 422);
    // A proof that does not verify → 422.
    let mut wrong = log.request(25, 30, &signer, 0);
    wrong.proof[0][0] ^= 1;
    assert_eq!(refused(&log, &keys, latest(&cp25), &wrong), 422);
    // Another origin → 404.
    let other = Log::new(1);
    let mut foreign = other.request(0, 5, &signer, 0);
    let text = foreign
        .note
        .text()
        .replacen(ORIGIN, "elsewhere.example/log", 1);
    foreign.note = Note::new(text, foreign.note.signatures().to_vec()).unwrap();
    assert_eq!(refused(&log, &keys, None, &foreign), 404);
}

#[test]
fn a_fork_gets_no_cosignature_from_a_witness_that_saw_the_other_branch() {
    let log = Log::new(2);
    let (rec, signer) = log.epoch(0);
    let mut keys = EpochKeys::default();
    learn_epoch(&log.anchor, &mut keys, &rec).unwrap();
    let cp20 = check(&log.anchor, &keys, None, &log.request(0, 20, &signer, 0)).unwrap();
    // The operator (holding the epoch key) rewrites entry 5 and signs the same size
    // with another root, and a larger tree on the forked branch.
    let mut forked = Log::new(2);
    forked.leaves[5] = leaf_hash(b"rewritten");
    let same_size = forked.request(20, 20, &signer, 0);
    assert_eq!(refused(&log, &keys, latest(&cp20), &same_size), 422);
    let larger = forked.request(20, 30, &signer, 0);
    assert_eq!(refused(&log, &keys, latest(&cp20), &larger), 422);
}

#[test]
fn signatures_by_unknown_forged_or_uncertified_keys_are_refused() {
    let log = Log::new(3);
    let (rec0, signer0) = log.epoch(0);
    let mut keys = EpochKeys::default();
    learn_epoch(&log.anchor, &mut keys, &rec0).unwrap();
    // A signature line naming the known key whose bytes were altered → 403.
    let mut req = log.request(0, 8, &signer0, 0);
    let mut sigs = req.note.signatures().to_vec();
    sigs[0].sig[10] ^= 1;
    req.note = Note::new(req.note.text().to_owned(), sigs).unwrap();
    assert_eq!(refused(&log, &keys, None, &req), 403);
    // An epoch certificate another root signed is not learned.
    let impostor = Log::new(4);
    let (forged, _) = impostor.epoch(1);
    let before = keys.clone();
    assert_eq!(
        learn_epoch(&log.anchor, &mut keys, &forged)
            .unwrap_err()
            .status(),
        403
    );
    assert_eq!(keys, before);
    // A second, different certificate for a known epoch is refused (equivocation).
    let (twin, _) = log.epoch_seeded(0, 222);
    assert_eq!(
        learn_epoch(&log.anchor, &mut keys, &twin)
            .unwrap_err()
            .status(),
        422
    );
}

#[test]
fn malformed_requests_are_bad_requests() {
    let log = Log::new(5);
    let (_, signer) = log.epoch(0);
    let good = log.request(3, 9, &signer, 0).encode();
    let note = log.checkpoint(9, &signer, 0).to_string();
    let too_many = format!(
        "old 3\n{}\n{note}",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64)
    );
    for body in [
        String::new(),
        "old 3\n".into(),
        good.replacen("old 3", "old 03", 1),
        good.replacen("old 3", "old -3", 1),
        good.replacen("old 3", "new 3", 1),
        good.replacen("old 3\n", "old 3\nnot base64!\n", 1),
        good.replacen("old 3\n", "old 3\nAAAA\n", 1),
        format!("old 0\n\n{}", "x".repeat(MAX_REQUEST_LEN)),
        "old 0\n\nnot a note".to_string(),
        too_many,
    ] {
        let e = AddCheckpoint::parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400, "{body:.60?}: {e}");
    }
    assert!(AddCheckpoint::parse(&[0xff, 0xfe]).is_err());
    // At most MAX_EPOCHS keys are kept, the newest.
    let mut keys = EpochKeys::default();
    for n in 0..(MAX_EPOCHS as u64 + 5) {
        keys.insert(n, signer.verifying_key());
    }
    assert_eq!(keys.keys().len(), MAX_EPOCHS);
    assert_eq!(keys.keys().keys().next(), Some(&5));
}
