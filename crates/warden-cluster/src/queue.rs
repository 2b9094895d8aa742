//! The shared queue: any node adds entries; the sequencer takes them in order, and
//! records each one's receipt (or refusal) on its row once the ledger holds it.
//!
//! Exactly once: each row carries a request id that the sequencer writes into its
//! entry's header. A sequencer that dies after committing a batch but before recording
//! its receipts leaves rows that look unwritten; its successor resubmits them under the
//! same ids, and the ledger, which recovers the ids of its last entries when opened,
//! answers with the first entry's receipt instead of writing a second one.

use crate::{ClusterError, db};
use sqlx::PgPool;
use warden_core::entry::RID_LEN;

/// The notification channel for new rows.
pub const PENDING: &str = "warden_ledger_pending";
/// The notification channel for receipts written.
pub const DONE: &str = "warden_ledger_done";

/// An entry to add.
#[derive(Debug)]
pub struct NewEntry {
    pub rid: [u8; RID_LEN],
    pub kind: String,
    pub plaintext: Vec<u8>,
}

/// A queued entry the sequencer takes.
#[derive(Debug)]
pub struct Queued {
    pub id: i64,
    pub rid: Vec<u8>,
    pub kind: String,
    pub plaintext: Vec<u8>,
}

/// What became of a queued entry.
#[derive(Debug)]
pub enum Outcome {
    /// In the ledger at `index`, under the signed checkpoint `note` of `size` entries.
    Written { index: u64, size: u64, note: String },
    /// Refused by the ledger (the reason).
    Refused(String),
}

/// Adds `items`, returning each one's row id in order.
pub async fn add(pool: &PgPool, items: &[NewEntry]) -> Result<Vec<i64>, ClusterError> {
    let rids: Vec<&[u8]> = items.iter().map(|i| i.rid.as_slice()).collect();
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    let texts: Vec<&[u8]> = items.iter().map(|i| i.plaintext.as_slice()).collect();
    let mut tx = pool.begin().await.map_err(db("begin enqueue"))?;
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "INSERT INTO ledger_pending (rid, kind, plaintext)
         SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[])
         RETURNING id, rid",
    )
    .bind(&rids)
    .bind(&kinds)
    .bind(&texts)
    .fetch_all(&mut *tx)
    .await
    .map_err(db("enqueue"))?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(PENDING)
        .execute(&mut *tx)
        .await
        .map_err(db("notify"))?;
    tx.commit().await.map_err(db("commit enqueue"))?;
    let by_rid: std::collections::HashMap<Vec<u8>, i64> =
        rows.into_iter().map(|(id, rid)| (rid, id)).collect();
    items
        .iter()
        .map(|i| {
            by_rid
                .get(i.rid.as_slice())
                .copied()
                .ok_or_else(|| ClusterError::Corrupt("an enqueued row has no id".into()))
        })
        .collect()
}

/// The oldest `limit` entries not yet written, in order.
pub async fn take(pool: &PgPool, limit: i64) -> Result<Vec<Queued>, ClusterError> {
    let rows: Vec<(i64, Vec<u8>, String, Vec<u8>)> = sqlx::query_as(
        "SELECT id, rid, kind, plaintext FROM ledger_pending
         WHERE idx IS NULL AND refused IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db("take queued entries"))?;
    Ok(rows
        .into_iter()
        .map(|(id, rid, kind, plaintext)| Queued {
            id,
            rid,
            kind,
            plaintext,
        })
        .collect())
}

/// Records what became of entries: `(row id, outcome)`.
pub async fn finish(pool: &PgPool, done: &[(i64, Outcome)]) -> Result<(), ClusterError> {
    let mut ids = Vec::new();
    let mut idx = Vec::new();
    let mut size = Vec::new();
    let mut notes: std::collections::BTreeMap<i64, &str> = std::collections::BTreeMap::new();
    let mut refused_ids = Vec::new();
    let mut reasons = Vec::new();
    for (id, o) in done {
        match o {
            Outcome::Written {
                index,
                size: s,
                note,
            } => {
                let s = i64::try_from(*s).unwrap_or(i64::MAX);
                ids.push(*id);
                idx.push(i64::try_from(*index).unwrap_or(i64::MAX));
                size.push(s);
                notes.insert(s, note);
            }
            Outcome::Refused(r) => {
                refused_ids.push(*id);
                reasons.push(r.as_str());
            }
        }
    }
    let (ns, nn): (Vec<i64>, Vec<&str>) = notes.into_iter().unzip();
    let mut tx = pool.begin().await.map_err(db("begin receipts"))?;
    sqlx::query(
        "INSERT INTO ledger_notes (size, note) SELECT * FROM UNNEST($1::bigint[], $2::text[])
         ON CONFLICT (size) DO NOTHING",
    )
    .bind(&ns)
    .bind(&nn)
    .execute(&mut *tx)
    .await
    .map_err(db("record checkpoints"))?;
    sqlx::query(
        "UPDATE ledger_pending p SET idx = v.idx, size = v.size, plaintext = NULL
         FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, idx, size)
         WHERE p.id = v.id",
    )
    .bind(&ids)
    .bind(&idx)
    .bind(&size)
    .execute(&mut *tx)
    .await
    .map_err(db("record receipts"))?;
    sqlx::query(
        "UPDATE ledger_pending p SET refused = v.why, plaintext = NULL
         FROM UNNEST($1::bigint[], $2::text[]) AS v(id, why) WHERE p.id = v.id",
    )
    .bind(&refused_ids)
    .bind(&reasons)
    .execute(&mut *tx)
    .await
    .map_err(db("record refusals"))?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(DONE)
        .execute(&mut *tx)
        .await
        .map_err(db("notify"))?;
    tx.commit().await.map_err(db("commit receipts"))
}

/// A row's id, index, checkpoint size, checkpoint note and refusal.
type OutcomeRow = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// The outcomes known for row ids `ids` (those still queued are left out).
pub async fn outcomes(pool: &PgPool, ids: &[i64]) -> Result<Vec<(i64, Outcome)>, ClusterError> {
    let rows: Vec<OutcomeRow> = sqlx::query_as(
        "SELECT p.id, p.idx, p.size, n.note, p.refused FROM ledger_pending p
         LEFT JOIN ledger_notes n ON n.size = p.size
         WHERE p.id = ANY($1) AND (p.idx IS NOT NULL OR p.refused IS NOT NULL)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .map_err(db("read receipts"))?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(id, idx, size, note, refused)| match (idx, size, note, refused) {
                (_, _, _, Some(r)) => Some((id, Outcome::Refused(r))),
                (Some(i), Some(s), Some(note), None) => Some((
                    id,
                    Outcome::Written {
                        index: u64::try_from(i).unwrap_or(0),
                        size: u64::try_from(s).unwrap_or(0),
                        note,
                    },
                )),
                _ => None,
            },
        )
        .collect())
}

/// Deletes rows whose outcome was recorded more than `age` ago, and the checkpoint notes
/// no remaining row needs (the newest is kept).
pub async fn prune(pool: &PgPool, age: std::time::Duration) -> Result<u64, ClusterError> {
    let r = sqlx::query(
        "DELETE FROM ledger_pending WHERE (idx IS NOT NULL OR refused IS NOT NULL)
         AND created_at < clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await
    .map_err(db("prune queue"))?;
    sqlx::query(
        "DELETE FROM ledger_notes n WHERE n.size < (SELECT max(size) FROM ledger_notes)
         AND NOT EXISTS (SELECT 1 FROM ledger_pending p WHERE p.size = n.size)",
    )
    .execute(pool)
    .await
    .map_err(db("prune checkpoints"))?;
    Ok(r.rows_affected())
}
