//! `warden verify --log s3://bucket/prefix`: verifies a ledger published as C2SP
//! tlog-tiles (`warden_core::tiles`) straight from the bucket (or a directory).
//!
//! Two threads read the entry bundles and the checkpoint records in order, several
//! objects in flight, and hand them to the ordinary verifier as the lines of the two
//! files it reads on a node. The entries thread also rebuilds every hash tile from the
//! entries and compares it with the published one: a tlog-tiles client computes its
//! proofs from those tiles, so a tile that does not match the entries is a finding
//! even when the entries themselves verify.

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use warden_cluster::publish::State;
use warden_core::checkpoint::Checkpoint;
use warden_core::merkle::leaf_hash;
use warden_core::note::Note;
use warden_core::tiles::{self, Tile, TileHasher, WIDTH};
use warden_core::verify::ResumeState;
use warden_registry::logbucket::LogBucket;

/// Objects fetched at once per stream.
const AHEAD: usize = 16;
/// Largest entry bundle: 256 entries of at most 64 KiB, each with its length.
const MAX_BUNDLE: u64 = (WIDTH * (tiles::MAX_ENTRY + 2)) as u64;
/// Largest hash tile.
const MAX_TILE: u64 = (WIDTH * 32) as u64;
/// Largest bundle of checkpoint records read.
const MAX_RECORDS: u64 = 256 << 20;
/// Most tile findings kept (the count is exact).
const MAX_FINDINGS: usize = 100;

/// Whether `log` names a published log rather than an entries file: a bucket URL, or
/// a directory holding a `checkpoint`.
#[must_use]
pub fn is_published(log: &std::path::Path) -> bool {
    log.to_str().is_some_and(warden_registry::s3::is_bucket_url)
        || log.join(tiles::CHECKPOINT).is_file()
}

/// What the tile check found.
#[derive(Debug, Default, serde::Serialize)]
pub struct TileReport {
    /// Hash tiles compared.
    pub checked: u64,
    /// Tiles that are missing or differ from the entries (the first 100).
    pub findings: Vec<String>,
    /// How many there were.
    pub count: u64,
}

impl TileReport {
    fn find(&mut self, f: String) {
        self.count += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
        }
    }
}

/// A published log opened for reading.
pub struct Opened {
    /// The entries' lines.
    pub entries: Box<dyn Read + Send>,
    /// The checkpoint records' lines.
    pub checkpoints: Box<dyn Read + Send>,
    /// Bytes of entries that will be read.
    pub entries_len: u64,
    /// The `checkpoint` object: the log must contain it.
    pub latest: Note,
    /// The tile check, done when the entries have been read.
    pub tiles: std::thread::JoinHandle<TileReport>,
}

/// Bytes arriving over a channel, read as one stream.
struct ChannelReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let src = self.buf.get(self.at..).unwrap_or_default();
        let n = src.len().min(out.len());
        if let (Some(o), Some(s)) = (out.get_mut(..n), src.get(..n)) {
            o.copy_from_slice(s);
        }
        self.at += n;
        Ok(n)
    }
}

fn reader(rx: Receiver<std::io::Result<Vec<u8>>>) -> Box<dyn Read + Send> {
    Box::new(ChannelReader {
        rx,
        buf: Vec::new(),
        at: 0,
    })
}

fn other(m: String) -> std::io::Error {
    std::io::Error::other(m)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn need(b: &LogBucket, path: &str, max: u64) -> std::io::Result<Vec<u8>> {
    b.get(path, max)
        .await
        .map_err(other)?
        .ok_or_else(|| other(format!("{}: {path} is missing", b.url())))
}

/// Opens the published log at `url`, from the start or, with `resume` (the state a
/// clean run saved), from the entry and checkpoint record where that run stopped.
pub fn open(url: &str, resume: Option<&ResumeState>) -> Result<Opened> {
    let bucket = LogBucket::open(url).with_context(|| format!("opening {url}"))?;
    let rt = runtime()?;
    let (state, latest) = rt.block_on(async {
        let state = bucket
            .get(tiles::STATE, 1 << 16)
            .await
            .map_err(anyhow::Error::msg)?
            .with_context(|| {
                format!(
                    "{url} holds no {}: not a published Warden log",
                    tiles::STATE
                )
            })?;
        let cp = bucket
            .get(tiles::CHECKPOINT, 1 << 20)
            .await
            .map_err(anyhow::Error::msg)?
            .with_context(|| format!("{url} holds no checkpoint"))?;
        anyhow::Ok((state, cp))
    })?;
    let state = State::decode(&state).map_err(anyhow::Error::msg)?;
    let latest = Note::parse(&latest).context("the published checkpoint is not a signed note")?;
    let size = Checkpoint::from_text(latest.text())
        .context("the published checkpoint")?
        .size;
    if size > state.size {
        bail!(
            "the published checkpoint (size {size}) is ahead of what {} says was published ({})",
            tiles::STATE,
            state.size
        );
    }
    let (from, from_records) = resume.map_or((0, 0), |r| (r.size, r.checkpoints));
    if from > state.size || from_records > state.records {
        bail!(
            "the saved state ({from} entries, {from_records} checkpoint records) is ahead of \
             what {url} has published ({} and {}): the published log went back",
            state.size,
            state.records
        );
    }
    let (etx, erx) = sync_channel(4);
    let (ctx, crx) = sync_channel(4);
    let b = bucket.clone();
    let tiles = std::thread::Builder::new()
        .name("warden-verify-entries".into())
        .spawn(move || read_entries(&b, from, state.size, &etx))?;
    std::thread::Builder::new()
        .name("warden-verify-records".into())
        .spawn(move || read_records(&bucket, from_records, state.records, &ctx))?;
    Ok(Opened {
        entries: reader(erx),
        checkpoints: reader(crx),
        entries_len: state.entries_off,
        latest,
        tiles,
    })
}

/// The tile hasher as it stood at `from` leaves, from the tiles published for `size`:
/// the partial tile of `from` leaves is a prefix of the tile over them at `size`.
async fn restored(b: &LogBucket, from: u64, size: u64) -> std::io::Result<TileHasher> {
    let mut partials = Vec::new();
    for (level, index, width) in tiles::partial_tiles(from) {
        let stored = size.checked_shr(8 * u32::from(level)).unwrap_or(0);
        let now = usize::try_from(
            stored
                .saturating_sub(index * WIDTH as u64)
                .min(WIDTH as u64),
        )
        .unwrap_or(WIDTH);
        let path = tiles::tile_path(level, index, now);
        let bytes = need(b, &path, MAX_TILE).await?;
        let hashes = tiles::parse_tile(&bytes, now)
            .map_err(|e| other(format!("{}: {path}: {e}", b.url())))?;
        partials.push(Tile {
            level,
            index,
            hashes: hashes.get(..width).map(<[_]>::to_vec).unwrap_or_default(),
        });
    }
    TileHasher::restore(from, partials).map_err(|e| other(format!("{}: {e}", b.url())))
}

/// Sends the entries `[from, size)` as lines, checking every hash tile they reach.
fn read_entries(
    b: &LogBucket,
    from: u64,
    size: u64,
    tx: &SyncSender<std::io::Result<Vec<u8>>>,
) -> TileReport {
    let mut report = TileReport::default();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Err(e));
            return report;
        }
    };
    let outcome: std::io::Result<()> = rt.block_on(async {
        let mut tree = match from {
            0 => TileHasher::new(),
            _ => restored(b, from, size).await?,
        };
        // Each bundle with the level-0 tile over it (absent or short: a finding).
        let mut fetched = futures_util::stream::iter(tiles::bundles(from, size))
            .map(|(i, w, skip)| async move {
                let bundle = need(b, &tiles::bundle_path(i, w), MAX_BUNDLE).await?;
                let tile = b
                    .get(&tiles::tile_path(0, i, w), MAX_TILE)
                    .await
                    .map_err(other)?;
                std::io::Result::Ok((i, w, skip, bundle, tile))
            })
            .buffered(AHEAD);
        while let Some((i, w, skip, bundle, tile)) = fetched.try_next().await? {
            let path = tiles::bundle_path(i, w);
            let entries = tiles::decode_bundle(&bundle)
                .map_err(|e| other(format!("{}: {path}: {e}", b.url())))?;
            if entries.len() != w {
                return Err(other(format!(
                    "{}: {path} holds {} entries, not {w}",
                    b.url(),
                    entries.len()
                )));
            }
            let mut lines = Vec::with_capacity(bundle.len());
            let mut full = Vec::new();
            for e in entries.into_iter().skip(skip) {
                tree.push(leaf_hash(e), &mut full);
                lines.extend_from_slice(e);
                lines.push(b'\n');
            }
            if tx.send(Ok(lines)).is_err() {
                return Ok(());
            }
            let expected0 = if w == WIDTH {
                full.iter().find(|t| t.level == 0).map(|t| t.hashes.clone())
            } else {
                tree.partials()
                    .into_iter()
                    .find(|t| t.level == 0)
                    .map(|t| t.hashes)
            };
            compare(&mut report, &tiles::tile_path(0, i, w), tile, expected0);
            for t in full.iter().filter(|t| t.level > 0) {
                let got = b.get(&t.path(), MAX_TILE).await.map_err(other)?;
                compare(&mut report, &t.path(), got, Some(t.hashes.clone()));
            }
        }
        for t in tree.partials().into_iter().filter(|t| t.level > 0) {
            let got = b.get(&t.path(), MAX_TILE).await.map_err(other)?;
            compare(&mut report, &t.path(), got, Some(t.hashes));
        }
        Ok(())
    });
    if let Err(e) = outcome {
        let _ = tx.send(Err(e));
    }
    report
}

fn compare(
    report: &mut TileReport,
    path: &str,
    got: Option<Vec<u8>>,
    want: Option<Vec<warden_core::merkle::Hash>>,
) {
    report.checked += 1;
    let want = want.map(|h| tiles::tile_bytes(&h));
    match (got, want) {
        (None, _) => report.find(format!("{path}: missing")),
        (Some(g), Some(w)) if g == w => {}
        (Some(_), _) => report.find(format!("{path}: does not match the entries")),
    }
}

/// Sends the lines of checkpoint records `[from, n)`.
fn read_records(b: &LogBucket, from: u64, n: u64, tx: &SyncSender<std::io::Result<Vec<u8>>>) {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let outcome: std::io::Result<()> = rt.block_on(async {
        let mut fetched = futures_util::stream::iter(tiles::bundles(from, n))
            .map(|(i, w, skip)| async move {
                let path = tiles::records_path(i, w);
                need(b, &path, MAX_RECORDS)
                    .await
                    .map(|r| (path, w, skip, r))
            })
            .buffered(AHEAD);
        while let Some((path, w, skip, mut records)) = fetched.try_next().await? {
            let lines = records.iter().filter(|&&c| c == b'\n').count();
            if lines != w || records.last().is_some_and(|&c| c != b'\n') {
                return Err(other(format!(
                    "{}: {path} holds {lines} records, not {w}",
                    b.url()
                )));
            }
            // The records a resumed run has already verified.
            let start = match skip {
                0 => 0,
                _ => records
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c == b'\n')
                    .nth(skip - 1)
                    .map_or(records.len(), |(at, _)| at + 1),
            };
            records.drain(..start);
            if tx.send(Ok(records)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    });
    if let Err(e) = outcome {
        let _ = tx.send(Err(e));
    }
}
