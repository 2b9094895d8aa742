//! The load path into a buffer the caller allocates (a Python `bytes`, so the verified
//! bytes reach the interpreter with no second copy). The same checks as
//! [`SecureModelManager::load`], in two steps because the buffer's size must be known
//! before it exists:
//!
//! ```text
//! admit_load: policy (a deny is recorded) ─▶ signed manifest verified ─▶ AdmittedLoad (size)
//! load_into:  read + hash into the buffer ─▶ mismatch: `incident`, buffer zeroed ─▶ Integrity
//!             ─▶ `model.access` durable (receipt) ─▶ LoadedInto;  no receipt: buffer zeroed
//! ```
//!
//! Bypass stays unrepresentable: on every error the buffer is zeroed before
//! [`SecureModelManager::load_into`] returns, so the caller holds model bytes only next
//! to a receipt.

use crate::error::RegistryError;
use crate::load::Prepared;
use crate::manager::{Caller, SecureModelManager, Selector};
use serde_json::json;
use warden_policy::Action;
use warden_store::ledger::Receipt;

/// A load the policy allowed and whose signed manifest verified; no byte read yet.
#[derive(Debug)]
pub struct AdmittedLoad {
    prepared: Prepared,
}

impl AdmittedLoad {
    fn resource(&self) -> Option<&crate::manifest::Resource> {
        self.prepared.wanted.first()
    }
    /// The file's size in bytes, as signed: the buffer [`SecureModelManager::load_into`]
    /// takes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.resource().map_or(0, |r| r.size)
    }
    /// The file's name in the manifest.
    #[must_use]
    pub fn name(&self) -> &str {
        self.resource().map_or("", |r| r.name.as_str())
    }
    /// The version admitted (an alias resolved).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.prepared.v.version
    }
}

/// A file loaded into the caller's buffer, with the receipt of its access entry.
#[derive(Debug, Clone)]
pub struct LoadedInto {
    pub receipt: Receipt,
    pub model: String,
    pub version: String,
    pub name: String,
    /// SHA-256 of the bytes, as signed.
    pub digest: String,
    pub size: u64,
    /// The version's root digest (over every file of the manifest).
    pub root_digest: String,
}

impl SecureModelManager {
    /// The checks of a load before any byte is read: the policy (a denial is recorded
    /// and returned) and the signed manifest (a failure is a recorded incident). The
    /// load is of one file: `file`, or the version's only file.
    pub async fn admit_load(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
        file: Option<&str>,
    ) -> Result<AdmittedLoad, RegistryError> {
        let prepared = self.prepare_access(caller, model, selector, file).await?;
        if prepared.wanted.len() != 1 {
            return Err(RegistryError::invalid(
                "load",
                format!(
                    "{}@{} has {} files; name the one to load, or load the version to a directory",
                    prepared.v.model,
                    prepared.v.version,
                    prepared.wanted.len()
                ),
            ));
        }
        Ok(AdmittedLoad { prepared })
    }

    /// Reads the admitted file into `buf` (exactly [`AdmittedLoad::size`] bytes) while
    /// hashing it, then makes the access entry durable. A local blob is read on the
    /// calling thread: call this where blocking is allowed. On any error `buf` is
    /// zeroed.
    pub async fn load_into(
        &self,
        caller: &Caller,
        admitted: AdmittedLoad,
        buf: &mut [u8],
    ) -> Result<LoadedInto, RegistryError> {
        let r = self.fill(caller, admitted, buf).await;
        if r.is_err() {
            buf.fill(0);
        }
        r
    }

    async fn fill(
        &self,
        caller: &Caller,
        admitted: AdmittedLoad,
        buf: &mut [u8],
    ) -> Result<LoadedInto, RegistryError> {
        let Prepared {
            v,
            decision,
            wanted,
        } = admitted.prepared;
        let Some(r) = wanted.into_iter().next() else {
            return Err(RegistryError::invalid("load", "no file admitted"));
        };
        if buf.len() as u64 != r.size {
            return Err(RegistryError::invalid(
                "load",
                format!(
                    "the buffer holds {} bytes; {} is {}",
                    buf.len(),
                    r.name,
                    r.size
                ),
            ));
        }
        let read = match self.blobs.open(&r.digest).await {
            Ok(reader) => reader.drain_into(buf).await,
            Err(e) => Err(e),
        };
        let failure = match read {
            Ok((digest, size)) if digest == r.digest && size == r.size => None,
            Ok((digest, size)) => Some((
                format!("{}: stored bytes do not match the signed digest", r.name),
                json!({"file": r.name, "expected": r.digest, "actual": digest,
                       "expected_size": r.size, "actual_size": size}),
            )),
            Err(err) => Some((
                format!("{}: the stored blob cannot be read: {err}", r.name),
                json!({"file": r.name, "expected": r.digest}),
            )),
        };
        if let Some((what, details)) = failure {
            let ev = Self::integrity_incident(caller, &v, what.clone(), details);
            self.audit("incident", &ev).await?;
            return Err(RegistryError::Integrity { what });
        }
        let mut ev = Self::version_event(caller, Action::Load, &v, "allow", decision.reason());
        ev.details = Some(json!({
            "files": [{"name": r.name, "digest": r.digest, "size": r.size}],
            "state": v.state,
        }));
        // Fail closed: without a durable access entry the buffer is zeroed.
        let receipt = self.audit("model.access", &ev).await?;
        Ok(LoadedInto {
            receipt,
            model: v.model,
            version: v.version,
            name: r.name,
            digest: r.digest,
            size: r.size,
            root_digest: v.root_digest,
        })
    }
}
