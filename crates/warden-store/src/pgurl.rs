//! What a PostgreSQL URL in `warden.toml` (`backend`, `registry_database`) may say.
//!
//! The ledger's entries cross the connection before the sequencer seals them, and the
//! registry's rows are what access decisions rest on. So a database on this machine (a
//! loopback address, `localhost`, a Unix socket) may be reached in the clear, and one
//! anywhere else only over TLS with its certificate and name checked
//! (`sslmode=verify-full`, against `sslrootcert=` or the bundled web roots). Whenever a
//! URL asks for TLS (`require`, `verify-ca`, `verify-full`) the connection must have
//! negotiated TLS 1.3: the driver offers 1.2 as well and takes no setting for it, so
//! every new connection asks the server what it negotiated ([`TLS_QUERY`],
//! [`check_tls`]) and is dropped before any query of ours runs over anything less.

use crate::error::StoreError;

/// What the server says a connection negotiated: whether it is TLS, and the version.
pub const TLS_QUERY: &str = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// Refuses a database URL that is not PostgreSQL's, that holds a password, or that
/// names a host off this machine without `sslmode=verify-full`.
pub fn check(key: &str, url: &str) -> Result<(), StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Config(format!(
            "{key} must be a postgres:// URL"
        )));
    }
    if url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(cred, _)| cred.contains(':'))
    {
        return Err(StoreError::Config(format!(
            "{key} must not hold a password: set PGPASSWORD in the service's environment"
        )));
    }
    let mode = param(url, "sslmode");
    if let Some(m) = &mode
        && ![
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ]
        .contains(&m.as_str())
    {
        return Err(StoreError::Config(format!(
            "{key}: unknown sslmode={m} (verify-full for a database off this machine)"
        )));
    }
    if mode.as_deref() != Some("verify-full")
        && let Some(host) = hosts(url).into_iter().find(|h| !is_local_host(h))
    {
        return Err(StoreError::Config(format!(
            "{key} names the database host {host:?}, which is not on this machine: the \
             ledger's entries cross the connection before they are sealed, so it must be \
             TLS 1.3 with the server's certificate and name checked. Add \
             sslmode=verify-full (and sslrootcert=/path/to/ca.pem unless the server's \
             certificate chains to a public root) to the URL"
        )));
    }
    Ok(())
}

/// Whether connections to `url` must be TLS 1.3 ([`check_tls`]): its `sslmode` asks
/// for TLS.
#[must_use]
pub fn wants_tls(url: &str) -> bool {
    param(url, "sslmode")
        .is_some_and(|m| matches!(m.as_str(), "require" | "verify-ca" | "verify-full"))
}

/// Refuses a connection that did not negotiate TLS 1.3, from what [`TLS_QUERY`]
/// returned.
pub fn check_tls(ssl: Option<bool>, version: Option<&str>) -> Result<(), String> {
    match (ssl, version) {
        (Some(true), Some("TLSv1.3")) => Ok(()),
        (Some(true), Some(v)) => Err(format!(
            "the database connection negotiated {v}; TLS 1.3 is required (set ssl_min_protocol_version = 'TLSv1.3' on the server)"
        )),
        _ => Err("the database connection is not encrypted though the URL asks for TLS".into()),
    }
}

/// The value of the query parameter `name`, if the URL sets it.
fn param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_ascii_lowercase())
}

/// The hosts a `postgres://` URL names: those of its authority (comma-separated, each
/// maybe with a port, IPv6 in brackets) and a `host=` parameter. An empty authority
/// is the default Unix socket.
fn hosts(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let mut hosts: Vec<String> = authority
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| match h.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
            None => h.split(':').next().unwrap_or_default().to_owned(),
        })
        .collect();
    if let Some((_, query)) = tail.split_once('?') {
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            if k == "host" || k == "hostaddr" {
                hosts.extend(
                    v.split(',')
                        .map(|h| h.replace("%2F", "/").replace("%2f", "/")),
                );
            }
        }
    }
    hosts
}

/// Whether a database host is this machine: a Unix socket directory, `localhost`, or
/// a loopback address.
fn is_local_host(h: &str) -> bool {
    h.starts_with('/')
        || h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::{check, check_tls, wants_tls};

    /// The ledger's entries cross the connection to PostgreSQL before they are sealed:
    /// a database off this machine was accepted and spoken to in the clear. It is now
    /// refused unless the URL asks for TLS with the server's certificate and name
    /// checked.
    #[test]
    fn a_database_off_this_machine_is_refused_until_the_connection_is_encrypted() {
        for ok in [
            "postgres://warden@127.0.0.1:55432/warden",
            "postgresql://warden@localhost/warden",
            "postgres://warden@[::1]:5432/warden",
            "postgres://warden@127.0.0.2,localhost:5433/warden",
            "postgres:///warden?host=/var/run/postgresql",
            "postgres://warden@/warden?host=%2Fvar%2Frun%2Fpostgresql",
            "postgres://127.0.0.1",
            "postgres://warden@db.internal:5432/warden?sslmode=verify-full",
            "postgres://warden@10.0.0.5/warden?sslrootcert=/etc/ca.pem&sslmode=verify-full",
        ] {
            assert!(check("backend", ok).is_ok(), "{ok}");
        }
        for off in [
            "postgres://warden@db.internal:5432/warden",
            "postgres://warden@10.0.0.5/warden",
            "postgres://warden@[2001:db8::1]:5432/warden",
            "postgres://warden@127.0.0.1,db.internal/warden",
            "postgres://warden@localhost/warden?host=db.internal",
            "postgres://warden@localhost/warden?hostaddr=192.0.2.7",
            // Encrypted, but to whoever answers: not enough.
            "postgres://warden@db.internal/warden?sslmode=require",
            "postgres://warden@db.internal/warden?sslmode=verify-ca",
        ] {
            let e = check("backend", off).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(
                    |e| e.contains("not on this machine") && e.contains("sslmode=verify-full")
                ),
                "{off}: {e:?}"
            );
        }
        assert!(check("backend", "postgres://db.internal/w?sslmode=verify-fully").is_err());
    }

    #[test]
    fn a_url_that_asks_for_tls_gets_tls_1_3_or_nothing() {
        assert!(wants_tls("postgres://db/w?sslmode=verify-full"));
        assert!(wants_tls("postgres://localhost/w?sslmode=require"));
        assert!(!wants_tls("postgres://localhost/w"));
        assert!(!wants_tls("postgres://localhost/w?sslmode=prefer"));
        assert!(check_tls(Some(true), Some("TLSv1.3")).is_ok());
        let e = check_tls(Some(true), Some("TLSv1.2"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("TLSv1.2") && e.contains("TLS 1.3"), "{e}");
        assert!(check_tls(Some(false), None).is_err());
        assert!(check_tls(None, None).is_err());
    }
}
