//! Signed model manifests: an in-toto Statement v1 whose predicate has the OpenSSF
//! model-signing shape (one resource per file with its SHA-256, the subject digest a
//! root over the sorted file digests), carried in a DSSE envelope signed with ML-DSA.
//!
//! Warden adds two predicate fields: `model` (name and version, so a manifest cannot be
//! replayed under another version) and `provenance`.

use crate::crypto::{SigningKey, VerifyingKey};
use crate::error::CryptoError;
use crate::hex;
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a manifest was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// The signature, or who made it, is not acceptable.
    #[error("signer rejected: {0}")]
    Signer(String),
    /// The envelope or statement is malformed or inconsistent.
    #[error("manifest: {0}")]
    Invalid(String),
    /// A file name would leave the model directory or is not printable.
    #[error("invalid file name {0:?}")]
    FileName(String),
    #[error("signing: {0}")]
    Sign(#[from] CryptoError),
}

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Largest envelope accepted (a manifest of many thousands of files fits).
pub const MAX_ENVELOPE: usize = 16 << 20;
/// Most files in one model version.
pub const MAX_FILES: usize = 100_000;

/// One file of a model version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Path relative to the model root, `/`-separated.
    pub name: String,
    pub algorithm: String,
    /// Lowercase hex SHA-256.
    pub digest: String,
    /// Size in bytes (a Warden addition; the digest is what binds the content).
    pub size: u64,
}

/// Where a model came from. Every field is optional; unknown fields are rejected so a
/// misspelt field is not silently dropped from the signed record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<serde_json::Value>,
    /// `name@version` of the model this one was derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_model: Option<String>,
    /// The signed training record (`warden training record`) this provenance was taken
    /// from; the registry checks that it attests exactly the registered files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationRef>,
}

/// A reference to a verified training record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationRef {
    /// The principal who signed it.
    pub signer: String,
    /// SHA-256 of the envelope as given, hex.
    pub digest: String,
    /// The root digest of the files it attests.
    pub root: String,
}

/// A training data reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRef {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serialization {
    pub method: String,
    pub hash_type: String,
    pub allow_symlinks: bool,
    pub ignore_paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    pub serialization: Serialization,
    pub resources: Vec<Resource>,
    pub model: ModelRef,
    #[serde(default)]
    pub provenance: Provenance,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: SubjectDigest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectDigest {
    pub sha256: String,
}

/// The in-toto statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the statement bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

/// The root digest: SHA-256 over the 32-byte digests of every file, sorted by name.
#[must_use]
pub fn root_digest(resources: &[Resource]) -> String {
    let mut sorted: Vec<&Resource> = resources.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ctx = digest::Context::new(&digest::SHA256);
    for r in sorted {
        match hex::decode(r.digest.as_bytes()) {
            Ok(d) => ctx.update(&d),
            Err(_) => ctx.update(r.digest.as_bytes()),
        }
    }
    hex::encode(ctx.finish().as_ref())
}

/// DSSE pre-authentication encoding.
#[must_use]
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The key id a principal's key signs under: `<principal>:<first 8 bytes of
/// SHA-256(public key), hex>`.
#[must_use]
pub fn key_id(principal: &str, key: &VerifyingKey) -> String {
    let d = digest::digest(&digest::SHA256, key.as_bytes());
    format!(
        "{principal}:{}",
        hex::encode(d.as_ref().get(..8).unwrap_or_default())
    )
}

/// Builds the statement for `model@version` with `resources` (sorted by name here).
#[must_use]
pub fn statement(
    model: &str,
    version: &str,
    mut resources: Vec<Resource>,
    provenance: Provenance,
) -> Statement {
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    let root = root_digest(&resources);
    Statement {
        type_: STATEMENT_TYPE.to_owned(),
        subject: vec![Subject {
            name: model.to_owned(),
            digest: SubjectDigest { sha256: root },
        }],
        predicate_type: PREDICATE_TYPE.to_owned(),
        predicate: Predicate {
            serialization: Serialization {
                method: "files".to_owned(),
                hash_type: "sha256".to_owned(),
                allow_symlinks: false,
                ignore_paths: Vec::new(),
            },
            resources,
            model: ModelRef {
                name: model.to_owned(),
                version: version.to_owned(),
            },
            provenance,
        },
    }
}

/// Signs `st` as `principal` with `key`.
pub fn sign(st: &Statement, principal: &str, key: &SigningKey) -> Result<Envelope, ManifestError> {
    let payload =
        serde_json::to_vec(st).map_err(|e| ManifestError::Invalid(format!("encoding: {e}")))?;
    let sig = key.sign(&pae(PAYLOAD_TYPE, &payload))?;
    Ok(Envelope {
        payload_type: PAYLOAD_TYPE.to_owned(),
        payload: B64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(principal, &key.verifying_key()),
            sig: B64.encode(sig),
        }],
    })
}

/// A manifest whose signature was checked against its signer's registered key and whose
/// content is consistent. Only [`verify`] builds one.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedManifest {
    statement: Statement,
    signer: String,
}

impl VerifiedManifest {
    #[must_use]
    pub fn statement(&self) -> &Statement {
        &self.statement
    }
    #[must_use]
    pub fn signer(&self) -> &str {
        &self.signer
    }
    #[must_use]
    pub fn resources(&self) -> &[Resource] {
        &self.statement.predicate.resources
    }
    #[must_use]
    pub fn root(&self) -> &str {
        self.statement
            .subject
            .first()
            .map_or("", |s| s.digest.sha256.as_str())
    }
    #[must_use]
    pub fn provenance(&self) -> &Provenance {
        &self.statement.predicate.provenance
    }
}

/// Parses an envelope (size-limited, unknown fields rejected).
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, ManifestError> {
    if bytes.len() > MAX_ENVELOPE {
        return Err(ManifestError::Invalid(format!(
            "envelope is larger than {MAX_ENVELOPE} bytes"
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(format!("envelope: {e}")))
}

/// Checks `env`: exactly one signature, by `signer` (whose registered key is `key`),
/// valid over the DSSE encoding; then that the statement is a well-formed model-signing
/// statement whose subject is the root of its resources and which names `model@version`.
pub fn verify(
    env: &Envelope,
    signer: &str,
    key: &VerifyingKey,
    model: &str,
    version: &str,
) -> Result<VerifiedManifest, ManifestError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(ManifestError::Invalid(format!(
            "payload type {:?} is not {PAYLOAD_TYPE}",
            env.payload_type
        )));
    }
    let payload = signed_payload(env, signer, key)?;
    let st: Statement = serde_json::from_slice(&payload)
        .map_err(|e| ManifestError::Invalid(format!("statement: {e}")))?;
    check_statement(&st, model, version)?;
    Ok(VerifiedManifest {
        statement: st,
        signer: signer.to_owned(),
    })
}

/// The payload of `env` after checking its one signature: by `signer`'s registered
/// `key`, over the DSSE encoding.
fn signed_payload(
    env: &Envelope,
    signer: &str,
    key: &VerifyingKey,
) -> Result<Vec<u8>, ManifestError> {
    let [sig] = env.signatures.as_slice() else {
        return Err(ManifestError::Signer(format!(
            "expected exactly one signature, found {}",
            env.signatures.len()
        )));
    };
    let expected = key_id(signer, key);
    if sig.keyid != expected {
        return Err(ManifestError::Signer(format!(
            "signed by {:?}, not by {signer}'s registered key {expected:?}",
            sig.keyid
        )));
    }
    let payload = B64
        .decode(&env.payload)
        .map_err(|_| ManifestError::Invalid("payload is not base64".into()))?;
    let sigb = B64
        .decode(&sig.sig)
        .map_err(|_| ManifestError::Signer("signature is not base64".into()))?;
    key.verify(&pae(&env.payload_type, &payload), &sigb)
        .map_err(|_| ManifestError::Signer(format!("invalid signature for {signer}")))?;
    Ok(payload)
}

fn check_statement(st: &Statement, model: &str, version: &str) -> Result<(), ManifestError> {
    let bad = |m: String| Err(ManifestError::Invalid(m));
    if st.type_ != STATEMENT_TYPE || st.predicate_type != PREDICATE_TYPE {
        return bad("not an in-toto model-signing statement".into());
    }
    let p = &st.predicate;
    if p.model.name != model || p.model.version != version {
        return bad(format!(
            "the manifest is for {}@{}, not {model}@{version}",
            p.model.name, p.model.version
        ));
    }
    if p.resources.is_empty() || p.resources.len() > MAX_FILES {
        return bad(format!(
            "a manifest lists 1 to {MAX_FILES} files, not {}",
            p.resources.len()
        ));
    }
    let mut prev: Option<&str> = None;
    for r in &p.resources {
        check_file_name(&r.name)?;
        if prev.is_some_and(|p| p >= r.name.as_str()) {
            return bad("resources are not sorted by name, or a name repeats".into());
        }
        prev = Some(&r.name);
        if r.algorithm != "sha256"
            || r.digest.len() != 64
            || hex::validate(r.digest.as_bytes()).is_err()
        {
            return bad(format!("{}: digest is not a lowercase hex SHA-256", r.name));
        }
        if r.digest.bytes().any(|b| b.is_ascii_uppercase()) {
            return bad(format!("{}: digest is not lowercase", r.name));
        }
    }
    let [subject] = st.subject.as_slice() else {
        return bad("expected exactly one subject".into());
    };
    if subject.name != model || subject.digest.sha256 != root_digest(&p.resources) {
        return bad("the subject digest is not the root of the listed files".into());
    }
    Ok(())
}

/// A file name inside a model: relative, `/`-separated, no `.`/`..`/empty parts, no
/// control characters, at most 1024 bytes.
pub fn check_file_name(name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && !name.starts_with('/')
        && !name.chars().any(|c| c.is_control() || c == '\\')
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(ManifestError::FileName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigAlg;
    use zeroize::Zeroizing;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_seed(SigAlg::MlDsa65, Zeroizing::new([b; 32])).unwrap()
    }

    fn res(name: &str, fill: u8) -> Resource {
        Resource {
            name: name.into(),
            algorithm: "sha256".into(),
            digest: hex::encode(&[fill; 32]),
            size: 1,
        }
    }

    #[test]
    fn dsse_pae_matches_the_spec_example() {
        // The DSSE protocol document's worked example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn sign_then_verify_and_reject_tampering() {
        let k = key(1);
        let st = statement(
            "m",
            "1",
            vec![res("b", 2), res("a", 1)],
            Provenance::default(),
        );
        let env = sign(&st, "alice", &k).unwrap();
        let v = verify(&env, "alice", &k.verifying_key(), "m", "1").unwrap();
        assert_eq!(v.resources()[0].name, "a");
        // Another principal's key, another version, a changed payload: all rejected.
        assert!(matches!(
            verify(&env, "alice", &key(2).verifying_key(), "m", "1"),
            Err(ManifestError::Signer(_))
        ));
        assert!(verify(&env, "alice", &k.verifying_key(), "m", "2").is_err());
        let mut st2 = st.clone();
        st2.predicate.resources[0].digest = hex::encode(&[9; 32]);
        let mut forged = env.clone();
        forged.payload = B64.encode(serde_json::to_vec(&st2).unwrap());
        assert!(matches!(
            verify(&forged, "alice", &k.verifying_key(), "m", "1"),
            Err(ManifestError::Signer(_))
        ));
    }

    #[test]
    fn file_names_stay_inside_the_model() {
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a\\b", "a\nb"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        check_file_name("sub/dir/model.safetensors").unwrap();
    }
}

/// DSSE payload type of a training record.
pub const TRAINING_PAYLOAD_TYPE: &str = "application/vnd.warden.training-record+json";
/// Predicate type of a training record.
pub const TRAINING_PREDICATE_TYPE: &str = "https://warden.local/training-record/v1";

/// What `warden training record` attests: the model's files (the fingerprint), where
/// they came from, and when. An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingStatement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: TrainingPredicate,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingPredicate {
    /// The model's files, sorted by name (the subject digest is their root).
    pub resources: Vec<Resource>,
    pub provenance: Provenance,
    /// RFC 3339 time of recording.
    pub recorded_at: String,
}

/// Builds a training statement over `resources` (sorted here).
#[must_use]
pub fn training_statement(
    name: &str,
    mut resources: Vec<Resource>,
    provenance: Provenance,
    recorded_at: String,
) -> TrainingStatement {
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    TrainingStatement {
        type_: STATEMENT_TYPE.to_owned(),
        subject: vec![Subject {
            name: name.to_owned(),
            digest: SubjectDigest {
                sha256: root_digest(&resources),
            },
        }],
        predicate_type: TRAINING_PREDICATE_TYPE.to_owned(),
        predicate: TrainingPredicate {
            resources,
            provenance,
            recorded_at,
        },
    }
}

/// Signs a training statement as `principal`.
pub fn sign_training(
    st: &TrainingStatement,
    principal: &str,
    key: &SigningKey,
) -> Result<Envelope, ManifestError> {
    let payload =
        serde_json::to_vec(st).map_err(|e| ManifestError::Invalid(format!("encoding: {e}")))?;
    let sig = key.sign(&pae(TRAINING_PAYLOAD_TYPE, &payload))?;
    Ok(Envelope {
        payload_type: TRAINING_PAYLOAD_TYPE.to_owned(),
        payload: B64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(principal, &key.verifying_key()),
            sig: B64.encode(sig),
        }],
    })
}

/// The principal named by an envelope's only signature (`principal:keyhash`).
#[must_use]
pub fn claimed_signer(env: &Envelope) -> Option<String> {
    let [sig] = env.signatures.as_slice() else {
        return None;
    };
    sig.keyid.rsplit_once(':').map(|(p, _)| p.to_owned())
}

/// Checks a training record: one signature by `signer`'s registered `key` over the
/// DSSE encoding, the statement well formed, the subject the root of its files.
pub fn verify_training(
    env: &Envelope,
    signer: &str,
    key: &VerifyingKey,
) -> Result<TrainingStatement, ManifestError> {
    if env.payload_type != TRAINING_PAYLOAD_TYPE {
        return Err(ManifestError::Invalid(format!(
            "payload type {:?} is not {TRAINING_PAYLOAD_TYPE}",
            env.payload_type
        )));
    }
    let payload = signed_payload(env, signer, key)?;
    let st: TrainingStatement = serde_json::from_slice(&payload)
        .map_err(|e| ManifestError::Invalid(format!("training record: {e}")))?;
    if st.type_ != STATEMENT_TYPE || st.predicate_type != TRAINING_PREDICATE_TYPE {
        return Err(ManifestError::Invalid("not a training record".into()));
    }
    let r = &st.predicate.resources;
    if r.is_empty() || r.len() > MAX_FILES {
        return Err(ManifestError::Invalid(
            "a training record lists 1 to 100000 files".into(),
        ));
    }
    for f in r {
        check_file_name(&f.name)?;
    }
    let [subject] = st.subject.as_slice() else {
        return Err(ManifestError::Invalid(
            "expected exactly one subject".into(),
        ));
    };
    if subject.digest.sha256 != root_digest(r) {
        return Err(ManifestError::Invalid(
            "the subject digest is not the root of the listed files".into(),
        ));
    }
    Ok(st)
}
