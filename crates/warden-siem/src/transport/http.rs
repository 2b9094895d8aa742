//! Splunk HEC-style HTTP: one POST of JSON events per batch; a 2xx answer confirms it.

use super::{Batch, Conn, StreamTransport, Transport};
use std::io::{self, Read as _, Write as _};
use zeroize::Zeroizing;

/// Largest HTTP response head and body read.
const MAX_RESPONSE: usize = 64 * 1024;

/// Labels of HTTP (HEC) events.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// `Authorization: Splunk <token>`.
    pub token: Option<Zeroizing<String>>,
    /// HEC `host`.
    pub host: String,
    /// HEC `sourcetype`, e.g. `warden:ecs`.
    pub sourcetype: String,
    /// Whether messages are JSON objects (embedded) or text (sent as a string).
    pub json: bool,
}

#[derive(Debug)]
pub(super) struct Http {
    conn: StreamTransport,
    path: String,
    opts: HttpOptions,
    body: Vec<u8>,
}

impl Http {
    pub(super) fn new(conn: StreamTransport, path: &str, opts: HttpOptions) -> Self {
        Self {
            conn,
            path: path.to_owned(),
            opts,
            body: Vec::new(),
        }
    }

    fn post(&mut self) -> io::Result<()> {
        // Holds the token: zeroized when dropped.
        let mut head = Zeroizing::new(format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: warden/{}\r\n",
            self.path,
            self.conn.host,
            self.conn.port,
            self.body.len(),
            env!("CARGO_PKG_VERSION")
        ));
        if let Some(t) = &self.opts.token {
            head.push_str("Authorization: Splunk ");
            head.push_str(t);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let conn = self.conn.connect()?;
        conn.write_all(head.as_bytes())?;
        conn.write_all(&self.body)?;
        conn.flush()?;
        let (status, keep) = read_response(conn)?;
        if !keep {
            self.conn.reset();
        }
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "the receiver answered HTTP {status}"
            )))
        }
    }
}

/// Reads a response head and a `Content-Length` body; returns the status and whether
/// the connection can be reused.
pub(super) fn read_response(conn: &mut Conn) -> io::Result<(u16, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = resp.code.unwrap_or(0);
                let mut length = None;
                let mut close = false;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok());
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close |= h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                let Some(len) = length.filter(|l| *l <= MAX_RESPONSE) else {
                    return Ok((status, false));
                };
                let mut have = buf.len().saturating_sub(head_len);
                while have < len {
                    let n = conn.read(&mut chunk)?;
                    if n == 0 {
                        return Ok((status, false));
                    }
                    have += n;
                }
                return Ok((status, !close && have == len));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE => {}
            Ok(httparse::Status::Partial) => {
                return Err(io::Error::other("response head too large"));
            }
            Err(e) => return Err(io::Error::other(format!("bad HTTP response: {e}"))),
        }
    }
}

impl Transport for Http {
    fn send(&mut self, batch: &Batch) -> io::Result<()> {
        self.body.clear();
        for (m, t) in batch.messages().zip(&batch.times) {
            self.body.extend_from_slice(b"{\"time\":");
            self.body
                .extend_from_slice(format!("{}.{:06}", t / 1_000_000, t % 1_000_000).as_bytes());
            self.body.extend_from_slice(b",\"host\":");
            let _ = serde_json::to_writer(&mut self.body, &self.opts.host);
            self.body
                .extend_from_slice(b",\"source\":\"warden\",\"sourcetype\":");
            let _ = serde_json::to_writer(&mut self.body, &self.opts.sourcetype);
            self.body.extend_from_slice(b",\"event\":");
            if self.opts.json {
                self.body.extend_from_slice(m);
            } else {
                let _ = serde_json::to_writer(&mut self.body, &String::from_utf8_lossy(m));
            }
            self.body.extend_from_slice(b"}\n");
        }
        let r = self.post();
        if r.is_err() {
            self.conn.reset();
        }
        r
    }
    fn confirm(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn reset(&mut self) {
        self.conn.reset();
    }
}
