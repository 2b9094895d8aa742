//! A labelled synthetic corpus: prose with planted PII of every type in the formats
//! people write them, and look-alikes that are not PII (numbers failing Luhn, SSNs in
//! unissued areas, octets above 255, IBANs failing mod-97, dates, times, versions,
//! ISBNs, prices, hashes, order numbers). Each finding must match a planted span
//! exactly; the test prints precision and recall per type and requires recall ≥ 99 %
//! and precision ≥ 98 % for each.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::collections::{BTreeMap, BTreeSet};
use warden_data::sanitize::{Finding, Kind, Rules, Sanitizer, luhn};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
    fn digits_nz(&mut self, n: usize) -> String {
        let first = char::from(b'1' + self.below(9) as u8);
        format!("{first}{}", self.digits(n - 1))
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "training",
    "run",
    "customer",
    "said",
    "please",
    "contact",
    "about",
    "invoice",
    "dataset",
    "shipment",
    "account",
    "review",
    "weights",
    "update",
    "team",
    "support",
    "ticket",
    "record",
    "notes",
    "follow",
    "up",
    "regarding",
    "batch",
    "report",
];

fn email(r: &mut Rng) -> String {
    let first = r.pick(&[
        "jane", "j.smith", "ops_team", "mike+ml", "anna.k", "x9", "li.wei",
    ]);
    let n = if r.below(2) == 0 {
        r.digits(2)
    } else {
        String::new()
    };
    let dom = r.pick(&[
        "example.com",
        "mail.example.org",
        "corp.example.co.uk",
        "uni-x.edu",
        "test.io",
        "beispiel.de",
    ]);
    format!("{first}{n}@{dom}")
}

fn phone(r: &mut Rng) -> String {
    let area = format!("{}{}", 2 + r.below(8), r.digits(2));
    let exch = format!("{}{}", 2 + r.below(8), r.digits(2));
    let line = r.digits(4);
    match r.below(13) {
        0 => format!("+1 {area} {exch} {line}"),
        1 => format!("+1-{area}-{exch}-{line}"),
        2 => format!("({area}) {exch}-{line}"),
        3 => format!("{area}-{exch}-{line}"),
        4 => format!("{area}.{exch}.{line}"),
        5 => format!("+44 20 {} {}", r.digits(4), r.digits(4)),
        6 => format!("+44 (0) 20 {} {}", r.digits(4), r.digits(4)),
        7 => format!(
            "+33 6 {} {} {} {}",
            r.digits(2),
            r.digits(2),
            r.digits(2),
            r.digits(2)
        ),
        8 => format!("+49 30 {}", r.digits_nz(7)),
        9 => format!("+81-3-{}-{}", r.digits(4), r.digits(4)),
        10 => format!("020 {} {}", r.digits(4), r.digits(4)),
        11 => format!(
            "06 {} {} {} {}",
            r.digits(2),
            r.digits(2),
            r.digits(2),
            r.digits(2)
        ),
        _ => format!("+1{area}{exch}{line}"),
    }
}

fn ssn(r: &mut Rng) -> String {
    let area = loop {
        let a = 1 + r.below(899);
        if a != 666 {
            break a;
        }
    };
    let sep = if r.below(4) == 0 { " " } else { "-" };
    format!(
        "{area:03}{sep}{:02}{sep}{:04}",
        1 + r.below(99),
        1 + r.below(9999)
    )
}

fn with_luhn(prefix: &str, len: usize, r: &mut Rng) -> String {
    let mut s = format!("{prefix}{}", r.digits(len - prefix.len() - 1));
    for d in 0..10u8 {
        let mut cand: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        cand.push(d);
        if luhn(&cand) {
            s.push(char::from(b'0' + d));
            return s;
        }
    }
    unreachable!()
}

fn card_number(r: &mut Rng) -> (String, bool) {
    match r.below(4) {
        0 => (with_luhn("4", 16, r), false),
        1 => (with_luhn(&format!("5{}", 1 + r.below(5)), 16, r), false),
        2 => (with_luhn(r.pick(&["34", "37"]), 15, r), true),
        _ => (with_luhn("6011", 16, r), false),
    }
}

fn group_card(n: &str, amex: bool, r: &mut Rng) -> String {
    let sep = match r.below(3) {
        0 => return n.to_owned(),
        1 => " ",
        _ => "-",
    };
    if amex {
        format!("{}{sep}{}{sep}{}", &n[..4], &n[4..10], &n[10..])
    } else {
        n.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(sep)
    }
}

fn card(r: &mut Rng) -> String {
    let (n, amex) = card_number(r);
    group_card(&n, amex, r)
}

fn ip(r: &mut Rng) -> String {
    if r.below(3) == 0 {
        let g: Vec<String> = (0..8).map(|_| format!("{:x}", r.below(0x10000))).collect();
        match r.below(3) {
            0 => g.join(":"),
            1 => format!("2001:db8::{}:{}", g[0], g[1]),
            _ => format!("fe80::{}", g[2]),
        }
    } else {
        (0..4)
            .map(|_| r.below(256).to_string())
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn iban_check(cc: &str, bban: &str) -> u32 {
    let s = format!("{bban}{cc}00");
    let mut rem = 0u32;
    for b in s.bytes() {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(b - b'A') + 10) % 97;
        }
    }
    98 - rem
}

fn iban_parts(r: &mut Rng) -> (String, String) {
    let (cc, bban) = match r.below(5) {
        0 => ("DE", r.digits(18)),
        1 => (
            "GB",
            format!("{}{}", r.pick(&["WEST", "NWBK", "BARC"]), r.digits(14)),
        ),
        2 => ("FR", r.digits(23)),
        3 => (
            "NL",
            format!("{}{}", r.pick(&["ABNA", "INGB", "RABO"]), r.digits(10)),
        ),
        _ => ("ES", r.digits(20)),
    };
    (cc.to_owned(), bban)
}

fn group4(s: &str, r: &mut Rng) -> String {
    if r.below(2) == 0 {
        return s.to_owned();
    }
    s.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn iban(r: &mut Rng) -> String {
    let (cc, bban) = iban_parts(r);
    let check = iban_check(&cc, &bban);
    group4(&format!("{cc}{check:02}{bban}"), r)
}

/// Text that is not PII but looks like it.
fn look_alike(r: &mut Rng) -> String {
    match r.below(16) {
        0 => {
            // A card number with a wrong check digit.
            let (n, amex) = card_number(r);
            let last = n.as_bytes()[n.len() - 1] - b'0';
            let bad = format!(
                "{}{}",
                &n[..n.len() - 1],
                (last + 1 + r.below(8) as u8) % 10
            );
            group_card(&bad, amex, r)
        }
        1 => format!(
            "{}-{:02}-{:04}",
            r.pick(&["000", "666", "912", "987"]),
            1 + r.below(99),
            r.below(10_000)
        ),
        2 => format!(
            "{}.{}.{}.{}",
            256 + r.below(700),
            r.below(256),
            r.below(256),
            r.below(256)
        ),
        3 => format!(
            "20{:02}-{:02}-{:02}",
            r.below(30),
            1 + r.below(12),
            1 + r.below(28)
        ),
        4 => format!("{:02}:{:02}:{:02}", r.below(24), r.below(60), r.below(60)),
        5 => format!("v{}.{}.{}", r.below(10), r.below(20), r.below(100)),
        6 => format!(
            "978-{}-{}-{}-{}",
            r.below(10),
            r.digits(2),
            r.digits(6),
            r.below(10)
        ),
        7 => format!(
            "${},{:03}.{:02}",
            1 + r.below(999),
            r.below(1000),
            r.below(100)
        ),
        8 => format!("{:016x}", r.next()),
        9 => format!("ORD-{}", r.digits(8)),
        10 => {
            let (cc, bban) = iban_parts(r);
            let check = (iban_check(&cc, &bban) + 1 + r.below(90) as u32) % 97;
            group4(&format!("{cc}{:02}{bban}", check.max(2)), r)
        }
        11 => r
            .pick(&[
                "admin@localhost",
                "@warden_ops",
                "a@b",
                "name at example dot com",
            ])
            .to_string(),
        12 => format!("{}.{}", r.below(1000), r.digits(5)),
        13 => format!("{}%", r.below(100)),
        14 => r.digits_nz(5),
        _ => format!("ticket #{}", r.digits_nz(6)),
    }
}

struct Corpus {
    text: String,
    labels: Vec<(usize, usize, Kind)>,
    look_alikes: usize,
}

fn corpus(lines: usize) -> Corpus {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut text = String::new();
    let mut labels = Vec::new();
    let mut look_alikes = 0;
    for _ in 0..lines {
        let items = 1 + r.below(3);
        for _ in 0..items {
            for _ in 0..(2 + r.below(6)) {
                text.push_str(r.pick(WORDS));
                text.push(' ');
            }
            let opener = r.pick(&["", "", "(", "<", "\"", "id:", "ref="]);
            let closer = match opener {
                "(" => ")",
                "<" => ">",
                "\"" => "\"",
                _ => r.pick(&["", "", ",", ".", ";", "!"]),
            };
            text.push_str(opener);
            if r.below(4) == 0 {
                text.push_str(&look_alike(&mut r));
                look_alikes += 1;
            } else {
                let kind = r.pick(&Kind::ALL);
                let v = match kind {
                    Kind::Email => email(&mut r),
                    Kind::Phone => phone(&mut r),
                    Kind::Ssn => ssn(&mut r),
                    Kind::CreditCard => card(&mut r),
                    Kind::Ip => ip(&mut r),
                    Kind::Iban => iban(&mut r),
                };
                labels.push((text.len(), text.len() + v.len(), kind));
                text.push_str(&v);
            }
            text.push_str(closer);
            text.push(' ');
        }
        text.push('\n');
    }
    Corpus {
        text,
        labels,
        look_alikes,
    }
}

#[test]
fn planted_pii_is_found_with_high_recall_and_precision_per_type() {
    let c = corpus(40_000);
    let s = Sanitizer::new(Rules::default());
    let mut found: Vec<Finding> = Vec::new();
    let t = std::time::Instant::now();
    s.find(c.text.as_bytes(), &mut found);
    let secs = t.elapsed().as_secs_f64();
    let truth: BTreeSet<(usize, usize, Kind)> = c.labels.iter().copied().collect();
    let got: BTreeSet<(usize, usize, Kind)> =
        found.iter().map(|f| (f.start, f.end, f.kind)).collect();
    let mut rows: BTreeMap<Kind, (u64, u64, u64)> = BTreeMap::new();
    for x in &got {
        let e = rows.entry(x.2).or_default();
        if truth.contains(x) {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    for x in &truth {
        if !got.contains(x) {
            rows.entry(x.2).or_default().2 += 1;
        }
    }
    println!(
        "corpus: {} bytes, {} planted, {} look-alikes; scanned in {:.1} ms ({:.0} MB/s)",
        c.text.len(),
        truth.len(),
        c.look_alikes,
        secs * 1e3,
        c.text.len() as f64 / secs / 1e6
    );
    println!(
        "{:<12} {:>7} {:>5} {:>5} {:>9} {:>7}",
        "type", "planted", "fp", "fn", "precision", "recall"
    );
    let mut failures = Vec::new();
    for k in Kind::ALL {
        let (tp, fp, fn_) = rows.get(&k).copied().unwrap_or_default();
        let precision = tp as f64 / (tp + fp).max(1) as f64;
        let recall = tp as f64 / (tp + fn_).max(1) as f64;
        println!(
            "{:<12} {:>7} {:>5} {:>5} {:>8.2}% {:>6.2}%",
            k.name(),
            tp + fn_,
            fp,
            fn_,
            precision * 100.0,
            recall * 100.0
        );
        assert!(tp + fn_ > 1000, "{k:?}: enough planted");
        if precision < 0.98 || recall < 0.99 {
            failures.push(k);
        }
    }
    if !failures.is_empty() {
        // Show a few misses and false alarms to make the failure actionable.
        let ctx = |a: usize, b: usize| {
            c.text[a.saturating_sub(20)..(b + 20).min(c.text.len())].to_owned()
        };
        for x in truth.difference(&got).take(10) {
            println!("missed {:?}: {:?}", x.2, ctx(x.0, x.1));
        }
        for x in got.difference(&truth).take(10) {
            println!("false {:?}: {:?}", x.2, ctx(x.0, x.1));
        }
        panic!("below target: {failures:?}");
    }
}
