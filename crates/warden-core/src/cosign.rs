//! Checkpoint cosignatures (`c2sp.org/tlog-cosignature`) and verifier keys
//! (`c2sp.org/signed-note`, "vkeys"): what a witness signs, how its signature line is
//! encoded, and how a log or an auditor checks one.
//!
//! Two cosignature types:
//! - **ML-DSA-44** (type `0x06`, `subtree/v1`): a binary message that commits to the
//!   cosigner's name, the timestamp, the log's origin, the range `[start, end)` and the
//!   root hash. Post-quantum; what Warden's witnesses use first.
//! - **Ed25519** (type `0x04`, `cosignature/v1`): the text `cosignature/v1\ntime T\n`
//!   followed by the checkpoint body. What existing witness networks speak.
//!
//! Both encode the signature as `timestamp (u64, big-endian) || signature` after the
//! four-byte key ID, and both key IDs are the first four bytes of
//! `SHA-256(name || "\n" || type || public key)`.
//!
//! Plain Ed25519 note signatures (type `0x01`) verify here too, so a vkey from the
//! specification's examples can be checked end to end.

use crate::checkpoint::Checkpoint;
pub use crate::checkpoint::subtree_v1_message;
use crate::crypto::{SigAlg, SigningKey, VerifyingKey};
use crate::error::{CryptoError, DecodeError};
use crate::note::{NoteSignature, key_id, valid_key_name};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

/// Signature type byte of a plain Ed25519 note signature.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type byte of a timestamped Ed25519 checkpoint cosignature.
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;
/// Signature type byte of a timestamped ML-DSA-44 (sub)tree cosignature.
pub const TYPE_SUBTREE_V1: u8 = 0x06;

const ED25519_PUBLIC_LEN: usize = 32;
const ED25519_SIG_LEN: usize = 64;
/// Longest cosigner name or origin the binary message can carry.
const MAX_NAME: usize = 255;

/// What a verifier key's signatures are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Plain Ed25519 over the note text (`0x01`).
    Ed25519,
    /// Ed25519 `cosignature/v1` (`0x04`).
    CosignatureV1,
    /// ML-DSA-44 `subtree/v1` (`0x06`).
    SubtreeV1,
}

impl KeyType {
    /// The signature type byte.
    #[must_use]
    pub fn byte(self) -> u8 {
        match self {
            Self::Ed25519 => TYPE_ED25519,
            Self::CosignatureV1 => TYPE_COSIGNATURE_V1,
            Self::SubtreeV1 => TYPE_SUBTREE_V1,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            TYPE_ED25519 => Some(Self::Ed25519),
            TYPE_COSIGNATURE_V1 => Some(Self::CosignatureV1),
            TYPE_SUBTREE_V1 => Some(Self::SubtreeV1),
            _ => None,
        }
    }

    fn public_len(self) -> usize {
        match self {
            Self::Ed25519 | Self::CosignatureV1 => ED25519_PUBLIC_LEN,
            Self::SubtreeV1 => SigAlg::MlDsa44.public_key_len(),
        }
    }

    fn signature_len(self) -> usize {
        match self {
            Self::Ed25519 | Self::CosignatureV1 => ED25519_SIG_LEN,
            Self::SubtreeV1 => SigAlg::MlDsa44.signature_len(),
        }
    }
}

/// A verifier key: a name, a signature type and public key bytes. Its text form is
/// `<name>+<hex key ID>+<base64(type || public key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    kind: KeyType,
    public: Vec<u8>,
}

fn bad(detail: &'static str) -> DecodeError {
    DecodeError::Syntax {
        what: "verifier key",
        detail,
    }
}

impl VerifierKey {
    /// A key from its parts; the public key must have the type's length.
    pub fn new(name: &str, kind: KeyType, public: &[u8]) -> Result<Self, DecodeError> {
        if !valid_key_name(name) || name.len() > MAX_NAME {
            return Err(bad("invalid key name"));
        }
        if public.len() != kind.public_len() {
            return Err(DecodeError::Length {
                expected: kind.public_len(),
                found: public.len(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            kind,
            public: public.to_vec(),
        })
    }

    /// Parses the text form, checking that the key ID matches the key.
    pub fn parse(text: &str) -> Result<Self, DecodeError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+keyid+key"));
        };
        if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("key ID must be 8 lowercase hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("key ID must be hex"))?;
        let raw = B64.decode(key).map_err(|_| DecodeError::Base64)?;
        let (&t, public) = raw.split_first().ok_or(bad("empty key"))?;
        let kind = KeyType::from_byte(t).ok_or(bad("unsupported signature type"))?;
        let k = Self::new(name, kind, public)?;
        if k.key_id() != id {
            return Err(bad("key ID does not match the key"));
        }
        Ok(k)
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's signature type.
    #[must_use]
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// The key ID its signature lines carry.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        key_id(&self.name, &[self.kind.byte()], &self.public)
    }

    /// Whether `sig` claims to be by this key (name and key ID).
    #[must_use]
    pub fn names(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id()
    }

    /// Checks a plain Ed25519 note signature over `text` (the note without its
    /// signature lines, final newline included).
    pub fn verify_note(&self, text: &str, sig: &NoteSignature) -> Result<(), CryptoError> {
        if self.kind != KeyType::Ed25519 || !self.names(sig) {
            return Err(CryptoError::BadSignature);
        }
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(text.as_bytes(), &sig.sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Checks a cosignature on the checkpoint whose note text is `text` and returns its
    /// timestamp. The checkpoint body must be the three standard lines (Warden's
    /// checkpoints carry no extension lines).
    pub fn verify_cosignature(&self, text: &str, sig: &NoteSignature) -> Result<u64, CryptoError> {
        if !self.names(sig) {
            return Err(CryptoError::BadSignature);
        }
        let (ts, body) = split_timestamped(&sig.sig).ok_or(CryptoError::BadSignature)?;
        if body.len() != self.kind.signature_len() {
            return Err(CryptoError::BadSignature);
        }
        match self.kind {
            KeyType::Ed25519 => Err(CryptoError::BadSignature),
            KeyType::CosignatureV1 => UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(&cosignature_v1_message(ts, text), body)
                .map_err(|_| CryptoError::BadSignature)
                .map(|()| ts),
            KeyType::SubtreeV1 => {
                let cp = Checkpoint::from_text(text).map_err(|_| CryptoError::BadSignature)?;
                let msg = subtree_v1_message(&self.name, ts, &cp.origin, 0, cp.size, &cp.root)
                    .map_err(|_| CryptoError::BadSignature)?;
                VerifyingKey::from_bytes(SigAlg::MlDsa44, &self.public)?
                    .verify(&msg, body)
                    .map(|()| ts)
            }
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(1 + self.public.len());
        raw.push(self.kind.byte());
        raw.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.key_id(), B64.encode(raw))
    }
}

/// Splits `timestamp || signature`; the timestamp must not exceed 2^63 - 1.
fn split_timestamped(b: &[u8]) -> Option<(u64, &[u8])> {
    let (ts, rest) = b.split_first_chunk::<8>()?;
    let ts = u64::from_be_bytes(*ts);
    (ts <= i64::MAX as u64).then_some((ts, rest))
}

/// The message an Ed25519 `cosignature/v1` signs: two header lines, then the note text.
#[must_use]
pub fn cosignature_v1_message(timestamp: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// A cosigner's private key: ML-DSA-44 or Ed25519, from a 32-byte seed kept in a
/// zeroizing buffer.
#[derive(Debug)]
pub struct Cosigner {
    name: String,
    key: CosignerKey,
}

enum CosignerKey {
    MlDsa44(SigningKey),
    Ed25519 {
        pair: Ed25519KeyPair,
        _seed: Zeroizing<[u8; 32]>,
    },
}

impl std::fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MlDsa44(_) => "MlDsa44(..)",
            Self::Ed25519 { .. } => "Ed25519(..)",
        })
    }
}

impl Cosigner {
    /// A cosigner named `name` whose key is derived from `seed`.
    pub fn from_seed(
        name: &str,
        kind: KeyType,
        seed: Zeroizing<[u8; 32]>,
    ) -> Result<Self, CryptoError> {
        if !valid_key_name(name) || name.len() > MAX_NAME {
            return Err(CryptoError::BadKey {
                what: "cosigner name",
            });
        }
        let key = match kind {
            KeyType::SubtreeV1 => {
                CosignerKey::MlDsa44(SigningKey::from_seed(SigAlg::MlDsa44, seed)?)
            }
            KeyType::CosignatureV1 => CosignerKey::Ed25519 {
                pair: Ed25519KeyPair::from_seed_unchecked(seed.as_slice()).map_err(|_| {
                    CryptoError::BadKey {
                        what: "Ed25519 seed",
                    }
                })?,
                _seed: seed,
            },
            KeyType::Ed25519 => {
                return Err(CryptoError::UnsupportedAlgorithm {
                    name: "plain Ed25519 is not a cosignature".into(),
                });
            }
        };
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// The verifier key others configure to check this cosigner.
    #[must_use]
    pub fn verifier(&self) -> VerifierKey {
        let (kind, public) = match &self.key {
            CosignerKey::MlDsa44(k) => (KeyType::SubtreeV1, k.verifying_key().as_bytes().to_vec()),
            CosignerKey::Ed25519 { pair, .. } => {
                (KeyType::CosignatureV1, pair.public_key().as_ref().to_vec())
            }
        };
        VerifierKey {
            name: self.name.clone(),
            kind,
            public,
        }
    }

    /// Cosigns the checkpoint `cp` at `timestamp` (POSIX seconds, non-zero).
    pub fn cosign(&self, cp: &Checkpoint, timestamp: u64) -> Result<NoteSignature, CryptoError> {
        if timestamp == 0 || timestamp > i64::MAX as u64 {
            return Err(CryptoError::Provider {
                what: "cosigning (timestamp out of range)",
            });
        }
        let sig = match &self.key {
            CosignerKey::MlDsa44(k) => {
                let msg =
                    subtree_v1_message(&self.name, timestamp, &cp.origin, 0, cp.size, &cp.root)
                        .map_err(|_| CryptoError::Provider {
                            what: "cosigning (origin too long)",
                        })?;
                k.sign(&msg)?
            }
            CosignerKey::Ed25519 { pair, .. } => pair
                .sign(&cosignature_v1_message(timestamp, &cp.to_text()))
                .as_ref()
                .to_vec(),
        };
        let mut out = Vec::with_capacity(8 + sig.len());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&sig);
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.verifier().key_id(),
            sig: out,
        })
    }
}

#[cfg(test)]
mod tests;
