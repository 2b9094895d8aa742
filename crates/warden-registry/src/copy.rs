//! Copies the registry's metadata from a SQLite file to PostgreSQL (`warden migrate`):
//! every table, every row, in one transaction on the destination, which must be empty.
//! The list of tables and columns below is checked against the schema by a test, so a
//! table added to the schema cannot be left behind.

use crate::db::Db;
use crate::engine::Pool;
use crate::error::RegistryError;
use sqlx::Row;

/// A column's type in the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Text,
    Int,
    Bool,
    Blob,
}

use Col::{Blob, Bool, Int, Text};

/// Every table that holds the registry's state, with its columns. (`registry_generation`
/// is each database's own change counter, not state.)
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "principals",
        &[
            ("name", Text),
            ("service", Bool),
            ("active", Bool),
            ("signing_alg", Text),
            ("signing_key", Text),
            ("created_at", Int),
            ("created_by", Text),
        ],
    ),
    ("principal_roles", &[("principal", Text), ("role", Text)]),
    (
        "grants",
        &[
            ("principal", Text),
            ("model", Text),
            ("action", Text),
            ("expires_at", Int),
            ("created_by", Text),
            ("created_at", Int),
        ],
    ),
    (
        "models",
        &[("name", Text), ("created_at", Int), ("created_by", Text)],
    ),
    (
        "versions",
        &[
            ("model", Text),
            ("version", Text),
            ("state", Text),
            ("registrant", Text),
            ("root_digest", Text),
            ("manifest", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("validated_by", Text),
            ("validation", Text),
            ("approved_by", Text),
            ("revoked_reason", Text),
        ],
    ),
    (
        "files",
        &[
            ("model", Text),
            ("version", Text),
            ("name", Text),
            ("digest", Text),
            ("size", Int),
        ],
    ),
    (
        "aliases",
        &[("model", Text), ("alias", Text), ("version", Text)],
    ),
    (
        "deployments",
        &[
            ("name", Text),
            ("model", Text),
            ("version", Text),
            ("upstreams", Text),
            ("created_at", Int),
            ("created_by", Text),
        ],
    ),
    ("meta", &[("key", Text), ("value", Text)]),
    (
        "tokens",
        &[
            ("id", Text),
            ("hash", Text),
            ("principal", Text),
            ("scopes", Text),
            ("expires_at", Int),
            ("created_at", Int),
            ("created_by", Text),
            ("revoked", Bool),
            ("last_used", Int),
        ],
    ),
    (
        "os_users",
        &[
            ("os_user", Text),
            ("principal", Text),
            ("created_at", Int),
            ("created_by", Text),
        ],
    ),
    (
        "alert_outbox",
        &[
            ("incident", Int),
            ("sink", Text),
            ("body", Blob),
            ("created_at", Int),
        ],
    ),
];

/// One value read from a row.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Blob(Option<Vec<u8>>),
}

/// Whether `db` holds no registry yet (no principal: `warden init` always adds one).
pub async fn is_empty(db: &Db) -> Result<bool, RegistryError> {
    let n: i64 = match db.pool() {
        Pool::Sqlite(p) => {
            sqlx::query_scalar("SELECT count(*) FROM principals")
                .fetch_one(p)
                .await?
        }
        Pool::Postgres(p) => {
            sqlx::query_scalar("SELECT count(*) FROM principals")
                .fetch_one(p)
                .await?
        }
    };
    Ok(n == 0)
}

/// A row's values, as the schema types its columns.
fn values<R: Row>(row: &R, cols: &[(&str, Col)]) -> Result<Vec<Value>, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut values = Vec::with_capacity(cols.len());
    for (i, (_, col)) in cols.iter().enumerate() {
        values.push(match col {
            Text => Value::Text(row.try_get(i)?),
            Int => Value::Int(row.try_get(i)?),
            Bool => Value::Bool(row.try_get(i)?),
            Blob => Value::Blob(row.try_get(i)?),
        });
    }
    Ok(values)
}

/// Every row of `table`, sorted (the two engines order text differently).
async fn rows(
    db: &Db,
    table: &str,
    cols: &[(&str, Col)],
) -> Result<Vec<Vec<Value>>, RegistryError> {
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let mut out = Vec::new();
    match db.pool() {
        Pool::Sqlite(p) => {
            for r in sqlx::query(&select).fetch_all(p).await? {
                out.push(values(&r, cols)?);
            }
        }
        Pool::Postgres(p) => {
            for r in sqlx::query(&select).fetch_all(p).await? {
                out.push(values(&r, cols)?);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Whether `dst` holds exactly the registry of `src`, row for row in every table: what
/// [`copy`] leaves when it committed (a move interrupted after it is carried on).
pub async fn same(src: &Db, dst: &Db) -> Result<bool, RegistryError> {
    for (table, cols) in TABLES {
        if rows(src, table, cols).await? != rows(dst, table, cols).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies every table of `src` (SQLite) into `dst` (PostgreSQL, with no principals
/// yet). Returns the rows copied per table.
pub async fn copy(src: &Db, dst: &Db) -> Result<Vec<(String, u64)>, RegistryError> {
    let (Pool::Sqlite(from), Pool::Postgres(to)) = (src.pool(), dst.pool()) else {
        return Err(RegistryError::invalid(
            "registry copy",
            "copies from a SQLite registry to a PostgreSQL one",
        ));
    };
    if !is_empty(dst).await? {
        return Err(RegistryError::invalid(
            "registry copy",
            "the destination database already holds a registry (principals exist)",
        ));
    }
    let mut tx = to.begin().await?;
    let mut copied = Vec::new();
    for (table, cols) in TABLES {
        let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
        let select = format!("SELECT {} FROM {table}", names.join(", "));
        let rows = sqlx::query(&select).fetch_all(from).await?;
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            marks.join(", ")
        );
        for row in &rows {
            let mut q = sqlx::query(&insert);
            for v in values(row, cols)? {
                q = match v {
                    Value::Text(x) => q.bind(x),
                    Value::Int(x) => q.bind(x),
                    Value::Bool(x) => q.bind(x),
                    Value::Blob(x) => q.bind(x),
                };
            }
            q.execute(&mut *tx).await?;
        }
        copied.push(((*table).to_owned(), rows.len() as u64));
    }
    // Nodes watching the destination drop whatever they cached.
    sqlx::query("UPDATE registry_generation SET n = n + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table name and column names of each `CREATE TABLE` in the schema.
    fn schema_tables() -> Vec<(String, Vec<String>)> {
        crate::db::SCHEMA
            .iter()
            .filter_map(|s| {
                let rest = s.trim().strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
                let (name, body) = rest.split_once('(')?;
                let body = body.trim().strip_suffix(')')?;
                let body = body.split("PRIMARY KEY (").next()?;
                let cols = body
                    .split(',')
                    .filter_map(|c| c.split_whitespace().next())
                    .filter(|w| {
                        !w.eq_ignore_ascii_case("PRIMARY")
                            && w.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
                    .map(str::to_owned)
                    .collect();
                Some((name.trim().to_owned(), cols))
            })
            .collect()
    }

    #[test]
    fn every_table_of_the_schema_is_copied_with_every_column() {
        let schema = schema_tables();
        assert!(schema.len() >= 12, "{schema:?}");
        for (table, cols) in schema {
            if table == "registry_generation" {
                continue;
            }
            let copied = TABLES
                .iter()
                .find(|(t, _)| *t == table)
                .unwrap_or_else(|| panic!("table {table} is not copied by warden migrate"));
            let names: Vec<String> = copied.1.iter().map(|(n, _)| (*n).to_owned()).collect();
            assert_eq!(names, cols, "columns of {table}");
        }
    }
}
