//! A database off this machine is reached over TLS 1.3 with its certificate checked,
//! or not at all. The test runs PostgreSQL 15 of its own on loopback with TLS on (a
//! certificate for `localhost` from a CA the test makes) and points `warden init
//! --backend` at it with `sslmode=verify-full`: the cluster's and the registry's
//! connections are TLS 1.3; a server that offers only TLS 1.2 and a server whose
//! certificate another CA signed are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cli;
mod serve;

use cli::Fx;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// PostgreSQL's programs (scripts/postgres installs them when missing).
fn bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/postgres)")
        .map(|d| d.unwrap().path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("initdb")
}

fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as the server's user.
fn as_pg(program: &Path) -> Command {
    if root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA of the test's own.
fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A PostgreSQL server with TLS on, serving a certificate for `localhost` that `ca`
/// signed, offering TLS up to `max_tls`; stopped on drop.
struct TlsServer {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsServer {
    fn start(ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>, max_tls: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        std::fs::write(d.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(d.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        if root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(d));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = bin();
        run(as_pg(&bin.join("initdb"))
            .arg("-D")
            .arg(d.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]));
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c ssl=on -c ssl_cert_file={} \
             -c ssl_key_file={} -c ssl_max_protocol_version={max_tls}",
            d.display(),
            d.join("server.crt").display(),
            d.join("server.key").display()
        );
        run(as_pg(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(d.join("data"))
            .arg("-l")
            .arg(d.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]));
        run(Command::new(bin.join("psql")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE ROLE warden LOGIN SUPERUSER",
            "-c",
            "CREATE DATABASE warden OWNER warden",
        ]));
        Self { dir, port }
    }

    /// The URL `warden.toml` names it by, trusting the CA at `ca_file`.
    fn url(&self, ca_file: &Path) -> String {
        format!(
            "postgres://warden@localhost:{}/warden?sslmode=verify-full&sslrootcert={}",
            self.port,
            ca_file.display()
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = as_pg(&bin().join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// What `psql` says of the TLS sessions of the server's other connections.
fn sessions(server: &TlsServer) -> String {
    let out = Command::new(bin().join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "warden",
            "-Atc",
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = 'warden' ORDER BY 1, 2",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_database_off_this_machine_is_reached_over_verified_tls_1_3_only() {
    let ours = ca("Warden test database CA");
    let fx = Fx::new();
    let ca_file = fx.root.join("db-ca.pem");
    std::fs::write(&ca_file, ours.pem()).unwrap();

    // TLS 1.3 with the certificate and name checked: the data directory is made on
    // the database, and every connection the command keeps open is TLS 1.3.
    let good = TlsServer::start(&ours, "TLSv1.3");
    let url = good.url(&ca_file);
    fx.ok(&["init", "--dev", "--backend", &url]);
    let out = fx.run(&["principal", "list", "--json", "--as", "admin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin"));
    let (mut serve, _, _) = serve::start(fx.cmd());
    let seen = sessions(&good);
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(!seen.is_empty(), "serve holds connections");
    assert!(
        seen.lines().all(|l| l == "t|TLSv1.3"),
        "every connection is TLS 1.3: {seen}"
    );

    // A server that offers TLS 1.2 at most: refused, whatever its certificate.
    let old = TlsServer::start(&ours, "TLSv1.2");
    let other = Fx::new();
    let out = other.run(&["init", "--dev", "--backend", &old.url(&ca_file)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLSv1.2") && err.contains("TLS 1.3"), "{err}");

    // A server whose certificate another CA signed: refused.
    let impostor = TlsServer::start(&ca("Someone else's CA"), "TLSv1.3");
    let third = Fx::new();
    let out = third.run(&["init", "--dev", "--backend", &impostor.url(&ca_file)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");
}
