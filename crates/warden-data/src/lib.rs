//! Training-side data protections.
//!
//! - [`sanitize`]: a streaming PII sanitiser (emails, phone numbers, SSNs, Luhn-checked
//!   card numbers, IP addresses, IBANs, and configured patterns) that replaces each
//!   finding with a typed token such as `[EMAIL]`.
//! - [`dataset`]: chunked ChaCha20-Poly1305 encryption of files (a STREAM
//!   construction: reordered, dropped, duplicated or truncated chunks are detected), the
//!   data key wrapped to recipients with the hybrid ML-KEM-768 + X25519 scheme.

pub mod dataset;
pub mod envcheck;
mod recognise;
pub mod sanitize;
pub mod stream;
