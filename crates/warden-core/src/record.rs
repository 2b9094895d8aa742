//! Lines of the checkpoints file: a signed checkpoint note plus the leaf hashes of the
//! entries it added, so that a verifier can name exactly which entry differs.
//!
//! ```text
//! {"first":F,"size":N,"epoch":E,"leaves":"<base64 of (N-F) SHA-256 leaf hashes>","note":"<signed note>"}
//! ```
//!
//! The leaf list is not signed by itself; it is trusted only when it reproduces the
//! signed root.

use crate::error::DecodeError;
use crate::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Longest accepted checkpoint line.
pub const MAX_RECORD_LEN: usize = 8 * 1024 * 1024;
/// Most entries one checkpoint may add (bounds the line length).
pub const MAX_BATCH: u64 = 65_536;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    first: u64,
    size: u64,
    epoch: u64,
    leaves: String,
    note: String,
}

/// One line of the checkpoints file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// Tree size before this checkpoint's entries.
    pub first: u64,
    /// Tree size this checkpoint signs.
    pub size: u64,
    /// Epoch whose key signed it.
    pub epoch: u64,
    /// Leaf hashes of entries `first..size`.
    pub leaves: Vec<Hash>,
    /// The signed note text.
    pub note: String,
}

impl CheckpointRecord {
    /// Encodes the record as one JSON line (without newline).
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut flat = Vec::with_capacity(self.leaves.len() * 32);
        for l in &self.leaves {
            flat.extend_from_slice(l);
        }
        let raw = Raw {
            first: self.first,
            size: self.size,
            epoch: self.epoch,
            leaves: B64.encode(flat),
            note: self.note.clone(),
        };
        serde_json::to_vec(&raw).map_err(|e| DecodeError::Json {
            what: "checkpoint record",
            detail: e.to_string(),
        })
    }

    /// Decodes one line strictly.
    pub fn decode(line: &[u8]) -> Result<Self, DecodeError> {
        if line.len() > MAX_RECORD_LEN {
            return Err(DecodeError::TooLarge {
                size: line.len(),
                limit: MAX_RECORD_LEN,
            });
        }
        let raw: Raw = serde_json::from_slice(line).map_err(|e| DecodeError::Json {
            what: "checkpoint record",
            detail: e.to_string(),
        })?;
        let flat = B64
            .decode(raw.leaves.as_bytes())
            .map_err(|_| DecodeError::Base64)?;
        if flat.len() % 32 != 0 {
            return Err(DecodeError::Length {
                expected: flat.len() / 32 * 32,
                found: flat.len(),
            });
        }
        let leaves: Vec<Hash> = flat
            .chunks_exact(32)
            .filter_map(|c| Hash::try_from(c).ok())
            .collect();
        if raw.size < raw.first || (leaves.len() as u64) != raw.size - raw.first {
            return Err(DecodeError::Syntax {
                what: "checkpoint record",
                detail: "leaf count does not match first..size",
            });
        }
        let rec = Self {
            first: raw.first,
            size: raw.size,
            epoch: raw.epoch,
            leaves,
            note: raw.note,
        };
        // Canonical form only: re-encoding must give the same bytes.
        if rec.encode()? != line {
            return Err(DecodeError::Syntax {
                what: "checkpoint record",
                detail: "not in canonical form",
            });
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(first in 0u64..1000, n in 0usize..40, epoch in any::<u64>(), note in "[a-z\n]{1,40}") {
            let leaves: Vec<Hash> = (0..n).map(|i| [i as u8; 32]).collect();
            let r = CheckpointRecord { first, size: first + n as u64, epoch, leaves, note };
            let line = r.encode().unwrap();
            prop_assert_eq!(CheckpointRecord::decode(&line).unwrap(), r);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = CheckpointRecord::decode(&bytes);
        }
    }
}
