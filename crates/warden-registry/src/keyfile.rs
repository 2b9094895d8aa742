//! Principals' ML-DSA signing key files: the private seed in a 0600 JSON file, the public
//! key beside it (`.pub`). The registry stores only the public key.

use crate::error::RegistryError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use warden_core::crypto::{SigAlg, SigningKey, VerifyingKey};
use warden_core::hex;
use zeroize::Zeroizing;

/// A principal's signing key, read from its key file.
#[derive(Debug)]
pub struct PrincipalKey {
    pub principal: String,
    pub key: SigningKey,
}

/// Zeroized on drop: it holds the seed in text.
#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kind: String,
    principal: String,
    alg: String,
    /// Hex of the 32-byte ML-DSA seed.
    seed: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PubFile {
    kind: String,
    principal: String,
    alg: String,
    public_key: String,
}

const KIND_KEY: &str = "warden-signing-key";
const KIND_PUB: &str = "warden-signing-pub";

/// The public key file beside a key file (`x.key` → `x.key.pub`).
#[must_use]
pub fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Creates a new key for `principal` at `path` (0600, must not exist) and its `.pub`.
pub fn create(path: &Path, principal: &str, alg: SigAlg) -> Result<PrincipalKey, RegistryError> {
    let seed = warden_store::keys::random_seed()?;
    let key = SigningKey::from_seed(alg, seed)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(RegistryError::io("create", dir))?;
    }
    let kf = KeyFile {
        kind: KIND_KEY.into(),
        principal: principal.into(),
        alg: alg.name().into(),
        seed: hex::encode(key.seed()),
    };
    let text = Zeroizing::new(
        serde_json::to_vec_pretty(&kf)
            .map_err(|e| RegistryError::invalid("key file", e.to_string()))?,
    );
    warden_store::durable::write_new(path, &text, 0o600)
        .map_err(RegistryError::io("write", path))?;
    let pf = PubFile {
        kind: KIND_PUB.into(),
        principal: principal.into(),
        alg: alg.name().into(),
        public_key: B64.encode(key.verifying_key().as_bytes()),
    };
    let pp = pub_path(path);
    let text = serde_json::to_vec_pretty(&pf)
        .map_err(|e| RegistryError::invalid("key file", e.to_string()))?;
    warden_store::durable::write_new(&pp, &text, 0o644).map_err(RegistryError::io("write", &pp))?;
    Ok(PrincipalKey {
        principal: principal.into(),
        key,
    })
}

fn read_small(path: &Path) -> Result<Zeroizing<Vec<u8>>, RegistryError> {
    let meta = std::fs::metadata(path).map_err(RegistryError::io("read", path))?;
    if meta.len() > 64 * 1024 {
        return Err(RegistryError::invalid(
            "key file",
            format!("{} is too large", path.display()),
        ));
    }
    Ok(Zeroizing::new(
        std::fs::read(path).map_err(RegistryError::io("read", path))?,
    ))
}

/// Reads a private key file.
pub fn read(path: &Path) -> Result<PrincipalKey, RegistryError> {
    warden_store::perms::check_secret_file(path)?;
    let text = read_small(path)?;
    let kf: KeyFile = serde_json::from_slice(&text)
        .map_err(|e| RegistryError::invalid("key file", format!("{}: {e}", path.display())))?;
    if kf.kind != KIND_KEY {
        return Err(RegistryError::invalid(
            "key file",
            format!("{} is not a signing key", path.display()),
        ));
    }
    let alg = SigAlg::parse(&kf.alg)?;
    let seed: Zeroizing<[u8; 32]> =
        Zeroizing::new(hex::decode_array(kf.seed.as_bytes()).map_err(|_| {
            RegistryError::invalid("key file", format!("{}: bad seed", path.display()))
        })?);
    Ok(PrincipalKey {
        principal: kf.principal.clone(),
        key: SigningKey::from_seed(alg, seed)?,
    })
}

/// Reads a public key file: the principal it names and the key.
pub fn read_pub(path: &Path) -> Result<(String, VerifyingKey), RegistryError> {
    let text = read_small(path)?;
    let pf: PubFile = serde_json::from_slice(&text).map_err(|e| {
        RegistryError::invalid("public key file", format!("{}: {e}", path.display()))
    })?;
    if pf.kind != KIND_PUB {
        return Err(RegistryError::invalid(
            "public key file",
            format!("{} is not a signing public key", path.display()),
        ));
    }
    let bytes = B64
        .decode(pf.public_key)
        .map_err(|_| RegistryError::invalid("public key file", "public_key is not base64"))?;
    Ok((
        pf.principal,
        VerifyingKey::from_bytes(SigAlg::parse(&pf.alg)?, &bytes)?,
    ))
}
