//! One ledger written by several nodes.
//!
//! Every node appends to a shared queue in PostgreSQL ([`queue`]); the node that holds
//! the sequencer lease ([`lease`]) takes the queue in order, seals and signs through the
//! ordinary [`warden_store::ledger::Ledger`], and commits the ledger's bytes to
//! PostgreSQL ([`chunks`]) in one transaction per batch that first checks its fencing
//! token: a node whose lease was taken over can never publish. Each node keeps a local
//! copy of the ledger's files ([`mirror`]) that its readers (verification, reports, SIEM
//! export, the audit API) read as they read an embedded ledger. [`node`] runs a node's
//! part; [`journal`] is what its registry and server append through.

pub mod base;
pub mod baselines;
pub mod budgets;
pub mod chunks;
pub mod cursors;
pub mod import;
pub mod journal;
pub mod lease;
pub mod mirror;
pub mod node;
pub mod publish;
pub mod queue;
pub mod schema;
mod sequence;
mod signal;
mod tee;

use warden_store::error::StoreError;

/// What can go wrong in the cluster's storage.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The database refused or could not be reached.
    #[error("cluster database ({what}): {source}")]
    Database {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// This node's lease was taken over (or expired): it may not publish.
    #[error("the sequencer lease (token {token}) is no longer held by this node")]
    Fenced { token: i64 },
    /// The database's ledger bytes are not a clean sequence.
    #[error("cluster ledger is inconsistent: {0}")]
    Corrupt(String),
    /// The local copy of the ledger could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The object store holding the published log failed or holds something else.
    #[error("published log: {0}")]
    Objects(String),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
}

/// Attaches `what` to a database error.
pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> ClusterError {
    move |source| ClusterError::Database { what, source }
}

/// Attaches the operation and path to an I/O error.
pub(crate) fn io(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ClusterError {
    let path = path.to_path_buf();
    move |source| ClusterError::Io { what, path, source }
}
