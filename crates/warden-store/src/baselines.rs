//! Where the detectors' learnt state outlives the process that learnt it.
//!
//! The detectors (`warden-detect`) learn per principal (networks, hours, busiest
//! windows) and keep the windows of attacks in progress. The process that detects saves
//! that state now and then, and the next process that detects for the same ledger (the
//! service after a restart, or on a cluster the node that takes the sequencer lease)
//! resumes from it. The state names people and addresses, which the ledger itself only
//! holds encrypted, so it is kept sealed: ChaCha20-Poly1305 under a key derived from
//! the root key, which every process that may sequence holds already.

use crate::error::StoreError;
use crate::keys::RootKey;
use std::path::{Path, PathBuf};
use warden_core::crypto::{DataKey, NONCE_LEN, derive_key};

/// Largest state kept (sealed), so a corrupt or hostile record cannot exhaust memory.
pub const MAX_STATE: usize = 64 << 20;
const MAGIC: &[u8; 4] = b"WDS1";
const AAD: &[u8] = b"warden-detector-state-v1";

/// Where the detectors' state is kept. Both calls block (call them from a plain thread
/// or a blocking task).
pub trait Baselines: Send + Sync + std::fmt::Debug {
    /// The state last saved, opened; `None` when none was.
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keeps `state` in place of what was saved. `Ok(false)` when this process may no
    /// longer save (on a cluster: it lost the sequencer lease, and the node that took
    /// it detects now).
    fn save(&self, state: &[u8]) -> Result<bool, StoreError>;
}

/// Seals and opens the state under a key derived from the root key.
pub struct Sealer {
    key: DataKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The sealer of the ledger whose root key is `root`.
    pub fn new(root: &RootKey) -> Result<Self, StoreError> {
        Ok(Self {
            key: derive_key(root.key.seed(), b"detector state")?,
        })
    }

    /// `WDS1`, a random nonce, the sealed state.
    pub fn seal(&self, state: &[u8]) -> Result<Vec<u8>, StoreError> {
        if state.len() > MAX_STATE {
            return Err(StoreError::Config(format!(
                "the detectors' state is {} bytes, more than the {MAX_STATE} kept",
                state.len()
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| StoreError::Config("no randomness for a nonce".into()))?;
        let mut buf = state.to_vec();
        self.key.seal_in_place(nonce, AAD, &mut buf)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + buf.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// The state `sealed` holds; an error when it was altered or sealed under another
    /// root key.
    pub fn open(&self, sealed: &[u8], what: &Path) -> Result<Vec<u8>, StoreError> {
        let bad = |detail: &str| StoreError::Format {
            path: what.to_path_buf(),
            detail: detail.into(),
        };
        if sealed.len() > MAX_STATE + 64 {
            return Err(bad("larger than any state this build keeps"));
        }
        let rest = sealed
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a sealed detector state"))?;
        let (nonce, body) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(|| bad("truncated"))?;
        let mut buf = body.to_vec();
        self.key
            .open_in_place(*nonce, AAD, &mut buf)
            .map_err(|_| bad("altered, or sealed under another root key"))?;
        Ok(buf)
    }
}

/// The state in one file of the data directory (0600, replaced atomically): for the
/// process that owns the ledger.
#[derive(Debug)]
pub struct FileBaselines {
    path: PathBuf,
    sealer: Sealer,
}

impl FileBaselines {
    /// The state kept at `path`, sealed by `sealer`.
    #[must_use]
    pub fn new(path: PathBuf, sealer: Sealer) -> Self {
        Self { path, sealer }
    }
}

impl Baselines for FileBaselines {
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let io = |source| StoreError::Io {
            op: "reading",
            path: self.path.clone(),
            source,
        };
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if len > u64::try_from(MAX_STATE + 64).unwrap_or(u64::MAX) {
            return Err(StoreError::Format {
                path: self.path.clone(),
                detail: format!("{len} bytes, larger than any state this build keeps"),
            });
        }
        let sealed = std::fs::read(&self.path).map_err(io)?;
        self.sealer.open(&sealed, &self.path).map(Some)
    }

    fn save(&self, state: &[u8]) -> Result<bool, StoreError> {
        let sealed = self.sealer.seal(state)?;
        crate::durable::write_atomic(&self.path, &sealed, 0o600).map_err(|source| {
            StoreError::Io {
                op: "writing",
                path: self.path.clone(),
                source,
            }
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use warden_core::crypto::{SigAlg, SigningKey};

    fn root(seed: u8) -> RootKey {
        let key = SigningKey::from_seed(SigAlg::MlDsa44, zeroize::Zeroizing::new([seed; 32]))
            .expect("key");
        let public = warden_core::epoch::RootPublic {
            origin: "test".into(),
            key: key.verifying_key(),
        };
        RootKey {
            key,
            public,
            dev: true,
        }
    }

    #[test]
    fn the_state_is_sealed_private_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("detection.state");
        let b = FileBaselines::new(path.clone(), Sealer::new(&root(1)).expect("sealer"));
        assert!(b.load().expect("load").is_none());
        let state = br#"{"principals":{"alice@example.com":{}}}"#;
        assert!(b.save(state).expect("save"));
        let on_disk = std::fs::read(&path).expect("file");
        assert!(
            !on_disk.windows(5).any(|w| w == b"alice"),
            "names are never on disk in clear"
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(b.load().expect("load").as_deref(), Some(state.as_slice()));
    }

    #[test]
    fn an_altered_state_or_another_root_key_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("detection.state");
        let b = FileBaselines::new(path.clone(), Sealer::new(&root(1)).expect("sealer"));
        b.save(b"{}").expect("save");
        let other = FileBaselines::new(path.clone(), Sealer::new(&root(2)).expect("sealer"));
        assert!(other.load().is_err());
        let mut bytes = std::fs::read(&path).expect("file");
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
        std::fs::write(&path, &bytes).expect("write");
        assert!(b.load().is_err());
    }
}
