//! SIEM export for the Warden ledger.
//!
//! An [`exporter::Exporter`] follows the ledger's files and delivers every entry a
//! signed checkpoint covers to one sink, in index order and at least once: a durable
//! [`cursor`] moves only past what the receiver confirmed, so a crash of the receiver
//! or of the exporter leads to duplicates, never to gaps. Signed checkpoints travel
//! with the entries, so the SIEM holds tree heads that `warden verify
//! --trusted-checkpoint` accepts to detect a truncated or rewritten ledger.
//!
//! - [`format`]: `policy` (the documented `AUDIT_LOG_ENTRY:<hex>` lines), `rfc5424`,
//!   `cef`, `ocsf`, `ecs`, `json`.
//! - [`transport`]: TCP (RFC 6587 octet counting; newline for `policy`), TLS 1.3
//!   (RFC 5425), UDP, file, HTTP (Splunk HEC-style).
//! - [`source`]: the ledger reader; [`cursor`]: the per-sink cursor and status.

pub mod cursor;
pub mod destination;
mod error;
pub mod exporter;
pub mod format;
pub mod source;
pub mod transport;

pub use error::SiemError;
pub use exporter::{Exporter, Options, SinkSpec, Stats};
pub use format::Format;
