//! Inclusion proofs computed from published hash tiles (C2SP tlog-tiles), for a
//! reader that holds the tiles and not the leaves: `warden log prove --log s3://…`.
//!
//! A proof is a list of hashes of ranges of the tree. Every range a proof of RFC 6962
//! names is either a complete subtree (2^h leaves starting at a multiple of 2^h) or
//! the hash of such subtrees combined, so the proof is computed twice over the same
//! recursion: once to list the complete subtrees it needs ([`needs`]), once with their
//! hashes ([`inclusion_with`]). A complete subtree of height `8·T + r` is the fold of
//! 2^r consecutive hashes of one tile at tile level `T` ([`TileRange`]).

use crate::merkle::{Hash, node_hash, root_of};
use crate::tiles::WIDTH;
use std::ops::Range;

/// A complete subtree: its height (it spans 2^height leaves) and its position among
/// the subtrees of that height.
pub type Subtree = (u8, u64);

/// Leaves a tile level's hash spans, as a power of two.
const TILE_HEIGHT: u32 = 8;

/// Where a complete subtree's hash is read from in a tree of some size: the tile
/// (level, index, width as published for that size) and the hashes of it to fold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileRange {
    pub level: u8,
    pub index: u64,
    pub width: usize,
    pub hashes: Range<usize>,
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `[start, start + n)`, where `start` is a multiple of the power of
/// two that covers `n` (as every range of the recursion is).
fn range<E>(
    start: u64,
    n: u64,
    hash: &mut dyn FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Hash, E> {
    if n.is_power_of_two() {
        let h = n.trailing_zeros();
        return hash((u8::try_from(h).unwrap_or(u8::MAX), start >> h));
    }
    let k = split(n);
    let left = range(start, k, hash)?;
    let right = range(start + k, n - k, hash)?;
    Ok(node_hash(&left, &right))
}

fn path<E>(
    start: u64,
    n: u64,
    m: u64,
    hash: &mut dyn FnMut(Subtree) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < start + k {
        path(start, k, m, hash, out)?;
        out.push(range(start + k, n - k, hash)?);
    } else {
        path(start + k, n - k, m, hash, out)?;
        out.push(range(start, k, hash)?);
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (the same hashes,
/// in the same order, as `merkle::inclusion_proof`), from the hashes of complete
/// subtrees that `hash` returns. The caller checks `index < size`.
pub fn inclusion_with<E>(
    size: u64,
    index: u64,
    hash: &mut dyn FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut out = Vec::new();
    path(0, size, index, hash, &mut out)?;
    Ok(out)
}

/// The root of the tree of `size` leaves from the hashes of its complete subtrees
/// (the empty tree's root for 0).
pub fn root_with<E>(
    size: u64,
    hash: &mut dyn FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Hash, E> {
    if size == 0 {
        return Ok(root_of(&[]));
    }
    range(0, size, hash)
}

/// The consistency proof from the tree of `old` leaves to the tree of `size` (the same
/// hashes, in the same order, as `merkle::consistency_proof`: RFC 6962 §2.1.2), from
/// the hashes of complete subtrees that `hash` returns. The caller checks
/// `0 < old <= size`; an `old` of 0 or `size` has the empty proof.
pub fn consistency_with<E>(
    old: u64,
    size: u64,
    hash: &mut dyn FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut out = Vec::new();
    if old > 0 && old < size {
        subproof(old, 0, size, true, hash, &mut out)?;
    }
    Ok(out)
}

/// RFC 6962's SUBPROOF(m, D[start .. start + n], complete): `m` counts from `start`.
fn subproof<E>(
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    hash: &mut dyn FnMut(Subtree) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    if m == n {
        if !complete {
            out.push(range(start, n, hash)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, start, k, complete, hash, out)?;
        out.push(range(start + k, n - k, hash)?);
    } else {
        subproof(m - k, start + k, n - k, false, hash, out)?;
        out.push(range(start, k, hash)?);
    }
    Ok(())
}

/// The complete subtrees the proof of `index` in a tree of `size` needs, in the order
/// the proof uses them.
#[must_use]
pub fn needs(size: u64, index: u64) -> Vec<Subtree> {
    let mut out = Vec::new();
    let _ = inclusion_with::<std::convert::Infallible>(size, index, &mut |s| {
        out.push(s);
        Ok([0u8; 32])
    });
    out
}

/// Where the hash of the complete subtree `s` of a tree of `size` leaves is published:
/// `None` when `s` is not a complete subtree of that tree.
#[must_use]
pub fn tile_range(s: Subtree, size: u64) -> Option<TileRange> {
    let (height, index) = s;
    let level = u32::from(height) / TILE_HEIGHT;
    let r = u32::from(height) % TILE_HEIGHT;
    // The subtree's hashes at the tile level's own height, and how many there are.
    let first = index.checked_shl(r)?;
    let count = 1u64 << r;
    let stored = size.checked_shr(level * TILE_HEIGHT).unwrap_or(0);
    if first.checked_add(count)? > stored {
        return None;
    }
    let w = WIDTH as u64;
    let tile = first / w;
    let width = usize::try_from((stored - tile * w).min(w)).ok()?;
    let lo = usize::try_from(first % w).ok()?;
    Some(TileRange {
        level: u8::try_from(level).ok()?,
        index: tile,
        width,
        hashes: lo..lo + usize::try_from(count).ok()?,
    })
}

/// The hash of a complete subtree from the hashes of its tile range.
#[must_use]
pub fn fold(hashes: &[Hash]) -> Hash {
    root_of(hashes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::merkle::{inclusion_proof, leaf_hash};
    use crate::tiles::{Tile, TileHasher};
    use std::collections::HashMap;

    /// The published tiles of a tree of `size` leaves, by (level, index, width).
    fn publish(leaves: &[Hash]) -> HashMap<(u8, u64, usize), Vec<Hash>> {
        let mut t = TileHasher::new();
        let mut full: Vec<Tile> = Vec::new();
        for l in leaves {
            t.push(*l, &mut full);
        }
        full.into_iter()
            .chain(t.partials())
            .map(|t| ((t.level, t.index, t.hashes.len()), t.hashes))
            .collect()
    }

    /// Proofs from tiles equal the proofs from the leaves, for trees that end inside
    /// a tile, on its edge, and past the second tile level, and for indexes at every
    /// kind of position.
    #[test]
    fn proofs_from_tiles_equal_proofs_from_leaves() {
        let leaves: Vec<Hash> = (0..70_000u32)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        for size in [
            1u64, 2, 3, 255, 256, 257, 511, 512, 700, 65_535, 65_536, 65_537, 70_000,
        ] {
            let n = usize::try_from(size).unwrap();
            let tiles = publish(&leaves[..n]);
            for index in [
                0,
                1,
                size / 2,
                size.saturating_sub(257),
                size.saturating_sub(2),
                size - 1,
            ] {
                if index >= size {
                    continue;
                }
                let want = inclusion_proof(&leaves[..n], index).unwrap();
                let mut read = |s: Subtree| -> Result<Hash, String> {
                    let r = tile_range(s, size).ok_or(format!("{s:?} not in {size}"))?;
                    let t = tiles
                        .get(&(r.level, r.index, r.width))
                        .ok_or(format!("no tile {r:?} for {size}"))?;
                    Ok(fold(&t[r.hashes]))
                };
                let got = inclusion_with(size, index, &mut read).unwrap();
                assert_eq!(got, want, "size {size} index {index}");
                assert!(
                    needs(size, index)
                        .iter()
                        .all(|s| tile_range(*s, size).is_some()),
                    "every subtree the proof needs is published at size {size}"
                );
            }
        }
    }

    /// Consistency proofs and roots from complete subtrees equal those from the leaves,
    /// for old sizes at and around every power of two and tile edge.
    #[test]
    fn consistency_proofs_and_roots_from_subtrees_equal_those_from_the_leaves() {
        use crate::merkle::{consistency_proof, root_of};
        let leaves: Vec<Hash> = (0..1_100u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut read = |(h, k): Subtree| -> Result<Hash, String> {
            let a = usize::try_from(k << h).unwrap();
            Ok(root_of(&leaves[a..a + (1usize << h)]))
        };
        for size in [1u64, 2, 3, 7, 8, 9, 255, 256, 257, 700, 1_024, 1_100] {
            let n = usize::try_from(size).unwrap();
            assert_eq!(root_with(size, &mut read).unwrap(), root_of(&leaves[..n]));
            for old in (0..=size).filter(|m| m % 37 == 0 || m.is_power_of_two() || *m + 1 >= size) {
                let want = consistency_proof(&leaves[..n], old).unwrap();
                let got = consistency_with(old, size, &mut read).unwrap();
                assert_eq!(got, want, "old {old} size {size}");
            }
        }
        assert_eq!(root_with(0, &mut read).unwrap(), root_of(&[]));
    }

    #[test]
    fn subtrees_outside_the_tree_have_no_tile() {
        assert_eq!(tile_range((0, 5), 5), None);
        assert_eq!(tile_range((3, 1), 15), None);
        assert_eq!(
            tile_range((9, 1), 1024),
            Some(TileRange {
                level: 1,
                index: 0,
                width: 4,
                hashes: 2..4
            })
        );
    }
}
