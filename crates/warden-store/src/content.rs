//! Where sealed inference content is kept (`[gateway] seal_content`): the data
//! directory's `inference/` holds, per UTC day and per writing process, a part made of
//! two files: `<day>.<part>.key` (the part's key wrapped to the auditors, written
//! before any record) and `<day>.<part>.jsonl` (one sealed record per line). A process
//! never reopens another's part, because it cannot unwrap its key; a restart starts a
//! new part. A thread writes records in groups, one fsync per group, and says when each
//! is durable. Retention removes whole days (`[retention] inference_content_days`).
//! The format is `warden_core::content`.

use crate::durable;
use crate::error::{StoreError, io};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use warden_core::content::{Content, ContentError, DayKey, Sealed};
use warden_core::crypto::{DataKey, NONCE_LEN, RecipientPublicKey, RecipientSecretKey};

/// The directory under a data directory's root.
#[must_use]
pub fn dir(root: &Path) -> PathBuf {
    root.join("inference")
}

/// Largest key file read.
const MAX_KEY_FILE: u64 = 1 << 20;

/// One part: a key and the records sealed under it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Part {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub id: String,
    pub key: PathBuf,
    pub records: PathBuf,
}

/// Whether `d` reads `YYYY-MM-DD`.
#[must_use]
pub fn is_day(d: &str) -> bool {
    d.len() == 10
        && d.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// Every part in `dir` (by day, then part), found by its key or records file.
pub fn parts(dir: &Path) -> Result<Vec<Part>, StoreError> {
    let mut found = BTreeSet::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for e in rd {
        let name = e.map_err(io("list", dir))?.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = name
            .strip_suffix(".key")
            .or_else(|| name.strip_suffix(".jsonl"));
        if let Some((day, id)) = stem.and_then(|s| s.split_once('.'))
            && is_day(day)
            && !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            found.insert((day.to_owned(), id.to_owned()));
        }
    }
    Ok(found
        .into_iter()
        .map(|(day, id)| Part {
            key: dir.join(format!("{day}.{id}.key")),
            records: dir.join(format!("{day}.{id}.jsonl")),
            day,
            id,
        })
        .collect())
}

/// The parts of days before `day` (what retention removes).
pub fn before(dir: &Path, day: &str) -> Result<Vec<Part>, StoreError> {
    Ok(parts(dir)?
        .into_iter()
        .filter(|p| p.day.as_str() < day)
        .collect())
}

/// Removes `parts` (key first: without it the records are noise), durably.
pub fn remove(dir: &Path, parts: &[Part]) -> Result<(), StoreError> {
    for p in parts {
        for f in [&p.key, &p.records] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", f)(e)),
            }
        }
    }
    durable::sync_dir(dir).map_err(io("sync", dir))
}

/// What one record of a part held, for an auditor.
#[derive(Debug)]
pub enum Opened {
    Content(Box<Content>),
    /// The record could not be opened (altered, or not sealed under this part's key).
    Bad {
        line: usize,
        why: String,
    },
}

/// A part read with an auditor key.
#[derive(Debug)]
pub struct ReadPart {
    pub records: Vec<Opened>,
    /// The last line was cut short (the writer stopped mid-write; never acknowledged).
    pub torn: bool,
    /// The key was not wrapped to this auditor.
    pub not_for_this_key: bool,
}

/// Opens every record of `part` with `auditor`.
pub fn read(part: &Part, auditor: &RecipientSecretKey) -> Result<ReadPart, StoreError> {
    let bad = |detail: String| StoreError::Format {
        path: part.key.clone(),
        detail,
    };
    let meta = std::fs::metadata(&part.key).map_err(io("read", &part.key))?;
    if meta.len() > MAX_KEY_FILE {
        return Err(bad(format!("larger than {MAX_KEY_FILE} bytes")));
    }
    let text = std::fs::read(&part.key).map_err(io("read", &part.key))?;
    let key = DayKey::decode(&text, &part.day).map_err(|e| bad(e.to_string()))?;
    let Some(data) = key.unwrap(auditor).map_err(|e| bad(e.to_string()))? else {
        return Ok(ReadPart {
            records: Vec::new(),
            torn: false,
            not_for_this_key: true,
        });
    };
    let body = match std::fs::read(&part.records) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io("read", &part.records)(e)),
    };
    let torn = !body.is_empty() && !body.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    // The piece after the last newline: empty, or a torn write.
    lines.pop();
    let records = lines
        .iter()
        .enumerate()
        .map(
            |(i, l)| match Sealed::decode(l).and_then(|s| s.open(&data, &part.day)) {
                Ok(c) => Opened::Content(Box::new(c)),
                Err(e) => Opened::Bad {
                    line: i + 1,
                    why: e.to_string(),
                },
            },
        )
        .collect();
    Ok(ReadPart {
        records,
        torn,
        not_for_this_key: false,
    })
}

/// Says whether a record was made durable.
pub type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Job {
    content: Content,
    day: String,
    done: Done,
}

/// Seals records on a thread of its own.
pub struct Vault {
    tx: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// Starts the writer for `dir` (created 0700), sealing to `auditors` (at least one).
    pub fn start(
        dir: PathBuf,
        origin: String,
        auditors: Vec<RecipientPublicKey>,
    ) -> Result<Self, StoreError> {
        if auditors.is_empty() {
            return Err(StoreError::Config(
                "[gateway] seal_content needs an auditor public key in auditors/ \
                 (`warden auditor add`): content is sealed to the auditors only"
                    .into(),
            ));
        }
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io("chmod", &dir))?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let mut w = Writer {
            dir,
            origin,
            auditors,
            open: None,
        };
        let thread = std::thread::Builder::new()
            .name("warden-content".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    w.write(batch);
                }
            })
            .map_err(|e| StoreError::Config(format!("starting the content writer: {e}")))?;
        Ok(Self {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues `content` (answered on `day`, `YYYY-MM-DD`); `done` is called once it is
    /// durable or failed.
    pub fn seal(&self, content: Content, day: String, done: Done) {
        let job = Job { content, day, done };
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let unsent = match tx.as_ref() {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = unsent {
            (job.done)(Err("the content writer has stopped".into()));
        }
    }

    /// Stops the writer once what is queued is written.
    pub fn stop(&self) {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let t = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The part this process writes for one day.
struct OpenPart {
    day: String,
    key: DataKey,
    file: std::fs::File,
}

struct Writer {
    dir: PathBuf,
    origin: String,
    auditors: Vec<RecipientPublicKey>,
    open: Option<OpenPart>,
}

impl Writer {
    fn write(&mut self, batch: Vec<Job>) {
        let mut written = Vec::with_capacity(batch.len());
        let mut failed = None;
        for job in batch {
            if failed.is_none()
                && let Err(e) = self.append(&job)
            {
                failed = Some(e.to_string());
                // The part may hold half a line: the next record starts a new part.
                self.open = None;
            }
            match &failed {
                Some(e) => (job.done)(Err(e.clone())),
                None => written.push(job.done),
            }
        }
        let synced = match self.open.as_ref() {
            Some(p) => p.file.sync_data().map_err(|e| e.to_string()),
            None if written.is_empty() => Ok(()),
            None => Err("the content part closed".into()),
        };
        if synced.is_err() {
            self.open = None;
        }
        for done in written {
            done(synced.clone());
        }
    }

    fn append(&mut self, job: &Job) -> Result<(), StoreError> {
        if self.open.as_ref().is_none_or(|p| p.day != job.day) {
            self.open = Some(self.start_part(&job.day)?);
        }
        let p = self
            .open
            .as_mut()
            .ok_or_else(|| StoreError::Config("no content part".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| StoreError::Config("no randomness for a nonce".into()))?;
        let sealed = Sealed::seal(&p.key, &p.day, &job.content, nonce).map_err(content_err)?;
        let mut line = sealed.encode().map_err(content_err)?;
        line.push(b'\n');
        p.file
            .write_all(&line)
            .map_err(|e| StoreError::Config(format!("writing sealed content: {e}")))
    }

    /// A new part for `day`: its key file is durable before any record is written.
    fn start_part(&self, day: &str) -> Result<OpenPart, StoreError> {
        let mut id = [0u8; 8];
        aws_lc_rs::rand::fill(&mut id)
            .map_err(|_| StoreError::Config("no randomness for a part id".into()))?;
        let id = warden_core::hex::encode(&id);
        let secret = crate::keys::random_seed()?;
        let eph = self
            .auditors
            .iter()
            .map(|_| crate::keys::random_seed())
            .collect::<Result<Vec<_>, _>>()?;
        let wrapped =
            DayKey::new(&self.origin, day, &secret, &self.auditors, &eph).map_err(content_err)?;
        let key_path = self.dir.join(format!("{day}.{id}.key"));
        durable::write_new(&key_path, &wrapped.encode().map_err(content_err)?, 0o600)
            .map_err(io("write", &key_path))?;
        let records = self.dir.join(format!("{day}.{id}.jsonl"));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&records)
            .map_err(io("create", &records))?;
        durable::sync_dir(&self.dir).map_err(io("sync", &self.dir))?;
        Ok(OpenPart {
            day: day.to_owned(),
            key: DataKey::new(secret)?,
            file,
        })
    }
}

fn content_err(e: ContentError) -> StoreError {
    StoreError::Config(format!("sealing content: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn content(id: &str) -> Content {
        Content {
            request_id: id.into(),
            time: "2026-12-07T10:00:00Z".into(),
            endpoint: "/v1/completions".into(),
            deployment: "d".into(),
            prompt: serde_json::json!("the secret prompt"),
            response: None,
            response_base64: None,
        }
        .with_response(b"the answer".to_vec())
    }

    fn sealed_days(
        dir: &Path,
        a: &RecipientSecretKey,
        jobs: &[(&str, &str)],
    ) -> Vec<Result<(), String>> {
        let v = Vault::start(dir.to_path_buf(), "log".into(), vec![a.public().clone()]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for (id, day) in jobs {
            let tx = tx.clone();
            v.seal(
                content(id),
                (*day).to_owned(),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
        }
        drop(tx);
        v.stop();
        rx.iter().collect()
    }

    #[test]
    fn sealed_content_reads_back_only_with_an_auditor_key_and_expires_by_day() {
        let t = tempfile::tempdir().unwrap();
        let d = dir(t.path());
        let a = RecipientSecretKey::generate(Zeroizing::new([1; 32])).unwrap();
        let other = RecipientSecretKey::generate(Zeroizing::new([2; 32])).unwrap();
        let r = sealed_days(
            &d,
            &a,
            &[
                ("r1", "2026-12-06"),
                ("r2", "2026-12-07"),
                ("r3", "2026-12-07"),
            ],
        );
        assert_eq!(r, vec![Ok(()); 3]);
        // A restart writes a part of its own.
        assert_eq!(sealed_days(&d, &a, &[("r4", "2026-12-07")]), vec![Ok(())]);
        let ps = parts(&d).unwrap();
        assert_eq!(ps.len(), 3);
        for p in &ps {
            let bytes = std::fs::read(&p.records).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains("secret prompt"));
            assert!(read(p, &other).unwrap().not_for_this_key);
        }
        let ids: Vec<String> = ps
            .iter()
            .flat_map(|p| read(p, &a).unwrap().records)
            .map(|o| match o {
                Opened::Content(c) => c.request_id,
                Opened::Bad { why, .. } => why,
            })
            .collect();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids.first().map(String::as_str), Some("r1"));
        let old = before(&d, "2026-12-07").unwrap();
        assert_eq!(old.len(), 1);
        remove(&d, &old).unwrap();
        assert_eq!(parts(&d).unwrap().len(), 2);
        assert!(parts(&d).unwrap().iter().all(|p| p.day == "2026-12-07"));
    }

    #[test]
    fn a_record_that_cannot_be_written_is_reported_not_acknowledged() {
        let t = tempfile::tempdir().unwrap();
        let d = dir(t.path());
        let a = RecipientSecretKey::generate(Zeroizing::new([1; 32])).unwrap();
        let v = Vault::start(d.clone(), "log".into(), vec![a.public().clone()]).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        v.seal(
            content("r1"),
            "2026-12-07".into(),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        assert!(rx.recv().unwrap().is_err());
        assert!(
            Vault::start(d, "log".into(), Vec::new()).is_err(),
            "no auditor"
        );
    }

    #[test]
    fn an_altered_or_torn_record_is_named_not_opened() {
        let t = tempfile::tempdir().unwrap();
        let d = dir(t.path());
        let a = RecipientSecretKey::generate(Zeroizing::new([1; 32])).unwrap();
        sealed_days(&d, &a, &[("r1", "2026-12-07"), ("r2", "2026-12-07")]);
        let p = parts(&d).unwrap().remove(0);
        let mut bytes = std::fs::read(&p.records).unwrap();
        // Flip one base64 character of the first record's ciphertext.
        let at = bytes.iter().position(|b| *b == b'\n').unwrap() - 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        bytes.extend_from_slice(b"{\"request_id\":\"r3\"");
        std::fs::write(&p.records, &bytes).unwrap();
        let r = read(&p, &a).unwrap();
        assert!(r.torn);
        assert!(matches!(
            r.records.first(),
            Some(Opened::Bad { line: 1, .. })
        ));
        assert!(matches!(r.records.get(1), Some(Opened::Content(c)) if c.request_id == "r2"));
        assert_eq!(r.records.len(), 2);
    }
}
