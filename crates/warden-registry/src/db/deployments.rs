//! Deployments: a model version bound to the inference endpoints that serve it, under
//! the name clients send as `model` to the gateway.

use super::{Db, on_pool, on_tx};
use crate::engine::Tx;
use crate::error::RegistryError;

/// A deployment as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeploymentRow {
    /// The name clients ask for (the `model` field of an inference request).
    pub name: String,
    pub model: String,
    pub version: String,
    /// Upstream base URLs, in the order they are tried.
    pub upstreams: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
}

type DeploymentTuple = (String, String, String, String, i64, String);

fn deployment_row(t: DeploymentTuple) -> Result<DeploymentRow, RegistryError> {
    let upstreams: Vec<String> = serde_json::from_str(&t.3).map_err(|e| {
        RegistryError::invalid("stored deployment", format!("{}: upstreams: {e}", t.0))
    })?;
    Ok(DeploymentRow {
        name: t.0,
        model: t.1,
        version: t.2,
        upstreams,
        created_at: t.4,
        created_by: t.5,
    })
}

const COLS: &str = "name, model, version, upstreams, created_at, created_by";

impl Db {
    /// The deployment called `name` (cached; see `cache.rs`).
    pub async fn deployment(&self, name: &str) -> Result<Option<DeploymentRow>, RegistryError> {
        let g = self.generation().await?;
        let key = name.to_owned();
        if let Some(d) = self.cache.deployments.get(&key, g) {
            return Ok(d);
        }
        let q = format!("SELECT {COLS} FROM deployments WHERE name = $1");
        let d = on_pool!(&self.pool, e => sqlx::query_as::<_, DeploymentTuple>(&q)
            .bind(name)
            .fetch_optional(e)
            .await)?
        .map(deployment_row)
        .transpose()?;
        self.cache
            .deployments
            .put(&self.cache.generation, g, key, d.clone());
        Ok(d)
    }

    /// Every deployment, by name.
    pub async fn deployments(&self) -> Result<Vec<DeploymentRow>, RegistryError> {
        let q = format!("SELECT {COLS} FROM deployments ORDER BY name");
        on_pool!(&self.pool, e => sqlx::query_as::<_, DeploymentTuple>(&q)
            .fetch_all(e)
            .await)?
        .into_iter()
        .map(deployment_row)
        .collect()
    }

    /// Creates or replaces the deployment `d.name`.
    pub async fn put_deployment(tx: &mut Tx, d: &DeploymentRow) -> Result<(), RegistryError> {
        let upstreams = serde_json::to_string(&d.upstreams)
            .map_err(|e| RegistryError::invalid("upstreams", e.to_string()))?;
        Self::delete_deployment(tx, &d.name).await?;
        on_tx!(tx, e => sqlx::query(
            "INSERT INTO deployments (name, model, version, upstreams, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.name)
        .bind(&d.model)
        .bind(&d.version)
        .bind(upstreams)
        .bind(d.created_at)
        .bind(&d.created_by)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Removes the deployment `name`; whether there was one.
    pub async fn delete_deployment(tx: &mut Tx, name: &str) -> Result<bool, RegistryError> {
        let n = on_tx!(tx, e => sqlx::query("DELETE FROM deployments WHERE name = $1")
            .bind(name)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
