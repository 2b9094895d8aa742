//! The read side of the ledger for auditors: the latest signed checkpoint, inclusion
//! and consistency proofs against it, and entries (decrypted with an auditor key),
//! filtered and paged. Shared by `warden log` and the HTTP API.
//!
//! Each call reads the files afresh. Entries are found by a scan from the start (an
//! entry's key comes from its epoch's rotation record), at a cost linear in the
//! ledger's size; proofs read O(log n) hashes from the stored tree (`hashes`), brought
//! up to the latest checkpoint first.

use crate::error::{StoreError, io};
use crate::ledger::checkpoints_path;
use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;
use warden_core::checkpoint::{Checkpoint, TlogProof};
use warden_core::crypto::{DataKey, RecipientSecretKey};
use warden_core::entry::{self, KIND_ROTATION};
use warden_core::epoch::RotationRecord;
use warden_core::merkle::Hash;
use warden_core::note::Note;
use warden_core::record::CheckpointRecord;

/// Most entries one [`read_entries`] call returns.
pub const MAX_PAGE: usize = 1000;

fn bad(detail: impl Into<String>) -> StoreError {
    StoreError::Request(detail.into())
}

/// The latest checkpoint record, if the ledger has one: the last complete line of the
/// checkpoints file, read from its end. A record the writer is appending right now (no
/// newline yet) is not one, so a reader beside the writer never sees a torn record.
pub fn latest_checkpoint(log: &Path) -> Result<Option<CheckpointRecord>, StoreError> {
    match crate::layout::read_tail(&checkpoints_path(log))?.last {
        None => Ok(None),
        Some(line) => Ok(Some(CheckpointRecord::decode(&line)?)),
    }
}

fn require_checkpoint(log: &Path) -> Result<CheckpointRecord, StoreError> {
    latest_checkpoint(log)?.ok_or_else(|| bad("the ledger has no checkpoint yet"))
}

/// The root the latest checkpoint signs.
fn signed_root(rec: &CheckpointRecord) -> Result<Hash, StoreError> {
    Ok(Checkpoint::from_text(Note::parse(rec.note.as_bytes())?.text())?.root)
}

/// A C2SP tlog-proof of entry `index` against the latest checkpoint, carrying the
/// entry line as its extra data.
pub fn inclusion(log: &Path, index: u64) -> Result<TlogProof, StoreError> {
    let rec = require_checkpoint(log)?;
    if index >= rec.size {
        return Err(bad(format!(
            "index {index} is not covered by the latest checkpoint (size {})",
            rec.size
        )));
    }
    // A removed entry's line is gone; its proof still holds for its leaf hash.
    let extra = crate::hashes::entry_line(log, index)?;
    let leaf = extra.as_deref().map(warden_core::merkle::leaf_hash);
    let hashes = crate::hashes::inclusion(log, rec.size, &signed_root(&rec)?, index, leaf)?;
    Ok(TlogProof {
        extra,
        index,
        hashes,
        checkpoint: Note::parse(rec.note.as_bytes())?,
    })
}

/// A consistency proof from the tree of `old_size` entries to the latest checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consistency {
    pub old_size: u64,
    pub new_size: u64,
    pub hashes: Vec<Hash>,
    /// The signed checkpoint of `new_size`.
    pub checkpoint: String,
}

/// Proves that the tree of `old_size` entries is a prefix of the latest checkpoint's.
pub fn consistency(log: &Path, old_size: u64) -> Result<Consistency, StoreError> {
    consistency_to(log, &require_checkpoint(log)?, old_size)
}

/// Proves that the tree of `old_size` entries is a prefix of the one `rec` signs
/// (a checkpoint of this ledger, e.g. the one being presented to witnesses).
pub fn consistency_to(
    log: &Path,
    rec: &CheckpointRecord,
    old_size: u64,
) -> Result<Consistency, StoreError> {
    if old_size > rec.size {
        return Err(bad(format!(
            "old size {old_size} is larger than the checkpoint's (size {})",
            rec.size
        )));
    }
    let hashes = crate::hashes::consistency(log, rec.size, &signed_root(rec)?, old_size)?;
    Ok(Consistency {
        old_size,
        new_size: rec.size,
        hashes,
        checkpoint: rec.note.to_string(),
    })
}

/// Which entries to return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// First index.
    pub from: u64,
    /// Last index (inclusive).
    pub to: Option<u64>,
    /// Only this public kind.
    pub kind: Option<String>,
    /// Only entries whose decrypted event names this user (needs the auditor key).
    pub user: Option<String>,
    /// Only entries whose decrypted event names this model (needs the auditor key).
    pub model: Option<String>,
    /// Most entries to return (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

/// One entry as shown to an auditor.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EntryView {
    pub index: u64,
    pub time: String,
    pub epoch: u64,
    pub kind: String,
    /// The decrypted event, when an auditor key was given and could open it.
    pub event: Option<serde_json::Value>,
    /// Why the event is missing or the line is unusable.
    pub error: Option<&'static str>,
}

/// Reads entries matching `f`; returns them and the index to continue from when the
/// page (`f.limit`, at most [`MAX_PAGE`]) filled up.
pub fn read_entries(
    log: &Path,
    auditor: Option<&RecipientSecretKey>,
    f: &EntryFilter,
) -> Result<(Vec<EntryView>, Option<u64>), StoreError> {
    let limit = f.limit.clamp(1, MAX_PAGE);
    let mut out = Vec::new();
    let mut next = None;
    for_each_entry(log, auditor, f, |e| {
        if out.len() == limit {
            next = Some(e.index);
            return Ok(false);
        }
        out.push(e);
        Ok(true)
    })?;
    Ok((out, next))
}

/// Calls `visit` with every entry matching `f` (`f.limit` is ignored) in order, until
/// it returns false.
pub fn for_each_entry(
    log: &Path,
    auditor: Option<&RecipientSecretKey>,
    f: &EntryFilter,
    mut visit: impl FnMut(EntryView) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    if auditor.is_none() && (f.user.is_some() || f.model.is_some()) {
        return Err(bad(
            "filtering by user or model needs the auditor key: events are encrypted",
        ));
    }
    // Only what a signed checkpoint covers: entries past it may still be cut (a writer
    // is mid-batch beside this reader, or a crash left them unacknowledged).
    let covered = latest_checkpoint(log)?.map_or(0, |r| r.size);
    let view = crate::segments::LogView::open(log)?;
    let mut index = view.first_index();
    let start = view.start();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, view.reader(start, u64::MAX));
    let mut keys: HashMap<u64, Option<DataKey>> = HashMap::new();
    let mut buf = Vec::new();
    loop {
        if index >= covered {
            return Ok(());
        }
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .map_err(io("read", log))?
            == 0
        {
            return Ok(());
        }
        if buf.last() != Some(&b'\n') {
            // A torn tail is not an entry yet.
            return Ok(());
        }
        buf.pop();
        let i = index;
        index += 1;
        if f.to.is_some_and(|t| i > t) {
            return Ok(());
        }
        let Ok(e) = entry::parse_line(&buf) else {
            if i >= f.from
                && f.kind.is_none()
                && f.user.is_none()
                && f.model.is_none()
                && !visit(EntryView {
                    index: i,
                    time: String::new(),
                    epoch: 0,
                    kind: String::new(),
                    event: None,
                    error: Some("malformed line"),
                })?
            {
                return Ok(());
            }
            continue;
        };
        if e.header.kind == KIND_ROTATION
            && let Some(sk) = auditor
        {
            let k = RotationRecord::decode(e.header.rotation.unwrap_or_default())
                .ok()
                .and_then(|r| r.unwrap_data_key(sk).ok().flatten());
            keys.insert(e.header.epoch, k);
        }
        if i < f.from || f.kind.as_deref().is_some_and(|k| k != e.header.kind) {
            continue;
        }
        let (mut event, mut error) = (None, None);
        if auditor.is_some() {
            match keys.get(&e.header.epoch) {
                Some(Some(k)) => {
                    let mut pt = Vec::new();
                    match e.open(k, &mut pt) {
                        Ok(()) => event = serde_json::from_slice(&pt).ok(),
                        Err(_) => error = Some("decryption failed"),
                    }
                }
                _ => error = Some("not wrapped to this auditor"),
            }
        }
        let field = |name: &str| {
            event
                .as_ref()
                .and_then(|v: &serde_json::Value| v.get(name))
                .and_then(|v| v.as_str())
        };
        if f.user.as_deref().is_some_and(|u| field("user") != Some(u))
            || f.model
                .as_deref()
                .is_some_and(|m| field("model") != Some(m))
        {
            continue;
        }
        if !visit(EntryView {
            index: i,
            time: e.header.time.to_string(),
            epoch: e.header.epoch,
            kind: e.header.kind.to_owned(),
            event,
            error,
        })? {
            return Ok(());
        }
    }
}

/// One incident as auditors see it: the `incident` entry, decrypted, and its
/// acknowledgement (an `incident.ack` entry naming it), if any.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct IncidentView {
    pub index: u64,
    pub time: String,
    /// `LOW` … `CRITICAL` (`UNKNOWN` when the entry cannot be decrypted).
    pub severity: String,
    /// The detector, or `integrity` for a verification failure on the load path.
    pub detector: String,
    pub summary: String,
    pub principal: Option<String>,
    pub ip: Option<String>,
    /// Indices of the entries that triggered it.
    pub evidence: Vec<u64>,
    /// Playbook actions it announced.
    pub playbook: Vec<String>,
    pub event: Option<serde_json::Value>,
    pub acknowledged: Option<serde_json::Value>,
}

/// An `incident` entry as auditors see it (`event` is its decrypted event, if any).
pub(crate) fn incident_view(
    index: u64,
    time: String,
    event: Option<serde_json::Value>,
) -> IncidentView {
    let get = |p: &str| event.as_ref().and_then(|v| v.pointer(p)).cloned();
    let text = |p: &str| get(p).and_then(|v| v.as_str().map(str::to_owned));
    IncidentView {
        index,
        time,
        severity: text("/details/severity").unwrap_or_else(|| "UNKNOWN".into()),
        detector: text("/details/detector")
            .or_else(|| text("/details/type"))
            .unwrap_or_default(),
        summary: text("/details/summary")
            .or_else(|| text("/details/what"))
            .unwrap_or_default(),
        principal: text("/user"),
        ip: text("/ip"),
        evidence: get("/details/evidence")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        playbook: get("/details/playbook")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        acknowledged: None,
        event,
    }
}

/// The incident an `incident.ack` entry acknowledges, and the acknowledgement as shown.
pub(crate) fn ack_of(
    index: u64,
    time: &str,
    event: Option<&serde_json::Value>,
) -> Option<(u64, serde_json::Value)> {
    let ev = event?;
    let text = |p: &str| ev.pointer(p).and_then(|v| v.as_str().map(str::to_owned));
    let i = ev.pointer("/details/incident")?.as_u64()?;
    Some((
        i,
        serde_json::json!({"index": index, "time": time, "by": text("/user"), "note": text("/details/note")}),
    ))
}

/// Every incident in the ledger, oldest first, with acknowledgements applied.
pub fn incidents(
    log: &Path,
    auditor: Option<&RecipientSecretKey>,
) -> Result<Vec<IncidentView>, StoreError> {
    let mut out: Vec<IncidentView> = Vec::new();
    let mut acks: Vec<(u64, serde_json::Value)> = Vec::new();
    for_each_entry(log, auditor, &EntryFilter::default(), |e| {
        match e.kind.as_str() {
            "incident" => out.push(incident_view(e.index, e.time, e.event)),
            "incident.ack" => acks.extend(ack_of(e.index, &e.time, e.event.as_ref())),
            _ => {}
        }
        Ok(true)
    })?;
    for (i, a) in acks {
        if let Some(inc) = out.iter_mut().find(|x| x.index == i) {
            inc.acknowledged.get_or_insert(a);
        }
    }
    Ok(out)
}
