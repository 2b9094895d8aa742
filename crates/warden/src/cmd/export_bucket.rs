//! `warden export --log s3://bucket/prefix …`: exporting a ledger published as
//! tlog-tiles to a SIEM from a host that is not a node.
//!
//! The published entries and checkpoint records are copied, in order, into the two
//! files a node's ledger has (under the export directory, `published/<url hash>/`), and
//! the ordinary exporter reads that copy, with its cursor, its formats and its
//! at-least-once delivery unchanged. A mark beside the copy says how far it goes; a
//! copy longer than its mark (a crash while copying) is cut back to it. Each step
//! checks the byte counts against what the publisher says it published, so a bucket
//! that went back, or whose bundles do not add up, stops the copy instead of feeding
//! the exporter something else.

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use warden_cluster::publish::State;
use warden_core::tiles::{self, WIDTH, bundles};
use warden_registry::logbucket::LogBucket;
use warden_store::durable::write_atomic;
use warden_store::ledger::checkpoints_path;

/// Objects fetched at once.
const AHEAD: usize = 16;
/// Largest entry bundle: 256 entries of at most 64 KiB, each with its length.
const MAX_BUNDLE: u64 = (WIDTH * (tiles::MAX_ENTRY + 2)) as u64;
/// Largest bundle of checkpoint records.
const MAX_RECORDS: u64 = 256 << 20;
/// The mark's file name.
const MARK: &str = "copied.json";

/// How far the copy goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    size: u64,
    records: u64,
    entries_off: u64,
    checkpoints_off: u64,
}

/// A local copy of a published log.
pub struct Copy {
    bucket: LogBucket,
    dir: PathBuf,
    log: PathBuf,
    at: Mark,
    rt: tokio::runtime::Runtime,
}

async fn need(b: &LogBucket, path: &str, max: u64) -> Result<Vec<u8>> {
    b.get(path, max)
        .await
        .map_err(anyhow::Error::msg)?
        .with_context(|| format!("{}: {path} is missing", b.url()))
}

/// Opens `path` for appending and checks it holds exactly `len` bytes, cutting what a
/// crash left past them.
fn open_at(path: &Path, len: u64) -> Result<std::fs::File> {
    let f = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let have = f.metadata()?.len();
    if have < len {
        bail!(
            "{} holds {have} bytes, fewer than the {len} its mark says were copied",
            path.display()
        );
    }
    if have > len {
        f.set_len(len)?;
    }
    Ok(f)
}

/// The two published streams.
#[derive(Clone, Copy, Debug)]
enum Stream {
    Entries,
    Records,
}

impl Stream {
    fn path(self, index: u64, width: usize) -> String {
        match self {
            Self::Entries => tiles::bundle_path(index, width),
            Self::Records => tiles::records_path(index, width),
        }
    }

    fn max(self) -> u64 {
        match self {
            Self::Entries => MAX_BUNDLE,
            Self::Records => MAX_RECORDS,
        }
    }

    /// The lines of a bundle that must hold `width` items, less the first `skip`, as
    /// they stand in the ledger's file.
    fn lines(self, bundle: &[u8], width: usize, skip: usize) -> Result<Vec<u8>, String> {
        let items: Vec<&[u8]> = match self {
            Self::Entries => tiles::decode_bundle(bundle).map_err(|e| e.to_string())?,
            Self::Records if bundle.last().is_some_and(|&c| c != b'\n') => {
                return Err("does not end with a whole record".into());
            }
            Self::Records => bundle
                .split(|&c| c == b'\n')
                .take(bundle.iter().filter(|&&c| c == b'\n').count())
                .collect(),
        };
        if items.len() != width {
            return Err(format!("holds {} items, not {width}", items.len()));
        }
        let mut out = Vec::with_capacity(bundle.len());
        for i in items.iter().skip(skip) {
            out.extend_from_slice(i);
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Appends items `[from, to)` of `stream` to `out`, which must come to `bytes` bytes.
async fn copy(
    b: &LogBucket,
    stream: Stream,
    from: u64,
    to: u64,
    bytes: u64,
    out: &mut std::fs::File,
) -> Result<()> {
    let mut fetched = futures_util::stream::iter(bundles(from, to))
        .map(|(i, w, skip)| async move {
            let path = stream.path(i, w);
            need(b, &path, stream.max())
                .await
                .map(|x| (path, w, skip, x))
        })
        .buffered(AHEAD);
    let mut written = 0u64;
    while let Some((path, w, skip, bundle)) = fetched.try_next().await? {
        let lines = stream
            .lines(&bundle, w, skip)
            .map_err(|e| anyhow::anyhow!("{}: {path} {e}", b.url()))?;
        out.write_all(&lines)?;
        written += lines.len() as u64;
    }
    if written != bytes {
        bail!(
            "{}: {stream:?} {from}..{to} are {written} bytes, not the {bytes} published",
            b.url()
        );
    }
    Ok(())
}

impl Copy {
    /// The copy of the log at `url` kept under `export_dir` (made when missing).
    pub fn open(url: &str, export_dir: &Path) -> Result<Self> {
        let bucket = LogBucket::open(url).with_context(|| format!("opening {url}"))?;
        let digest = warden_core::merkle::sha256(url.as_bytes());
        let name = warden_core::hex::encode(digest.get(..8).unwrap_or_default());
        let dir = export_dir.join("published").join(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let at = match std::fs::read(dir.join(MARK)) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{}", dir.join(MARK).display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Mark::default(),
            Err(e) => return Err(e).context(format!("{}", dir.join(MARK).display())),
        };
        let log = dir.join("model_access.jsonl");
        open_at(&log, at.entries_off)?;
        open_at(&checkpoints_path(&log), at.checkpoints_off)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            bucket,
            dir,
            log,
            at,
            rt,
        })
    }

    /// The copy's entries file, which the exporter reads.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Brings the copy up to what the bucket has published; returns the entries added.
    pub fn sync(&mut self) -> Result<u64> {
        let b = &self.bucket;
        let state = self
            .rt
            .block_on(need(b, tiles::STATE, 1 << 16))
            .with_context(|| {
                format!(
                    "{}: no {}: not a published Warden log",
                    b.url(),
                    tiles::STATE
                )
            })?;
        let state = State::decode(&state).map_err(anyhow::Error::msg)?;
        let to = Mark {
            size: state.size,
            records: state.records,
            entries_off: state.entries_off,
            checkpoints_off: state.checkpoints_off,
        };
        let at = self.at;
        if to.size < at.size
            || to.records < at.records
            || to.entries_off < at.entries_off
            || to.checkpoints_off < at.checkpoints_off
        {
            bail!(
                "{}: the published log went back (it says {to:?}; {at:?} was copied before)",
                b.url()
            );
        }
        if to == at {
            return Ok(0);
        }
        let mut entries = open_at(&self.log, at.entries_off)?;
        let mut records = open_at(&checkpoints_path(&self.log), at.checkpoints_off)?;
        self.rt.block_on(async {
            let bytes = to.entries_off - at.entries_off;
            copy(b, Stream::Entries, at.size, to.size, bytes, &mut entries).await?;
            let bytes = to.checkpoints_off - at.checkpoints_off;
            copy(
                b,
                Stream::Records,
                at.records,
                to.records,
                bytes,
                &mut records,
            )
            .await
        })?;
        entries.sync_all()?;
        records.sync_all()?;
        write_atomic(&self.dir.join(MARK), &serde_json::to_vec(&to)?, 0o600)?;
        self.at = to;
        Ok(to.size - at.size)
    }
}
