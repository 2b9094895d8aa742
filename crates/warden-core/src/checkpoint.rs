//! C2SP `tlog-checkpoint` bodies, signed as notes by an epoch's ML-DSA key, and
//! C2SP `tlog-proof` documents for offline inclusion proofs.

use crate::Verified;
use crate::crypto::{SigAlg, SigningKey, VerifyingKey};
use crate::error::{CryptoError, DecodeError};
use crate::merkle::Hash;
use crate::note::{Note, NoteSignature, key_id, valid_key_name};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Longest accepted origin.
pub const MAX_ORIGIN_LEN: usize = 200;

/// Whether `origin` is acceptable as a log origin: a schema-less URL-like name of
/// printable ASCII without spaces, `+`, quotes or backslashes.
#[must_use]
pub fn valid_origin(origin: &str) -> bool {
    !origin.is_empty()
        && origin.len() <= MAX_ORIGIN_LEN
        && origin
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'+' && b != b'"' && b != b'\\')
}

/// The key name an epoch signs checkpoints with: `<origin>/epoch/<n>`.
#[must_use]
pub fn epoch_key_name(origin: &str, epoch: u64) -> String {
    format!("{origin}/epoch/{epoch}")
}

/// A checkpoint body: origin, tree size, root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log origin.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the first `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body strictly (extension lines are rejected).
    pub fn from_text(text: &str) -> Result<Self, DecodeError> {
        const WHAT: &str = "checkpoint";
        let mut lines = text.split_terminator('\n');
        let (Some(origin), Some(size), Some(root), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(DecodeError::Syntax {
                what: WHAT,
                detail: "expected exactly three lines",
            });
        };
        if !text.ends_with('\n') || !valid_origin(origin) {
            return Err(DecodeError::Syntax {
                what: WHAT,
                detail: "invalid origin line",
            });
        }
        let size = parse_decimal(size).ok_or(DecodeError::Syntax {
            what: WHAT,
            detail: "invalid size",
        })?;
        let root = B64.decode(root).map_err(|_| DecodeError::Base64)?;
        let root = Hash::try_from(root.as_slice()).map_err(|_| DecodeError::Length {
            expected: 32,
            found: root.len(),
        })?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// Parses a canonical unsigned decimal (no sign, no leading zeros).
#[must_use]
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty()
        || s.len() > 20
        || (s.len() > 1 && s.starts_with('0'))
        || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// Signature type bytes for key IDs: 0x06 for ML-DSA-44 (`subtree/v1`); for ML-DSA-65,
/// which has no assigned byte, 0xff followed by a long identifier, as the spec recommends.
fn sig_type(alg: SigAlg) -> &'static [u8] {
    match alg {
        SigAlg::MlDsa44 => &[0x06],
        SigAlg::MlDsa65 => b"\xffwarden.dev/mldsa65-note",
    }
}

/// The `cosigned_message` an ML-DSA-44 `subtree/v1` signature covers.
pub fn subtree_v1_message(
    cosigner: &str,
    timestamp: u64,
    origin: &str,
    start: u64,
    end: u64,
    hash: &[u8; 32],
) -> Result<Vec<u8>, DecodeError> {
    let short = |s: &str| -> Result<u8, DecodeError> {
        u8::try_from(s.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or(DecodeError::Syntax {
                what: "subtree/v1 message",
                detail: "name or origin must be 1 to 255 bytes",
            })
    };
    let (n, o) = (short(cosigner)?, short(origin)?);
    let mut m = Vec::with_capacity(12 + 1 + cosigner.len() + 8 + 1 + origin.len() + 16 + 32);
    m.extend_from_slice(b"subtree/v1\n\0");
    m.push(n);
    m.extend_from_slice(cosigner.as_bytes());
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.push(o);
    m.extend_from_slice(origin.as_bytes());
    m.extend_from_slice(&start.to_be_bytes());
    m.extend_from_slice(&end.to_be_bytes());
    m.extend_from_slice(hash);
    Ok(m)
}

/// The C2SP `subtree/v1` cosigned message for the whole tree `[0, size)`.
fn subtree_message(name: &str, timestamp: u64, cp: &Checkpoint) -> Result<Vec<u8>, CryptoError> {
    subtree_v1_message(name, timestamp, &cp.origin, 0, cp.size, &cp.root).map_err(|_| {
        CryptoError::BadKey {
            what: "key name or origin too long for",
        }
    })
}

/// Signs `cp` as a note with `key` under `name`. `timestamp` (seconds) is used only by
/// the ML-DSA-44 `subtree/v1` form.
pub fn sign_checkpoint(
    cp: &Checkpoint,
    name: &str,
    key: &SigningKey,
    timestamp: u64,
) -> Result<Note, CryptoError> {
    let vk = key.verifying_key();
    let id = key_id(name, sig_type(key.alg()), vk.as_bytes());
    let text = cp.to_text();
    let sig = match key.alg() {
        SigAlg::MlDsa65 => key.sign(text.as_bytes())?,
        SigAlg::MlDsa44 => {
            let mut s = timestamp.to_be_bytes().to_vec();
            s.extend_from_slice(&key.sign(&subtree_message(name, timestamp, cp)?)?);
            s
        }
    };
    Note::new(
        text,
        vec![NoteSignature {
            name: name.to_owned(),
            key_id: id,
            sig,
        }],
    )
    .map_err(|_| CryptoError::BadKey { what: "note" })
}

/// Why a checkpoint note was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(#[from] DecodeError),
    #[error("no signature by key {name}")]
    NoSignature { name: String },
    #[error("signature by {name} does not verify")]
    BadSignature { name: String },
    #[error("checkpoint origin {found:?} is not the log's origin {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// Verifies that `note` carries a valid signature by `vk` under key name `name` and
/// returns the checkpoint it signs.
pub fn verify_checkpoint(
    note: &Note,
    name: &str,
    vk: &VerifyingKey,
    origin: &str,
) -> Result<Verified<Checkpoint>, CheckpointError> {
    let cp = Checkpoint::from_text(note.text())?;
    if cp.origin != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_owned(),
            found: cp.origin,
        });
    }
    let id = key_id(name, sig_type(vk.alg()), vk.as_bytes());
    let sig = note
        .signatures()
        .iter()
        .find(|s| s.name == name && s.key_id == id)
        .ok_or_else(|| CheckpointError::NoSignature {
            name: name.to_owned(),
        })?;
    let ok = match vk.alg() {
        SigAlg::MlDsa65 => vk.verify(note.text().as_bytes(), &sig.sig),
        SigAlg::MlDsa44 => match sig.sig.split_first_chunk::<8>() {
            Some((ts, rest)) => subtree_message(name, u64::from_be_bytes(*ts), &cp)
                .and_then(|m| vk.verify(&m, rest)),
            None => Err(CryptoError::BadSignature),
        },
    };
    ok.map_err(|_| CheckpointError::BadSignature {
        name: name.to_owned(),
    })?;
    Ok(Verified::new(cp))
}

/// Whether `name` is a valid key name (re-exported for callers building epoch names).
#[must_use]
pub fn is_valid_key_name(name: &str) -> bool {
    valid_key_name(name)
}

/// Marks a signed checkpoint note inside any text, e.g. a message a SIEM stored:
/// `warden-checkpoint:` followed by the note in base64url without padding, a form that
/// no message format's escaping changes.
pub const EXPORT_TOKEN: &str = "warden-checkpoint:";

/// `warden-checkpoint:<base64url of note>`.
#[must_use]
pub fn export_token(note: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{EXPORT_TOKEN}{}", URL_SAFE_NO_PAD.encode(note))
}

/// The note carried by the last [`EXPORT_TOKEN`] in `text`, if it decodes.
#[must_use]
pub fn find_export_token(text: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let tok = EXPORT_TOKEN.as_bytes();
    let at = text.windows(tok.len()).rposition(|w| w == tok)?;
    let rest = text.get(at + tok.len()..)?;
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
        .unwrap_or(rest.len());
    URL_SAFE_NO_PAD.decode(rest.get(..end)?).ok()
}

const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Most hashes accepted in a proof (a tree of 2^64 leaves needs 64).
pub const MAX_PROOF_HASHES: usize = 64;

/// A C2SP `tlog-proof`: an inclusion proof of one entry and the signed checkpoint it
/// leads to, verifiable offline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional extra data (here: the entry line itself).
    pub extra: Option<Vec<u8>>,
    /// Leaf index.
    pub index: u64,
    /// Inclusion proof hashes.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: Note,
}

impl TlogProof {
    /// Serialises the proof.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = format!("{PROOF_HEADER}\n");
        if let Some(e) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(e)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint.to_string());
        s
    }

    /// Parses a proof strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "tlog proof";
        if bytes.len() > crate::note::MAX_NOTE_LEN + 64 * 64 + 1024 * 1024 {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: crate::note::MAX_NOTE_LEN,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Syntax {
            what: WHAT,
            detail: "not utf-8",
        })?;
        let (head, note) = s.split_once("\n\n").ok_or(DecodeError::Syntax {
            what: WHAT,
            detail: "no checkpoint",
        })?;
        let mut lines = head.split('\n');
        if lines.next() != Some(PROOF_HEADER) {
            return Err(DecodeError::Syntax {
                what: WHAT,
                detail: "missing c2sp.org/tlog-proof@v1 header",
            });
        }
        let mut line = lines.next();
        let mut extra = None;
        if let Some(e) = line.and_then(|l| l.strip_prefix("extra ")) {
            extra = Some(B64.decode(e).map_err(|_| DecodeError::Base64)?);
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .and_then(parse_decimal)
            .ok_or(DecodeError::Syntax {
                what: WHAT,
                detail: "missing or invalid index line",
            })?;
        let mut hashes = Vec::new();
        for l in lines {
            let h = B64.decode(l).map_err(|_| DecodeError::Base64)?;
            hashes.push(
                Hash::try_from(h.as_slice()).map_err(|_| DecodeError::Length {
                    expected: 32,
                    found: h.len(),
                })?,
            );
            if hashes.len() > MAX_PROOF_HASHES {
                return Err(DecodeError::Syntax {
                    what: WHAT,
                    detail: "too many hashes",
                });
            }
        }
        let checkpoint = Note::parse(note.as_bytes())?;
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    #[test]
    fn export_tokens_survive_any_surrounding_text() {
        let note = "o\n3\nabc=\n\n\u{2014} o/epoch/1 xyz+/=\n";
        let text = format!(
            "<110>1 - - - [x a=\"b\"] {} and a later {} trailing",
            export_token("older"),
            export_token(note)
        );
        assert_eq!(
            find_export_token(text.as_bytes()),
            Some(note.as_bytes().to_vec())
        );
        assert_eq!(find_export_token(b"no token here"), None);
        assert_eq!(find_export_token(b"warden-checkpoint:!"), Some(Vec::new()));
    }

    #[test]
    fn checkpoint_round_trip_and_signatures() {
        for alg in [SigAlg::MlDsa44, SigAlg::MlDsa65] {
            let key = SigningKey::from_seed(alg, Zeroizing::new([1; 32])).unwrap();
            let other = SigningKey::from_seed(alg, Zeroizing::new([2; 32])).unwrap();
            let cp = Checkpoint {
                origin: "example.com/log".into(),
                size: 42,
                root: [7; 32],
            };
            let name = epoch_key_name("example.com/log", 3);
            let note = sign_checkpoint(&cp, &name, &key, 1_700_000_000).unwrap();
            let back = Note::parse(note.to_string().as_bytes()).unwrap();
            let v =
                verify_checkpoint(&back, &name, &key.verifying_key(), "example.com/log").unwrap();
            assert_eq!(*v, cp);
            assert!(
                verify_checkpoint(&back, &name, &other.verifying_key(), "example.com/log").is_err()
            );
            assert!(
                verify_checkpoint(
                    &back,
                    "example.com/log/epoch/4",
                    &key.verifying_key(),
                    "example.com/log"
                )
                .is_err()
            );
            assert!(verify_checkpoint(&back, &name, &key.verifying_key(), "other").is_err());
        }
    }

    #[test]
    fn checkpoint_text_is_strict() {
        assert!(
            Checkpoint::from_text("o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").is_err()
        );
        assert!(Checkpoint::from_text("o\n1\nAAAA\n").is_err());
        assert!(
            Checkpoint::from_text("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n")
                .is_err()
        );
        assert!(
            Checkpoint::from_text("o o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
                .is_err()
        );
        let ok =
            Checkpoint::from_text("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
        assert_eq!(ok.size, 1);
    }

    #[test]
    fn proof_round_trip() {
        let key = SigningKey::from_seed(SigAlg::MlDsa65, Zeroizing::new([1; 32])).unwrap();
        let cp = Checkpoint {
            origin: "o".into(),
            size: 2,
            root: [7; 32],
        };
        let note = sign_checkpoint(&cp, "o/epoch/0", &key, 0).unwrap();
        let p = TlogProof {
            extra: Some(b"line".to_vec()),
            index: 1,
            hashes: vec![[3; 32]],
            checkpoint: note,
        };
        assert_eq!(TlogProof::parse(p.to_text().as_bytes()).unwrap(), p);
        assert!(TlogProof::parse(b"c2sp.org/tlog-proof@v1\nindex 01\n\n").is_err());
    }
}
