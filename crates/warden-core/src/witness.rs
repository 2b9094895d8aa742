//! The witness's rules (`c2sp.org/tlog-witness`, `add-checkpoint`), without I/O: the
//! request's encoding, which checkpoint may be cosigned given the latest one the
//! witness cosigned for that log, and the HTTP status of every refusal.
//!
//! A Warden log signs checkpoints with a key per epoch (`<origin>/epoch/<n>`) that its
//! root key certifies, so the witness is configured with the log's origin and root
//! public key (the trust anchor verifiers use) and learns each epoch key from the
//! root-signed certificate the log presents first (see [`learn_epoch`]).

use crate::checkpoint::{Checkpoint, epoch_key_name, verify_checkpoint};
use crate::crypto::VerifyingKey;
use crate::epoch::{RootPublic, RotationRecord};
use crate::merkle::{Hash, empty_root, verify_consistency};
use crate::note::{MAX_NOTE_LEN, Note};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::BTreeMap;

/// Most consistency proof lines a request may carry (the specification's bound).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body: the old size line, the proof lines and a checkpoint note.
pub const MAX_REQUEST_LEN: usize = 32 + MAX_PROOF_LINES * 46 + 1 + MAX_NOTE_LEN;
/// Epoch keys kept per log (the most recent by number).
pub const MAX_EPOCHS: usize = 16;

/// Why a request is refused, with its status in the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the request is malformed, or its old size exceeds the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no valid signature by a key the witness trusts for the origin.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: the witness does not witness this origin.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 409: the old size is not the size of the latest cosigned checkpoint.
    #[error("old size does not match the latest cosigned checkpoint (size {latest})")]
    Conflict { latest: u64 },
    /// 422: the checkpoint is not consistent with the latest cosigned one.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
}

impl Refusal {
    /// The HTTP status the specification assigns.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::UnknownOrigin(_) => 404,
            Self::Conflict { .. } => 409,
            Self::Unprocessable(_) => 422,
        }
    }
}

fn bad(detail: impl Into<String>) -> Refusal {
    Refusal::BadRequest(detail.into())
}

/// An `add-checkpoint` request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// Size of the checkpoint the proof starts from.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub note: Note,
}

impl AddCheckpoint {
    /// Parses a request body strictly.
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        if body.len() > MAX_REQUEST_LEN {
            return Err(bad(format!("body over {MAX_REQUEST_LEN} bytes")));
        }
        let s = std::str::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?;
        let (head, note) = s
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(crate::checkpoint::parse_decimal)
            .ok_or_else(|| bad("first line must be `old <size>`"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!("more than {MAX_PROOF_LINES} proof lines")));
            }
            let h = B64.decode(l).map_err(|_| bad("proof line is not base64"))?;
            proof
                .push(Hash::try_from(h.as_slice()).map_err(|_| bad("proof hash is not 32 bytes"))?);
        }
        let note = Note::parse(note.as_bytes()).map_err(|e| bad(format!("checkpoint: {e}")))?;
        Ok(Self {
            old_size: old,
            proof,
            note,
        })
    }

    /// The request body.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut s = format!("old {}\n", self.old_size);
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note.to_string());
        s
    }
}

/// The origin a checkpoint note names (its first line), before anything is verified:
/// what the witness uses to find the log's configuration.
pub fn origin_of(note: &Note) -> Result<&str, Refusal> {
    note.text()
        .split('\n')
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| bad("checkpoint has no origin line"))
}

/// The epoch keys a witness trusts for one log, learned from root-signed certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochKeys {
    keys: BTreeMap<u64, VerifyingKey>,
}

impl EpochKeys {
    /// The keys, by epoch.
    #[must_use]
    pub fn keys(&self) -> &BTreeMap<u64, VerifyingKey> {
        &self.keys
    }

    /// Adds a key already verified (e.g. reloaded from the witness's own state).
    pub fn insert(&mut self, epoch: u64, key: VerifyingKey) {
        self.keys.insert(epoch, key);
        while self.keys.len() > MAX_EPOCHS {
            self.keys.pop_first();
        }
    }
}

/// Checks an epoch's rotation record against the log's root key and adds its key.
/// Returns whether the key is new. A second, different certificate for an epoch the
/// witness already knows is refused: only a root key holder can make one, and it is
/// evidence of equivocation.
pub fn learn_epoch(
    root: &RootPublic,
    keys: &mut EpochKeys,
    rec: &RotationRecord,
) -> Result<bool, Refusal> {
    let info = rec
        .verify(root)
        .map_err(|e| Refusal::Forbidden(format!("epoch certificate: {e}")))?
        .into_inner();
    match keys.keys.get(&info.epoch) {
        Some(k) if *k == info.key => Ok(false),
        Some(_) => Err(Refusal::Unprocessable(format!(
            "a different certificate for epoch {} was presented before",
            info.epoch
        ))),
        None => {
            keys.insert(info.epoch, info.key);
            Ok(true)
        }
    }
}

/// The latest checkpoint a witness cosigned for a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latest {
    pub size: u64,
    pub root: Hash,
}

/// Decides an `add-checkpoint` request for a log whose root is `root`, given the keys
/// learned and the latest checkpoint cosigned (`None`: never). On success the returned
/// checkpoint is the new latest: the caller must persist it, atomically with reading
/// `latest`, before answering with cosignatures.
pub fn check(
    root: &RootPublic,
    keys: &EpochKeys,
    latest: Option<Latest>,
    req: &AddCheckpoint,
) -> Result<Checkpoint, Refusal> {
    let origin = origin_of(&req.note)?;
    if origin != root.origin {
        return Err(Refusal::UnknownOrigin(origin.to_owned()));
    }
    let cp = log_signed(root, keys, &req.note)?;
    if req.old_size > cp.size {
        return Err(bad(format!(
            "old size {} is larger than the checkpoint's {}",
            req.old_size, cp.size
        )));
    }
    let latest = latest.unwrap_or(Latest {
        size: 0,
        root: empty_root(),
    });
    if req.old_size != latest.size {
        return Err(Refusal::Conflict {
            latest: latest.size,
        });
    }
    if cp.size == 0 && cp.root != empty_root() {
        return Err(Refusal::Unprocessable(
            "a checkpoint of size 0 must have the empty tree's root".into(),
        ));
    }
    if req.old_size == 0 {
        if !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(
                "a proof from size 0 must be empty".into(),
            ));
        }
    } else if req.old_size == cp.size {
        if cp.root != latest.root || !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(
                "a checkpoint of the cosigned size with another root".into(),
            ));
        }
    } else {
        verify_consistency(req.old_size, cp.size, &latest.root, &cp.root, &req.proof).map_err(
            |e| {
                Refusal::Unprocessable(format!(
                    "not consistent with the cosigned checkpoint of size {}: {e}",
                    latest.size
                ))
            },
        )?;
    }
    Ok(cp)
}

/// The checkpoint `note` signs, if a signature on it is by an epoch key the witness
/// knows. A line naming a known key whose signature fails is a refusal even when
/// another line verifies (such a note is malformed).
fn log_signed(root: &RootPublic, keys: &EpochKeys, note: &Note) -> Result<Checkpoint, Refusal> {
    let mut good = None;
    for (epoch, key) in keys.keys.iter().rev() {
        let name = epoch_key_name(&root.origin, *epoch);
        if !note.signatures().iter().any(|s| s.name == name) {
            continue;
        }
        match verify_checkpoint(note, &name, key, &root.origin) {
            Ok(cp) => good = Some(cp.into_inner()),
            Err(crate::checkpoint::CheckpointError::NoSignature { .. }) => {}
            Err(e) => return Err(Refusal::Forbidden(e.to_string())),
        }
    }
    good.ok_or_else(|| {
        Refusal::Forbidden(
            "no signature by an epoch key the witness knows (present the epoch's certificate first)"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests;
