//! The counts a dashboard shows, kept up to date as the ledger grows: each
//! [`Tally::refresh`] reads only the entries committed since the last one, so a page
//! costs the same on a ledger of ten entries or ten million.
//!
//! Counts come from the public headers (time and kind), so they need no key. With an
//! auditor key every entry is decrypted as it is counted (the key of each epoch is
//! unwrapped from its `key.rotation` entry): incidents, their acknowledgements and
//! scheduled verification runs are kept in full, and who did what feeds the
//! [`Usage`]. Without one an incident is counted with severity `UNKNOWN`, a
//! verification run shows only when it ran, and no use is known.

use crate::audit::{IncidentView, ack_of, incident_view, latest_checkpoint};
use crate::error::{StoreError, io};
use crate::usage::{Seen, Usage};
use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use warden_core::crypto::{DataKey, RecipientSecretKey};
use warden_core::entry::{self, KIND_ROTATION};
use warden_core::epoch::RotationRecord;

/// Microseconds in an hour.
pub const HOUR_MICROS: u64 = 3_600_000_000;

/// Entries of one UTC hour, by what they record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HourCounts {
    /// Model accesses allowed (`model.access`).
    pub granted: u64,
    /// Model accesses refused (`model.denied`).
    pub denied: u64,
    /// Refused authentications (`auth.failure`).
    pub auth_failures: u64,
    /// Incidents raised.
    pub incidents: u64,
    /// Every entry of the hour.
    pub entries: u64,
}

/// One key epoch: from its `key.rotation` entry to the last entry it sealed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EpochSpan {
    pub epoch: u64,
    /// Its rotation entry's time (microseconds since the Unix epoch).
    pub start: u64,
    /// Its last entry's time.
    pub end: u64,
    /// Entries it sealed, its rotation entry included.
    pub entries: u64,
}

/// The latest scheduled verification (`verification.run`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VerificationRun {
    /// Its entry's index and time.
    pub index: u64,
    pub time: String,
    /// What it recorded (`clean`, `entries`, `verified_size`, `findings`,
    /// `first_findings` as `index:code`), when it could be decrypted.
    pub details: Option<serde_json::Value>,
}

/// Entry kinds whose events the tally decrypts (with an auditor key).
const OPENED: &[&str] = &["incident", "incident.ack", "verification.run"];

/// The dashboard's counts over a ledger.
pub struct Tally {
    log: PathBuf,
    auditor: Option<std::sync::Arc<RecipientSecretKey>>,
    /// Logical offset after the last entry counted, and the next entry's index.
    offset: u64,
    next: u64,
    /// Counts by UTC hour (hours since the Unix epoch).
    hours: BTreeMap<u64, HourCounts>,
    /// Entries by kind, over the whole ledger counted.
    kinds: BTreeMap<String, u64>,
    epochs: Vec<EpochSpan>,
    incidents: Vec<IncidentView>,
    verification: Option<VerificationRun>,
    /// The current epoch's data key (an auditor's), while decrypting.
    key: Option<(u64, Option<DataKey>)>,
    /// Entries retention had removed before the first count.
    removed: u64,
    usage: Usage,
    /// The size of the latest signed checkpoint when last looked at.
    covered: u64,
    /// Incidents not acknowledged, by severity, and those acknowledged.
    open: BTreeMap<String, u64>,
    acknowledged: u64,
}

/// Longest kind kept as its own count; longer ones are counted as `other`.
const MAX_KIND: usize = 64;
/// Most distinct kinds counted by name.
const MAX_KINDS: usize = 256;

impl Tally {
    /// An empty tally of the ledger at `log`; `auditor` decrypts incidents.
    #[must_use]
    pub fn new(log: &Path, auditor: Option<std::sync::Arc<RecipientSecretKey>>) -> Self {
        Self {
            log: log.to_path_buf(),
            auditor,
            offset: 0,
            next: 0,
            hours: BTreeMap::new(),
            kinds: BTreeMap::new(),
            epochs: Vec::new(),
            incidents: Vec::new(),
            verification: None,
            key: None,
            removed: 0,
            usage: Usage::default(),
            covered: 0,
            open: BTreeMap::new(),
            acknowledged: 0,
        }
    }

    /// Counts the entries committed (covered by a signed checkpoint) since the last
    /// refresh. Returns how many were counted.
    pub fn refresh(&mut self) -> Result<u64, StoreError> {
        self.refresh_at_most(u64::MAX)
    }

    /// [`Tally::refresh`], counting at most `max` entries (so a caller holding the
    /// tally holds it for a bounded time; [`Tally::behind`] says what is left).
    pub fn refresh_at_most(&mut self, max: u64) -> Result<u64, StoreError> {
        let covered = latest_checkpoint(&self.log)?.map_or(0, |r| r.size);
        self.covered = self.covered.max(covered);
        let covered = covered.min(self.next.saturating_add(max));
        if self.next >= covered {
            return Ok(0);
        }
        let view = crate::segments::LogView::open(&self.log)?;
        if self.offset < view.start() {
            // Retention removed what was not counted yet (only before the first count).
            if self.next == 0 {
                self.removed = view.first_index();
            }
            self.offset = view.start();
            self.next = view.first_index();
        }
        let mut reader =
            std::io::BufReader::with_capacity(1 << 20, view.reader(self.offset, u64::MAX));
        let mut buf = Vec::new();
        let mut counted = 0;
        while self.next < covered {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(io("read", &self.log))?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            self.offset += n as u64;
            let index = self.next;
            self.next += 1;
            counted += 1;
            buf.pop();
            self.count(index, &buf);
        }
        if counted > 0 {
            self.usage.prune();
        }
        Ok(counted)
    }

    fn count(&mut self, index: u64, line: &[u8]) {
        let Ok(e) = entry::parse_line(line) else {
            *self.kinds.entry("malformed".into()).or_default() += 1;
            return;
        };
        let t = e.header.time.as_micros();
        let h = self.hours.entry(t / HOUR_MICROS).or_default();
        h.entries += 1;
        match e.header.kind {
            "model.access" => h.granted += 1,
            "model.denied" => h.denied += 1,
            "auth.failure" => h.auth_failures += 1,
            "incident" => h.incidents += 1,
            _ => {}
        }
        let kind = if e.header.kind.len() <= MAX_KIND
            && (self.kinds.len() < MAX_KINDS || self.kinds.contains_key(e.header.kind))
        {
            e.header.kind
        } else {
            "other"
        };
        *self.kinds.entry(kind.to_owned()).or_default() += 1;
        let epoch = e.header.epoch;
        match self.epochs.last_mut() {
            Some(s) if s.epoch == epoch => {
                s.end = s.end.max(t);
                s.entries += 1;
            }
            _ => self.epochs.push(EpochSpan {
                epoch,
                start: t,
                end: t,
                entries: 1,
            }),
        }
        if e.header.kind == KIND_ROTATION
            && let Some(sk) = self.auditor.as_deref()
        {
            let k = RotationRecord::decode(e.header.rotation.unwrap_or_default())
                .ok()
                .and_then(|r| r.unwrap_data_key(sk).ok().flatten());
            self.key = Some((epoch, k));
        }
        let mut pt = Vec::new();
        let opened = match &self.key {
            Some((k_epoch, Some(k))) if *k_epoch == epoch => e.open(k, &mut pt).is_ok(),
            _ => false,
        };
        if opened && let Ok(seen) = serde_json::from_slice::<Seen<'_>>(&pt) {
            self.usage.add(e.header.kind, t, &seen);
        }
        if !OPENED.contains(&e.header.kind) {
            return;
        }
        let event = opened
            .then(|| serde_json::from_slice::<serde_json::Value>(&pt).ok())
            .flatten();
        let time = e.header.time.to_string();
        match e.header.kind {
            "incident" => {
                let v = incident_view(index, time, event);
                *self.open.entry(v.severity.clone()).or_default() += 1;
                self.incidents.push(v);
            }
            "incident.ack" => {
                // Incidents are kept in index order.
                if let Some((i, ack)) = ack_of(index, &time, event.as_ref())
                    && let Ok(at) = self.incidents.binary_search_by_key(&i, |x| x.index)
                    && let Some(inc) = self.incidents.get_mut(at)
                    && inc.acknowledged.is_none()
                {
                    inc.acknowledged = Some(ack);
                    if let Some(n) = self.open.get_mut(&inc.severity) {
                        *n = n.saturating_sub(1);
                    }
                    self.acknowledged += 1;
                }
            }
            _ => {
                self.verification = Some(VerificationRun {
                    index,
                    time,
                    details: event.and_then(|v| v.get("details").cloned()),
                });
            }
        }
    }

    /// Index of the next entry to count (the ledger's size when last refreshed).
    #[must_use]
    pub fn size(&self) -> u64 {
        self.next
    }

    /// Entries signed into the ledger but not counted yet (as of the last refresh).
    #[must_use]
    pub fn behind(&self) -> u64 {
        self.covered.saturating_sub(self.next)
    }

    /// Entries retention had removed before counting began (they are not counted).
    #[must_use]
    pub fn removed(&self) -> u64 {
        self.removed
    }

    /// Counts by UTC hour (hours since the Unix epoch), from `from` on.
    pub fn hours_from(&self, from: u64) -> impl Iterator<Item = (u64, HourCounts)> + '_ {
        self.hours.range(from..).map(|(h, c)| (*h, *c))
    }

    /// Entries by public kind.
    #[must_use]
    pub fn kinds(&self) -> &BTreeMap<String, u64> {
        &self.kinds
    }

    /// Key epochs in order.
    #[must_use]
    pub fn epochs(&self) -> &[EpochSpan] {
        &self.epochs
    }

    /// Incidents in order, with acknowledgements applied.
    #[must_use]
    pub fn incidents(&self) -> &[IncidentView] {
        &self.incidents
    }

    /// Incidents not acknowledged, by severity (kept as entries arrive).
    #[must_use]
    pub fn open_incidents(&self) -> &BTreeMap<String, u64> {
        &self.open
    }

    /// Incidents acknowledged.
    #[must_use]
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// The latest scheduled verification run, if one ran.
    #[must_use]
    pub fn verification(&self) -> Option<&VerificationRun> {
        self.verification.as_ref()
    }

    /// Who used what (empty without an auditor key).
    #[must_use]
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Whether incidents are decrypted (an auditor key was given).
    #[must_use]
    pub fn decrypts(&self) -> bool {
        self.auditor.is_some()
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("log", &self.log)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// Counts by hour summed by UTC day (days since the Unix epoch).
#[must_use]
pub fn by_day(hours: impl Iterator<Item = (u64, HourCounts)>) -> BTreeMap<u64, HourCounts> {
    let mut out: BTreeMap<u64, HourCounts> = BTreeMap::new();
    for (h, c) in hours {
        let d = out.entry(h / 24).or_default();
        d.granted += c.granted;
        d.denied += c.denied;
        d.auth_failures += c.auth_failures;
        d.incidents += c.incidents;
        d.entries += c.entries;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn days_sum_their_hours() {
        let h = |g| HourCounts {
            granted: g,
            entries: g,
            ..HourCounts::default()
        };
        let days = by_day([(0, h(1)), (23, h(2)), (24, h(5))].into_iter());
        assert_eq!(days.get(&0).unwrap().granted, 3);
        assert_eq!(days.get(&1).unwrap().entries, 5);
    }
}
