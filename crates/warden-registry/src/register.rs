//! Registration: signed manifests verified against their signer's registered key, blob
//! uploads, and the registration of a version (local or from a client-signed envelope).

use crate::db::{Db, FileRow, PrincipalRow, VersionRow};
use crate::error::RegistryError;
use crate::keyfile::PrincipalKey;
use crate::manager::{Caller, Registration, SecureModelManager, VerifiedEntry, VersionInfo};
use crate::manifest::{self, Resource};
use crate::names::{check_name, looks_like_commit_id};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::crypto::{SigAlg, VerifyingKey};
use warden_policy::{Action, Decision, ResourceFacts, VersionState};
use warden_store::ledger::Receipt;

impl SecureModelManager {
    /// Verifies `v`'s signed manifest against its registrant's registered key. A
    /// verification is reused only for byte-identical inputs (registrant, stored key,
    /// envelope): the same bytes verify the same way.
    pub(crate) async fn verified_manifest(
        &self,
        v: &VersionRow,
    ) -> Result<manifest::VerifiedManifest, RegistryError> {
        let p =
            self.db.principal(&v.registrant).await?.ok_or_else(|| {
                RegistryError::Signer(format!("unknown signer {:?}", v.registrant))
            })?;
        let stored_key = (p.signing_alg.clone(), p.signing_key.clone());
        let slot = (v.model.clone(), v.version.clone());
        if let Some(hit) = self.manifests.get(&slot, 0)
            && hit.registrant == v.registrant
            && hit.key == stored_key
            && hit.envelope == v.manifest
        {
            return Ok(hit.verified.clone());
        }
        let k = Self::stored_key(&p)?;
        let env = manifest::parse_envelope(v.manifest.as_bytes())?;
        let verified = manifest::verify(&env, &v.registrant, &k, &v.model, &v.version)?;
        self.manifests.put(
            &self.manifests_generation,
            0,
            slot,
            Arc::new(VerifiedEntry {
                registrant: v.registrant.clone(),
                key: stored_key,
                envelope: v.manifest.clone(),
                verified: verified.clone(),
            }),
        );
        Ok(verified)
    }

    pub(crate) fn stored_key(p: &PrincipalRow) -> Result<VerifyingKey, RegistryError> {
        let name = &p.name;
        let (Some(alg), Some(key)) = (&p.signing_alg, &p.signing_key) else {
            return Err(RegistryError::Signer(format!(
                "{name} has no registered signing key"
            )));
        };
        let alg = SigAlg::parse(alg)?;
        let bytes = B64
            .decode(key)
            .map_err(|_| RegistryError::Signer(format!("{name}'s stored key is not base64")))?;
        Ok(VerifyingKey::from_bytes(alg, &bytes)?)
    }

    /// Verifies a training record (`warden training record`) against its signer's
    /// registered key; returns the signer and the statement.
    pub async fn verify_training_record(
        &self,
        env: &manifest::Envelope,
    ) -> Result<(String, manifest::TrainingStatement), RegistryError> {
        let signer = manifest::claimed_signer(env)
            .ok_or_else(|| RegistryError::Signer("the record has no single signature".into()))?;
        let key = self.signer_key(&signer).await?;
        let st = manifest::verify_training(env, &signer, &key)?;
        Ok((signer, st))
    }

    pub(crate) async fn signer_key(&self, name: &str) -> Result<VerifyingKey, RegistryError> {
        let p = self
            .db
            .principal(name)
            .await?
            .ok_or_else(|| RegistryError::Signer(format!("unknown signer {name:?}")))?;
        Self::stored_key(&p)
    }

    // ---------------------------------------------------------------- registry

    /// Registers `path` (a file or a directory) as `model@version`, signed by the
    /// caller's key. `progress(done, total)` reports hashed bytes.
    pub async fn register(
        &self,
        caller: &Caller,
        reg: Registration<'_>,
        key: &PrincipalKey,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(VersionInfo, Receipt), RegistryError> {
        let Registration {
            model,
            version,
            path,
            provenance,
        } = reg;
        let decision = self.may_register(caller, model, version).await?;
        if key.principal != caller.principal {
            return Err(RegistryError::Signer(format!(
                "the key belongs to {}, not to {}",
                key.principal, caller.principal
            )));
        }
        let files = collect_files(path)?;
        let total: u64 = files.iter().map(|f| f.2).sum();
        let mut done_before = 0u64;
        let mut resources = Vec::with_capacity(files.len());
        for (name, file, size) in &files {
            let base = done_before;
            let blob = self
                .blobs
                .put_file(file, &|n| progress(base + n, total))
                .await?;
            done_before += size;
            resources.push(Resource {
                name: name.clone(),
                algorithm: "sha256".into(),
                digest: blob.digest,
                size: blob.size,
            });
        }
        if let Some(a) = &provenance.attestation {
            let root = manifest::root_digest(&resources);
            if a.root != root {
                return Err(RegistryError::invalid(
                    "provenance",
                    format!(
                        "the training record attests files with root {}, but these files have root {root}",
                        a.root
                    ),
                ));
            }
        }
        let st = manifest::statement(model, version, resources, provenance);
        let env = manifest::sign(&st, &caller.principal, &key.key)?;
        self.commit_registration(caller, model, version, &env, &decision, true)
            .await
    }

    /// Registers `model@version` from a manifest the registrant signed elsewhere (the
    /// HTTP API): every file it names must already be in the blob store with its
    /// digest and size.
    pub async fn register_signed(
        &self,
        caller: &Caller,
        model: &str,
        version: &str,
        envelope: &manifest::Envelope,
    ) -> Result<(VersionInfo, Receipt), RegistryError> {
        let decision = self.may_register(caller, model, version).await?;
        self.commit_registration(caller, model, version, envelope, &decision, false)
            .await
    }

    /// Stores one file for a later [`Self::register_signed`]: allowed when the caller may
    /// register versions of `model`; streamed into the blob store while hashing, kept
    /// only when its SHA-256 is `expected` and it is at most `max` bytes; recorded as a
    /// `registry.upload` entry.
    pub async fn upload<S, E>(
        &self,
        caller: &Caller,
        model: &str,
        expected: &str,
        max: u64,
        mut body: S,
    ) -> Result<(crate::blobs::StoredBlob, Receipt), RegistryError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt as _;
        check_name("model name", model)?;
        if expected.len() != 64
            || !expected
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(RegistryError::invalid(
                "digest",
                "give the SHA-256 as 64 lowercase hex digits",
            ));
        }
        let facts = ResourceFacts::Model {
            name: model.to_owned(),
        };
        let decision = self
            .authorize(caller, Action::Register, &facts, None)
            .await?;
        let mut w = self.blobs.writer().await?;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    w.abort().await;
                    return Err(RegistryError::invalid(
                        "upload",
                        format!("the body was cut short: {e}"),
                    ));
                }
            };
            if w.size().saturating_add(chunk.len() as u64) > max {
                w.abort().await;
                return Err(RegistryError::TooLarge { limit: max });
            }
            if let Err(e) = w.write(&chunk).await {
                w.abort().await;
                return Err(e);
            }
        }
        let blob = w.finish(Some(expected)).await?;
        let mut ev = Self::event(caller, Action::Register);
        ev.model = Some(model.to_owned());
        ev.decision = Some("allow".into());
        ev.reason = Some(decision.reason());
        ev.digest = Some(format!("sha256:{}", blob.digest));
        ev.details = Some(json!({"op": "upload", "size": blob.size}));
        let receipt = self.audit("registry.upload", &ev).await?;
        Ok((blob, receipt))
    }

    /// The checks before a registration: names, the policy, and that the version is new.
    pub(crate) async fn may_register(
        &self,
        caller: &Caller,
        model: &str,
        version: &str,
    ) -> Result<Decision, RegistryError> {
        check_name("model name", model)?;
        check_name("version", version)?;
        if version == "production" || version == "latest" || version == "main" {
            return Err(RegistryError::invalid(
                "version",
                format!("{version:?} is a reserved alias"),
            ));
        }
        if looks_like_commit_id(version) {
            return Err(RegistryError::invalid(
                "version",
                format!("{version:?} looks like a commit id, which pins a version"),
            ));
        }
        let model_facts = ResourceFacts::Model {
            name: model.to_owned(),
        };
        let decision = self
            .authorize(caller, Action::Register, &model_facts, None)
            .await?;
        if self.db.version(model, version).await?.is_some() {
            return Err(RegistryError::Exists {
                what: "version",
                name: format!("{model}@{version}"),
            });
        }
        // A version named like an existing alias would take over that alias's callers.
        if self.db.alias(model, version).await?.is_some() {
            return Err(RegistryError::Exists {
                what: "alias",
                name: format!("{model}@{version}"),
            });
        }
        Ok(decision)
    }

    /// Verifies the signed manifest against the caller's registered key, checks that
    /// every file's blob is stored, records the registration and commits it.
    pub(crate) async fn commit_registration(
        &self,
        caller: &Caller,
        model: &str,
        version: &str,
        env: &manifest::Envelope,
        decision: &Decision,
        attestation_checked: bool,
    ) -> Result<(VersionInfo, Receipt), RegistryError> {
        let registered = self.signer_key(&caller.principal).await?;
        // The registry accepts only what verifies against the registered key: a key
        // file that is not the caller's registered key is rejected here.
        let verified = manifest::verify(env, &caller.principal, &registered, model, version)?;
        // An attestation names a training record the registry verified (the local path
        // checks it before signing); a manifest signed elsewhere can only claim one.
        if !attestation_checked && verified.provenance().attestation.is_some() {
            return Err(RegistryError::invalid(
                "provenance",
                "a manifest signed elsewhere cannot carry a training attestation; register with the training record through `warden model register --provenance`",
            ));
        }
        let mut total = 0u64;
        for r in verified.resources() {
            match self.blobs.size(&r.digest).await? {
                Some(n) if n == r.size => total = total.saturating_add(n),
                _ => {
                    return Err(RegistryError::invalid(
                        "manifest",
                        format!(
                            "file {} (sha256:{}, {} bytes) has not been uploaded",
                            r.name, r.digest, r.size
                        ),
                    ));
                }
            }
        }
        let envelope = serde_json::to_string(env)
            .map_err(|e| RegistryError::Manifest(format!("encoding: {e}")))?;
        let now = self.now_secs();
        let row = VersionRow {
            model: model.to_owned(),
            version: version.to_owned(),
            state: VersionState::Registered.as_str().to_owned(),
            registrant: caller.principal.clone(),
            root_digest: verified.root().to_owned(),
            manifest: envelope,
            created_at: now,
            updated_at: now,
            validated_by: None,
            validation: None,
            approved_by: None,
            revoked_reason: None,
        };
        let file_rows: Vec<FileRow> = verified
            .resources()
            .iter()
            .map(|r| FileRow {
                name: r.name.clone(),
                digest: r.digest.clone(),
                size: i64::try_from(r.size).unwrap_or(i64::MAX),
            })
            .collect();
        let mut tx = self.db.begin().await?;
        Db::ensure_model(&mut tx, model, &caller.principal, now).await?;
        Db::insert_version(&mut tx, &row, &file_rows).await?;
        Db::set_alias(&mut tx, model, "latest", Some(version)).await?;
        let mut ev =
            Self::version_event(caller, Action::Register, &row, "allow", decision.reason());
        ev.details = Some(json!({
            "files": file_rows.len(), "bytes": total,
            "signer": manifest::key_id(&caller.principal, &registered),
            "provenance": verified.provenance(),
        }));
        let receipt = self.audit("registry.register", &ev).await?;
        self.db.commit(tx).await?;
        let info = self.info(&row).await?;
        Ok((info, receipt))
    }
}

/// Per-file SHA-256 of `path` (a file or a directory) in the manifest's form, sorted by
/// name: what `register` would sign, without storing anything. `progress(done, total)`
/// reports hashed bytes.
pub fn fingerprint(
    path: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Vec<Resource>, RegistryError> {
    use std::io::Read as _;
    let files = collect_files(path)?;
    let total: u64 = files.iter().map(|f| f.2).sum();
    let mut done = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(files.len());
    for (name, file, _) in &files {
        let mut f = std::fs::File::open(file).map_err(RegistryError::io("open", file))?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(RegistryError::io("read", file))?;
            if n == 0 {
                break;
            }
            ctx.update(buf.get(..n).unwrap_or_default());
            size += n as u64;
            done += n as u64;
            progress(done, total);
        }
        out.push(Resource {
            name: name.clone(),
            algorithm: "sha256".into(),
            digest: warden_core::hex::encode(ctx.finish().as_ref()),
            size,
        });
    }
    Ok(out)
}

/// The files under `path`: `(name relative to path, full path, size)`, sorted by name.
/// A single file is named by its file name. Symbolic links are refused. (A client that
/// registers through the HTTP API names its files the same way.)
pub fn collect_files(path: &Path) -> Result<Vec<(String, PathBuf, u64)>, RegistryError> {
    let meta = std::fs::symlink_metadata(path).map_err(RegistryError::io("stat", path))?;
    let mut out = Vec::new();
    if meta.is_file() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| RegistryError::invalid("path", format!("{}", path.display())))?;
        manifest::check_file_name(name)?;
        out.push((name.to_owned(), path.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        walk(path, "", &mut out)?;
    } else {
        return Err(RegistryError::invalid(
            "path",
            format!("{} is not a regular file or directory", path.display()),
        ));
    }
    if out.is_empty() {
        return Err(RegistryError::invalid(
            "path",
            format!("{} holds no files", path.display()),
        ));
    }
    if out.len() > manifest::MAX_FILES {
        return Err(RegistryError::invalid(
            "path",
            format!("more than {} files", manifest::MAX_FILES),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf, u64)>,
) -> Result<(), RegistryError> {
    for e in std::fs::read_dir(dir).map_err(RegistryError::io("list", dir))? {
        let e = e.map_err(RegistryError::io("list", dir))?;
        let p = e.path();
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| RegistryError::invalid("file name", format!("{n:?} is not UTF-8")))?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ft = e.file_type().map_err(RegistryError::io("stat", &p))?;
        if ft.is_symlink() {
            return Err(RegistryError::invalid(
                "path",
                format!("{} is a symbolic link; links are not followed", p.display()),
            ));
        } else if ft.is_dir() {
            walk(&p, &rel, out)?;
        } else if ft.is_file() {
            manifest::check_file_name(&rel)?;
            let len = e.metadata().map_err(RegistryError::io("stat", &p))?.len();
            out.push((rel, p, len));
        }
    }
    Ok(())
}
