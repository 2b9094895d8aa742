//! Timestamps: microseconds since the Unix epoch, written as RFC 3339 UTC with
//! exactly six fractional digits (`2026-11-24T07:00:00.000000Z`).
//!
//! One fixed textual form means one encoding per instant, which the entry codec relies on.
//! The core never reads a clock: callers pass timestamps in.

use crate::error::DecodeError;
use std::fmt;

/// An instant, in microseconds since 1970-01-01T00:00:00Z. Years 1970..=9999 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// The largest instant representable in the textual form (9999-12-31T23:59:59.999999Z).
const MAX_MICROS: u64 = 253_402_300_799_999_999;

/// Length of the textual form.
pub const TEXT_LEN: usize = 27;

impl Timestamp {
    /// From microseconds since the epoch; `None` past year 9999.
    #[must_use]
    pub fn from_micros(micros: u64) -> Option<Self> {
        (micros <= MAX_MICROS).then_some(Self(micros))
    }

    /// Microseconds since the epoch.
    #[must_use]
    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// This instant plus `micros`, saturating at the largest representable instant.
    #[must_use]
    pub fn saturating_add_micros(self, micros: u64) -> Self {
        Self(self.0.saturating_add(micros).min(MAX_MICROS))
    }

    /// Writes the RFC 3339 form into `out`.
    pub fn write_to(self, out: &mut Vec<u8>) {
        let secs = self.0 / 1_000_000;
        let frac = self.0 % 1_000_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        push_num(out, y, 4);
        out.push(b'-');
        push_num(out, m, 2);
        out.push(b'-');
        push_num(out, d, 2);
        out.push(b'T');
        push_num(out, rem / 3600, 2);
        out.push(b':');
        push_num(out, (rem / 60) % 60, 2);
        out.push(b':');
        push_num(out, rem % 60, 2);
        out.push(b'.');
        push_num(out, frac, 6);
        out.push(b'Z');
    }

    /// Parses exactly the form written by [`Timestamp::write_to`].
    pub fn parse(text: &[u8]) -> Result<Self, DecodeError> {
        let bad = DecodeError::Time;
        let [
            y0,
            y1,
            y2,
            y3,
            b'-',
            m0,
            m1,
            b'-',
            d0,
            d1,
            b'T',
            h0,
            h1,
            b':',
            i0,
            i1,
            b':',
            s0,
            s1,
            b'.',
            f0,
            f1,
            f2,
            f3,
            f4,
            f5,
            b'Z',
        ] = text
        else {
            return Err(bad);
        };
        let num = |ds: &[u8]| -> Result<u64, DecodeError> {
            ds.iter().try_fold(0u64, |acc, &c| {
                if c.is_ascii_digit() {
                    Ok(acc * 10 + u64::from(c - b'0'))
                } else {
                    Err(DecodeError::Time)
                }
            })
        };
        let year = num(&[*y0, *y1, *y2, *y3])?;
        let month = num(&[*m0, *m1])?;
        let day = num(&[*d0, *d1])?;
        let hour = num(&[*h0, *h1])?;
        let minute = num(&[*i0, *i1])?;
        let second = num(&[*s0, *s1])?;
        let frac = num(&[*f0, *f1, *f2, *f3, *f4, *f5])?;
        if year < 1970
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(bad);
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
        Ok(Self(secs * 1_000_000 + frac))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(TEXT_LEN);
        self.write_to(&mut out);
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

fn push_num(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    for _ in 0..width {
        out.push(b'0' + u8::try_from(v % 10).unwrap_or(0));
        v /= 10;
    }
    if let Some(s) = out.get_mut(start..) {
        s.reverse();
    }
}

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil algorithms, restricted to dates from 1970 on.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        let t = Timestamp::from_micros(0).unwrap();
        assert_eq!(t.to_string(), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29T12:34:56.789012Z
        let t = Timestamp::parse(b"2000-02-29T12:34:56.789012Z").unwrap();
        assert_eq!(t.as_micros(), 951_827_696_789_012);
        assert_eq!(t.to_string(), "2000-02-29T12:34:56.789012Z");
        assert!(Timestamp::parse(b"2001-02-29T00:00:00.000000Z").is_err());
        assert!(Timestamp::parse(b"2001-02-28T24:00:00.000000Z").is_err());
        assert!(Timestamp::parse(b"2001-02-28T00:00:00.000000+00:00").is_err());
        assert!(Timestamp::parse(b"2001-02-28 00:00:00.000000Z").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(micros in 0u64..=MAX_MICROS) {
            let t = Timestamp::from_micros(micros).unwrap();
            let mut out = Vec::new();
            t.write_to(&mut out);
            prop_assert_eq!(out.len(), TEXT_LEN);
            prop_assert_eq!(Timestamp::parse(&out).unwrap(), t);
        }
    }
}
