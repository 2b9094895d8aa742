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
    // Batches of entries waiting for the sequencer, one row per batch a node added
    // (the entries encoded together, see `queue::encode`). Once written, the entries
    // are cleared and the row carries each entry's index and checkpoint size, or the
    // reason it was refused.
    "CREATE TABLE IF NOT EXISTS ledger_batches (
        id BIGSERIAL PRIMARY KEY,
        entries BYTEA,
        n INTEGER NOT NULL,
        done BOOLEAN NOT NULL DEFAULT false,
        idx BIGINT[],
        sizes BIGINT[],
        refused TEXT[],
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    "CREATE INDEX IF NOT EXISTS ledger_batches_open ON ledger_batches (id) WHERE NOT done",
    // Stored out of line without compression: sealed entries are hex ciphertext that
    // PostgreSQL's default compression spends CPU on for little gain, and a batch is
    // read once.
    "ALTER TABLE ledger_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
    "ALTER TABLE ledger_batches ALTER COLUMN entries SET STORAGE EXTERNAL",
    // SIEM export cursors (see `cursors`), by sink.
    "CREATE TABLE IF NOT EXISTS export_cursors (
        sink TEXT PRIMARY KEY,
        next BIGINT NOT NULL,
        cursor BYTEA NOT NULL
    )",
    // Rate-limit budgets shared by the nodes (see `budgets`). Unlogged: after a crash
    // of the database every budget starts full.
    "CREATE UNLOGGED TABLE IF NOT EXISTS rate_budgets (
        key TEXT PRIMARY KEY,
        tat DOUBLE PRECISION NOT NULL,
        granted INTEGER NOT NULL
    )",
    // The signed checkpoint notes receipts carry, by tree size, kept as long as the
    // batches whose receipts name them (see `queue::prune`).
    "CREATE TABLE IF NOT EXISTS ledger_notes (
        size BIGINT PRIMARY KEY,
        note TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    "ALTER TABLE ledger_notes ADD COLUMN IF NOT EXISTS
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()",
    "CREATE INDEX IF NOT EXISTS ledger_notes_created ON ledger_notes (created_at)",
    // The detectors' learnt state, sealed, saved by the sequencer (see `baselines`).
    "CREATE TABLE IF NOT EXISTS detector_state (
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        token BIGINT NOT NULL,
        sealed BYTEA NOT NULL,
        saved_at TIMESTAMPTZ NOT NULL
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
