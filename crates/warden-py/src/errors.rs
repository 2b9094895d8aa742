//! The exceptions the package raises, and which Rust error kind becomes which (never
//! chosen from message text).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use warden_registry::RegistryError;
use warden_store::error::{AppendError, StoreError};

create_exception!(
    warden,
    WardenError,
    PyException,
    "Base class of every Warden error."
);
create_exception!(
    warden,
    AccessDenied,
    WardenError,
    "The caller may not do this (policy, identity, or scope); the refusal is in the ledger."
);
create_exception!(
    warden,
    AuditUnavailable,
    WardenError,
    "The ledger cannot record right now (no writer, a deadline passed, a failed ledger): nothing was done unaudited."
);
create_exception!(
    warden,
    InvalidInput,
    WardenError,
    "The request is malformed (kind, event form, size, missing file or directory)."
);
create_exception!(
    warden,
    IntegrityError,
    WardenError,
    "Stored data does not match what was signed."
);

create_exception!(
    warden,
    Revoked,
    AccessDenied,
    "The version is revoked: it is never served (the refusal is in the ledger)."
);
create_exception!(
    warden,
    NotFound,
    WardenError,
    "No such model, version, alias, file or principal."
);
create_exception!(
    warden,
    Conflict,
    WardenError,
    "Well-formed, but at odds with the current state (an illegal lifecycle move, an existing version)."
);

pub fn append_error(e: AppendError) -> PyErr {
    match e {
        AppendError::Refused(m) => AccessDenied::new_err(m),
        AppendError::Invalid(m) => InvalidInput::new_err(m),
        other => AuditUnavailable::new_err(other.to_string()),
    }
}

pub fn store_error(e: &StoreError) -> PyErr {
    match e {
        StoreError::Config(_) => InvalidInput::new_err(e.to_string()),
        _ => AuditUnavailable::new_err(e.to_string()),
    }
}

/// The exception for a registry error, by its kind.
pub fn registry_error(e: RegistryError) -> PyErr {
    use RegistryError as R;
    match e {
        R::Denied { revoked: true, .. } => Revoked::new_err(e.to_string()),
        R::Denied { .. } => AccessDenied::new_err(e.to_string()),
        R::Integrity { .. } => IntegrityError::new_err(e.to_string()),
        R::Audit(a) => append_error(a),
        R::UnknownModel { .. }
        | R::UnknownVersion { .. }
        | R::UnknownFile { .. }
        | R::UnknownPrincipal { .. }
        | R::UnknownToken { .. }
        | R::UnknownIncident { .. } => NotFound::new_err(e.to_string()),
        R::Transition { .. } | R::Exists { .. } => Conflict::new_err(e.to_string()),
        R::Invalid { .. }
        | R::Signer(_)
        | R::Manifest(_)
        | R::DigestMismatch { .. }
        | R::TooLarge { .. }
        | R::RangeNotSatisfiable { .. }
        | R::Io { .. } => InvalidInput::new_err(e.to_string()),
        R::Store(s) => store_error(&s),
        _ => WardenError::new_err(e.to_string()),
    }
}
