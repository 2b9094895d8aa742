//! The export loop: read covered entries from the cursor on, format, send, confirm,
//! save the cursor; on any failure drop the connection, go back to the cursor and try
//! again with backoff.
//!
//! Delivery is at-least-once and in index order: the cursor moves only past what the
//! receiver confirmed ([`crate::transport`]), so a crash of either side costs
//! duplicates, never gaps. The exporter only reads the ledger's files, from its own
//! thread; it holds no lock the ledger takes and never slows an append. It keeps one
//! chunk of entries in memory however far behind it is.

use crate::cursor::{Cursor, CursorStore};
use crate::error::SiemError;
use crate::format::{Encoder, Format, Item};
use crate::source::{Position, Source};
use crate::transport::{self, Ack, Batch, Destination, HttpOptions, TlsFiles, Transport};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use warden_core::crypto::RecipientSecretKey;
use warden_core::entry::Event;
use warden_core::time::Timestamp;
use zeroize::Zeroizing;

/// One sink: where, in which format, with which keys.
#[derive(Clone, Debug)]
pub struct SinkSpec {
    /// Names the cursor (`[A-Za-z0-9._-]`).
    pub name: String,
    pub dest: Destination,
    pub format: Format,
    /// Decrypts events for the formats that show them.
    pub auditor: Option<Arc<RecipientSecretKey>>,
    pub tls: TlsFiles,
    /// Export signed checkpoints after the entries they cover.
    pub checkpoints: bool,
    pub ack: Ack,
    /// HEC token for `http(s)://` destinations.
    pub hec_token: Option<Zeroizing<String>>,
    /// First entry to export when the sink has no cursor yet.
    pub start: u64,
}

impl SinkSpec {
    /// What, besides the format, decides the messages this sink sends: whether events
    /// are decrypted (and with which auditor key) and whether checkpoints go too. Part
    /// of the sink's identity: its cursor is kept for these settings only.
    #[must_use]
    pub fn sends(&self) -> String {
        let events = match &self.auditor {
            Some(k) if self.format.shows_events() => format!("decrypted:{}", k.public().id()),
            _ => "encrypted".to_owned(),
        };
        let cps = if self.checkpoints {
            "checkpoints"
        } else {
            "no-checkpoints"
        };
        format!("{events},{cps}")
    }

    /// Names the sink after everything that decides what it sends (destination,
    /// format, decryption, checkpoints), so two sinks that send different things
    /// never share a cursor. Call after setting those.
    pub fn derive_name(&mut self) {
        let mut name = default_name(&self.dest, self.format);
        if let Some(k) = &self.auditor
            && self.format.shows_events()
        {
            name = format!("{name}-decrypted-{}", k.public().id());
        }
        if self.checkpoints != self.format.checkpoints_by_default() {
            name.push_str(if self.checkpoints {
                "-checkpoints"
            } else {
                "-no-checkpoints"
            });
        }
        // Over-long names keep their distinguishing end.
        let n = name.chars().count();
        self.name = name
            .chars()
            .skip(n.saturating_sub(crate::cursor::MAX_NAME_LEN))
            .collect::<String>()
            .trim_start_matches(['.', '-'])
            .to_owned();
    }

    /// A sink with the format's defaults; the name is derived from the destination.
    #[must_use]
    pub fn new(dest: Destination, format: Format) -> Self {
        let name = default_name(&dest, format);
        Self {
            name,
            dest,
            format,
            auditor: None,
            tls: TlsFiles::default(),
            checkpoints: format.checkpoints_by_default(),
            ack: Ack::Close,
            hec_token: None,
            start: 0,
        }
    }

    /// Checks the combination. Decrypted events leave this machine only over TLS.
    pub fn validate(&self) -> Result<(), SiemError> {
        let bad = |what, detail: String| Err(SiemError::Spec { what, detail });
        if !crate::cursor::valid_name(&self.name) {
            return bad(
                "name",
                format!("{:?}: use 1 to 64 of A-Z a-z 0-9 . _ -", self.name),
            );
        }
        let tls_dest = matches!(
            self.dest,
            Destination::Tls { .. } | Destination::Http { tls: true, .. }
        );
        if !tls_dest && self.tls != TlsFiles::default() {
            return bad(
                "tls",
                format!(
                    "TLS files given for {}, which is not a TLS destination (use tls:// or https://)",
                    self.dest
                ),
            );
        }
        if self.auditor.is_some()
            && self.format.shows_events()
            && !self.dest.is_protected()
            && !self.dest.is_loopback()
        {
            return bad(
                "destination",
                format!(
                    "{} is off this machine and not encrypted: decrypted events are sent only over tls:// or https://",
                    self.dest
                ),
            );
        }
        if self.hec_token.is_some() && !matches!(self.dest, Destination::Http { .. }) {
            return bad(
                "hec token",
                "a HEC token is only for http(s):// destinations".into(),
            );
        }
        Ok(())
    }
}

/// `<scheme>-<host>-<port>-<format>` with characters outside `[A-Za-z0-9._-]` as `_`.
#[must_use]
pub fn default_name(dest: &Destination, format: Format) -> String {
    let raw = format!("{dest}-{}", format.name());
    let mut s: String = raw
        .replace("://", "-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches(|c| c == '-' || c == '.');
    s.chars().take(crate::cursor::MAX_NAME_LEN).collect()
}

/// How the loop paces itself.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keep following the ledger; otherwise stop once everything covered is delivered.
    pub follow: bool,
    /// How often to look for new checkpoints when caught up.
    pub poll: Duration,
    /// Longest time sent entries stay unconfirmed.
    pub confirm_every: Duration,
    /// Most entries sent before a confirmation.
    pub max_unconfirmed: u64,
    /// Most entries per batch.
    pub batch: usize,
    /// Without `follow`: consecutive failures before giving up (the cursor keeps what
    /// was confirmed).
    pub max_failures: u32,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            follow: false,
            poll: Duration::from_millis(50),
            confirm_every: Duration::from_secs(1),
            max_unconfirmed: 1_000_000,
            batch: 16_384,
            max_failures: 5,
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Live figures of a running exporter, readable from other threads.
#[derive(Debug, Default)]
pub struct Stats {
    /// Index of the next entry to confirm.
    pub next: AtomicU64,
    /// Entries covered by a checkpoint.
    pub covered: AtomicU64,
    /// Entries confirmed delivered by this run.
    pub delivered: AtomicU64,
    /// Entries sent (confirmed or not) by this run, retries included.
    pub sent: AtomicU64,
    /// Failed sends or confirmations by this run.
    pub failures: AtomicU64,
    /// The last failure.
    pub last_error: Mutex<Option<String>>,
}

impl Stats {
    /// Covered entries not yet confirmed.
    #[must_use]
    pub fn lag(&self) -> u64 {
        self.covered
            .load(Ordering::Relaxed)
            .saturating_sub(self.next.load(Ordering::Relaxed))
    }
}

/// Reads the machine's host name for syslog headers.
#[must_use]
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn now() -> Option<String> {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_micros();
    Timestamp::from_micros(u64::try_from(micros).ok()?).map(|t| t.to_string())
}

/// One sink's exporter.
#[derive(Debug)]
pub struct Exporter {
    spec: SinkSpec,
    store: CursorStore,
    cursor: Cursor,
    source: Source,
    transport: Box<dyn Transport>,
    encoder: Encoder,
    batch: Batch,
    plaintext: Vec<u8>,
    lag_gauge: metrics::Gauge,
    delivered_counter: metrics::Counter,
    failure_counter: metrics::Counter,
}

impl Exporter {
    /// Opens the sink: locks and loads its cursor under `export_dir`, checks it against
    /// the ledger at `log`, and prepares the transport (connecting happens on the first
    /// send).
    pub fn open(log: &Path, export_dir: &Path, spec: SinkSpec) -> Result<Self, SiemError> {
        Self::open_shared(log, export_dir, spec, None)
    }

    /// [`Exporter::open`], with the cursor also kept in `shared` (a cluster's database):
    /// it resumes from whichever copy is further along.
    pub fn open_shared(
        log: &Path,
        export_dir: &Path,
        spec: SinkSpec,
        shared: Option<std::sync::Arc<dyn crate::cursor::SharedCursors>>,
    ) -> Result<Self, SiemError> {
        spec.validate()?;
        let mut store = CursorStore::open(export_dir, &spec.name)?;
        if let Some(s) = shared {
            store = store.with_shared(s);
        }
        let saved = store.load()?;
        let to = spec.dest.to_string();
        let (cursor, source) = match saved {
            Some(c) => {
                if c.format != spec.format.name() {
                    return Err(SiemError::Spec {
                        what: "format",
                        detail: format!(
                            "sink {} was exported as {}; give it another --name to export as {}",
                            spec.name,
                            c.format,
                            spec.format.name()
                        ),
                    });
                }
                let sends = spec.sends();
                if let Some(was) = c.sends.as_deref()
                    && was != sends
                {
                    return Err(SiemError::Spec {
                        what: "name",
                        detail: format!(
                            "sink {} was exported as {was}; give it another --name to export as {sends} (its cursor says what it already delivered)",
                            spec.name
                        ),
                    });
                }
                let source = Source::open(log, c.position.clone(), spec.auditor.clone())?;
                (
                    Cursor {
                        to,
                        sends: Some(sends),
                        ..c
                    },
                    source,
                )
            }
            None => {
                let mut source = Source::open(log, Position::default(), spec.auditor.clone())?;
                if spec.start > 0 {
                    source.seek_index(spec.start)?;
                }
                let c = Cursor {
                    sink: spec.name.clone(),
                    to,
                    format: spec.format.name().into(),
                    sends: Some(spec.sends()),
                    position: source.position().clone(),
                    ..Cursor::default()
                };
                (c, source)
            }
        };
        let tls = match spec.dest {
            Destination::Tls { .. } | Destination::Http { tls: true, .. } => {
                Some(transport::client_config(&spec.tls)?)
            }
            _ => None,
        };
        let host = hostname();
        let http = HttpOptions {
            token: spec.hec_token.clone(),
            host: host.clone(),
            sourcetype: format!("warden:{}", spec.format.name()),
            json: spec.format.is_json(),
        };
        let transport = transport::open(
            &spec.dest,
            tls,
            spec.format == Format::Policy,
            spec.ack,
            http,
        )?;
        let encoder = Encoder::new(spec.format, spec.dest.is_syslog(), &host);
        let label = spec.name.clone();
        Ok(Self {
            lag_gauge: metrics::gauge!("warden_siem_lag_entries", "sink" => label.clone()),
            delivered_counter: metrics::counter!("warden_siem_delivered_entries_total", "sink" => label.clone()),
            failure_counter: metrics::counter!("warden_siem_failures_total", "sink" => label),
            spec,
            store,
            cursor,
            source,
            transport,
            encoder,
            batch: Batch::default(),
            plaintext: Vec::new(),
        })
    }

    /// The sink's cursor as last saved.
    #[must_use]
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// Reads up to `max` entries into the batch, and the checkpoint that ends them.
    fn fill(&mut self, max: usize) -> Result<usize, SiemError> {
        let Self {
            source,
            encoder,
            batch,
            plaintext,
            spec,
            ..
        } = self;
        let events = spec.auditor.is_some() && spec.format.shows_events();
        let n = source.read(max, |v| {
            let mut error = None;
            let mut event = None;
            if events {
                plaintext.clear();
                match v.key {
                    Ok(k) => match v.entry.open(k, plaintext) {
                        Ok(()) => match Event::from_plaintext(plaintext) {
                            Ok(e) => event = Some(e),
                            Err(_) => error = Some("undecodable event"),
                        },
                        Err(_) => error = Some("decryption failed"),
                    },
                    Err(why) => error = Some(why),
                }
            }
            let item = Item {
                entry: v.entry,
                line: v.line,
                decrypted: event.as_ref().map(|e| (plaintext.as_slice(), e)),
                error,
            };
            encoder.entry(&item, &mut batch.data);
            batch.end_message(v.entry.header.time.as_micros());
        })?;
        if spec.checkpoints
            && let Some(c) = source.take_checkpoint()
        {
            encoder.checkpoint(&c, &mut batch.data);
            batch.end_message(c.time.as_micros());
        }
        Ok(n)
    }

    /// Whether something was sent since the cursor was saved.
    fn pending(&self) -> bool {
        let (p, c) = (self.source.position(), &self.cursor.position);
        p.next != c.next || p.checkpoint_exported != c.checkpoint_exported
    }

    fn publish(&self, stats: &Stats) {
        stats
            .next
            .store(self.cursor.position.next, Ordering::Relaxed);
        stats
            .covered
            .store(self.source.covered(), Ordering::Relaxed);
        #[expect(clippy::cast_precision_loss, reason = "a gauge of entries")]
        self.lag_gauge.set(stats.lag() as f64);
    }

    /// Saves the cursor at `pos` with `delta` more entries delivered.
    fn commit(&mut self, pos: Position, delta: u64, stats: &Stats) -> Result<(), SiemError> {
        self.cursor.position = pos;
        self.cursor.delivered += delta;
        self.cursor.covered = self.source.covered();
        self.cursor.updated = now();
        self.cursor.last_error = None;
        self.cursor.last_error_at = None;
        self.store.save(&self.cursor)?;
        stats.delivered.fetch_add(delta, Ordering::Relaxed);
        self.delivered_counter.increment(delta);
        self.publish(stats);
        Ok(())
    }

    /// Runs until caught up (or forever with `follow`) or until `stop` is set. Returns
    /// the cursor as saved last.
    pub fn run(
        &mut self,
        opts: &Options,
        stop: &AtomicBool,
        stats: &Stats,
    ) -> Result<Cursor, SiemError> {
        let mut unconfirmed = 0u64;
        let mut since: Option<Instant> = None;
        let mut last_sent = Instant::now();
        let mut failures = 0u32;
        let mut backoff = Duration::from_millis(100);
        self.publish(stats);
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if self.source.position().next >= self.source.covered() {
                self.source.poll_checkpoints()?;
            }
            self.batch.clear();
            let mut n = 0;
            if !stopping {
                let room = usize::try_from(opts.max_unconfirmed.saturating_sub(unconfirmed))
                    .unwrap_or(usize::MAX);
                n = self.fill(opts.batch.min(room))?;
            }
            let mut failed = None;
            if !self.batch.is_empty() {
                match self.transport.send(&self.batch) {
                    Ok(()) => {
                        unconfirmed += n as u64;
                        stats.sent.fetch_add(n as u64, Ordering::Relaxed);
                        since.get_or_insert_with(Instant::now);
                        last_sent = Instant::now();
                    }
                    Err(e) => failed = Some(format!("sending to {}: {e}", self.spec.dest)),
                }
            }
            let caught_up = self.batch.is_empty();
            let pending = self.pending();
            let due = pending
                && failed.is_none()
                && (stopping
                    || (caught_up && (!opts.follow || last_sent.elapsed() >= opts.poll * 4))
                    || since.is_some_and(|t| t.elapsed() >= opts.confirm_every)
                    || unconfirmed >= opts.max_unconfirmed);
            if due {
                match self.transport.confirm() {
                    Ok(()) => {
                        let pos = self.source.position().clone();
                        self.commit(pos, unconfirmed, stats)?;
                        unconfirmed = 0;
                        since = None;
                        failures = 0;
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        failed = Some(format!("confirming delivery to {}: {e}", self.spec.dest));
                    }
                }
            }
            if let Some(msg) = failed {
                // Back to the last confirmed position; what followed is sent again.
                self.transport.reset();
                self.source.rewind(&self.cursor.position);
                unconfirmed = 0;
                since = None;
                failures += 1;
                stats.failures.fetch_add(1, Ordering::Relaxed);
                self.failure_counter.increment(1);
                if let Ok(mut l) = stats.last_error.lock() {
                    *l = Some(msg.clone());
                }
                self.cursor.last_error = Some(msg.clone());
                self.cursor.last_error_at = now();
                self.cursor.covered = self.source.covered();
                // The status is informative; failing to save it changes nothing.
                let _ = self.store.save(&self.cursor);
                if stopping || (!opts.follow && failures >= opts.max_failures) {
                    return Err(SiemError::Delivery {
                        attempts: failures,
                        detail: msg,
                    });
                }
                sleep_unless(stop, backoff);
                backoff = (backoff * 2).min(opts.max_backoff);
                continue;
            }
            self.publish(stats);
            if caught_up {
                let pending = self.pending();
                if stopping || (!opts.follow && !pending) {
                    return Ok(self.cursor.clone());
                }
                sleep_unless(stop, opts.poll);
            }
        }
    }
}

/// Sleeps for `d`, waking early when `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid() {
        for url in [
            "tcp://127.0.0.1:5514",
            "tls://[::1]:6514",
            "file:/var/log/warden siem.log",
            "https://siem.example.com:8088/services/collector/event",
        ] {
            let d = Destination::parse(url).unwrap();
            let n = default_name(&d, Format::Ocsf);
            assert!(crate::cursor::valid_name(&n), "{url} -> {n}");
        }
        assert_eq!(
            default_name(
                &Destination::parse("tcp://127.0.0.1:5514").unwrap(),
                Format::Policy
            ),
            "tcp-127.0.0.1-5514-policy"
        );
    }
}
