//! The entry line codec.
//!
//! One entry is one line of JSON with its fields in a fixed order:
//!
//! ```text
//! {"v":1,"origin":"O","index":N,"time":"T","epoch":E,"kind":"K","nonce":"HEX"[,"rotation":"B64"][,"rid":"HEX"],"encrypted":"HEX"}
//! ```
//!
//! `rid` is the 16-byte request id a writer-protocol client chose for the entry; it is
//! public so that a writer restarted after a crash can recognise a retried request
//! whose entry is already durable (see ARCHITECTURE.md, "The writer protocol").
//!
//! Everything before `,"encrypted":` is the public header and is the AEAD associated
//! data, so a header cannot be changed without failing decryption. The decoder accepts
//! exactly the encoder's output (no whitespace, no escapes, no reordering), so every
//! entry has one encoding and the Merkle leaf (the line bytes) pins it.

use crate::crypto::{DataKey, NONCE_LEN, TAG_LEN};
use crate::error::{CryptoError, DecodeError};
use crate::hex;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Entry format version.
pub const VERSION: u32 = 1;
/// Longest accepted line, without its newline.
pub const MAX_LINE_LEN: usize = 1024 * 1024;
/// Largest accepted plaintext event.
pub const MAX_EVENT_LEN: usize = 64 * 1024;
/// Length of a request id.
pub const RID_LEN: usize = 16;
/// Longest accepted kind.
pub const MAX_KIND_LEN: usize = 64;

/// Kind of the entry that starts an epoch.
pub const KIND_ROTATION: &str = "key.rotation";

/// Whether `kind` is a valid public category: 1–64 of `[a-z0-9._-]`, starting with a letter.
#[must_use]
pub fn valid_kind(kind: &str) -> bool {
    let b = kind.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_KIND_LEN
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// The public header of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Log origin.
    pub origin: &'a str,
    /// Position in the log.
    pub index: u64,
    /// Commit time.
    pub time: Timestamp,
    /// Epoch whose keys sealed this entry.
    pub epoch: u64,
    /// Public category.
    pub kind: &'a str,
    /// AEAD nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Base64 rotation record; present exactly on `key.rotation` entries.
    pub rotation: Option<&'a str>,
    /// The client's request id, on entries sent through the writer protocol.
    pub rid: Option<[u8; RID_LEN]>,
}

impl Header<'_> {
    /// Writes the header part of the line (the associated data) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"v\":1,\"origin\":\"");
        out.extend_from_slice(self.origin.as_bytes());
        out.extend_from_slice(b"\",\"index\":");
        push_u64(out, self.index);
        out.extend_from_slice(b",\"time\":\"");
        self.time.write_to(out);
        out.extend_from_slice(b"\",\"epoch\":");
        push_u64(out, self.epoch);
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(b"\",\"nonce\":\"");
        hex::encode_into(&self.nonce, out);
        out.push(b'"');
        if let Some(r) = self.rotation {
            out.extend_from_slice(b",\"rotation\":\"");
            out.extend_from_slice(r.as_bytes());
            out.push(b'"');
        }
        if let Some(r) = &self.rid {
            out.extend_from_slice(b",\"rid\":\"");
            hex::encode_into(r, out);
            out.push(b'"');
        }
    }
}

/// Appends the decimal digits of `v` to `out`.
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + u8::try_from(v % 10).unwrap_or(0);
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
}

/// Seals `plaintext` under `key` and writes the complete line (without newline) to `out`.
/// `scratch` is a reusable buffer.
pub fn seal_line(
    header: &Header<'_>,
    key: &DataKey,
    plaintext: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let start = out.len();
    header.write_to(out);
    scratch.clear();
    scratch.extend_from_slice(plaintext);
    key.seal_in_place(header.nonce, out.get(start..).unwrap_or_default(), scratch)?;
    out.extend_from_slice(b",\"encrypted\":\"");
    hex::encode_into(scratch, out);
    out.extend_from_slice(b"\"}");
    Ok(())
}

/// A parsed entry line, borrowing from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The public header.
    pub header: Header<'a>,
    /// The associated data (the header bytes).
    pub aad: &'a [u8],
    /// Hex of ciphertext || tag, validated as strict hex.
    pub encrypted_hex: &'a [u8],
}

impl EntryRef<'_> {
    /// Decrypts the entry with the epoch's data key into `out`.
    pub fn open(&self, key: &DataKey, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        hex::decode_into(self.encrypted_hex, out).map_err(|_| CryptoError::Decrypt)?;
        key.open_in_place(self.header.nonce, self.aad, out)
    }
}

/// A parsed entry that does not borrow its line: byte ranges into it plus the decoded
/// fixed fields. Lets one thread parse and another use the result
/// ([`EntrySpans::entry`]) without parsing again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySpans {
    origin: (u32, u32),
    kind: (u32, u32),
    rotation: Option<(u32, u32)>,
    aad_end: u32,
    encrypted: (u32, u32),
    index: u64,
    time: Timestamp,
    epoch: u64,
    nonce: [u8; NONCE_LEN],
    rid: Option<[u8; RID_LEN]>,
}

impl EntrySpans {
    /// Parses `line` (see [`parse_line`]).
    pub fn parse(line: &[u8]) -> Result<Self, DecodeError> {
        let e = parse_line(line)?;
        let base = line.as_ptr() as usize;
        let span = |s: &[u8]| {
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            // Lines are at most MAX_LINE_LEN bytes, far below u32::MAX.
            let a = u32::try_from(start).unwrap_or(u32::MAX);
            (
                a,
                a.saturating_add(u32::try_from(s.len()).unwrap_or(u32::MAX)),
            )
        };
        Ok(Self {
            origin: span(e.header.origin.as_bytes()),
            kind: span(e.header.kind.as_bytes()),
            rotation: e.header.rotation.map(|r| span(r.as_bytes())),
            aad_end: u32::try_from(e.aad.len()).unwrap_or(u32::MAX),
            encrypted: span(e.encrypted_hex),
            index: e.header.index,
            time: e.header.time,
            epoch: e.header.epoch,
            nonce: e.header.nonce,
            rid: e.header.rid,
        })
    }

    /// The `rotation` header field of `line` (the line these spans were parsed from),
    /// if it has one.
    #[must_use]
    pub fn rotation<'a>(&self, line: &'a [u8]) -> Option<&'a str> {
        let (a, b) = self.rotation?;
        std::str::from_utf8(line.get(a as usize..b as usize)?).ok()
    }

    /// The entry of `line`, which must be the line these spans were parsed from.
    pub fn entry<'a>(&self, line: &'a [u8]) -> Result<EntryRef<'a>, DecodeError> {
        let bad = DecodeError::Syntax {
            what: WHAT,
            detail: "spans do not belong to this line",
        };
        let get = |(a, b): (u32, u32)| line.get(a as usize..b as usize).ok_or(bad.clone());
        let text =
            |r: (u32, u32)| get(r).and_then(|b| std::str::from_utf8(b).map_err(|_| bad.clone()));
        Ok(EntryRef {
            header: Header {
                origin: text(self.origin)?,
                index: self.index,
                time: self.time,
                epoch: self.epoch,
                kind: text(self.kind)?,
                nonce: self.nonce,
                rotation: self.rotation.map(text).transpose()?,
                rid: self.rid,
            },
            aad: line.get(..self.aad_end as usize).ok_or(bad.clone())?,
            encrypted_hex: get(self.encrypted)?,
        })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

const WHAT: &str = "entry";

impl<'a> Cursor<'a> {
    fn lit(&mut self, s: &'static [u8], detail: &'static str) -> Result<(), DecodeError> {
        if self.buf.get(self.pos..self.pos + s.len()) == Some(s) {
            self.pos += s.len();
            Ok(())
        } else {
            Err(DecodeError::Syntax { what: WHAT, detail })
        }
    }

    fn peek_lit(&self, s: &[u8]) -> bool {
        self.buf.get(self.pos..self.pos + s.len()) == Some(s)
    }

    /// A string body up to the next `"`; characters allowed by `ok`.
    fn string(
        &mut self,
        ok: impl Fn(u8) -> bool,
        detail: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b'"')
            .ok_or(DecodeError::Syntax { what: WHAT, detail })?;
        let s = rest.get(..len).unwrap_or_default();
        if !s.iter().all(|&b| ok(b)) {
            return Err(DecodeError::Syntax { what: WHAT, detail });
        }
        self.pos += len + 1;
        Ok(s)
    }

    fn number(&mut self, detail: &'static str) -> Result<u64, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        let digits = rest.get(..len).unwrap_or_default();
        if digits.is_empty()
            || digits.len() > 20
            || (digits.len() > 1 && digits.first() == Some(&b'0'))
        {
            return Err(DecodeError::Syntax { what: WHAT, detail });
        }
        let v = digits.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        self.pos += len;
        v.ok_or(DecodeError::Syntax { what: WHAT, detail })
    }
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// Parses one entry line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<EntryRef<'_>, DecodeError> {
    if line.len() > MAX_LINE_LEN {
        return Err(DecodeError::TooLarge {
            size: line.len(),
            limit: MAX_LINE_LEN,
        });
    }
    let mut c = Cursor { buf: line, pos: 0 };
    c.lit(b"{\"v\":1,\"origin\":\"", "expected {\"v\":1,\"origin\":")?;
    let origin = c.string(
        |b| b.is_ascii_graphic() && b != b'\\' && b != b'+',
        "invalid origin",
    )?;
    c.lit(b",\"index\":", "expected index")?;
    let index = c.number("invalid index")?;
    c.lit(b",\"time\":\"", "expected time")?;
    let time = Timestamp::parse(c.string(|b| b.is_ascii_graphic(), "invalid time")?)?;
    c.lit(b",\"epoch\":", "expected epoch")?;
    let epoch = c.number("invalid epoch")?;
    c.lit(b",\"kind\":\"", "expected kind")?;
    let kind = c.string(|b| b.is_ascii_graphic(), "invalid kind")?;
    c.lit(b",\"nonce\":\"", "expected nonce")?;
    let nonce: [u8; NONCE_LEN] =
        hex::decode_array(c.string(|b| b.is_ascii_hexdigit(), "invalid nonce")?)?;
    let rotation = if c.peek_lit(b",\"rotation\":\"") {
        c.lit(b",\"rotation\":\"", "expected rotation")?;
        Some(c.string(is_b64, "invalid rotation record")?)
    } else {
        None
    };
    let rid = if c.peek_lit(b",\"rid\":\"") {
        c.lit(b",\"rid\":\"", "expected rid")?;
        let h = c.string(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'), "invalid rid")?;
        Some(hex::decode_array::<RID_LEN>(h)?)
    } else {
        None
    };
    let aad_end = c.pos;
    c.lit(b",\"encrypted\":\"", "expected encrypted")?;
    // The ciphertext runs to the closing `"}` that ends the line; strict hex
    // validation rejects any quote inside it, so no search is needed.
    let enc = line
        .get(c.pos..)
        .and_then(|r| r.strip_suffix(b"\"}"))
        .ok_or(DecodeError::Syntax {
            what: WHAT,
            detail: "expected end of object",
        })?;
    hex::validate(enc)?;
    if enc.len() < 2 * TAG_LEN {
        return Err(DecodeError::Syntax {
            what: WHAT,
            detail: "ciphertext shorter than its tag",
        });
    }
    let origin = std::str::from_utf8(origin).map_err(|_| DecodeError::Syntax {
        what: WHAT,
        detail: "invalid origin",
    })?;
    let kind = std::str::from_utf8(kind).map_err(|_| DecodeError::Syntax {
        what: WHAT,
        detail: "invalid kind",
    })?;
    if !valid_kind(kind) {
        return Err(DecodeError::Syntax {
            what: WHAT,
            detail: "invalid kind",
        });
    }
    let rotation = rotation
        .map(|r| {
            std::str::from_utf8(r).map_err(|_| DecodeError::Syntax {
                what: WHAT,
                detail: "invalid rotation record",
            })
        })
        .transpose()?;
    if rotation.is_some() != (kind == KIND_ROTATION) {
        return Err(DecodeError::Syntax {
            what: WHAT,
            detail: "rotation record present on a non-rotation entry or missing",
        });
    }
    Ok(EntryRef {
        header: Header {
            origin,
            index,
            time,
            epoch,
            kind,
            nonce,
            rotation,
            rid,
        },
        aad: line.get(..aad_end).unwrap_or_default(),
        encrypted_hex: enc,
    })
}

/// The encrypted contents of an entry: who accessed what, and the outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// The credential the request used (`tok:<id>`, `jwt:<id>`, `cert:<name>`; never a
    /// secret), so one abused token can be told from its principal's other ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// How the writer established `user` for an entry a local client sent
    /// (`os-user=NAME`, `os-user=NAME admin`), set by the writer, never by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// The shape of [`Event`] with borrowed fields, to check a plaintext without building
/// an `Event` (the verifier checks every entry this way).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct EventShape<'a> {
    #[serde(default, borrow)]
    user: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    ip: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    action: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    request_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    user_agent: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    digest: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    details: Option<serde::de::IgnoredAny>,
    #[serde(default, borrow)]
    credential: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    via: Option<std::borrow::Cow<'a, str>>,
}

impl Event {
    /// Checks that `bytes` is a valid event plaintext, as [`Event::from_plaintext`]
    /// would accept, without building one.
    pub fn check_plaintext(bytes: &[u8]) -> Result<(), DecodeError> {
        if bytes.len() > MAX_EVENT_LEN {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: MAX_EVENT_LEN,
            });
        }
        serde_json::from_slice::<EventShape<'_>>(bytes)
            .map(|_| ())
            .map_err(|e| DecodeError::Json {
                what: "event",
                detail: e.to_string(),
            })
    }

    /// Serialises the event for sealing, enforcing [`MAX_EVENT_LEN`].
    pub fn to_plaintext(&self) -> Result<Vec<u8>, DecodeError> {
        let v = serde_json::to_vec(self).map_err(|e| DecodeError::Json {
            what: "event",
            detail: e.to_string(),
        })?;
        if v.len() > MAX_EVENT_LEN {
            return Err(DecodeError::TooLarge {
                size: v.len(),
                limit: MAX_EVENT_LEN,
            });
        }
        Ok(v)
    }

    /// Parses a decrypted (or user-supplied) event strictly.
    pub fn from_plaintext(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_EVENT_LEN {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: MAX_EVENT_LEN,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json {
            what: "event",
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_plaintext_accepts_exactly_what_from_plaintext_accepts() {
        let cases: [&[u8]; 10] = [
            br#"{"user":"a","details":{"x":[1,2,{"y":null}]}}"#,
            br#"{"user":"a\"b","ip":"192.0.2.1"}"#,
            br#"{}"#,
            br#"{"user":null}"#,
            br#"{"unknown":"x"}"#,
            br#"{"user":1}"#,
            br#"{"user":"a","user":"b"}"#,
            br#"[]"#,
            br#"{"user":"a"} trailing"#,
            b"{\"user\":\"\xff\"}",
        ];
        for c in cases {
            assert_eq!(
                Event::check_plaintext(c).is_ok(),
                Event::from_plaintext(c).is_ok(),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
    }
    use proptest::prelude::*;
    use zeroize::Zeroizing;

    fn key() -> DataKey {
        DataKey::new(Zeroizing::new([5; 32])).unwrap()
    }

    fn line(index: u64, kind: &str, rotation: Option<&str>, pt: &[u8]) -> Vec<u8> {
        let h = Header {
            origin: "example.com/log",
            index,
            time: Timestamp::from_micros(1_700_000_000_123_456).unwrap(),
            epoch: 2,
            kind,
            nonce: [1; 12],
            rotation,
            rid: None,
        };
        let mut out = Vec::new();
        seal_line(&h, &key(), pt, &mut out, &mut Vec::new()).unwrap();
        out
    }

    #[test]
    fn request_id_is_public_bound_and_canonical() {
        let h = Header {
            origin: "example.com/log",
            index: 3,
            time: Timestamp::from_micros(1_700_000_000_123_456).unwrap(),
            epoch: 2,
            kind: "model.access",
            nonce: [1; 12],
            rotation: None,
            rid: Some([0xab; RID_LEN]),
        };
        let mut l = Vec::new();
        seal_line(&h, &key(), b"{}", &mut l, &mut Vec::new()).unwrap();
        let e = parse_line(&l).unwrap();
        assert_eq!(e.header, h);
        e.open(&key(), &mut Vec::new()).unwrap();
        let s = String::from_utf8(l).unwrap();
        // Part of the associated data: another id fails decryption.
        let other = s.replacen("\"rid\":\"ab", "\"rid\":\"cd", 1);
        let e = parse_line(other.as_bytes()).unwrap();
        assert_eq!(e.open(&key(), &mut Vec::new()), Err(CryptoError::Decrypt));
        for bad in [
            s.replacen("\"rid\":\"ab", "\"rid\":\"AB", 1),
            s.replacen("\"rid\":\"abab", "\"rid\":\"ab", 1),
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trip_and_jq_shape() {
        let l = line(7, "model.access", None, br#"{"user":"alice"}"#);
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert!(
            v["encrypted"]
                .as_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
        assert_eq!(v["index"], 7);
        let e = parse_line(&l).unwrap();
        assert_eq!(e.header.kind, "model.access");
        let mut pt = Vec::new();
        e.open(&key(), &mut pt).unwrap();
        assert_eq!(pt, br#"{"user":"alice"}"#);
    }

    #[test]
    fn header_is_bound_to_ciphertext() {
        let l = line(7, "model.access", None, b"{}");
        let s = String::from_utf8(l)
            .unwrap()
            .replace("\"index\":7", "\"index\":8");
        let e = parse_line(s.as_bytes()).unwrap();
        assert_eq!(e.open(&key(), &mut Vec::new()), Err(CryptoError::Decrypt));
    }

    #[test]
    fn rejects_non_canonical_lines() {
        let l = String::from_utf8(line(7, "model.access", None, b"{}")).unwrap();
        for bad in [
            l.replace("\"index\":7", "\"index\":07"),
            l.replace("{\"v\":1", "{ \"v\":1"),
            format!("{l} "),
            l.replace("model.access", "Model.access"),
            l.replacen("\"nonce\":\"01", "\"nonce\":\"0A", 1),
            l.replace("\"kind\":\"model.access\"", "\"kind\":\"key.rotation\""),
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad}");
        }
        let r = line(0, KIND_ROTATION, Some("e30="), b"{}");
        assert_eq!(parse_line(&r).unwrap().header.rotation, Some("e30="));
    }

    proptest! {
        #[test]
        fn prop_round_trip(index in any::<u64>(), epoch in any::<u64>(), micros in 0u64..253_402_300_799_999_999,
                           pt in proptest::collection::vec(any::<u8>(), 0..512)) {
            let h = Header { origin: "o/p", index, time: Timestamp::from_micros(micros).unwrap(), epoch,
                             kind: "incident", nonce: [9; 12], rotation: None, rid: None };
            let mut out = Vec::new();
            seal_line(&h, &key(), &pt, &mut out, &mut Vec::new()).unwrap();
            let e = parse_line(&out).unwrap();
            prop_assert_eq!(e.header, h);
            let mut back = Vec::new();
            e.open(&key(), &mut back).unwrap();
            prop_assert_eq!(back, pt);
        }

        #[test]
        fn prop_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_line(&bytes);
        }
    }
}
