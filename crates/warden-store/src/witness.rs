//! A witness's durable state: for each log it witnesses, the latest checkpoint it
//! cosigned (with the cosignatures it returned) and the epoch keys it learned.
//!
//! One file per log (`<sha256(origin) hex>.json`, 0600), replaced atomically and
//! fsynced before an answer leaves the witness; the check against the stored checkpoint
//! and the write of the new one happen under the log's lock, so two concurrent
//! requests can never roll the state back. One process owns a state directory (a lock
//! file), so two witnesses cannot share it by mistake.

use crate::durable::write_atomic;
use crate::error::{StoreError, io};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use warden_core::crypto::{SigAlg, VerifyingKey};
use warden_core::witness::{EpochKeys, Latest};

/// Largest state file read back.
const MAX_STATE: u64 = 4 << 20;

/// What the witness keeps for one log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The latest checkpoint cosigned, if any.
    pub latest: Option<Latest>,
    /// That checkpoint as a note: the log's signature and the witness's cosignatures.
    pub note: Option<String>,
    /// Epoch keys learned from root-signed certificates.
    pub keys: EpochKeys,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    kind: String,
    origin: String,
    size: Option<u64>,
    root: Option<String>,
    note: Option<String>,
    epochs: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    epoch: u64,
    alg: String,
    key: String,
}

const KIND: &str = "warden-witness-log-state";

/// The state of every log a witness is configured for.
#[derive(Debug)]
pub struct WitnessState {
    dir: PathBuf,
    logs: HashMap<String, Mutex<LogState>>,
    _lock: File,
}

impl WitnessState {
    /// Opens (creating) the state directory and loads the state of each of `origins`.
    /// Fails if another process holds the directory.
    pub fn open(dir: &Path, origins: &[String]) -> Result<Self, StoreError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io("chmod", dir))?;
        }
        crate::perms::check_private_dir(dir)?;
        let lock_path = dir.join("witness.lock");
        let Some(lock) =
            crate::durable::lock_exclusive(&lock_path).map_err(io("lock", &lock_path))?
        else {
            return Err(StoreError::Locked { path: dir.into() });
        };
        let mut logs = HashMap::new();
        for o in origins {
            let s = load(&file_for(dir, o), o)?;
            logs.insert(o.clone(), Mutex::new(s));
        }
        Ok(Self {
            dir: dir.to_owned(),
            logs,
            _lock: lock,
        })
    }

    /// Whether `origin` is one of the configured logs.
    #[must_use]
    pub fn knows(&self, origin: &str) -> bool {
        self.logs.contains_key(origin)
    }

    /// Runs `f` on the state of `origin` under its lock; when `f` returns a changed
    /// state, it is made durable before this returns (and kept in memory only then).
    /// `None` if the origin is not configured.
    pub fn update<R, E: From<StoreError>>(
        &self,
        origin: &str,
        f: impl FnOnce(&LogState) -> Result<(R, Option<LogState>), E>,
    ) -> Option<Result<R, E>> {
        let m = self.logs.get(origin)?;
        let mut g = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&g).and_then(|(r, next)| {
            if let Some(next) = next {
                store(&file_for(&self.dir, origin), origin, &next)?;
                *g = next;
            }
            Ok(r)
        }))
    }

    /// A copy of the state of `origin`.
    #[must_use]
    pub fn get(&self, origin: &str) -> Option<LogState> {
        self.logs.get(origin).map(|m| {
            m.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }
}

/// The origins' state files are named by hash, so any origin text makes a safe name.
#[must_use]
pub fn file_for(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!(
        "{}.json",
        warden_core::hex::encode(&warden_core::merkle::sha256(origin.as_bytes()))
    ))
}

fn load(path: &Path, origin: &str) -> Result<LogState, StoreError> {
    let bad = |d: String| StoreError::Format {
        path: path.into(),
        detail: d,
    };
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LogState::default()),
        Err(e) => return Err(io("open", path)(e)),
    };
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_STATE + 1), &mut buf)
        .map_err(io("read", path))?;
    if buf.len() as u64 > MAX_STATE {
        return Err(bad("state file too large".into()));
    }
    let s: Stored = serde_json::from_slice(&buf).map_err(|e| bad(e.to_string()))?;
    if s.kind != KIND || s.origin != origin {
        return Err(bad(format!("not the state of {origin:?}")));
    }
    let latest = match (s.size, &s.root) {
        (Some(size), Some(root)) => {
            let r = B64
                .decode(root)
                .map_err(|_| bad("root is not base64".into()))?;
            let root = <[u8; 32]>::try_from(r.as_slice())
                .map_err(|_| bad("root is not 32 bytes".into()))?;
            Some(Latest { size, root })
        }
        (None, None) => None,
        _ => return Err(bad("size and root must come together".into())),
    };
    let mut keys = EpochKeys::default();
    for k in &s.epochs {
        let alg = SigAlg::parse(&k.alg)?;
        let pk = B64
            .decode(&k.key)
            .map_err(|_| bad("epoch key is not base64".into()))?;
        keys.insert(k.epoch, VerifyingKey::from_bytes(alg, &pk)?);
    }
    Ok(LogState {
        latest,
        note: s.note,
        keys,
    })
}

fn store(path: &Path, origin: &str, s: &LogState) -> Result<(), StoreError> {
    let stored = Stored {
        kind: KIND.into(),
        origin: origin.into(),
        size: s.latest.map(|l| l.size),
        root: s.latest.map(|l| B64.encode(l.root)),
        note: s.note.clone(),
        epochs: s
            .keys
            .keys()
            .iter()
            .map(|(e, k)| StoredKey {
                epoch: *e,
                alg: k.alg().name().into(),
                key: B64.encode(k.as_bytes()),
            })
            .collect(),
    };
    let bytes =
        serde_json::to_vec_pretty(&stored).map_err(|e| StoreError::Config(e.to_string()))?;
    write_atomic(path, &bytes, 0o600).map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn state_survives_reopening_and_a_second_process_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("w");
        let origins = vec!["a.example/log".to_owned(), "b.example/log".to_owned()];
        let w = WitnessState::open(&dir, &origins).unwrap();
        assert!(matches!(
            WitnessState::open(&dir, &origins),
            Err(StoreError::Locked { .. })
        ));
        let next = LogState {
            latest: Some(Latest {
                size: 7,
                root: [3; 32],
            }),
            note: Some("a.example/log\n7\nAw==\n".into()),
            keys: EpochKeys::default(),
        };
        let r: Result<u8, StoreError> = w
            .update("a.example/log", |_| Ok((1, Some(next.clone()))))
            .unwrap();
        assert_eq!(r.unwrap(), 1);
        // A refused update changes nothing.
        let r: Result<(), StoreError> = w
            .update("a.example/log", |_| Err(StoreError::Config("no".into())))
            .unwrap();
        assert!(r.is_err());
        assert!(
            w.update::<(), StoreError>("c.example/log", |_| Ok(((), None)))
                .is_none()
        );
        drop(w);
        let w = WitnessState::open(&dir, &origins).unwrap();
        assert_eq!(w.get("a.example/log").unwrap(), next);
        assert_eq!(w.get("b.example/log").unwrap(), LogState::default());
        // A state file of another origin is never taken for this one's.
        drop(w);
        std::fs::copy(
            file_for(&dir, "a.example/log"),
            file_for(&dir, "b.example/log"),
        )
        .unwrap();
        assert!(WitnessState::open(&dir, &origins).is_err());
    }
}
