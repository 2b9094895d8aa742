//! Webhooks: one JSON `POST` per alert; a 2xx answer confirms it.
//!
//! Each body can be signed with HMAC-SHA256 under a shared key, so the receiver can
//! tell Warden's alerts from forgeries and replays: `X-Warden-Signature:
//! t=<unix seconds>,v1=<hex HMAC of "<t>." followed by the body>`.

use super::{Ack, StreamTransport, TlsFiles, Transport as _, client_config};
use crate::destination::Destination;
use crate::error::SiemError;
use rustls::pki_types::ServerName;
use std::io::{self, Write as _};
use zeroize::Zeroizing;

/// Largest alert body sent.
pub const MAX_BODY: usize = 1 << 20;

/// A webhook receiver.
#[derive(Debug)]
pub struct Webhook {
    conn: StreamTransport,
    path: String,
    token: Option<Zeroizing<String>>,
    secret: Option<Zeroizing<Vec<u8>>>,
    display: String,
}

fn spec(detail: impl Into<String>) -> SiemError {
    SiemError::Spec {
        what: "webhook",
        detail: detail.into(),
    }
}

impl Webhook {
    /// A webhook at `url` (`https://`, or `http://` to a loopback address only).
    /// `token` is sent as a bearer token; `secret` signs each body.
    pub fn new(
        url: &str,
        tls: &TlsFiles,
        token: Option<Zeroizing<String>>,
        secret: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Self, SiemError> {
        let Destination::Http {
            tls: https,
            host,
            port,
            path,
        } = Destination::parse(url)?
        else {
            return Err(spec(format!("{url:?}: use an https:// URL")));
        };
        let dest = Destination::Http {
            tls: https,
            host: host.clone(),
            port,
            path: String::new(),
        };
        if !https && !dest.is_loopback() {
            return Err(spec(format!(
                "{url:?}: alerts leave this machine only over https://"
            )));
        }
        if token
            .as_ref()
            .is_some_and(|t| t.bytes().any(|b| b.is_ascii_control()) || t.is_empty())
        {
            return Err(spec("the token is empty or has control characters"));
        }
        // `Destination` fills in the HEC path for a bare host; a webhook posts to `/`.
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let path = if rest.contains('/') { path } else { "/".into() };
        let server = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| SiemError::Tls(format!("{host}: {e}")))?;
            Some((client_config(tls)?, name))
        } else {
            None
        };
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            display: format!("{scheme}://{host}:{port}{path}"),
            conn: StreamTransport::new(&host, port, server, true, Ack::Write),
            path,
            token,
            secret,
        })
    }

    /// The URL, for messages and the ledger (it never holds the token or the key).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.display
    }

    /// Posts `body` (JSON) at Unix time `now_secs`; returns the status of a 2xx answer.
    pub fn post(&mut self, body: &[u8], now_secs: u64) -> io::Result<u16> {
        if body.len() > MAX_BODY {
            return Err(io::Error::other("the alert is larger than 1 MiB"));
        }
        let r = self.try_post(body, now_secs);
        if r.is_err() {
            self.conn.reset();
        }
        r
    }

    fn try_post(&mut self, body: &[u8], now_secs: u64) -> io::Result<u16> {
        // Holds the token: zeroized when dropped.
        let mut head = Zeroizing::new(format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: warden/{}\r\n",
            self.path,
            self.conn.host,
            self.conn.port,
            body.len(),
            env!("CARGO_PKG_VERSION")
        ));
        if let Some(t) = &self.token {
            head.push_str("Authorization: Bearer ");
            head.push_str(t);
            head.push_str("\r\n");
        }
        if let Some(k) = &self.secret {
            head.push_str(&format!(
                "X-Warden-Signature: {}\r\n",
                signature(k, now_secs, body)
            ));
        }
        head.push_str("\r\n");
        let conn = self.conn.connect()?;
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)?;
        conn.flush()?;
        let (status, keep) = super::http::read_response(conn)?;
        if !keep {
            self.conn.reset();
        }
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(io::Error::other(format!(
                "the webhook answered HTTP {status}"
            )))
        }
    }
}

/// `t=<now>,v1=<hex HMAC-SHA256(key, "<now>." || body)>`.
#[must_use]
pub fn signature(key: &[u8], now_secs: u64, body: &[u8]) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&k);
    ctx.update(format!("{now_secs}.").as_bytes());
    ctx.update(body);
    let tag = ctx.sign();
    let mut hex = String::with_capacity(64);
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("t={now_secs},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_off_loopback_and_bare_hosts_post_to_root() {
        let files = TlsFiles::default();
        let e = Webhook::new("http://192.0.2.10:8080/hook", &files, None, None).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(Webhook::new("tcp://127.0.0.1:9", &files, None, None).is_err());
        let w = Webhook::new("http://127.0.0.1:9", &files, None, None).unwrap();
        assert_eq!(w.url(), "http://127.0.0.1:9/");
        let w = Webhook::new("http://127.0.0.1:9/a/b", &files, None, None).unwrap();
        assert_eq!(w.url(), "http://127.0.0.1:9/a/b");
        let bad = Some(Zeroizing::new("a\r\nX-Evil: 1".to_owned()));
        assert!(Webhook::new("http://127.0.0.1:9/", &files, bad, None).is_err());
    }

    #[test]
    fn the_signature_binds_key_time_and_body() {
        let s = signature(b"k", 1_700_000_000, b"{}");
        assert!(
            s.starts_with("t=1700000000,v1=") && s.len() == 16 + 64,
            "{s}"
        );
        assert_ne!(s, signature(b"k2", 1_700_000_000, b"{}"));
        assert_ne!(s, signature(b"k", 1_700_000_001, b"{}"));
        assert_ne!(s, signature(b"k", 1_700_000_000, b"{ }"));
    }
}
