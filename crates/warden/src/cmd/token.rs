//! `warden token`: opaque API tokens for the HTTP API.

use crate::common::{DataDirArg, print_json};
use crate::registry::{CallerArgs, parse_duration, with_manager};
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a token. It is printed once, alone on the last line of standard output;
    /// only its hash is stored.
    Create(Create),
    /// List tokens (never their secrets).
    List(List),
    /// Revoke a token by id.
    Revoke(Revoke),
}

#[derive(Args, Debug)]
pub struct Create {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// The principal the token acts as.
    #[arg(long)]
    principal: String,
    /// Comma-separated: model:read, model:load, model:register, model:admin, audit:read,
    /// audit:write (record accesses through POST /v1/audit/accesses), principal:admin.
    #[arg(
        id = "token_scopes",
        long = "scopes",
        value_delimiter = ',',
        required = true
    )]
    token_scopes: Vec<String>,
    /// Lifetime: 90s, 30m, 12h, 7d, 2w (at most 366 days). Tokens always expire.
    #[arg(long, value_parser = parse_duration)]
    expires: i64,
    /// Print what was created as JSON, then the token on its own line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct List {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// Only this principal's tokens.
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct Revoke {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// Token id (from `warden token list`).
    id: String,
}

pub fn run(c: &Command) -> Result<ExitCode> {
    match c {
        Command::Create(a) => with_manager(&a.dir, async |m| {
            let (token, info, r) = m
                .create_token(
                    &a.caller.caller_in(m).await?,
                    &a.principal,
                    &a.token_scopes,
                    a.expires,
                )
                .await?;
            if a.json {
                print_json(&json!({"token_info": info, "ledger_index": r.index}))?;
            } else {
                println!(
                    "token {} for {} ({}), expires {}; shown once:",
                    info.id,
                    info.principal,
                    info.scopes.join(" "),
                    crate::common::rfc3339(info.expires_at)
                );
            }
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }),
        Command::List(a) => with_manager(&a.dir, async |m| {
            let list = m
                .tokens(&a.caller.caller_in(m).await?, a.principal.as_deref())
                .await?;
            if a.json {
                print_json(&serde_json::to_value(&list)?)?;
            } else {
                for t in &list {
                    println!(
                        "{}  {}  {}  expires {}{}",
                        t.id,
                        t.principal,
                        t.scopes.join(","),
                        crate::common::rfc3339(t.expires_at),
                        if t.revoked { "  [revoked]" } else { "" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Revoke(a) => with_manager(&a.dir, async |m| {
            let r = m.revoke_token(&a.caller.caller_in(m).await?, &a.id).await?;
            println!("token {} revoked (ledger index {})", a.id, r.index);
            Ok(ExitCode::SUCCESS)
        }),
    }
}
