//! The `warden` command. Each subcommand lives in its own module under `cmd/` and only
//! wires the library crates together.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cluster;
mod cmd;
mod common;
mod journal;
mod ondemand;
mod publish;
mod registry;

/// mimalloc: the service's hot path (policy evaluation, JSON, HTTP) allocates many small
/// objects from several threads, where it measured faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Secure, audited access to ML models.
///
/// Every access is recorded in an append-only ledger whose entries are encrypted with
/// ChaCha20-Poly1305 and covered by ML-DSA-signed checkpoints, with keys rotating at
/// least every two hours.
#[derive(Parser, Debug)]
#[command(name = "warden", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a data directory: configuration, sealed root key, empty ledger.
    Init(cmd::init::Args),
    /// Move an embedded data directory onto a cluster (PostgreSQL, and a bucket for
    /// blobs) with its history: the ledger continues under the same root key, the
    /// registry's rows and blobs are copied, `warden.toml` is rewritten last.
    Migrate(cmd::migrate::Args),
    /// Manage auditor key pairs (the only keys that can decrypt the ledger).
    #[command(subcommand)]
    Auditor(cmd::auditor::Command),
    /// List, show and acknowledge incidents raised by threat detection.
    #[command(subcommand)]
    Incident(cmd::incident::Command),
    /// Append to, read, and prove entries of the ledger.
    #[command(subcommand)]
    Log(cmd::log::Command),
    /// Register, promote, revoke and load models through the audited path.
    #[command(subcommand)]
    Model(cmd::model::Command),
    /// Serve a validated or production version through the inference gateway
    /// (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/api/v1/generate`
    /// on `warden serve`), forwarded to OpenAI-compatible upstreams.
    ///
    /// A `deploy` decision on the version and a `deployment.create` entry; revoking or
    /// retiring the version, or `warden undeploy`, stops its traffic at the next request.
    Deploy(cmd::deploy::Args),
    /// Stop serving a deployment through the gateway (a `deployment.remove` entry).
    Undeploy(cmd::deploy::UndeployArgs),
    /// List the deployments of the models you may read.
    Deployments(cmd::deploy::ListArgs),
    /// Read (with an auditor key) or expire the prompts and answers the gateway sealed
    /// to the auditors (`[gateway] seal_content`).
    #[command(subcommand)]
    Content(cmd::content::Command),
    /// Manage users, service accounts, roles and grants.
    #[command(subcommand)]
    Principal(cmd::principal::Command),
    /// Serve the HTTP API (plain HTTP on loopback only).
    Serve(cmd::serve::Args),
    /// Own the data directory's ledger and append for local clients over its socket
    /// (for hosts that run no `warden serve`, which does the same).
    ///
    /// While a writer runs, every command that records (the CLI, Python workers)
    /// sends its entries to it and gets the same receipt; who they act as comes from
    /// their operating-system user (`warden principal bind`).
    Writer(cmd::writer::Args),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(cmd::token::Command),
    /// Verify a ledger offline: every entry, checkpoint, signature and epoch.
    ///
    /// Exit status: 0 all valid; 1 an entry or checkpoint is invalid or a rule is
    /// violated (each finding names its index and reason); 2 verification could not run.
    Verify(cmd::verify::Args),
    /// Deliver the ledger to a SIEM, at least once and in order; `export status` shows lag.
    ///
    /// Each sink keeps a durable cursor under `export/` in the data directory: a run resumes
    /// where the last one stopped, and the cursor moves only past what the receiver
    /// confirmed. Only entries covered by a signed checkpoint are exported.
    ///
    /// Destinations: tcp://host:port (RFC 6587 octet counting; newline-framed for
    /// `policy`), tls://host:port (RFC 5425, TLS 1.3), udp://host:port (best effort),
    /// file:PATH, http(s)://host:port/path (Splunk HEC-style). Decrypted events leave the
    /// machine only over TLS.
    ///
    /// Exit status: 0 everything covered was delivered (or --follow was stopped); 2 the
    /// receiver could not be reached after retries, or another error.
    Export(cmd::export::Args),
    /// Compliance report for a period, signed with the log's root key.
    ///
    /// Total accesses (granted, denied), unique users and models with per-user and
    /// per-model counts (with --auditor-key), incidents by severity, invalid or tampered
    /// entries found by verifying the whole ledger (index and reason), key rotations
    /// with the longest epoch and any epoch used longer than the rotation interval,
    /// SIEM export coverage and lag, and verification runs. The report is written under
    /// reports/ (or --out) with a detached ML-DSA signature beside it (`.sig`), which
    /// `warden report verify` checks with keys/root.pub.
    Report(cmd::report::Args),
    /// Replace PII (e-mails, phones, SSNs, cards, IPs, IBANs, configured patterns) in
    /// text, JSON Lines or CSV with typed tokens such as [EMAIL], streaming.
    ///
    /// Prints counts per type, never the PII itself; `--audit` records them in the
    /// ledger.
    Sanitize(cmd::sanitize::Args),
    /// Encrypt and decrypt training data at rest (chunked ChaCha20-Poly1305, keys
    /// wrapped with ML-KEM-768 + X25519); each run is a ledger entry.
    #[command(subcommand)]
    Dataset(cmd::dataset::Command),
    /// Check a training environment: encrypted, private data; an owner-only output
    /// location; network isolation when required; a writable audit ledger.
    ///
    /// Each check prints PASS or FAIL with its reason; the result is a ledger entry.
    /// Exit status: 0 all passed, 1 a check failed, 2 the checks could not run.
    CheckEnv(cmd::check_env::Args),
    /// Per-file SHA-256 and root digest of a model file or directory, in the form the
    /// registry signs (what `model register` would record).
    Fingerprint(cmd::training::FingerprintArgs),
    /// Record a training run's provenance as a signed attestation.
    #[command(subcommand)]
    Training(cmd::training::Command),
    /// Measure performance on this machine next to its own ceilings.
    #[command(subcommand)]
    Bench(cmd::bench::Command),
    /// Run an independent witness: it cosigns a log's checkpoints only while each is
    /// consistent with the last one it cosigned (C2SP tlog-witness), so the log's
    /// operator cannot show two histories to two auditors.
    #[command(subcommand)]
    Witness(cmd::witness::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Init(a) => cmd::init::run(&a),
        Command::Migrate(a) => cmd::migrate::run(&a),
        Command::Auditor(c) => cmd::auditor::run(&c),
        Command::Log(c) => cmd::log::run(&c),
        Command::Incident(c) => cmd::incident::run(&c),
        Command::Model(c) => cmd::model::run(&c),
        Command::Deploy(a) => cmd::deploy::run(&a),
        Command::Undeploy(a) => cmd::deploy::undeploy(&a),
        Command::Deployments(a) => cmd::deploy::list(&a),
        Command::Content(c) => cmd::content::run(&c),
        Command::Principal(c) => cmd::principal::run(&c),
        Command::Serve(a) => cmd::serve::run(&a),
        Command::Witness(c) => cmd::witness::run(&c),
        Command::Token(c) => cmd::token::run(&c),
        Command::Writer(a) => cmd::writer::run(&a),
        Command::Verify(a) => cmd::verify::run(&a),
        Command::Export(a) => cmd::export::run(&a),
        Command::Report(a) => cmd::report::run(&a),
        Command::Bench(c) => cmd::bench::run(&c),
        Command::Sanitize(a) => cmd::sanitize::run(&a),
        Command::CheckEnv(a) => cmd::check_env::run(&a),
        Command::Fingerprint(a) => cmd::training::fingerprint_cmd(&a),
        Command::Training(c) => cmd::training::run(&c),
        Command::Dataset(c) => cmd::dataset::run(&c),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            common::eprint(&format!("error: {e:#}"));
            ExitCode::from(registry::exit_code(&e).unwrap_or(common::EXIT_ERROR))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command's arguments are consistent (no flag defined twice, as a flattened
    /// group and a command's own flag could be).
    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Regression: `token create --scopes` once filled the caller's scopes instead.
    #[test]
    fn token_create_scopes_are_the_tokens() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "warden",
            "token",
            "create",
            "--principal",
            "p",
            "--scopes",
            "model:read,model:load",
            "--expires",
            "1h",
            "--as",
            "admin",
        ])
        .unwrap();
        let dbg = format!("{cli:?}");
        assert!(
            dbg.contains("token_scopes: [\"model:read\", \"model:load\"]"),
            "{dbg}"
        );
        assert!(dbg.contains("scopes: None"), "{dbg}");
    }
}
