//! What an auditor reviews: the model inventory and the access directory (principals,
//! roles, grants, tokens). Both are read under the audit action (the read is an
//! `audit.read` entry naming what was read), not under each model's or the directory's
//! read permission: reviewing who may do what is the auditor's job, and an auditor's
//! token carries `audit:read` only. A reviewer's sign-off of an access review is an
//! entry of its own (`access.review`).

use crate::db::{GrantRow, PrincipalRow, TokenInfo};
use crate::error::RegistryError;
use crate::manager::{Caller, SecureModelManager, VersionInfo};
use warden_store::ledger::Receipt;

/// A grant with who gave it and when (seconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GivenGrant {
    pub grant: GrantRow,
    pub created_by: String,
    pub created_at: i64,
}

/// The access directory as a reviewer sees it.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    pub principals: Vec<PrincipalRow>,
    pub grants: Vec<GivenGrant>,
    pub tokens: Vec<TokenInfo>,
}

impl SecureModelManager {
    /// Every version of every model, for an auditor; `what` is recorded in the
    /// `audit.read` entry.
    pub async fn inventory(
        &self,
        caller: &Caller,
        what: serde_json::Value,
    ) -> Result<Vec<VersionInfo>, RegistryError> {
        self.audit_read(caller, what).await?;
        let mut out = Vec::new();
        for m in self.db.models().await? {
            for v in self.db.versions(&m).await? {
                out.push(self.info(&v).await?);
            }
        }
        Ok(out)
    }

    /// Every principal, grant and token (never a token's secret), for an auditor.
    pub async fn directory(
        &self,
        caller: &Caller,
        what: serde_json::Value,
    ) -> Result<Directory, RegistryError> {
        self.audit_read(caller, what).await?;
        let grants = self
            .db
            .grants_given()
            .await?
            .into_iter()
            .map(|(grant, created_by, created_at)| GivenGrant {
                grant,
                created_by,
                created_at,
            })
            .collect();
        Ok(Directory {
            principals: self.db.principals().await?,
            grants,
            tokens: self.token_rows(None).await?,
        })
    }

    /// Records `caller`'s sign-off of an access review (`details`: what was reviewed,
    /// the note, the digest of the export signed off). Needs the audit action.
    pub async fn sign_off_review(
        &self,
        caller: &Caller,
        details: serde_json::Value,
    ) -> Result<Receipt, RegistryError> {
        self.auditor_entry(caller, "access.review", details).await
    }
}
