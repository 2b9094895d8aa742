//! Deployments: a validated or production version bound to the OpenAI-compatible
//! inference endpoints that serve it. Creating and removing one is a `deploy` decision
//! on the version and a ledger entry; the gateway looks its deployment up on every
//! request and asks the policy for `generate` on the version, so undeploying, revoking
//! or retiring the version stops its traffic at the next request.

use crate::db::{Db, DeploymentRow, VersionRow};
use crate::error::RegistryError;
use crate::manager::{Caller, SecureModelManager, Selector};
use crate::names::check_name;
use serde_json::json;
use warden_core::entry::Event;
use warden_policy::{Action, Decision, ResourceFacts};
use warden_store::ledger::Receipt;

/// Most upstreams one deployment names.
pub const MAX_UPSTREAMS: usize = 8;

/// A deployment as the gateway serves it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Deployed {
    /// The name clients ask for.
    pub name: String,
    pub model: String,
    pub version: String,
    /// `sha256:<hex>`, the version's signed root digest.
    pub digest: String,
    /// Upstream base URLs (ending before `/v1/...`), tried in order.
    pub upstreams: Vec<String>,
    /// Why the policy allowed the request it was looked up for (empty otherwise).
    #[serde(skip)]
    pub reason: String,
}

/// Checks an upstream base URL: `http` on loopback only, `https` anywhere; no
/// credentials, query or fragment. Returns it without a trailing `/`.
pub fn check_upstream(u: &str) -> Result<String, RegistryError> {
    let bad = |why: &str| RegistryError::invalid("upstream", format!("{u:?}: {why}"));
    let url = url::Url::parse(u).map_err(|e| bad(&e.to_string()))?;
    let host = url.host().ok_or_else(|| bad("no host"))?;
    let loopback = match host {
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(bad("plain HTTP is for loopback only; use https://")),
        _ => return Err(bad("use http:// (loopback) or https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl SecureModelManager {
    /// Deploys `model@selector` (validated or production) under `name` (default: the
    /// model's name), served by `upstreams`; replaces a deployment of that name. A
    /// `deploy` decision on the version; one `deployment.create` entry.
    pub async fn deploy(
        &self,
        caller: &Caller,
        name: Option<&str>,
        model: &str,
        selector: &Selector,
        upstreams: &[String],
    ) -> Result<(Deployed, Receipt), RegistryError> {
        let name = name.unwrap_or(model);
        check_name("deployment name", name)?;
        if upstreams.is_empty() || upstreams.len() > MAX_UPSTREAMS {
            return Err(RegistryError::invalid(
                "upstreams",
                format!("name 1 to {MAX_UPSTREAMS} upstreams"),
            ));
        }
        let upstreams = upstreams
            .iter()
            .map(|u| check_upstream(u))
            .collect::<Result<Vec<_>, _>>()?;
        let v = self
            .resolve(caller, Action::Deploy, model, selector)
            .await?;
        let d = self
            .authorize(caller, Action::Deploy, &Self::version_facts(&v), None)
            .await?;
        if !matches!(v.state.as_str(), "validated" | "production") {
            return Err(RegistryError::Transition {
                model: v.model.clone(),
                version: v.version.clone(),
                from: v.state.clone(),
                to: "deployed".into(),
                hint: Some("only validated or production versions serve inference"),
            });
        }
        let row = DeploymentRow {
            name: name.to_owned(),
            model: v.model.clone(),
            version: v.version.clone(),
            upstreams: upstreams.clone(),
            created_at: self.now_secs(),
            created_by: caller.principal.clone(),
        };
        let mut tx = self.db.begin().await?;
        Db::put_deployment(&mut tx, &row).await?;
        let mut ev = Self::version_event(caller, Action::Deploy, &v, "allow", d.reason());
        ev.details = Some(json!({"deployment": name, "upstreams": upstreams}));
        let r = self.audit("deployment.create", &ev).await?;
        self.db.commit(tx).await?;
        Ok((
            Deployed {
                name: name.to_owned(),
                model: v.model.clone(),
                version: v.version.clone(),
                digest: format!("sha256:{}", v.root_digest),
                upstreams,
                reason: String::new(),
            },
            r,
        ))
    }

    /// Removes the deployment `name`: a `deploy` decision on its version; one
    /// `deployment.remove` entry. Its traffic stops at the next request.
    pub async fn undeploy(&self, caller: &Caller, name: &str) -> Result<Receipt, RegistryError> {
        let (_, v, d) = self
            .decide_on_deployment(caller, Action::Deploy, name)
            .await?;
        let mut tx = self.db.begin().await?;
        Db::delete_deployment(&mut tx, name).await?;
        let mut ev = Self::version_event(caller, Action::Deploy, &v, "allow", d.reason());
        ev.details = Some(json!({"deployment": name, "op": "remove"}));
        let r = self.audit("deployment.remove", &ev).await?;
        self.db.commit(tx).await?;
        Ok(r)
    }

    /// The deployments of the models the caller may read (one `registry.list` entry).
    pub async fn deployments(&self, caller: &Caller) -> Result<Vec<Deployed>, RegistryError> {
        let mut out = Vec::new();
        for row in self.db.deployments().await? {
            let facts = ResourceFacts::Model {
                name: row.model.clone(),
            };
            if !self
                .decide(caller, Action::Read, &facts, None)
                .await?
                .allowed
            {
                continue;
            }
            let digest = self
                .db
                .version(&row.model, &row.version)
                .await?
                .map(|v| format!("sha256:{}", v.root_digest))
                .unwrap_or_default();
            out.push(Deployed {
                name: row.name,
                model: row.model,
                version: row.version,
                digest,
                upstreams: row.upstreams,
                reason: String::new(),
            });
        }
        let mut ev = Self::event(caller, Action::Read);
        ev.decision = Some("allow".into());
        ev.details = Some(json!({"op": "deployments", "shown": out.len()}));
        self.audit("registry.list", &ev).await?;
        Ok(out)
    }

    /// Every upstream of every deployment, once each: what the gateway's health probes
    /// ask (the server's own work, not an access by anyone, so nothing is recorded).
    pub async fn deployed_upstreams(&self) -> Result<Vec<String>, RegistryError> {
        let mut out: Vec<String> = self
            .db
            .deployments()
            .await?
            .into_iter()
            .flat_map(|d| d.upstreams)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The deployment `name` for one inference request by `caller`: the policy's
    /// `generate` on its version (a refusal is a `model.denied` entry and
    /// [`RegistryError::Denied`]). Nothing is recorded on success: the request's own
    /// entry follows once it is answered.
    pub async fn deployed_for_generate(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Deployed, RegistryError> {
        // An allow is acted on by the caller (the gateway forwards the request); a deny
        // has been recorded and comes back as the error.
        let (row, v, allowed) = self
            .decide_on_deployment(caller, Action::Generate, name)
            .await?;
        Ok(Deployed {
            name: row.name,
            model: v.model.clone(),
            version: v.version.clone(),
            digest: format!("sha256:{}", v.root_digest),
            upstreams: row.upstreams,
            reason: allowed.reason(),
        })
    }

    /// Records an answered (or refused) inference request as a `kind` entry: who, from
    /// where, which deployed version, and `details` (status, tokens, latency, hashes).
    pub async fn record_inference(
        &self,
        caller: &Caller,
        kind: &'static str,
        deployed: Option<&Deployed>,
        decision: &str,
        reason: &str,
        details: serde_json::Value,
    ) -> Result<Receipt, RegistryError> {
        let ev = Self::inference_event(caller, deployed, decision, reason, details);
        self.audit(kind, &ev).await
    }

    /// [`record_inference`](Self::record_inference), queued: the entry takes its place
    /// in the ledger now, and the returned future resolves once it is durable.
    pub fn record_inference_queued(
        &self,
        caller: &Caller,
        deployed: &Deployed,
        reason: &str,
        details: serde_json::Value,
    ) -> Result<
        impl std::future::Future<Output = Result<Receipt, RegistryError>> + Send + 'static,
        RegistryError,
    > {
        self.audit_queued(
            "inference.request",
            Self::inference_event(caller, Some(deployed), "allow", reason, details),
        )
    }

    fn inference_event(
        caller: &Caller,
        deployed: Option<&Deployed>,
        decision: &str,
        reason: &str,
        details: serde_json::Value,
    ) -> Event {
        let mut ev: Event = Self::event(caller, Action::Generate);
        if let Some(d) = deployed {
            ev.model = Some(d.model.clone());
            ev.version = Some(d.version.clone());
            ev.digest = Some(d.digest.clone());
        }
        ev.decision = Some(decision.to_owned());
        ev.reason = Some(reason.to_owned());
        ev.details = Some(details);
        ev
    }

    /// The deployment `name`, its version, and the policy's allow of `action` on that
    /// version (an unknown deployment or version, and a deny, are recorded and returned
    /// as errors).
    async fn decide_on_deployment(
        &self,
        caller: &Caller,
        action: Action,
        name: &str,
    ) -> Result<(DeploymentRow, VersionRow, Decision), RegistryError> {
        let row = self.deployment_row(caller, action, name).await?;
        let v = self
            .resolve(
                caller,
                action,
                &row.model,
                &Selector::Version(row.version.clone()),
            )
            .await?;
        let d = self
            .authorize(caller, action, &Self::version_facts(&v), None)
            .await?;
        Ok((row, v, d))
    }

    /// The deployment row `name`; an unknown one is recorded as a denied request
    /// (reason `not-found`), as an unknown model is.
    async fn deployment_row(
        &self,
        caller: &Caller,
        action: Action,
        name: &str,
    ) -> Result<DeploymentRow, RegistryError> {
        if let Some(row) = self.db.deployment(name).await? {
            return Ok(row);
        }
        let mut ev = Self::event(caller, action);
        ev.model = Some(name.chars().take(128).collect());
        ev.decision = Some("deny".into());
        ev.reason = Some("not-found".into());
        ev.details = Some(json!({"deployment": "unknown"}));
        self.audit("model.denied", &ev).await?;
        Err(RegistryError::UnknownModel {
            model: name.chars().take(128).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_https_off_loopback_and_carry_no_secrets() {
        assert_eq!(
            check_upstream("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_upstream("http://localhost:1/v1").is_ok());
        assert!(check_upstream("http://[::1]:9").is_ok());
        assert!(check_upstream("https://llm.internal:443").is_ok());
        for bad in [
            "http://10.0.0.5:8000",
            "ftp://127.0.0.1",
            "https://user:pw@llm.internal",
            "https://llm.internal/?key=1",
            "not a url",
        ] {
            assert!(check_upstream(bad).is_err(), "{bad} accepted");
        }
    }
}
