//! The ledger as static objects in the C2SP `tlog-tiles` layout: entry bundles under
//! `tile/entries/`, hash tiles under `tile/<L>/`, the latest signed checkpoint at
//! `checkpoint`. Warden adds its checkpoint records (every signed checkpoint, which
//! verification needs to check the key schedule) as bundles of lines under
//! `warden/checkpoints/`, and the publisher's position at `warden/state.json`.
//!
//! [`TileHasher`] keeps the right edge of the tiled tree (the tile still filling at
//! each level) and hands out each tile as it completes; the same code builds the tiles
//! a publisher uploads and re-derives the tiles a verifier downloads.

use crate::error::DecodeError;
use crate::merkle::{CompactRange, Hash, root_of};

/// Hashes (or entries) in a full tile.
pub const WIDTH: usize = 256;
/// Longest entry an entry bundle holds (its length is a big-endian `u16`).
pub const MAX_ENTRY: usize = u16::MAX as usize;
/// The latest signed checkpoint.
pub const CHECKPOINT: &str = "checkpoint";
/// The publisher's position (Warden's own object).
pub const STATE: &str = "warden/state.json";

/// `n` as zero-padded 3-digit path elements, all but the last prefixed with `x`
/// (1234067 → `x001/x234/067`).
#[must_use]
pub fn index_path(n: u64) -> String {
    let mut groups = vec![n % 1000];
    let mut m = n / 1000;
    while m > 0 {
        groups.push(m % 1000);
        m /= 1000;
    }
    let last = groups.len().saturating_sub(1);
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn with_width(base: String, width: usize) -> String {
    if width < WIDTH {
        format!("{base}.p/{width}")
    } else {
        base
    }
}

/// The hash tile at `level`, `index`, holding `width` hashes.
#[must_use]
pub fn tile_path(level: u8, index: u64, width: usize) -> String {
    with_width(format!("tile/{level}/{}", index_path(index)), width)
}

/// The entry bundle `index` holding `width` entries.
#[must_use]
pub fn bundle_path(index: u64, width: usize) -> String {
    with_width(format!("tile/entries/{}", index_path(index)), width)
}

/// The bundle `index` of checkpoint records holding `width` records.
#[must_use]
pub fn records_path(index: u64, width: usize) -> String {
    with_width(format!("warden/checkpoints/{}", index_path(index)), width)
}

/// The bundles holding items `[from, to)` of a log of `to` items, as published at that
/// size: `(index, width, items to skip at its start)`.
pub fn bundles(from: u64, to: u64) -> impl Iterator<Item = (u64, usize, usize)> {
    let w = WIDTH as u64;
    (from / w..to.div_ceil(w)).map(move |i| {
        let width = usize::try_from((to - i * w).min(w)).unwrap_or(WIDTH);
        let skip = usize::try_from(from.saturating_sub(i * w)).unwrap_or(0);
        (i, width, skip)
    })
}

/// Encodes entries as a bundle: each a big-endian `u16` length, then its bytes.
pub fn encode_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.as_ref().len() + 2).sum());
    for e in entries {
        let e = e.as_ref();
        let n = u16::try_from(e.len()).map_err(|_| DecodeError::TooLarge {
            size: e.len(),
            limit: MAX_ENTRY,
        })?;
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits a bundle into its entries.
pub fn decode_bundle(mut b: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut out = Vec::new();
    while let Some((len, rest)) = b.split_first_chunk::<2>() {
        let n = usize::from(u16::from_be_bytes(*len));
        let Some((e, rest)) = rest.split_at_checked(n) else {
            return Err(DecodeError::Syntax {
                what: "entry bundle",
                detail: "an entry runs past the end",
            });
        };
        out.push(e);
        b = rest;
    }
    if b.is_empty() {
        Ok(out)
    } else {
        Err(DecodeError::Syntax {
            what: "entry bundle",
            detail: "a length is cut short",
        })
    }
}

/// A tile's bytes: its hashes, concatenated.
#[must_use]
pub fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Parses a tile that must hold `width` hashes.
pub fn parse_tile(b: &[u8], width: usize) -> Result<Vec<Hash>, DecodeError> {
    if b.len() != width * 32 {
        return Err(DecodeError::Length {
            expected: width * 32,
            found: b.len(),
        });
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// A hash tile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub level: u8,
    pub index: u64,
    pub hashes: Vec<Hash>,
}

impl Tile {
    /// Where the tile is stored.
    #[must_use]
    pub fn path(&self) -> String {
        tile_path(self.level, self.index, self.hashes.len())
    }
}

/// Leaves one hash at `level` spans: 256^level, `None` past `u64`.
fn span(level: usize) -> Option<u64> {
    1u64.checked_shl(u32::try_from(8 * level).ok()?)
}

/// The partial tiles a tree of `size` leaves has: `(level, index, width)`, lowest
/// level first.
#[must_use]
pub fn partial_tiles(size: u64) -> Vec<(u8, u64, usize)> {
    let mut out = Vec::new();
    let mut level = 0usize;
    while let Some(s) = span(level) {
        if s > size {
            break;
        }
        let width = usize::try_from((size / s) % WIDTH as u64).unwrap_or(0);
        let index = span(level + 1).map_or(0, |t| size / t);
        if width > 0 {
            out.push((u8::try_from(level).unwrap_or(u8::MAX), index, width));
        }
        level += 1;
    }
    out
}

/// The right edge of the tiled tree: at each level, the hashes of the tile filling.
#[derive(Clone, Debug, Default)]
pub struct TileHasher {
    size: u64,
    levels: Vec<Vec<Hash>>,
}

impl TileHasher {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree of `size` leaves whose partial tiles are `partials` (as
    /// [`partial_tiles`] lists them, lowest level first).
    pub fn restore(size: u64, partials: Vec<Tile>) -> Result<Self, DecodeError> {
        let want = partial_tiles(size);
        if want.len() != partials.len()
            || want
                .iter()
                .zip(&partials)
                .any(|(&(l, i, w), t)| t.level != l || t.index != i || t.hashes.len() != w)
        {
            return Err(DecodeError::Syntax {
                what: "tile state",
                detail: "the partial tiles do not match the tree size",
            });
        }
        let mut levels: Vec<Vec<Hash>> = Vec::new();
        for t in partials {
            let l = usize::from(t.level);
            levels.resize_with(levels.len().max(l + 1), Vec::new);
            if let Some(slot) = levels.get_mut(l) {
                *slot = t.hashes;
            }
        }
        Ok(Self { size, levels })
    }

    /// Leaves so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf hash; every tile it completes is pushed to `full`, lowest first.
    pub fn push(&mut self, leaf: Hash, full: &mut Vec<Tile>) {
        self.size += 1;
        let mut h = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            let Some(slot) = self.levels.get_mut(level) else {
                return;
            };
            slot.push(h);
            if slot.len() < WIDTH {
                return;
            }
            let hashes = std::mem::take(slot);
            h = root_of(&hashes);
            let index = span(level + 1)
                .map_or(0, |s| self.size / s)
                .saturating_sub(1);
            full.push(Tile {
                level: u8::try_from(level).unwrap_or(u8::MAX),
                index,
                hashes,
            });
            level += 1;
        }
    }

    /// The partial tiles of the tree as it stands, lowest level first.
    #[must_use]
    pub fn partials(&self) -> Vec<Tile> {
        partial_tiles(self.size)
            .into_iter()
            .map(|(level, index, _)| Tile {
                level,
                index,
                hashes: self
                    .levels
                    .get(usize::from(level))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The tree's root.
    #[must_use]
    pub fn root(&self) -> Hash {
        // Each level's filling tile holds roots of subtrees of 256^level leaves; split
        // its width into powers of two, largest (leftmost) first, highest level first.
        let mut stack = Vec::new();
        for hashes in self.levels.iter().rev() {
            let mut rest = hashes.as_slice();
            for bit in (0..8).rev() {
                let n = 1usize << bit;
                if hashes.len() & n != 0 {
                    let (group, tail) = rest.split_at(n.min(rest.len()));
                    stack.push(root_of(group));
                    rest = tail;
                }
            }
        }
        CompactRange::from_parts(self.size, stack)
            .map_or_else(crate::merkle::empty_root, |r| r.root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn bundles_cover_a_range_and_skip_what_was_read() {
        assert_eq!(bundles(0, 0).count(), 0);
        assert_eq!(bundles(0, 3).collect::<Vec<_>>(), [(0, 3, 0)]);
        assert_eq!(
            bundles(3, 300).collect::<Vec<_>>(),
            [(0, 256, 3), (1, 44, 0)]
        );
        assert_eq!(bundles(256, 512).collect::<Vec<_>>(), [(1, 256, 0)]);
        assert_eq!(bundles(300, 301).collect::<Vec<_>>(), [(1, 45, 44)]);
        assert_eq!(bundles(512, 512).count(), 0);
    }

    #[test]
    fn paths_follow_the_spec() {
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 3, 17), "tile/1/003.p/17");
        assert_eq!(bundle_path(273, 112), "tile/entries/273.p/112");
        assert_eq!(records_path(2, 256), "warden/checkpoints/002");
    }

    #[test]
    fn a_tree_of_70000_has_the_spec_s_partial_tiles() {
        // The specification's example: 273 full level-0 tiles, a partial of 112; one
        // full level-1 tile, a partial of 17; a partial level-2 tile of 1.
        assert_eq!(
            partial_tiles(70_000),
            vec![(0, 273, 112), (1, 1, 17), (2, 0, 1)]
        );
        assert_eq!(partial_tiles(256), vec![(1, 0, 1)]);
        assert!(partial_tiles(0).is_empty());
    }

    #[test]
    fn tiles_rebuild_the_root_at_every_size() {
        let leaves: Vec<Hash> = (0u32..70_000)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut t = TileHasher::new();
        let mut full = Vec::new();
        let mut r = CompactRange::new();
        for (i, l) in leaves.iter().enumerate() {
            t.push(*l, &mut full);
            r.push(*l);
            if i < 600 || i % 4099 == 0 || i == leaves.len() - 1 {
                assert_eq!(t.root(), r.root(), "size {}", i + 1);
            }
        }
        assert_eq!(full.iter().filter(|t| t.level == 0).count(), 273);
        assert_eq!(full.iter().filter(|t| t.level == 1).count(), 1);
        // A level-1 hash is the root of the level-0 tile under it.
        let l1 = full.iter().find(|t| t.level == 1).map(|t| t.hashes.clone());
        assert_eq!(
            l1.and_then(|h| h.get(5).copied()),
            Some(root_of(&leaves[1280..1536]))
        );
        // Restored from its partial tiles, the tree goes on as if never stopped.
        let mut back = TileHasher::restore(t.size(), t.partials()).expect("restore");
        let mut full2 = Vec::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0u32..300 {
            let l = leaf_hash(&i.to_le_bytes());
            t.push(l, &mut a);
            back.push(l, &mut b);
        }
        full2.extend(b);
        assert_eq!(a, full2);
        assert_eq!(t.root(), back.root());
        assert!(TileHasher::restore(5, Vec::new()).is_err());
    }

    #[test]
    fn bundles_round_trip_and_refuse_what_they_cannot_hold() {
        let b = encode_bundle(&[b"one".as_slice(), b"", b"three"]).expect("encode");
        assert_eq!(b.get(..2), Some([0u8, 3].as_slice()));
        assert_eq!(
            decode_bundle(&b).expect("decode"),
            vec![b"one".as_slice(), b"", b"three"]
        );
        assert!(decode_bundle(&b[..b.len() - 1]).is_err());
        assert!(decode_bundle(&[0u8]).is_err());
        assert!(encode_bundle(&[vec![0u8; MAX_ENTRY + 1]]).is_err());
        assert!(encode_bundle(&[vec![0u8; MAX_ENTRY]]).is_ok());
        let h = [[7u8; 32], [9u8; 32]];
        assert_eq!(parse_tile(&tile_bytes(&h), 2).expect("tile"), h.to_vec());
        assert!(parse_tile(&tile_bytes(&h), 3).is_err());
    }
}
