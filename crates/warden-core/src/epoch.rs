//! The key schedule: root-signed epoch certificates, `key.rotation` records carrying
//! the epoch's data key wrapped to every auditor, and the writer-side epoch state.

use crate::Verified;
use crate::crypto::{
    self, DataKey, RecipientPublicKey, RecipientSecretKey, Seed, SigAlg, SigningKey, VerifyingKey,
    WrappedKey,
};
use crate::error::{CryptoError, DecodeError};
use crate::time::Timestamp;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Largest accepted rotation record (base64 text).
pub const MAX_ROTATION_LEN: usize = 512 * 1024;

/// The log's trust anchor: origin and root public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootPublic {
    /// Log origin.
    pub origin: String,
    /// Root ML-DSA public key.
    pub key: VerifyingKey,
}

/// An epoch certificate, signed by the root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochCert {
    pub origin: String,
    pub epoch: u64,
    pub alg: String,
    pub public_key: String,
    pub not_before: String,
    pub not_after: String,
}

impl EpochCert {
    fn message(&self) -> Result<Vec<u8>, DecodeError> {
        let mut m = b"warden-epoch-certificate-v1\n".to_vec();
        serde_json::to_writer(&mut m, self).map_err(|e| DecodeError::Json {
            what: "epoch certificate",
            detail: e.to_string(),
        })?;
        Ok(m)
    }
}

/// Which epoch a rotation closes and at what tree size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    pub epoch: u64,
    pub size: u64,
}

/// A wrapped data key, as stored in a rotation record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapRecord {
    pub recipient: String,
    pub kem_ct: String,
    pub eph: String,
    pub ct: String,
}

impl WrapRecord {
    /// The stored form of `w`.
    #[must_use]
    pub fn from_wrapped(w: &WrappedKey) -> Self {
        Self {
            recipient: w.recipient.clone(),
            kem_ct: B64.encode(&w.kem_ct),
            eph: B64.encode(w.eph),
            ct: B64.encode(&w.ct),
        }
    }

    /// The wrapped key this record stores.
    pub fn to_wrapped(&self) -> Result<WrappedKey, DecodeError> {
        let eph = B64.decode(&self.eph).map_err(|_| DecodeError::Base64)?;
        Ok(WrappedKey {
            recipient: self.recipient.clone(),
            kem_ct: B64.decode(&self.kem_ct).map_err(|_| DecodeError::Base64)?,
            eph: <[u8; 32]>::try_from(eph.as_slice()).map_err(|_| DecodeError::Length {
                expected: 32,
                found: eph.len(),
            })?,
            ct: B64.decode(&self.ct).map_err(|_| DecodeError::Base64)?,
        })
    }
}

/// The public payload of a `key.rotation` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationRecord {
    pub cert: EpochCert,
    pub signature: String,
    /// Why the epoch started: `start`, `interval`, or `recovery`.
    pub reason: String,
    pub closes: Option<Closure>,
    pub wraps: Vec<WrapRecord>,
}

/// Why a rotation record was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EpochError {
    #[error("malformed rotation record: {0}")]
    Malformed(#[from] DecodeError),
    #[error("epoch certificate signature does not verify against the root key")]
    BadSignature,
    #[error("epoch certificate is for origin {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("invalid epoch certificate: {0}")]
    Invalid(&'static str),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

/// A verified epoch: its number, public key and validity window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochInfo {
    pub epoch: u64,
    pub key: VerifyingKey,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

fn wrap_context(origin: &str, epoch: u64) -> Vec<u8> {
    format!("warden-epoch-data-key-v1\n{origin}\n{epoch}").into_bytes()
}

impl RotationRecord {
    /// Encodes the record as base64 of its JSON, the form stored in the entry header.
    pub fn encode(&self) -> Result<String, DecodeError> {
        let j = serde_json::to_vec(self).map_err(|e| DecodeError::Json {
            what: "rotation record",
            detail: e.to_string(),
        })?;
        Ok(B64.encode(j))
    }

    /// Decodes the header form.
    pub fn decode(b64: &str) -> Result<Self, DecodeError> {
        if b64.len() > MAX_ROTATION_LEN {
            return Err(DecodeError::TooLarge {
                size: b64.len(),
                limit: MAX_ROTATION_LEN,
            });
        }
        let j = B64.decode(b64).map_err(|_| DecodeError::Base64)?;
        serde_json::from_slice(&j).map_err(|e| DecodeError::Json {
            what: "rotation record",
            detail: e.to_string(),
        })
    }

    /// Verifies the certificate against the root key.
    pub fn verify(&self, root: &RootPublic) -> Result<Verified<EpochInfo>, EpochError> {
        let c = &self.cert;
        if c.origin != root.origin {
            return Err(EpochError::WrongOrigin {
                expected: root.origin.clone(),
                found: c.origin.clone(),
            });
        }
        let sig = B64
            .decode(&self.signature)
            .map_err(|_| DecodeError::Base64)?;
        root.key
            .verify(&c.message()?, &sig)
            .map_err(|_| EpochError::BadSignature)?;
        let alg = SigAlg::parse(&c.alg)?;
        let pk = B64.decode(&c.public_key).map_err(|_| DecodeError::Base64)?;
        let key = VerifyingKey::from_bytes(alg, &pk)?;
        let not_before = Timestamp::parse(c.not_before.as_bytes())?;
        let not_after = Timestamp::parse(c.not_after.as_bytes())?;
        if not_after <= not_before {
            return Err(EpochError::Invalid("validity window ends before it starts"));
        }
        Ok(Verified::new(EpochInfo {
            epoch: c.epoch,
            key,
            not_before,
            not_after,
        }))
    }

    /// The epoch and key the certificate names, unverified: for work done ahead that
    /// is used only once [`RotationRecord::verify`] has given the same key.
    pub fn claimed_key(&self) -> Result<(u64, VerifyingKey), EpochError> {
        let c = &self.cert;
        let pk = B64.decode(&c.public_key).map_err(|_| DecodeError::Base64)?;
        Ok((
            c.epoch,
            VerifyingKey::from_bytes(SigAlg::parse(&c.alg)?, &pk)?,
        ))
    }

    /// Unwraps the epoch's data key for `auditor`; `Ok(None)` if it was not wrapped to them.
    pub fn unwrap_data_key(
        &self,
        auditor: &RecipientSecretKey,
    ) -> Result<Option<DataKey>, EpochError> {
        unwrap_for(
            &self.wraps,
            auditor,
            &wrap_context(&self.cert.origin, self.cert.epoch),
        )
    }
}

/// The key among `wraps` wrapped to `auditor` under `context`; `Ok(None)` when none of
/// them is.
pub fn unwrap_for(
    wraps: &[WrapRecord],
    auditor: &RecipientSecretKey,
    context: &[u8],
) -> Result<Option<DataKey>, EpochError> {
    let id = auditor.public().id();
    let Some(w) = wraps.iter().find(|w| w.recipient == id) else {
        return Ok(None);
    };
    let secret = crypto::unwrap(&w.to_wrapped()?, auditor, context)?;
    Ok(Some(DataKey::new(secret)?))
}

/// The writer's secrets for one epoch. Dropping it zeroizes the seed and data key.
#[derive(Debug)]
pub struct EpochKeys {
    pub epoch: u64,
    /// Shared with the ledger's signing thread; zeroized when the last holder drops it.
    pub signer: std::sync::Arc<SigningKey>,
    pub data: DataKey,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub key_name: String,
    next_nonce: u64,
}

impl EpochKeys {
    /// The next nonce: four zero bytes and a big-endian counter that never repeats
    /// within the epoch, even when a write fails.
    pub fn next_nonce(&mut self) -> [u8; 12] {
        let n = nonce_from_counter(self.next_nonce);
        self.next_nonce += 1;
        n
    }

    /// Reserves `n` consecutive nonce counters (for sealing a batch on several threads)
    /// and returns the first; build each nonce with [`nonce_from_counter`].
    pub fn reserve_nonces(&mut self, n: u64) -> u64 {
        let first = self.next_nonce;
        self.next_nonce = self.next_nonce.saturating_add(n);
        first
    }
}

/// The nonce with counter `counter`: four zero bytes, then the counter big-endian.
#[must_use]
pub fn nonce_from_counter(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// Extracts the counter from a nonce built by [`EpochKeys::next_nonce`].
#[must_use]
pub fn nonce_counter(nonce: &[u8; 12]) -> Option<u64> {
    let (prefix, ctr) = nonce.split_at(4);
    if prefix != [0, 0, 0, 0] {
        return None;
    }
    Some(u64::from_be_bytes(<[u8; 8]>::try_from(ctr).ok()?))
}

/// Fresh secrets for a new epoch, generated by the caller.
#[derive(Debug)]
pub struct EpochSecrets {
    pub signing_seed: Seed,
    pub data_key: Zeroizing<[u8; 32]>,
    /// One ephemeral X25519 seed per recipient.
    pub ephemeral: Vec<Seed>,
}

/// Parameters of a new epoch.
#[derive(Debug)]
pub struct EpochParams<'a> {
    pub origin: &'a str,
    pub epoch: u64,
    pub alg: SigAlg,
    pub not_before: Timestamp,
    pub interval_micros: u64,
    pub recipients: &'a [RecipientPublicKey],
    pub closes: Option<Closure>,
    pub reason: &'a str,
}

/// Starts an epoch: derives its keys, signs its certificate with the root key and wraps
/// its data key to every recipient. Returns the secrets and the rotation record.
pub fn start_epoch(
    root: &SigningKey,
    p: &EpochParams<'_>,
    secrets: EpochSecrets,
) -> Result<(EpochKeys, RotationRecord), EpochError> {
    if p.interval_micros == 0 {
        return Err(EpochError::Invalid("rotation interval must be positive"));
    }
    if secrets.ephemeral.len() < p.recipients.len() {
        return Err(EpochError::Invalid(
            "one ephemeral seed per recipient is required",
        ));
    }
    let signer = SigningKey::from_seed(p.alg, secrets.signing_seed)?;
    let not_after = p.not_before.saturating_add_micros(p.interval_micros);
    let cert = EpochCert {
        origin: p.origin.to_owned(),
        epoch: p.epoch,
        alg: p.alg.name().to_owned(),
        public_key: B64.encode(signer.verifying_key().as_bytes()),
        not_before: p.not_before.to_string(),
        not_after: not_after.to_string(),
    };
    let signature = B64.encode(root.sign(&cert.message()?)?);
    let ctx = wrap_context(p.origin, p.epoch);
    let wraps = p
        .recipients
        .iter()
        .zip(secrets.ephemeral.iter())
        .map(|(r, eph)| {
            crypto::wrap(&secrets.data_key, r, eph, &ctx).map(|w| WrapRecord::from_wrapped(&w))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = DataKey::new(secrets.data_key)?;
    let record = RotationRecord {
        cert,
        signature,
        reason: p.reason.to_owned(),
        closes: p.closes,
        wraps,
    };
    let keys = EpochKeys {
        epoch: p.epoch,
        signer: std::sync::Arc::new(signer),
        data,
        not_before: p.not_before,
        not_after,
        key_name: crate::checkpoint::epoch_key_name(p.origin, p.epoch),
        next_nonce: 0,
    };
    Ok((keys, record))
}
