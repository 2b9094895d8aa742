//! Error types of the core. Each variant names what was wrong; none carries internal
//! type names, and messages are lowercase.

use thiserror::Error;

/// A decoder rejected its input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("invalid hex at byte {position}")]
    Hex { position: usize },
    #[error("invalid base64")]
    Base64,
    #[error("expected {expected} bytes, found {found}")]
    Length { expected: usize, found: usize },
    #[error("invalid timestamp (expected YYYY-MM-DDTHH:MM:SS.ffffffZ)")]
    Time,
    #[error("input of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed {what}: {detail}")]
    Syntax {
        what: &'static str,
        detail: &'static str,
    },
    #[error("malformed json in {what}: {detail}")]
    Json { what: &'static str, detail: String },
}

/// A cryptographic operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("decryption failed: ciphertext or its header was altered, or the key is wrong")]
    Decrypt,
    #[error("invalid {what} key")]
    BadKey { what: &'static str },
    #[error("{what} failed in the crypto provider")]
    Provider { what: &'static str },
    #[error("unsupported algorithm {name:?}")]
    UnsupportedAlgorithm { name: String },
}

/// A Merkle proof did not verify or was malformed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has {found} hashes, expected {expected}")]
    WrongLength { expected: usize, found: usize },
    #[error("computed root does not match")]
    RootMismatch,
    #[error("sizes {old} and {new} are not ordered")]
    BadSizes { old: u64, new: u64 },
}
