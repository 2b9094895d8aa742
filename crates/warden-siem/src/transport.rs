//! Transports: where messages go, how they are framed, and how their receipt is
//! confirmed.
//!
//! | URL | framing | receipt confirmed by |
//! |---|---|---|
//! | `tcp://host:port` | RFC 6587 octet counting; newline for `policy` | the receiver closing the connection after our half-close (it read everything) |
//! | `tls://host:port` | RFC 5425 (TLS 1.3, octet counting; newline for `policy`) | as TCP, after `close_notify` |
//! | `udp://host:port` | one datagram per message (RFC 5426) | nothing: best effort |
//! | `file:PATH` | one message per line | `fdatasync` |
//! | `http(s)://host:port/path` | Splunk HEC-style JSON events, one request per batch | a 2xx response |
//!
//! Syslog over TCP has no acknowledgement of its own. A write that succeeded only put
//! bytes in a socket buffer, and a receiver that dies loses what it had not read. So
//! a stream is confirmed by closing it: we shut down our sending side and wait for the
//! receiver to close its own. A receiver closes only after reading to our end of
//! stream; one that closes with data unread resets the connection instead, which is a
//! failure. Until then the exporter's cursor does not move, and after a failure it
//! sends again from the cursor (at-least-once). [`Ack::Write`] is only for transports
//! whose protocol answers each message itself (HTTP's response); it is not offered for
//! syslog streams, where a completed write is not delivery.

mod http;
pub mod webhook;

pub use crate::destination::Destination;
pub use http::HttpOptions;

use crate::error::SiemError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Time allowed to connect, and for any single read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest UDP payload (IPv4, 65 535 minus headers). Larger messages are not sent.
pub const MAX_DATAGRAM: usize = 65_507;
/// The system CA bundle, used when no CA file is given.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Most bytes read from a receiver while waiting for it to close.
const MAX_DRAIN: usize = 64 * 1024;

/// How delivery over a stream is confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ack {
    /// Close the stream and wait for the receiver to close its side.
    #[default]
    Close,
    /// A completed write counts (HTTP, whose response confirms each batch; never
    /// offered for syslog streams).
    Write,
}

/// TLS files: trusted CAs, and an optional client certificate (mutual TLS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A TLS 1.3 client configuration from `files`.
pub fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, SiemError> {
    let tls = |e: String| SiemError::Tls(e);
    let ca = files
        .ca
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(&ca).map_err(|e| tls(format!("{}: {e}", ca.display())))?
    {
        let c = c.map_err(|e| tls(format!("{}: {e}", ca.display())))?;
        // A bundle may hold certificates this verifier cannot use; skip those.
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(tls(format!("{}: no CA certificate", ca.display())));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| tls(e.to_string()))?
    .with_root_certificates(roots);
    let cfg = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls(format!("{}: {e}", cert.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(tls(
                "a client certificate needs both --tls-cert and --tls-key".into(),
            ));
        }
    };
    Ok(Arc::new(cfg))
}

/// Messages to send, in order: `data` split at `ends`, each with its time in
/// microseconds.
#[derive(Debug, Default)]
pub struct Batch {
    pub data: Vec<u8>,
    pub ends: Vec<usize>,
    pub times: Vec<u64>,
}

impl Batch {
    /// Marks the end of the message written since the last call.
    pub fn end_message(&mut self, time_micros: u64) {
        self.ends.push(self.data.len());
        self.times.push(time_micros);
    }

    /// The messages.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let m = self.data.get(start..end).unwrap_or_default();
            start = end;
            m
        })
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.times.clear();
    }
}

/// A connection to a receiver.
pub trait Transport: Send + std::fmt::Debug {
    /// Sends the messages of `batch` in order, connecting first if needed.
    fn send(&mut self, batch: &Batch) -> io::Result<()>;
    /// Returns once everything sent so far has been received (see the module docs).
    fn confirm(&mut self) -> io::Result<()>;
    /// Drops the connection after a failure.
    fn reset(&mut self);
}

/// Opens the transport for `dest`. `newline` frames stream messages by newline
/// instead of octet counting; `sourcetype` and `host` label HTTP events.
pub fn open(
    dest: &Destination,
    tls: Option<Arc<rustls::ClientConfig>>,
    newline: bool,
    ack: Ack,
    http: HttpOptions,
) -> Result<Box<dyn Transport>, SiemError> {
    let server = |host: &str| -> Result<
        Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        SiemError,
    > {
        let cfg = tls
            .clone()
            .ok_or_else(|| SiemError::Tls("no TLS configuration".into()))?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| SiemError::Tls(format!("{host}: {e}")))?;
        Ok(Some((cfg, name)))
    };
    Ok(match dest {
        Destination::Tcp { host, port } => {
            Box::new(StreamTransport::new(host, *port, None, newline, ack))
        }
        Destination::Tls { host, port } => Box::new(StreamTransport::new(
            host,
            *port,
            server(host)?,
            newline,
            ack,
        )),
        Destination::Udp { host, port } => Box::new(Udp {
            host: host.clone(),
            port: *port,
            sock: None,
            dropped: 0,
        }),
        Destination::File(p) => Box::new(FileTransport {
            path: p.clone(),
            file: None,
            scratch: Vec::new(),
        }),
        Destination::Http {
            tls: https,
            host,
            port,
            path,
        } => Box::new(http::Http::new(
            StreamTransport::new(
                host,
                *port,
                if *https { server(host)? } else { None },
                true,
                Ack::Write,
            ),
            path,
            http,
        )),
    })
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Plain(_) => "Conn::Plain",
            Conn::Tls(_) => "Conn::Tls",
        })
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Conn {
    /// Closes our sending side and reads until the receiver closes its own.
    fn close_and_wait(mut self) -> io::Result<()> {
        self.flush()?;
        match &mut self {
            Conn::Plain(s) => s.shutdown(Shutdown::Write)?,
            Conn::Tls(s) => {
                s.conn.send_close_notify();
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                s.sock.shutdown(Shutdown::Write)?;
            }
        }
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    total += n;
                    if total > MAX_DRAIN {
                        return Err(io::Error::other("the receiver keeps sending data"));
                    }
                }
                // TCP end of stream without a TLS close_notify: the receiver still
                // closed after reading everything.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the receiver did not close the connection after reading to its end (delivery is confirmed only by the close)",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// TCP or TLS stream.
#[derive(Debug)]
struct StreamTransport {
    host: String,
    port: u16,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    newline: bool,
    ack: Ack,
    conn: Option<Conn>,
    scratch: Vec<u8>,
}

impl StreamTransport {
    fn new(
        host: &str,
        port: u16,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        newline: bool,
        ack: Ack,
    ) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls,
            newline,
            ack,
            conn: None,
            scratch: Vec::new(),
        }
    }

    fn connect(&mut self) -> io::Result<&mut Conn> {
        if self.conn.is_none() {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            let mut stream = None;
            for a in (self.host.as_str(), self.port).to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let s = stream.ok_or(last)?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            let conn = match &self.tls {
                None => Conn::Plain(s),
                Some((cfg, name)) => {
                    let c = rustls::ClientConnection::new(cfg.clone(), name.clone())
                        .map_err(io::Error::other)?;
                    let mut t = rustls::StreamOwned::new(c, s);
                    while t.conn.is_handshaking() {
                        t.conn.complete_io(&mut t.sock)?;
                    }
                    Conn::Tls(Box::new(t))
                }
            };
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::other("not connected"))
    }

    fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.connect()?.write_all(data)
    }
}

impl Transport for StreamTransport {
    fn send(&mut self, batch: &Batch) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        for m in batch.messages() {
            if self.newline {
                out.extend_from_slice(m);
                out.push(b'\n');
            } else {
                out.extend_from_slice(m.len().to_string().as_bytes());
                out.push(b' ');
                out.extend_from_slice(m);
            }
        }
        let r = self.write_raw(&out);
        self.scratch = out;
        r
    }

    fn confirm(&mut self) -> io::Result<()> {
        match self.ack {
            Ack::Write => self.conn.as_mut().map_or(Ok(()), Conn::flush),
            Ack::Close => self.conn.take().map_or(Ok(()), Conn::close_and_wait),
        }
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

#[derive(Debug)]
struct Udp {
    host: String,
    port: u16,
    sock: Option<UdpSocket>,
    dropped: u64,
}

impl Transport for Udp {
    fn send(&mut self, batch: &Batch) -> io::Result<()> {
        if self.sock.is_none() {
            let addr = (self.host.as_str(), self.port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            let bind: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let s = UdpSocket::bind(bind)?;
            s.connect(addr)?;
            self.sock = Some(s);
        }
        let Some(s) = &self.sock else {
            return Err(io::Error::other("no socket"));
        };
        for m in batch.messages() {
            if m.len() > MAX_DATAGRAM {
                self.dropped += 1;
                metrics::counter!("warden_siem_udp_oversize_total").increment(1);
                continue;
            }
            s.send(m)?;
        }
        Ok(())
    }
    fn confirm(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn reset(&mut self) {
        self.sock = None;
    }
}

#[derive(Debug)]
struct FileTransport {
    path: PathBuf,
    file: Option<std::fs::File>,
    scratch: Vec<u8>,
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Transport for FileTransport {
    fn send(&mut self, batch: &Batch) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(open_append(&self.path)?);
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        for m in batch.messages() {
            out.extend_from_slice(m);
            out.push(b'\n');
        }
        let r = match &mut self.file {
            Some(f) => f.write_all(&out),
            None => Err(io::Error::other("not open")),
        };
        self.scratch = out;
        r
    }
    fn confirm(&mut self) -> io::Result<()> {
        self.file.as_ref().map_or(Ok(()), std::fs::File::sync_data)
    }
    fn reset(&mut self) {
        self.file = None;
    }
}
