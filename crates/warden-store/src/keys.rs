//! Key files: the root key sealed at rest with an Argon2id-derived key, its public half
//! (the verifiers' trust anchor), and recipient (auditor) key pairs. Secret files are
//! created with mode 0600 and secrets are held in zeroizing containers.

use crate::durable::write_new;
use crate::error::{StoreError, io};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::path::Path;
use warden_core::crypto::{
    DataKey, RecipientPublicKey, RecipientSecretKey, Seed, SigAlg, SigningKey, VerifyingKey,
};
use warden_core::epoch::RootPublic;
use zeroize::Zeroizing;

/// Fills a fresh secret from the operating system's CSPRNG (via the crypto provider).
pub fn random_seed() -> Result<Seed, StoreError> {
    let mut s = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(s.as_mut_slice()).map_err(|_| {
        StoreError::Crypto(warden_core::error::CryptoError::Provider {
            what: "random generation",
        })
    })?;
    Ok(s)
}

/// Argon2id parameters for sealing the root key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        // OWASP's second recommended Argon2id profile: 46 MiB, 1 pass... we use more
        // passes with a similar memory cost; about 0.2 s here.
        Self {
            m_kib: 47_104,
            t: 2,
            p: 1,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootKeyFile {
    kind: String,
    origin: String,
    alg: String,
    public_key: String,
    /// True when sealed under the empty development passphrase.
    dev: bool,
    kdf: KdfParams,
    salt: String,
    sealed_seed: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootPublicFile {
    kind: String,
    origin: String,
    alg: String,
    public_key: String,
}

fn kdf(pass: &[u8], salt: &[u8], p: KdfParams) -> Result<DataKey, StoreError> {
    let params = argon2::Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|e| StoreError::Config(format!("argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass, salt, out.as_mut_slice())
        .map_err(|e| StoreError::Config(format!("argon2: {e}")))?;
    Ok(DataKey::new(out)?)
}

fn root_aad(origin: &str, alg: SigAlg, public: &[u8]) -> Vec<u8> {
    let mut a = format!("warden-root-key-v1\n{origin}\n{}\n", alg.name()).into_bytes();
    a.extend_from_slice(public);
    a
}

/// Creates the root key: writes the sealed private key to `key_path` (0600) and the
/// public trust anchor to `pub_path`. `passphrase` empty means development mode.
pub fn create_root(
    key_path: &Path,
    pub_path: &Path,
    origin: &str,
    alg: SigAlg,
    passphrase: &[u8],
    kdf_params: KdfParams,
) -> Result<RootPublic, StoreError> {
    let key = SigningKey::from_seed(alg, random_seed()?)?;
    let vk = key.verifying_key();
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| StoreError::Config("random generation failed".into()))?;
    let kek = kdf(passphrase, &salt, kdf_params)?;
    let mut sealed = key.seed().to_vec();
    kek.seal_in_place([0; 12], &root_aad(origin, alg, vk.as_bytes()), &mut sealed)?;
    let file = RootKeyFile {
        kind: "warden-root-key".into(),
        origin: origin.into(),
        alg: alg.name().into(),
        public_key: B64.encode(vk.as_bytes()),
        dev: passphrase.is_empty(),
        kdf: kdf_params,
        salt: B64.encode(salt),
        sealed_seed: B64.encode(&sealed),
    };
    let pubf = RootPublicFile {
        kind: "warden-root-public".into(),
        origin: origin.into(),
        alg: alg.name().into(),
        public_key: file.public_key.clone(),
    };
    write_new(key_path, &to_json(&file)?, 0o600).map_err(io("create", key_path))?;
    write_new(pub_path, &to_json(&pubf)?, 0o644).map_err(io("create", pub_path))?;
    Ok(RootPublic {
        origin: origin.into(),
        key: vk,
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let mut j = serde_json::to_vec_pretty(v).map_err(|e| StoreError::Config(e.to_string()))?;
    j.push(b'\n');
    Ok(j)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, limit: u64) -> Result<T, StoreError> {
    let meta = std::fs::metadata(path).map_err(io("read", path))?;
    if meta.len() > limit {
        return Err(StoreError::Format {
            path: path.into(),
            detail: format!("larger than {limit} bytes"),
        });
    }
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Format {
        path: path.into(),
        detail: e.to_string(),
    })
}

/// An unlocked root key.
#[derive(Debug)]
pub struct RootKey {
    pub key: SigningKey,
    pub public: RootPublic,
    /// Whether it was sealed under the development passphrase.
    pub dev: bool,
}

impl RootKey {
    /// A second copy of the key (its seed stays in zeroizing memory): a cluster node
    /// keeps the key it unsealed once and hands a copy to each ledger it opens.
    pub fn try_clone(&self) -> Result<Self, StoreError> {
        let seed = zeroize::Zeroizing::new(*self.key.seed());
        Ok(Self {
            key: SigningKey::from_seed(self.key.alg(), seed)
                .map_err(|e| StoreError::Config(format!("root key: {e}")))?,
            public: self.public.clone(),
            dev: self.dev,
        })
    }
}

/// Unseals the root key with `passphrase`.
pub fn unlock_root(path: &Path, passphrase: &[u8]) -> Result<RootKey, StoreError> {
    crate::perms::check_secret_file(path)?;
    let f: RootKeyFile = read_json(path, 64 * 1024)?;
    let bad = |d: &str| StoreError::Format {
        path: path.into(),
        detail: d.into(),
    };
    if f.kind != "warden-root-key" {
        return Err(bad("not a warden root key file"));
    }
    let alg = SigAlg::parse(&f.alg)?;
    let public = B64
        .decode(&f.public_key)
        .map_err(|_| bad("invalid public key"))?;
    let salt = B64.decode(&f.salt).map_err(|_| bad("invalid salt"))?;
    let mut sealed = Zeroizing::new(
        B64.decode(&f.sealed_seed)
            .map_err(|_| bad("invalid sealed key"))?,
    );
    let kek = kdf(passphrase, &salt, f.kdf)?;
    kek.open_in_place([0; 12], &root_aad(&f.origin, alg, &public), &mut sealed)
        .map_err(|_| StoreError::BadPassphrase { path: path.into() })?;
    let seed: Seed = Zeroizing::new(
        <[u8; 32]>::try_from(sealed.as_slice())
            .map_err(|_| bad("sealed key has the wrong length"))?,
    );
    let key = SigningKey::from_seed(alg, seed)?;
    if key.verifying_key().as_bytes() != public.as_slice() {
        return Err(bad("sealed key does not match its public key"));
    }
    let public = RootPublic {
        origin: f.origin,
        key: key.verifying_key(),
    };
    Ok(RootKey {
        key,
        public,
        dev: f.dev,
    })
}

/// Reads a root public key file (the trust anchor).
pub fn read_root_public(path: &Path) -> Result<RootPublic, StoreError> {
    let f: RootPublicFile = read_json(path, 64 * 1024)?;
    let bad = |d: &str| StoreError::Format {
        path: path.into(),
        detail: d.into(),
    };
    if f.kind != "warden-root-public" && f.kind != "warden-root-key" {
        return Err(bad("not a warden root public key"));
    }
    let alg = SigAlg::parse(&f.alg)?;
    let pk = B64
        .decode(&f.public_key)
        .map_err(|_| bad("invalid public key"))?;
    Ok(RootPublic {
        origin: f.origin,
        key: VerifyingKey::from_bytes(alg, &pk)?,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientSecretFile {
    kind: String,
    id: String,
    mlkem_dk: String,
    mlkem_ek: String,
    x25519: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientPublicFile {
    kind: String,
    id: String,
    mlkem_ek: String,
    x25519: String,
}

/// Generates a recipient (auditor) key pair; writes the secret (0600) and public files.
pub fn create_recipient(
    secret_path: &Path,
    public_path: &Path,
) -> Result<RecipientPublicKey, StoreError> {
    let sk = RecipientSecretKey::generate(random_seed()?)?;
    let p = sk.public();
    let s = RecipientSecretFile {
        kind: "warden-recipient-secret".into(),
        id: p.id(),
        mlkem_dk: B64.encode(sk.mlkem_secret()),
        mlkem_ek: B64.encode(p.mlkem()),
        x25519: B64.encode(sk.x25519_secret()),
    };
    let pf = RecipientPublicFile {
        kind: "warden-recipient-public".into(),
        id: p.id(),
        mlkem_ek: B64.encode(p.mlkem()),
        x25519: B64.encode(p.x25519()),
    };
    let json = Zeroizing::new(to_json(&s)?);
    write_new(secret_path, &json, 0o600).map_err(io("create", secret_path))?;
    write_new(public_path, &to_json(&pf)?, 0o644).map_err(io("create", public_path))?;
    Ok(p.clone())
}

/// Reads a recipient secret key file.
pub fn read_recipient_secret(path: &Path) -> Result<RecipientSecretKey, StoreError> {
    crate::perms::check_secret_file(path)?;
    let f: RecipientSecretFile = read_json(path, 64 * 1024)?;
    let bad = |d: &str| StoreError::Format {
        path: path.into(),
        detail: d.into(),
    };
    if f.kind != "warden-recipient-secret" {
        return Err(bad("not a warden recipient (auditor) secret key"));
    }
    let dk = Zeroizing::new(B64.decode(&f.mlkem_dk).map_err(|_| bad("invalid key"))?);
    let ek = B64.decode(&f.mlkem_ek).map_err(|_| bad("invalid key"))?;
    let x = Zeroizing::new(B64.decode(&f.x25519).map_err(|_| bad("invalid key"))?);
    let seed: Seed =
        Zeroizing::new(<[u8; 32]>::try_from(x.as_slice()).map_err(|_| bad("invalid X25519 key"))?);
    Ok(RecipientSecretKey::from_parts(&dk, &ek, seed)?)
}

/// Reads a recipient public key file.
pub fn read_recipient_public(path: &Path) -> Result<RecipientPublicKey, StoreError> {
    let f: RecipientPublicFile = read_json(path, 64 * 1024)?;
    let bad = |d: &str| StoreError::Format {
        path: path.into(),
        detail: d.into(),
    };
    if f.kind != "warden-recipient-public" {
        return Err(bad("not a warden recipient (auditor) public key"));
    }
    let ek = B64.decode(&f.mlkem_ek).map_err(|_| bad("invalid key"))?;
    let x = B64.decode(&f.x25519).map_err(|_| bad("invalid key"))?;
    let k = RecipientPublicKey::from_parts(&ek, &x)?;
    if k.id() != f.id {
        return Err(bad("key id does not match the key"));
    }
    Ok(k)
}
