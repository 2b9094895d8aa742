//! A load in two steps, for callers that must know what they will receive before any
//! byte is read (the Python SDK's `load`, which returns one file's bytes):
//!
//! ```text
//! admit_load:    policy (a deny is recorded) ─▶ signed manifest verified ─▶ AdmittedLoad
//! load_admitted: the rest of SecureModelManager::load (read + hash, incident or
//!                durable `model.access`) ─▶ LoadedModel
//! ```
//!
//! An [`AdmittedLoad`] carries no byte of the model, so bypass stays unrepresentable:
//! bytes still come only inside a [`LoadedModel`], after its receipt.

use crate::error::RegistryError;
use crate::load::{LoadedModel, Prepared, Staging};
use crate::manager::{Caller, SecureModelManager, Selector};

/// A load the policy allowed and whose signed manifest verified; no byte read yet.
#[derive(Debug)]
pub struct AdmittedLoad {
    prepared: Prepared,
}

impl AdmittedLoad {
    /// The version admitted (an alias resolved).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.prepared.v.version
    }
    /// The files the load will deliver: `(name, size)` as signed.
    #[must_use]
    pub fn files(&self) -> Vec<(&str, u64)> {
        self.prepared
            .wanted
            .iter()
            .map(|r| (r.name.as_str(), r.size))
            .collect()
    }
}

impl SecureModelManager {
    /// The checks of a load before any byte is read: the policy (a denial is recorded
    /// and returned) and the signed manifest (a failure is a recorded incident).
    pub async fn admit_load(
        &self,
        caller: &Caller,
        model: &str,
        selector: &Selector,
        file: Option<&str>,
    ) -> Result<AdmittedLoad, RegistryError> {
        let prepared = self.prepare_access(caller, model, selector, file).await?;
        Ok(AdmittedLoad { prepared })
    }

    /// Completes an admitted load, exactly as [`SecureModelManager::load`] does.
    pub async fn load_admitted(
        &self,
        caller: &Caller,
        admitted: AdmittedLoad,
        staging: &Staging,
    ) -> Result<LoadedModel, RegistryError> {
        self.deliver(caller, admitted.prepared, staging).await
    }
}
