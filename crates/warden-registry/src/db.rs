//! Registry metadata in SQL through `sqlx`: SQLite (a file in the data directory, the
//! default) or PostgreSQL (`postgres://…`, shared by several nodes).
//!
//! Queries are written once for both: `$n` placeholders used once each and in order,
//! standard types (`TEXT`, `BIGINT`, `BOOLEAN`), `ON CONFLICT` rather than
//! `INSERT OR …`. Each runs through [`on_pool!`] or [`on_tx!`], which expand it for the
//! engine at hand (sqlx's `Any` driver cannot carry SQLite's `BOOLEAN`).

use crate::cache::{Cached, Generation};
pub use crate::engine::{Database, FRESH, Tx};
use crate::engine::{Pool, Watch, WatchConn, WatchOpts, data_version};
pub(crate) use crate::engine::{on_pool, on_tx};
use crate::error::RegistryError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

mod deployments;
mod principals;

pub use deployments::DeploymentRow;

pub(crate) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS principals (
        name TEXT PRIMARY KEY, service BOOLEAN NOT NULL, active BOOLEAN NOT NULL,
        signing_alg TEXT, signing_key TEXT, created_at BIGINT NOT NULL, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS principal_roles (
        principal TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (principal, role))",
    "CREATE TABLE IF NOT EXISTS grants (
        principal TEXT NOT NULL, model TEXT NOT NULL, action TEXT NOT NULL,
        expires_at BIGINT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL,
        PRIMARY KEY (principal, model, action))",
    "CREATE TABLE IF NOT EXISTS models (
        name TEXT PRIMARY KEY, created_at BIGINT NOT NULL, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,
        registrant TEXT NOT NULL, root_digest TEXT NOT NULL, manifest TEXT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
        validated_by TEXT, validation TEXT, approved_by TEXT, revoked_reason TEXT,
        PRIMARY KEY (model, version))",
    "CREATE TABLE IF NOT EXISTS files (
        model TEXT NOT NULL, version TEXT NOT NULL, name TEXT NOT NULL,
        digest TEXT NOT NULL, size BIGINT NOT NULL, PRIMARY KEY (model, version, name))",
    "CREATE TABLE IF NOT EXISTS aliases (
        model TEXT NOT NULL, alias TEXT NOT NULL, version TEXT NOT NULL,
        PRIMARY KEY (model, alias))",
    // A version bound to the inference endpoints that serve it (the gateway).
    "CREATE TABLE IF NOT EXISTS deployments (
        name TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT NOT NULL,
        upstreams TEXT NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tokens (
        id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, principal TEXT NOT NULL,
        scopes TEXT NOT NULL, expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL, revoked BOOLEAN NOT NULL, last_used BIGINT)",
    // Operating-system users bound to principals (the local writer's identities).
    "CREATE TABLE IF NOT EXISTS os_users (
        os_user TEXT PRIMARY KEY, principal TEXT NOT NULL, created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL)",
    // Alerts awaiting their outcome (the outbox).
    "CREATE TABLE IF NOT EXISTS alert_outbox (
        incident BIGINT NOT NULL, sink TEXT NOT NULL, body BLOB NOT NULL,
        created_at BIGINT NOT NULL, PRIMARY KEY (incident, sink))",
    // Bumped by every commit on PostgreSQL, where nodes watch it to drop their caches.
    "CREATE TABLE IF NOT EXISTS registry_generation (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    "INSERT INTO registry_generation (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
];

/// A token as listed (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub scopes: Vec<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub created_by: String,
    pub revoked: bool,
    pub last_used: Option<i64>,
}

/// Creates `dir` (and parents) with mode 0700 where it does not exist yet.
pub(crate) fn private_dir(dir: &Path) -> Result<(), RegistryError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(RegistryError::io("create", dir))
}

/// A principal as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalRow {
    pub name: String,
    pub service: bool,
    pub active: bool,
    pub signing_alg: Option<String>,
    /// Base64 of the ML-DSA public key.
    pub signing_key: Option<String>,
    pub roles: Vec<String>,
    pub created_at: i64,
}

/// A grant as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub principal: String,
    pub model: String,
    pub action: String,
    pub expires_at: i64,
}

/// A model version as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRow {
    pub model: String,
    pub version: String,
    pub state: String,
    pub registrant: String,
    pub root_digest: String,
    pub manifest: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub validated_by: Option<String>,
    pub validation: Option<String>,
    pub approved_by: Option<String>,
    pub revoked_reason: Option<String>,
}

/// One file of a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    pub name: String,
    pub digest: String,
    pub size: i64,
}

fn grant_row(r: (String, String, String, i64)) -> GrantRow {
    GrantRow {
        principal: r.0,
        model: r.1,
        action: r.2,
        expires_at: r.3,
    }
}

type VersionTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const VERSION_COLS: &str = "model, version, state, registrant, root_digest, manifest, created_at, updated_at, validated_by, validation, approved_by, revoked_reason";

fn version_row(t: VersionTuple) -> VersionRow {
    VersionRow {
        model: t.0,
        version: t.1,
        state: t.2,
        registrant: t.3,
        root_digest: t.4,
        manifest: t.5,
        created_at: t.6,
        updated_at: t.7,
        validated_by: t.8,
        validation: t.9,
        approved_by: t.10,
        revoked_reason: t.11,
    }
}

impl Database {
    /// Opens it (creating the tables if needed).
    pub async fn open(&self) -> Result<Db, RegistryError> {
        match self {
            Self::Sqlite(p) => Db::open(p).await,
            Self::Postgres(u) => Db::connect(u).await,
        }
    }
}

/// The metadata database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    cache: std::sync::Arc<ReadCache>,
    watch: std::sync::Arc<tokio::sync::Mutex<Watch>>,
}

/// What the hot path reads, cached (see `cache.rs`).
#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    pub(crate) generation: Generation,
    principals: Cached<String, Option<PrincipalRow>>,
    grants: Cached<(String, String), Vec<GrantRow>>,
    versions: Cached<(String, String), Option<VersionRow>>,
    aliases: Cached<(String, String), Option<String>>,
    deployments: Cached<String, Option<DeploymentRow>>,
    /// Tokens by hash; only found ones (unknown tokens are not cached).
    pub(crate) tokens: Cached<String, TokenInfo>,
}

impl Db {
    /// Opens (creating if needed) the SQLite database at `path`: WAL journal, full
    /// synchronous commits, foreign-key checks on.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        // Created 0600 before SQLite opens it; its -wal and -shm files take the same mode.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(RegistryError::io("create", path))?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await?;
        Self::start(Pool::Sqlite(pool), WatchOpts::Sqlite(opts)).await
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`;
    /// the password from the URL or `PGPASSWORD`), creating the tables if needed.
    pub async fn connect(url: &str) -> Result<Self, RegistryError> {
        let opts: PgConnectOptions = url
            .parse()
            .map_err(|e| RegistryError::invalid("database URL", format!("{e}")))?;
        // A URL that asks for TLS gets TLS 1.3 on every connection, or none.
        let tls = warden_store::pgurl::wants_tls(url);
        let watch = WatchOpts::Postgres(opts.clone(), tls);
        if tls {
            // One connection first, for a clear error: the pool would retry a refused
            // one until it timed out and say only that.
            drop(watch.connect().await?);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if tls {
                        crate::engine::require_tls13(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts.clone())
            .await?;
        Self::start(Pool::Postgres(pool), watch).await
    }

    /// Creates the tables and starts watching for other processes' commits.
    async fn start(pool: Pool, opts: WatchOpts) -> Result<Self, RegistryError> {
        let mut conn = opts.connect().await?;
        for stmt in SCHEMA {
            match &pool {
                Pool::Sqlite(p) => {
                    sqlx::query(stmt).execute(p).await?;
                }
                Pool::Postgres(p) => {
                    let stmt = stmt.replace(" BLOB ", " BYTEA ");
                    sqlx::query(&stmt).execute(p).await?;
                }
            }
        }
        let seen = data_version(&mut conn).await?;
        Ok(Self {
            pool,
            cache: std::sync::Arc::default(),
            watch: std::sync::Arc::new(tokio::sync::Mutex::new(Watch {
                conn: Some(conn),
                opts,
                seen,
                looked_at: None,
            })),
        })
    }

    /// The cache generation to read at, after dropping everything cached when another
    /// process has committed since the last look. Every cached read starts here. A look
    /// that began after this call, or less than [`FRESH`] before it, answers for it too
    /// (concurrent requests, and the several reads of one request, share one look), so
    /// a change another process committed is seen by every read that starts more than
    /// [`FRESH`] after its commit.
    pub(crate) async fn generation(&self) -> Result<u64, RegistryError> {
        let called = std::time::Instant::now();
        let mut w = self.watch.lock().await;
        let fresh = w
            .looked_at
            .is_some_and(|t| t >= called || called.duration_since(t) < FRESH);
        if !fresh {
            let at = std::time::Instant::now();
            if w.changed().await? {
                self.cache.generation.bump();
            }
            w.looked_at = Some(at);
        }
        Ok(self.cache.generation.current())
    }

    /// The read cache.
    pub(crate) fn cache(&self) -> &ReadCache {
        &self.cache
    }

    /// Drops everything cached, here and (on PostgreSQL) on every node, after a write
    /// outside a transaction.
    pub(crate) async fn invalidate(&self) -> Result<(), RegistryError> {
        self.cache.generation.bump();
        if let Pool::Postgres(p) = &self.pool {
            sqlx::query("UPDATE registry_generation SET n = n + 1 WHERE id = 1")
                .execute(p)
                .await?;
        }
        self.cache.generation.bump();
        Ok(())
    }

    /// Commits a write transaction, invalidating the cache before and after (and, on
    /// PostgreSQL, every other node's, by bumping the shared generation in it).
    pub async fn commit(&self, tx: Tx) -> Result<(), RegistryError> {
        self.cache.generation.bump();
        let r = match tx {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(mut t) => {
                match sqlx::query("UPDATE registry_generation SET n = n + 1 WHERE id = 1")
                    .execute(&mut *t)
                    .await
                {
                    Ok(_) => t.commit().await,
                    Err(e) => Err(e),
                }
            }
        };
        self.cache.generation.bump();
        Ok(r?)
    }

    /// The connection pool.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the metadata is in PostgreSQL.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self.watch.lock().await.conn.take() {
            Some(WatchConn::Sqlite(c)) => sqlx::Connection::close(c).await.ok(),
            Some(WatchConn::Postgres(c)) => sqlx::Connection::close(c).await.ok(),
            None => None,
        };
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// Starts a transaction; commit it with [`Db::commit`].
    pub async fn begin(&self) -> Result<Tx, RegistryError> {
        self.cache.generation.bump();
        Ok(match &self.pool {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    // ---------------------------------------------------------------- models

    pub async fn model_exists(&self, name: &str) -> Result<bool, RegistryError> {
        Ok(
            on_pool!(&self.pool, e => sqlx::query_scalar::<_, String>("SELECT name FROM models WHERE name = $1")
                .bind(name)
                .fetch_optional(e)
                .await)?
                .is_some(),
        )
    }

    pub async fn models(&self) -> Result<Vec<String>, RegistryError> {
        Ok(
            on_pool!(&self.pool, e => sqlx::query_scalar::<_, String>("SELECT name FROM models ORDER BY name")
                .fetch_all(e)
                .await)?,
        )
    }

    pub async fn ensure_model(
        tx: &mut Tx,
        name: &str,
        by: &str,
        now: i64,
    ) -> Result<(), RegistryError> {
        let exists = on_tx!(tx, e => sqlx::query_scalar::<_, String>("SELECT name FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(e)
            .await)?
            .is_some();
        if !exists {
            on_tx!(tx, e => sqlx::query("INSERT INTO models (name, created_at, created_by) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(now)
                .bind(by)
                .execute(e)
                .await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    pub async fn version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<VersionRow>, RegistryError> {
        let key = (model.to_owned(), version.to_owned());
        let g = self.generation().await?;
        if let Some(v) = self.cache.versions.get(&key, g) {
            return Ok(v);
        }
        let q = format!("SELECT {VERSION_COLS} FROM versions WHERE model = $1 AND version = $2");
        let v = on_pool!(&self.pool, e => sqlx::query_as::<_, VersionTuple>(&q)
            .bind(model)
            .bind(version)
            .fetch_optional(e)
            .await)?
        .map(version_row);
        self.cache
            .versions
            .put(&self.cache.generation, g, key, v.clone());
        Ok(v)
    }

    pub async fn versions(&self, model: &str) -> Result<Vec<VersionRow>, RegistryError> {
        let q = format!(
            "SELECT {VERSION_COLS} FROM versions WHERE model = $1 ORDER BY created_at, version"
        );
        Ok(
            on_pool!(&self.pool, e => sqlx::query_as::<_, VersionTuple>(&q)
            .bind(model)
            .fetch_all(e)
            .await)?
            .into_iter()
            .map(version_row)
            .collect(),
        )
    }

    pub async fn insert_version(
        tx: &mut Tx,
        v: &VersionRow,
        files: &[FileRow],
    ) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query(
            "INSERT INTO versions (model, version, state, registrant, root_digest, manifest, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&v.model)
        .bind(&v.version)
        .bind(&v.state)
        .bind(&v.registrant)
        .bind(&v.root_digest)
        .bind(&v.manifest)
        .bind(v.created_at)
        .bind(v.updated_at)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        for f in files {
            on_tx!(tx, e => sqlx::query(
                "INSERT INTO files (model, version, name, digest, size) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&v.model)
            .bind(&v.version)
            .bind(&f.name)
            .bind(&f.digest)
            .bind(f.size)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Writes the mutable columns of `v` (state and its records).
    pub async fn update_version(tx: &mut Tx, v: &VersionRow) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query(
            "UPDATE versions SET state = $1, updated_at = $2, validated_by = $3, validation = $4,
             approved_by = $5, revoked_reason = $6 WHERE model = $7 AND version = $8",
        )
        .bind(&v.state)
        .bind(v.updated_at)
        .bind(&v.validated_by)
        .bind(&v.validation)
        .bind(&v.approved_by)
        .bind(&v.revoked_reason)
        .bind(&v.model)
        .bind(&v.version)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn files(&self, model: &str, version: &str) -> Result<Vec<FileRow>, RegistryError> {
        let rows = on_pool!(&self.pool, e => sqlx::query_as::<_, (String, String, i64)>(
            "SELECT name, digest, size FROM files WHERE model = $1 AND version = $2 ORDER BY name",
        )
        .bind(model)
        .bind(version)
        .fetch_all(e)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| FileRow {
                name: r.0,
                digest: r.1,
                size: r.2,
            })
            .collect())
    }

    // ---------------------------------------------------------------- aliases

    pub async fn alias(&self, model: &str, alias: &str) -> Result<Option<String>, RegistryError> {
        let key = (model.to_owned(), alias.to_owned());
        let g = self.generation().await?;
        if let Some(v) = self.cache.aliases.get(&key, g) {
            return Ok(v);
        }
        let v = on_pool!(&self.pool, e => sqlx::query_scalar::<_, String>(
            "SELECT version FROM aliases WHERE model = $1 AND alias = $2",
        )
        .bind(model)
        .bind(alias)
        .fetch_optional(e)
        .await)?;
        self.cache
            .aliases
            .put(&self.cache.generation, g, key, v.clone());
        Ok(v)
    }

    pub async fn aliases(&self, model: &str) -> Result<Vec<(String, String)>, RegistryError> {
        Ok(
            on_pool!(&self.pool, e => sqlx::query_as::<_, (String, String)>(
            "SELECT alias, version FROM aliases WHERE model = $1 ORDER BY alias",
        )
        .bind(model)
        .fetch_all(e)
        .await)?,
        )
    }

    pub async fn set_alias(
        tx: &mut Tx,
        model: &str,
        alias: &str,
        version: Option<&str>,
    ) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query("DELETE FROM aliases WHERE model = $1 AND alias = $2")
            .bind(model)
            .bind(alias)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        if let Some(v) = version {
            on_tx!(tx, e => sqlx::query("INSERT INTO aliases (model, alias, version) VALUES ($1, $2, $3)")
                .bind(model)
                .bind(alias)
                .bind(v)
                .execute(e)
                .await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }
}
