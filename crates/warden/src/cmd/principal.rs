//! `warden principal`: users, service accounts, roles and grants.

use crate::common::{DataDirArg, print_json};
use crate::registry::{CallerArgs, parse_duration, with_manager};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_policy::Action;
use warden_registry::keyfile;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Add a user or service account with one or more roles and an ML-DSA signing key.
    ///
    /// Without --signing-pub a key pair is created: the private key is written 0600 to
    /// --key-out (default keys/principals/NAME.key in the data directory).
    Add(Add),
    /// Give a principal a role, or actions on a model until an expiry.
    Grant(Grant),
    /// Bind an operating-system user to a principal: that user's local processes
    /// (CLI, Python workers) then record through the writer as this principal, and as
    /// no other.
    Bind(Bind),
    /// Suspend a principal: every request is refused until it is enabled again.
    Suspend(Name),
    /// Enable a suspended principal.
    Enable(Name),
    /// List principals with their roles and grants.
    List(List),
}

#[derive(Args, Debug)]
pub struct Add {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    name: String,
    /// Role: admin, ml-engineer, data-scientist, service, auditor, security-officer (or a
    /// role your policy defines). Repeat for several.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// A service account rather than a person.
    #[arg(long)]
    service: bool,
    /// Register this public key (from `warden principal add` elsewhere) instead of
    /// creating a key pair.
    #[arg(long)]
    signing_pub: Option<PathBuf>,
    /// Where to write the new private key.
    #[arg(long)]
    key_out: Option<PathBuf>,
    /// Bind this operating-system user to the new principal (see `principal bind`).
    #[arg(long, value_name = "USER")]
    os_user: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct Bind {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// The principal.
    name: String,
    /// The operating-system user (a name, or uid:N); a user has one principal, so this
    /// replaces an earlier binding.
    #[arg(long, value_name = "USER")]
    os_user: String,
}

#[derive(Args, Debug)]
pub struct Grant {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    name: String,
    /// Add this role.
    #[arg(long, conflicts_with_all = ["model", "actions"])]
    role: Option<String>,
    /// Model the grant is for (`*` for every model).
    #[arg(long, requires = "actions")]
    model: Option<String>,
    /// Comma-separated actions: read, write, register, deploy, retire, load, revoke, audit,
    /// generate.
    #[arg(long, value_delimiter = ',')]
    actions: Vec<String>,
    /// How long the grant lasts: 90s, 30m, 12h, 7d, 2w. Grants always expire.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    expires: i64,
}

#[derive(Args, Debug)]
pub struct Name {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    name: String,
}

#[derive(Args, Debug)]
pub struct List {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Add(a) => add(a),
        Command::Bind(a) => with_manager(&a.dir, async |m| {
            let r = m
                .bind_os_user(&a.caller.caller_in(m).await?, &a.os_user, &a.name)
                .await?;
            println!(
                "operating-system user {} acts as {} (ledger index {})",
                a.os_user, a.name, r.index
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Grant(a) => {
            let actions = a
                .actions
                .iter()
                .map(|s| Action::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            with_manager(&a.dir, async |m| {
                let caller = a.caller.caller_in(m).await?;
                let r = match (&a.role, &a.model) {
                    (Some(role), _) => m.grant_role(&caller, &a.name, role).await?,
                    (None, Some(model)) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                            .unwrap_or(0);
                        m.grant(
                            &caller,
                            &a.name,
                            model,
                            &actions,
                            now.saturating_add(a.expires),
                        )
                        .await?
                    }
                    (None, None) => bail!("give --role ROLE, or --model M --actions A,B"),
                };
                println!("granted (ledger index {})", r.index);
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Suspend(a) | Command::Enable(a) => {
            let active = matches!(c, Command::Enable(_));
            with_manager(&a.dir, async |m| {
                let r = m
                    .set_active(&a.caller.caller_in(m).await?, &a.name, active)
                    .await?;
                println!(
                    "{} {} (ledger index {})",
                    a.name,
                    if active { "enabled" } else { "suspended" },
                    r.index
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::List(a) => with_manager(&a.dir, async |m| {
            let list = m.principals(&a.caller.caller_in(m).await?).await?;
            if a.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(p, g)| {
                        json!({
                            "name": p.name, "service": p.service, "active": p.active, "roles": p.roles,
                            "signing_alg": p.signing_alg,
                            "grants": g.iter().map(|g| json!({"model": g.model, "action": g.action, "expires_at": g.expires_at})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&json!(v))?;
            } else {
                for (p, g) in &list {
                    println!(
                        "{}{}{}  roles: {}",
                        p.name,
                        if p.service { " (service)" } else { "" },
                        if p.active { "" } else { " [suspended]" },
                        p.roles.join(", ")
                    );
                    for g in g {
                        println!(
                            "  grant {} on {} until {}",
                            g.action,
                            g.model,
                            crate::common::rfc3339(g.expires_at)
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

fn add(a: &Add) -> Result<ExitCode> {
    let dir = a.dir.dir();
    let cfg = dir.read_config()?;
    let alg = cfg.validate()?;
    with_manager(&a.dir, async |m| {
        let (key_file, public) = match &a.signing_pub {
            Some(p) => {
                let (owner, k) = keyfile::read_pub(p)?;
                if owner != a.name {
                    bail!("{} is {owner}'s key, not {}'s", p.display(), a.name);
                }
                (None, k)
            }
            None => {
                let out = a
                    .key_out
                    .clone()
                    .unwrap_or_else(|| dir.principal_key(&a.name));
                if out.exists() {
                    bail!("{} exists; pass --key-out or --signing-pub", out.display());
                }
                // If the manager refuses the principal, the new key files are removed below.
                let k = keyfile::create(&out, &a.name, alg)
                    .with_context(|| format!("creating {}", out.display()))?;
                (Some(out), k.key.verifying_key())
            }
        };
        let r = m
            .add_principal(
                Some(&a.caller.caller_in(m).await?),
                &a.name,
                &a.roles,
                a.service,
                Some(&public),
            )
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                if let Some(k) = &key_file {
                    std::fs::remove_file(k).ok();
                    std::fs::remove_file(keyfile::pub_path(k)).ok();
                }
                return Err(e.into());
            }
        };
        let bound = match &a.os_user {
            Some(u) => Some(
                m.bind_os_user(&a.caller.caller_in(m).await?, u, &a.name)
                    .await?,
            ),
            None => None,
        };
        if a.json {
            print_json(
                &json!({"principal": a.name, "roles": a.roles, "service": a.service,
                "key": key_file, "ledger_index": r.index, "os_user": a.os_user,
                "bind_index": bound.as_ref().map(|b| b.index)}),
            )?;
        } else {
            println!(
                "added {} ({}) (ledger index {})",
                a.name,
                a.roles.join(", "),
                r.index
            );
            if let Some(k) = key_file {
                println!("  signing key: {} (keep it private)", k.display());
            }
            if let (Some(u), Some(b)) = (&a.os_user, &bound) {
                println!(
                    "  operating-system user {u} acts as {} (ledger index {})",
                    a.name, b.index
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
