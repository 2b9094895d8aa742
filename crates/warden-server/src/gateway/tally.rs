//! What an answer held, as the audit entry records it: tokens (the upstream's `usage`,
//! or for a stream without one the chunks that carried text) and the SHA-256 of the
//! generated text (of the whole body for embeddings). A stream is read event by event
//! (Server-Sent Events: blank-line separated, `data:` lines), and its closing
//! `data: [DONE]` event is held back until the request's entry is durable.

use aws_lc_rs::digest::{Context, SHA256};

/// Longest server-sent event kept while waiting for its end.
pub const MAX_EVENT: usize = 1 << 20;

/// The counts and digest of one answer.
pub struct Tally {
    text: Context,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Streamed chunks that carried a text field (llama.cpp, vLLM and TGI send one
    /// per token).
    pub text_chunks: u64,
    pub bytes: u64,
    /// An event that was not JSON, or too long.
    pub malformed: u64,
    /// Bytes of an event not yet complete.
    pending: Vec<u8>,
    /// The text digested, kept when the content is sealed (at most `MAX_KEPT` bytes;
    /// `None` once it outgrew that).
    kept: Option<Vec<u8>>,
}

/// Most answer text kept for sealing.
pub const MAX_KEPT: usize = 16 << 20;

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .field("text_chunks", &self.text_chunks)
            .finish_non_exhaustive()
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            text: Context::new(&SHA256),
            prompt_tokens: None,
            completion_tokens: None,
            text_chunks: 0,
            bytes: 0,
            malformed: 0,
            pending: Vec::new(),
            kept: None,
        }
    }
}

/// The text one choice of an answer (or of a streamed chunk) carries.
fn choice_text(c: &serde_json::Value) -> Option<&str> {
    c.get("text")
        .or_else(|| c.pointer("/message/content"))
        .or_else(|| c.pointer("/delta/content"))
        .and_then(serde_json::Value::as_str)
}

impl Tally {
    /// A tally that also keeps the text it digests (for sealing the content).
    #[must_use]
    pub fn keeping() -> Self {
        Self {
            kept: Some(Vec::new()),
            ..Self::default()
        }
    }

    fn digest_text(&mut self, b: &[u8]) {
        self.text.update(b);
        if let Some(k) = self.kept.as_mut() {
            if k.len() + b.len() > MAX_KEPT {
                self.kept = None;
            } else {
                k.extend_from_slice(b);
            }
        }
    }

    /// The text digested, when kept whole.
    #[must_use]
    pub fn take_kept(&mut self) -> Option<Vec<u8>> {
        self.kept.take()
    }

    fn usage(&mut self, v: &serde_json::Value) {
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.prompt_tokens = u.get("prompt_tokens").and_then(serde_json::Value::as_u64);
            self.completion_tokens = u
                .get("completion_tokens")
                .and_then(serde_json::Value::as_u64)
                .or(self.completion_tokens);
        }
    }

    fn text(&mut self, v: &serde_json::Value) -> bool {
        let mut any = false;
        if let Some(choices) = v.get("choices").and_then(serde_json::Value::as_array) {
            for c in choices {
                // A chunk per token: one whose text is empty (a partial character)
                // still stands for a token.
                if let Some(t) = choice_text(c) {
                    self.digest_text(t.as_bytes());
                    any = true;
                }
            }
        }
        // The guide's /api/v1/generate answer.
        if let Some(t) = v.get("text").and_then(serde_json::Value::as_str) {
            self.digest_text(t.as_bytes());
            any = true;
        }
        any
    }

    /// A whole (not streamed) answer: its usage and text; `whole_body` hashes the body
    /// itself (embeddings, whose answer is numbers, not text).
    pub fn answer(&mut self, body: &[u8], whole_body: bool) {
        self.bytes = body.len() as u64;
        if whole_body {
            self.digest_text(body);
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => {
                self.usage(&v);
                if !whole_body {
                    self.text(&v);
                }
            }
            Err(_) => self.malformed += 1,
        }
    }

    /// Feeds streamed bytes; returns the complete events to pass on (in order, as they
    /// came) and whether the closing `[DONE]` event was reached (it and anything after
    /// it are not returned).
    pub fn feed(&mut self, chunk: &[u8]) -> (Vec<u8>, bool) {
        self.bytes += chunk.len() as u64;
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let Some((end, sep)) = event_end(&self.pending) else {
                if self.pending.len() > MAX_EVENT {
                    // Not events at all: pass it on as it is, counted as malformed.
                    self.malformed += 1;
                    out.append(&mut self.pending);
                }
                return (out, false);
            };
            let event: Vec<u8> = self.pending.drain(..end + sep).collect();
            let body = event.get(..end).unwrap_or_default();
            match self.event(body) {
                Event::Done => return (out, true),
                Event::Pass => out.extend_from_slice(&event),
            }
        }
    }

    fn event(&mut self, event: &[u8]) -> Event {
        let text = String::from_utf8_lossy(event);
        let mut data = String::new();
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if data.trim() == "[DONE]" {
            return Event::Done;
        }
        if data.is_empty() {
            return Event::Pass;
        }
        match serde_json::from_str::<serde_json::Value>(&data) {
            Ok(v) => {
                self.usage(&v);
                if self.text(&v) {
                    self.text_chunks += 1;
                }
            }
            Err(_) => self.malformed += 1,
        }
        Event::Pass
    }

    /// Completion tokens: the upstream's count, or the chunks that carried text.
    #[must_use]
    pub fn completion(&self) -> u64 {
        self.completion_tokens.unwrap_or(self.text_chunks)
    }

    /// The SHA-256 of the answer's text, hex.
    #[must_use]
    pub fn digest(&self) -> String {
        warden_core::hex::encode(self.text.clone().finish().as_ref())
    }
}

enum Event {
    Pass,
    Done,
}

/// Where the first event in `b` ends: its length and the separator's.
fn event_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < b.len() {
        match (b.get(i), b.get(i + 1), b.get(i + 2), b.get(i + 3)) {
            (Some(b'\n'), Some(b'\n'), _, _) => return Some((i, 2)),
            (Some(b'\r'), Some(b'\n'), Some(b'\r'), Some(b'\n')) => return Some((i, 4)),
            _ => i += 1,
        }
    }
    None
}

/// The closing event of a stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

pub use warden_core::content::json_sha256_hex;

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::content::sha256_hex;

    #[test]
    fn a_stream_split_anywhere_passes_every_event_and_holds_done() {
        let s = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                 data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
                 data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n\
                 data: [DONE]\n\n";
        for cut in 1..s.len() {
            let mut t = Tally::default();
            let (a, d1) = t.feed(s.as_bytes().get(..cut).unwrap());
            let (b, d2) = t.feed(s.as_bytes().get(cut..).unwrap());
            assert!(!d1 || cut >= s.len() - 1, "done early at {cut}");
            assert!(d1 || d2);
            let passed = [a, b].concat();
            assert_eq!(passed, s.as_bytes().get(..s.len() - DONE.len()).unwrap());
            assert_eq!((t.prompt_tokens, t.completion()), (Some(7), 2));
            assert_eq!(t.digest(), sha256_hex(b"Hello"));
        }
    }

    #[test]
    fn without_usage_each_chunk_with_text_is_a_token() {
        let mut t = Tally::default();
        let (_, done) = t.feed(
            b"data: {\"choices\":[{\"text\":\"a\"}]}\r\n\r\ndata: {\"choices\":[{\"text\":\"\"}]}\n\ndata: [DONE]\n\n",
        );
        assert!(done);
        assert_eq!((t.prompt_tokens, t.completion()), (None, 2));
    }

    #[test]
    fn a_whole_answer_gives_its_usage_and_text() {
        let mut t = Tally::default();
        t.answer(
            br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
            false,
        );
        assert_eq!((t.prompt_tokens, t.completion()), (Some(3), 1));
        assert_eq!(t.digest(), sha256_hex(b"hi"));
    }
}
