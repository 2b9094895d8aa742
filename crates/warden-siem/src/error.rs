//! Errors of the exporter.

use std::path::PathBuf;

/// Why an export could not be set up or had to stop.
///
/// Transport failures during delivery are not errors of this type: the exporter
/// retries them with backoff and reports them in its status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiemError {
    /// The destination URL or an option is invalid.
    #[error("invalid sink {what}: {detail}")]
    Spec { what: &'static str, detail: String },
    /// A file could not be read or written.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The ledger does not hold what it should at this point.
    #[error("ledger {}: entry {index}: {detail}", path.display())]
    Ledger {
        path: PathBuf,
        index: u64,
        detail: String,
    },
    /// The cursor names a position the ledger no longer has.
    #[error(
        "the export cursor {} does not match the ledger at entry {index}: {detail}",
        path.display()
    )]
    CursorMismatch {
        path: PathBuf,
        index: u64,
        detail: String,
    },
    /// Another exporter holds this sink's cursor.
    #[error("another exporter is running for sink {name} (lock {})", path.display())]
    Locked { name: String, path: PathBuf },
    /// The receiver could not be reached or did not confirm, after retries.
    #[error("gave up after {attempts} failed attempts: {detail}")]
    Delivery { attempts: u32, detail: String },
    /// TLS could not be configured.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

pub(crate) fn io(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> SiemError {
    let path = path.to_path_buf();
    move |source| SiemError::Io { op, path, source }
}
