//! The audited, fail-closed load path (ARCHITECTURE.md, "Design in brief"):
//!
//! ```text
//! policy check ─▶ deny: `model.denied` entry ─▶ Denied
//!              ─▶ allow: verify the signed manifest ─▶ stream every blob into private
//!                 staging while hashing ─▶ mismatch: `incident` entry ─▶ Integrity
//!              ─▶ `model.access` entry durable (receipt) ─▶ LoadedModel (bytes)
//! ```
//!
//! Bypass is unrepresentable: model bytes are reachable only through [`LoadedModel`],
//! whose only constructor is private to this module and takes the ledger's receipt for
//! the access. The blob store's read is crate-private, so no other code path in the
//! library can hand out registry bytes.

use crate::blobs::FileSink;
use crate::error::RegistryError;
use crate::manager::{Caller, SecureModelManager, Selector};
use crate::manifest;
use serde_json::json;
use std::path::{Path, PathBuf};
use warden_policy::Action;
use warden_store::ledger::Receipt;

/// Where verified bytes are held until they are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staging {
    /// In memory (for loading straight into a framework).
    Memory,
    /// Private temporary files in this directory (same filesystem as the destination,
    /// so delivery is a rename).
    Dir(PathBuf),
}

#[derive(Debug)]
enum Content {
    Memory(crate::blobs::MemoryBlob),
    File(tempfile::NamedTempFile),
}

/// One delivered file.
#[derive(Debug)]
pub struct LoadedFile {
    name: String,
    digest: String,
    size: u64,
    content: Content,
}

impl LoadedFile {
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.digest
    }
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The bytes, when staged in memory.
    #[must_use]
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Memory(v) => Some(v),
            Content::File(_) => None,
        }
    }
}

/// A model version whose access is recorded in the ledger and whose every byte matched
/// the signed manifest. The only way to obtain model bytes from the registry.
#[derive(Debug)]
pub struct LoadedModel {
    receipt: Receipt,
    model: String,
    version: String,
    root_digest: String,
    files: Vec<LoadedFile>,
}

impl LoadedModel {
    /// Private: built only in [`SecureModelManager::load`], after the access entry is
    /// durable.
    fn new(
        receipt: Receipt,
        model: String,
        version: String,
        root_digest: String,
        files: Vec<LoadedFile>,
    ) -> Self {
        Self {
            receipt,
            model,
            version,
            root_digest,
            files,
        }
    }

    /// The ledger receipt of this access.
    #[must_use]
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }
    #[must_use]
    pub fn root_digest(&self) -> &str {
        &self.root_digest
    }
    #[must_use]
    pub fn files(&self) -> &[LoadedFile] {
        &self.files
    }

    /// The bytes of the only file, when staged in memory.
    pub fn into_single_bytes(self) -> Option<crate::blobs::MemoryBlob> {
        let mut files = self.files;
        if files.len() != 1 {
            return None;
        }
        match files.pop().map(|f| f.content) {
            Some(Content::Memory(v)) => Some(v),
            _ => None,
        }
    }

    /// Delivers to `out`: the file itself when the load has one file and `out` is not an
    /// existing directory, otherwise a directory holding every file under its name.
    /// Files are created 0600 and renamed into place; an existing file is not replaced.
    pub fn persist(self, out: &Path) -> Result<Vec<PathBuf>, RegistryError> {
        let single = self.files.len() == 1 && !out.is_dir();
        let mut written = Vec::new();
        for f in self.files {
            let dest = if single {
                out.to_path_buf()
            } else {
                out.join(&f.name)
            };
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(RegistryError::io("create", parent))?;
            }
            match f.content {
                Content::File(t) => {
                    t.persist_noclobber(&dest)
                        .map_err(|e| RegistryError::io("write", &dest)(e.error))?;
                }
                Content::Memory(v) => {
                    warden_store::durable::write_new(&dest, &v, 0o600)
                        .map_err(RegistryError::io("write", &dest))?;
                }
            }
            written.push(dest);
        }
        Ok(written)
    }
}

/// An allowed access, before any byte is read: the version, the decision, and the
/// files the signed manifest lists (one when a file was named).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) v: crate::db::VersionRow,
    pub(crate) decision: warden_policy::Decision,
    pub(crate) wanted: Vec<manifest::Resource>,
}

impl SecureModelManager {
    /// The `incident` entry of an integrity failure on `v`.
    pub(crate) fn integrity_incident(
        caller: &Caller,
        v: &crate::db::VersionRow,
        what: String,
        details: serde_json::Value,
    ) -> warden_core::entry::Event {
        let mut ev =
            Self::version_event(caller, Action::Load, v, "deny", "integrity-failure".into());
        ev.details = Some(
            json!({"severity": "CRITICAL", "type": "integrity", "what": what, "evidence": details}),
        );
        ev
    }

    /// The checks before bytes are read: the policy (a deny is recorded), then the
    /// signed manifest against the registrant's registered key and the recorded root
    /// digest (a failure is recorded as a CRITICAL incident).
    pub(crate) async fn prepare_access(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
        file: Option<&str>,
    ) -> Result<Prepared, RegistryError> {
        let v = self.resolve(caller, Action::Load, model, selector).await?;
        let decision = self
            .authorize(caller, Action::Load, &Self::version_facts(&v), None)
            .await?;
        let incident = |what: String, details: serde_json::Value| {
            (
                what.clone(),
                Self::integrity_incident(caller, &v, what, details),
            )
        };
        // The signed manifest, checked against the registrant's registered key, is the
        // reference; the database rows must agree with it.
        let verified = match self.verified_manifest(&v).await {
            Ok(m) if m.root() == v.root_digest => m,
            Ok(m) => {
                let (what, ev) = incident(
                    "the recorded root digest differs from the signed manifest".into(),
                    json!({"recorded": v.root_digest, "signed": m.root()}),
                );
                self.audit("incident", &ev).await?;
                return Err(RegistryError::Integrity { what });
            }
            // The registry's database unreachable is an outage (503), not a bad manifest.
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => {
                let (what, ev) = incident(
                    format!("the signed manifest does not verify: {e}"),
                    json!({}),
                );
                self.audit("incident", &ev).await?;
                return Err(RegistryError::Integrity { what });
            }
        };
        let wanted: Vec<manifest::Resource> = match file {
            Some(name) => {
                let r = verified
                    .resources()
                    .iter()
                    .find(|r| r.name == name)
                    .ok_or_else(|| RegistryError::UnknownFile {
                        model: v.model.clone(),
                        version: v.version.clone(),
                        file: name.to_owned(),
                    })?;
                vec![r.clone()]
            }
            None => verified.resources().to_vec(),
        };
        Ok(Prepared {
            v,
            decision,
            wanted,
        })
    }

    /// Loads `model` at `selector` (one file when `file` is given) for `caller`.
    pub async fn load(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
        file: Option<&str>,
        staging: &Staging,
    ) -> Result<LoadedModel, RegistryError> {
        let prepared = self.prepare_access(caller, model, selector, file).await?;
        self.deliver(caller, prepared, staging).await
    }

    /// The second half of a load, after the policy allowed it and the manifest
    /// verified: every wanted file read into staging while hashed (a mismatch is an
    /// incident), then the access entry made durable.
    pub(crate) async fn deliver(
        &self,
        caller: &Caller,
        prepared: Prepared,
        staging: &Staging,
    ) -> Result<LoadedModel, RegistryError> {
        let Prepared {
            v,
            decision,
            wanted,
        } = prepared;
        let incident = |what: String, details: serde_json::Value| {
            (
                what.clone(),
                Self::integrity_incident(caller, &v, what, details),
            )
        };
        if *staging == Staging::Memory
            && let Some(r) = wanted
                .iter()
                .find(|r| r.size > crate::blobs::MAX_MEMORY_LOAD)
        {
            return Err(RegistryError::invalid(
                "load",
                format!(
                    "{} is {} bytes, more than a load stages in memory; load it to a file",
                    r.name, r.size
                ),
            ));
        }
        let mut files = Vec::with_capacity(wanted.len());
        for r in &wanted {
            let read = match self.blobs.open(&r.digest).await {
                Ok(reader) => match staging {
                    Staging::Memory => reader
                        .drain_to_memory(r.size)
                        .await
                        .map(|(d, n, v)| (d, n, Content::Memory(v))),
                    Staging::Dir(dir) => match tempfile::Builder::new()
                        .prefix(".warden-load-")
                        .tempfile_in(dir)
                    {
                        Ok(file) => reader
                            .drain(FileSink { file })
                            .await
                            .map(|(d, n, s)| (d, n, Content::File(s.file))),
                        Err(e) => {
                            return Err(RegistryError::io("create a staging file in", dir)(e));
                        }
                    },
                },
                Err(e) => Err(e),
            };
            let (digest, size, content) = match read {
                Ok(x) => x,
                // A store that fails or stalls is an outage (503), not damaged bytes:
                // no incident, and the load may be retried.
                Err(e) if e.is_unavailable() => return Err(e),
                Err(err) => {
                    let (what, ev) = incident(
                        format!("{}: the stored blob cannot be read: {err}", r.name),
                        json!({"file": r.name, "expected": r.digest}),
                    );
                    self.audit("incident", &ev).await?;
                    return Err(RegistryError::Integrity { what });
                }
            };
            if digest != r.digest || size != r.size {
                let (what, ev) = incident(
                    format!("{}: stored bytes do not match the signed digest", r.name),
                    json!({"file": r.name, "expected": r.digest, "actual": digest,
                           "expected_size": r.size, "actual_size": size}),
                );
                self.audit("incident", &ev).await?;
                return Err(RegistryError::Integrity { what });
            }
            files.push(LoadedFile {
                name: r.name.clone(),
                digest,
                size,
                content,
            });
        }
        let mut ev = Self::version_event(caller, Action::Load, &v, "allow", decision.reason());
        ev.details = Some(json!({
            "files": files.iter().map(|f| json!({"name": f.name, "digest": f.digest, "size": f.size})).collect::<Vec<_>>(),
            "state": v.state,
        }));
        // Fail closed: without a durable access entry there is no LoadedModel.
        let receipt = self.audit("model.access", &ev).await?;
        Ok(LoadedModel::new(
            receipt,
            v.model,
            v.version,
            v.root_digest,
            files,
        ))
    }
}
