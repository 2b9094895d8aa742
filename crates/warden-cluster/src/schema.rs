//! The cluster's tables. Every node creates them when missing, one node at a time (an
//! advisory lock held for the transaction), so nodes may start together.

use crate::{ClusterError, db};
use sqlx::PgPool;

/// Advisory lock key that serialises schema creation.
const SCHEMA_LOCK: i64 = 0x5741_5244_454e_0001;

const TABLES: &[&str] = &[
    // Leases: the ledger's sequencer, and jobs that must run once per cluster. `token`
    // rises by one with every change of holder (the fencing token).
    "CREATE TABLE IF NOT EXISTS cluster_lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )",
    // The ledger's files as immutable chunks: stream 0 the entries, 1 the checkpoint
    // records; one chunk per stream per committed batch, at its byte offset. The primary
    // key makes a second write at an offset (a fork) impossible.
    "CREATE TABLE IF NOT EXISTS ledger_chunks (
        stream SMALLINT NOT NULL,
        off BIGINT NOT NULL,
        data BYTEA NOT NULL,
        fence BIGINT NOT NULL,
        PRIMARY KEY (stream, off)
    )",
    // Entries waiting for the sequencer. The plaintext is cleared once the entry is in
    // the ledger; the row then carries the receipt (index and checkpoint size).
    "CREATE TABLE IF NOT EXISTS ledger_pending (
        id BIGSERIAL PRIMARY KEY,
        rid BYTEA NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        plaintext BYTEA,
        idx BIGINT,
        size BIGINT,
        refused TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    "CREATE INDEX IF NOT EXISTS ledger_pending_open ON ledger_pending (id) WHERE idx IS NULL AND refused IS NULL",
    // The signed checkpoint notes receipts carry, by tree size.
    "CREATE TABLE IF NOT EXISTS ledger_notes (
        size BIGINT PRIMARY KEY,
        note TEXT NOT NULL
    )",
];

/// Creates the cluster's tables when missing.
pub async fn ensure(pool: &PgPool) -> Result<(), ClusterError> {
    let mut tx = pool.begin().await.map_err(db("begin"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db("schema lock"))?;
    for t in TABLES {
        sqlx::query(t)
            .execute(&mut *tx)
            .await
            .map_err(db("create table"))?;
    }
    tx.commit().await.map_err(db("commit schema"))
}
