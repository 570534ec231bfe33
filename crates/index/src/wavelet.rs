//! A wavelet matrix over the BWT: `access`, `rank` and the distinct-symbol enumeration that
//! answers [`FmIndex::continuations`](crate::FmIndex::continuations), as a read-only view over
//! `u64` words plus its builder.
//!
//! Not for: symbols wider than 32 bits, `select`, or entropy compression (a Huffman-shaped
//! matrix would save about a third of the space on Zipfian token streams; see the crate docs).
//!
//! Level `l` (0 = most significant bit) stores bit `levels - 1 - l` of every symbol in the order
//! the previous levels left them: symbols with a 0 bit first (stably), then those with a 1.
//! `zeros[l]` is the number of 0 bits of level `l`. Following a position down the levels by the
//! bits of symbol `c` maps `[0, i)` to a run of `c`s whose length is `rank_c(i)`.

use crate::bits::{rank_bits_words, write_rank_bits, BitsBuilder, RankBits};

/// A read-only wavelet matrix.
#[derive(Clone, Debug)]
pub(crate) struct WaveletMatrix<'a> {
    levels: Vec<RankBits<'a>>,
    zeros: &'a [u64],
    len: usize,
}

impl<'a> WaveletMatrix<'a> {
    /// Interprets `zeros` (one word per level) and `level_words` (the levels' rank bit vectors,
    /// concatenated) as a matrix over `len` symbols. `None` when sizes or counts disagree.
    pub(crate) fn from_words(zeros: &'a [u64], level_words: &'a [u64], len: usize) -> Option<Self> {
        let per_level = rank_bits_words(len);
        if level_words.len() != per_level * zeros.len() {
            return None;
        }
        let levels = level_words
            .chunks_exact(per_level.max(1))
            .take(zeros.len())
            .map(|w| RankBits::from_words(w, len))
            .collect::<Option<Vec<_>>>()?;
        if levels.len() != zeros.len() {
            return None;
        }
        Some(WaveletMatrix { levels, zeros, len })
    }

    /// Checks the rank directories and the zero counts (O(len · levels / 64)).
    pub(crate) fn is_consistent(&self) -> bool {
        self.levels.iter().zip(self.zeros).all(|(level, &zeros)| {
            level.directory_is_consistent() && (self.len - level.count_ones()) as u64 == zeros
        })
    }

    /// Maps position `i` (clamped to `len`) down through the bits of `symbol`: the result minus
    /// the same mapping of 0 is `rank_symbol(i)`.
    #[inline]
    pub(crate) fn map_down(&self, symbol: u32, i: usize) -> usize {
        let depth = self.levels.len();
        let mut i = i.min(self.len);
        for (l, (level, &zeros)) in self.levels.iter().zip(self.zeros).enumerate() {
            let ones = level.rank1(i);
            if (symbol >> (depth - 1 - l)) & 1 == 1 {
                i = zeros as usize + ones;
            } else {
                i -= ones;
            }
        }
        i
    }

    /// Maps both ends of a half-open range down through the bits of `symbol` at once.
    #[inline(always)]
    pub(crate) fn map_range_down(&self, symbol: u32, start: usize, end: usize) -> (usize, usize) {
        let depth = self.levels.len();
        let (mut a, mut b) = (start.min(self.len), end.min(self.len));
        for (l, (level, &zeros)) in self.levels.iter().zip(self.zeros).enumerate() {
            let (ra, rb) = level.rank1_pair(a, b);
            if (symbol >> (depth - 1 - l)) & 1 == 1 {
                a = zeros as usize + ra;
                b = zeros as usize + rb;
            } else {
                a -= ra;
                b -= rb;
            }
        }
        (a, b)
    }

    /// The symbol at `i` and its position at the bottom level (for the LF mapping).
    /// `i` must be `< len`.
    #[inline(always)]
    pub(crate) fn access_and_map(&self, i: usize) -> (u32, usize) {
        let mut i = i.min(self.len.saturating_sub(1));
        let mut symbol = 0u32;
        for (level, &zeros) in self.levels.iter().zip(self.zeros) {
            let (bit, ones) = level.get_and_rank1(i);
            symbol = (symbol << 1) | bit as u32;
            if bit {
                i = zeros as usize + ones;
            } else {
                i -= ones;
            }
        }
        (symbol, i)
    }

    /// Calls `visit(symbol, count)` for every distinct symbol in `[start, end)`, in increasing
    /// symbol order. O(k · levels) rank operations for k distinct symbols. Iterative (an
    /// explicit stack of at most `levels + 1` entries) so that it inlines into its caller.
    #[inline(always)]
    pub(crate) fn for_each_symbol(
        &self,
        start: usize,
        end: usize,
        visit: &mut impl FnMut(u32, usize),
    ) {
        let (start, end) = (start.min(self.len), end.min(self.len));
        if start >= end {
            return;
        }
        let depth = self.levels.len();
        // (level, start, end, symbol prefix); zeros are pushed last so they pop first.
        let mut stack = [(0usize, 0usize, 0usize, 0u32); 66];
        stack[0] = (0, start, end, 0);
        let mut top = 1;
        while top > 0 {
            top -= 1;
            let (l, a, b, prefix) = stack[top];
            if l >= depth {
                visit(prefix, b - a);
                continue;
            }
            let level = &self.levels[l];
            let (ra, rb) = level.rank1_pair(a, b);
            if ra < rb {
                let zeros = self.zeros[l] as usize;
                stack[top] = (l + 1, zeros + ra, zeros + rb, (prefix << 1) | 1);
                top += 1;
            }
            let (za, zb) = (a - ra, b - rb);
            if za < zb {
                stack[top] = (l + 1, za, zb, prefix << 1);
                top += 1;
            }
        }
    }
}

/// Builds the words of a wavelet matrix of `levels` levels over `symbols`; returns
/// `(zeros, level_words)`. `progress(level)` is called after each level.
///
/// Memory: the input, one scratch copy of it, and the finished bit levels.
pub(crate) fn build<S: Copy + Into<u32> + Default>(
    mut symbols: Vec<S>,
    levels: u32,
    mut progress: impl FnMut(u32),
) -> (Vec<u64>, Vec<u64>) {
    let len = symbols.len();
    let mut zeros = Vec::with_capacity(levels as usize);
    let mut level_words = Vec::with_capacity(levels as usize * rank_bits_words(len));
    let mut scratch: Vec<S> = vec![S::default(); len];
    for l in 0..levels {
        let shift = levels - 1 - l;
        let mut bits = BitsBuilder::zeros(len);
        let mut zero_count = 0usize;
        for (i, &s) in symbols.iter().enumerate() {
            if (s.into() >> shift) & 1 == 1 {
                bits.set(i);
            } else {
                zero_count += 1;
            }
        }
        // Stable partition: zeros first, then ones.
        let (mut z, mut o) = (0usize, zero_count);
        for &s in &symbols {
            if (s.into() >> shift) & 1 == 1 {
                scratch[o] = s;
                o += 1;
            } else {
                scratch[z] = s;
                z += 1;
            }
        }
        std::mem::swap(&mut symbols, &mut scratch);
        let (words, bit_len) = bits.into_parts();
        write_rank_bits(&words, bit_len, &mut level_words);
        zeros.push(zero_count as u64);
        progress(l + 1);
    }
    (zeros, level_words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn levels_for(max: u32) -> u32 {
        32 - max.leading_zeros()
    }

    proptest! {
        #[test]
        fn matches_naive(seq in proptest::collection::vec(0u32..40, 1..300), a in 0usize..300, b in 0usize..300) {
            let depth = levels_for(*seq.iter().max().unwrap()).max(1);
            let (zeros, words) = build(seq.clone(), depth, |_| {});
            let wm = WaveletMatrix::from_words(&zeros, &words, seq.len()).unwrap();
            prop_assert!(wm.is_consistent());
            let (a, b) = (a.min(seq.len()), b.min(seq.len()));
            let (a, b) = (a.min(b), a.max(b));
            for (i, &s) in seq.iter().enumerate() {
                prop_assert_eq!(wm.access_and_map(i).0, s);
            }
            for c in 0..41u32 {
                let naive = seq[a..b].iter().filter(|&&x| x == c).count();
                let (x, y) = wm.map_range_down(c, a, b);
                if c < (1 << depth) {
                    prop_assert_eq!(y - x, naive);
                    prop_assert_eq!(wm.map_down(c, b) - wm.map_down(c, a), naive);
                }
            }
            let mut got = Vec::new();
            wm.for_each_symbol(a, b, &mut |s, n| got.push((s, n)));
            let mut want = std::collections::BTreeMap::new();
            for &x in &seq[a..b] { *want.entry(x).or_insert(0usize) += 1; }
            prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        }
    }
}
