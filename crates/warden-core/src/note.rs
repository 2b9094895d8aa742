//! C2SP signed notes (`c2sp.org/signed-note`): text, a blank line, and signature lines
//! `— <key name> base64(key ID || signature)`.

use crate::error::DecodeError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Largest note accepted (several post-quantum signatures fit comfortably).
pub const MAX_NOTE_LEN: usize = 128 * 1024;
/// Most signatures accepted on one note.
pub const MAX_SIGNATURES: usize = 32;
const DASH: &str = "\u{2014} ";

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (first four bytes of the decoded signature).
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// The signature line: `— <name> base64(key ID || signature)` and a newline.
    #[must_use]
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.sig);
        format!("{DASH}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A parsed signed note. Its text is untrusted until a signature on it is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    sigs: Vec<NoteSignature>,
}

/// Whether `name` is a valid key name: non-empty, no whitespace, no `+`.
#[must_use]
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// C2SP key ID: the first four bytes of SHA-256(name || 0x0A || type || public key).
#[must_use]
pub fn key_id(name: &str, sig_type: &[u8], public_key: &[u8]) -> u32 {
    let mut m = Vec::with_capacity(name.len() + 1 + sig_type.len() + public_key.len());
    m.extend_from_slice(name.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(sig_type);
    m.extend_from_slice(public_key);
    let h = crate::merkle::sha256(&m);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

impl Note {
    /// A note with `text` (which must end in a newline) and the given signatures.
    pub fn new(text: String, sigs: Vec<NoteSignature>) -> Result<Self, DecodeError> {
        let n = Self { text, sigs };
        // Round-trip through the parser so that only well-formed notes exist.
        Self::parse(n.to_string().as_bytes())
    }

    /// The signed text, including its final newline.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures, in order.
    #[must_use]
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.sigs
    }

    /// Parses a signed note strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "signed note";
        if bytes.len() > MAX_NOTE_LEN {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: MAX_NOTE_LEN,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Syntax {
            what: WHAT,
            detail: "not utf-8",
        })?;
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(DecodeError::Syntax {
                what: WHAT,
                detail: "control character",
            });
        }
        if !s.ends_with('\n') {
            return Err(DecodeError::Syntax {
                what: WHAT,
                detail: "missing final newline",
            });
        }
        let split = s.rfind("\n\n").ok_or(DecodeError::Syntax {
            what: WHAT,
            detail: "no signature block",
        })?;
        let (text, sig_block) = (
            s.get(..=split).unwrap_or_default(),
            s.get(split + 2..).unwrap_or_default(),
        );
        if text.len() <= 1 {
            return Err(DecodeError::Syntax {
                what: WHAT,
                detail: "empty text",
            });
        }
        let mut sigs = Vec::new();
        for line in sig_block.split_terminator('\n') {
            let rest = line.strip_prefix(DASH).ok_or(DecodeError::Syntax {
                what: WHAT,
                detail: "signature line must start with an em dash",
            })?;
            let (name, b64) = rest.split_once(' ').ok_or(DecodeError::Syntax {
                what: WHAT,
                detail: "signature line needs a key name and a signature",
            })?;
            if !valid_key_name(name) {
                return Err(DecodeError::Syntax {
                    what: WHAT,
                    detail: "invalid key name",
                });
            }
            let raw = B64.decode(b64).map_err(|_| DecodeError::Base64)?;
            let (id, sig) = raw.split_first_chunk::<4>().ok_or(DecodeError::Syntax {
                what: WHAT,
                detail: "signature shorter than its key id",
            })?;
            if sig.is_empty() {
                return Err(DecodeError::Syntax {
                    what: WHAT,
                    detail: "empty signature",
                });
            }
            sigs.push(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes(*id),
                sig: sig.to_vec(),
            });
            if sigs.len() > MAX_SIGNATURES {
                return Err(DecodeError::Syntax {
                    what: WHAT,
                    detail: "too many signatures",
                });
            }
        }
        if sigs.is_empty() {
            return Err(DecodeError::Syntax {
                what: WHAT,
                detail: "no signatures",
            });
        }
        Ok(Self {
            text: text.to_owned(),
            sigs,
        })
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.sigs {
            f.write_str(&s.line())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Parsing vectors from the C2SP signed-note specification (its example note) and
    //! from golang.org/x/mod/sumdb/note's test cases for malformed notes.
    use super::*;

    const SPEC_EXAMPLE: &str = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

    #[test]
    fn parses_the_spec_example() {
        let n = Note::parse(SPEC_EXAMPLE.as_bytes()).unwrap();
        // The text may contain blank lines; the last blank line separates the signatures.
        assert_eq!(
            n.text(),
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
        );
        assert_eq!(n.signatures().len(), 1);
        assert_eq!(n.signatures()[0].name, "quasimodo.example/salvatore");
        assert_eq!(n.signatures()[0].key_id, 0x367b_a04b);
        assert_eq!(n.signatures()[0].sig.len(), 64);
        assert_eq!(n.to_string(), SPEC_EXAMPLE);
    }

    #[test]
    fn rejects_malformed_notes() {
        let bad: &[&str] = &[
            "",
            "text\n",
            "text\n\n",
            "text\n\n\u{2014} name\n",
            "text\n\n- name AAAAAAAA\n",
            "text\n\n\u{2014} name AAAA\n",
            "text\n\n\u{2014} na+me AAAAAAAA\n",
            "text\n\n\u{2014} name !!!!\n",
            "te\u{7}xt\n\n\u{2014} name AAAAAAAA\n",
            "text\n\n\u{2014} name AAAAAAAA",
            "\n\n\u{2014} name AAAAAAAA\n",
        ];
        for b in bad {
            assert!(Note::parse(b.as_bytes()).is_err(), "{b:?}");
        }
    }

    #[test]
    fn key_id_matches_spec_formula() {
        // key ID = SHA-256(name || 0x0A || type || key)[:4]
        let id = key_id("example.com/k", &[0x01], &[0u8; 32]);
        let mut m = b"example.com/k\n\x01".to_vec();
        m.extend_from_slice(&[0u8; 32]);
        let h = crate::merkle::sha256(&m);
        assert_eq!(id.to_be_bytes(), [h[0], h[1], h[2], h[3]]);
    }
}
