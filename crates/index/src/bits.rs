//! Plain bit vectors with constant-time `rank`, and bit-packed integer arrays, both as
//! read-only views over `u64` words (so they work the same over a `Vec` and over a memory map)
//! plus the builders that produce those words.
//!
//! Not for: `select`, compression (RRR, Elias-Fano) or mutation after construction. The FM-index
//! needs only `rank` and `get`, and a plain layout keeps every operation one or two cache misses.
//!
//! Rank directory: one absolute `u64` count per 2^16 bits (superblock) and one `u16` count,
//! relative to its superblock, per 512 bits (block, one cache line of bits). Overhead: 3.2 %.

/// Bits per block of the rank directory (8 words, one cache line).
const BLOCK_BITS: usize = 512;
/// Bits per superblock of the rank directory.
const SUPER_BITS: usize = 1 << 16;

/// Number of `u64` words of bit payload for `len` bits.
pub(crate) fn bit_words(len: usize) -> usize {
    len.div_ceil(64)
}

/// Number of superblock counters (one more than needed so `rank1(len)` needs no special case).
fn super_count(len: usize) -> usize {
    len / SUPER_BITS + 1
}

/// Number of block counters (one more than needed, as above).
fn block_count(len: usize) -> usize {
    len / BLOCK_BITS + 1
}

/// Rounds a word count up to whole cache lines (8 words, 64 bytes).
pub(crate) fn align_words(words: usize) -> usize {
    words.div_ceil(8) * 8
}

/// Words of bit payload as stored: whole cache lines, so every 512-bit block of the rank
/// directory is one aligned cache line.
fn stored_bit_words(len: usize) -> usize {
    align_words(bit_words(len))
}

/// Total `u64` words that a [`RankBits`] of `len` bits occupies: bits (padded to whole cache
/// lines), then superblock and block counters (padded likewise).
pub(crate) fn rank_bits_words(len: usize) -> usize {
    stored_bit_words(len) + align_words(super_count(len) + block_count(len).div_ceil(4))
}

/// A read-only bit vector with `rank1` over borrowed words.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RankBits<'a> {
    bits: &'a [u64],
    supers: &'a [u64],
    blocks: &'a [u16],
    len: usize,
}

impl<'a> RankBits<'a> {
    /// Interprets `words` (exactly [`rank_bits_words`]`(len)` of them) as a rank bit vector.
    /// Returns `None` when the slice has the wrong size.
    pub(crate) fn from_words(words: &'a [u64], len: usize) -> Option<Self> {
        if words.len() != rank_bits_words(len) {
            return None;
        }
        let (bits, rest) = words.split_at(stored_bit_words(len));
        let (supers, blocks) = rest.split_at(super_count(len));
        let blocks: &[u16] = bytemuck::try_cast_slice(blocks).ok()?;
        let blocks = blocks.get(..block_count(len))?;
        Some(RankBits { bits, supers, blocks, len })
    }

    /// The bit at `i` (`i < len`; out-of-range reads return `false`).
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> bool {
        match self.bits.get(i / 64) {
            Some(w) => (w >> (i % 64)) & 1 == 1,
            None => false,
        }
    }

    /// Number of one bits in `[0, i)`; `i` is clamped to `len`.
    #[inline(always)]
    pub(crate) fn rank1(&self, i: usize) -> usize {
        let i = i.min(self.len);
        let block = i / BLOCK_BITS;
        let mut r = self.supers[i / SUPER_BITS] as usize + self.blocks[block] as usize;
        let first = block * (BLOCK_BITS / 64);
        let word = i / 64;
        for w in &self.bits[first..word] {
            r += w.count_ones() as usize;
        }
        let rem = i % 64;
        if rem != 0 {
            r += (self.bits[word] & ((1u64 << rem) - 1)).count_ones() as usize;
        }
        r
    }

    /// `(rank1(a), rank1(b))` for `a <= b`. When `b` is close to `a` the second rank is
    /// counted from the first over the few words between them, which skips the directory
    /// lookups (narrow ranges are the common case deep in a wavelet matrix).
    #[inline(always)]
    pub(crate) fn rank1_pair(&self, a: usize, b: usize) -> (usize, usize) {
        let ra = self.rank1(a);
        let (a, b) = (a.min(self.len), b.min(self.len));
        if b <= a {
            return (ra, ra);
        }
        let (wa, wb) = (a / 64, b / 64);
        if wb - wa > 8 {
            return (ra, self.rank1(b));
        }
        let (sa, sb) = (a % 64, b % 64);
        let between = if wa == wb {
            // `a < b` within one word, so `sb > sa` and `sb < 64`.
            (self.bits[wa] & ((1u64 << sb) - 1)) >> sa
        } else {
            let mut count = (self.bits[wa] >> sa).count_ones() as usize;
            for w in &self.bits[wa + 1..wb] {
                count += w.count_ones() as usize;
            }
            if sb != 0 {
                count += (self.bits[wb] & ((1u64 << sb) - 1)).count_ones() as usize;
            }
            return (ra, ra + count);
        };
        (ra, ra + between.count_ones() as usize)
    }

    /// The bit at `i` together with `rank1(i)`, sharing the memory access.
    #[inline(always)]
    pub(crate) fn get_and_rank1(&self, i: usize) -> (bool, usize) {
        (self.get(i), self.rank1(i))
    }

    /// Checks that the rank directory agrees with the bits; used when opening a file so that a
    /// corrupt directory cannot send a query out of bounds. O(len / 64).
    pub(crate) fn directory_is_consistent(&self) -> bool {
        let mut total = 0u64;
        for (block, chunk) in self.bits.chunks(BLOCK_BITS / 64).enumerate() {
            let bit = block * BLOCK_BITS;
            if bit.is_multiple_of(SUPER_BITS) && self.supers[bit / SUPER_BITS] != total {
                return false;
            }
            let in_super = total - self.supers[bit / SUPER_BITS];
            if self.blocks[block] as u64 != in_super {
                return false;
            }
            total += chunk.iter().map(|w| w.count_ones() as u64).sum::<u64>();
        }
        // Trailing directory entries (for `rank1(len)` at an exact boundary).
        if self.len.is_multiple_of(BLOCK_BITS) {
            let block = self.len / BLOCK_BITS;
            if self.len.is_multiple_of(SUPER_BITS) && self.supers[self.len / SUPER_BITS] != total {
                return false;
            }
            let in_super = total.wrapping_sub(self.supers[self.len / SUPER_BITS]);
            if self.blocks[block] as u64 != in_super {
                return false;
            }
        }
        // Bits past `len` (in the last word and the padding) must be zero, or `rank1(len)`
        // would count them.
        let used = bit_words(self.len);
        if !self.len.is_multiple_of(64) && self.bits[used - 1] >> (self.len % 64) != 0 {
            return false;
        }
        self.bits[used..].iter().all(|&w| w == 0)
    }

    /// Total number of one bits.
    pub(crate) fn count_ones(&self) -> usize {
        self.rank1(self.len)
    }
}

/// Appends a [`RankBits`] of `len` bits, given as words, to `out` (bits, then directory).
pub(crate) fn write_rank_bits(bits: &[u64], len: usize, out: &mut Vec<u64>) {
    debug_assert_eq!(bits.len(), bit_words(len));
    let start = out.len();
    out.extend_from_slice(bits);
    out.resize(start + stored_bit_words(len), 0);
    let mut supers = vec![0u64; super_count(len)];
    let mut blocks = vec![0u16; block_count(len).div_ceil(4) * 4];
    let mut total = 0u64;
    let mut super_base = 0u64;
    for (block, entry) in blocks.iter_mut().enumerate().take(block_count(len)) {
        let bit = block * BLOCK_BITS;
        if bit.is_multiple_of(SUPER_BITS) {
            supers[bit / SUPER_BITS] = total;
            super_base = total;
        }
        *entry = (total - super_base) as u16;
        let first = block * (BLOCK_BITS / 64);
        let last = (first + BLOCK_BITS / 64).min(bits.len());
        if first < last {
            total += bits[first..last].iter().map(|w| w.count_ones() as u64).sum::<u64>();
        }
    }
    out.extend_from_slice(&supers);
    out.extend_from_slice(bytemuck::cast_slice(&blocks));
    out.resize(start + rank_bits_words(len), 0);
}

/// Builds the bit words of a bit vector one bit at a time.
#[derive(Debug, Default)]
pub(crate) struct BitsBuilder {
    words: Vec<u64>,
    len: usize,
}

impl BitsBuilder {
    /// An all-zero bit vector of `len` bits.
    pub(crate) fn zeros(len: usize) -> Self {
        BitsBuilder { words: vec![0; bit_words(len)], len }
    }

    /// Sets bit `i` to one.
    #[inline]
    pub(crate) fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1u64 << (i % 64);
    }

    /// The words and the length in bits.
    pub(crate) fn into_parts(self) -> (Vec<u64>, usize) {
        (self.words, self.len)
    }
}

/// Number of `u64` words for `count` integers of `width` bits.
pub(crate) fn packed_words(count: usize, width: u32) -> usize {
    (count * width as usize).div_ceil(64)
}

/// A read-only array of `width`-bit unsigned integers packed into `u64` words.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedInts<'a> {
    words: &'a [u64],
    width: u32,
    len: usize,
}

impl<'a> PackedInts<'a> {
    /// Interprets `words` as `len` integers of `width` bits; `None` when sizes disagree.
    pub(crate) fn from_words(words: &'a [u64], width: u32, len: usize) -> Option<Self> {
        if width == 0 || width > 64 || words.len() != packed_words(len, width) {
            return None;
        }
        Some(PackedInts { words, width, len })
    }

    /// The integer at `i`; 0 when `i >= len` (callers validate indices beforehand).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> u64 {
        if i >= self.len {
            return 0;
        }
        let bit = i * self.width as usize;
        let (word, shift) = (bit / 64, (bit % 64) as u32);
        let mask = if self.width == 64 { u64::MAX } else { (1u64 << self.width) - 1 };
        let low = self.words[word] >> shift;
        let value = if shift + self.width > 64 {
            low | (self.words[word + 1] << (64 - shift))
        } else {
            low
        };
        value & mask
    }
}

/// Packs `values` (each must fit in `width` bits) into words.
pub(crate) fn pack_ints(
    values: impl IntoIterator<Item = u64>,
    count: usize,
    width: u32,
) -> Vec<u64> {
    let mut words = vec![0u64; packed_words(count, width)];
    for (i, v) in values.into_iter().enumerate() {
        let bit = i * width as usize;
        let (word, shift) = (bit / 64, (bit % 64) as u32);
        words[word] |= v << shift;
        if shift + width > 64 {
            words[word + 1] |= v >> (64 - shift);
        }
    }
    words
}

/// Bits needed to write `max` (at least 1).
pub(crate) fn bits_for(max: u64) -> u32 {
    (64 - max.leading_zeros()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rank_matches_naive(bits in proptest::collection::vec(any::<bool>(), 0..3000)) {
            let mut b = BitsBuilder::zeros(bits.len());
            for (i, &x) in bits.iter().enumerate() { if x { b.set(i) } }
            let (words, len) = b.into_parts();
            let mut out = Vec::new();
            write_rank_bits(&words, len, &mut out);
            let rb = RankBits::from_words(&out, len).unwrap();
            prop_assert!(rb.directory_is_consistent());
            for a in (0..=bits.len()).step_by(7) {
                for b in [a, a + 1, a + 63, a + 64, a + 65, a + 500, a + 600, bits.len()] {
                    let b = b.min(bits.len());
                    prop_assert_eq!(rb.rank1_pair(a, b), (rb.rank1(a), rb.rank1(b)));
                }
            }
            let mut r = 0;
            for i in 0..=bits.len() {
                prop_assert_eq!(rb.rank1(i), r);
                if i < bits.len() {
                    prop_assert_eq!(rb.get(i), bits[i]);
                    r += bits[i] as usize;
                }
            }
        }

        #[test]
        fn packed_ints_round_trip(width in 1u32..=64, raw in proptest::collection::vec(any::<u64>(), 0..200)) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let values: Vec<u64> = raw.iter().map(|v| v & mask).collect();
            let words = pack_ints(values.iter().copied(), values.len(), width);
            let p = PackedInts::from_words(&words, width, values.len()).unwrap();
            for (i, &v) in values.iter().enumerate() { prop_assert_eq!(p.get(i), v); }
        }
    }

    #[test]
    fn rank_across_superblocks() {
        let len = 3 * SUPER_BITS + 77;
        let mut b = BitsBuilder::zeros(len);
        for i in (0..len).step_by(3) {
            b.set(i);
        }
        let (words, len) = b.into_parts();
        let mut out = Vec::new();
        write_rank_bits(&words, len, &mut out);
        let rb = RankBits::from_words(&out, len).unwrap();
        assert!(rb.directory_is_consistent());
        for i in [0, 1, 511, 512, 513, SUPER_BITS - 1, SUPER_BITS, 2 * SUPER_BITS + 5, len] {
            assert_eq!(rb.rank1(i), i.div_ceil(3), "rank1({i})");
        }
    }
}
