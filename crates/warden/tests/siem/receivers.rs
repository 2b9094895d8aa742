//! Real syslog receivers on loopback: rsyslog and syslog-ng, each listening on TCP and
//! TLS (octet-counted and newline-framed messages) and writing every message it
//! receives as one JSON line with the fields it parsed.
//!
//! `scripts/install-receivers` installs both (syslog-ng is unpacked under
//! /opt/warden-test/syslog-ng, since its package conflicts with rsyslog's).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rsyslog,
    SyslogNg,
}

/// Ports a receiver listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// RFC 6587 octet counting over TCP (rsyslog also accepts newline framing here).
    pub tcp: u16,
    /// RFC 5425 over TLS.
    pub tls: u16,
    /// Newline-framed lines over TCP, stored as received.
    pub tcp_lines: u16,
    /// Newline-framed lines over TLS.
    pub tls_lines: u16,
}

/// One message as the receiver stored it.
#[derive(Clone, Debug)]
pub struct Msg {
    pub msgid: String,
    /// The message text (RFC 5424 MSG, or the whole line for newline-framed input).
    pub msg: String,
    /// Structured data the receiver parsed: SD-ID -> param -> value.
    pub sd: Value,
}

#[derive(Debug)]
pub struct Receiver {
    pub kind: Kind,
    pub ports: Ports,
    dir: PathBuf,
    conf: PathBuf,
    out: PathBuf,
    child: Option<Child>,
}

/// A free port from a range of this process's own (tests run as separate processes in
/// parallel; a receiver that failed to bind a port another test took would otherwise
/// look ready, with that test's receiver answering), below the ephemeral range.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 10_000 + (std::process::id() % 2_000) * 10;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 10, "ran out of test ports");
        let p = u16::try_from(base + n).unwrap();
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

const SYSLOG_NG_PREFIX: &str = "/opt/warden-test/syslog-ng";

fn syslog_ng() -> (PathBuf, PathBuf, PathBuf) {
    let prefix = PathBuf::from(
        std::env::var("WARDEN_SYSLOG_NG_PREFIX").unwrap_or_else(|_| SYSLOG_NG_PREFIX.into()),
    );
    let bin = prefix.join("usr/sbin/syslog-ng");
    assert!(
        bin.exists(),
        "syslog-ng is not installed at {}: run scripts/install-receivers",
        bin.display()
    );
    let libs = prefix.join("usr/lib/syslog-ng");
    let modules = std::fs::read_dir(&libs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("libafsocket.so").exists())
        .expect("syslog-ng modules");
    (bin, libs, modules)
}

impl Receiver {
    /// Starts a receiver writing under `dir`, with TLS certificate and key.
    pub fn start(kind: Kind, dir: &Path, cert: &Path, key: &Path) -> Self {
        Self::start_with(kind, dir, cert, key, None)
    }

    /// As [`Receiver::start`]; with `client_ca`, TLS clients must present a certificate
    /// issued by it (syslog-ng only).
    pub fn start_with(
        kind: Kind,
        dir: &Path,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Self {
        let verify = match client_ca {
            None => "peer-verify(optional-untrusted)".to_owned(),
            Some(ca) => {
                assert_eq!(kind, Kind::SyslogNg, "client certificates: syslog-ng only");
                format!(
                    "peer-verify(required-trusted) ca-file(\"{}\")",
                    ca.display()
                )
            }
        };
        std::fs::create_dir_all(dir).unwrap();
        let tcp = free_port();
        let tls = free_port();
        let ports = match kind {
            Kind::Rsyslog => Ports {
                tcp,
                tls,
                tcp_lines: tcp,
                tls_lines: tls,
            },
            Kind::SyslogNg => Ports {
                tcp,
                tls,
                tcp_lines: free_port(),
                tls_lines: free_port(),
            },
        };
        let out = dir.join("received.jsonl");
        let conf = dir.join(match kind {
            Kind::Rsyslog => "rsyslog.conf",
            Kind::SyslogNg => "syslog-ng.conf",
        });
        let text = match kind {
            Kind::Rsyslog => {
                std::fs::create_dir_all(dir.join("work")).unwrap();
                format!(
                    r#"global(workDirectory="{work}" maxMessageSize="1m"
       DefaultNetstreamDriverCAFile="{cert}" DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" maxSessions="200")
module(load="mmpstrucdata")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="in")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="in"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon"
      gnutlsPriorityString="NORMAL:-VERS-ALL:+VERS-TLS1.3")
template(name="j" type="string"
  string="{{\"msgid\":\"%msgid:::json%\",\"msg\":\"%msg:::json%\",\"raw\":\"%rawmsg:::json%\",\"sd\":\"%$!:::json%\"}}\n")
# A direct queue: what rsyslog has read is written before it reads on.
ruleset(name="in" queue.type="Direct") {{
  action(type="mmpstrucdata")
  action(type="omfile" file="{out}" template="j")
}}
"#,
                    work = dir.join("work").display(),
                    cert = cert.display(),
                    key = key.display(),
                    out = out.display(),
                    tcp = ports.tcp,
                    tls = ports.tls,
                )
            }
            Kind::SyslogNg => format!(
                r#"@version: 3.38
options {{ log-msg-size(1048576); stats-freq(0); keep-hostname(yes); }};
source s_framed {{
  syslog(ip(127.0.0.1) port({tcp}) transport("tcp") max-connections(200) log-msg-size(1048576));
  syslog(ip(127.0.0.1) port({tls}) transport("tls") max-connections(200) log-msg-size(1048576)
         tls(key-file("{key}") cert-file("{cert}") {verify}));
}};
source s_lines {{
  network(ip(127.0.0.1) port({tcp_lines}) transport("tcp") flags(no-parse) max-connections(200) log-msg-size(1048576));
  network(ip(127.0.0.1) port({tls_lines}) transport("tls") flags(no-parse) max-connections(200) log-msg-size(1048576)
          tls(key-file("{key}") cert-file("{cert}") {verify}));
}};
destination d_out {{ file("{out}" template("$(format-json --scope sdata msgid=${{MSGID}} msg=${{MESSAGE}})\n")); }};
log {{ source(s_framed); source(s_lines); destination(d_out); flags(flow-control); }};
"#,
                cert = cert.display(),
                key = key.display(),
                out = out.display(),
                tcp = ports.tcp,
                tls = ports.tls,
                tcp_lines = ports.tcp_lines,
                tls_lines = ports.tls_lines,
            ),
        };
        std::fs::write(&conf, text).unwrap();
        let mut r = Self {
            kind,
            ports,
            dir: dir.to_path_buf(),
            conf,
            out,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("receiver.stderr")).unwrap();
        let mut cmd = match self.kind {
            Kind::Rsyslog => {
                let mut c = Command::new("rsyslogd");
                c.arg("-n")
                    .arg("-f")
                    .arg(&self.conf)
                    .arg("-i")
                    .arg(self.dir.join("rsyslogd.pid"));
                c
            }
            Kind::SyslogNg => {
                let (bin, libs, modules) = syslog_ng();
                let mut c = Command::new(bin);
                c.env("LD_LIBRARY_PATH", libs)
                    .arg("-F")
                    .arg("--no-caps")
                    .arg("-f")
                    .arg(&self.conf)
                    .arg(format!("--module-path={}", modules.display()))
                    .arg(format!(
                        "--persist-file={}",
                        self.dir.join("persist").display()
                    ))
                    .arg(format!("--pidfile={}", self.dir.join("pid").display()))
                    .arg(format!("--control={}", self.dir.join("ctl").display()));
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {:?} ({e}): run scripts/install-receivers",
                    self.kind
                )
            });
        self.child = Some(child);
        // Ready when every port accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        for p in [
            self.ports.tcp,
            self.ports.tls,
            self.ports.tcp_lines,
            self.ports.tls_lines,
        ] {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                if let Some(c) = &mut self.child
                    && let Ok(Some(st)) = c.try_wait()
                {
                    panic!(
                        "{:?} exited ({st}): {}",
                        self.kind,
                        std::fs::read_to_string(self.dir.join("receiver.stderr"))
                            .unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{:?} did not listen on {p}",
                    self.kind
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Kills the receiver with `signal` and waits for it to exit.
    pub fn kill(&mut self, signal: &str) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Stops the receiver (SIGSTOP) without killing it: what is sent piles up unread.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-STOP")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Starts it again on the same ports, appending to the same file.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Messages stored so far.
    pub fn messages(&self) -> Vec<Msg> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("{:?} wrote an unreadable line ({e}): {l}", self.kind)
                });
                let s = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                match self.kind {
                    Kind::Rsyslog => {
                        let sd = serde_json::from_str::<Value>(&s("sd"))
                            .ok()
                            .and_then(|t| t.get("rfc5424-sd").cloned())
                            .unwrap_or(Value::Null);
                        // Newline-framed input is not syslog: keep it exactly as received.
                        let raw = s("raw");
                        let framed = raw.starts_with('<');
                        Msg {
                            msgid: if framed { s("msgid") } else { String::new() },
                            msg: if framed { s("msg") } else { raw },
                            sd,
                        }
                    }
                    Kind::SyslogNg => Msg {
                        msgid: s("msgid"),
                        msg: s("msg"),
                        sd: v.get("_SDATA").cloned().unwrap_or(Value::Null),
                    },
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages are stored, and returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill("KILL");
    }
}
