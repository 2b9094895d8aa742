//! The built-in recognisers of the PII sanitiser (`crate::sanitize`): a byte-class
//! table picks candidate starts, and each type is parsed by hand and checked (Luhn,
//! mod-97, octet ranges, the standard IPv6 parser, SSA rules) before it counts as a
//! finding.

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

    pub(crate) fn slot(self) -> usize {
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

pub(crate) fn scan(t: &[u8], enabled: &[bool; 6], out: &mut Vec<Finding>) {
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
