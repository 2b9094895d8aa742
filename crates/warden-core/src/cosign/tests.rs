//! Known answers from the C2SP specifications, and round trips.

use super::*;
use crate::note::Note;

/// `c2sp.org/signed-note`, "Example": a verifier key and the note it verifies.
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

/// `c2sp.org/tlog-cosignature`: the example checkpoint's body, the example
/// cosignature line on it, and the signed message the specification prints for it.
const COSIGNED_BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const COSIGNATURE_LINE: &str = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
const COSIGNED_MESSAGE: &str = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

fn seed(b: u8) -> Zeroizing<[u8; 32]> {
    Zeroizing::new([b; 32])
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "warden.example/ledger".into(),
        size: 20_852_163,
        root: [7; 32],
    }
}

#[test]
fn the_signed_note_specification_example_key_verifies_its_example_note() {
    let k = VerifierKey::parse(SPEC_VKEY).unwrap();
    assert_eq!(k.name(), "example.com/foo");
    assert_eq!(k.kind(), KeyType::Ed25519);
    assert_eq!(k.key_id(), 0x530d_903a);
    assert_eq!(k.to_string(), SPEC_VKEY);
    let note = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
    let sig = note.signatures().first().unwrap();
    k.verify_note(note.text(), sig).unwrap();
    // One changed byte of the text, or of the signature, and it no longer verifies.
    assert!(k.verify_note("This is an example message!\n", sig).is_err());
    let mut forged = sig.clone();
    forged.sig[0] ^= 1;
    assert!(k.verify_note(note.text(), &forged).is_err());
    // A key ID that does not match the key is refused when the key is read.
    assert!(VerifierKey::parse(&SPEC_VKEY.replace("530d903a", "530d903b")).is_err());
}

#[test]
fn the_cosignature_specification_example_decodes_to_its_timestamp_and_message() {
    let note = Note::parse(format!("{COSIGNED_BODY}\n{COSIGNATURE_LINE}").as_bytes()).unwrap();
    let sig = note.signatures().first().unwrap();
    assert_eq!(sig.name, "witness.example.com/w1");
    // key ID || u64 timestamp || 64-byte Ed25519 signature.
    assert_eq!(sig.sig.len(), 8 + 64);
    let (ts, body) = split_timestamped(&sig.sig).unwrap();
    assert_eq!(ts, 1_679_315_147);
    assert_eq!(body.len(), ED25519_SIG_LEN);
    assert_eq!(
        cosignature_v1_message(ts, note.text()),
        COSIGNED_MESSAGE.as_bytes()
    );
}

#[test]
fn the_subtree_message_is_laid_out_as_the_specification_defines() {
    let m = subtree_v1_message("w", 0x0102_0304_0506_0708, "o.example", 0, 5, &[9; 32]).unwrap();
    let mut want = b"subtree/v1\n\0".to_vec();
    want.extend_from_slice(&[1, b'w']);
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    want.push(9);
    want.extend_from_slice(b"o.example");
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]);
    want.extend_from_slice(&[9; 32]);
    assert_eq!(m, want);
    assert!(subtree_v1_message("", 1, "o", 0, 1, &[0; 32]).is_err());
    assert!(subtree_v1_message(&"x".repeat(256), 1, "o", 0, 1, &[0; 32]).is_err());
}

#[test]
fn cosignatures_of_both_types_verify_and_bind_every_field() {
    for kind in [KeyType::SubtreeV1, KeyType::CosignatureV1] {
        let w = Cosigner::from_seed("witness.example/w1", kind, seed(3)).unwrap();
        let vk = VerifierKey::parse(&w.verifier().to_string()).unwrap();
        assert_eq!(vk, w.verifier());
        let cp = checkpoint();
        let sig = w.cosign(&cp, 1_700_000_000).unwrap();
        assert_eq!(
            vk.verify_cosignature(&cp.to_text(), &sig).unwrap(),
            1_700_000_000
        );
        // Through the note encoding and back.
        let line = Note::new(cp.to_text(), vec![sig.clone()]).unwrap();
        let parsed = Note::parse(line.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.signatures(), std::slice::from_ref(&sig));
        // Another size, another root, another time, another cosigner: refused.
        let mut other = cp.clone();
        other.size += 1;
        assert!(
            vk.verify_cosignature(&other.to_text(), &sig).is_err(),
            "{kind:?} size"
        );
        let mut other = cp.clone();
        other.root[0] ^= 1;
        assert!(
            vk.verify_cosignature(&other.to_text(), &sig).is_err(),
            "{kind:?} root"
        );
        let mut moved = sig.clone();
        moved.sig[7] ^= 1;
        assert!(
            vk.verify_cosignature(&cp.to_text(), &moved).is_err(),
            "{kind:?} time"
        );
        let stranger = Cosigner::from_seed("witness.example/w1", kind, seed(4)).unwrap();
        assert!(
            stranger
                .verifier()
                .verify_cosignature(&cp.to_text(), &sig)
                .is_err()
        );
        // A timestamp of zero or past 2^63 - 1 is never produced.
        assert!(w.cosign(&cp, 0).is_err());
        assert!(w.cosign(&cp, 1 << 63).is_err());
    }
}

#[test]
fn the_ml_dsa_cosignature_commits_to_the_cosigner_name() {
    // The same key under another name: the key ID differs, and even with the ID
    // forged to match, the message (which carries the name) does not verify.
    let a = Cosigner::from_seed("w.example/a", KeyType::SubtreeV1, seed(5)).unwrap();
    let b = Cosigner::from_seed("w.example/b", KeyType::SubtreeV1, seed(5)).unwrap();
    let cp = checkpoint();
    let mut sig = a.cosign(&cp, 1_700_000_000).unwrap();
    assert_ne!(a.verifier().key_id(), b.verifier().key_id());
    sig.name = "w.example/b".into();
    sig.key_id = b.verifier().key_id();
    assert!(
        b.verifier()
            .verify_cosignature(&cp.to_text(), &sig)
            .is_err()
    );
}

#[test]
fn malformed_verifier_keys_are_refused() {
    for bad in [
        "",
        "name",
        "name+530d903a",
        "name+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "name+530d903a+!!!",
        "name+530d903a+",
        // Type 0x02 (ECDSA) is not supported; a key of the wrong length is refused.
        "example.com/foo+530d903a+AgAA",
        "example.com/foo+530d903a+AQAA",
    ] {
        assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
    }
}
