//! The model registry and its audited load path, as a Python class: the data
//! directory's `SecureModelManager` (policy, registry database, blob store) over a
//! session with its writer. Every method is policy-checked and recorded exactly as the
//! `warden model` commands are; the GIL is released while the policy decides, while
//! blobs are read and hashed, and while receipts are awaited.

use crate::blob::Blob;
use crate::errors::{InvalidInput, WardenError, registry_error};
use crate::session::{CLIENT, connect};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use warden_policy::{Action, VersionState};
use warden_registry::manifest::Provenance;
use warden_registry::{
    Caller, Registration, RegistryError, SecureModelManager, Selector, Staging, keyfile, open,
};
use warden_store::config::DataDir;
use warden_store::journal::Journal;
use warden_store::ledger::Receipt;

fn receipt(r: &Receipt) -> (u64, u64) {
    (r.index, r.size)
}

fn to_json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| WardenError::new_err(e.to_string()))
}

/// A data directory's model registry, acting as one principal.
#[pyclass(frozen, module = "warden._native")]
#[derive(Debug)]
pub struct Registry {
    rt: tokio::runtime::Runtime,
    manager: Mutex<Option<Arc<SecureModelManager>>>,
    principal: String,
    dir: DataDir,
}

impl Registry {
    fn manager(&self) -> PyResult<Arc<SecureModelManager>> {
        self.manager
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .ok_or_else(|| WardenError::new_err("this registry session is closed"))
    }

    fn caller(&self, mfa: bool) -> Caller {
        let mut c = Caller::local(&self.principal);
        c.mfa = mfa;
        c.user_agent = Some(CLIENT.to_owned());
        c
    }

    /// Runs `f` with the manager on the runtime, without the GIL.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl AsyncFnOnce(&SecureModelManager) -> Result<T, warden_registry::RegistryError> + Send,
    ) -> PyResult<T> {
        let m = self.manager()?;
        py.detach(|| self.rt.block_on(f(&m)))
            .map_err(registry_error)
    }
}

fn selector(s: &str) -> PyResult<Selector> {
    if s.is_empty() {
        return Err(InvalidInput::new_err(
            "the version or alias must not be empty",
        ));
    }
    Ok(Selector::parse(s))
}

fn state(s: &str) -> PyResult<VersionState> {
    match VersionState::parse(s) {
        Some(t @ (VersionState::Validated | VersionState::Production)) => Ok(t),
        _ => Err(InvalidInput::new_err(format!(
            "promote to \"validated\" or \"production\", not {s:?}"
        ))),
    }
}

#[pymethods]
impl Registry {
    /// Opens the registry of `data_dir` with a session to its writer (started on
    /// demand when none runs), acting as `acting_as` or the principal bound to this
    /// process's operating-system user. The policy is validated first.
    #[new]
    #[pyo3(signature = (data_dir, *, acting_as=None, warden_bin=None, deadline_ms=30_000))]
    fn new(
        py: Python<'_>,
        data_dir: PathBuf,
        acting_as: Option<String>,
        warden_bin: Option<PathBuf>,
        deadline_ms: u64,
    ) -> PyResult<Self> {
        let dir = DataDir::new(&data_dir);
        let cfg = dir.read_config().map_err(|e| {
            InvalidInput::new_err(format!(
                "{} is not a readable Warden data directory ({e}): run `warden init` first",
                data_dir.display()
            ))
        })?;
        let policy = open::policy(&dir, &cfg).map_err(registry_error)?;
        let remote = py.detach(|| connect(&dir, acting_as.as_deref(), warden_bin, deadline_ms))?;
        let principal = remote.principal().to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| WardenError::new_err(format!("starting the async runtime: {e}")))?;
        let journal: Arc<dyn Journal> = Arc::new(remote);
        let m = py
            .detach(|| rt.block_on(open::manager(&dir, &cfg, journal, policy)))
            .map_err(registry_error)?;
        Ok(Self {
            rt,
            manager: Mutex::new(Some(Arc::new(m))),
            principal,
            dir,
        })
    }

    /// The principal this session acts as.
    #[getter]
    fn principal(&self) -> String {
        self.principal.clone()
    }

    /// Loads one file of `model@selector` (the version's only file, or `file`) into
    /// memory: policy-checked, every byte hashed against the signed manifest while it
    /// is read, the access durable in the ledger before anything is returned. Returns
    /// `(blob, info_json)`; the blob exports its bytes read-only, with no copy.
    #[pyo3(signature = (model, selector, *, file=None, mfa=false))]
    fn load_bytes(
        &self,
        py: Python<'_>,
        model: &str,
        selector: &str,
        file: Option<&str>,
        mfa: bool,
    ) -> PyResult<(Blob, String)> {
        let sel = self::selector(selector)?;
        let caller = self.caller(mfa);
        let l = self.run(py, async |m| {
            // Admitted first, so a version of several files is refused before any is
            // read or any access recorded.
            let admitted = m.admit_load(&caller, model, &sel, file).await?;
            let files = admitted.files();
            if files.len() != 1 {
                return Err(RegistryError::Invalid {
                    what: "load",
                    detail: format!(
                        "{model}@{} has {} files; name one with file=, or load to a directory with to=",
                        admitted.version(),
                        files.len()
                    ),
                });
            }
            m.load_admitted(&caller, admitted, &Staging::Memory).await
        })?;
        let info = serde_json::json!({
            "model": l.model(), "version": l.version(), "root_digest": l.root_digest(),
            "file": l.files().first().map(|f| f.name()),
            "digest": l.files().first().map(|f| f.digest()),
            "size": l.files().first().map(|f| f.size()),
            "index": l.receipt().index, "checkpoint_size": l.receipt().size,
        })
        .to_string();
        let data = l
            .into_single_bytes()
            .ok_or_else(|| WardenError::new_err("the load returned no bytes"))?;
        Ok((Blob::new(data), info))
    }

    /// Loads `model@selector` (every file, or `file`) to `dest`: the file itself when
    /// one file is loaded and `dest` is not a directory, else files under `dest`.
    /// Verified in private staging beside `dest` before anything is renamed into
    /// place; an existing file is never replaced. Returns `(paths, info_json)`.
    #[pyo3(signature = (model, selector, dest, *, file=None, mfa=false))]
    fn load_to(
        &self,
        py: Python<'_>,
        model: &str,
        selector: &str,
        dest: PathBuf,
        file: Option<&str>,
        mfa: bool,
    ) -> PyResult<(Vec<PathBuf>, String)> {
        let sel = self::selector(selector)?;
        let caller = self.caller(mfa);
        let stage = if dest.is_dir() {
            dest.clone()
        } else {
            match dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(p) => p.to_path_buf(),
                None => PathBuf::from("."),
            }
        };
        if !stage.is_dir() {
            return Err(InvalidInput::new_err(format!(
                "{} is not a directory",
                stage.display()
            )));
        }
        self.run(py, async |m| {
            let l = m
                .load(&caller, model, &sel, file, &Staging::Dir(stage))
                .await?;
            let info = serde_json::json!({
                "model": l.model(), "version": l.version(), "root_digest": l.root_digest(),
                "files": l.files().iter().map(|f| serde_json::json!(
                    {"name": f.name(), "digest": f.digest(), "size": f.size()})).collect::<Vec<_>>(),
                "index": l.receipt().index, "checkpoint_size": l.receipt().size,
            })
            .to_string();
            Ok((l.persist(&dest)?, info))
        })
    }

    /// Registers `path` (a file or a directory) as `model@version`, signed with
    /// `key_file` (default: the principal's key in the data directory). `provenance`
    /// is the JSON of the signed provenance record. Returns the version's JSON.
    #[pyo3(signature = (model, version, path, *, key_file=None, provenance=None))]
    fn register(
        &self,
        py: Python<'_>,
        model: &str,
        version: &str,
        path: PathBuf,
        key_file: Option<PathBuf>,
        provenance: Option<&str>,
    ) -> PyResult<String> {
        let provenance: Provenance = match provenance {
            Some(p) => serde_json::from_str(p)
                .map_err(|e| InvalidInput::new_err(format!("provenance: {e}")))?,
            None => Provenance::default(),
        };
        if !path.exists() {
            return Err(InvalidInput::new_err(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let key_path = key_file.unwrap_or_else(|| self.dir.principal_key(&self.principal));
        let key = py.detach(|| keyfile::read(&key_path)).map_err(|e| {
            InvalidInput::new_err(format!("the signing key {}: {e}", key_path.display()))
        })?;
        let caller = self.caller(false);
        let info = self.run(py, async |m| {
            let reg = Registration {
                model,
                version,
                path: &path,
                provenance,
            };
            m.register(&caller, reg, &key, &|_, _| {})
                .await
                .map(|(info, _)| info)
        })?;
        to_json(&info)
    }

    /// Promotes `model@selector` to `to` ("validated", with `evidence` JSON, or
    /// "production"). Returns the receipt `(index, checkpoint_size)`.
    #[pyo3(signature = (model, selector, to, *, evidence=None, mfa=false))]
    fn promote(
        &self,
        py: Python<'_>,
        model: &str,
        selector: &str,
        to: &str,
        evidence: Option<&str>,
        mfa: bool,
    ) -> PyResult<(u64, u64)> {
        let sel = self::selector(selector)?;
        let target = state(to)?;
        let evidence = evidence
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|e| InvalidInput::new_err(format!("evidence: {e}")))?;
        let caller = self.caller(mfa);
        self.run(py, async |m| {
            m.promote(&caller, model, &sel, target, evidence).await
        })
        .map(|r| receipt(&r))
    }

    /// Revokes `model@selector` (final) with `reason`. Returns the receipt.
    #[pyo3(signature = (model, selector, reason, *, mfa=false))]
    fn revoke(
        &self,
        py: Python<'_>,
        model: &str,
        selector: &str,
        reason: &str,
        mfa: bool,
    ) -> PyResult<(u64, u64)> {
        let sel = self::selector(selector)?;
        let caller = self.caller(mfa);
        self.run(py, async |m| m.revoke(&caller, model, &sel, reason).await)
            .map(|r| receipt(&r))
    }

    /// Whether this principal may `action` `model` (at `selector`, when given); the
    /// decision is recorded. Returns `(allowed, reason)`.
    #[pyo3(signature = (action, model, selector=None, *, mfa=false))]
    fn check(
        &self,
        py: Python<'_>,
        action: &str,
        model: &str,
        selector: Option<&str>,
        mfa: bool,
    ) -> PyResult<(bool, String)> {
        let action = Action::parse(action).map_err(|e| InvalidInput::new_err(e.to_string()))?;
        let sel = selector.map(self::selector).transpose()?;
        let caller = self.caller(mfa);
        let d = self.run(py, async |m| {
            m.check(&caller, action, model, sel.as_ref(), None).await
        })?;
        Ok((d.allowed, d.reason()))
    }

    /// The version `model@selector` as JSON (a `read`, recorded when denied).
    fn show(&self, py: Python<'_>, model: &str, selector: &str) -> PyResult<String> {
        let sel = self::selector(selector)?;
        let caller = self.caller(false);
        let info = self.run(py, async |m| m.show(&caller, model, &sel).await)?;
        to_json(&info)
    }

    /// Whether `digest` (SHA-256, hex) is a blob in this registry's store: the bytes
    /// of a registered (or uploaded) model file.
    fn holds_blob(&self, digest: &str) -> PyResult<bool> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidInput::new_err("a digest is 64 hexadecimal digits"));
        }
        let m = self.manager()?;
        Ok(m.blobs()
            .local_path(&digest.to_ascii_lowercase())
            .is_some_and(|p| p.is_file()))
    }

    /// Closes the registry database and the session with the writer.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.manager.lock().ok().and_then(|mut m| m.take());
        if let Some(m) = taken.and_then(|a| Arc::try_unwrap(a).ok()) {
            py.detach(|| self.rt.block_on(m.close()))
                .map_err(registry_error)?;
        }
        Ok(())
    }
}
