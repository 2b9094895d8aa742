//! `warden deploy`, `warden undeploy`, `warden deployments`: bind a validated or
//! production version to the inference endpoints that serve it through the gateway.

use crate::cmd::model::versioned;
use crate::common::{DataDirArg, print_json};
use crate::registry::{CallerArgs, with_manager};
use anyhow::Result;
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// The version to serve: NAME@VERSION or NAME@ALIAS (e.g. NAME@production); it must
    /// be validated or in production.
    reference: String,
    /// Base URL of an OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama), without
    /// `/v1`; repeat for failover, tried in order. `http://` on loopback only.
    #[arg(long = "upstream", required = true, value_name = "URL")]
    upstreams: Vec<String>,
    /// The name clients send as `model` (default: the model's name).
    #[arg(long = "as-name", value_name = "NAME")]
    name: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct UndeployArgs {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    /// The deployment's name.
    name: String,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    caller: CallerArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> Result<ExitCode> {
    with_manager(&a.dir, async |m| {
        let (model, sel) = versioned(&a.reference)?;
        let caller = a.caller.caller_in(m).await?;
        let (d, r) = m
            .deploy(&caller, a.name.as_deref(), &model, &sel, &a.upstreams)
            .await?;
        if a.json {
            print_json(&json!({"deployment": d, "audit": {"index": r.index}}))?;
        } else {
            println!(
                "{} serves {}@{} ({}) from {} (ledger index {})",
                d.name,
                d.model,
                d.version,
                d.digest,
                d.upstreams.join(", "),
                r.index
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn undeploy(a: &UndeployArgs) -> Result<ExitCode> {
    with_manager(&a.dir, async |m| {
        let r = m.undeploy(&a.caller.caller_in(m).await?, &a.name).await?;
        println!("{} undeployed (ledger index {})", a.name, r.index);
        Ok(ExitCode::SUCCESS)
    })
}

pub fn list(a: &ListArgs) -> Result<ExitCode> {
    with_manager(&a.dir, async |m| {
        let all = m.deployments(&a.caller.caller_in(m).await?).await?;
        if a.json {
            print_json(&json!({"deployments": all}))?;
        } else if all.is_empty() {
            println!("no deployments");
        } else {
            for d in all {
                println!(
                    "{}  {}@{}  {}  {}",
                    d.name,
                    d.model,
                    d.version,
                    d.digest,
                    d.upstreams.join(", ")
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
