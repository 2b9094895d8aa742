//! `warden verify --witness KEY… --witness-quorum K`: the ledger is accepted only with
//! a checkpoint that K of the given witnesses cosigned, and that checkpoint must be in
//! the ledger (it is checked like a `--trusted-checkpoint`), so a log that showed the
//! witnesses another history than this one fails.

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::Path;
use warden_core::cosign::VerifierKey;
use warden_core::note::Note;

/// What the witnesses vouch for.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Witnessed {
    /// Size of the cosigned checkpoint, when there is one.
    pub size: Option<u64>,
    /// Witnesses (by name) whose cosignature on it verifies.
    pub cosigned_by: Vec<String>,
    pub quorum: usize,
    pub ok: bool,
    /// Why the quorum is not met.
    pub problem: Option<String>,
}

/// Parses the --witness keys and the quorum (default: every witness named).
pub fn keys(texts: &[String], quorum: Option<usize>) -> Result<(Vec<VerifierKey>, usize)> {
    let keys = texts
        .iter()
        .map(|t| VerifierKey::parse(t).with_context(|| format!("--witness {t}")))
        .collect::<Result<Vec<_>>>()?;
    let names: BTreeSet<&str> = keys.iter().map(VerifierKey::name).collect();
    let quorum = quorum.unwrap_or(names.len());
    if quorum == 0 || quorum > names.len() {
        bail!(
            "--witness-quorum {quorum} cannot be met by {} witnesses",
            names.len()
        );
    }
    Ok((keys, quorum))
}

/// Checks the cosigned checkpoint at `path`; returns it (for the ledger to be checked
/// against) when it parses.
pub fn check(path: &Path, keys: &[VerifierKey], quorum: usize) -> (Option<Note>, Witnessed) {
    let fail = |problem: String| Witnessed {
        size: None,
        cosigned_by: Vec::new(),
        quorum,
        ok: false,
        problem: Some(problem),
    };
    let bytes = match crate::common::read_limited(path, 1 << 20) {
        Ok(b) => b,
        Err(e) => return (None, fail(format!("no cosigned checkpoint: {e:#}"))),
    };
    let note = match Note::parse(&bytes) {
        Ok(n) => n,
        Err(e) => return (None, fail(format!("{}: {e}", path.display()))),
    };
    let size = note
        .text()
        .split('\n')
        .nth(1)
        .and_then(warden_core::checkpoint::parse_decimal);
    let mut by: BTreeSet<&str> = BTreeSet::new();
    for k in keys {
        if note
            .signatures()
            .iter()
            .any(|s| k.names(s) && k.verify_cosignature(note.text(), s).is_ok())
        {
            by.insert(k.name());
        }
    }
    let ok = by.len() >= quorum;
    let w = Witnessed {
        size,
        cosigned_by: by.iter().map(|s| (*s).to_owned()).collect(),
        quorum,
        ok,
        problem: (!ok).then(|| {
            format!(
                "the checkpoint at {} is cosigned by {} of the {quorum} witnesses needed",
                path.display(),
                by.len()
            )
        }),
    };
    (Some(note), w)
}
