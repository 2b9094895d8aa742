//! RFC 6962 / RFC 9162 Merkle tree hashing, a compact range for appending, and
//! inclusion and consistency proofs (generation over leaf hashes, and verification).

use crate::error::ProofError;
use aws_lc_rs::digest;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

fn sha256_parts(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> Hash {
    sha256_parts(&[data])
}

/// The root of the empty tree: SHA-256 of the empty string.
#[must_use]
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256_parts(&[&[0u8], data])
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256_parts(&[&[1u8], left, right])
}

/// The right edge of a tree of `size` leaves: the roots of its perfect subtrees, left
/// to right. Appending costs one leaf hash and, amortised, one node hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    stack: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a range from its parts; `None` if the number of hashes does not match
    /// the size (one per set bit).
    #[must_use]
    pub fn from_parts(size: u64, stack: Vec<Hash>) -> Option<Self> {
        (usize::try_from(size.count_ones()).ok() == Some(stack.len()))
            .then_some(Self { size, stack })
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, left to right.
    #[must_use]
    pub fn hashes(&self) -> &[Hash] {
        &self.stack
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            match self.stack.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break,
            }
            s >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The tree root.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }
}

/// Root of the tree over `leaves` (RFC 6962 MTH over leaf hashes).
#[must_use]
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut r = CompactRange::new();
    for l in leaves {
        r.push(*l);
    }
    r.root()
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// RFC 6962 inclusion proof (audit path) for `index` in the tree over `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    let idx = usize::try_from(index).map_err(|_| ProofError::IndexOutOfRange { index, size })?;
    if idx >= leaves.len() {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(idx, leaves, &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    let (left, right) = d.split_at(k);
    if m < k {
        path(m, left, out);
        out.push(root_of(right));
    } else {
        path(m - k, right, out);
        out.push(root_of(left));
    }
}

/// RFC 6962 consistency proof between the first `old_size` leaves and all `leaves`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new = leaves.len() as u64;
    let m = usize::try_from(old_size).map_err(|_| ProofError::BadSizes { old: old_size, new })?;
    if old_size > new {
        return Err(ProofError::BadSizes { old: old_size, new });
    }
    let mut out = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !complete {
            out.push(root_of(d));
        }
        return;
    }
    let k = split(n);
    let (left, right) = d.split_at(k);
    if m <= k {
        subproof(m, left, complete, out);
        out.push(root_of(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root_of(left));
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength {
                expected: 0,
                found: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength {
            expected: proof.len() + 1,
            found: proof.len(),
        });
    }
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                found: proof.len(),
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength {
                expected: 0,
                found: proof.len(),
            })
        };
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        nodes.push(*old_root);
    }
    nodes.extend_from_slice(proof);
    let Some((first, rest)) = nodes.split_first() else {
        return Err(ProofError::WrongLength {
            expected: 1,
            found: 0,
        });
    };
    let mut f = old_size - 1;
    let mut s = new_size - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength {
                expected: 0,
                found: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength {
            expected: proof.len() + 1,
            found: proof.len(),
        });
    }
    if &fr == old_root && &sr == new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    //! Known answers from the RFC 6962 reference implementation's test data, as
    //! published in transparency-dev/merkle (`testonly/constants.go`) and the
    //! certificate-transparency `merkle_tree_test`.
    use super::*;
    use crate::hex;
    use proptest::prelude::*;

    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(s: &str) -> Hash {
        hex::decode_array(s.as_bytes()).unwrap()
    }

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l.as_bytes()).unwrap()))
            .collect()
    }

    #[test]
    fn rfc6962_roots() {
        let l = leaves();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(root_of(&l[..n]), h(want), "size {n}");
        }
    }

    #[test]
    fn rfc6962_inclusion_vectors() {
        let l = leaves();
        let cases: [(u64, &[&str]); 2] = [
            (
                0,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (index, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(inclusion_proof(&l, index).unwrap(), want);
            let idx = usize::try_from(index).unwrap();
            verify_inclusion(&l[idx], index, 8, &want, &h(ROOTS[8])).unwrap();
        }
    }

    #[test]
    fn rfc6962_consistency_vectors() {
        let l = leaves();
        let cases: [(u64, u64, &[&str]); 3] = [
            (
                2,
                8,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (m, n, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let nn = usize::try_from(n).unwrap();
            let mm = usize::try_from(m).unwrap();
            assert_eq!(consistency_proof(&l[..nn], m).unwrap(), want, "{m}->{n}");
            verify_consistency(m, n, &h(ROOTS[mm]), &h(ROOTS[nn]), &want).unwrap();
        }
    }

    proptest! {
        #[test]
        fn proofs_verify_and_reject_tampering(n in 1usize..70, seed in any::<u64>()) {
            let l: Vec<Hash> = (0..n).map(|i| leaf_hash(&(seed ^ i as u64).to_be_bytes())).collect();
            let root = root_of(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i as u64).unwrap();
                prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &p, &root).is_ok());
                prop_assert!(verify_inclusion(&l[i], (i as u64 + 1) % n as u64, n as u64, &p, &root).is_err() || n == 1);
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    prop_assert!(first != &bad[0]);
                    prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &bad, &root).is_err());
                }
            }
            for m in 0..=n {
                let p = consistency_proof(&l, m as u64).unwrap();
                let old = root_of(&l[..m]);
                prop_assert!(verify_consistency(m as u64, n as u64, &old, &root, &p).is_ok());
                if m > 0 && m < n {
                    let mut bad_old = old;
                    bad_old[0] ^= 1;
                    prop_assert!(verify_consistency(m as u64, n as u64, &bad_old, &root, &p).is_err());
                }
            }
        }

        #[test]
        fn compact_range_matches_recursive_root(n in 0usize..300) {
            let l: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let mut r = CompactRange::new();
            for x in &l { r.push(*x); }
            fn mth(d: &[Hash]) -> Hash {
                match d.len() {
                    0 => empty_root(),
                    1 => d[0],
                    n => { let k = split(n); node_hash(&mth(&d[..k]), &mth(&d[k..])) }
                }
            }
            prop_assert_eq!(r.root(), mth(&l));
            let back = CompactRange::from_parts(r.size(), r.hashes().to_vec()).unwrap();
            prop_assert_eq!(back.root(), r.root());
        }
    }
}
