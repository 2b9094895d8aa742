//! Strict lowercase hexadecimal, the encoding of the `encrypted` field.
//!
//! Only lowercase digits are accepted so that every byte string has exactly one
//! encoding: an entry line cannot be altered without changing its bytes.

use crate::error::DecodeError;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Two ASCII digits per byte value. (Indexing in a constant is checked at compile time.)
#[allow(clippy::indexing_slicing)]
const PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0x0f]];
        i += 1;
    }
    t
};

/// Nibble value of each byte, or 0xff for anything but `0-9a-f`.
#[allow(clippy::indexing_slicing)]
const NIBBLES: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Appends the lowercase hex encoding of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    if let Some(dst) = out.get_mut(start..) {
        for (pair, &b) in dst.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&PAIRS.get(usize::from(b)).copied().unwrap_or_default());
        }
    }
}

/// Returns the lowercase hex encoding of `bytes`.
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    encode_into(bytes, &mut out);
    // Every byte pushed above is an ASCII digit.
    String::from_utf8(out).unwrap_or_default()
}

/// Table lookup; a `u8` index is always in range, so the check compiles away.
#[inline]
fn raw_nibble(c: u8) -> u8 {
    NIBBLES.get(usize::from(c)).copied().unwrap_or(0xff)
}

fn nibble(c: u8) -> Option<u8> {
    let v = raw_nibble(c);
    (v != 0xff).then_some(v)
}

/// Decodes strict lowercase hex into `out` (which is cleared first).
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    if !text.len().is_multiple_of(2) {
        return Err(DecodeError::Hex {
            position: text.len(),
        });
    }
    out.resize(text.len() / 2, 0);
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        if let [a, b] = pair {
            let (h, l) = (raw_nibble(*a), raw_nibble(*b));
            bad |= h | l;
            *o = (h << 4) | (l & 0x0f);
        }
    }
    // Any invalid digit maps to 0xff, which sets the high bits; find it only then.
    if bad & 0xf0 != 0 {
        let position = text.iter().position(|&c| nibble(c).is_none()).unwrap_or(0);
        out.clear();
        return Err(DecodeError::Hex { position });
    }
    Ok(())
}

/// Decodes strict lowercase hex.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    decode_into(text, &mut out)?;
    Ok(out)
}

/// Checks that `text` is strict lowercase hex of even length without decoding it.
pub fn validate(text: &[u8]) -> Result<(), DecodeError> {
    if !text.len().is_multiple_of(2) {
        return Err(DecodeError::Hex {
            position: text.len(),
        });
    }
    // Branch-free so it vectorises; the position is found only on failure.
    let bad = text.iter().fold(false, |acc, &c| {
        acc | !((c.wrapping_sub(b'0') < 10) | (c.wrapping_sub(b'a') < 6))
    });
    if !bad {
        return Ok(());
    }
    let position = text.iter().position(|&c| nibble(c).is_none()).unwrap_or(0);
    Err(DecodeError::Hex { position })
}

/// Decodes exactly `N` bytes of strict lowercase hex.
pub fn decode_array<const N: usize>(text: &[u8]) -> Result<[u8; N], DecodeError> {
    let v = decode(text)?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| DecodeError::Length {
        expected: N,
        found: v.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_uppercase_and_odd_length() {
        assert!(decode(b"AB").is_err());
        assert!(decode(b"abc").is_err());
        assert!(validate(b"0g").is_err());
        assert_eq!(decode(b"00ff").unwrap(), vec![0, 255]);
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let text = encode(&bytes);
            prop_assert!(validate(text.as_bytes()).is_ok());
            prop_assert_eq!(decode(text.as_bytes()).unwrap(), bytes);
        }

        #[test]
        fn accepts_exactly_even_lowercase_hex(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            let first_bad = text.iter().position(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            let even = text.len() % 2 == 0;
            match (decode(&text), first_bad) {
                (Ok(v), None) => {
                    prop_assert!(even);
                    let again = encode(&v);
                    prop_assert_eq!(again.as_bytes(), text.as_slice());
                }
                (Err(DecodeError::Hex { position }), Some(p)) if even => prop_assert_eq!(position, p),
                (Err(_), _) => prop_assert!(!even || first_bad.is_some()),
                (Ok(_), Some(_)) => prop_assert!(false, "accepted a non-hex digit"),
            }
            prop_assert_eq!(validate(&text).is_ok(), decode(&text).is_ok());
        }
    }
}
