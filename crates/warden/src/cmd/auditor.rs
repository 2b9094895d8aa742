//! `warden auditor keygen|add`.

use crate::common::{DataDirArg, print_json};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_store::keys;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an auditor key pair (hybrid ML-KEM-768 + X25519): OUT (secret, mode 0600)
    /// and OUT.pub.
    Keygen {
        /// Path of the secret key file.
        #[arg(long)]
        out: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add an auditor public key: data keys of epochs started from now on are wrapped to it.
    Add {
        /// The auditor's public key file.
        public_key: PathBuf,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Keygen { out, json } => {
            let mut pub_path = out.clone().into_os_string();
            pub_path.push(".pub");
            let pub_path = PathBuf::from(pub_path);
            if out.exists() || pub_path.exists() {
                bail!("{} or {} already exists", out.display(), pub_path.display());
            }
            let k = keys::create_recipient(out, &pub_path)?;
            if *json {
                print_json(
                    &serde_json::json!({"id": k.id(), "secret_key": out, "public_key": pub_path}),
                )?;
            } else {
                println!(
                    "auditor key {} written: {} (secret, keep offline) and {}",
                    k.id(),
                    out.display(),
                    pub_path.display()
                );
            }
        }
        Command::Add { public_key, dir } => {
            let k = keys::read_recipient_public(public_key)?;
            let d = dir.dir();
            std::fs::create_dir_all(d.auditors()).context("creating auditors/")?;
            let dest = d.auditors().join(format!("{}.pub", k.id()));
            std::fs::copy(public_key, &dest)
                .with_context(|| format!("copying to {}", dest.display()))?;
            println!(
                "auditor {} added; epochs started from now on wrap their data key to it",
                k.id()
            );
            // A writer started on demand stops, so the next command starts an epoch
            // that includes the new auditor; a service keeps its epoch until it rotates.
            if let Ok(cfg) = d.read_config()
                && crate::ondemand::take_over(&warden_store::writer::socket_path(&d, &cfg)).is_err()
            {
                println!(
                    "note: a writer is running for this data directory: the auditor receives data keys from its next rotation (at most {} s) or when it restarts",
                    cfg.rotation_interval_secs
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
