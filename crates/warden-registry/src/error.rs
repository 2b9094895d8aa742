//! Registry errors. Each variant maps to one stable exit code in the `warden` binary.

use std::path::PathBuf;
use thiserror::Error;

/// What went wrong in the registry or on the load path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The policy refused the request; the refusal is in the ledger.
    #[error("access denied: {principal} may not {action} {resource} ({reason})")]
    Denied {
        principal: String,
        action: String,
        resource: String,
        reason: String,
        /// The resource is a revoked version: the refusal is its state, not the
        /// caller's rights (the Hub's "disabled", the SDK's `Revoked`).
        revoked: bool,
    },
    /// Stored bytes do not match the signed manifest; an incident is in the ledger.
    #[error("integrity failure: {what}")]
    Integrity { what: String },
    /// The audit entry could not be made durable, so the operation was refused.
    #[error("refused: the audit ledger could not record this access: {0}")]
    Audit(#[from] warden_store::error::AppendError),
    #[error("the uploaded bytes hash to sha256:{actual}, not the sha256:{expected} given")]
    DigestMismatch { expected: String, actual: String },
    #[error("larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the requested range is outside the file's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("no model named {model:?}")]
    UnknownModel { model: String },
    #[error("model {model:?} has no version or alias {selector:?}")]
    UnknownVersion { model: String, selector: String },
    #[error("{model}@{version} has no file {file:?}")]
    UnknownFile {
        model: String,
        version: String,
        file: String,
    },
    #[error("no principal named {name:?}")]
    UnknownPrincipal { name: String },
    #[error("no token with id {id:?}")]
    UnknownToken { id: String },
    #[error("ledger entry {index} is not an incident")]
    UnknownIncident { index: u64 },
    #[error("{what} {name:?} already exists")]
    Exists { what: &'static str, name: String },
    #[error("{model}@{version} is {from}; it cannot become {to}{}", hint.map(|h| format!(": {h}")).unwrap_or_default())]
    Transition {
        model: String,
        version: String,
        from: String,
        to: String,
        hint: Option<&'static str>,
    },
    #[error("signer rejected: {0}")]
    Signer(String),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("policy: {0}")]
    Policy(#[from] warden_policy::PolicyError),
    #[error("registry database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("blob store: {0}")]
    Blob(#[from] object_store::Error),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] warden_store::error::StoreError),
    #[error("crypto: {0}")]
    Crypto(#[from] warden_core::error::CryptoError),
}

impl RegistryError {
    pub(crate) fn io<'a>(
        op: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the failure is a store that cannot be reached now (the database is down
    /// or restarting, its connections broke, the pool timed out, the bucket fails, the
    /// audit ledger cannot record): the request is refused, and the same request may
    /// succeed later.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Audit(_) => true,
            Self::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // Connection exceptions (08…), shutting down or starting (57P01-57P03).
                sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                    c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")
                }),
                _ => false,
            },
            // A remote store's failure (the bucket answered 5xx, timed out, or could
            // not be reached after retries); a missing or refused object is not one.
            Self::Blob(object_store::Error::Generic { .. }) => true,
            _ => false,
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

impl From<warden_core::manifest::ManifestError> for RegistryError {
    fn from(e: warden_core::manifest::ManifestError) -> Self {
        use warden_core::manifest::ManifestError as M;
        match e {
            M::Signer(s) => Self::Signer(s),
            M::FileName(n) => Self::Invalid {
                what: "file name",
                detail: format!("{n:?}"),
            },
            M::Sign(c) => Self::Crypto(c),
            other => Self::Manifest(other.to_string()),
        }
    }
}
