//! `warden log cosign`: one round of witnessing for the data directory's ledger.

use crate::common::{DataDirArg, print_json};
use anyhow::{Context, Result, bail};
use std::process::ExitCode;
use std::time::Duration;
use warden_core::cosign::VerifierKey;
use warden_server::cosigning::{Cosigning, Peer, cosigned_path};

/// The witnesses to ask and how many must cosign.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A witness's submission prefix (`http://127.0.0.1:7380`). Repeat for each
    /// witness, in the order of the --witness-key values.
    #[arg(long = "witness", required = true)]
    urls: Vec<String>,
    /// The verifier key (`name+keyid+key`, from `warden witness vkey`) each witness's
    /// cosignature is checked with, in the order of --witness.
    #[arg(long = "witness-key", required = true)]
    keys: Vec<String>,
    /// Cosignatures needed before the checkpoint is published (default: all).
    #[arg(long)]
    quorum: Option<usize>,
    /// Seconds to wait for each witness.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    #[command(flatten)]
    dir: DataDirArg,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> Result<ExitCode> {
    if a.urls.len() != a.keys.len() {
        bail!(
            "{} --witness and {} --witness-key: give one key per witness",
            a.urls.len(),
            a.keys.len()
        );
    }
    let peers = a
        .urls
        .iter()
        .zip(&a.keys)
        .map(|(url, key)| {
            Ok(Peer {
                url: url.clone(),
                key: VerifierKey::parse(key).with_context(|| format!("--witness-key {key}"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let quorum = a.quorum.unwrap_or(peers.len());
    let cosigning = Cosigning::new(peers, quorum, Duration::from_secs(a.timeout.max(1)))
        .map_err(anyhow::Error::msg)?;
    let d = a.dir.dir();
    let cfg = crate::cluster::config_for_reading(&d)?;
    let log = d.log(&cfg);
    let round = crate::registry::runtime()?
        .block_on(cosigning.round(&log))
        .map_err(anyhow::Error::msg)?;
    if a.json {
        print_json(&serde_json::json!({"round": round, "quorum": quorum,
            "cosigned": round.published.then(|| cosigned_path(&log))}))?;
    } else {
        for (name, why) in &round.failed {
            println!("{name}: no cosignature: {why}");
        }
        if round.published {
            println!(
                "checkpoint of size {} cosigned by {} of {} witnesses ({}); published at {}",
                round.size,
                round.cosigned_by.len(),
                a.urls.len(),
                round.cosigned_by.join(", "),
                cosigned_path(&log).display()
            );
        } else {
            println!(
                "checkpoint of size {}: {} of the {quorum} cosignatures needed; not published",
                round.size,
                round.cosigned_by.len()
            );
        }
    }
    Ok(if round.published {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::common::EXIT_ERROR)
    })
}

/// Cosigning on a schedule beside `warden serve` (`[witnessing]`): a thread of its own
/// (a round reads the ledger's files, and the first proof may build the hash store),
/// asking the witnesses whenever the ledger has a checkpoint newer than the one last
/// published. Dropping it stops the thread.
#[derive(Debug)]
pub struct Scheduled {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Scheduled {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts scheduled cosigning when `warden.toml` names witnesses.
pub fn schedule(
    cfg: &warden_store::config::WitnessingConfig,
    log: &std::path::Path,
) -> Result<Option<Scheduled>> {
    if cfg.witness.is_empty() {
        return Ok(None);
    }
    let peers = cfg
        .witness
        .iter()
        .map(|w| {
            Ok(Peer {
                url: w.url.clone(),
                key: VerifierKey::parse(&w.key)
                    .with_context(|| format!("[[witnessing.witness]] key {}", w.key))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let quorum = cfg.quorum.unwrap_or(peers.len());
    let cosigning = Cosigning::new(peers, quorum, Duration::from_secs(cfg.timeout_secs.max(1)))
        .map_err(anyhow::Error::msg)
        .context("[witnessing]")?;
    let every = Duration::from_secs(cfg.interval_secs.max(1));
    let log = log.to_owned();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("warden-cosign".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                crate::common::eprint("witnessing: cannot start its runtime");
                return;
            };
            let mut published = 0u64;
            let mut last_problem = String::new();
            loop {
                let latest = warden_store::audit::latest_checkpoint(&log)
                    .ok()
                    .flatten()
                    .map_or(0, |r| r.size);
                if latest > published {
                    let problem = match rt.block_on(cosigning.round(&log)) {
                        Ok(r) if r.published => {
                            published = r.size;
                            String::new()
                        }
                        Ok(r) => format!(
                            "checkpoint {} has {} of {quorum} cosignatures ({})",
                            r.size,
                            r.cosigned_by.len(),
                            r.failed
                                .iter()
                                .map(|(n, why)| format!("{n}: {why}"))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        Err(e) => e,
                    };
                    if problem != last_problem && !problem.is_empty() {
                        crate::common::eprint(&format!("witnessing: {problem}"));
                    }
                    last_problem = problem;
                }
                match stopped.recv_timeout(every) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })
        .context("starting the cosigning thread")?;
    Ok(Some(Scheduled {
        stop,
        thread: Some(thread),
    }))
}
