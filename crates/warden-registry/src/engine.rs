//! The engines that can hold the registry's metadata (a SQLite file, PostgreSQL), how a
//! query is run on whichever is at hand, and how a process notices other processes'
//! commits. The queries themselves are in `db.rs`.

use crate::error::RegistryError;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Sqlite, SqlitePool, Transaction};

/// Runs a query expression with `$e` bound to the pool of the engine at hand.
macro_rules! on_pool {
    ($pool:expr, $e:ident => $body:expr) => {
        match $pool {
            $crate::engine::Pool::Sqlite($e) => $body,
            $crate::engine::Pool::Postgres($e) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Runs a query expression with `$e` bound to the connection of a transaction.
macro_rules! on_tx {
    ($tx:expr, $e:ident => $body:expr) => {
        match $tx {
            $crate::engine::Tx::Sqlite(t) => {
                let $e = &mut **t;
                $body
            }
            $crate::engine::Tx::Postgres(t) => {
                let $e = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

/// Where the registry's metadata lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (the embedded default).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database URL (`postgres://user@host:port/db`), shared by nodes.
    Postgres(String),
}

impl std::fmt::Debug for Database {
    /// A URL's password is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            Self::Postgres(u) => {
                let shown = match (u.find("://"), u.rfind('@')) {
                    (Some(s), Some(at)) if at > s => {
                        let cred = u.get(s + 3..at).unwrap_or_default();
                        match cred.split_once(':') {
                            Some((user, _)) => format!(
                                "{}{user}:***{}",
                                u.get(..s + 3).unwrap_or_default(),
                                u.get(at..).unwrap_or_default()
                            ),
                            None => u.clone(),
                        }
                    }
                    _ => u.clone(),
                };
                write!(f, "Postgres({shown})")
            }
        }
    }
}

/// The connection pool of the engine holding the metadata.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction; commit it with [`crate::db::Db::commit`].
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A connection of its own that notices commits by other processes (a `warden` command
/// revoking a version or a token while `warden serve` runs, another node): SQLite's
/// `data_version` changes on a connection whenever another connection has committed;
/// on PostgreSQL every commit bumps `registry_generation`.
///
/// A connection that fails (the database restarted, the network dropped) is dropped and
/// made again at the next look; until then every cached read fails (closed), and after
/// it everything cached is dropped, since anything may have changed meanwhile.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) conn: Option<WatchConn>,
    pub(crate) opts: WatchOpts,
    pub(crate) seen: i64,
    /// When the last look began.
    pub(crate) looked_at: Option<std::time::Instant>,
}

/// How the watch connection is made (again).
#[derive(Debug)]
pub(crate) enum WatchOpts {
    Sqlite(sqlx::sqlite::SqliteConnectOptions),
    /// The options, and whether the connection must be TLS 1.3.
    Postgres(sqlx::postgres::PgConnectOptions, bool),
}

impl WatchOpts {
    pub(crate) async fn connect(&self) -> Result<WatchConn, RegistryError> {
        Ok(match self {
            Self::Sqlite(o) => WatchConn::Sqlite(sqlx::ConnectOptions::connect(o).await?),
            Self::Postgres(o, tls) => {
                let mut c = sqlx::ConnectOptions::connect(o).await?;
                if *tls {
                    require_tls13(&mut c).await?;
                }
                WatchConn::Postgres(c)
            }
        })
    }
}

/// Fails unless the server says `conn` negotiated TLS 1.3 (`warden_store::pgurl`).
pub(crate) async fn require_tls13(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let (ssl, version): (Option<bool>, Option<String>) =
        sqlx::query_as(warden_store::pgurl::TLS_QUERY)
            .fetch_optional(conn)
            .await?
            .unwrap_or((None, None));
    warden_store::pgurl::check_tls(ssl, version.as_deref()).map_err(|e| sqlx::Error::Tls(e.into()))
}

impl Watch {
    /// Looks at the commit counter: `true` when another process committed since the
    /// last look (or the connection was remade, which loses track).
    pub(crate) async fn changed(&mut self) -> Result<bool, RegistryError> {
        let mut remade = false;
        if self.conn.is_none() {
            self.conn = Some(self.opts.connect().await?);
            remade = true;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(true);
        };
        match data_version(conn).await {
            Ok(v) => {
                let changed = remade || v != self.seen;
                self.seen = v;
                Ok(changed)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// How long one look at `data_version` answers for later reads.
pub const FRESH: std::time::Duration = std::time::Duration::from_millis(1);

#[derive(Debug)]
pub(crate) enum WatchConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

pub(crate) async fn data_version(conn: &mut WatchConn) -> Result<i64, RegistryError> {
    Ok(match conn {
        WatchConn::Sqlite(c) => {
            sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                .fetch_one(c)
                .await?
        }
        WatchConn::Postgres(c) => {
            sqlx::query_scalar::<_, i64>("SELECT n FROM registry_generation WHERE id = 1")
                .fetch_one(c)
                .await?
        }
    })
}
