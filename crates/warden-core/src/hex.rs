//! Strict lowercase hexadecimal, the encoding of the `encrypted` field.
//!
//! Only lowercase digits are accepted so that every byte string has exactly one
//! encoding: an entry line cannot be altered without changing its bytes.

use crate::error::DecodeError;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex encoding of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        let hi = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
        let lo = DIGITS.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0');
        out.push(hi);
        out.push(lo);
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

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes strict lowercase hex into `out` (which is cleared first).
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    if !text.len().is_multiple_of(2) {
        return Err(DecodeError::Hex {
            position: text.len(),
        });
    }
    out.reserve(text.len() / 2);
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let (hi, lo) = match pair {
            [a, b] => (nibble(*a), nibble(*b)),
            _ => (None, None),
        };
        match (hi, lo) {
            (Some(h), Some(l)) => out.push((h << 4) | l),
            _ => return Err(DecodeError::Hex { position: i * 2 }),
        }
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
    match text.iter().position(|&c| nibble(c).is_none()) {
        Some(position) => Err(DecodeError::Hex { position }),
        None => Ok(()),
    }
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
    }
}
