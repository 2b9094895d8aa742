//! Store errors.

use std::path::PathBuf;
use thiserror::Error;

/// What went wrong in the store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error("wrong passphrase, or the key file {} was altered", path.display())]
    BadPassphrase { path: PathBuf },
    #[error("{0}")]
    Config(String),
    /// A secret others can read, or a directory others can write.
    #[error("{}: {detail}; fix with `{fix}`", path.display())]
    Permissions {
        path: PathBuf,
        detail: String,
        fix: String,
    },
    /// A request the ledger cannot answer as asked (an index past the end, ...).
    #[error("{0}")]
    Request(String),
    #[error("the ledger {} is in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error(
        "the ledger cannot be opened safely: {detail}; run `warden verify` to locate the damage"
    )]
    Corrupt { detail: String },
    /// A report's detached signature does not hold.
    #[error("report signature: {detail}")]
    ReportSignature { detail: &'static str },
    #[error("crypto: {0}")]
    Crypto(#[from] warden_core::error::CryptoError),
    #[error("epoch: {0}")]
    Epoch(#[from] warden_core::epoch::EpochError),
    #[error("encoding: {0}")]
    Decode(#[from] warden_core::error::DecodeError),
}

/// Why an append was not acknowledged. Nothing unacknowledged is reported as stored.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    #[error("the audit ledger could not make the entry durable: {0}")]
    Io(String),
    #[error("the audit ledger stopped after a write failure and must be reopened: {0}")]
    Failed(String),
    #[error("the clock went backwards ({now} is before the last entry at {last})")]
    ClockBackwards { now: String, last: String },
    #[error("the audit ledger is closed")]
    Closed,
    #[error("invalid entry: {0}")]
    Invalid(String),
    /// The writer refused the caller's identity claim; the refusal is in the ledger.
    #[error("refused by the writer: {0}")]
    Refused(String),
    /// No receipt within the request's deadline; the entry may or may not be durable
    /// (retrying with the same request id settles which).
    #[error("the writer did not confirm the entry within {ms} ms")]
    Deadline { ms: u64 },
    /// The writer could not be reached or cannot write now.
    #[error("the writer is unavailable: {0}")]
    Unavailable(String),
}

/// Shorthand for building [`StoreError::Io`].
pub(crate) fn io<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
