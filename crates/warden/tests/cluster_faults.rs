//! Faults under a cluster node (`warden serve` on PostgreSQL and an S3-compatible
//! bucket): the bucket answering 500, the bucket stalling, and PostgreSQL unreachable.
//! Each refuses downloads with 503 and `Retry-After` (nothing is served unaudited), and
//! the node serves again by itself once the fault clears. The bucket's faults come from
//! a TCP proxy in front of the real server, which passes, answers 500, or holds
//! connections silent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

mod cli;
mod nodes;
#[path = "../../warden-registry/tests/common/s3.rs"]
mod s3;
mod serve;

use cli::pg::Pg;
use nodes::{MODEL_BYTES, access_ids, cluster, ledger, nodes};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a node reuses a small blob's bytes read from the bucket.
const RECENT_TTL: Duration = Duration::from_millis(1100);

const PASS: u8 = 0;
const FAIL: u8 = 1;
const STALL: u8 = 2;

/// A TCP proxy to `upstream` whose behaviour is switched at run time. A switch cuts
/// every connection opened before it, so pooled connections see the new behaviour too.
struct Faulty {
    endpoint: String,
    mode: Arc<AtomicU8>,
    generation: Arc<AtomicU64>,
}

impl Faulty {
    fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(AtomicU8::new(PASS));
        let generation = Arc::new(AtomicU64::new(0));
        let (m, g) = (Arc::clone(&mode), Arc::clone(&generation));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (m, g, up) = (Arc::clone(&m), Arc::clone(&g), upstream.clone());
                std::thread::spawn(move || serve_conn(conn, &up, &m, &g));
            }
        });
        Self {
            endpoint,
            mode,
            generation,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

fn serve_conn(mut conn: TcpStream, upstream: &str, mode: &AtomicU8, generation: &Arc<AtomicU64>) {
    let born = generation.load(Ordering::SeqCst);
    let alive = || generation.load(Ordering::SeqCst) == born;
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    match mode.load(Ordering::SeqCst) {
        PASS => {
            let Ok(up) = TcpStream::connect(upstream) else {
                return;
            };
            up.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            // Each direction on its own thread; both stop when either side closes or
            // the mode changes.
            let done = Arc::new(AtomicBool::new(false));
            let go = {
                let (g, d) = (Arc::clone(generation), Arc::clone(&done));
                move || g.load(Ordering::SeqCst) == born && !d.load(Ordering::SeqCst)
            };
            let back = {
                let (from, to, go, d) = (
                    up.try_clone().unwrap(),
                    conn.try_clone().unwrap(),
                    go.clone(),
                    Arc::clone(&done),
                );
                std::thread::spawn(move || {
                    pump(from, to, &go);
                    d.store(true, Ordering::SeqCst);
                })
            };
            pump(conn.try_clone().unwrap(), up.try_clone().unwrap(), &go);
            done.store(true, Ordering::SeqCst);
            let _ = back.join();
            let _ = conn.shutdown(std::net::Shutdown::Both);
            let _ = up.shutdown(std::net::Shutdown::Both);
        }
        FAIL => {
            // Read the request head, answer 500 and close.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && alive() {
                match conn.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>injected</Message></Error>";
            let _ = write!(
                conn,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        _ => {
            // Stall: take what is sent, answer nothing, until the mode changes.
            let mut buf = [0u8; 65536];
            while alive() {
                if let Ok(0) = conn.read(&mut buf) {
                    return;
                }
            }
        }
    }
}

/// Copies `from` to `to` while `go()` holds and neither side closed.
fn pump(mut from: TcpStream, mut to: TcpStream, go: &dyn Fn() -> bool) {
    let mut buf = [0u8; 65536];
    while go() {
        match from.read(&mut buf) {
            Ok(0) => break,
            // Bytes read after a switch are dropped with the connection.
            Ok(n) => {
                if !go() || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// One download of the model through `addr`: status, response head and error body,
/// body length (status 0 when the connection failed).
fn get(addr: &str, token: &str, rid: &str) -> (u16, String, usize) {
    nodes::get(addr, nodes::MODEL_PATH, token, rid, 40)
        .map_or((0, String::new(), 0), |a| (a.code, a.text, a.size))
}

/// Downloads until one is served (200, whole), within `limit`; returns how long it took.
fn until_served(
    addr: &str,
    token: &str,
    tag: &str,
    limit: Duration,
    served: &mut Vec<String>,
) -> Duration {
    let t = Instant::now();
    for i in 0.. {
        let rid = format!("{tag}-{i}");
        let (code, _, n) = get(addr, token, &rid);
        if code == 200 {
            assert_eq!(n, MODEL_BYTES, "{rid}: a short download was served");
            served.push(rid);
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "{tag}: the node did not recover within {limit:?} (last status {code})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

/// A download refused while the fault lasts: 503 with `Retry-After`, no bytes; returns
/// how long the refusal took.
fn refused(addr: &str, token: &str, rid: &str) -> Duration {
    let t = Instant::now();
    let (code, head, _) = get(addr, token, rid);
    let took = t.elapsed();
    assert_eq!(code, 503, "{rid}: {head}");
    assert!(head.contains("\nretry-after:"), "{rid}: {head}");
    took
}

/// A cluster with one node whose bucket is reached through a [`Faulty`] proxy, and one
/// download served through it.
fn faulty_node(
    pg: &Pg,
) -> (
    cli::Fx,
    String,
    Faulty,
    Vec<nodes::Node>,
    String,
    Vec<String>,
) {
    let (mut fx, token, _) = cluster(pg);
    let real = fx
        .env
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    let proxy = Faulty::start(&real);
    for (k, v) in &mut fx.env {
        if k == "AWS_ENDPOINT_URL" {
            v.clone_from(&proxy.endpoint);
        }
    }
    let (nodes, addrs) = nodes(&fx, 1);
    let addr = addrs[0].clone();
    let mut served = Vec::new();
    until_served(&addr, &token, "before", Duration::from_secs(5), &mut served);
    (fx, token, proxy, nodes, addr, served)
}

/// Stops the node; every served download is in its verified ledger exactly once, and no
/// integrity incident was raised (an outage is not damaged bytes).
fn check_ledger(fx: &cli::Fx, nodes: &mut [nodes::Node], served: &[String]) {
    nodes[0].signal("-TERM");
    let entries = ledger(fx, &nodes[0].data);
    let ids = access_ids(&entries);
    for rid in served {
        assert_eq!(ids.get(rid), Some(&1), "served download {rid}");
    }
    let incidents: Vec<_> = entries.iter().filter(|e| e["kind"] == "incident").collect();
    assert!(incidents.is_empty(), "{incidents:?}");
}

#[test]
fn bucket_failure_is_an_outage_not_an_integrity_incident() {
    let pg = Pg::new();
    let (fx, token, proxy, mut nodes, addr, mut served) = faulty_node(&pg);
    // A small blob read in the last second is served from the node's memory (verified
    // like any read); the next read goes to the bucket.
    proxy.set(FAIL);
    std::thread::sleep(RECENT_TTL);
    let took = refused(&addr, &token, "bucket-500");
    eprintln!("bucket answering 500: refused with 503 after {took:?}");
    proxy.set(PASS);
    let back = until_served(
        &addr,
        &token,
        "after-500",
        Duration::from_secs(10),
        &mut served,
    );
    eprintln!("served again {back:?} after the bucket recovered");

    proxy.set(STALL);
    std::thread::sleep(RECENT_TTL);
    let took = refused(&addr, &token, "bucket-stall");
    eprintln!("bucket stalled: refused with 503 after {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "a stalled bucket held the request for {took:?}"
    );
    proxy.set(PASS);
    let back = until_served(
        &addr,
        &token,
        "after-stall",
        Duration::from_secs(10),
        &mut served,
    );
    eprintln!("served again {back:?} after the bucket recovered");
    check_ledger(&fx, &mut nodes, &served);
}

#[test]
fn an_unreachable_database_fails_closed_and_the_node_recovers() {
    // A server of its own: this test stops it.
    let pg = Pg::own_server(25434, "/opt/warden-test/postgres-faults");
    let (fx, token, _proxy, mut nodes, addr, mut served) = faulty_node(&pg);
    pg.stop();
    let took = refused(&addr, &token, "db-down");
    eprintln!("database unreachable: refused with 503 after {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "an unreachable database held the request for {took:?}"
    );
    pg.start();
    let back = until_served(
        &addr,
        &token,
        "after-db",
        Duration::from_secs(30),
        &mut served,
    );
    eprintln!("served again {back:?} after the database came back");
    check_ledger(&fx, &mut nodes, &served);
}

/// Regression (`an_unreachable_database_fails_closed_and_the_node_recovers` failed when
/// its server could not bind port 55434, which a client connection held as its local
/// port): every server the tests start on a fixed port listens below the kernel's
/// ephemeral range, which no outgoing connection takes.
#[test]
fn test_servers_listen_below_the_ephemeral_port_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for script in ["scripts/postgres", "scripts/s3"] {
        let out = std::process::Command::new(root.join(script))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap();
        let port: u16 = url
            .trim()
            .rsplit_once(':')
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
            .unwrap()
            .parse()
            .unwrap();
        assert!(port < low, "{script} listens on {port}, inside {range}");
    }
}
