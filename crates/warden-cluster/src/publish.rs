//! Publishes the cluster's ledger to object storage in the C2SP `tlog-tiles` layout
//! ([`warden_core::tiles`]), so that verifiers, proofs and monitors can read it from the
//! bucket without a node.
//!
//! The publisher reads the ledger's committed chunks from PostgreSQL, never a node's
//! copy: a sequencer's copy may hold bytes whose commit was fenced off, and those must
//! never reach a published checkpoint. Every entry's leaf hash is checked against its
//! checkpoint record, and the tiles' root against the signed root before anything
//! names them. Objects go up in an order that keeps the bucket readable at every
//! moment: full tiles and bundles, then the partial ones for the new size, then the
//! checkpoint records, then `warden/state.json`, and `checkpoint` last. Every object
//! but those two is immutable: a rewrite after a crash writes the same bytes.

use crate::chunks::{CHECKPOINTS, ENTRIES};
use crate::{ClusterError, db};
use sqlx::PgPool;
use std::future::Future;
use warden_core::checkpoint::Checkpoint;
use warden_core::merkle::{Hash, leaf_hash};
use warden_core::note::Note;
use warden_core::record::CheckpointRecord;
use warden_core::tiles::{self, Tile, TileHasher, WIDTH};

/// Where the published log is stored (a bucket and prefix).
pub trait Objects: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Writes an object.
    fn put(&self, path: &str, data: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;
    /// Reads an object; `None` when there is none.
    fn get(&self, path: &str) -> impl Future<Output = Result<Option<Vec<u8>>, String>> + Send;
}

/// Uploads in flight at once.
const IN_FLIGHT: usize = 32;
/// Checkpoint chunks read per step (each with its entries chunk: a batch of the
/// sequencer, or up to 8 MiB of a migrated ledger), which bounds a step's memory.
const CHUNKS_PER_STEP: i64 = 8;

/// The publisher's position, kept at [`tiles::STATE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Entries published.
    pub size: u64,
    /// Checkpoint records published.
    pub records: u64,
    /// Bytes of the entries stream published.
    pub entries_off: u64,
    /// Bytes of the checkpoints stream published.
    pub checkpoints_off: u64,
    /// The tree's root at `size`.
    pub root: Hash,
}

impl State {
    /// The state as JSON.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({
            "size": self.size, "records": self.records, "entries_off": self.entries_off,
            "checkpoints_off": self.checkpoints_off, "root": warden_core::hex::encode(&self.root),
        })
        .to_string()
        .into_bytes()
    }

    /// Parses [`State::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(b).map_err(|e| format!("{}: {e}", tiles::STATE))?;
        let n = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| format!("{}: no {k}", tiles::STATE))
        };
        let root = v
            .get("root")
            .and_then(|r| r.as_str())
            .and_then(|r| warden_core::hex::decode_array::<32>(r.as_bytes()).ok())
            .ok_or_else(|| format!("{}: no root", tiles::STATE))?;
        Ok(Self {
            size: n("size")?,
            records: n("records")?,
            entries_off: n("entries_off")?,
            checkpoints_off: n("checkpoints_off")?,
            root,
        })
    }
}

fn corrupt(m: impl Into<String>) -> ClusterError {
    ClusterError::Corrupt(m.into())
}

/// Splits `b` into lines (without their `\n`); a tail without one is an error.
fn lines(b: &[u8], what: &str) -> Result<Vec<Vec<u8>>, ClusterError> {
    if !b.is_empty() && b.last() != Some(&b'\n') {
        return Err(corrupt(format!("{what} do not end with a whole line")));
    }
    Ok(b.split(|&c| c == b'\n')
        .take(b.iter().filter(|&&c| c == b'\n').count())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Follows the committed ledger and publishes it.
#[derive(Debug)]
pub struct Publisher<O: Objects> {
    objects: O,
    state: State,
    tree: TileHasher,
    /// Entries of the entry bundle still filling.
    bundle: Vec<Vec<u8>>,
    /// Records of the records bundle still filling.
    records: Vec<Vec<u8>>,
    uploads: tokio::task::JoinSet<Result<(), String>>,
}

impl<O: Objects> Publisher<O> {
    /// Resumes from what the bucket holds (or starts an empty one). The restored tiles
    /// must give the root the state recorded.
    pub async fn open(objects: O) -> Result<Self, ClusterError> {
        let state = match objects.get(tiles::STATE).await.map_err(objects_err)? {
            Some(b) => State::decode(&b).map_err(objects_err)?,
            None => State::default(),
        };
        let mut partials = Vec::new();
        for (level, index, width) in tiles::partial_tiles(state.size) {
            let path = tiles::tile_path(level, index, width);
            let b = need(&objects, &path).await?;
            let hashes =
                tiles::parse_tile(&b, width).map_err(|e| corrupt(format!("{path}: {e}")))?;
            partials.push(Tile {
                level,
                index,
                hashes,
            });
        }
        let tree = TileHasher::restore(state.size, partials).map_err(|e| corrupt(e.to_string()))?;
        if state.size > 0 && tree.root() != state.root {
            return Err(corrupt(
                "the published partial tiles do not give the published root",
            ));
        }
        let bundle = match rest(state.size) {
            0 => Vec::new(),
            w => {
                let path = tiles::bundle_path(state.size / WIDTH as u64, w);
                let b = need(&objects, &path).await?;
                let e = tiles::decode_bundle(&b).map_err(|e| corrupt(format!("{path}: {e}")))?;
                if e.len() != w {
                    return Err(corrupt(format!("{path} holds {} entries", e.len())));
                }
                e.into_iter().map(<[u8]>::to_vec).collect()
            }
        };
        let records = match rest(state.records) {
            0 => Vec::new(),
            w => {
                let path = tiles::records_path(state.records / WIDTH as u64, w);
                let r = lines(&need(&objects, &path).await?, &path)?;
                if r.len() != w {
                    return Err(corrupt(format!("{path} holds {} records", r.len())));
                }
                r
            }
        };
        Ok(Self {
            objects,
            state,
            tree,
            bundle,
            records,
            uploads: tokio::task::JoinSet::new(),
        })
    }

    /// What has been published.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    async fn put(&mut self, path: String, data: Vec<u8>) -> Result<(), ClusterError> {
        while self.uploads.len() >= IN_FLIGHT {
            self.drain_one().await?;
        }
        let o = self.objects.clone();
        self.uploads.spawn(async move {
            o.put(&path, data)
                .await
                .map_err(|e| format!("writing {path}: {e}"))
        });
        Ok(())
    }

    async fn drain_one(&mut self) -> Result<(), ClusterError> {
        match self.uploads.join_next().await {
            Some(Ok(r)) => r.map_err(objects_err),
            Some(Err(e)) => Err(objects_err(format!("upload task: {e}"))),
            None => Ok(()),
        }
    }

    async fn drain(&mut self) -> Result<(), ClusterError> {
        while !self.uploads.is_empty() {
            self.drain_one().await?;
        }
        Ok(())
    }

    /// Publishes the next committed checkpoints (up to [`CHUNKS_PER_STEP`] chunks of
    /// records). Returns the new published size, or `None` when there was nothing new.
    pub async fn step(&mut self, pool: &PgPool) -> Result<Option<u64>, ClusterError> {
        let mut conn = pool.acquire().await.map_err(db("publisher connection"))?;
        if self.state.size == 0
            && let Some(b) = crate::base::Base::read(&mut conn).await?
        {
            return Err(ClusterError::Config(format!(
                "retention removed this ledger's entries before {} before it moved onto the cluster; tlog-tiles publishes every entry from the first, so it cannot be published (remove publish_log)",
                b.first
            )));
        }
        let chunks = crate::chunks::from(
            &mut conn,
            CHECKPOINTS,
            self.state.checkpoints_off,
            CHUNKS_PER_STEP,
        )
        .await?;
        let mut cps = Vec::new();
        let mut off = self.state.checkpoints_off;
        for (o, d) in chunks {
            if o != off {
                return Err(corrupt(format!("checkpoint chunk at {o}, expected {off}")));
            }
            off += d.len() as u64;
            cps.extend_from_slice(&d);
        }
        let recs = lines(&cps, "checkpoint chunks")?;
        let Some(last) = recs.last() else {
            return Ok(None);
        };
        let last = CheckpointRecord::decode(last).map_err(|e| corrupt(e.to_string()))?;
        // The entries those records cover: committed with them, so all present.
        let mut entries = Vec::new();
        let mut eoff = self.state.entries_off;
        let mut lines_left = last.size.saturating_sub(self.state.size);
        while lines_left > 0 {
            let got = crate::chunks::from(&mut conn, ENTRIES, eoff, CHUNKS_PER_STEP).await?;
            if got.is_empty() {
                return Err(corrupt(format!(
                    "checkpoint of size {} but the entries stop at byte {eoff}",
                    last.size
                )));
            }
            for (o, d) in got {
                if lines_left == 0 {
                    break;
                }
                if o != eoff {
                    return Err(corrupt(format!("entry chunk at {o}, expected {eoff}")));
                }
                let n = d.iter().filter(|&&c| c == b'\n').count() as u64;
                eoff += d.len() as u64;
                lines_left = lines_left.saturating_sub(n);
                entries.extend_from_slice(&d);
            }
        }
        drop(conn);
        let mut entries = lines(&entries, "entry chunks")?.into_iter();
        let mut note = String::new();
        for line in recs {
            let r = CheckpointRecord::decode(&line).map_err(|e| corrupt(e.to_string()))?;
            if r.first != self.tree.size() || r.size < r.first {
                return Err(corrupt(format!(
                    "checkpoint record {}..{} does not follow size {}",
                    r.first,
                    r.size,
                    self.tree.size()
                )));
            }
            for want in &r.leaves {
                let e = entries
                    .next()
                    .ok_or_else(|| corrupt("entries end before their checkpoint"))?;
                if leaf_hash(&e) != *want {
                    return Err(corrupt(format!(
                        "entry {} does not hash to its checkpoint record's leaf",
                        self.tree.size()
                    )));
                }
                if e.len() > tiles::MAX_ENTRY {
                    return Err(corrupt(format!(
                        "entry {} is {} bytes, longer than a tlog-tiles bundle holds ({})",
                        self.tree.size(),
                        e.len(),
                        tiles::MAX_ENTRY
                    )));
                }
                let mut full = Vec::new();
                self.tree.push(*want, &mut full);
                self.bundle.push(e);
                if self.bundle.len() == WIDTH {
                    let b = std::mem::take(&mut self.bundle);
                    let data = tiles::encode_bundle(&b).map_err(|e| corrupt(e.to_string()))?;
                    let index = (self.tree.size() - 1) / WIDTH as u64;
                    self.put(tiles::bundle_path(index, WIDTH), data).await?;
                }
                for t in full {
                    self.put(t.path(), tiles::tile_bytes(&t.hashes)).await?;
                }
            }
            if r.leaves.len() as u64 != r.size - r.first {
                return Err(corrupt(format!(
                    "checkpoint record {}..{} lists {} leaves",
                    r.first,
                    r.size,
                    r.leaves.len()
                )));
            }
            self.records.push(line);
            self.state.records += 1;
            if self.records.len() == WIDTH {
                let b = std::mem::take(&mut self.records);
                let index = (self.state.records - 1) / WIDTH as u64;
                self.put(tiles::records_path(index, WIDTH), joined(&b))
                    .await?;
            }
            note = r.note;
        }
        if entries.next().is_some() {
            return Err(corrupt("entries committed beyond the last checkpoint"));
        }
        // The signed root must be the tiles' root, or nothing is named.
        let signed = Note::parse(note.as_bytes())
            .ok()
            .and_then(|n| Checkpoint::from_text(n.text()).ok())
            .ok_or_else(|| corrupt("the last checkpoint record's note does not parse"))?;
        let root = self.tree.root();
        if signed.size != self.tree.size() || signed.root != root {
            return Err(corrupt(format!(
                "the signed checkpoint of size {} does not match the tiles' tree",
                signed.size
            )));
        }
        let size = self.tree.size();
        if rest(size) > 0 {
            let data = tiles::encode_bundle(&self.bundle).map_err(|e| corrupt(e.to_string()))?;
            self.put(tiles::bundle_path(size / WIDTH as u64, rest(size)), data)
                .await?;
        }
        for t in self.tree.partials() {
            self.put(t.path(), tiles::tile_bytes(&t.hashes)).await?;
        }
        let n = self.state.records;
        if rest(n) > 0 {
            self.put(
                tiles::records_path(n / WIDTH as u64, rest(n)),
                joined(&self.records),
            )
            .await?;
        }
        self.drain().await?;
        let state = State {
            size,
            records: n,
            entries_off: eoff,
            checkpoints_off: off,
            root,
        };
        self.objects
            .put(tiles::STATE, state.encode())
            .await
            .map_err(objects_err)?;
        self.objects
            .put(tiles::CHECKPOINT, note.into_bytes())
            .await
            .map_err(objects_err)?;
        self.state = state;
        Ok(Some(size))
    }
}

fn objects_err(e: String) -> ClusterError {
    ClusterError::Objects(e)
}

/// Items past the last full bundle of `n`.
fn rest(n: u64) -> usize {
    usize::try_from(n % WIDTH as u64).unwrap_or(0)
}

fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

async fn need<O: Objects>(o: &O, path: &str) -> Result<Vec<u8>, ClusterError> {
    o.get(path)
        .await
        .map_err(objects_err)?
        .ok_or_else(|| corrupt(format!("{path} is missing from the published log")))
}

/// The lease under which one node of the cluster publishes.
pub const LEASE: &str = "ledger.publish";
/// How long the publishing node's hold lasts without renewal.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(6);
/// How often the publisher looks for new checkpoints when it has caught up.
const IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Publishes the ledger to `objects` whenever this node (`holder`) holds [`LEASE`],
/// until `stop` turns true. `say` reports what happens (taking the lease, errors, once
/// each until things change). The lease is renewed before every step, so a node that
/// lost it stops within one step; two publishers racing can only write the same
/// immutable objects, and at worst put back an older `checkpoint` for one step.
pub async fn run<O: Objects>(
    pool: PgPool,
    holder: String,
    objects: O,
    mut stop: tokio::sync::watch::Receiver<bool>,
    say: impl Fn(String) + Send + Sync,
) {
    let mut last_error = String::new();
    let report = |last: &mut String, e: String| {
        if e != *last {
            say(e.clone());
            *last = e;
        }
    };
    while !*stop.borrow() {
        let lease = match crate::lease::acquire(&pool, LEASE, &holder, LEASE_TTL).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE * 2, stop.changed()).await;
                continue;
            }
            Err(e) => {
                report(
                    &mut last_error,
                    format!("cannot take the lease {LEASE}: {e}"),
                );
                let _ = tokio::time::timeout(IDLE * 2, stop.changed()).await;
                continue;
            }
        };
        let mut p = match Publisher::open(objects.clone()).await {
            Ok(p) => p,
            Err(e) => {
                report(&mut last_error, format!("cannot resume publishing: {e}"));
                let _ = crate::lease::release(&pool, &lease).await;
                let _ = tokio::time::timeout(IDLE * 10, stop.changed()).await;
                continue;
            }
        };
        say(format!(
            "publishing the ledger (tlog-tiles) from entry {}",
            p.state().size
        ));
        last_error.clear();
        while !*stop.borrow() {
            match crate::lease::renew(&pool, &lease, LEASE_TTL).await {
                Ok(true) => {}
                Ok(false) => {
                    report(&mut last_error, format!("lost the lease {LEASE}"));
                    break;
                }
                Err(e) => {
                    report(
                        &mut last_error,
                        format!("cannot renew the lease {LEASE}: {e}"),
                    );
                    break;
                }
            }
            match p.step(&pool).await {
                Ok(Some(_)) => last_error.clear(),
                Ok(None) => {
                    let _ = tokio::time::timeout(IDLE, stop.changed()).await;
                }
                Err(e) => {
                    report(
                        &mut last_error,
                        format!("publishing stopped at entry {}: {e}", p.state().size),
                    );
                    break;
                }
            }
        }
        let _ = crate::lease::release(&pool, &lease).await;
        let _ = tokio::time::timeout(IDLE * 2, stop.changed()).await;
    }
}
