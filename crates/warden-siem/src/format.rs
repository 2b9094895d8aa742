//! Message formats: how one ledger entry or checkpoint becomes one SIEM message.
//!
//! | format | payload |
//! |---|---|
//! | `policy` | `AUDIT_LOG_ENTRY:<hex of encrypted>`, exactly the line of the policy's `jq`/`nc` pipeline |
//! | `rfc5424` | a syslog message: MSGID = kind, structured data `warden@32473` (origin, index, epoch, kind) and, decrypted, `event@32473`; MSG = the ledger line itself |
//! | `cef` | ArcSight CEF:0 with the decrypted fields in standard keys |
//! | `ocsf` | OCSF 1.3 JSON: File Hosting Activity 6006 (model access), Authentication 3002, Detection Finding 2004 (incidents), API Activity 6003 (everything else) |
//! | `ecs` | Elastic Common Schema 8.11 JSON, the ledger line in `event.original` |
//! | `json` | the ledger line with the decrypted event added as `"event"` |
//!
//! Every checkpoint message carries the signed note as `warden-checkpoint:<base64url>`
//! ([`warden_core::checkpoint::export_token`]), a form no format's escaping changes, so
//! the line a SIEM stored can be handed to `warden verify --trusted-checkpoint` as it is.
//!
//! The formatter writes the payload only; network syslog transports put an RFC 5424
//! header in front of the `cef`, `ocsf`, `ecs` and `json` payloads ([`Encoder::new`]'s
//! `envelope`).

use serde_json::{Map, Value, json};
use std::net::IpAddr;
use warden_core::entry::{EntryRef, Event, push_u64};
use warden_core::time::Timestamp;

/// Prefix of a `policy` line, as the policy documents it.
pub const POLICY_PREFIX: &[u8] = b"AUDIT_LOG_ENTRY:";
/// RFC 5424 structured-data IDs. 32473 is the private enterprise number reserved for
/// documentation (RFC 5612); operators who need their own can post-process.
pub const SD_ENTRY: &str = "warden@32473";
/// Decrypted event fields.
pub const SD_EVENT: &str = "event@32473";
/// A checkpoint.
pub const SD_CHECKPOINT: &str = "checkpoint@32473";
/// Syslog facility 13, "log audit".
const FACILITY: u8 = 13;
/// APP-NAME in syslog headers, vendor and product in CEF and OCSF.
const APP: &str = "warden";
const PRODUCT: &str = "Warden";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A message format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    Policy,
    Rfc5424,
    Cef,
    Ocsf,
    Ecs,
    Json,
}

impl Format {
    /// Every format, in documentation order.
    pub const ALL: [Format; 6] = [
        Format::Policy,
        Format::Rfc5424,
        Format::Cef,
        Format::Ocsf,
        Format::Ecs,
        Format::Json,
    ];

    /// Parses a format name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Format::Policy => "policy",
            Format::Rfc5424 => "rfc5424",
            Format::Cef => "cef",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
            Format::Json => "json",
        }
    }

    /// Whether the payload is a JSON object.
    #[must_use]
    pub fn is_json(self) -> bool {
        matches!(self, Format::Ocsf | Format::Ecs | Format::Json)
    }

    /// Whether the payload needs a syslog header on a network syslog transport.
    #[must_use]
    pub fn wants_envelope(self) -> bool {
        !matches!(self, Format::Policy | Format::Rfc5424)
    }

    /// Whether checkpoints are exported unless configured otherwise. The `policy`
    /// format carries exactly the documented entry lines.
    #[must_use]
    pub fn checkpoints_by_default(self) -> bool {
        self != Format::Policy
    }

    /// Whether the format can show decrypted fields.
    #[must_use]
    pub fn shows_events(self) -> bool {
        self != Format::Policy
    }
}

/// One ledger entry, as the formatter sees it.
#[derive(Debug)]
pub struct Item<'a> {
    pub entry: &'a EntryRef<'a>,
    /// The exact ledger line (without newline).
    pub line: &'a [u8],
    /// The decrypted event JSON and its parsed form, with an auditor key.
    pub decrypted: Option<(&'a [u8], &'a Event)>,
    /// Why an auditor key did not yield the event.
    pub error: Option<&'static str>,
}

/// A signed checkpoint, exported after the entries it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub epoch: u64,
    /// The C2SP signed note.
    pub note: String,
    /// Time of the last entry it covers.
    pub time: Timestamp,
}

impl Checkpoint {
    /// `warden-checkpoint:<base64url of the note>`.
    #[must_use]
    pub fn token(&self) -> String {
        warden_core::checkpoint::export_token(&self.note)
    }
}

/// Writes messages of one format.
#[derive(Clone, Debug)]
pub struct Encoder {
    format: Format,
    envelope: bool,
    host: String,
}

/// Syslog severity (RFC 5424 numbering) of an entry.
fn severity(kind: &str, ev: Option<&Event>) -> u8 {
    match kind {
        "incident" => match incident_severity(ev) {
            Some("CRITICAL") => 2,
            Some("HIGH") => 3,
            _ => 4,
        },
        "model.denied" | "auth.failure" | "system.recovery" => 5,
        _ => 6,
    }
}

fn incident_severity(ev: Option<&Event>) -> Option<&str> {
    ev?.details.as_ref()?.get("severity")?.as_str()
}

impl Encoder {
    /// An encoder for `format`. With `envelope`, the `cef`, `ocsf`, `ecs` and `json`
    /// payloads get an RFC 5424 header (network syslog transports). `host` is the
    /// syslog HOSTNAME and the observer's name.
    #[must_use]
    pub fn new(format: Format, envelope: bool, host: &str) -> Self {
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        Self {
            format,
            envelope: envelope && format.wants_envelope(),
            host: if host.is_empty() { "-".into() } else { host },
        }
    }

    /// The format.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    fn header(&self, sev: u8, time: Timestamp, msgid: &str, out: &mut Vec<u8>) {
        out.push(b'<');
        push_u64(out, u64::from(FACILITY * 8 + sev));
        out.extend_from_slice(b">1 ");
        time.write_to(out);
        out.push(b' ');
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(APP.as_bytes());
        out.extend_from_slice(b" - ");
        // MSGID: at most 32 printable ASCII characters.
        let id: Vec<u8> = msgid
            .bytes()
            .filter(u8::is_ascii_graphic)
            .take(32)
            .collect();
        if id.is_empty() {
            out.push(b'-');
        } else {
            out.extend_from_slice(&id);
        }
        out.push(b' ');
    }

    /// Appends the message for one entry to `out` (no framing).
    pub fn entry(&self, it: &Item<'_>, out: &mut Vec<u8>) {
        let h = &it.entry.header;
        let ev = it.decrypted.map(|(_, e)| e);
        let sev = severity(h.kind, ev);
        if self.envelope {
            self.header(sev, h.time, h.kind, out);
            out.extend_from_slice(b"- ");
        }
        match self.format {
            Format::Policy => {
                out.extend_from_slice(POLICY_PREFIX);
                out.extend_from_slice(it.entry.encrypted_hex);
            }
            Format::Rfc5424 => self.rfc5424(it, sev, out),
            Format::Json => {
                // The ledger line ends with '}'; the event goes in before it.
                let body = it.line.strip_suffix(b"}").unwrap_or(it.line);
                out.extend_from_slice(body);
                if let Some((pt, _)) = it.decrypted {
                    out.extend_from_slice(b",\"event\":");
                    out.extend_from_slice(pt);
                }
                if let Some(e) = it.error {
                    out.extend_from_slice(b",\"event_error\":");
                    json_str(e, out);
                }
                out.push(b'}');
            }
            Format::Ecs => write_json(&self.ecs(it, sev), out),
            Format::Ocsf => write_json(&ocsf(it, sev), out),
            Format::Cef => self.cef(it, sev, out),
        }
    }

    /// Appends the message for a checkpoint to `out` (no framing).
    pub fn checkpoint(&self, c: &Checkpoint, out: &mut Vec<u8>) {
        const KIND: &str = "checkpoint";
        let token = c.token();
        if self.envelope {
            self.header(6, c.time, KIND, out);
            out.extend_from_slice(b"- ");
        }
        match self.format {
            Format::Policy => out.extend_from_slice(token.as_bytes()),
            Format::Rfc5424 => {
                self.header(6, c.time, KIND, out);
                out.push(b'[');
                out.extend_from_slice(SD_CHECKPOINT.as_bytes());
                sd_param("origin", &c.origin, out);
                sd_param("size", &c.size.to_string(), out);
                sd_param("epoch", &c.epoch.to_string(), out);
                out.extend_from_slice(b"] ");
                out.extend_from_slice(token.as_bytes());
            }
            Format::Json => write_json(
                &json!({
                    "type": KIND, "origin": c.origin, "size": c.size, "epoch": c.epoch,
                    "time": c.time.to_string(), "note": c.note, "checkpoint": token,
                }),
                out,
            ),
            Format::Ecs => write_json(
                &json!({
                    "@timestamp": c.time.to_string(),
                    "ecs": {"version": "8.11.0"},
                    "message": token,
                    "event": {"kind": "state", "category": ["configuration"], "type": ["info"],
                              "action": KIND, "dataset": "warden.audit", "provider": APP},
                    "observer": self.observer(),
                    "warden": {"origin": c.origin, "checkpoint": {"size": c.size, "epoch": c.epoch, "note": c.note}},
                }),
                out,
            ),
            Format::Ocsf => write_json(
                &json!({
                    "class_uid": 0, "category_uid": 0, "activity_id": 99, "type_uid": 99,
                    "severity_id": 1, "severity": "Informational",
                    "time": c.time.as_micros() / 1000,
                    "message": token,
                    "metadata": metadata(&c.origin, None),
                    "unmapped": {"warden": {"origin": c.origin, "checkpoint": {"size": c.size, "epoch": c.epoch, "note": c.note}}},
                }),
                out,
            ),
            Format::Cef => {
                cef_header(KIND, "ledger checkpoint", 6, out);
                cef_ext("rt", &(c.time.as_micros() / 1000).to_string(), out);
                cef_ext("dvchost", &self.host, out);
                cef_labelled("cs1", "origin", &c.origin, out);
                cef_labelled("cn1", "epoch", &c.epoch.to_string(), out);
                cef_labelled("cn3", "size", &c.size.to_string(), out);
                cef_ext("msg", &token, out);
                if out.last() == Some(&b' ') {
                    out.pop();
                }
            }
        }
    }

    fn rfc5424(&self, it: &Item<'_>, sev: u8, out: &mut Vec<u8>) {
        let h = &it.entry.header;
        self.header(sev, h.time, h.kind, out);
        out.push(b'[');
        out.extend_from_slice(SD_ENTRY.as_bytes());
        sd_param("origin", h.origin, out);
        sd_param("index", &h.index.to_string(), out);
        sd_param("epoch", &h.epoch.to_string(), out);
        sd_param("kind", h.kind, out);
        if let Some(e) = it.error {
            sd_param("error", e, out);
        }
        out.push(b']');
        if let Some((_, ev)) = it.decrypted {
            out.push(b'[');
            out.extend_from_slice(SD_EVENT.as_bytes());
            for (name, v) in event_fields(ev) {
                sd_param(name, v, out);
            }
            if let Some(d) = &ev.details {
                sd_param("details", &d.to_string(), out);
            }
            out.push(b']');
        }
        out.push(b' ');
        out.extend_from_slice(it.line);
    }

    fn observer(&self) -> Value {
        json!({"vendor": PRODUCT, "product": PRODUCT, "version": VERSION, "hostname": self.host})
    }

    fn ecs(&self, it: &Item<'_>, sev: u8) -> Value {
        let h = &it.entry.header;
        let ev = it.decrypted.map(|(_, e)| e);
        let (category, types): (&[&str], &[&str]) = match h.kind {
            "model.access" => (&["file"], &["access", "allowed"]),
            "model.denied" => (&["file"], &["access", "denied"]),
            "incident" => (&["intrusion_detection"], &["indicator"]),
            "key.rotation" | "config.change" | "policy.change" => (&["configuration"], &["change"]),
            "system.start" => (&["process"], &["start"]),
            "system.stop" => (&["process"], &["end"]),
            k if k.starts_with("auth.") => (&["authentication"], &["info"]),
            k if k.starts_with("registry.")
                || k.starts_with("principal.")
                || k.starts_with("token.") =>
            {
                (&["iam", "configuration"], &["change"])
            }
            _ => (&["process"], &["info"]),
        };
        let outcome = match (h.kind, ev.and_then(|e| e.decision.as_deref())) {
            ("auth.failure" | "model.denied", _) | (_, Some("deny")) => "failure",
            (_, Some("allow")) => "success",
            _ => "unknown",
        };
        let mut event = Map::new();
        event.insert(
            "kind".into(),
            (if h.kind == "incident" {
                "alert"
            } else {
                "event"
            })
            .into(),
        );
        event.insert("category".into(), json!(category));
        event.insert("type".into(), json!(types));
        event.insert("action".into(), h.kind.into());
        event.insert("outcome".into(), outcome.into());
        event.insert("sequence".into(), h.index.into());
        event.insert("severity".into(), sev.into());
        event.insert("dataset".into(), "warden.audit".into());
        event.insert("provider".into(), APP.into());
        event.insert(
            "original".into(),
            String::from_utf8_lossy(it.line).into_owned().into(),
        );
        let mut doc = Map::new();
        doc.insert("@timestamp".into(), h.time.to_string().into());
        doc.insert("ecs".into(), json!({"version": "8.11.0"}));
        doc.insert("observer".into(), self.observer());
        if let Some(ev) = ev {
            if let Some(r) = &ev.reason {
                event.insert("reason".into(), r.as_str().into());
            }
            if let Some(u) = &ev.user {
                doc.insert("user".into(), json!({"name": u}));
            }
            if let Some(ip) = &ev.ip {
                let key = if ip.parse::<IpAddr>().is_ok() {
                    "ip"
                } else {
                    "address"
                };
                doc.insert("source".into(), json!({ key: ip }));
            }
            if let Some(ua) = &ev.user_agent {
                doc.insert("user_agent".into(), json!({"original": ua}));
            }
            if let Some(id) = &ev.request_id {
                doc.insert("http".into(), json!({"request": {"id": id}}));
            }
            if let Some(d) = &ev.digest {
                let hex = d.strip_prefix("sha256:").unwrap_or(d);
                doc.insert("file".into(), json!({"hash": {"sha256": hex}}));
            }
        }
        doc.insert("event".into(), Value::Object(event));
        doc.insert("warden".into(), warden_fields(it));
        Value::Object(doc)
    }

    fn cef(&self, it: &Item<'_>, sev: u8, out: &mut Vec<u8>) {
        let h = &it.entry.header;
        let name = h.kind.replace(['.', '_'], " ");
        cef_header(h.kind, &name, sev, out);
        cef_ext("rt", &(h.time.as_micros() / 1000).to_string(), out);
        cef_ext("externalId", &h.index.to_string(), out);
        cef_ext("cat", h.kind, out);
        cef_ext("dvchost", &self.host, out);
        cef_labelled("cs1", "origin", h.origin, out);
        cef_labelled("cn1", "epoch", &h.epoch.to_string(), out);
        if let Some(e) = it.error {
            cef_labelled("cs5", "error", e, out);
        }
        if let Some((_, ev)) = it.decrypted {
            let pairs = [
                ("suser", &ev.user),
                ("fname", &ev.model),
                ("act", &ev.action),
                ("outcome", &ev.decision),
                ("reason", &ev.reason),
                ("requestClientApplication", &ev.user_agent),
                ("fileHash", &ev.digest),
            ];
            for (k, v) in pairs {
                if let Some(v) = v {
                    cef_ext(k, v, out);
                }
            }
            if let Some(ip) = &ev.ip {
                let key = if ip.parse::<IpAddr>().is_ok() {
                    "src"
                } else {
                    "shost"
                };
                cef_ext(key, ip, out);
            }
            if let Some(v) = &ev.version {
                cef_labelled("cs2", "version", v, out);
            }
            if let Some(v) = &ev.request_id {
                cef_labelled("cs3", "requestId", v, out);
            }
            if let Some(d) = &ev.details {
                cef_labelled("cs4", "details", &d.to_string(), out);
            }
        }
        if out.last() == Some(&b' ') {
            out.pop();
        }
    }
}

/// The event's string fields with their names, in a fixed order.
fn event_fields(ev: &Event) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("user", &ev.user),
        ("ip", &ev.ip),
        ("model", &ev.model),
        ("version", &ev.version),
        ("action", &ev.action),
        ("decision", &ev.decision),
        ("reason", &ev.reason),
        ("request_id", &ev.request_id),
        ("user_agent", &ev.user_agent),
        ("digest", &ev.digest),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
}

/// The `warden` object of ECS and the `unmapped.warden` object of OCSF.
fn warden_fields(it: &Item<'_>) -> Value {
    let h = &it.entry.header;
    let mut m = Map::new();
    m.insert("origin".into(), h.origin.into());
    m.insert("index".into(), h.index.into());
    m.insert("epoch".into(), h.epoch.into());
    m.insert("kind".into(), h.kind.into());
    if let Some((_, ev)) = it.decrypted {
        for (k, v) in event_fields(ev) {
            m.insert(k.into(), v.into());
        }
        if let Some(d) = &ev.details {
            m.insert("details".into(), d.clone());
        }
    }
    if let Some(e) = it.error {
        m.insert("error".into(), e.into());
    }
    Value::Object(m)
}

fn metadata(origin: &str, index: Option<u64>) -> Value {
    let mut m = json!({
        "version": "1.3.0",
        "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": VERSION},
        "log_name": origin,
    });
    if let (Some(i), Some(o)) = (index, m.as_object_mut()) {
        o.insert("sequence".into(), i.into());
        o.insert("uid".into(), format!("{origin}/{i}").into());
    }
    m
}

/// OCSF 1.3 event for an entry.
fn ocsf(it: &Item<'_>, sev: u8) -> Value {
    let h = &it.entry.header;
    let ev = it.decrypted.map(|(_, e)| e);
    let action = ev.and_then(|e| e.action.as_deref()).unwrap_or("");
    let (class, category, activity): (u32, u32, u32) = match h.kind {
        "model.access" | "model.denied" => (
            6006,
            6,
            match action {
                "download" => 2,
                "load" => 14,
                _ => 99,
            },
        ),
        k if k.starts_with("auth.") => (3002, 3, 1),
        "incident" => (2004, 2, 1),
        k => (
            6003,
            6,
            match k.rsplit('.').next().unwrap_or("") {
                "register" | "upload" | "add" | "create" => 1,
                "read" | "list" | "show" => 2,
                "revoke" | "delete" => 4,
                "promote" | "retire" | "grant" | "suspend" | "enable" | "set" | "alias"
                | "change" | "rotation" => 3,
                _ => 99,
            },
        ),
    };
    let severity_id: u8 = match (h.kind, incident_severity(ev)) {
        ("incident", Some("CRITICAL")) => 5,
        ("incident", Some("HIGH")) => 4,
        ("incident", _) => 3,
        _ => match sev {
            0..=2 => 5,
            3 => 4,
            4 => 3,
            5 => 2,
            _ => 1,
        },
    };
    let severity = [
        "Unknown",
        "Informational",
        "Low",
        "Medium",
        "High",
        "Critical",
    ]
    .get(usize::from(severity_id))
    .copied()
    .unwrap_or("Unknown");
    let (status_id, status) = match (h.kind, ev.and_then(|e| e.decision.as_deref())) {
        ("auth.failure" | "model.denied", _) | (_, Some("deny")) => (2, "Failure"),
        (_, Some("allow")) => (1, "Success"),
        _ => (0, "Unknown"),
    };
    let mut doc = Map::new();
    doc.insert("class_uid".into(), class.into());
    doc.insert("category_uid".into(), category.into());
    doc.insert("activity_id".into(), activity.into());
    doc.insert(
        "type_uid".into(),
        (u64::from(class) * 100 + u64::from(activity)).into(),
    );
    doc.insert("severity_id".into(), severity_id.into());
    doc.insert("severity".into(), severity.into());
    doc.insert("status_id".into(), status_id.into());
    doc.insert("status".into(), status.into());
    doc.insert("time".into(), (h.time.as_micros() / 1000).into());
    doc.insert("metadata".into(), metadata(h.origin, Some(h.index)));
    doc.insert(
        "raw_data".into(),
        String::from_utf8_lossy(it.line).into_owned().into(),
    );
    if let Some(ev) = ev {
        if let Some(u) = &ev.user {
            doc.insert("actor".into(), json!({"user": {"name": u}}));
            if class == 3002 {
                doc.insert("user".into(), json!({"name": u}));
            }
        }
        if let Some(ip) = &ev.ip {
            doc.insert("src_endpoint".into(), json!({"ip": ip}));
        }
        if let Some(ua) = &ev.user_agent {
            doc.insert("http_request".into(), json!({"user_agent": ua}));
        }
        let subject = match (&ev.model, &ev.version) {
            (Some(m), Some(v)) => Some(format!("{m}@{v}")),
            (Some(m), None) => Some(m.clone()),
            _ => None,
        };
        match class {
            6006 => {
                let mut file = json!({"name": subject.unwrap_or_default(), "type_id": 1});
                if let (Some(d), Some(o)) = (&ev.digest, file.as_object_mut()) {
                    let hex = d.strip_prefix("sha256:").unwrap_or(d);
                    o.insert(
                        "hashes".into(),
                        json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": hex}]),
                    );
                }
                doc.insert("file".into(), file);
            }
            6003 => {
                doc.insert("api".into(), json!({"operation": h.kind}));
                if let Some(s) = subject {
                    doc.insert("resources".into(), json!([{"name": s, "type": "model"}]));
                }
            }
            2004 => {
                let d = ev.details.as_ref();
                let field = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str);
                // A detection names its detector and summary; an integrity failure its type.
                let title = field("detector").or(field("type")).unwrap_or("incident");
                let desc = field("summary")
                    .or(field("what"))
                    .map_or_else(|| ev.reason.clone().unwrap_or_default(), str::to_owned);
                let mut info = json!({"uid": format!("{}/{}", h.origin, h.index), "title": title,
                                      "desc": desc});
                // The triggering entries, by their ledger uids.
                if let (Some(evidence), Some(o)) = (
                    d.and_then(|d| d.get("evidence")).and_then(Value::as_array),
                    info.as_object_mut(),
                ) {
                    let related: Vec<Value> = evidence
                        .iter()
                        .filter_map(Value::as_u64)
                        .map(|i| json!({"uid": format!("{}/{i}", h.origin)}))
                        .collect();
                    o.insert("related_events".into(), related.into());
                }
                doc.insert("finding_info".into(), info);
            }
            _ => {}
        }
    }
    doc.insert("unmapped".into(), json!({"warden": warden_fields(it)}));
    Value::Object(doc)
}

fn write_json(v: &Value, out: &mut Vec<u8>) {
    // Writing a `Value` to a Vec cannot fail.
    let _ = serde_json::to_writer(out, v);
}

fn json_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, s);
}

/// ` name="value"` with RFC 5424 escaping (`"`, `\` and `]` get a backslash); control
/// characters become `#ooo` (octal), as rsyslog writes them.
fn sd_param(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for &b in value.as_bytes() {
        match b {
            b'"' | b'\\' | b']' => {
                out.push(b'\\');
                out.push(b);
            }
            0..=0x1f | 0x7f => {
                out.push(b'#');
                out.push(b'0' + (b >> 6));
                out.push(b'0' + ((b >> 3) & 7));
                out.push(b'0' + (b & 7));
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `CEF:0|Warden|Warden|version|signature|name|severity|`, with `|` and `\` escaped.
fn cef_header(signature: &str, name: &str, sev: u8, out: &mut Vec<u8>) {
    let cef_sev = match sev {
        0..=2 => 10,
        3 => 8,
        4 => 7,
        5 => 5,
        _ => 3,
    };
    out.extend_from_slice(b"CEF:0|");
    for field in [PRODUCT, PRODUCT, VERSION, signature, name] {
        for &b in field.as_bytes() {
            match b {
                b'|' | b'\\' => {
                    out.push(b'\\');
                    out.push(b);
                }
                b'\r' | b'\n' => out.push(b' '),
                _ => out.push(b),
            }
        }
        out.push(b'|');
    }
    push_u64(out, cef_sev);
    out.push(b'|');
}

/// A custom CEF field with its label: `keyLabel=label key=value `.
fn cef_labelled(key: &str, label: &str, value: &str, out: &mut Vec<u8>) {
    cef_ext(&format!("{key}Label"), label, out);
    cef_ext(key, value, out);
}

/// `key=value ` with CEF extension escaping (`\`, `=`, and line breaks as `\n`/`\r`).
fn cef_ext(key: &str, value: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    for &b in value.as_bytes() {
        match b {
            b'\\' | b'=' => {
                out.push(b'\\');
                out.push(b);
            }
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    out.push(b' ');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_values_are_escaped() {
        let mut out = Vec::new();
        sd_param("ua", "a\"b\\c]d\ne", &mut out);
        assert_eq!(out, b" ua=\"a\\\"b\\\\c\\]d#012e\"");
    }

    #[test]
    fn cef_values_are_escaped() {
        let mut out = Vec::new();
        cef_ext("msg", "a=b\\c\nd|e", &mut out);
        assert_eq!(out, b"msg=a\\=b\\\\c\\nd|e ");
        let mut h = Vec::new();
        cef_header("x|y", "n\\m", 6, &mut h);
        assert!(
            h.ends_with(b"|x\\|y|n\\\\m|3|"),
            "{}",
            String::from_utf8_lossy(&h)
        );
    }
}
