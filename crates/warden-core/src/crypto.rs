//! Thin, typed wrappers over `aws-lc-rs`: ML-DSA signing keys, ChaCha20-Poly1305 data
//! keys, and hybrid ML-KEM-768 + X25519 key wrapping to recipients (auditors).
//!
//! Secrets live in [`zeroize`] containers. Keys are built from seeds passed in by the
//! caller; the exceptions are ML-KEM encapsulation and ML-DSA hedged signing, whose
//! randomness comes from the provider's DRBG (the provider exposes no other way).

use crate::error::CryptoError;
use crate::merkle::sha256;
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::signature::{self, KeyPair as _, PqdsaKeyPair};
use aws_lc_rs::{agreement, hkdf, kem};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// An ML-DSA parameter set (FIPS 204).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigAlg {
    /// ML-DSA-44; checkpoints use the C2SP signed-note type 0x06 (`subtree/v1`) form.
    MlDsa44,
    /// ML-DSA-65, the default.
    MlDsa65,
}

impl SigAlg {
    /// The name used in files and certificates.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::MlDsa44 => "ML-DSA-44",
            Self::MlDsa65 => "ML-DSA-65",
        }
    }

    /// Parses [`SigAlg::name`] (case-insensitive, with or without dashes).
    pub fn parse(name: &str) -> Result<Self, CryptoError> {
        let n: String = name.chars().filter(|c| *c != '-' && *c != '_').collect();
        match n.to_ascii_lowercase().as_str() {
            "mldsa44" => Ok(Self::MlDsa44),
            "mldsa65" => Ok(Self::MlDsa65),
            _ => Err(CryptoError::UnsupportedAlgorithm {
                name: name.to_owned(),
            }),
        }
    }

    /// Signature length in bytes.
    #[must_use]
    pub fn signature_len(self) -> usize {
        match self {
            Self::MlDsa44 => 2420,
            Self::MlDsa65 => 3309,
        }
    }

    /// Public key length in bytes.
    #[must_use]
    pub fn public_key_len(self) -> usize {
        match self {
            Self::MlDsa44 => 1312,
            Self::MlDsa65 => 1952,
        }
    }

    fn signing(self) -> &'static signature::PqdsaSigningAlgorithm {
        match self {
            Self::MlDsa44 => &signature::ML_DSA_44_SIGNING,
            Self::MlDsa65 => &signature::ML_DSA_65_SIGNING,
        }
    }

    fn verification(self) -> &'static signature::PqdsaVerificationAlgorithm {
        match self {
            Self::MlDsa44 => &signature::ML_DSA_44,
            Self::MlDsa65 => &signature::ML_DSA_65,
        }
    }
}

/// A 32-byte secret seed (ML-DSA key generation, X25519 private keys).
pub type Seed = Zeroizing<[u8; 32]>;

/// An ML-DSA private key, built from its 32-byte seed (FIPS 204 ξ).
pub struct SigningKey {
    alg: SigAlg,
    seed: Seed,
    pair: PqdsaKeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Derives the key pair from `seed`.
    pub fn from_seed(alg: SigAlg, seed: Seed) -> Result<Self, CryptoError> {
        let pair = PqdsaKeyPair::from_seed(alg.signing(), seed.as_slice()).map_err(|_| {
            CryptoError::BadKey {
                what: "ML-DSA seed",
            }
        })?;
        Ok(Self { alg, seed, pair })
    }

    /// The parameter set.
    #[must_use]
    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    /// The seed, for sealing it at rest. Handle with care.
    #[must_use]
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public half.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            alg: self.alg,
            bytes: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `msg` (pure ML-DSA, empty context).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut sig = vec![0u8; self.alg.signature_len()];
        let n = self
            .pair
            .sign(msg, &mut sig)
            .map_err(|_| CryptoError::Provider {
                what: "ML-DSA signing",
            })?;
        sig.truncate(n);
        Ok(sig)
    }
}

/// An ML-DSA public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    alg: SigAlg,
    bytes: Vec<u8>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VerifyingKey({}, {})",
            self.alg.name(),
            crate::hex::encode(&sha256(&self.bytes)[..8])
        )
    }
}

impl VerifyingKey {
    /// From raw public key bytes.
    pub fn from_bytes(alg: SigAlg, bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != alg.public_key_len() {
            return Err(CryptoError::BadKey {
                what: "ML-DSA public",
            });
        }
        Ok(Self {
            alg,
            bytes: bytes.to_vec(),
        })
    }

    /// The parameter set.
    #[must_use]
    pub fn alg(&self) -> SigAlg {
        self.alg
    }

    /// Raw public key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Verifies `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        signature::UnparsedPublicKey::new(self.alg.verification(), &self.bytes)
            .verify(msg, sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// Length of a ChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// A 256-bit ChaCha20-Poly1305 key.
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
    key: LessSafeKey,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// From 32 secret bytes.
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&aead::CHACHA20_POLY1305, bytes.as_slice())
            .map_err(|_| CryptoError::BadKey { what: "data" })?;
        Ok(Self {
            bytes,
            key: LessSafeKey::new(unbound),
        })
    }

    /// The raw key, for wrapping it to recipients.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Provider { what: "sealing" })
    }

    /// Decrypts `buf` (ciphertext || tag) in place; on success `buf` holds the plaintext.
    pub fn open_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let n = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(n);
        Ok(())
    }
}

const MLKEM768_EK_LEN: usize = 1184;
const X25519_LEN: usize = 32;

/// A recipient's public key: ML-KEM-768 encapsulation key and X25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientPublicKey {
    mlkem: Vec<u8>,
    x25519: [u8; 32],
}

impl fmt::Debug for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientPublicKey({})", self.id())
    }
}

impl RecipientPublicKey {
    /// From the two raw public keys.
    pub fn from_parts(mlkem: &[u8], x25519: &[u8]) -> Result<Self, CryptoError> {
        if mlkem.len() != MLKEM768_EK_LEN {
            return Err(CryptoError::BadKey {
                what: "ML-KEM-768 public",
            });
        }
        kem::EncapsulationKey::new(&kem::ML_KEM_768, mlkem).map_err(|_| CryptoError::BadKey {
            what: "ML-KEM-768 public",
        })?;
        let x25519 = <[u8; 32]>::try_from(x25519).map_err(|_| CryptoError::BadKey {
            what: "X25519 public",
        })?;
        Ok(Self {
            mlkem: mlkem.to_vec(),
            x25519,
        })
    }

    /// Raw ML-KEM-768 encapsulation key.
    #[must_use]
    pub fn mlkem(&self) -> &[u8] {
        &self.mlkem
    }

    /// Raw X25519 public key.
    #[must_use]
    pub fn x25519(&self) -> &[u8; 32] {
        &self.x25519
    }

    /// A short stable identifier: the first 8 bytes of SHA-256 over both keys, in hex.
    #[must_use]
    pub fn id(&self) -> String {
        let mut m = Vec::with_capacity(24 + self.mlkem.len() + X25519_LEN);
        m.extend_from_slice(b"warden-recipient-v1\n");
        m.extend_from_slice(&self.mlkem);
        m.extend_from_slice(&self.x25519);
        crate::hex::encode(sha256(&m).get(..8).unwrap_or_default())
    }
}

/// A recipient's private key.
pub struct RecipientSecretKey {
    mlkem_dk: Zeroizing<Vec<u8>>,
    x25519: Seed,
    public: RecipientPublicKey,
}

impl fmt::Debug for RecipientSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientSecretKey({})", self.public.id())
    }
}

impl RecipientSecretKey {
    /// Generates a fresh key pair; `x25519_seed` is the X25519 private key.
    pub fn generate(x25519_seed: Seed) -> Result<Self, CryptoError> {
        let dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).map_err(|_| {
            CryptoError::Provider {
                what: "ML-KEM key generation",
            }
        })?;
        let dk_bytes = dk.key_bytes().map_err(|_| CryptoError::Provider {
            what: "ML-KEM key export",
        })?;
        let ek = dk
            .encapsulation_key()
            .and_then(|e| e.key_bytes())
            .map_err(|_| CryptoError::Provider {
                what: "ML-KEM key export",
            })?;
        Self::from_parts(dk_bytes.as_ref(), ek.as_ref(), x25519_seed)
    }

    /// From a raw ML-KEM-768 decapsulation key, its encapsulation key, and an X25519
    /// private key. The two ML-KEM halves are checked to belong together.
    pub fn from_parts(mlkem_dk: &[u8], mlkem_ek: &[u8], x25519: Seed) -> Result<Self, CryptoError> {
        let bad = CryptoError::BadKey {
            what: "ML-KEM-768 private",
        };
        let dk = kem::DecapsulationKey::new(&kem::ML_KEM_768, mlkem_dk).map_err(|_| bad.clone())?;
        let ek = kem::EncapsulationKey::new(&kem::ML_KEM_768, mlkem_ek).map_err(|_| {
            CryptoError::BadKey {
                what: "ML-KEM-768 public",
            }
        })?;
        let (ct, ss) = ek.encapsulate().map_err(|_| bad.clone())?;
        let ss2 = dk.decapsulate(ct).map_err(|_| bad.clone())?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(ss.as_ref(), ss2.as_ref()).is_err() {
            return Err(bad);
        }
        let ek = mlkem_ek;
        let xpriv = agreement::PrivateKey::from_private_key(&agreement::X25519, x25519.as_slice())
            .map_err(|_| CryptoError::BadKey {
                what: "X25519 private",
            })?;
        let xpub = xpriv
            .compute_public_key()
            .map_err(|_| CryptoError::BadKey {
                what: "X25519 private",
            })?;
        let public = RecipientPublicKey::from_parts(ek, xpub.as_ref())?;
        Ok(Self {
            mlkem_dk: Zeroizing::new(mlkem_dk.to_vec()),
            x25519,
            public,
        })
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> &RecipientPublicKey {
        &self.public
    }

    /// Raw ML-KEM decapsulation key, for storing it. Handle with care.
    #[must_use]
    pub fn mlkem_secret(&self) -> &[u8] {
        &self.mlkem_dk
    }

    /// Raw X25519 private key, for storing it. Handle with care.
    #[must_use]
    pub fn x25519_secret(&self) -> &[u8; 32] {
        &self.x25519
    }
}

/// A 32-byte secret wrapped to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// Recipient id ([`RecipientPublicKey::id`]).
    pub recipient: String,
    /// ML-KEM-768 ciphertext.
    pub kem_ct: Vec<u8>,
    /// Ephemeral X25519 public key.
    pub eph: [u8; 32],
    /// ChaCha20-Poly1305 ciphertext of the secret under the derived key.
    pub ct: Vec<u8>,
}

fn x25519_shared(private: &[u8; 32], peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let sk =
        agreement::PrivateKey::from_private_key(&agreement::X25519, private).map_err(|_| {
            CryptoError::BadKey {
                what: "X25519 private",
            }
        })?;
    agreement::agree(
        &sk,
        agreement::UnparsedPublicKey::new(&agreement::X25519, peer),
        CryptoError::BadKey {
            what: "X25519 public",
        },
        |ss| {
            let mut out = Zeroizing::new([0u8; 32]);
            if ss.len() != 32 {
                return Err(CryptoError::BadKey {
                    what: "X25519 public",
                });
            }
            out.copy_from_slice(ss);
            Ok(out)
        },
    )
}

fn kek(
    kem_ss: &[u8],
    x_ss: &[u8; 32],
    context: &[u8],
    kem_ct: &[u8],
    eph: &[u8; 32],
    recipient: &RecipientPublicKey,
) -> Result<DataKey, CryptoError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(kem_ss);
    ikm.extend_from_slice(x_ss);
    let ek_hash = sha256(&recipient.mlkem);
    let info: [&[u8]; 7] = [
        b"warden-hybrid-wrap-v1\n",
        &(context.len() as u64).to_be_bytes(),
        context,
        kem_ct,
        eph,
        &recipient.x25519,
        &ek_hash,
    ];
    hkdf_key(&ikm, &info)
}

/// HKDF-SHA256 (empty salt) of `ikm` with `info`, as a data key.
fn hkdf_key(ikm: &[u8], info: &[&[u8]]) -> Result<DataKey, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"").extract(ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    prk.expand(info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut_slice()))
        .map_err(|_| CryptoError::Provider {
            what: "key derivation",
        })?;
    DataKey::new(out)
}

/// A key for one purpose derived from a 32-byte secret seed: HKDF-SHA256 with
/// `warden-derived-key-v1\n` and `purpose` as its info, so keys for different purposes
/// (and the seed's own use) are independent. Whoever holds the seed can derive it
/// again, so nothing more is stored.
pub fn derive_key(seed: &[u8; 32], purpose: &[u8]) -> Result<DataKey, CryptoError> {
    hkdf_key(seed, &[b"warden-derived-key-v1\n", purpose])
}

/// Wraps `secret` to `recipient` under hybrid ML-KEM-768 + X25519: the wrapping key is
/// HKDF-SHA256 over both shared secrets, bound to `context`, the KEM ciphertext, the
/// ephemeral key and the recipient; it is used once, so the nonce is zero.
pub fn wrap(
    secret: &[u8; 32],
    recipient: &RecipientPublicKey,
    eph_seed: &Seed,
    context: &[u8],
) -> Result<WrappedKey, CryptoError> {
    let ek = kem::EncapsulationKey::new(&kem::ML_KEM_768, &recipient.mlkem).map_err(|_| {
        CryptoError::BadKey {
            what: "ML-KEM-768 public",
        }
    })?;
    let (kem_ct, kem_ss) = ek.encapsulate().map_err(|_| CryptoError::Provider {
        what: "ML-KEM encapsulation",
    })?;
    let eph_sk = agreement::PrivateKey::from_private_key(&agreement::X25519, eph_seed.as_slice())
        .map_err(|_| CryptoError::BadKey {
        what: "X25519 private",
    })?;
    let eph_pub = eph_sk
        .compute_public_key()
        .map_err(|_| CryptoError::BadKey {
            what: "X25519 private",
        })?;
    let eph = <[u8; 32]>::try_from(eph_pub.as_ref()).map_err(|_| CryptoError::BadKey {
        what: "X25519 public",
    })?;
    let x_ss = x25519_shared(eph_seed, &recipient.x25519)?;
    let key = kek(
        kem_ss.as_ref(),
        &x_ss,
        context,
        kem_ct.as_ref(),
        &eph,
        recipient,
    )?;
    let mut ct = secret.to_vec();
    key.seal_in_place([0u8; NONCE_LEN], context, &mut ct)?;
    Ok(WrappedKey {
        recipient: recipient.id(),
        kem_ct: kem_ct.as_ref().to_vec(),
        eph,
        ct,
    })
}

/// Unwraps a [`WrappedKey`] with the recipient's secret key.
pub fn unwrap(
    wrapped: &WrappedKey,
    sk: &RecipientSecretKey,
    context: &[u8],
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let dk = kem::DecapsulationKey::new(&kem::ML_KEM_768, &sk.mlkem_dk).map_err(|_| {
        CryptoError::BadKey {
            what: "ML-KEM-768 private",
        }
    })?;
    let kem_ss = dk
        .decapsulate(kem::Ciphertext::from(wrapped.kem_ct.as_slice()))
        .map_err(|_| CryptoError::Decrypt)?;
    let x_ss = x25519_shared(&sk.x25519, &wrapped.eph)?;
    let key = kek(
        kem_ss.as_ref(),
        &x_ss,
        context,
        &wrapped.kem_ct,
        &wrapped.eph,
        &sk.public,
    )?;
    let mut buf = wrapped.ct.clone();
    key.open_in_place([0u8; NONCE_LEN], context, &mut buf)?;
    let out = <[u8; 32]>::try_from(buf.as_slice()).map_err(|_| CryptoError::Decrypt);
    buf.zeroize();
    out.map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(b: u8) -> Seed {
        Zeroizing::new([b; 32])
    }

    #[test]
    fn mldsa_sign_verify_both_levels() {
        for alg in [SigAlg::MlDsa44, SigAlg::MlDsa65] {
            let sk = SigningKey::from_seed(alg, seed(7)).unwrap();
            let vk = sk.verifying_key();
            assert_eq!(vk.as_bytes().len(), alg.public_key_len());
            let sig = sk.sign(b"hello").unwrap();
            assert_eq!(sig.len(), alg.signature_len());
            vk.verify(b"hello", &sig).unwrap();
            assert_eq!(vk.verify(b"hellp", &sig), Err(CryptoError::BadSignature));
            // Same seed, same key: keys can be re-derived from the sealed seed.
            assert_eq!(
                SigningKey::from_seed(alg, seed(7)).unwrap().verifying_key(),
                vk
            );
        }
    }

    #[test]
    fn aead_binds_header() {
        let k = DataKey::new(Zeroizing::new([1u8; 32])).unwrap();
        let mut buf = b"secret".to_vec();
        k.seal_in_place([0; 12], b"hdr", &mut buf).unwrap();
        let mut c = buf.clone();
        assert!(k.open_in_place([0; 12], b"hdx", &mut c).is_err());
        k.open_in_place([0; 12], b"hdr", &mut buf).unwrap();
        assert_eq!(buf, b"secret");
    }

    #[test]
    fn hybrid_wrap_round_trip_and_wrong_recipient() {
        let alice = RecipientSecretKey::generate(seed(3)).unwrap();
        let bob = RecipientSecretKey::generate(seed(4)).unwrap();
        let secret = [9u8; 32];
        let w = wrap(&secret, alice.public(), &seed(5), b"ctx").unwrap();
        assert_eq!(*unwrap(&w, &alice, b"ctx").unwrap(), secret);
        assert!(unwrap(&w, &alice, b"other").is_err());
        assert!(unwrap(&w, &bob, b"ctx").is_err());
        let again =
            RecipientSecretKey::from_parts(alice.mlkem_secret(), alice.public().mlkem(), seed(3))
                .unwrap();
        assert_eq!(again.public(), alice.public());
        assert!(
            RecipientSecretKey::from_parts(alice.mlkem_secret(), bob.public().mlkem(), seed(3))
                .is_err()
        );
    }
}
