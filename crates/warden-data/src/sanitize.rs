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

use crate::recognise::scan;
pub use crate::recognise::{Finding, Kind, luhn};

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
