//! Opening the model manager for a command, the caller flags, and the exit codes of the
//! load path.

use crate::common::DataDirArg;
use crate::journal::open_journal;
use anyhow::{Context, Result};
use clap::Args;
use std::net::IpAddr;
use std::sync::Arc;
use warden_policy::Engine;
use warden_registry::{Caller, RegistryError, SecureModelManager};
use warden_store::config::{Config, DataDir};
use warden_store::error::AppendError;
use warden_store::journal::Journal;

/// The policy refused the request.
pub const EXIT_DENIED: u8 = 3;
/// Stored bytes did not match the signed manifest.
pub const EXIT_INTEGRITY: u8 = 4;
/// The audit ledger could not record the access, so it was refused.
pub const EXIT_AUDIT: u8 = 5;

/// The data directory's writer did not confirm in time or could not be reached; the
/// entry may or may not be durable (retrying settles it). EX_TEMPFAIL.
pub const EXIT_WRITER: u8 = 75;

/// The exit code for an error: 3 denied (by policy, or an identity the writer refused),
/// 4 integrity failure, 5 audit failure, 75 writer unavailable or past the deadline,
/// else 2.
pub fn exit_code(e: &anyhow::Error) -> Option<u8> {
    let append = |a: &AppendError| match a {
        AppendError::Refused(_) => EXIT_DENIED,
        AppendError::Deadline { .. } | AppendError::Unavailable(_) => EXIT_WRITER,
        _ => EXIT_AUDIT,
    };
    e.chain().find_map(|c| {
        if let Some(a) = c.downcast_ref::<AppendError>() {
            return Some(append(a));
        }
        c.downcast_ref::<RegistryError>().and_then(|r| match r {
            RegistryError::Denied { .. } => Some(EXIT_DENIED),
            RegistryError::Integrity { .. } => Some(EXIT_INTEGRITY),
            RegistryError::Audit(a) => Some(append(a)),
            _ => None,
        })
    })
}

/// Who is acting. The command line names a principal with `--as` (through a running
/// writer, checked against the caller's operating-system user), or defaults to the
/// principal that user is bound to; network clients authenticate instead.
#[derive(Args, Debug, Clone)]
pub struct CallerArgs {
    /// Principal performing the action; default: the principal your operating-system
    /// user is bound to (`warden principal bind`).
    #[arg(long = "as", env = "WARDEN_USER", value_name = "PRINCIPAL")]
    pub as_principal: Option<String>,
    /// Client IP address recorded in the audit entry and given to the policy.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// The principal authenticated with a second factor (the default policy requires
    /// it for deploy, retire and revoke).
    #[arg(long)]
    pub mfa: bool,
    /// Act with a token's scopes (comma-separated, e.g. model:read,model:load) as the
    /// network service does; without it the request is unscoped.
    #[arg(
        id = "caller_scopes",
        long = "with-scopes",
        value_delimiter = ',',
        value_name = "SCOPES"
    )]
    pub scopes: Option<Vec<String>>,
    /// Request id recorded in the audit entry.
    #[arg(long)]
    pub request_id: Option<String>,
}

impl CallerArgs {
    /// The principal named with `--as`, for commands that act without the registry
    /// (signing with the principal's key file).
    pub fn named(&self) -> Result<&str> {
        self.as_principal
            .as_deref()
            .context("name the principal with --as (or WARDEN_USER)")
    }

    /// The caller: `--as`, or the principal bound to this process's operating-system
    /// user.
    pub async fn caller_in(&self, m: &SecureModelManager) -> Result<Caller> {
        let principal = match &self.as_principal {
            Some(p) => p.clone(),
            None => {
                let user = warden_store::writer::peer::current_user();
                match m.os_user_principal(&user).await? {
                    Some((p, _)) => p,
                    None => anyhow::bail!(
                        "no --as given, and operating-system user {user} is bound to no principal (`warden principal bind NAME --os-user {user} --as admin`)"
                    ),
                }
            }
        };
        Ok(self.caller_as(principal))
    }

    fn caller_as(&self, principal: String) -> Caller {
        Caller {
            principal,
            ip: self.ip,
            mfa: self.mfa,
            scopes: self.scopes.clone(),
            idp_roles: Vec::new(),
            user_agent: Some(format!("warden-cli/{}", env!("CARGO_PKG_VERSION"))),
            request_id: self.request_id.clone(),
            expires_at: None,
            credential: None,
        }
    }
}

/// Reads and strictly validates the data directory's policy (the shipped default, with
/// a warning, when the directory has none), and its digest.
pub fn load_policy(dir: &DataDir, cfg: &Config) -> Result<(Engine, String)> {
    let p = warden_registry::open::policy(dir, cfg).with_context(|| {
        format!(
            "loading the policy from {}",
            dir.resolve(&cfg.policies).display()
        )
    })?;
    if p.shipped_default {
        crate::common::eprint(&format!(
            "warning: no policy in {}; using the shipped default",
            dir.resolve(&cfg.policies).display()
        ));
    }
    Ok((p.engine, p.digest))
}

/// Opens the manager over an already open ledger.
pub async fn open_with(
    dir: &DataDir,
    cfg: &Config,
    ledger: Arc<dyn Journal>,
    engine: Engine,
    policy_digest: String,
) -> Result<SecureModelManager> {
    let policy = warden_registry::open::Policy {
        engine,
        digest: policy_digest,
        shipped_default: false,
    };
    Ok(warden_registry::open::manager(dir, cfg, ledger, policy).await?)
}

/// A runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `f` with the data directory's manager, closing it (final `system.stop` entry and
/// checkpoint) whatever `f` returns.
pub fn with_manager<T>(
    d: &DataDirArg,
    f: impl AsyncFnOnce(&SecureModelManager) -> Result<T>,
) -> Result<T> {
    let dir = d.dir();
    let cfg = dir.read_config()?;
    // Validate the policy before touching the ledger: a bad policy stops startup.
    let (engine, digest) = load_policy(&dir, &cfg)?;
    let ledger = open_journal(&dir, None)?;
    runtime()?.block_on(async {
        let m = open_with(&dir, &cfg, ledger, engine, digest).await?;
        let r = f(&m).await;
        let closed = m.close().await;
        let v = r?;
        closed?;
        Ok(v)
    })
}

/// Parses a duration like `90s`, `30m`, `12h`, `7d`, `2w` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 30d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d, w")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_store::error::AppendError;

    #[test]
    fn load_path_errors_map_to_their_exit_codes() {
        let denied = RegistryError::Denied {
            principal: "p".into(),
            action: "load".into(),
            resource: "m@1".into(),
            reason: "default-deny".into(),
            revoked: false,
        };
        let integrity = RegistryError::Integrity { what: "x".into() };
        let audit = RegistryError::Audit(AppendError::Closed);
        assert_eq!(exit_code(&denied.into()), Some(EXIT_DENIED));
        assert_eq!(exit_code(&integrity.into()), Some(EXIT_INTEGRITY));
        // Through added context, as the commands report it.
        let e = anyhow::Error::from(audit).context("loading m@1");
        assert_eq!(exit_code(&e), Some(EXIT_AUDIT));
        let other = RegistryError::UnknownModel { model: "m".into() };
        assert_eq!(exit_code(&other.into()), None);
    }

    #[test]
    fn durations_parse_with_units_and_reject_the_rest() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        for bad in ["", "10", "d", "-5m", "0h", "99999999999999999999w", "5y"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
