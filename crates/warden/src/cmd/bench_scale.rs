//! `warden bench fill`: grows a data directory's ledger to a given size with entries
//! spread over a span of simulated time, so that `bench/scale` can measure how every
//! cost grows with the ledger (segments per day, a rotation every interval, one
//! checkpoint per batch, as a real deployment writing at that rate would have).

use crate::common::{DataDirArg, ledger_options, print_json, unlock};
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use warden_core::entry::Event;
use warden_core::time::Timestamp;
use warden_store::ledger::{Clock, Ledger, SystemClock, Ticket};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Write synthetic events until the `until`-th one (an earlier call's progress is
    /// kept in `bench-fill.next` in the data directory, so a second call continues the
    /// same sequence and the same simulated time). Key rotations add entries of their own.
    #[arg(long)]
    pub until: u64,
    /// The size the whole simulated span is laid out for: entry `i` is stamped
    /// `start + i · span / total`.
    #[arg(long)]
    pub total: u64,
    /// Simulated time of entry 0, in seconds since 1970 (the same for every call that
    /// grows one ledger).
    #[arg(long)]
    pub start: u64,
    /// Days of simulated time the `total` entries span.
    #[arg(long, default_value_t = 365)]
    pub span_days: u64,
    /// Simulated seconds of events in flight at most: the batches the sequencer forms
    /// are what a deployment writing at this rate would form with clients this far
    /// ahead. Smaller is closer to one checkpoint per entry at low rates (and slower).
    #[arg(long, default_value_t = 600)]
    pub batch_secs: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A clock the filler moves forward: the ledger stamps batches, rotates epochs and
/// seals days by it.
#[derive(Debug)]
struct Simulated(AtomicU64);

impl Clock for Simulated {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::Relaxed)).unwrap_or_else(|| SystemClock.now())
    }
}

/// The synthetic mix `bench/entries.py` writes: six in ten accesses, two denials, one
/// incident (rotating severity), one registration; 997 users, 101 models.
fn entry(i: u64) -> (&'static str, Event) {
    const SEVERITY: [&str; 4] = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
    let kind = match i % 10 {
        0..=5 => "model.access",
        6 | 7 => "model.denied",
        8 => "incident",
        _ => "registry.register",
    };
    let details = (kind == "incident").then(|| {
        serde_json::json!({"severity": SEVERITY.get((i % 4) as usize).copied().unwrap_or("LOW"), "type": "extraction"})
    });
    let ev = Event {
        user: Some(format!("user{}", i % 997)),
        ip: Some(format!("10.{}.{}.{}", i % 200, i % 250, i % 7)),
        model: Some(format!("model-{}", i % 101)),
        version: Some("1.0.0".into()),
        action: Some("load".into()),
        decision: Some(
            if kind == "model.denied" {
                "deny"
            } else {
                "allow"
            }
            .into(),
        ),
        request_id: Some(format!("req-{i}")),
        details,
        ..Event::default()
    };
    (kind, ev)
}

pub fn run(a: &Args) -> Result<ExitCode> {
    anyhow::ensure!(
        a.total > 0 && a.span_days > 0,
        "--total and --span-days must be positive"
    );
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    anyhow::ensure!(
        cfg.backend.is_none(),
        "bench fill grows an embedded ledger; {} is a cluster node",
        dir.root.display()
    );
    let span_micros = a.span_days.saturating_mul(86_400_000_000);
    let start_micros = a.start.saturating_mul(1_000_000);
    let time_of = |i: u64| {
        let off = u128::from(i) * u128::from(span_micros) / u128::from(a.total);
        start_micros.saturating_add(u64::try_from(off).unwrap_or(u64::MAX))
    };
    let clock = Arc::new(Simulated(AtomicU64::new(start_micros)));
    let mut opts = ledger_options(&dir, &cfg)?;
    opts.clock = clock.clone();
    // Where an earlier call stopped, with the clock at that event's time, so a reopened
    // ledger never sees time go backwards.
    let marker = dir.root.join("bench-fill.next");
    let first = match std::fs::read_to_string(&marker) {
        Ok(s) => s.trim().parse::<u64>().context("bench-fill.next")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).context("bench-fill.next"),
    };
    clock.0.fetch_max(time_of(first), Ordering::Relaxed);
    let ledger = Ledger::open(&dir.log(&cfg), unlock(&dir)?, opts)?;
    let size0 = ledger.info().size;
    let window = usize::try_from(
        (u128::from(a.total) * u128::from(a.batch_secs.max(1)) * 1_000_000
            / u128::from(span_micros.max(1)))
        .clamp(1, 30_000),
    )
    .unwrap_or(30_000);
    let bar = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(a.until.saturating_sub(first))
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("entries {bar:30} {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    let t0 = Instant::now();
    let mut inflight: VecDeque<Ticket> = VecDeque::with_capacity(window);
    for i in first..a.until {
        clock.0.fetch_max(time_of(i), Ordering::Relaxed);
        let (kind, ev) = entry(i);
        inflight.push_back(ledger.submit(kind, &ev)?);
        if inflight.len() >= window
            && let Some(t) = inflight.pop_front()
        {
            t.wait()?;
        }
        if i % 10_000 == 0 {
            bar.set_position(i - first);
        }
    }
    for t in inflight {
        t.wait()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let end = ledger.durable_state().map_or(size0, |d| d.size);
    ledger.close();
    std::fs::write(&marker, format!("{}\n", a.until.max(first)))?;
    bar.finish_and_clear();
    let appended = a.until.saturating_sub(first);
    let out = serde_json::json!({
        "size": end, "appended": end.saturating_sub(size0), "events": appended, "seconds": secs,
        "entries_per_s": end.saturating_sub(size0) as f64 / secs.max(1e-9), "batch_window": window,
    });
    if a.json {
        print_json(&out)?;
    } else {
        println!(
            "wrote {appended} events in {secs:.1} s ({:.0}/s); the ledger holds {end} entries",
            appended as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_the_documented_shares() {
        let kinds: Vec<_> = (0..10).map(|i| entry(i).0).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "model.access").count(), 6);
        assert_eq!(kinds.iter().filter(|k| **k == "model.denied").count(), 2);
        assert_eq!(
            entry(8).1.details.map(|d| d["type"].clone()),
            Some("extraction".into())
        );
    }
}
