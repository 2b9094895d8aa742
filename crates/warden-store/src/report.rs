//! Compliance reports: what the ledger recorded in a period (accesses granted and
//! denied, who and which models, incidents by severity, key rotations) and whether it
//! verifies (invalid or tampered entries by index and reason, rotation violations),
//! signed with the log's root key so that anyone holding `root.pub` can check it.
//!
//! The period is half-open, `[from, to)`, in entry time. Counts that need the events
//! (per user, per model, incident severities) need an auditor key; without one they
//! are absent rather than zero.

use crate::error::{StoreError, io};
use crate::keys::RootKey;
use crate::ledger::checkpoints_path;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use warden_core::crypto::{DataKey, RecipientSecretKey};
use warden_core::entry::{self, KIND_ROTATION};
use warden_core::epoch::RootPublic;
use warden_core::epoch::RotationRecord;
use warden_core::time::Timestamp;
use warden_core::verify::{Code, Location, VerifyConfig};

/// The report format's name, first field of every report.
pub const FORMAT: &str = "warden.compliance/v1";
/// Prefix of the signed message: a report signature cannot be replayed as any other
/// root-key signature, and vice versa.
const SIGNING_CONTEXT: &[u8] = b"warden compliance report v1\n";

/// A SIEM sink's position, as the caller read it from the export cursors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkPosition {
    pub sink: String,
    pub format: String,
    /// Index of the next entry the sink has not confirmed.
    pub next: u64,
}

/// What the report covers and checks against.
#[derive(Debug)]
pub struct ReportInput<'a> {
    pub log: &'a Path,
    pub root: &'a RootPublic,
    pub auditor: Option<&'a RecipientSecretKey>,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Longest allowed epoch (the rotation interval).
    pub max_epoch_micros: u64,
    pub generated: Timestamp,
    pub sinks: &'a [SinkPosition],
    /// A live ledger's consistent prefix: the report reads no further.
    pub bound: Option<crate::ledger::DurableState>,
}

/// Granted and denied counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    pub granted: u64,
    pub denied: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accesses {
    /// `model.access` plus `model.denied` entries.
    pub total: u64,
    pub granted: u64,
    pub denied: u64,
    /// With an auditor key.
    pub unique_users: Option<u64>,
    pub unique_models: Option<u64>,
    pub by_user: Option<BTreeMap<String, Outcomes>>,
    pub by_model: Option<BTreeMap<String, Outcomes>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incidents {
    pub total: u64,
    /// Severity from the decrypted details (`UNKNOWN` without an auditor key or a
    /// severity).
    pub by_severity: BTreeMap<String, u64>,
}

/// One UTC day of the period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    pub date: String,
    pub granted: u64,
    pub denied: u64,
    pub incidents: u64,
}

/// An entry or checkpoint verification found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid {
    pub location: String,
    pub index: u64,
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    /// Entries the verifier read (the whole ledger).
    pub entries_verified: u64,
    /// Whether the whole ledger verified without a finding.
    pub clean: bool,
    /// Findings on entries of the period, and on checkpoints covering them.
    pub invalid: Vec<Invalid>,
    /// Findings elsewhere in the ledger.
    pub findings_outside_period: u64,
    /// Entries at the ledger's start that retention removed (each verified before its
    /// removal, which a `retention.delete` entry records); not counted in this report.
    #[serde(default)]
    pub removed_by_retention: u64,
}

/// One epoch overlapping the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochSpan {
    pub epoch: u64,
    /// Time of its `key.rotation` entry.
    pub start: String,
    /// Time of its last entry.
    pub end: String,
    pub length_secs: f64,
    /// The latest epoch of the ledger (it may still be in use).
    pub open: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub epoch: u64,
    /// Entry index where it shows.
    pub index: u64,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rotation {
    /// `key.rotation` entries in the period.
    pub events: u64,
    pub max_epoch_secs: f64,
    pub longest_epoch_secs: f64,
    pub epochs: Vec<EpochSpan>,
    pub violations: Vec<Violation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkCoverage {
    pub sink: String,
    pub format: String,
    pub next: u64,
    /// Entries of the period the sink has confirmed.
    pub delivered_in_period: u64,
    /// That, over the period's entries (1 when the period is empty).
    pub coverage: f64,
    /// Entries of the whole ledger not yet confirmed.
    pub lag: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryCounts {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
}

/// A compliance report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComplianceReport {
    pub format: String,
    pub origin: String,
    pub generated: String,
    pub period: Period,
    /// Whether events were decrypted (an auditor key was given).
    pub decrypted: bool,
    pub entries: EntryCounts,
    pub accesses: Accesses,
    pub incidents: Incidents,
    pub daily: Vec<Day>,
    pub integrity: Integrity,
    pub key_rotation: Rotation,
    pub siem: Vec<SinkCoverage>,
    /// `verification.run` entries in the period.
    pub verification_runs: u64,
    /// `report.generated` entries in the period.
    pub reports_generated: u64,
}

fn secs(micros: u64) -> f64 {
    // Exact for any realistic span (below 2^53 µs, about 285 years).
    #[expect(clippy::cast_precision_loss, reason = "durations well below 2^53 µs")]
    let s = micros as f64 / 1e6;
    s
}

fn code_name(c: Code) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{c:?}"))
}

const DAY_MICROS: u64 = 86_400_000_000;

/// The parts of a decrypted event a report reads; other fields are skipped unparsed.
#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(default, borrow)]
    user: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    details: Option<DetailsView<'a>>,
}

#[derive(Deserialize)]
struct DetailsView<'a> {
    #[serde(default, borrow)]
    severity: Option<std::borrow::Cow<'a, str>>,
}

/// What one pass over the entries finds.
#[derive(Default)]
struct Counts {
    total_entries: u64,
    in_period: u64,
    first_index: Option<u64>,
    last_index: Option<u64>,
    by_kind: HashMap<String, u64>,
    granted: u64,
    denied: u64,
    by_user: HashMap<String, Outcomes>,
    by_model: HashMap<String, Outcomes>,
    severities: HashMap<String, u64>,
    /// Day number since 1970 -> counts (the date is filled in at the end).
    days: BTreeMap<u64, Day>,
    /// Per epoch: its key.rotation entry (index, time) and the time of its last entry.
    epochs: BTreeMap<u64, (u64, Timestamp, Timestamp)>,
    undecryptable: Vec<(u64, &'static str)>,
}

/// Applies `f` to the value of `key`, inserting a default first. Looked up by `&str`:
/// a key is allocated once, not per entry.
fn bump<V: Default>(map: &mut HashMap<String, V>, key: &str, f: impl FnOnce(&mut V)) {
    if let Some(v) = map.get_mut(key) {
        f(v);
        return;
    }
    let mut v = V::default();
    f(&mut v);
    map.insert(key.to_owned(), v);
}

/// One pass over every entry, without allocating per entry: lines are parsed in place,
/// events decrypted into one buffer and read through borrowed views.
fn count(input: &ReportInput<'_>) -> Result<Counts, StoreError> {
    use std::io::BufRead as _;
    let view = crate::segments::LogView::open(input.log)?;
    let start = view.start();
    let first_index = view.first_index();
    let limit = input
        .bound
        .map_or(u64::MAX, |b| b.entries_len.saturating_sub(start));
    let mut reader = std::io::BufReader::with_capacity(8 << 20, view.reader(start, limit));
    let mut keys: HashMap<u64, Option<DataKey>> = HashMap::new();
    let mut c = Counts::default();
    let mut line = Vec::with_capacity(4096);
    let mut pt = Vec::with_capacity(4096);
    let mut index = first_index;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(io("read", input.log))?
            == 0
            || line.pop() != Some(b'\n')
        {
            break; // the end, or a torn tail that is not an entry yet
        }
        let i = index;
        index += 1;
        c.total_entries += 1;
        let Ok(e) = entry::parse_line(&line) else {
            continue; // verification lists it
        };
        let (kind, t, epoch) = (e.header.kind, e.header.time, e.header.epoch);
        if kind == KIND_ROTATION {
            c.epochs.insert(epoch, (i, t, t));
            if let Some(sk) = input.auditor {
                let k = RotationRecord::decode(e.header.rotation.unwrap_or_default())
                    .ok()
                    .and_then(|r| r.unwrap_data_key(sk).ok().flatten());
                keys.insert(epoch, k);
            }
        } else if let Some(span) = c.epochs.get_mut(&epoch) {
            span.2 = t;
        }
        if t < input.from || t >= input.to {
            continue;
        }
        c.in_period += 1;
        c.first_index.get_or_insert(i);
        c.last_index = Some(i);
        bump(&mut c.by_kind, kind, |n| *n += 1);
        let day = c.days.entry(t.as_micros() / DAY_MICROS).or_default();
        let access = match kind {
            "model.access" => Some(true),
            "model.denied" => Some(false),
            _ => None,
        };
        match access {
            Some(true) => {
                c.granted += 1;
                day.granted += 1;
            }
            Some(false) => {
                c.denied += 1;
                day.denied += 1;
            }
            None if kind == "incident" => day.incidents += 1,
            None => {}
        }
        let wanted = access.is_some() || kind == "incident";
        if input.auditor.is_none() || !wanted {
            if kind == "incident" {
                bump(&mut c.severities, "UNKNOWN", |n| *n += 1);
            }
            continue;
        }
        pt.clear();
        let ev = match keys.get(&epoch) {
            Some(Some(k)) => match e.open(k, &mut pt) {
                Ok(()) => serde_json::from_slice::<EventView<'_>>(&pt).ok(),
                Err(_) => {
                    c.undecryptable.push((i, "decryption failed"));
                    None
                }
            },
            _ => {
                c.undecryptable.push((i, "not wrapped to this auditor"));
                None
            }
        };
        if kind == "incident" {
            let sev = ev
                .as_ref()
                .and_then(|v| v.details.as_ref())
                .and_then(|d| d.severity.as_deref())
                .map_or_else(|| "UNKNOWN".to_owned(), str::to_ascii_uppercase);
            bump(&mut c.severities, &sev, |n| *n += 1);
        } else if let (Some(granted), Some(ev)) = (access, ev) {
            for (map, key) in [(&mut c.by_user, &ev.user), (&mut c.by_model, &ev.model)] {
                if let Some(k) = key {
                    bump(map, k, |o: &mut Outcomes| {
                        if granted {
                            o.granted += 1;
                        } else {
                            o.denied += 1;
                        }
                    });
                }
            }
        }
    }
    Ok(c)
}

/// Builds the report for `input`: one verification of the whole ledger, then one pass
/// over its entries.
pub fn build(input: &ReportInput<'_>) -> Result<ComplianceReport, StoreError> {
    let outcome = crate::verify::verify_prefix(
        input.log,
        &checkpoints_path(input.log),
        VerifyConfig {
            root: input.root.clone(),
            max_epoch_micros: input.max_epoch_micros,
            auditor: None,
        },
        Vec::new(),
        None,
        input.bound,
        &mut |_, _| {},
    )?;
    let mut r = ComplianceReport {
        format: FORMAT.into(),
        origin: input.root.origin.clone(),
        generated: input.generated.to_string(),
        period: Period {
            from: input.from.to_string(),
            to: input.to.to_string(),
        },
        decrypted: input.auditor.is_some(),
        ..ComplianceReport::default()
    };
    let counts = count(input)?;
    let total_entries = counts.total_entries;
    let epochs = counts.epochs;
    let undecryptable = counts.undecryptable;
    r.entries.total = counts.in_period;
    r.entries.by_kind = counts.by_kind.into_iter().collect();
    r.entries.first_index = counts.first_index;
    r.entries.last_index = counts.last_index;
    r.accesses.granted = counts.granted;
    r.accesses.denied = counts.denied;
    r.accesses.total = counts.granted + counts.denied;
    r.incidents.by_severity = counts.severities.into_iter().collect();
    r.incidents.total = r.incidents.by_severity.values().sum();
    let of_kind = |k: &str| r.entries.by_kind.get(k).copied().unwrap_or(0);
    (
        r.key_rotation.events,
        r.verification_runs,
        r.reports_generated,
    ) = (
        of_kind(KIND_ROTATION),
        of_kind("verification.run"),
        of_kind("report.generated"),
    );
    if input.auditor.is_some() {
        r.accesses.unique_users = Some(counts.by_user.len() as u64);
        r.accesses.unique_models = Some(counts.by_model.len() as u64);
        r.accesses.by_user = Some(counts.by_user.into_iter().collect());
        r.accesses.by_model = Some(counts.by_model.into_iter().collect());
    }
    // Every day of the period has its row, with or without entries (at most ten
    // years of rows, whatever period is asked for).
    let mut days = counts.days;
    let first_day = input.from.as_micros() / DAY_MICROS;
    let last_day = input.to.as_micros().saturating_sub(1) / DAY_MICROS;
    for day in (first_day..=last_day).take(3660) {
        days.entry(day).or_default();
    }
    r.daily = days
        .into_iter()
        .map(|(day, mut d)| {
            d.date = Timestamp::from_micros(day.saturating_mul(DAY_MICROS))
                .map(|t| t.to_string().get(..10).unwrap_or_default().to_owned())
                .unwrap_or_default();
            d
        })
        .collect();

    // Integrity: findings on the period's entries (or on checkpoints, by the entries
    // they cover: a checkpoint finding names the record, so all are listed).
    let report = &outcome.report;
    r.integrity.entries_verified = report.entries;
    r.integrity.clean = report.is_clean();
    r.integrity.removed_by_retention = report.removed;
    let range = r.entries.first_index.zip(r.entries.last_index);
    for f in &report.findings {
        let inside = match (f.location, range) {
            (Location::Entry, Some((a, b))) => f.index >= a && f.index <= b,
            (Location::Entry, None) => false,
            (Location::Checkpoint, _) => true,
        };
        if inside {
            r.integrity.invalid.push(Invalid {
                location: match f.location {
                    Location::Entry => "entry".into(),
                    Location::Checkpoint => "checkpoint".into(),
                },
                index: f.index,
                code: code_name(f.code),
                message: f.message.clone(),
            });
        } else {
            r.integrity.findings_outside_period += 1;
        }
    }
    for (index, why) in undecryptable {
        if !r
            .integrity
            .invalid
            .iter()
            .any(|i| i.location == "entry" && i.index == index)
        {
            r.integrity.invalid.push(Invalid {
                location: "entry".into(),
                index,
                code: "decrypt_failed".into(),
                message: why.into(),
            });
            r.integrity.clean = false;
        }
    }
    r.integrity
        .invalid
        .sort_by(|a, b| (a.location.as_str(), a.index).cmp(&(b.location.as_str(), b.index)));

    // Key rotation: an epoch's keys are in use from its rotation entry to its last
    // entry (an idle gap before the next rotation is not use).
    r.key_rotation.max_epoch_secs = secs(input.max_epoch_micros);
    let current = epochs.keys().next_back().copied();
    for (&epoch, &(index, start, end)) in &epochs {
        if start >= input.to || end < input.from {
            continue;
        }
        let len = end.as_micros().saturating_sub(start.as_micros());
        let length_secs = secs(len);
        if length_secs > r.key_rotation.longest_epoch_secs {
            r.key_rotation.longest_epoch_secs = length_secs;
        }
        if len > input.max_epoch_micros {
            r.key_rotation.violations.push(Violation {
                epoch,
                index,
                reason: format!(
                    "epoch {epoch} was used for {length_secs:.0} s, longer than the {:.0} s rotation interval",
                    r.key_rotation.max_epoch_secs
                ),
            });
        }
        r.key_rotation.epochs.push(EpochSpan {
            epoch,
            start: start.to_string(),
            end: end.to_string(),
            length_secs,
            open: Some(epoch) == current,
        });
    }
    for f in &report.findings {
        if matches!(f.code, Code::EpochTooLong | Code::OutsideEpoch) {
            r.key_rotation.violations.push(Violation {
                epoch: 0,
                index: f.index,
                reason: format!("{}: {}", code_name(f.code), f.message),
            });
        }
    }

    // SIEM coverage of the period's entries.
    for s in input.sinks {
        let delivered = match range {
            Some((a, b)) => s.next.min(b + 1).saturating_sub(a),
            None => 0,
        };
        #[expect(clippy::cast_precision_loss, reason = "a ratio of entry counts")]
        let coverage = if r.entries.total == 0 {
            1.0
        } else {
            (delivered as f64 / r.entries.total as f64).min(1.0)
        };
        r.siem.push(SinkCoverage {
            sink: s.sink.clone(),
            format: s.format.clone(),
            next: s.next,
            delivered_in_period: delivered,
            coverage,
            lag: report
                .verified_size
                .max(total_entries)
                .saturating_sub(s.next),
        });
    }
    Ok(r)
}

/// A detached report signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSignature {
    pub format: String,
    pub origin: String,
    pub algorithm: String,
    /// Base64 ML-DSA signature over the context string and the report's bytes.
    pub signature: String,
}

fn message(report: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + report.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(report);
    m
}

/// Signs the bytes of a report (any format) with the root key.
pub fn sign(report: &[u8], root: &RootKey) -> Result<ReportSignature, StoreError> {
    let sig = root.key.sign(&message(report))?;
    Ok(ReportSignature {
        format: FORMAT.into(),
        origin: root.public.origin.clone(),
        algorithm: root.key.alg().name().into(),
        signature: B64.encode(sig),
    })
}

/// Checks a report's bytes against its detached signature and the root public key.
pub fn verify(report: &[u8], sig: &ReportSignature, root: &RootPublic) -> Result<(), StoreError> {
    let bad = |detail: &'static str| StoreError::ReportSignature { detail };
    if sig.format != FORMAT {
        return Err(bad("not a Warden report signature"));
    }
    if sig.origin != root.origin {
        return Err(bad("the signature names another log origin"));
    }
    if sig.algorithm != root.key.alg().name() {
        return Err(bad("the signature's algorithm is not the root key's"));
    }
    let raw = B64
        .decode(&sig.signature)
        .map_err(|_| bad("the signature is not base64"))?;
    root.key
        .verify(&message(report), &raw)
        .map_err(|_| bad("the signature does not match the report"))
}
