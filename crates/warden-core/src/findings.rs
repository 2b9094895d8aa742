//! What verification is configured with and what it reports: the configuration, the
//! findings (where, which check, why), the report, and the state a later run resumes
//! from. The verifier itself is `crate::verify`.

use crate::crypto::RecipientSecretKey;
use crate::epoch::RootPublic;
use serde::{Deserialize, Serialize};

/// What a verifier checks against.
#[derive(Debug)]
pub struct VerifyConfig {
    /// The trust anchor.
    pub root: RootPublic,
    /// Longest allowed epoch, in microseconds (the rotation interval).
    pub max_epoch_micros: u64,
    /// With an auditor key, every entry is decrypted too.
    pub auditor: Option<RecipientSecretKey>,
}

/// Where a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// An entry; `index` is its position in the log.
    Entry,
    /// A checkpoint record; `index` is its position in the checkpoints file.
    Checkpoint,
}

/// A stable code per kind of problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Code {
    Malformed,
    WrongOrigin,
    IndexMismatch,
    FirstEntryNotRotation,
    NoEpoch,
    EpochMismatch,
    OutsideEpoch,
    TimeRegressed,
    NonceReused,
    BadRotation,
    BadCertificate,
    EpochNotSequential,
    EpochTooLong,
    MissingClosure,
    NotWrappedToAuditor,
    DecryptFailed,
    EntryNotInSignedTree,
    CheckpointMalformed,
    CheckpointOrder,
    CheckpointBadSignature,
    CheckpointWrongSigner,
    CheckpointRootMismatch,
    CheckpointLeafListCorrupt,
    UncoveredEntries,
    Truncated,
    TrustedCheckpointMismatch,
    /// The log no longer holds a tree a previous run verified: forked or rewritten.
    ConsistencyFailure,
    /// Entries were removed from the log's start and no `retention.delete` entry after
    /// them records it.
    RemovalNotRecorded,
}

/// Kind of the entry that records a retention removal.
pub const KIND_RETENTION: &str = "retention.delete";

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub location: Location,
    pub index: u64,
    /// Log position (entries read) when it was found; findings are ordered by it.
    pub position: u64,
    pub code: Code,
    pub message: String,
}

/// Counts and findings of a verification run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: u64,
    pub epochs: u64,
    pub decrypted: u64,
    /// The verified tree size and root (the last checkpoint that matched).
    pub verified_size: u64,
    /// Entries at the log's start that retention removed (verified up to there earlier).
    #[serde(default)]
    pub removed: u64,
    pub findings: Vec<Finding>,
    /// Entries after the last signed checkpoint: never acknowledged (an append returns
    /// only once a checkpoint covers it), so not part of the log. A crash leaves them;
    /// the next writer to open the ledger cuts them and records `system.recovery`.
    #[serde(default)]
    pub pending: Option<PendingTail>,
}

/// An uncovered tail awaiting recovery: entries `from..to`, and what was found in them
/// (a torn last line, say), which is not held against the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTail {
    pub from: u64,
    pub to: u64,
    pub notes: Vec<Finding>,
}

impl Report {
    /// Whether nothing was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// State a verifier can resume from: the last verified checkpoint and the epoch then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeState {
    pub origin: String,
    pub size: u64,
    pub checkpoints: u64,
    pub entries_offset: u64,
    pub checkpoints_offset: u64,
    pub range: Vec<String>,
    pub note: String,
    pub checkpoint_epoch: u64,
    pub rotation_index: u64,
    pub rotation_line: String,
    pub last_time: String,
    pub last_nonce: Option<u64>,
}
