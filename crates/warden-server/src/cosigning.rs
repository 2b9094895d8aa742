//! The log's side of witnessing: present the latest checkpoint to each configured
//! witness (`add-checkpoint`, with a consistency proof from the size that witness
//! cosigned last), check each cosignature against the witness's verifier key, and,
//! once a quorum cosigned, publish the cosigned checkpoint beside the ledger
//! (`<log>.cosigned`), where `warden verify --witness` reads it.
//!
//! Cosigning never holds up an append: it reads the ledger's files, and a witness that
//! is down or refuses only leaves the published checkpoint behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use warden_core::cosign::VerifierKey;
use warden_core::note::{Note, NoteSignature};
use warden_core::record::CheckpointRecord;
use warden_store::audit;

/// One witness: where it takes `add-checkpoint`, and the key its cosignatures count
/// under.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its submission prefix (`http://127.0.0.1:7380`, `https://witness.example/w1`).
    pub url: String,
    pub key: VerifierKey,
}

/// What one round achieved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Round {
    /// The checkpoint presented.
    pub size: u64,
    /// Witnesses (by key name) whose cosignature verified.
    pub cosigned_by: Vec<String>,
    /// Witnesses that did not cosign, and why.
    pub failed: Vec<(String, String)>,
    /// Whether a quorum cosigned and the checkpoint was published.
    pub published: bool,
}

/// The witnesses of one ledger and what each cosigned last.
#[derive(Debug)]
pub struct Cosigning {
    peers: Vec<Peer>,
    quorum: usize,
    client: reqwest::Client,
    /// Size each witness cosigned last (by URL), learned from its answers.
    sizes: Mutex<HashMap<String, u64>>,
}

/// The published cosigned checkpoint beside an entries file.
#[must_use]
pub fn cosigned_path(log: &Path) -> PathBuf {
    log.with_extension("cosigned")
}

impl Cosigning {
    /// Witnessing by `peers`, publishing once `quorum` of them cosigned.
    pub fn new(peers: Vec<Peer>, quorum: usize, timeout: Duration) -> Result<Self, String> {
        if quorum == 0 || quorum > peers.len() {
            return Err(format!(
                "a quorum of {quorum} cannot be met by {} witnesses",
                peers.len()
            ));
        }
        Ok(Self {
            peers,
            quorum,
            client: crate::tls::http_client(timeout, timeout, 4)?,
            sizes: Mutex::new(HashMap::new()),
        })
    }

    fn last_size(&self, url: &str) -> u64 {
        self.sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url)
            .copied()
            .unwrap_or(0)
    }

    fn remember(&self, url: &str, size: u64) {
        self.sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(url.to_owned(), size);
    }

    /// Presents the ledger's latest checkpoint to every witness at once and publishes
    /// it when a quorum cosigned.
    pub async fn round(&self, log: &Path) -> Result<Round, String> {
        let rec = audit::latest_checkpoint(log)
            .map_err(|e| e.to_string())?
            .ok_or("the ledger has no checkpoint yet")?;
        let note = Note::parse(rec.note.as_bytes()).map_err(|e| e.to_string())?;
        let epoch = std::fs::read_to_string(warden_store::ledger::epoch_path(log)).ok();
        let asks = self
            .peers
            .iter()
            .map(|p| self.ask(p, log, &rec, &note, epoch.as_deref()));
        let answers = futures_util::future::join_all(asks).await;
        let mut cosigned_by = Vec::new();
        let mut failed = Vec::new();
        let mut sigs = note.signatures().to_vec();
        for (p, a) in self.peers.iter().zip(answers) {
            match a {
                Ok(sig) => {
                    cosigned_by.push(p.key.name().to_owned());
                    sigs.push(sig);
                }
                Err(e) => failed.push((p.key.name().to_owned(), e)),
            }
        }
        let published = cosigned_by.len() >= self.quorum;
        if published {
            let cosigned = Note::new(note.text().to_owned(), sigs).map_err(|e| e.to_string())?;
            let path = cosigned_path(log);
            warden_store::durable::write_atomic(&path, cosigned.to_string().as_bytes(), 0o600)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(Round {
            size: rec.size,
            cosigned_by,
            failed,
            published,
        })
    }

    /// One witness's cosignature on `rec`: presents the epoch's certificate when the
    /// witness does not know its key, and restarts from the size the witness names
    /// when it cosigned another one last.
    async fn ask(
        &self,
        p: &Peer,
        log: &Path,
        rec: &CheckpointRecord,
        note: &Note,
        epoch: Option<&str>,
    ) -> Result<NoteSignature, String> {
        let mut old = self.last_size(&p.url).min(rec.size);
        let mut presented = false;
        for _ in 0..4 {
            let proof = audit::consistency_to(log, rec, old).map_err(|e| e.to_string())?;
            let mut body = format!("old {old}\n");
            for h in &proof.hashes {
                body.push_str(&b64(h));
                body.push('\n');
            }
            body.push('\n');
            body.push_str(&rec.note);
            let url = format!("{}/add-checkpoint", p.url.trim_end_matches('/'));
            match self.post(&url, body.into_bytes()).await? {
                Answer { status: 200, body } => {
                    let lines = Note::parse(format!("{}\n{body}", note.text()).as_bytes())
                        .map_err(|e| format!("its answer is not cosignature lines: {e}"))?;
                    let sig = lines
                        .signatures()
                        .iter()
                        .find(|s| p.key.names(s))
                        .ok_or("its answer holds no cosignature by its key")?;
                    p.key
                        .verify_cosignature(note.text(), sig)
                        .map_err(|_| "its cosignature does not verify".to_owned())?;
                    self.remember(&p.url, rec.size);
                    return Ok(sig.clone());
                }
                Answer { status: 409, body } => {
                    let latest: u64 = body
                        .trim()
                        .parse()
                        .map_err(|_| "409 without a size".to_owned())?;
                    if latest > rec.size {
                        return Err(format!(
                            "it cosigned size {latest}, beyond this ledger's {}: a fork or a rollback",
                            rec.size
                        ));
                    }
                    self.remember(&p.url, latest);
                    old = latest;
                }
                Answer { status: 403, body } if !presented => {
                    let Some(epoch) = epoch else {
                        return Err(format!(
                            "403 ({}) and no epoch record to present",
                            body.trim()
                        ));
                    };
                    let url = format!("{}/warden/epoch", p.url.trim_end_matches('/'));
                    let a = self.post(&url, epoch.as_bytes().to_vec()).await?;
                    if a.status != 200 {
                        return Err(format!(
                            "it refused the epoch certificate: {} {}",
                            a.status,
                            a.body.trim()
                        ));
                    }
                    presented = true;
                }
                Answer { status, body } => {
                    return Err(format!("{status} {}", body.trim()));
                }
            }
        }
        Err("no agreement on the size to prove from".into())
    }
}

/// A witness's answer.
struct Answer {
    status: u16,
    body: String,
}

/// Largest answer read from a witness (cosignature lines, or an error).
const MAX_ANSWER: usize = 64 * 1024;

impl Cosigning {
    async fn post(&self, url: &str, body: Vec<u8>) -> Result<Answer, String> {
        let mut r = self
            .client
            .post(url)
            .body(body)
            .send()
            .await
            .map_err(|e| crate::tls::http_error_text(&e))?;
        let status = r.status().as_u16();
        let mut buf = Vec::new();
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| crate::tls::http_error_text(&e))?
        {
            if buf.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("answer over {MAX_ANSWER} bytes"));
            }
            buf.extend_from_slice(&chunk);
        }
        let body = String::from_utf8(buf).map_err(|_| "answer is not UTF-8".to_owned())?;
        Ok(Answer { status, body })
    }
}

fn b64(h: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}
