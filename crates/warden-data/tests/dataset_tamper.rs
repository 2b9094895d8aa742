//! Every way of altering an encrypted dataset is detected: a flipped bit anywhere
//! (header, chunk body, tag), a dropped, duplicated or reordered chunk, truncation at a
//! chunk boundary, inside a chunk or inside the header, and bytes appended at the end.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use warden_core::crypto::RecipientSecretKey;
use warden_data::dataset::{CHUNK, DatasetError, decrypt, encrypt};
use zeroize::Zeroizing;

const SEALED: usize = CHUNK + 16;

fn key() -> RecipientSecretKey {
    RecipientSecretKey::generate(Zeroizing::new([7u8; 32])).unwrap()
}

fn dec(ct: &[u8], k: &RecipientSecretKey) -> Result<Vec<u8>, DatasetError> {
    let mut out = Vec::new();
    decrypt(&mut &ct[..], &mut out, k, &mut |_| {})?;
    Ok(out)
}

/// Byte offset of the first chunk.
fn body_start(ct: &[u8]) -> usize {
    20 + u32::from_be_bytes(ct[16..20].try_into().unwrap()) as usize
}

#[test]
fn any_alteration_is_detected() {
    let k = key();
    let data: Vec<u8> = (0..(5 * CHUNK + 12_345))
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let mut ct = Vec::new();
    encrypt(&mut &data[..], &mut ct, &[k.public().clone()], &mut |_| {}).unwrap();
    assert_eq!(dec(&ct, &k).unwrap(), data);
    let b = body_start(&ct);
    let chunk = |i: usize| b + i * SEALED..(b + (i + 1) * SEALED).min(ct.len());
    assert_eq!(ct.len(), b + 5 * SEALED + 12_345 + 16);

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Flipped bits: header, each chunk's body and tag, the last byte.
    for pos in [
        3,
        18,
        25,
        b - 2,
        b,
        b + CHUNK / 2,
        b + CHUNK + 3,
        b + SEALED - 1,
        b + 3 * SEALED + 7,
        ct.len() - 1,
    ] {
        let mut c = ct.clone();
        c[pos] ^= 0x10;
        cases.push((format!("bit flipped at {pos}"), c));
    }
    // A dropped chunk (first, middle, last).
    for i in [0, 2, 5] {
        let mut c = ct.clone();
        c.drain(chunk(i));
        cases.push((format!("chunk {i} dropped"), c));
    }
    // A duplicated chunk.
    for i in [0, 3] {
        let mut c = ct[..chunk(i).end].to_vec();
        c.extend_from_slice(&ct[chunk(i)]);
        c.extend_from_slice(&ct[chunk(i).end..]);
        cases.push((format!("chunk {i} duplicated"), c));
    }
    // Reordered chunks.
    for (i, j) in [(0, 1), (1, 4)] {
        let mut c = ct[..b].to_vec();
        for n in 0..6 {
            let m = if n == i {
                j
            } else if n == j {
                i
            } else {
                n
            };
            c.extend_from_slice(&ct[chunk(m)]);
        }
        cases.push((format!("chunks {i} and {j} swapped"), c));
    }
    // Truncations: at each chunk boundary, inside a chunk, inside the header.
    for end in [
        b,
        b + SEALED,
        b + 3 * SEALED,
        b + 5 * SEALED,
        b + 2 * SEALED + 100,
        ct.len() - 1,
        b - 10,
        10,
    ] {
        cases.push((format!("truncated at {end}"), ct[..end].to_vec()));
    }
    // Appended bytes: a copy of the last chunk, and garbage.
    let mut c = ct.clone();
    c.extend_from_slice(&ct[chunk(5)]);
    cases.push(("last chunk appended again".into(), c));
    let mut c = ct.clone();
    c.extend_from_slice(&[0u8; 100]);
    cases.push(("garbage appended".into(), c));

    for (what, c) in cases {
        match dec(&c, &k) {
            Ok(_) => panic!("{what}: not detected"),
            Err(e) => assert!(
                matches!(
                    e,
                    DatasetError::Chunk(_)
                        | DatasetError::Truncated
                        | DatasetError::Header(_)
                        | DatasetError::NotDataset
                        | DatasetError::NotRecipient(_)
                        | DatasetError::Crypto(_)
                ),
                "{what}: {e}"
            ),
        }
    }
}

#[test]
fn an_exact_multiple_of_the_chunk_size_cannot_lose_its_last_chunk() {
    let k = key();
    let data = vec![1u8; 3 * CHUNK];
    let mut ct = Vec::new();
    encrypt(&mut &data[..], &mut ct, &[k.public().clone()], &mut |_| {}).unwrap();
    assert_eq!(dec(&ct, &k).unwrap(), data);
    let b = body_start(&ct);
    assert_eq!(ct.len(), b + 3 * SEALED, "no empty trailer chunk");
    assert!(matches!(
        dec(&ct[..b + 2 * SEALED], &k),
        Err(DatasetError::Chunk(1))
    ));
}
