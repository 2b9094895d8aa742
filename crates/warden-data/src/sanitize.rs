//! A streaming PII sanitiser.
//!
//! One left-to-right pass over the bytes: most bytes are looked up in a table and
//! skipped; a digit, `@`, `+`, `(` or `:` starts a candidate, which is parsed by hand
//! and checked (Luhn for cards, ISO 13616 mod-97 for IBANs, octet ranges for IPv4, the
//! standard parser for IPv6, SSA rules for SSNs) before it is replaced with a typed
//! token. Configured rules (regular expressions) then run over the result.
//!
//! | type | token | recognised |
//! |---|---|---|
//! | e-mail | `[EMAIL]` | `local@domain.tld`, the TLD alphabetic, at least two letters |
//! | phone | `[PHONE]` | `+` and 8–15 digits (E.164, any grouping); `00` and 10–15 digits; North American `(415) 555-0132`, `415-555-0132`, `415.555.0132`, `415 555 0132`; national trunk `0` and 10–11 digits in groups (`020 7946 0958`, `06 12 34 56 78`) |
//! | SSN | `[SSN]` | `123-45-6789` or `123 45 6789`, not area 000, 666 or 9xx, group 00 or serial 0000 |
//! | card | `[CREDIT_CARD]` | 13–19 digits, plain or in groups of 4 (Amex 4-6-5), a card network's first digit, Luhn-valid |
//! | IP | `[IP]` | dotted-quad IPv4 (no leading zeros), IPv6 in any standard form |
//! | IBAN | `[IBAN]` | country code, check digits and BBAN, plain or in groups of 4, the country's length where known, mod-97 valid |
//!
//! Not recognised, on purpose: nine digits without separators as an SSN, ten digits
//! without separators or `+` as a phone number (both are too often order numbers and
//! ids). A dotted quad such as a four-part version number is taken for an IPv4 address.
//! Findings never span lines.

use regex::bytes::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A built-in PII type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    Ssn,
    CreditCard,
    Ip,
    Iban,
}

impl Kind {
    /// Every built-in type.
    pub const ALL: [Kind; 6] = [
        Kind::Email,
        Kind::Phone,
        Kind::Ssn,
        Kind::CreditCard,
        Kind::Ip,
        Kind::Iban,
    ];

    /// `EMAIL`, `PHONE`, `SSN`, `CREDIT_CARD`, `IP`, `IBAN`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::Ssn => "SSN",
            Kind::CreditCard => "CREDIT_CARD",
            Kind::Ip => "IP",
            Kind::Iban => "IBAN",
        }
    }

    /// The replacement, e.g. `[EMAIL]`.
    #[must_use]
    pub fn token(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL]",
            Kind::Phone => "[PHONE]",
            Kind::Ssn => "[SSN]",
            Kind::CreditCard => "[CREDIT_CARD]",
            Kind::Ip => "[IP]",
            Kind::Iban => "[IBAN]",
        }
    }

    /// From its name (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// One finding: bytes `start..end` are PII of `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

/// Errors in a rules file.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules: {0}")]
    Parse(String),
    #[error("rule {name:?}: {detail}")]
    Rule { name: String, detail: String },
}

/// A rules file (TOML):
///
/// ```toml
/// disable = ["IP"]            # built-in types not to replace
/// [[rule]]
/// name = "EMPLOYEE_ID"        # the token is [EMPLOYEE_ID]
/// pattern = '\bEMP-[0-9]{6}\b'
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// A configured pattern.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// `[A-Z0-9_]`, 1 to 32 characters; also the token's text.
    pub name: String,
    /// A regular expression (Rust `regex` syntax, linear time).
    pub pattern: String,
}

/// Largest compiled size of one configured pattern.
const MAX_PATTERN: usize = 1 << 20;

#[derive(Clone, Debug)]
struct Custom {
    name: String,
    token: Vec<u8>,
    re: Regex,
}

/// What to replace.
#[derive(Clone, Debug)]
pub struct Rules {
    enabled: [bool; 6],
    custom: Vec<Custom>,
}

impl Default for Rules {
    /// Every built-in type, no configured patterns.
    fn default() -> Self {
        Self {
            enabled: [true; 6],
            custom: Vec::new(),
        }
    }
}

impl Rules {
    /// From a parsed rules file.
    pub fn from_file(f: &RulesFile) -> Result<Self, RulesError> {
        let mut r = Rules::default();
        for d in &f.disable {
            let k = Kind::parse(d).ok_or_else(|| {
                RulesError::Parse(format!(
                    "disable: unknown type {d:?} (one of EMAIL, PHONE, SSN, CREDIT_CARD, IP, IBAN)"
                ))
            })?;
            if let Some(e) = r.enabled.get_mut(k.slot()) {
                *e = false;
            }
        }
        for spec in &f.rule {
            let bad = |detail: String| RulesError::Rule {
                name: spec.name.clone(),
                detail,
            };
            let n = &spec.name;
            if n.is_empty()
                || n.len() > 32
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(bad("the name must be 1 to 32 of A-Z, 0-9 and _".into()));
            }
            if Kind::parse(n).is_some() || r.custom.iter().any(|c| &c.name == n) {
                return Err(bad("the name is already taken".into()));
            }
            let re = regex::bytes::RegexBuilder::new(&spec.pattern)
                .size_limit(MAX_PATTERN)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            if re.is_match(b"") {
                return Err(bad("the pattern matches the empty string".into()));
            }
            r.custom.push(Custom {
                name: n.clone(),
                token: format!("[{n}]").into_bytes(),
                re,
            });
        }
        Ok(r)
    }

    /// From TOML text.
    pub fn parse_toml(text: &str) -> Result<Self, RulesError> {
        let f: RulesFile = toml_like(text)?;
        Self::from_file(&f)
    }
}

fn toml_like(text: &str) -> Result<RulesFile, RulesError> {
    toml::from_str(text).map_err(|e| RulesError::Parse(e.to_string()))
}

/// Counts of replacements per type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    builtin: [u64; 6],
    custom: Vec<(String, u64)>,
}

impl Counts {
    /// `(type name, count)` for every type with a finding.
    #[must_use]
    pub fn by_type(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for k in Kind::ALL {
            let n = self.builtin.get(k.slot()).copied().unwrap_or_default();
            if n > 0 {
                out.insert(k.name().to_owned(), n);
            }
        }
        for (name, n) in &self.custom {
            if *n > 0 {
                out.insert(name.clone(), *n);
            }
        }
        out
    }

    /// All replacements.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.builtin.iter().sum::<u64>() + self.custom.iter().map(|(_, n)| n).sum::<u64>()
    }
}

/// The sanitiser: rules, and the counts so far.
#[derive(Clone, Debug)]
pub struct Sanitizer {
    rules: Rules,
    counts: Counts,
    findings: Vec<Finding>,
    scratch: Vec<u8>,
}

impl Sanitizer {
    #[must_use]
    pub fn new(rules: Rules) -> Self {
        let custom = rules.custom.iter().map(|c| (c.name.clone(), 0)).collect();
        Self {
            rules,
            counts: Counts {
                builtin: [0; 6],
                custom,
            },
            findings: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Replacements so far.
    #[must_use]
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The built-in findings in `text`, in order, not overlapping.
    pub fn find(&self, text: &[u8], out: &mut Vec<Finding>) {
        out.clear();
        scan(text, &self.rules.enabled, out);
    }

    /// Appends `text` with every finding replaced by its token to `out`. `text` should
    /// end at a line boundary (findings never span lines).
    pub fn sanitize(&mut self, text: &[u8], out: &mut Vec<u8>) {
        let mut findings = std::mem::take(&mut self.findings);
        findings.clear();
        scan(text, &self.rules.enabled, &mut findings);
        if self.rules.custom.is_empty() {
            emit(text, &findings, out, &mut self.counts.builtin);
        } else {
            let mut buf = std::mem::take(&mut self.scratch);
            buf.clear();
            emit(text, &findings, &mut buf, &mut self.counts.builtin);
            for (c, (_, n)) in self.rules.custom.iter().zip(self.counts.custom.iter_mut()) {
                let mut hits = 0u64;
                let replaced = c.re.replace_all(&buf, |_: &regex::bytes::Captures<'_>| {
                    hits += 1;
                    c.token.clone()
                });
                if hits > 0 {
                    let v = replaced.into_owned();
                    *n += hits;
                    buf = v;
                }
            }
            out.extend_from_slice(&buf);
            self.scratch = buf;
        }
        self.findings = findings;
    }

    /// `text` sanitised, as a new string (for field values).
    pub fn sanitize_str(&mut self, text: &str) -> String {
        let mut out = Vec::with_capacity(text.len());
        self.sanitize(text.as_bytes(), &mut out);
        // Only ASCII spans are replaced, by ASCII tokens, so UTF-8 is preserved.
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }
}

fn emit(text: &[u8], findings: &[Finding], out: &mut Vec<u8>, counts: &mut [u64; 6]) {
    let mut last = 0;
    for f in findings {
        out.extend_from_slice(text.get(last..f.start).unwrap_or_default());
        out.extend_from_slice(f.kind.token().as_bytes());
        if let Some(c) = counts.get_mut(f.kind.slot()) {
            *c += 1;
        }
        last = f.end;
    }
    out.extend_from_slice(text.get(last..).unwrap_or_default());
}

const T_DIGIT: u8 = 1;
const T_AT: u8 = 2;
const T_PLUS: u8 = 3;
const T_PAREN: u8 = 4;
const T_COLON: u8 = 5;

fn class(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => T_DIGIT,
        b'@' => T_AT,
        b'+' => T_PLUS,
        b'(' => T_PAREN,
        b':' => T_COLON,
        _ => 0,
    }
}

fn at(t: &[u8], i: usize) -> u8 {
    t.get(i).copied().unwrap_or(0)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn scan(t: &[u8], enabled: &[bool; 6], out: &mut Vec<Finding>) {
    let on = |k: Kind| enabled.get(k.slot()).copied().unwrap_or(false);
    let n = t.len();
    let mut i = 0;
    // End of the last finding: nothing before it is looked at again.
    let mut floor = 0;
    while i < n {
        let class = class(at(t, i));
        if class == 0 {
            i += 1;
            continue;
        }
        let prev = if i > floor { at(t, i - 1) } else { b' ' };
        let found = match class {
            T_DIGIT if is_word(prev) => {
                // Inside a word: only an IBAN starts like this (two capitals, digits).
                let iban = if on(Kind::Iban) && i >= floor + 2 {
                    iban(t, i - 2, floor)
                } else {
                    Err(0)
                };
                match iban {
                    Ok(f) => Some(f),
                    Err(skip) => {
                        // Something shaped like an IBAN that fails its check is skipped
                        // whole: its groups are not phone numbers either.
                        i = i.max(skip);
                        while i < n && at(t, i).is_ascii_digit() {
                            i += 1;
                        }
                        None
                    }
                }
            }
            T_DIGIT | T_PLUS | T_PAREN => {
                if class != T_DIGIT && !at(t, i + 1).is_ascii_digit() {
                    i += 1;
                    continue;
                }
                if is_word(prev) || prev == b'.' || prev == b'@' {
                    i += 1;
                    continue;
                }
                match number(t, i, enabled) {
                    Ok(f) => Some(f),
                    // After `(` or `+`, the digits may still start something alone.
                    Err(_) if class != T_DIGIT => {
                        i += 1;
                        continue;
                    }
                    Err(next) => {
                        i = next.max(i + 1);
                        continue;
                    }
                }
            }
            T_AT => on(Kind::Email).then(|| email(t, i, floor)).flatten(),
            T_COLON => on(Kind::Ip).then(|| ipv6(t, i, floor)).flatten(),
            _ => None,
        };
        match found {
            Some(f) => {
                out.push(f);
                floor = f.end;
                i = f.end;
            }
            None => {
                if class != T_DIGIT {
                    i += 1;
                }
            }
        }
    }
}

fn is_local(b: u8) -> bool {
    // Non-ASCII bytes: internationalised local parts (RFC 6531).
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') || b >= 0x80
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

fn email(t: &[u8], at_: usize, floor: usize) -> Option<Finding> {
    let mut s = at_;
    while s > floor && is_local(at(t, s - 1)) && at_ - s < 64 {
        s -= 1;
    }
    // Start on a character, not inside one, and not on punctuation.
    while s < at_ && (matches!(at(t, s), b'.' | b'-' | b'+') || (0x80..0xC0).contains(&at(t, s))) {
        s += 1;
    }
    if s == at_ || at(t, at_ - 1) == b'.' {
        return None;
    }
    let mut e = at_ + 1;
    while e < t.len() && is_domain(at(t, e)) && e - at_ < 255 {
        e += 1;
    }
    while e > at_ + 1 && matches!(at(t, e - 1), b'.' | b'-') {
        e -= 1;
    }
    let domain = t.get(at_ + 1..e)?;
    let mut labels = domain.split(|&b| b == b'.');
    let mut count = 0;
    let mut last: &[u8] = &[];
    for l in labels.by_ref() {
        if l.is_empty() || l.first() == Some(&b'-') || l.last() == Some(&b'-') {
            return None;
        }
        count += 1;
        last = l;
    }
    if count < 2 || last.len() < 2 || !last.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    if is_word(at(t, e)) || at(t, e) == b'@' {
        return None;
    }
    Some(Finding {
        start: s,
        end: e,
        kind: Kind::Email,
    })
}

fn is_hexish(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

fn ipv6(t: &[u8], colon: usize, floor: usize) -> Option<Finding> {
    let mut s = colon;
    while s > floor && is_hexish(at(t, s - 1)) && colon - s < 45 {
        s -= 1;
    }
    let mut e = colon + 1;
    while e < t.len() && is_hexish(at(t, e)) && e - s < 45 {
        e += 1;
    }
    // A sentence may end right after an address.
    while e > colon + 1 && at(t, e - 1) == b'.' {
        e -= 1;
    }
    while s < colon && at(t, s) == b'.' {
        s += 1;
    }
    if is_word(at(t, e)) {
        return None;
    }
    // The left edge may have taken in a prefix such as `id:`; try each start after a
    // colon in turn.
    let mut start = s;
    loop {
        let prev = if start == 0 { b' ' } else { at(t, start - 1) };
        let left_ok = !is_word(prev) && (prev != b':' || start > s);
        if left_ok && ipv6_text(t.get(start..e)?) {
            return Some(Finding {
                start,
                end: e,
                kind: Kind::Ip,
            });
        }
        let next = t.get(start..colon)?.iter().position(|&b| b == b':')?;
        start += next + 1;
        if at(t, start) == b':' {
            return None;
        }
    }
}

fn ipv6_text(b: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(b) else {
        return false;
    };
    text.bytes().filter(|&b| b == b':').count() >= 2
        && text.bytes().filter(u8::is_ascii_hexdigit).count() >= 3
        && text.bytes().any(|b| b.is_ascii_digit())
        && text.parse::<std::net::Ipv6Addr>().is_ok()
}

const MAX_GROUPS: usize = 8;

/// A run of digit groups with their separators.
struct Cand {
    start: usize,
    plus: bool,
    paren: bool,
    groups: [(usize, usize); MAX_GROUPS],
    seps: [(usize, usize); MAX_GROUPS],
    n: usize,
}

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

fn collect(t: &[u8], start: usize) -> Cand {
    let mut c = Cand {
        start,
        plus: at(t, start) == b'+',
        paren: at(t, start) == b'(',
        groups: [(0, 0); MAX_GROUPS],
        seps: [(0, 0); MAX_GROUPS],
        n: 0,
    };
    let mut p = if c.plus || c.paren { start + 1 } else { start };
    loop {
        let g = p;
        while at(t, p).is_ascii_digit() && p - g < 20 {
            p += 1;
        }
        if p == g {
            break;
        }
        if let Some(slot) = c.groups.get_mut(c.n) {
            *slot = (g, p);
        }
        c.n += 1;
        if c.n == MAX_GROUPS || at(t, p).is_ascii_digit() {
            break;
        }
        let s = p;
        let mut q = p;
        while q - s < 2 && is_sep(at(t, q)) {
            q += 1;
        }
        if q == s || !at(t, q).is_ascii_digit() {
            break;
        }
        if let Some(slot) = c.seps.get_mut(c.n - 1) {
            *slot = (s, q);
        }
        p = q;
    }
    c
}

/// The finding that starts at `i`, or where to look next.
fn number(t: &[u8], i: usize, enabled: &[bool; 6]) -> Result<Finding, usize> {
    let on = |k: Kind| enabled.get(k.slot()).copied().unwrap_or(false);
    let c = collect(t, i);
    if c.n == 0 {
        return Err(i + 1);
    }
    for k in (1..=c.n).rev() {
        let end = c.groups.get(k - 1).map_or(i, |g| g.1);
        if !boundary_after(t, end) {
            continue;
        }
        let kind = if on(Kind::Ip) && ipv4(t, &c, k) {
            Some(Kind::Ip)
        } else if on(Kind::Ssn) && ssn(t, &c, k) {
            Some(Kind::Ssn)
        } else if on(Kind::CreditCard) && card(t, &c, k) {
            Some(Kind::CreditCard)
        } else if on(Kind::Phone) && phone(t, &c, k) {
            Some(Kind::Phone)
        } else {
            None
        };
        if let Some(kind) = kind {
            return Ok(Finding {
                start: c.start,
                end,
                kind,
            });
        }
    }
    // Digits that are not PII as a whole are not split into PII either (the groups
    // of a card number failing Luhn are not phone numbers).
    Err(c.groups.get(c.n - 1).map_or(i + 1, |g| g.1))
}

fn boundary_after(t: &[u8], e: usize) -> bool {
    let b = at(t, e);
    if is_word(b) || b == b'@' {
        return false;
    }
    let next = at(t, e + 1);
    !(matches!(b, b'.' | b'-' | b'/') && next.is_ascii_digit()
        || b == b':' && (next.is_ascii_hexdigit() || next == b':'))
}

fn group<'a>(t: &'a [u8], c: &Cand, j: usize) -> &'a [u8] {
    c.groups
        .get(j)
        .and_then(|&(a, b)| t.get(a..b))
        .unwrap_or_default()
}

fn sep<'a>(t: &'a [u8], c: &Cand, j: usize) -> &'a [u8] {
    c.seps
        .get(j)
        .and_then(|&(a, b)| t.get(a..b))
        .unwrap_or_default()
}

fn seps_all(t: &[u8], c: &Cand, k: usize, allowed: &[&[u8]]) -> bool {
    let first = sep(t, c, 0);
    (0..k.saturating_sub(1)).all(|j| {
        let s = sep(t, c, j);
        s == first && allowed.contains(&s)
    })
}

fn lens(c: &Cand, k: usize) -> impl Iterator<Item = usize> + '_ {
    c.groups.iter().take(k).map(|(a, b)| b - a)
}

fn digits(t: &[u8], c: &Cand, k: usize, out: &mut [u8; 48]) -> usize {
    let mut n = 0;
    for j in 0..k {
        for &d in group(t, c, j) {
            if let Some(slot) = out.get_mut(n) {
                *slot = d - b'0';
                n += 1;
            }
        }
    }
    n
}

fn ipv4(t: &[u8], c: &Cand, k: usize) -> bool {
    if k != 4 || c.plus || c.paren || !seps_all(t, c, k, &[b"."]) {
        return false;
    }
    (0..4).all(|j| {
        let g = group(t, c, j);
        !g.is_empty()
            && g.len() <= 3
            && !(g.len() > 1 && g.first() == Some(&b'0'))
            && g.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')) <= 255
    })
}

fn ssn(t: &[u8], c: &Cand, k: usize) -> bool {
    if k != 3 || c.plus || c.paren || !seps_all(t, c, k, &[b"-", b" "]) {
        return false;
    }
    if !lens(c, k).eq([3, 2, 4]) {
        return false;
    }
    let (a, g, s) = (group(t, c, 0), group(t, c, 1), group(t, c, 2));
    a != b"000" && a != b"666" && a.first() != Some(&b'9') && g != b"00" && s != b"0000"
}

fn card(t: &[u8], c: &Cand, k: usize) -> bool {
    if c.plus || c.paren {
        return false;
    }
    let shape_ok = k == 1
        || seps_all(t, c, k, &[b" ", b"-"])
            && [
                &[4, 4, 4, 4][..],
                &[4, 4, 4, 4, 3],
                &[4, 6, 5],
                &[4, 6, 4],
                &[4, 4, 4, 1],
                &[4, 4, 4, 2],
                &[4, 4, 4, 3],
            ]
            .iter()
            .any(|p| lens(c, k).eq(p.iter().copied()));
    if !shape_ok {
        return false;
    }
    let mut d = [0u8; 48];
    let n = digits(t, c, k, &mut d);
    let Some(ds) = d.get(..n) else { return false };
    (13..=19).contains(&n) && matches!(ds.first(), Some(2..=6)) && luhn(ds)
}

/// The Luhn check over decimal digits.
#[must_use]
pub fn luhn(ds: &[u8]) -> bool {
    let mut sum = 0u32;
    for (j, &d) in ds.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if j % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn phone(t: &[u8], c: &Cand, k: usize) -> bool {
    let mut d = [0u8; 48];
    let n = digits(t, c, k, &mut d);
    let Some(ds) = d.get(..n) else { return false };
    // Parentheses must pair up within the number.
    let mut open = i32::from(c.paren);
    for j in 0..k.saturating_sub(1) {
        for &b in sep(t, c, j) {
            match b {
                b'(' => open += 1,
                b')' => open -= 1,
                _ => {}
            }
            if !(0..=1).contains(&open) {
                return false;
            }
        }
    }
    if open != 0 {
        return false;
    }
    let l: Vec<usize> = lens(c, k).collect();
    if c.plus {
        return (8..=15).contains(&n) && ds.first() != Some(&0) && (k > 1 || n >= 10);
    }
    if ds.starts_with(&[0, 0]) {
        return (10..=15).contains(&n) && k > 1 && ds.get(2) != Some(&0);
    }
    let nanp = |l: &[usize], ds: &[u8]| {
        l == [3, 3, 4] && matches!(ds.first(), Some(2..=9)) && matches!(ds.get(3), Some(2..=9))
    };
    if nanp(&l, ds)
        || (l.first() == Some(&1)
            && ds.first() == Some(&1)
            && nanp(
                l.get(1..).unwrap_or_default(),
                ds.get(1..).unwrap_or_default(),
            ))
    {
        // A date or a range is not written (ddd) ddd-dddd or with a leading 1.
        return true;
    }
    if ds.first() == Some(&0) && ds.get(1) != Some(&0) {
        return (10..=11).contains(&n) && k >= 2 && l.iter().all(|&g| g >= 2);
    }
    false
}

/// IBAN lengths of the countries that use them most (ISO 13616 registry).
const IBAN_LENGTHS: [(&[u8; 2], usize); 36] = [
    (b"AD", 24),
    (b"AE", 23),
    (b"AT", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"EE", 20),
    (b"ES", 24),
    (b"FI", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GR", 27),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IS", 26),
    (b"IT", 27),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MT", 31),
    (b"NL", 18),
    (b"NO", 15),
    (b"PL", 28),
    (b"PT", 25),
    (b"RO", 24),
    (b"SA", 24),
    (b"SE", 24),
    (b"SK", 24),
];

/// The IBAN at `s`, or where the IBAN-shaped text that failed its check ends (0 when
/// nothing there looks like an IBAN).
fn iban(t: &[u8], s: usize, floor: usize) -> Result<Finding, usize> {
    if !(at(t, s).is_ascii_uppercase() && at(t, s + 1).is_ascii_uppercase()) {
        return Err(0);
    }
    if s > floor && is_word(at(t, s - 1)) {
        return Err(0);
    }
    if !(at(t, s + 2).is_ascii_digit() && at(t, s + 3).is_ascii_digit()) {
        return Err(0);
    }
    let cc = [at(t, s), at(t, s + 1)];
    let want = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| **c == cc)
        .map(|(_, l)| *l);
    // Characters, allowing one space after each group of four.
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut p = s;
    let mut end = s;
    while n < 34 && want.is_none_or(|w| n < w) {
        let b = at(t, p);
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            if let Some(slot) = chars.get_mut(n) {
                *slot = b;
            }
            n += 1;
            p += 1;
            end = p;
        } else if b == b' ' && n % 4 == 0 && n > 0 {
            let nb = at(t, p + 1);
            if !(nb.is_ascii_uppercase() || nb.is_ascii_digit()) {
                break;
            }
            p += 1;
        } else {
            break;
        }
    }
    if n < 15 || want.is_some_and(|w| n != w) || is_word(at(t, end)) {
        return Err(0);
    }
    let Some(chars) = chars.get(..n) else {
        return Err(0);
    };
    // Move the first four characters to the end; letters count 10..35.
    let mut rem = 0u32;
    for &b in chars.iter().skip(4).chain(chars.iter().take(4)) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            let v = u32::from(b - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    if rem == 1 {
        Ok(Finding {
            start: s,
            end,
            kind: Kind::Iban,
        })
    } else {
        Err(end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn clean(s: &str) -> String {
        Sanitizer::new(Rules::default()).sanitize_str(s)
    }

    #[test]
    fn each_type_is_replaced_by_its_token() {
        let cases = [
            ("mail jane.doe+ml@example.co.uk now", "mail [EMAIL] now"),
            ("call +44 20 7946 0958.", "call [PHONE]."),
            (
                "call (415) 555-0132 or 415.555.0199",
                "call [PHONE] or [PHONE]",
            ),
            ("tel 020 7946 0958", "tel [PHONE]"),
            ("ssn 123-45-6789;", "ssn [SSN];"),
            ("card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok"),
            ("card 4111111111111111", "card [CREDIT_CARD]"),
            ("amex 3782-822463-10005", "amex [CREDIT_CARD]"),
            ("from 192.168.1.20, and", "from [IP], and"),
            ("v6 2001:db8::8a2e:370:7334 here", "v6 [IP] here"),
            ("v6 ::ffff:10.0.0.1", "v6 [IP]"),
            ("pay DE89 3704 0044 0532 0130 00 now", "pay [IBAN] now"),
            ("pay GB82WEST12345698765432", "pay [IBAN]"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn look_alikes_are_left_alone() {
        for s in [
            "card 4111 1111 1111 1112", // Luhn fails
            "id 1234567812345670",      // Luhn passes, no card network starts with 1
            "ssn 000-12-3456 666-12-3456 912-34-5678 123-00-4567",
            "ip 999.1.1.1 and 1.2.3 and 1.2.3.4.5 and 01.2.3.4",
            "date 2024-01-15, time 10:30:45, zip 94105",
            "user@localhost, @handle, a@b.c",
            "pay DE89 3704 0044 0532 0130 01", // mod-97 fails
            "isbn 978-3-16-148410-0, order 5551234567",
            "std::vector<int> x; a::b",
            "version 3.14159 costs $1,234.56",
        ] {
            assert_eq!(clean(s), s, "{s}");
        }
    }

    #[test]
    fn rules_add_patterns_and_disable_types() {
        let r = Rules::parse_toml(
            "disable = [\"IP\"]\n[[rule]]\nname = \"EMPLOYEE_ID\"\npattern = '\\bEMP-[0-9]{6}\\b'\n",
        )
        .unwrap();
        let mut s = Sanitizer::new(r);
        assert_eq!(
            s.sanitize_str("EMP-123456 at 10.0.0.1 mail a@example.org"),
            "[EMPLOYEE_ID] at 10.0.0.1 mail [EMAIL]"
        );
        let c = s.counts().by_type();
        assert_eq!(c["EMPLOYEE_ID"], 1);
        assert_eq!(c["EMAIL"], 1);
        assert!(!c.contains_key("IP"));
        assert!(Rules::parse_toml("disable = [\"NAME\"]").is_err());
        assert!(Rules::parse_toml("[[rule]]\nname = \"x\"\npattern = 'a'").is_err());
        assert!(Rules::parse_toml("[[rule]]\nname = \"E\"\npattern = 'a*'").is_err());
        assert!(Rules::parse_toml("[[rule]]\nname = \"EMAIL\"\npattern = 'a'").is_err());
    }

    #[test]
    fn utf8_around_findings_is_preserved() {
        assert_eq!(
            clean("Grüße an jürgen@beispiel.de — danke"),
            "Grüße an [EMAIL] — danke"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_overlaps(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let z = Sanitizer::new(Rules::default());
            let mut f = Vec::new();
            z.find(&s, &mut f);
            let mut last = 0;
            for x in &f {
                proptest::prop_assert!(x.start >= last && x.end > x.start && x.end <= s.len());
                last = x.end;
            }
        }
    }
}
