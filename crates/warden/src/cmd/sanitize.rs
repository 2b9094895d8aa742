//! `warden sanitize`: replace PII in training data with typed tokens.

use crate::common::{DataDirArg, Output, byte_bar, input, print_json};
use crate::journal::Recorder;
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_data::sanitize::{Rules, Sanitizer};
use warden_data::stream::{self, Fields, Format};

/// Largest rules file.
const MAX_RULES: u64 = 1 << 20;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Input file (`-` for standard input).
    input: PathBuf,
    /// Output file (`-` for standard output); written beside and renamed into place.
    output: PathBuf,
    /// text, jsonl or csv (default: from the input's extension, else text).
    #[arg(long)]
    format: Option<String>,
    /// Only these JSON fields (dotted paths, e.g. user.email) or CSV columns,
    /// comma-separated (default: every string value / column).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Rules file (TOML): `disable = ["IP"]`, and `[[rule]]` tables with `name` and
    /// `pattern` (a regular expression) for organisation-specific identifiers.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// Record the run (counts, sizes, files; never the PII) as a `data.sanitize`
    /// ledger entry in the data directory.
    #[arg(long)]
    audit: bool,
    #[command(flatten)]
    dir: DataDirArg,
    /// Who runs it, for the audit entry (default: the operating-system user).
    #[arg(long = "as", env = "WARDEN_USER", value_name = "PRINCIPAL")]
    as_principal: Option<String>,
    /// Print the summary as JSON on standard output (needs an output file).
    #[arg(long)]
    json: bool,
}

fn guess(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson") => Format::Jsonl,
        Some("csv") => Format::Csv,
        _ => Format::Text,
    }
}

pub fn run(a: &Args) -> Result<ExitCode> {
    let format = match &a.format {
        Some(f) => {
            Format::parse(f).with_context(|| format!("--format {f:?}: use text, jsonl or csv"))?
        }
        None => guess(&a.input),
    };
    if a.json && a.output == Path::new("-") {
        bail!("--json prints the summary on standard output: give an output file");
    }
    if a.input != Path::new("-") && a.input == a.output {
        bail!("the output must not be the input");
    }
    let rules = match &a.rules {
        Some(p) => {
            let text = crate::common::read_limited(p, MAX_RULES)?;
            let text =
                String::from_utf8(text).with_context(|| format!("{}: not UTF-8", p.display()))?;
            Rules::parse_toml(&text).with_context(|| format!("{}", p.display()))?
        }
        None => Rules::default(),
    };
    let mut s = Sanitizer::new(rules);
    // With --audit, a ledger that cannot record stops the run before it starts.
    let rec = if a.audit {
        Some(Recorder::open(&a.dir.dir(), a.as_principal.as_deref())?)
    } else {
        None
    };
    let (mut reader, len) = input(&a.input)?;
    let mut out = Output::create(&a.output, a.force, 0o644)?;
    let bar = byte_bar(len, "sanitising", a.output == Path::new("-"));
    let started = std::time::Instant::now();
    let totals = {
        let mut w = out.writer();
        let t = stream::run(
            format,
            &Fields::new(a.fields.clone()),
            &mut s,
            &mut reader,
            &mut w,
            &mut |n| bar.set_position(n),
        )
        .with_context(|| format!("sanitising {}", a.input.display()))?;
        w.flush()?;
        t
    };
    bar.finish_and_clear();
    out.finish()?;
    let secs = started.elapsed().as_secs_f64();
    let counts = s.counts().by_type();
    let fmt = format!("{format:?}").to_lowercase();
    let mut summary = json!({
        "input": a.input, "output": a.output,
        "format": fmt,
        "records": totals.records, "bytes_in": totals.bytes_in, "bytes_out": totals.bytes_out,
        "replaced": counts, "total_replaced": s.counts().total(),
        "seconds": secs,
        "mb_per_s": totals.bytes_in as f64 / secs.max(1e-9) / 1e6,
    });
    if let Some(rec) = rec {
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let index = rec.record(
            "data.sanitize",
            "sanitize",
            json!({
                "input": abs(&a.input), "output": abs(&a.output),
                "format": fmt, "records": totals.records,
                "bytes_in": totals.bytes_in, "bytes_out": totals.bytes_out,
                "replaced": counts,
            }),
        )?;
        rec.close();
        if let Some(o) = summary.as_object_mut() {
            o.insert("ledger_index".into(), json!(index));
        }
    }
    if a.json {
        print_json(&summary)?;
    } else {
        let mut line = format!(
            "sanitised {} records ({} bytes) in {:.2} s: ",
            totals.records, totals.bytes_in, secs
        );
        if counts.is_empty() {
            line.push_str("nothing replaced");
        } else {
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            line.push_str(&parts.join(", "));
        }
        crate::common::eprint(&line);
        if let Some(i) = summary.get("ledger_index") {
            crate::common::eprint(&format!("recorded as ledger entry {i}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
