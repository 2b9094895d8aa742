//! Chunked dataset encryption: a STREAM construction over ChaCha20-Poly1305.
//!
//! ```text
//! "WARDEN-DATASET\x01\n"  magic (16 bytes)
//! u32 big-endian          header length
//! header                  JSON: version, chunk size, nonce prefix, wrapped data keys
//! chunk 0 .. chunk n-1    ChaCha20-Poly1305(plaintext chunk) || tag (16 bytes)
//! ```
//!
//! Every chunk but the last holds exactly `chunk` plaintext bytes; the last holds
//! `0..=chunk` (an empty file is one empty last chunk). Chunk `i` is sealed under the
//! nonce `prefix(7) || i (u32, big-endian) || last (1 byte: 1 for the final chunk)` with
//! the SHA-256 of magic and header as associated data. So:
//!
//! - a flipped bit anywhere in a chunk fails its tag;
//! - a reordered, dropped or duplicated chunk is opened under the wrong counter and fails;
//! - a truncation at a chunk boundary leaves a final chunk that was sealed as not last,
//!   and fails; a truncation inside a chunk fails that chunk's tag; bytes appended after
//!   the last chunk fail as a chunk sealed as not last;
//! - a changed header (chunk size, prefix, recipients) changes every chunk's associated
//!   data.
//!
//! The random 256-bit data key is wrapped to each recipient with the hybrid ML-KEM-768 +
//! X25519 scheme of the ledger's auditor keys (context `warden-dataset-v1`).
//! Encryption and decryption use both cores: chunks are sealed or opened in parallel
//! batches while the reader and writer stay in order.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use warden_core::crypto::{self, RecipientPublicKey, RecipientSecretKey, WrappedKey};
use zeroize::Zeroizing;

/// The file's first bytes.
pub const MAGIC: &[u8; 16] = b"WARDEN-DATASET\x01\n";
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 1 << 20;
const TAG: usize = 16;
const PREFIX: usize = 7;
/// Largest header accepted (many recipients fit: each is about 1.2 KiB).
pub const MAX_HEADER: usize = 1 << 20;
const CONTEXT: &[u8] = b"warden-dataset-v1";
/// Chunks sealed or opened per parallel batch.
const BATCH: usize = 16;

/// Errors. Decryption errors never say more than which chunk failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a Warden encrypted dataset (bad magic)")]
    NotDataset,
    #[error("bad header: {0}")]
    Header(String),
    #[error("no recipient: give at least one")]
    NoRecipient,
    #[error("this key is not a recipient of the dataset (recipients: {0})")]
    NotRecipient(String),
    #[error("chunk {0} failed authentication: the file was altered, reordered or truncated")]
    Chunk(u64),
    #[error("the file ends inside its header")]
    Truncated,
    #[error("crypto: {0}")]
    Crypto(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderJson {
    version: u32,
    aead: String,
    chunk: usize,
    nonce_prefix: String,
    recipients: Vec<WrappedJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrappedJson {
    id: String,
    kem_ct: String,
    eph: String,
    ct: String,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Result<Vec<u8>, DatasetError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| DatasetError::Header(e.to_string()))
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// SHA-256 of magic and header, in hex: names this encrypted file.
    pub dataset_id: String,
    pub plaintext_bytes: u64,
    pub chunks: u64,
    /// Recipient ids the data key is wrapped to.
    pub recipients: Vec<String>,
}

/// A header as read from a file.
#[derive(Clone, Debug)]
pub struct Header {
    chunk: usize,
    prefix: [u8; PREFIX],
    wrapped: Vec<WrappedKey>,
    aad: [u8; 32],
}

impl Header {
    /// Recipient ids.
    #[must_use]
    pub fn recipients(&self) -> Vec<String> {
        self.wrapped.iter().map(|w| w.recipient.clone()).collect()
    }
    /// The dataset id (hex SHA-256 of magic and header).
    #[must_use]
    pub fn id(&self) -> String {
        warden_core::hex::encode(&self.aad)
    }
}

fn random(buf: &mut [u8]) -> Result<(), DatasetError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| DatasetError::Crypto("no randomness".into()))
}

fn nonce(prefix: &[u8; PREFIX], i: u64, last: bool) -> Result<[u8; 12], DatasetError> {
    let i = u32::try_from(i).map_err(|_| DatasetError::Crypto("more than 2^32 chunks".into()))?;
    let mut n = [0u8; 12];
    for (d, s) in n.iter_mut().zip(prefix.iter().chain(&i.to_be_bytes())) {
        *d = *s;
    }
    if let Some(l) = n.get_mut(11) {
        *l = u8::from(last);
    }
    Ok(n)
}

fn aead_key(k: &[u8; 32]) -> Result<LessSafeKey, DatasetError> {
    UnboundKey::new(&CHACHA20_POLY1305, k)
        .map(LessSafeKey::new)
        .map_err(|_| DatasetError::Crypto("bad data key".into()))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Runs `f` over `items` on two threads.
fn parallel<T: Send>(
    items: &mut [T],
    f: &(dyn Fn(&mut T) -> Result<(), DatasetError> + Sync),
) -> Result<(), DatasetError> {
    if items.len() < 2 {
        return items.iter_mut().try_for_each(f);
    }
    let mid = items.len() / 2;
    let (a, b) = items.split_at_mut(mid);
    std::thread::scope(|s| {
        let h = s.spawn(|| a.iter_mut().try_for_each(f));
        let rb = b.iter_mut().try_for_each(f);
        let ra = h
            .join()
            .unwrap_or_else(|_| Err(DatasetError::Crypto("worker panicked".into())));
        ra.and(rb)
    })
}

/// Encrypts `input` to `output` for `recipients`.
pub fn encrypt(
    input: &mut dyn Read,
    output: &mut (dyn Write + Send),
    recipients: &[RecipientPublicKey],
    progress: &mut dyn FnMut(u64),
) -> Result<Summary, DatasetError> {
    if recipients.is_empty() {
        return Err(DatasetError::NoRecipient);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    random(key.as_mut_slice())?;
    let mut prefix = [0u8; PREFIX];
    random(&mut prefix)?;
    let mut wrapped = Vec::new();
    for r in recipients {
        let mut eph = Zeroizing::new([0u8; 32]);
        random(eph.as_mut_slice())?;
        let w = crypto::wrap(&key, r, &eph, CONTEXT)
            .map_err(|e| DatasetError::Crypto(e.to_string()))?;
        wrapped.push(WrappedJson {
            id: w.recipient,
            kem_ct: b64(&w.kem_ct),
            eph: b64(&w.eph),
            ct: b64(&w.ct),
        });
    }
    let header = serde_json::to_vec(&HeaderJson {
        version: 1,
        aead: "chacha20-poly1305-stream".into(),
        chunk: CHUNK,
        nonce_prefix: b64(&prefix),
        recipients: wrapped,
    })
    .map_err(|e| DatasetError::Header(e.to_string()))?;
    let aad = header_digest(&header);
    output.write_all(MAGIC)?;
    output.write_all(
        &u32::try_from(header.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    )?;
    output.write_all(&header)?;
    let k = aead_key(&key)?;
    let mut s = Summary {
        dataset_id: warden_core::hex::encode(&aad),
        recipients: recipients.iter().map(RecipientPublicKey::id).collect(),
        ..Summary::default()
    };
    let mut plain = 0u64;
    let chunks = pipeline(
        input,
        output,
        CHUNK,
        &mut |n| {
            plain = n;
            progress(n);
        },
        &|i, last, buf| {
            let n = nonce(&prefix, i, last)?;
            k.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::from(&aad), buf)
                .map_err(|_| DatasetError::Crypto("sealing".into()))
        },
    )?;
    s.chunks = chunks;
    s.plaintext_bytes = plain;
    output.flush()?;
    Ok(s)
}

/// Seals or opens one chunk: (index, is last, bytes in place).
type ChunkFn<'a> = dyn Fn(u64, bool, &mut Vec<u8>) -> Result<(), DatasetError> + Sync + 'a;

/// One batch in flight: (chunk index, is last, bytes).
type Batch = Vec<(u64, bool, Vec<u8>)>;

/// Reads `input` in `size`-byte chunks (the last may be shorter, or empty when the input
/// is), transforms each with `f(index, last, buf)` on two threads a batch at a time,
/// and writes the results in order from a writer thread, so reading, sealing and
/// writing overlap. `progress` gets the bytes read. Returns the number of chunks.
fn pipeline(
    input: &mut dyn Read,
    output: &mut (dyn Write + Send),
    size: usize,
    progress: &mut dyn FnMut(u64),
    f: &ChunkFn<'_>,
) -> Result<u64, DatasetError> {
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<Batch>(2);
    let (to_reader, spare) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), DatasetError> {
            for batch in batches {
                for (_, _, buf) in &batch {
                    output.write_all(buf)?;
                }
                // The reader may have stopped on an error; then nobody takes it back.
                let _ = to_reader.send(batch);
            }
            output.flush()?;
            Ok(())
        });
        let read = (|| -> Result<u64, DatasetError> {
            let mut ahead = vec![0u8; size];
            let mut ahead_len = fill(input, &mut ahead)?;
            let mut index = 0u64;
            let mut bytes = 0u64;
            loop {
                let mut batch = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                let mut bufs: Vec<Vec<u8>> = batch.drain(..).map(|(_, _, b)| b).collect();
                let mut done = false;
                while batch.len() < BATCH && !done {
                    let mut buf = bufs.pop().unwrap_or_else(|| Vec::with_capacity(size + TAG));
                    buf.clear();
                    buf.extend_from_slice(ahead.get(..ahead_len).unwrap_or_default());
                    bytes += ahead_len as u64;
                    ahead_len = if ahead_len < size {
                        0
                    } else {
                        fill(input, &mut ahead)?
                    };
                    done = ahead_len == 0;
                    batch.push((index, done, buf));
                    index += 1;
                }
                parallel(&mut batch, &|(i, last, buf)| f(*i, *last, buf))?;
                progress(bytes);
                if to_writer.send(batch).is_err() || done {
                    break;
                }
            }
            Ok(index)
        })();
        drop(to_writer);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(DatasetError::Crypto("writer panicked".into())));
        let n = read?;
        wrote?;
        Ok(n)
    })
}

fn header_digest(header: &[u8]) -> [u8; 32] {
    let mut m = Vec::with_capacity(MAGIC.len() + 4 + header.len());
    m.extend_from_slice(MAGIC);
    m.extend_from_slice(
        &u32::try_from(header.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    m.extend_from_slice(header);
    warden_core::merkle::sha256(&m)
}

/// Reads and checks the magic and header.
pub fn read_header(input: &mut dyn Read) -> Result<Header, DatasetError> {
    let mut magic = [0u8; 16];
    if fill(input, &mut magic)? < magic.len() {
        return Err(if magic.starts_with(b"WARDEN-DATASET") {
            DatasetError::Truncated
        } else {
            DatasetError::NotDataset
        });
    }
    if &magic != MAGIC {
        return Err(DatasetError::NotDataset);
    }
    let mut len = [0u8; 4];
    if fill(input, &mut len)? < 4 {
        return Err(DatasetError::Truncated);
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return Err(DatasetError::Header("larger than 1 MiB".into()));
    }
    let mut header = vec![0u8; len];
    if fill(input, &mut header)? < len {
        return Err(DatasetError::Truncated);
    }
    let h: HeaderJson =
        serde_json::from_slice(&header).map_err(|e| DatasetError::Header(e.to_string()))?;
    if h.version != 1 || h.aead != "chacha20-poly1305-stream" {
        return Err(DatasetError::Header(format!(
            "unsupported version {} / {}",
            h.version, h.aead
        )));
    }
    if h.chunk == 0 || h.chunk > 16 << 20 {
        return Err(DatasetError::Header(format!("chunk size {}", h.chunk)));
    }
    let prefix: [u8; PREFIX] = unb64(&h.nonce_prefix)?
        .try_into()
        .map_err(|_| DatasetError::Header("nonce prefix".into()))?;
    let mut wrapped = Vec::new();
    for w in h.recipients {
        wrapped.push(WrappedKey {
            recipient: w.id,
            kem_ct: unb64(&w.kem_ct)?,
            eph: unb64(&w.eph)?
                .try_into()
                .map_err(|_| DatasetError::Header("ephemeral key".into()))?,
            ct: unb64(&w.ct)?,
        });
    }
    Ok(Header {
        chunk: h.chunk,
        prefix,
        wrapped,
        aad: header_digest(&header),
    })
}

/// Decrypts `input` to `output` with `key`. Each chunk is authenticated before it is
/// written; on an error, what was written is a prefix of the plaintext and must be
/// discarded (the CLI writes to a temporary file and removes it).
pub fn decrypt(
    input: &mut dyn Read,
    output: &mut (dyn Write + Send),
    key: &RecipientSecretKey,
    progress: &mut dyn FnMut(u64),
) -> Result<Summary, DatasetError> {
    let h = read_header(input)?;
    let id = key.public().id();
    let w = h
        .wrapped
        .iter()
        .find(|w| w.recipient == id)
        .ok_or_else(|| DatasetError::NotRecipient(h.recipients().join(", ")))?;
    let dk = crypto::unwrap(w, key, CONTEXT).map_err(|e| DatasetError::Crypto(e.to_string()))?;
    let k = aead_key(&dk)?;
    let sealed = h.chunk + TAG;
    let mut s = Summary {
        dataset_id: h.id(),
        recipients: h.recipients(),
        ..Summary::default()
    };
    let mut read = 0u64;
    let chunks = pipeline(
        input,
        output,
        sealed,
        &mut |n| {
            read = n;
            progress(n);
        },
        &|i, last, buf| {
            if buf.len() < TAG {
                return Err(DatasetError::Chunk(i));
            }
            let n = nonce(&h.prefix, i, last)?;
            let pt = k
                .open_in_place(Nonce::assume_unique_for_key(n), Aad::from(&h.aad), buf)
                .map_err(|_| DatasetError::Chunk(i))?
                .len();
            buf.truncate(pt);
            Ok(())
        },
    )?;
    s.chunks = chunks;
    s.plaintext_bytes = read.saturating_sub(chunks * TAG as u64);
    output.flush()?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn keypair() -> RecipientSecretKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        random(seed.as_mut_slice()).unwrap();
        RecipientSecretKey::generate(seed).unwrap()
    }

    fn enc(data: &[u8], to: &[&RecipientSecretKey]) -> Vec<u8> {
        let pubs: Vec<RecipientPublicKey> = to.iter().map(|k| k.public().clone()).collect();
        let mut out = Vec::new();
        encrypt(&mut &data[..], &mut out, &pubs, &mut |_| {}).unwrap();
        out
    }

    fn dec(ct: &[u8], k: &RecipientSecretKey) -> Result<Vec<u8>, DatasetError> {
        let mut out = Vec::new();
        decrypt(&mut &ct[..], &mut out, k, &mut |_| {})?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_chunk_edges_for_every_recipient() {
        let (a, b) = (keypair(), keypair());
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 17 * CHUNK + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let ct = enc(&data, &[&a, &b]);
            assert_eq!(dec(&ct, &a).unwrap(), data, "{len}");
            assert_eq!(dec(&ct, &b).unwrap(), data, "{len}");
        }
        let ct = enc(b"x", &[&a]);
        assert!(matches!(dec(&ct, &b), Err(DatasetError::NotRecipient(_))));
        assert!(matches!(dec(b"hello", &a), Err(DatasetError::NotDataset)));
    }
}
