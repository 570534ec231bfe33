//! AVX-512F exact tiles: `Q4_1`/`Q8_0` blocks decoded into two 16-lane registers, 2 weight rows ×
//! up to 12 inputs per tile (references `exact_q4_1_scalar`, `exact_q8_0_scalar`).

use super::avx2::{Decode, Q41, Q80};
use crate::kernels::BLOCK;
use std::arch::x86_64::*;

/// A quantized weight format whose 32-weight blocks decode exactly to two 16-lane registers
/// (the AVX-512 counterpart of [`Decode`], same values).
pub trait Decode512: Decode {
    /// Block `b` of row `r` as elements 0..16 and 16..32, exactly as ggml dequantizes them.
    unsafe fn decode16(&self, r: usize, b: usize) -> [__m512; 2];
}

impl Decode512 for Q41<'_> {
    #[inline(always)]
    unsafe fn decode16(&self, r: usize, b: usize) -> [__m512; 2] {
        // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
        // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
        unsafe {
            let i = r * self.kb + b;
            let [d, m] = *self.scales.get_unchecked(i);
            let mask = _mm_set1_epi8(0x0f);
            let q = _mm_loadu_si128(self.qs.get_unchecked(i).as_ptr() as *const __m128i);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let (dv, mv) = (_mm512_set1_ps(d), _mm512_set1_ps(m));
            // q·d + m in one FMA, as the AVX2 decoder computes it.
            let f =
                |v: __m128i| _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)), dv, mv);
            [f(lo), f(hi)]
        }
    }
}

impl Decode512 for Q80<'_> {
    #[inline(always)]
    unsafe fn decode16(&self, r: usize, b: usize) -> [__m512; 2] {
        // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
        // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
        unsafe {
            let i = r * self.kb + b;
            let p = self.qs.get_unchecked(i).as_ptr() as *const __m128i;
            let dv = _mm512_set1_ps(*self.d.get_unchecked(i));
            let f = |v: __m128i| _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), dv);
            [f(_mm_loadu_si128(p)), f(_mm_loadu_si128(p.add(1)))]
        }
    }
}

/// The AVX-512 tile: `R` weight rows from `r0` against `N` consecutive input rows of `x`.
/// Every (row, input) pair has one 16-lane accumulator fed by the same two FMAs per block in
/// the same order, then the same horizontal sum, whatever `R` and `N` are: a row's numbers do
/// not depend on the batch (nor on the tile shapes chosen for it).
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile512<W: Decode512, const R: usize, const N: usize>(
    w: &W,
    r0: usize,
    x: &[f32],
) -> [[f32; N]; R] {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let kb = w.blocks();
        let cols = kb * BLOCK;
        assert!(x.len() >= N * cols);
        let xp = x.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        for b in 0..kb {
            let wv: [[__m512; 2]; R] = std::array::from_fn(|r| w.decode16(r0 + r, b));
            for j in 0..N {
                let p = xp.add(j * cols + b * BLOCK);
                let (x0, x1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                for r in 0..R {
                    let a = _mm512_fmadd_ps(wv[r][0], x0, acc[r][j]);
                    acc[r][j] = _mm512_fmadd_ps(wv[r][1], x1, a);
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|j| _mm512_reduce_add_ps(acc[r][j])))
    }
}

/// Widest input chunk of an AVX-512 tile (`2 × MAX_TILE_INPUTS` accumulators + 4 decoded
/// weight registers + 2 input registers fit the 32 vector registers).
pub const MAX_TILE_INPUTS: usize = 12;

/// [`exact_range`] on the AVX-512 tiles. Shapes: one input → 4 rows at a time; more → 2 rows
/// × chunks of up to [`MAX_TILE_INPUTS`] inputs (equal chunks), so each loaded input vector
/// feeds two FMAs and a decoded weight block up to 12 inputs.
pub fn exact_range_512<W: Decode512>(
    w: &W,
    x: &[f32],
    n: usize,
    rows: std::ops::Range<usize>,
    write: &mut impl FnMut(usize, usize, f32),
) {
    let cols = w.blocks() * BLOCK;
    macro_rules! run {
        ($r0:expr, $i:expr, $R:literal, $N:literal) => {{
            // SAFETY: Kernel::Avx512 was detected by the caller.
            let v = unsafe { tile512::<W, $R, $N>(w, $r0, &x[$i * cols..($i + $N) * cols]) };
            for (r, v) in v.iter().enumerate() {
                for (j, &v) in v.iter().enumerate() {
                    write($r0 + r, $i + j, v);
                }
            }
        }};
    }
    macro_rules! chunk {
        ($r0:expr, $i:expr, $len:expr, $R:literal) => {
            match $len {
                1 => run!($r0, $i, $R, 1),
                2 => run!($r0, $i, $R, 2),
                3 => run!($r0, $i, $R, 3),
                4 => run!($r0, $i, $R, 4),
                5 => run!($r0, $i, $R, 5),
                6 => run!($r0, $i, $R, 6),
                7 => run!($r0, $i, $R, 7),
                8 => run!($r0, $i, $R, 8),
                9 => run!($r0, $i, $R, 9),
                10 => run!($r0, $i, $R, 10),
                11 => run!($r0, $i, $R, 11),
                _ => run!($r0, $i, $R, 12),
            }
        };
    }
    if n == 0 {
        return;
    }
    let chunks = n.div_ceil(MAX_TILE_INPUTS);
    let mut r = rows.start;
    while r < rows.end {
        let left = rows.end - r;
        if n == 1 {
            match left {
                1 => run!(r, 0, 1, 1),
                2 => run!(r, 0, 2, 1),
                3 => run!(r, 0, 3, 1),
                _ => run!(r, 0, 4, 1),
            }
            r += left.min(4);
            continue;
        }
        let mut i = 0;
        for c in 0..chunks {
            let len = (n - i) / (chunks - c);
            if left >= 2 {
                chunk!(r, i, len, 2);
            } else {
                chunk!(r, i, len, 1);
            }
            i += len;
        }
        r += left.min(2);
    }
}
