//! `warden witness keygen|vkey|serve`: an independent witness that cosigns a log's
//! checkpoints only while they stay consistent with what it cosigned before (C2SP
//! tlog-witness), so a log operator cannot show two histories to two auditors.

use crate::common::{eprint, print_json};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use warden_core::cosign::{Cosigner, KeyType};
use zeroize::{Zeroize, Zeroizing};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a witness key file (mode 0600) holding an ML-DSA-44 key (`subtree/v1`
    /// cosignatures) and, with --ed25519, an Ed25519 key (`cosignature/v1`, which
    /// existing witness networks use). Prints the verifier keys logs and auditors
    /// configure.
    Keygen {
        /// The witness's name: a schema-less URL such as `witness.example.com/w1`.
        #[arg(long)]
        name: String,
        /// Path of the key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Also create an Ed25519 key.
        #[arg(long)]
        ed25519: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the verifier keys (`name+keyid+key`) of a witness key file.
    Vkey {
        /// The witness key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Serve the witness over HTTP: `POST /add-checkpoint`, `POST /warden/epoch`,
    /// `GET /<sha256(origin) hex>/checkpoint`. Plain HTTP on loopback only.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The witness key file (from `warden witness keygen`).
    #[arg(long)]
    key: PathBuf,
    /// A log to witness: its root public key file (`keys/root.pub` of its data
    /// directory), which names its origin. Repeat for each log.
    #[arg(long = "log", required = true)]
    logs: Vec<PathBuf>,
    /// Directory of the witness's durable state (created 0700).
    #[arg(long)]
    state: PathBuf,
    /// Address to listen on. Plain HTTP is served on loopback addresses only; any other
    /// address needs --tls-cert and --tls-key (TLS 1.3).
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: SocketAddr,
    /// Certificate chain (PEM) for TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for TLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// The key file: the witness's name and its seeds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kind: String,
    name: String,
    ml_dsa_44_seed: String,
    ed25519_seed: Option<String>,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        self.ml_dsa_44_seed.zeroize();
        if let Some(s) = &mut self.ed25519_seed {
            s.zeroize();
        }
    }
}

const KIND: &str = "warden-witness-key";

fn seed() -> Result<Zeroizing<[u8; 32]>> {
    let mut s = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(s.as_mut_slice()).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(s)
}

fn hex_seed(text: &str) -> Result<Zeroizing<[u8; 32]>> {
    let raw = Zeroizing::new(warden_core::hex::decode(text.as_bytes()).context("seed is not hex")?);
    let mut s = Zeroizing::new([0u8; 32]);
    if raw.len() != 32 {
        bail!("a seed must be 32 bytes");
    }
    s.copy_from_slice(&raw);
    Ok(s)
}

/// Reads a witness key file (refused if others may read it).
pub fn read_key(path: &Path) -> Result<Vec<Cosigner>> {
    warden_store::perms::check_secret_file(path)?;
    let text = Zeroizing::new(
        crate::common::read_limited(path, 64 * 1024)
            .with_context(|| format!("reading {}", path.display()))?,
    );
    let f: KeyFile = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a witness key file", path.display()))?;
    if f.kind != KIND {
        bail!("{} is not a witness key file", path.display());
    }
    let mut out = vec![Cosigner::from_seed(
        &f.name,
        KeyType::SubtreeV1,
        hex_seed(&f.ml_dsa_44_seed)?,
    )?];
    if let Some(s) = &f.ed25519_seed {
        out.push(Cosigner::from_seed(
            &f.name,
            KeyType::CosignatureV1,
            hex_seed(s)?,
        )?);
    }
    Ok(out)
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Keygen {
            name,
            out,
            ed25519,
            json,
        } => {
            if out.exists() {
                bail!("{} already exists", out.display());
            }
            let ml = seed()?;
            let ed = if *ed25519 { Some(seed()?) } else { None };
            let f = KeyFile {
                kind: KIND.into(),
                name: name.clone(),
                ml_dsa_44_seed: warden_core::hex::encode(ml.as_slice()),
                ed25519_seed: ed.as_ref().map(|s| warden_core::hex::encode(s.as_slice())),
            };
            // Checks the name before anything is written.
            Cosigner::from_seed(name, KeyType::SubtreeV1, ml)?;
            let bytes = Zeroizing::new(serde_json::to_vec_pretty(&f)?);
            drop(f);
            warden_store::durable::write_new(out, &bytes, 0o600)
                .with_context(|| format!("writing {}", out.display()))?;
            let vkeys: Vec<String> = read_key(out)?
                .iter()
                .map(|c| c.verifier().to_string())
                .collect();
            if *json {
                print_json(&serde_json::json!({"key": out, "vkeys": vkeys}))?;
            } else {
                println!(
                    "witness key written to {} (secret, 0600); verifier keys:",
                    out.display()
                );
                for v in vkeys {
                    println!("{v}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Vkey { key } => {
            for c in read_key(key)? {
                println!("{}", c.verifier());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(a) => serve(a),
    }
}

fn serve(a: &ServeArgs) -> Result<ExitCode> {
    let cosigners = read_key(&a.key)?;
    let roots = a
        .logs
        .iter()
        .map(|p| {
            warden_store::keys::read_root_public(p)
                .with_context(|| format!("reading the log key {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let origins: Vec<String> = roots.iter().map(|r| r.origin.clone()).collect();
    let state = warden_store::witness::WitnessState::open(&a.state, &origins)
        .with_context(|| format!("opening the witness state {}", a.state.display()))?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(warden_server::tls::server_config(c, k)?),
        _ if !a.listen.ip().is_loopback() => {
            bail!(
                "{} is not a loopback address: TLS is required (--tls-cert, --tls-key)",
                a.listen
            )
        }
        _ => None,
    };
    let now = Box::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1))
    });
    let w = Arc::new(warden_server::witness::Witness::new(
        roots, state, cosigners, now,
    ));
    let rt = crate::registry::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprint(&format!(
            "warden: witness serving {scheme}://{local} for {}",
            origins.join(", ")
        ));
        warden_server::tls::serve(
            listener,
            warden_server::witness::router(w),
            tls,
            crate::common::shutdown_signal(),
        )
        .await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
