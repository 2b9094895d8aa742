//! The Warden model registry and `SecureModelManager`, the one audited path through
//! which model artifacts are registered, promoted, revoked and loaded.
//!
//! Metadata lives in SQL (`sqlx`, SQLite by default), artifacts in a content-addressed
//! blob store (`object_store`, local filesystem by default), decisions come from the
//! Cedar policy in `warden-policy`, and every decision and mutation is an entry in the
//! `warden-store` ledger.

pub mod accesses;
pub mod admission;
pub mod blobs;
mod cache;
pub mod copy;
pub mod db;
pub mod deploy;
mod detection;
mod directory;
pub mod download;
mod engine;
pub mod error;
mod failures;
pub mod issue;
pub mod keyfile;
mod lifecycle;
pub mod load;
pub mod load_into;
pub mod logbucket;
pub mod manager;
pub mod names;
pub mod open;
pub mod outbox;
pub mod register;
mod remote;
pub mod respond;
pub mod review;
pub mod s3;
pub mod suspicion;
pub mod throttle;
pub mod tokens;

pub use error::RegistryError;
pub use keyfile::PrincipalKey;
pub use load::{LoadedFile, LoadedModel, Staging};
pub use load_into::AdmittedLoad;
pub use manager::{Caller, ManagerOptions, Registration, SecureModelManager, Selector};
pub use register::fingerprint;
/// The signed manifest format (in `warden-core`, being pure format code).
pub use warden_core::manifest;
