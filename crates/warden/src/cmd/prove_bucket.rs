//! `warden log prove --index N --log s3://bucket/prefix`: an inclusion proof of a
//! published entry (C2SP tlog-proof, the same text `warden log prove` prints on a
//! node), computed from the bucket's hash tiles against its `checkpoint`, with the
//! entry from its bundle. Only the tiles the proof needs are read (a few per 256-fold
//! level of the tree), and the proof is checked against the checkpoint's root before
//! it is printed: a tile that does not match the tree is an error, not a proof.

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};
use warden_core::checkpoint::{Checkpoint, TlogProof};
use warden_core::merkle::{Hash, leaf_hash, verify_inclusion};
use warden_core::note::Note;
use warden_core::tileproof::{self, Subtree};
use warden_core::tiles::{self, WIDTH};
use warden_registry::logbucket::LogBucket;

/// Largest entry bundle: 256 entries of at most 64 KiB, each with its length.
const MAX_BUNDLE: u64 = (WIDTH * (tiles::MAX_ENTRY + 2)) as u64;
/// Largest hash tile.
const MAX_TILE: u64 = (WIDTH * 32) as u64;
/// Tiles fetched at once.
const AHEAD: usize = 8;

/// The proof of entry `index` in the log published at `url` (a bucket URL or a
/// directory holding `checkpoint`).
pub fn prove(url: &str, index: u64) -> Result<TlogProof> {
    let bucket = LogBucket::open(url).with_context(|| format!("opening {url}"))?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(prove_from(&bucket, index))
}

async fn need(b: &LogBucket, path: &str, max: u64) -> Result<Vec<u8>> {
    b.get(path, max)
        .await
        .map_err(anyhow::Error::msg)?
        .with_context(|| format!("{}: {path} is missing", b.url()))
}

async fn prove_from(b: &LogBucket, index: u64) -> Result<TlogProof> {
    let note = need(b, tiles::CHECKPOINT, 1 << 20).await?;
    let note = Note::parse(&note).context("the published checkpoint is not a signed note")?;
    let cp = Checkpoint::from_text(note.text()).context("the published checkpoint")?;
    if index >= cp.size {
        bail!(
            "index {index} is not covered by the published checkpoint (size {})",
            cp.size
        );
    }
    // The entry, from its bundle as published for this size.
    let w = WIDTH as u64;
    let width = usize::try_from((cp.size - index / w * w).min(w))?;
    let path = tiles::bundle_path(index / w, width);
    let bundle = need(b, &path, MAX_BUNDLE).await?;
    let entries = tiles::decode_bundle(&bundle).with_context(|| format!("{}: {path}", b.url()))?;
    let entry = entries
        .get(usize::try_from(index % w)?)
        .with_context(|| format!("{}: {path} holds {} entries", b.url(), entries.len()))?
        .to_vec();
    // The complete subtrees the proof needs, each read from its tile.
    let needs = tileproof::needs(cp.size, index);
    let mut ranges = BTreeMap::new();
    for s in &needs {
        let r = tileproof::tile_range(*s, cp.size)
            .with_context(|| format!("subtree {s:?} is not in a tree of {}", cp.size))?;
        ranges.insert(*s, r);
    }
    let wanted: BTreeSet<(u8, u64, usize)> = ranges
        .values()
        .map(|r| (r.level, r.index, r.width))
        .collect();
    let fetched: BTreeMap<(u8, u64, usize), Vec<Hash>> = futures_util::stream::iter(wanted)
        .map(|(level, i, width)| async move {
            let path = tiles::tile_path(level, i, width);
            let bytes = need(b, &path, MAX_TILE).await?;
            let hashes =
                tiles::parse_tile(&bytes, width).with_context(|| format!("{}: {path}", b.url()))?;
            anyhow::Ok(((level, i, width), hashes))
        })
        .buffer_unordered(AHEAD)
        .try_collect()
        .await?;
    let mut read = |s: Subtree| -> Result<Hash> {
        let r = ranges.get(&s).context("a subtree the proof did not list")?;
        let t = fetched
            .get(&(r.level, r.index, r.width))
            .context("a tile that was not read")?;
        let hashes = t.get(r.hashes.clone()).context("a short tile")?;
        Ok(tileproof::fold(hashes))
    };
    let hashes = tileproof::inclusion_with(cp.size, index, &mut read)?;
    verify_inclusion(&leaf_hash(&entry), index, cp.size, &hashes, &cp.root).map_err(|e| {
        anyhow::anyhow!(
            "{}: the published tiles do not prove entry {index} against the checkpoint \
             (size {}): {e}",
            b.url(),
            cp.size
        )
    })?;
    Ok(TlogProof {
        extra: Some(entry),
        index,
        hashes,
        checkpoint: note,
    })
}
