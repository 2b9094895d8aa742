//! The registry's principals, their roles and grants, and the operating-system users
//! bound to them: the rows access decisions are made from.

use super::{Db, GrantRow, PrincipalRow, grant_row, on_pool, on_tx};
use crate::engine::Tx;
use crate::error::RegistryError;

impl Db {
    /// The principal `os_user` is bound to.
    pub async fn os_user_principal(&self, os_user: &str) -> Result<Option<String>, RegistryError> {
        Ok(
            on_pool!(&self.pool, e => sqlx::query_scalar::<_, String>("SELECT principal FROM os_users WHERE os_user = $1")
                .bind(os_user)
                .fetch_optional(e)
                .await)?,
        )
    }

    /// Binds `os_user` to `principal`, replacing an earlier binding.
    pub async fn bind_os_user(
        tx: &mut Tx,
        os_user: &str,
        principal: &str,
        by: &str,
        at: i64,
    ) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query("DELETE FROM os_users WHERE os_user = $1")
            .bind(os_user)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        on_tx!(tx, e => sqlx::query(
            "INSERT INTO os_users (os_user, principal, created_at, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(os_user)
        .bind(principal)
        .bind(at)
        .bind(by)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, RegistryError> {
        Ok(
            on_pool!(&self.pool, e => sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(e)
                .await)?,
        )
    }

    pub async fn set_meta(tx: &mut Tx, key: &str, value: &str) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(key)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        on_tx!(tx, e => sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ---------------------------------------------------------------- principals

    pub async fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, RegistryError> {
        let g = self.generation().await?;
        if let Some(v) = self.cache.principals.get(&name.to_owned(), g) {
            return Ok(v);
        }
        let v = self.principal_uncached(name).await?;
        self.cache
            .principals
            .put(&self.cache.generation, g, name.to_owned(), v.clone());
        Ok(v)
    }

    async fn principal_uncached(&self, name: &str) -> Result<Option<PrincipalRow>, RegistryError> {
        let row = on_pool!(&self.pool, e => sqlx::query_as::<_, (String, bool, bool, Option<String>, Option<String>, i64)>(
            "SELECT name, service, active, signing_alg, signing_key, created_at FROM principals WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(e)
        .await)?;
        let Some(r) = row else { return Ok(None) };
        let roles = on_pool!(&self.pool, e => sqlx::query_scalar::<_, String>(
            "SELECT role FROM principal_roles WHERE principal = $1 ORDER BY role",
        )
        .bind(name)
        .fetch_all(e)
        .await)?;
        Ok(Some(PrincipalRow {
            name: r.0,
            service: r.1,
            active: r.2,
            signing_alg: r.3,
            signing_key: r.4,
            roles,
            created_at: r.5,
        }))
    }

    pub async fn principals(&self) -> Result<Vec<PrincipalRow>, RegistryError> {
        let names = on_pool!(&self.pool, e => sqlx::query_scalar::<_, String>("SELECT name FROM principals ORDER BY name")
            .fetch_all(e)
            .await)?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(p) = self.principal(&n).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub async fn insert_principal(
        tx: &mut Tx,
        p: &PrincipalRow,
        created_by: &str,
    ) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query(
            "INSERT INTO principals (name, service, active, signing_alg, signing_key, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.name)
        .bind(p.service)
        .bind(p.active)
        .bind(&p.signing_alg)
        .bind(&p.signing_key)
        .bind(p.created_at)
        .bind(created_by)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        for r in &p.roles {
            Self::add_role(tx, &p.name, r).await?;
        }
        Ok(())
    }

    pub async fn add_role(tx: &mut Tx, principal: &str, role: &str) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query("DELETE FROM principal_roles WHERE principal = $1 AND role = $2")
            .bind(principal)
            .bind(role)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        on_tx!(tx, e => sqlx::query("INSERT INTO principal_roles (principal, role) VALUES ($1, $2)")
            .bind(principal)
            .bind(role)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn set_active(
        tx: &mut Tx,
        principal: &str,
        active: bool,
    ) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query("UPDATE principals SET active = $1 WHERE name = $2")
            .bind(active)
            .bind(principal)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ---------------------------------------------------------------- grants

    /// Grants `principal` holds on `model` (including `*` grants), expired ones too.
    pub async fn grants_for(
        &self,
        principal: &str,
        model: &str,
    ) -> Result<Vec<GrantRow>, RegistryError> {
        let key = (principal.to_owned(), model.to_owned());
        let g = self.generation().await?;
        if let Some(v) = self.cache.grants.get(&key, g) {
            return Ok(v);
        }
        let rows = on_pool!(&self.pool, e => sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT principal, model, action, expires_at FROM grants
             WHERE principal = $1 AND (model = $2 OR model = '*') ORDER BY action",
        )
        .bind(principal)
        .bind(model)
        .fetch_all(e)
        .await)?;
        let v: Vec<GrantRow> = rows.into_iter().map(grant_row).collect();
        self.cache
            .grants
            .put(&self.cache.generation, g, key, v.clone());
        Ok(v)
    }

    /// Every grant with who gave it and when (seconds), by principal, model and action.
    pub async fn grants_given(&self) -> Result<Vec<(GrantRow, String, i64)>, RegistryError> {
        let rows = on_pool!(&self.pool, e => sqlx::query_as::<_, (String, String, String, i64, String, i64)>(
            "SELECT principal, model, action, expires_at, created_by, created_at FROM grants
             ORDER BY principal, model, action",
        )
        .fetch_all(e)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(p, m, a, x, by, at)| (grant_row((p, m, a, x)), by, at))
            .collect())
    }

    pub async fn grants_of(&self, principal: &str) -> Result<Vec<GrantRow>, RegistryError> {
        let rows = on_pool!(&self.pool, e => sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT principal, model, action, expires_at FROM grants WHERE principal = $1 ORDER BY model, action",
        )
        .bind(principal)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(grant_row).collect())
    }

    pub async fn put_grant(
        tx: &mut Tx,
        g: &GrantRow,
        by: &str,
        now: i64,
    ) -> Result<(), RegistryError> {
        on_tx!(tx, e => sqlx::query("DELETE FROM grants WHERE principal = $1 AND model = $2 AND action = $3")
            .bind(&g.principal)
            .bind(&g.model)
            .bind(&g.action)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        on_tx!(tx, e => sqlx::query(
            "INSERT INTO grants (principal, model, action, expires_at, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&g.principal)
        .bind(&g.model)
        .bind(&g.action)
        .bind(g.expires_at)
        .bind(by)
        .bind(now)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
