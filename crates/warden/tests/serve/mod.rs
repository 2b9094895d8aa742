//! Starting a real `warden serve` for a test.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

/// Starts `warden serve` (as `cmd` is set up) on a free loopback port; returns it, its
/// address, and what it printed until it was serving. Its later output is drained.
pub fn start(cmd: Command) -> (Child, String, String) {
    start_with(cmd, &[])
}

/// `start`, with more arguments for `warden serve`.
pub fn start_with(mut cmd: Command, args: &[String]) -> (Child, String, String) {
    let mut serve = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "warden: serving http://127.0.0.1:PORT" on stderr.
    let mut err = BufReader::new(serve.stderr.take().unwrap());
    let mut addr = None;
    let mut seen = String::new();
    for _ in 0..20 {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(a) = line.trim().strip_prefix("warden: serving http://") {
            addr = Some(a.to_owned());
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("serve did not start: {seen}"));
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    (serve, addr, seen)
}
