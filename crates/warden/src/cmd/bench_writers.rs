//! `warden bench writers`: durable appends through the data directory's writer from
//! several client processes (the real `warden writer` and `warden log append --stdin`),
//! next to the in-process ledger measured in the same run; acknowledgement latency
//! through the socket at half the many-client rate; and how long the writer takes to
//! start.

use crate::cmd::bench::{event, fixture, open, paced, pct, rate, sustained, threads};
use crate::common::print_json;
use anyhow::{Context, Result, bail};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use warden_store::writer::client::Remote;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Entries per measurement, split across its clients.
    #[arg(long, default_value_t = 400_000)]
    events: u64,
    /// Numbers of concurrent client processes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Event size in bytes (plaintext JSON).
    #[arg(long, default_value_t = 300)]
    event_size: usize,
    /// Entries in the ledger whose writer start-up is measured (its active segment is
    /// filled close to `[segments] max_bytes` too); 0 skips the start-up measurement.
    #[arg(long, default_value_t = 10_000_000)]
    startup_entries: u64,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
}

fn warden() -> Result<Command> {
    let mut c = Command::new(std::env::current_exe().context("locating warden")?);
    c.env_remove("WARDEN_USER")
        .env_remove("WARDEN_WRITER_SOCKET")
        .env("WARDEN_PASSPHRASE", "");
    Ok(c)
}

fn ok(c: &mut Command) -> Result<()> {
    let out = c.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!("{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Starts `warden writer` on `data`; returns it once it listens, and how long that took.
fn start_writer(data: &Path) -> Result<(Child, Duration)> {
    let t0 = Instant::now();
    let mut child = warden()?
        .arg("writer")
        .arg("--data-dir")
        .arg(data)
        .stderr(Stdio::piped())
        .spawn()?;
    let err = child.stderr.take().context("writer stderr")?;
    let mut lines = BufReader::new(err).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("writer listening on") => break,
            Some(Ok(_)) => {}
            _ => bail!("the writer did not start"),
        }
    }
    let took = t0.elapsed();
    std::thread::spawn(move || for _ in lines {});
    Ok((child, took))
}

fn stop(mut child: Child) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}

/// Appends to the data directory's ledger in this process until it holds `n` entries
/// and its active file is at least 90 % of `[segments] max_bytes`; returns its size.
fn fill(data: &Path, n: u64, size: usize) -> Result<u64> {
    let dir = warden_store::config::DataDir::new(data);
    let cfg = dir.read_config()?;
    let root = warden_store::keys::unlock_root(&dir.root_key(), b"")?;
    let ledger = crate::common::open_unlocked(&dir, &cfg, root)?;
    let log = dir.log(&cfg);
    let full = cfg.segments.max_bytes / 10 * 9;
    let covered = || -> Result<u64> {
        Ok(warden_store::audit::latest_checkpoint(&log)?.map_or(0, |r| r.size))
    };
    loop {
        let len = std::fs::metadata(&log).map_or(0, |m| m.len());
        if covered()? >= n && (full == 0 || len >= full) {
            break;
        }
        sustained(&ledger, 200_000, size, threads())?;
    }
    ledger.close();
    covered()
}

/// `n` entries as `log append --stdin` input.
fn input(n: u64, size: usize, client: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(n)? * (size + 64));
    for i in 0..n {
        let ev = event(size, i + (client as u64) * 1_000_000);
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"kind": "model.access", "event": ev}),
        )?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Streams `events` entries from `clients` processes through the writer; the aggregate
/// rate of durable appends (every receipt printed).
fn through_socket(data: &Path, clients: usize, events: u64, size: usize) -> Result<f64> {
    let per = events / clients as u64;
    let inputs = (0..clients)
        .map(|c| input(per, size, c))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut kids = Vec::new();
    for inp in inputs {
        let mut k = warden()?
            .args(["log", "append", "--stdin", "--data-dir"])
            .arg(data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = k.stdin.take().context("stdin")?;
        let feeder = std::thread::spawn(move || stdin.write_all(&inp));
        kids.push((k, feeder));
    }
    for (k, feeder) in kids {
        feeder
            .join()
            .map_err(|_| anyhow::anyhow!("feeder failed"))??;
        let out = k.wait_with_output()?;
        if !out.status.success() {
            bail!("a client failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(rate(per * clients as u64, start.elapsed()))
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let say = |m: &str| {
        if !a.json {
            crate::common::eprint(m);
        }
    };
    let fx = fixture(None)?;
    say("in-process ledger (the baseline) ...");
    let (ledger, _) = open(&fx, "inproc", false)?;
    let baseline = rate(
        a.events,
        sustained(&ledger, a.events, a.event_size, threads())?,
    );
    ledger.close();

    let data = fx.root.join("data");
    let aud = fx.root.join("clients.key");
    ok(warden()?.args(["auditor", "keygen", "--out"]).arg(&aud))?;
    ok(warden()?
        .args(["init", "--dev", "--data-dir"])
        .arg(&data)
        .arg("--auditor")
        .arg(aud.with_extension("key.pub")))?;
    let (writer, _) = start_writer(&data)?;
    let mut levels: Vec<(usize, f64)> = Vec::new();
    for &n in &a.clients {
        say(&format!("{n} client process(es) through the socket ..."));
        let r = through_socket(&data, n.max(1), a.events, a.event_size)?;
        levels.push((n, r));
    }
    let top = levels.last().map_or(0.0, |l| l.1);
    say("acknowledgement latency through the socket at half that rate ...");
    let socket = data.join("run/writer.sock");
    let remote = Remote::connect(
        &socket,
        &data.join("logs/model_access.jsonl"),
        None,
        "warden-bench",
        30_000,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut lat = paced(&remote, top / 2.0, 3.0, a.event_size)?;
    drop(remote);
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    stop(writer)?;
    let startup = if a.startup_entries > 0 {
        say(&format!(
            "filling the ledger to {} entries and a full active segment ...",
            a.startup_entries
        ));
        let entries = fill(&data, a.startup_entries, a.event_size)?;
        say("writer start-up without the saved tree state (the full rehash) ...");
        std::fs::remove_file(data.join("logs/model_access.tree")).ok();
        let (w, before) = start_writer(&data)?;
        stop(w)?;
        say("writer start-up with it ...");
        let (w, after) = start_writer(&data)?;
        stop(w)?;
        Some((entries, before, after))
    } else {
        None
    };
    let v = serde_json::json!({
        "in_process_appends_per_s": baseline,
        "through_socket": levels.iter().map(|(n, r)| serde_json::json!({
            "clients": n, "appends_per_s": r, "ratio_to_in_process": r / baseline,
        })).collect::<Vec<_>>(),
        "half_rate_ack_ms": {"rate_per_s": top / 2.0, "p50": p50, "p99": p99, "target_p99": 5.0},
        "writer_startup_ms": startup.map(|(n, b, a)| serde_json::json!({
            "entries": n, "full_rehash": b.as_secs_f64() * 1000.0,
            "with_saved_tree": a.as_secs_f64() * 1000.0, "target_ms": 1000.0,
        })),
        "goal_ratio_at_32": 0.8,
    });
    if a.json {
        print_json(&v)?;
    } else {
        println!("in-process ledger:            {baseline:>12.0} appends/s (baseline)");
        for (n, r) in &levels {
            println!(
                "{n:>3} client process(es):      {r:>12.0} appends/s  {:.2} x in-process",
                r / baseline
            );
        }
        println!(
            "ack at {:.0}/s through the socket: p50 {p50:.2} ms, p99 {p99:.2} ms (target p99 <= 5 ms)",
            top / 2.0
        );
        if let Some((n, b, a)) = startup {
            println!(
                "writer start-up, {n} entries: {:.0} ms with the saved tree state, {:.0} ms rehashing the active segment (target <= 1000 ms)",
                a.as_secs_f64() * 1000.0,
                b.as_secs_f64() * 1000.0
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
