//! Registering through a remote server: the client names its files as the registry
//! does, and signs the manifest with its principal's key here, on the client; the
//! server checks the signature against the registered key.

use crate::errors::{InvalidInput, registry_error};
use pyo3::prelude::*;
use std::path::PathBuf;
use warden_registry::manifest::{self, Provenance, Resource};
use warden_registry::{keyfile, register::collect_files};

/// The files a registration of `path` covers: `(name, path, size)`, sorted by name.
#[pyfunction]
pub fn registration_files(py: Python<'_>, path: PathBuf) -> PyResult<Vec<(String, PathBuf, u64)>> {
    py.detach(|| collect_files(&path)).map_err(registry_error)
}

/// Signs the manifest of `model@version` over `files` (`(name, sha256 hex, size)`) with
/// the key in `key_file`; returns `(principal, envelope_json)`.
#[pyfunction]
#[pyo3(signature = (model, version, files, key_file, provenance=None))]
pub fn sign_registration(
    model: &str,
    version: &str,
    files: Vec<(String, String, u64)>,
    key_file: PathBuf,
    provenance: Option<&str>,
) -> PyResult<(String, String)> {
    let provenance: Provenance = match provenance {
        Some(p) => serde_json::from_str(p)
            .map_err(|e| InvalidInput::new_err(format!("provenance: {e}")))?,
        None => Provenance::default(),
    };
    let key = keyfile::read(&key_file).map_err(|e| {
        InvalidInput::new_err(format!("the signing key {}: {e}", key_file.display()))
    })?;
    let resources = files
        .into_iter()
        .map(|(name, digest, size)| Resource {
            name,
            algorithm: "sha256".into(),
            digest,
            size,
        })
        .collect();
    let st = manifest::statement(model, version, resources, provenance);
    let env =
        manifest::sign(&st, &key.principal, &key.key).map_err(|e| registry_error(e.into()))?;
    let json = serde_json::to_string(&env).map_err(|e| InvalidInput::new_err(e.to_string()))?;
    Ok((key.principal.clone(), json))
}
