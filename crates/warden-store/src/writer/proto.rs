//! The writer protocol's wire format: frames and messages (see ARCHITECTURE.md, "The
//! writer protocol"). Pure functions over bytes, so the decoder can be fuzzed alone.
//!
//! A frame is a 4-byte big-endian length `n` (1 ..= [`MAX_FRAME`]) followed by `n`
//! bytes of one JSON object. Requests and responses carry `"v": 1`.

use crate::requests::RequestId;
use serde::{Deserialize, Serialize};
use warden_core::entry::{Event, RID_LEN};

/// Protocol version.
pub const VERSION: u32 = 1;
/// Largest frame body, in bytes (an event's plaintext is at most 64 KiB; JSON escaping
/// can grow it, so the frame allows four times that).
pub const MAX_FRAME: usize = 256 * 1024;
/// Most requests one connection may have unanswered; the writer stops reading from a
/// connection that reaches it until replies drain.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Longest deadline a request may ask for.
pub const MAX_DEADLINE_MS: u64 = 300_000;
/// The deadline of a request that names none.
pub const DEFAULT_DEADLINE_MS: u64 = 30_000;
/// Longest client string and principal name accepted in `hello`.
pub const MAX_NAME: usize = 256;

/// Why a request failed: stable strings clients branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The frame was not a request of this protocol (the writer closes the connection).
    Malformed,
    /// The frame's length is 0 or above [`MAX_FRAME`] (the writer closes the connection).
    TooLarge,
    /// Unsupported `v`.
    Version,
    /// `append` before a successful `hello`.
    Order,
    /// The caller's operating-system user may not act as the principal it named, or an
    /// entry names another principal; the refusal is itself an entry.
    Refused,
    /// The entry is not acceptable (kind, size, event form).
    Invalid,
    /// The deadline passed before the entry was queued; it was not written.
    Deadline,
    /// The ledger cannot write (failed or closing); retry against a restarted writer.
    Unavailable,
    /// Too many connections.
    Busy,
}

/// One request, as decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Opens the session: who the client says it acts as (`None`: the principal bound
    /// to its operating-system user).
    Hello {
        acting_as: Option<String>,
        client: Option<String>,
    },
    /// Asks a writer started on demand (`warden writer --idle-exit`) to stop so that
    /// the caller can own the ledger (`warden serve`, retention). Honoured only from the
    /// writer's own operating-system user or root; a writer that does not yield answers
    /// `refused`. Needs no `hello`.
    Yield,
    /// Appends one entry.
    Append {
        id: RequestId,
        kind: String,
        event: Box<Event>,
        deadline_ms: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestWire {
    v: u32,
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    acting_as: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline_ms: Option<u64>,
}

/// A request that could not be decoded: the code, a message, and the request id when
/// the frame carried a readable one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub code: Code,
    pub message: String,
    pub id: Option<RequestId>,
}

fn rejected(code: Code, message: impl Into<String>, id: Option<RequestId>) -> Rejected {
    Rejected {
        code,
        message: message.into(),
        id,
    }
}

/// Parses a request id: 32 lowercase hex digits.
pub fn parse_id(s: &str) -> Option<RequestId> {
    if s.len() != 2 * RID_LEN || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    warden_core::hex::decode_array::<RID_LEN>(s.as_bytes()).ok()
}

/// Formats a request id.
#[must_use]
pub fn format_id(id: &RequestId) -> String {
    let mut out = Vec::with_capacity(2 * RID_LEN);
    warden_core::hex::encode_into(id, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Decodes one frame body into a request.
pub fn decode_request(body: &[u8]) -> Result<Request, Rejected> {
    if body.is_empty() || body.len() > MAX_FRAME {
        return Err(rejected(Code::TooLarge, "frame length out of range", None));
    }
    let w: RequestWire = serde_json::from_slice(body)
        .map_err(|e| rejected(Code::Malformed, format!("not a request: {e}"), None))?;
    let id = match &w.id {
        None => None,
        Some(s) => Some(parse_id(s).ok_or_else(|| {
            rejected(Code::Malformed, "id must be 32 lowercase hex digits", None)
        })?),
    };
    if w.v != VERSION {
        return Err(rejected(
            Code::Version,
            format!(
                "protocol version {} is not supported (this writer speaks {VERSION})",
                w.v
            ),
            id,
        ));
    }
    let long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_NAME);
    match w.op.as_str() {
        "hello" => {
            if w.kind.is_some() || w.event.is_some() || w.deadline_ms.is_some() {
                return Err(rejected(Code::Malformed, "hello carries no entry", id));
            }
            if long(&w.acting_as) || long(&w.client) {
                return Err(rejected(Code::Malformed, "name too long", id));
            }
            Ok(Request::Hello {
                acting_as: w.acting_as,
                client: w.client,
            })
        }
        "yield" => {
            if w.acting_as.is_some()
                || w.client.is_some()
                || w.kind.is_some()
                || w.event.is_some()
                || w.deadline_ms.is_some()
            {
                return Err(rejected(Code::Malformed, "yield carries nothing", id));
            }
            Ok(Request::Yield)
        }
        "append" => {
            let id = id.ok_or_else(|| rejected(Code::Malformed, "append needs an id", None))?;
            if w.acting_as.is_some() || w.client.is_some() {
                return Err(rejected(
                    Code::Malformed,
                    "append names no principal",
                    Some(id),
                ));
            }
            let (Some(kind), Some(event)) = (w.kind, w.event) else {
                return Err(rejected(
                    Code::Malformed,
                    "append needs kind and event",
                    Some(id),
                ));
            };
            let deadline_ms = w.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS);
            if deadline_ms == 0 || deadline_ms > MAX_DEADLINE_MS {
                return Err(rejected(
                    Code::Invalid,
                    format!("deadline_ms must be 1..={MAX_DEADLINE_MS}"),
                    Some(id),
                ));
            }
            Ok(Request::Append {
                id,
                kind,
                event: Box::new(event),
                deadline_ms,
            })
        }
        other => Err(rejected(
            Code::Malformed,
            format!("unknown op {other:?}"),
            id,
        )),
    }
}

/// An `append` request as written: borrowed, so encoding copies nothing twice.
#[derive(Serialize)]
struct AppendOut<'a> {
    v: u32,
    op: &'static str,
    id: &'a str,
    kind: &'a str,
    event: &'a Event,
    deadline_ms: u64,
}

/// Encodes an `append` request body.
pub fn encode_append(
    id: &RequestId,
    kind: &str,
    event: &Event,
    deadline_ms: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&AppendOut {
        v: VERSION,
        op: "append",
        id: &format_id(id),
        kind,
        event,
        deadline_ms,
    })
}

/// Encodes a request body (the client side).
pub fn encode_request(r: &Request) -> Result<Vec<u8>, serde_json::Error> {
    let w = match r {
        Request::Hello { acting_as, client } => RequestWire {
            v: VERSION,
            op: "hello".into(),
            id: None,
            acting_as: acting_as.clone(),
            client: client.clone(),
            kind: None,
            event: None,
            deadline_ms: None,
        },
        Request::Yield => RequestWire {
            v: VERSION,
            op: "yield".into(),
            id: None,
            acting_as: None,
            client: None,
            kind: None,
            event: None,
            deadline_ms: None,
        },
        Request::Append {
            id,
            kind,
            event,
            deadline_ms,
        } => return encode_append(id, kind, event, *deadline_ms),
    };
    serde_json::to_vec(&w)
}

/// One response. Replies come in the order of the connection's requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    /// The request id of an `append` reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `hello`: the principal the session acts as, and how it was established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// `hello`: the log's origin and this writer's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// `append`: the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// A failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    /// A failure reply.
    #[must_use]
    pub fn error(code: Code, message: impl Into<String>, id: Option<&RequestId>) -> Self {
        Self {
            v: VERSION,
            ok: false,
            id: id.map(format_id),
            code: Some(code),
            message: Some(message.into()),
            ..Self::default()
        }
    }
}

/// Frames `body`: its length, then the bytes.
pub fn frame(body: &[u8], out: &mut Vec<u8>) {
    let n = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(body);
}

/// Reads one frame body from `r`. `Ok(None)` at a clean end of stream (no byte of a
/// new frame read); an error for a half frame, a length out of range, or I/O.
pub fn read_frame(r: &mut impl std::io::Read, buf: &mut Vec<u8>) -> std::io::Result<Option<()>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(len.get_mut(got..).unwrap_or_default()) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FrameTooLarge(n),
        ));
    }
    buf.clear();
    buf.resize(n, 0);
    r.read_exact(buf)?;
    Ok(Some(()))
}

/// A frame length out of range.
#[derive(Debug, thiserror::Error)]
#[error("frame length {0} is not within 1..={MAX_FRAME}")]
pub struct FrameTooLarge(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_round_trips_and_garbage_is_rejected_with_a_code() {
        let r = Request::Append {
            id: [7; RID_LEN],
            kind: "model.access".into(),
            event: Box::new(Event {
                user: Some("alice".into()),
                ..Event::default()
            }),
            deadline_ms: 5000,
        };
        let body = encode_request(&r).unwrap();
        assert_eq!(decode_request(&body).unwrap(), r);
        assert_eq!(decode_request(b"{}").unwrap_err().code, Code::Malformed);
        assert_eq!(
            decode_request(b"\xff\x00").unwrap_err().code,
            Code::Malformed
        );
        assert_eq!(decode_request(b"").unwrap_err().code, Code::TooLarge);
        let v2 = br#"{"v":2,"op":"hello"}"#;
        assert_eq!(decode_request(v2).unwrap_err().code, Code::Version);
        let no_id = br#"{"v":1,"op":"append","kind":"a","event":{}}"#;
        assert_eq!(decode_request(no_id).unwrap_err().code, Code::Malformed);
        let upper = br#"{"v":1,"op":"append","id":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kind":"a","event":{}}"#;
        assert_eq!(decode_request(upper).unwrap_err().code, Code::Malformed);
        assert_eq!(
            decode_request(&encode_request(&Request::Yield).unwrap()).unwrap(),
            Request::Yield
        );
        let loaded = br#"{"v":1,"op":"yield","kind":"a"}"#;
        assert_eq!(decode_request(loaded).unwrap_err().code, Code::Malformed);
        let late = br#"{"v":1,"op":"append","id":"00000000000000000000000000000000","kind":"a","event":{},"deadline_ms":0}"#;
        let e = decode_request(late).unwrap_err();
        assert_eq!((e.code, e.id), (Code::Invalid, Some([0; RID_LEN])));
    }

    #[test]
    fn half_frames_and_oversized_lengths_are_errors_not_hangs() {
        let mut buf = Vec::new();
        let mut half: &[u8] = &[0, 0, 0, 9, b'{'];
        assert!(read_frame(&mut half, &mut buf).is_err());
        let mut short_len: &[u8] = &[0, 0];
        assert!(read_frame(&mut short_len, &mut buf).is_err());
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge, &mut buf).is_err());
        let mut zero: &[u8] = &[0, 0, 0, 0];
        assert!(read_frame(&mut zero, &mut buf).is_err());
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, &mut buf).unwrap().is_none());
        let mut ok = Vec::new();
        frame(b"{}", &mut ok);
        assert!(read_frame(&mut ok.as_slice(), &mut buf).unwrap().is_some());
        assert_eq!(buf, b"{}");
    }
}
