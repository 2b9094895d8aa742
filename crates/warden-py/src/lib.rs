//! `warden._native`: what the `warden` Python package needs from Rust. A
//! [`session::Ledger`] appends through the data directory's writer (the protocol in ARCHITECTURE.md,
//! "The writer and its protocol"), starting one on demand when none runs, exactly as a
//! CLI command does; [`read`] verifies a ledger's files and builds its report. The GIL is released while
//! waiting for receipts and while verifying, so many Python threads and processes
//! append at once. Errors arrive as the typed exceptions of [`errors`], chosen from the
//! Rust error kind, never from message text.

mod access;
mod blob;
mod errors;
mod read;
mod registry;
mod session;
mod sign;

use errors::{
    AccessDenied, AuditUnavailable, Conflict, IntegrityError, InvalidInput, NotFound, Revoked,
    WardenError,
};
use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<session::Ledger>()?;
    m.add_class::<registry::Registry>()?;
    m.add_class::<blob::Blob>()?;
    m.add_function(wrap_pyfunction!(read::verify, m)?)?;
    m.add_function(wrap_pyfunction!(sign::registration_files, m)?)?;
    m.add_function(wrap_pyfunction!(sign::sign_registration, m)?)?;
    m.add_function(wrap_pyfunction!(read::log_path, m)?)?;
    m.add_function(wrap_pyfunction!(read::compliance_report, m)?)?;
    m.add("WardenError", py.get_type::<WardenError>())?;
    m.add("AccessDenied", py.get_type::<AccessDenied>())?;
    m.add("AuditUnavailable", py.get_type::<AuditUnavailable>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("Revoked", py.get_type::<Revoked>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add("GRANTED", access::GRANTED.to_vec())?;
    Ok(())
}
