//! Destination URLs: `tcp://`, `tls://`, `udp://`, `file:`, `http(s)://`.

use crate::error::SiemError;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
    },
    Udp {
        host: String,
        port: u16,
    },
    File(PathBuf),
    Http {
        tls: bool,
        host: String,
        port: u16,
        path: String,
    },
}

fn spec(detail: impl Into<String>) -> SiemError {
    SiemError::Spec {
        what: "destination",
        detail: detail.into(),
    }
}

fn host_port(rest: &str, default_port: Option<u16>) -> Result<(String, u16, &str), SiemError> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i..).unwrap_or("/"),
        ),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| spec("unclosed '[' in the host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(spec("the URL has no host"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| spec(format!("invalid port {p:?}")))?,
        (None, Some(p)) => p,
        (None, None) => return Err(spec("the URL needs a port (host:port)")),
    };
    Ok((host.to_owned(), port, path))
}

impl Destination {
    /// Parses `tcp://`, `tls://`, `udp://`, `file:`, `http://` or `https://` URLs.
    pub fn parse(url: &str) -> Result<Self, SiemError> {
        let (scheme, rest) = url.split_once(':').ok_or_else(|| {
            spec(format!(
                "{url:?} is not a URL: use tcp://, tls://, udp://, file:, http:// or https://"
            ))
        })?;
        let net = |rest: &str| -> Result<(String, u16), SiemError> {
            let rest = rest
                .strip_prefix("//")
                .ok_or_else(|| spec(format!("{url:?}: expected {scheme}://host:port")))?;
            let (h, p, path) = host_port(rest, None)?;
            if !path.is_empty() && path != "/" {
                return Err(spec(format!("{url:?}: a {scheme} URL has no path")));
            }
            Ok((h, p))
        };
        match scheme {
            "tcp" => net(rest).map(|(host, port)| Destination::Tcp { host, port }),
            "tls" => net(rest).map(|(host, port)| Destination::Tls { host, port }),
            "udp" => net(rest).map(|(host, port)| Destination::Udp { host, port }),
            "file" => {
                let p = rest.strip_prefix("//").unwrap_or(rest);
                if p.is_empty() {
                    return Err(spec("file: needs a path"));
                }
                Ok(Destination::File(PathBuf::from(p)))
            }
            "http" | "https" => {
                let rest = rest
                    .strip_prefix("//")
                    .ok_or_else(|| spec(format!("{url:?}: expected {scheme}://host:port/path")))?;
                let tls = scheme == "https";
                let (host, port, path) = host_port(rest, Some(if tls { 443 } else { 80 }))?;
                let path = if path.is_empty() || path == "/" {
                    "/services/collector/event".to_owned()
                } else {
                    path.to_owned()
                };
                if path
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
                {
                    return Err(spec("the URL path has spaces or control characters"));
                }
                Ok(Destination::Http {
                    tls,
                    host,
                    port,
                    path,
                })
            }
            other => Err(spec(format!(
                "unknown scheme {other:?}: use tcp://, tls://, udp://, file:, http:// or https://"
            ))),
        }
    }

    /// Whether what is sent is protected in transit (TLS, or a local file).
    #[must_use]
    pub fn is_protected(&self) -> bool {
        matches!(
            self,
            Destination::Tls { .. } | Destination::File(_) | Destination::Http { tls: true, .. }
        )
    }

    /// Whether the destination is a network syslog receiver.
    #[must_use]
    pub fn is_syslog(&self) -> bool {
        matches!(
            self,
            Destination::Tcp { .. } | Destination::Tls { .. } | Destination::Udp { .. }
        )
    }

    /// Whether the receipt of what is sent can be confirmed.
    #[must_use]
    pub fn confirms(&self) -> bool {
        !matches!(self, Destination::Udp { .. })
    }

    fn host(&self) -> Option<(&str, u16)> {
        match self {
            Destination::Tcp { host, port }
            | Destination::Tls { host, port }
            | Destination::Udp { host, port }
            | Destination::Http { host, port, .. } => Some((host, *port)),
            Destination::File(_) => None,
        }
    }

    /// Whether every address of the destination is on this machine (files are).
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        let Some((host, port)) = self.host() else {
            return true;
        };
        if host == "localhost" {
            return true;
        }
        match (host, port).to_socket_addrs() {
            Ok(addrs) => {
                let v: Vec<SocketAddr> = addrs.collect();
                !v.is_empty() && v.iter().all(|a| a.ip().is_loopback())
            }
            Err(_) => false,
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hp = |host: &str, port: u16| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        };
        match self {
            Destination::Tcp { host, port } => write!(f, "tcp://{}", hp(host, *port)),
            Destination::Tls { host, port } => write!(f, "tls://{}", hp(host, *port)),
            Destination::Udp { host, port } => write!(f, "udp://{}", hp(host, *port)),
            Destination::File(p) => write!(f, "file:{}", p.display()),
            Destination::Http {
                tls,
                host,
                port,
                path,
            } => write!(
                f,
                "{}://{}{path}",
                if *tls { "https" } else { "http" },
                hp(host, *port)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            Destination::parse("tcp://127.0.0.1:5514").unwrap(),
            Destination::Tcp {
                host: "127.0.0.1".into(),
                port: 5514
            }
        );
        assert_eq!(
            Destination::parse("tls://[::1]:6514").unwrap(),
            Destination::Tls {
                host: "::1".into(),
                port: 6514
            }
        );
        assert_eq!(
            Destination::parse("file:/var/log/x.log").unwrap(),
            Destination::File("/var/log/x.log".into())
        );
        assert_eq!(
            Destination::parse("https://siem.example:8088").unwrap(),
            Destination::Http {
                tls: true,
                host: "siem.example".into(),
                port: 8088,
                path: "/services/collector/event".into()
            }
        );
        for bad in [
            "siem:5514",
            "tcp://host",
            "tcp://:1",
            "tcp://h:0",
            "tcp://h:70000",
            "gopher://h:1",
            "tcp://h:1/path",
            "file:",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
        let d = Destination::parse("tls://[::1]:6514").unwrap();
        assert_eq!(d.to_string(), "tls://[::1]:6514");
        assert!(d.is_loopback() && d.is_protected());
        assert!(
            !Destination::parse("tcp://192.0.2.1:514")
                .unwrap()
                .is_loopback()
        );
    }
}
