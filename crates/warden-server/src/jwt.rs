//! JWT bearer tokens from an external identity provider (OIDC access tokens).
//!
//! A token is accepted only when its header names an allowed asymmetric algorithm, a
//! key of the configured JWKS verifies its signature (by `kid`, or the only key when the
//! set has one), `iss` and `aud` match, and the time is within `nbf`..`exp` (with the
//! configured leeway). Claims then map to a principal, scopes, extra roles and MFA.
//! Symmetric algorithms are refused outright, so a public JWKS key can never be used as
//! an HMAC secret (algorithm confusion).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use warden_registry::tokens::{AuthFailure, SCOPES};
use warden_store::config::JwtConfig;

/// Longest JWT accepted, in bytes.
pub const MAX_JWT_LEN: usize = 8 * 1024;
/// Largest JWKS document read.
pub const MAX_JWKS_LEN: usize = 1024 * 1024;

/// What a verified token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub principal: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub mfa: bool,
    /// The `exp` claim: what the bearer issues never outlives the token.
    pub expires_at: Option<i64>,
    /// `iss`, `sub` and `jti`, for the audit entry.
    pub details: Value,
}

struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// Verifies JWTs against one issuer's key set (replaceable: a JWKS URL is fetched
/// again on a schedule).
pub struct JwtVerifier {
    cfg: JwtConfig,
    algorithms: Vec<Algorithm>,
    keys: std::sync::RwLock<Arc<Vec<Key>>>,
    /// Set when a token named a `kid` the set lacks: the refresher fetches early.
    unknown_kid: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.cfg.issuer)
            .field("audience", &self.cfg.audience)
            .field("keys", &self.keys.read().map(|k| k.len()).unwrap_or(0))
            .finish_non_exhaustive()
    }
}

/// Whether a token looks like a JWT (three base64url parts) rather than a Warden token.
#[must_use]
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

fn asymmetric(a: Algorithm) -> bool {
    !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl JwtVerifier {
    /// Builds a verifier from the configuration and the JWKS document.
    pub fn new(cfg: JwtConfig, jwks: &[u8]) -> Result<Self, String> {
        // Err means a provider is installed already.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        if cfg.issuer.is_empty() || cfg.audience.is_empty() {
            return Err("[jwt] needs a non-empty issuer and audience".into());
        }
        let mut algorithms = Vec::new();
        for a in &cfg.algorithms {
            let alg = Algorithm::from_str(a).map_err(|_| format!("unknown JWT algorithm {a:?}"))?;
            if !asymmetric(alg) {
                return Err(format!(
                    "JWT algorithm {a} is symmetric; only public-key algorithms are accepted"
                ));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err("[jwt] algorithms is empty".into());
        }
        for (from, to) in &cfg.scope_map {
            if let Some(bad) = to.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                return Err(format!("scope_map {from:?} names unknown scope {bad:?}"));
            }
        }
        let keys = parse_keys(jwks)?;
        Ok(Self {
            cfg,
            algorithms,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            unknown_kid: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Replaces the key set with the one in `jwks`; on error the old set stays.
    /// Returns the number of usable keys.
    pub fn set_keys(&self, jwks: &[u8]) -> Result<usize, String> {
        let keys = parse_keys(jwks)?;
        let n = keys.len();
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(keys);
        }
        Ok(n)
    }

    /// Whether a token recently named a key the set lacks (clears the flag).
    pub fn take_unknown_kid(&self) -> bool {
        self.unknown_kid
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// Verifies `token` and maps its claims. A failure carries what may be logged.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        if token.len() > MAX_JWT_LEN {
            return Err(AuthFailure::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthFailure::BadSignature);
        }
        let keys = self
            .keys
            .read()
            .map(|k| Arc::clone(&k))
            .map_err(|_| AuthFailure::BadSignature)?;
        let key = match &header.kid {
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if keys.len() == 1 => keys.first(),
            None => None,
        };
        let Some(key) = key else {
            if header.kid.is_some() {
                self.unknown_kid
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            return Err(AuthFailure::BadSignature);
        };
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(AuthFailure::BadSignature);
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.leeway = self.cfg.leeway_secs;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<HashMap<String, Value>>(token, &key.key, &v).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthFailure::Expired,
                ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
                ErrorKind::InvalidIssuer => AuthFailure::WrongIssuer,
                ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::InvalidKeyFormat
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_) => AuthFailure::BadSignature,
                _ => AuthFailure::Malformed,
            },
        )?;
        Ok(self.map_claims(&data.claims))
    }

    fn map_claims(&self, c: &HashMap<String, Value>) -> Identity {
        let principal = c
            .get(&self.cfg.principal_claim)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut scopes = Vec::new();
        for s in strings(c.get(&self.cfg.scope_claim)) {
            match self.cfg.scope_map.get(&s) {
                Some(mapped) => scopes.extend(mapped.iter().cloned()),
                None if SCOPES.contains(&s.as_str()) => scopes.push(s),
                None => {}
            }
        }
        scopes.sort();
        scopes.dedup();
        let mut roles: Vec<String> = self
            .cfg
            .role_claim
            .as_ref()
            .map(|claim| {
                strings(c.get(claim))
                    .iter()
                    .filter_map(|g| self.cfg.role_map.get(g).cloned())
                    .collect()
            })
            .unwrap_or_default();
        roles.sort();
        roles.dedup();
        let mfa = strings(c.get("amr"))
            .iter()
            .any(|m| self.cfg.mfa_amr.contains(m));
        let details = json!({
            "iss": c.get("iss"),
            "sub": c.get("sub"),
            "jti": c.get("jti"),
        });
        Identity {
            principal,
            scopes,
            roles,
            mfa,
            expires_at: c.get("exp").and_then(Value::as_i64),
            details,
        }
    }
}

/// The usable signature keys of a JWKS document.
fn parse_keys(jwks: &[u8]) -> Result<Vec<Key>, String> {
    if jwks.len() > MAX_JWKS_LEN {
        return Err(format!("the JWKS is larger than {MAX_JWKS_LEN} bytes"));
    }
    let set: JwkSet =
        serde_json::from_slice(jwks).map_err(|e| format!("the JWKS is not valid: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        // Keys for other uses (encryption) or that the library cannot use are skipped.
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("the JWKS holds no usable signature key".into());
    }
    Ok(keys)
}

/// A claim that is a string (space-separated) or an array of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// What the token says about itself before verification, for the failure entry: never
/// trusted, only recorded (the issuer and subject help an investigation).
#[must_use]
pub fn unverified_details(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let c: HashMap<String, Value> = serde_json::from_slice(&bytes).ok()?;
    let short = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(128).collect::<String>())
    };
    Some(json!({"jwt": {"iss": short("iss"), "sub": short("sub"), "verified": false}}))
}
