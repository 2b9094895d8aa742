//! The shared queue: any node adds batches of entries; the sequencer takes them in
//! order, and records on each batch what became of every entry in it.
//!
//! A batch is one row (its entries encoded together), so the database does per-batch
//! work, not per-entry work: at thousands of entries per batch an entry costs a few
//! bytes of a row rather than a row, an index entry and an update of its own.
//!
//! Exactly once: each entry carries a request id that the sequencer writes into its
//! entry's header. A sequencer that dies after committing a batch but before recording
//! its outcomes leaves a batch that looks unwritten; its successor resubmits it under
//! the same ids, and the ledger, which recovers the ids of its last entries when
//! opened, answers with the first entries' receipts instead of writing them again.

use crate::{ClusterError, db};
use sqlx::PgPool;
use warden_core::entry::RID_LEN;

/// The notification channel for new batches.
pub const PENDING: &str = "warden_ledger_pending";
/// The notification channel for outcomes written.
pub const DONE: &str = "warden_ledger_done";

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub rid: [u8; RID_LEN],
    pub kind: String,
    pub plaintext: Vec<u8>,
}

/// A queued batch the sequencer takes.
#[derive(Debug)]
pub struct Batch {
    pub id: i64,
    pub entries: Vec<NewEntry>,
}

/// What became of a queued entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In the ledger at `index`, under the signed checkpoint `note` of `size` entries.
    Written { index: u64, size: u64, note: String },
    /// Refused by the ledger (the reason).
    Refused(String),
}

/// Encodes entries as one batch: per entry its request id, kind (length-prefixed by
/// one byte) and plaintext (by four).
pub fn encode(items: &[NewEntry]) -> Result<Vec<u8>, ClusterError> {
    let mut out = Vec::with_capacity(
        items
            .iter()
            .map(|i| 21 + i.kind.len() + i.plaintext.len())
            .sum(),
    );
    for i in items {
        let k = u8::try_from(i.kind.len())
            .map_err(|_| ClusterError::Config(format!("kind {:?} is too long", i.kind)))?;
        let p = u32::try_from(i.plaintext.len())
            .map_err(|_| ClusterError::Config("an event is too large".into()))?;
        out.extend_from_slice(&i.rid);
        out.push(k);
        out.extend_from_slice(i.kind.as_bytes());
        out.extend_from_slice(&p.to_be_bytes());
        out.extend_from_slice(&i.plaintext);
    }
    Ok(out)
}

/// Decodes a batch [`encode`] made.
pub fn decode(mut b: &[u8]) -> Result<Vec<NewEntry>, ClusterError> {
    let bad = || ClusterError::Corrupt("a queued batch does not decode".into());
    let mut out = Vec::new();
    while !b.is_empty() {
        let (rid, rest) = b.split_first_chunk::<RID_LEN>().ok_or_else(bad)?;
        let (k, rest) = rest.split_first().ok_or_else(bad)?;
        let (kind, rest) = rest.split_at_checked(usize::from(*k)).ok_or_else(bad)?;
        let (p, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = usize::try_from(u32::from_be_bytes(*p)).map_err(|_| bad())?;
        let (text, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
        out.push(NewEntry {
            rid: *rid,
            kind: String::from_utf8(kind.to_vec()).map_err(|_| bad())?,
            plaintext: text.to_vec(),
        });
        b = rest;
    }
    Ok(out)
}

/// Lets `tx` commit without waiting for its WAL to reach disk. Neither a batch nor its
/// outcomes acknowledge anything by themselves: an entry is acknowledged only once the
/// chunk holding it has committed, which is synchronous, and flushing that commit's WAL
/// flushes every earlier record, the batch's insert included. A batch lost with a crash
/// was never acknowledged (its waiters fail); outcomes lost with a crash leave a written
/// batch looking unwritten, and resubmitting it answers with the first receipts (each
/// entry carries its request id). What this saves is two of the three disk flushes
/// every acknowledgement waited for.
async fn relaxed(tx: &mut sqlx::PgConnection) -> Result<(), ClusterError> {
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(tx)
        .await
        .map(|_| ())
        .map_err(db("relax commit"))
}

/// Adds `items` as one batch; returns its id.
pub async fn add(pool: &PgPool, items: &[NewEntry]) -> Result<i64, ClusterError> {
    let data = encode(items)?;
    let n =
        i32::try_from(items.len()).map_err(|_| ClusterError::Config("batch too large".into()))?;
    let mut tx = pool.begin().await.map_err(db("begin enqueue"))?;
    relaxed(&mut tx).await?;
    let id: i64 =
        sqlx::query_scalar("INSERT INTO ledger_batches (entries, n) VALUES ($1, $2) RETURNING id")
            .bind(&data)
            .bind(n)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("enqueue"))?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(PENDING)
        .execute(&mut *tx)
        .await
        .map_err(db("notify"))?;
    tx.commit().await.map_err(db("commit enqueue"))?;
    Ok(id)
}

/// The oldest batches not yet written, in order, at most `limit`, leaving out those in
/// `busy` (taken and not yet recorded). Ids are handed out when a batch is inserted but
/// become visible when it commits, so a batch may appear after one with a higher id:
/// it is taken then, never skipped.
pub async fn take(pool: &PgPool, limit: i64, busy: &[i64]) -> Result<Vec<Batch>, ClusterError> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, entries FROM ledger_batches WHERE NOT done AND NOT (id = ANY($2))
         ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .bind(busy)
    .fetch_all(pool)
    .await
    .map_err(db("take queued batches"))?;
    rows.into_iter()
        .map(|(id, data)| {
            Ok(Batch {
                id,
                entries: decode(&data)?,
            })
        })
        .collect()
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Records what became of each entry of each batch: `(batch id, outcomes in order)`.
pub async fn finish(pool: &PgPool, done: &[(i64, Vec<Outcome>)]) -> Result<(), ClusterError> {
    let mut notes: std::collections::BTreeMap<i64, &str> = std::collections::BTreeMap::new();
    let mut tx = pool.begin().await.map_err(db("begin outcomes"))?;
    relaxed(&mut tx).await?;
    for (id, outcomes) in done {
        let mut idx = Vec::with_capacity(outcomes.len());
        let mut sizes = Vec::with_capacity(outcomes.len());
        let mut refused: Vec<Option<&str>> = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            match o {
                Outcome::Written { index, size, note } => {
                    idx.push(i64_of(*index));
                    sizes.push(i64_of(*size));
                    refused.push(None);
                    notes.insert(i64_of(*size), note);
                }
                Outcome::Refused(r) => {
                    idx.push(-1);
                    sizes.push(-1);
                    refused.push(Some(r));
                }
            }
        }
        sqlx::query(
            "UPDATE ledger_batches SET done = true, entries = NULL, idx = $2, sizes = $3, refused = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(&idx)
        .bind(&sizes)
        .bind(&refused)
        .execute(&mut *tx)
        .await
        .map_err(db("record outcomes"))?;
    }
    let (ns, nn): (Vec<i64>, Vec<&str>) = notes.into_iter().unzip();
    sqlx::query(
        "INSERT INTO ledger_notes (size, note) SELECT * FROM UNNEST($1::bigint[], $2::text[])
         ON CONFLICT (size) DO NOTHING",
    )
    .bind(&ns)
    .bind(&nn)
    .execute(&mut *tx)
    .await
    .map_err(db("record checkpoints"))?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(DONE)
        .execute(&mut *tx)
        .await
        .map_err(db("notify"))?;
    tx.commit().await.map_err(db("commit outcomes"))
}

/// A finished batch's row: id, indexes, sizes, refusals.
type DoneRow = (i64, Vec<i64>, Vec<i64>, Vec<Option<String>>);

/// The outcomes of those batches among `ids` that are finished.
pub async fn outcomes(
    pool: &PgPool,
    ids: &[i64],
) -> Result<Vec<(i64, Vec<Outcome>)>, ClusterError> {
    let rows: Vec<DoneRow> = sqlx::query_as(
        "SELECT id, idx, sizes, refused FROM ledger_batches WHERE id = ANY($1) AND done",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .map_err(db("read outcomes"))?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut want: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.2.iter().copied())
        .filter(|s| *s >= 0)
        .collect();
    want.sort_unstable();
    want.dedup();
    let notes: std::collections::HashMap<i64, String> = sqlx::query_as::<_, (i64, String)>(
        "SELECT size, note FROM ledger_notes WHERE size = ANY($1)",
    )
    .bind(&want)
    .fetch_all(pool)
    .await
    .map_err(db("read checkpoints"))?
    .into_iter()
    .collect();
    Ok(rows
        .into_iter()
        .map(|(id, idx, sizes, refused)| {
            let out = idx
                .iter()
                .zip(&sizes)
                .zip(refused)
                .map(
                    |((i, s), r)| match (r, u64::try_from(*i), u64::try_from(*s)) {
                        (Some(r), _, _) => Outcome::Refused(r),
                        (None, Ok(index), Ok(size)) => Outcome::Written {
                            index,
                            size,
                            note: notes.get(s).cloned().unwrap_or_default(),
                        },
                        _ => Outcome::Refused("no outcome recorded".into()),
                    },
                )
                .collect();
            (id, out)
        })
        .collect())
}

/// Deletes batches finished more than `age` ago, and the checkpoint notes recorded
/// more than `age` ago (the newest is kept).
///
/// A note is recorded when the entries that make its size are written, which is after
/// every batch holding them was queued; so a note older than `age` is named only by
/// batches older than `age`, which go too. Deciding by age keeps the statement an index
/// range: matching each note against every batch's sizes (the first version) grew with
/// the product of the two, and stalled the sequencer, whose loop runs the prune, for
/// 42 s at 48,000 notes and 47,000 batches of one entry.
pub async fn prune(pool: &PgPool, age: std::time::Duration) -> Result<u64, ClusterError> {
    let r = sqlx::query(
        "DELETE FROM ledger_batches WHERE done
         AND created_at < clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await
    .map_err(db("prune queue"))?;
    sqlx::query(
        "DELETE FROM ledger_notes
         WHERE created_at < clock_timestamp() - make_interval(secs => $1)
         AND size < (SELECT max(size) FROM ledger_notes)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await
    .map_err(db("prune checkpoints"))?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn batches_round_trip_and_truncations_are_refused() {
        let items: Vec<NewEntry> = (0..3u8)
            .map(|i| NewEntry {
                rid: [i; RID_LEN],
                kind: format!("kind.{i}"),
                plaintext: vec![i; usize::from(i) * 100],
            })
            .collect();
        let b = encode(&items).unwrap();
        let back = decode(&b).unwrap();
        assert_eq!(back.len(), 3);
        for (a, z) in items.iter().zip(&back) {
            assert_eq!(
                (a.rid, &a.kind, &a.plaintext),
                (z.rid, &z.kind, &z.plaintext)
            );
        }
        for cut in [1, RID_LEN, RID_LEN + 3, b.len() - 1] {
            assert!(decode(&b[..cut]).is_err(), "{cut}");
        }
    }
}
