//! What an inference request said and what it was answered, sealed to the auditors.
//!
//! The ledger's `inference.request` entry records the SHA-256 of the prompt and of the
//! answer, never the text. Where an organisation must keep the text too (`[gateway]
//! seal_content`), each request's content is one record sealed with ChaCha20-Poly1305
//! under a key of its UTC day; the day's key is wrapped to every auditor with hybrid
//! ML-KEM-768 + X25519, as an epoch's data key is. Content has its own retention:
//! removing a day's records and its key leaves the ledger whole, and an auditor who
//! opens a record checks it against the entry's digests, so a record cannot be
//! swapped without the ledger showing it.
//!
//! Sans-IO: the caller brings randomness and does the reading and writing.

use crate::crypto::{self, DataKey, NONCE_LEN, RecipientPublicKey, RecipientSecretKey, Seed};
use crate::epoch::WrapRecord;
use crate::error::{CryptoError, DecodeError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The format name written in every day's key file.
pub const FORMAT: &str = "warden-inference-content-v1";
/// Longest sealed record line accepted (base64 text).
pub const MAX_LINE: usize = 64 << 20;

/// Why a content record could not be sealed or opened.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentError {
    #[error("malformed content record: {0}")]
    Malformed(#[from] DecodeError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("key: {0}")]
    Key(#[from] crate::epoch::EpochError),
    #[error("the key file is for {found:?}, not {expected:?}")]
    WrongKeyFile { expected: String, found: String },
}

fn json_err(what: &'static str) -> impl Fn(serde_json::Error) -> ContentError {
    move |e| {
        ContentError::Malformed(DecodeError::Json {
            what,
            detail: e.to_string(),
        })
    }
}

fn wrap_context(origin: &str, day: &str) -> Vec<u8> {
    format!("{FORMAT}\nkey\n{origin}\n{day}").into_bytes()
}

fn record_aad(day: &str, request_id: &str) -> Vec<u8> {
    format!("{FORMAT}\nrecord\n{day}\n{request_id}").into_bytes()
}

/// One UTC day's content key, wrapped to every auditor (the day's `.key` file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayKey {
    pub format: String,
    pub origin: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    pub wraps: Vec<WrapRecord>,
}

impl DayKey {
    /// Wraps `secret` (the day's key) to each of `recipients`, one ephemeral seed each.
    pub fn new(
        origin: &str,
        day: &str,
        secret: &[u8; 32],
        recipients: &[RecipientPublicKey],
        ephemeral: &[Seed],
    ) -> Result<Self, ContentError> {
        if ephemeral.len() < recipients.len() {
            return Err(CryptoError::Provider {
                what: "one ephemeral seed per recipient",
            }
            .into());
        }
        let ctx = wrap_context(origin, day);
        let wraps = recipients
            .iter()
            .zip(ephemeral)
            .map(|(r, e)| crypto::wrap(secret, r, e, &ctx).map(|w| WrapRecord::from_wrapped(&w)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            format: FORMAT.to_owned(),
            origin: origin.to_owned(),
            day: day.to_owned(),
            wraps,
        })
    }

    /// Reads a key file's text, which must be for `day`.
    pub fn decode(text: &[u8], day: &str) -> Result<Self, ContentError> {
        let k: Self = serde_json::from_slice(text).map_err(json_err("content key"))?;
        if k.format != FORMAT || k.day != day {
            return Err(ContentError::WrongKeyFile {
                expected: format!("{FORMAT} {day}"),
                found: format!("{} {}", k.format, k.day),
            });
        }
        Ok(k)
    }

    /// The file's text.
    pub fn encode(&self) -> Result<Vec<u8>, ContentError> {
        serde_json::to_vec(self).map_err(json_err("content key"))
    }

    /// The day's key for `auditor`; `Ok(None)` when it was not wrapped to them.
    pub fn unwrap(&self, auditor: &RecipientSecretKey) -> Result<Option<DataKey>, ContentError> {
        Ok(crate::epoch::unwrap_for(
            &self.wraps,
            auditor,
            &wrap_context(&self.origin, &self.day),
        )?)
    }
}

/// What one request said and was answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    pub request_id: String,
    /// When the request was answered (RFC 3339).
    pub time: String,
    pub endpoint: String,
    pub deployment: String,
    /// The request's prompt field (`messages`, `prompt` or `input`) as it came.
    pub prompt: serde_json::Value,
    /// The answer's text (the generated text; an embeddings answer's whole body), when
    /// it is UTF-8 ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// ... else its bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_base64: Option<String>,
}

impl Content {
    /// Sets the answer from its bytes.
    #[must_use]
    pub fn with_response(mut self, bytes: Vec<u8>) -> Self {
        (self.response, self.response_base64) = match String::from_utf8(bytes) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(B64.encode(e.as_bytes()))),
        };
        self
    }

    /// The answer's bytes, as the entry's `response_sha256` digests them.
    #[must_use]
    pub fn response_bytes(&self) -> Vec<u8> {
        match (&self.response, &self.response_base64) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(b)) => B64.decode(b).unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    /// The digest the entry records as `prompt_sha256`.
    #[must_use]
    pub fn prompt_sha256(&self) -> String {
        json_sha256_hex(&self.prompt)
    }

    /// The digest the entry records as `response_sha256`.
    #[must_use]
    pub fn response_sha256(&self) -> String {
        sha256_hex(&self.response_bytes())
    }
}

/// One sealed record (a line of the day's `.jsonl` file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub request_id: String,
    pub nonce: String,
    pub ct: String,
}

impl Sealed {
    /// Seals `c` under `key`, the key of `day`, with a fresh random `nonce`.
    pub fn seal(
        key: &DataKey,
        day: &str,
        c: &Content,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Self, ContentError> {
        // Encrypted in place: the plaintext does not outlive this call.
        let mut ct = serde_json::to_vec(c).map_err(json_err("content"))?;
        key.seal_in_place(nonce, &record_aad(day, &c.request_id), &mut ct)?;
        Ok(Self {
            request_id: c.request_id.clone(),
            nonce: B64.encode(nonce),
            ct: B64.encode(&ct),
        })
    }

    /// Reads one line.
    pub fn decode(line: &[u8]) -> Result<Self, ContentError> {
        if line.len() > MAX_LINE {
            return Err(DecodeError::TooLarge {
                size: line.len(),
                limit: MAX_LINE,
            }
            .into());
        }
        serde_json::from_slice(line).map_err(json_err("sealed content"))
    }

    /// The line (without its newline).
    pub fn encode(&self) -> Result<Vec<u8>, ContentError> {
        serde_json::to_vec(self).map_err(json_err("sealed content"))
    }

    /// Opens the record with `day`'s key; it must name the request it is filed under.
    pub fn open(&self, key: &DataKey, day: &str) -> Result<Content, ContentError> {
        let nonce = B64.decode(&self.nonce).map_err(|_| DecodeError::Base64)?;
        let nonce =
            <[u8; NONCE_LEN]>::try_from(nonce.as_slice()).map_err(|_| DecodeError::Length {
                expected: NONCE_LEN,
                found: nonce.len(),
            })?;
        let mut buf = Zeroizing::new(B64.decode(&self.ct).map_err(|_| DecodeError::Base64)?);
        key.open_in_place(nonce, &record_aad(day, &self.request_id), &mut buf)?;
        let c: Content = serde_json::from_slice(&buf).map_err(json_err("content"))?;
        if c.request_id != self.request_id {
            return Err(DecodeError::Syntax {
                what: "content",
                detail: "sealed under another request id",
            }
            .into());
        }
        Ok(c)
    }
}

/// The SHA-256 of `v` written as compact JSON with every object's keys in sorted
/// order (how a client happened to order them does not change the digest), hex.
#[must_use]
pub fn json_sha256_hex(v: &serde_json::Value) -> String {
    let mut out = Vec::new();
    canonical(v, &mut out);
    sha256_hex(&out)
}

fn canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                if let Some(x) = m.get(k) {
                    canonical(x, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
    }
}

/// The SHA-256 of `b`, hex.
#[must_use]
pub fn sha256_hex(b: &[u8]) -> String {
    crate::hex::encode(crate::merkle::sha256(b).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auditor(b: u8) -> RecipientSecretKey {
        RecipientSecretKey::generate(Zeroizing::new([b; 32])).unwrap()
    }

    fn content() -> Content {
        Content {
            request_id: "r-1".into(),
            time: "2026-12-07T10:00:00Z".into(),
            endpoint: "/v1/chat/completions".into(),
            deployment: "chat".into(),
            prompt: serde_json::json!([{"role": "user", "content": "hello"}]),
            response: None,
            response_base64: None,
        }
        .with_response(b"hi there".to_vec())
    }

    #[test]
    fn an_auditor_opens_a_sealed_record_and_its_digests_match() {
        let (a, b) = (auditor(1), auditor(2));
        let secret = [9u8; 32];
        let k = DayKey::new(
            "log",
            "2026-12-07",
            &secret,
            &[a.public().clone()],
            &[Zeroizing::new([3; 32])],
        )
        .unwrap();
        let k = DayKey::decode(&k.encode().unwrap(), "2026-12-07").unwrap();
        assert!(k.unwrap(&b).unwrap().is_none(), "not wrapped to b");
        let key = k.unwrap(&a).unwrap().unwrap();
        let c = content();
        let s = Sealed::seal(&key, "2026-12-07", &c, [5; NONCE_LEN]).unwrap();
        let line = s.encode().unwrap();
        assert!(!String::from_utf8_lossy(&line).contains("hello"));
        let opened = Sealed::decode(&line)
            .unwrap()
            .open(&key, "2026-12-07")
            .unwrap();
        assert_eq!(opened, c);
        assert_eq!(opened.response_sha256(), sha256_hex(b"hi there"));
        assert_eq!(
            opened.prompt_sha256(),
            sha256_hex(br#"[{"content":"hello","role":"user"}]"#)
        );
    }

    #[test]
    fn a_record_moved_to_another_day_or_request_does_not_open() {
        let key = DataKey::new(Zeroizing::new([7; 32])).unwrap();
        let s = Sealed::seal(&key, "2026-12-07", &content(), [1; NONCE_LEN]).unwrap();
        assert!(s.open(&key, "2026-12-08").is_err());
        let mut moved = s.clone();
        moved.request_id = "r-2".into();
        assert!(moved.open(&key, "2026-12-07").is_err());
        assert!(
            DayKey::decode(br#"{"format":"x","origin":"o","day":"d","wraps":[]}"#, "d").is_err()
        );
    }

    #[test]
    fn an_answer_that_is_not_utf8_keeps_its_bytes() {
        let c = content().with_response(vec![0xff, 0x00, 0x41]);
        assert_eq!(c.response_bytes(), vec![0xff, 0x00, 0x41]);
    }

    #[test]
    fn the_prompt_digest_does_not_depend_on_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"[{"role":"user","content":"hi","n":{"b":1,"a":[2,"x"]}}]"#)
                .unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"[{"n":{"a":[2,"x"],"b":1},"content":"hi","role":"user"}]"#)
                .unwrap();
        assert_eq!(json_sha256_hex(&a), json_sha256_hex(&b));
        assert_eq!(
            json_sha256_hex(&a),
            sha256_hex(br#"[{"content":"hi","n":{"a":[2,"x"],"b":1},"role":"user"}]"#)
        );
    }
}
