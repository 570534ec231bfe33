//! AVX2 + FMA kernels: ggml-style int8 dot products (`maddubs`/`madd`; references
//! `q4_1::dot_q4_1_scalar`, `q8_0::dot_q8_0_scalar`) and the exact 8-lane tiles that decode
//! `Q4_1`/`Q8_0` blocks in registers (references `exact_q4_1_scalar`, `exact_q8_0_scalar`).

use crate::kernels::quantize::ActBlock;
use crate::kernels::BLOCK;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

// The integer dot product of 32 u8 × 32 i8 into 8 i32 lanes, per instruction set.
#[inline(always)]
unsafe fn dot_u8i8_avx2(w: __m256i, a: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1)) }
}

#[inline(always)]
unsafe fn unpack_q4(q: &[u8; 16]) -> __m256i {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let q = _mm_loadu_si128(q.as_ptr() as *const __m128i);
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f))
    }
}

macro_rules! kernels {
    ($features:literal, $dot:ident, $q4_1:ident, $q4_1x4:ident, $q8_0:ident) => {
        #[target_feature(enable = $features)]
        pub unsafe fn $q4_1(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[ActBlock]) -> f32 {
            // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
            // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
            unsafe {
                let mut acc = _mm256_setzero_ps();
                let mut offset = 0f32;
                for i in 0..x.len() {
                    let [d, m] = *scales.get_unchecked(i);
                    let a = x.get_unchecked(i);
                    let w = unpack_q4(qs.get_unchecked(i));
                    let av = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
                    acc = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps($dot(w, av)),
                        _mm256_set1_ps(d * a.d),
                        acc,
                    );
                    offset += m * a.s;
                }
                hsum(acc) + offset
            }
        }

        /// One weight row against four consecutive input rows (`kb` blocks each).
        #[target_feature(enable = $features)]
        pub unsafe fn $q4_1x4(
            scales: &[[f32; 2]],
            qs: &[[u8; 16]],
            x: &[ActBlock],
            kb: usize,
        ) -> [f32; 4] {
            // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
            // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
            unsafe {
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut offset = [0f32; 4];
                for i in 0..kb {
                    let [d, m] = *scales.get_unchecked(i);
                    let w = unpack_q4(qs.get_unchecked(i));
                    for j in 0..4 {
                        let a = x.get_unchecked(j * kb + i);
                        let av = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
                        acc[j] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps($dot(w, av)),
                            _mm256_set1_ps(d * a.d),
                            acc[j],
                        );
                        offset[j] += m * a.s;
                    }
                }
                [
                    hsum(acc[0]) + offset[0],
                    hsum(acc[1]) + offset[1],
                    hsum(acc[2]) + offset[2],
                    hsum(acc[3]) + offset[3],
                ]
            }
        }

        #[target_feature(enable = $features)]
        pub unsafe fn $q8_0(d: &[f32], qs: &[[i8; BLOCK]], x: &[ActBlock]) -> f32 {
            // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
            // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
            unsafe {
                let mut acc = _mm256_setzero_ps();
                for i in 0..x.len() {
                    let a = x.get_unchecked(i);
                    let w = _mm256_loadu_si256(qs.get_unchecked(i).as_ptr() as *const __m256i);
                    let av = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
                    // i8 × i8 through u8 × i8: move the weight's sign onto the activation.
                    let p = $dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(av, w));
                    acc = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(p),
                        _mm256_set1_ps(*d.get_unchecked(i) * a.d),
                        acc,
                    );
                }
                hsum(acc)
            }
        }
    };
}

kernels!("avx2,fma", dot_u8i8_avx2, dot_q4_1_avx2, dot4_q4_1_avx2, dot_q8_0_avx2);

/// A quantized weight format whose 32-weight blocks decode exactly to f32 registers.
pub trait Decode {
    /// Blocks per row.
    fn blocks(&self) -> usize;
    /// Block `b` of row `r` as four vectors of 8 f32 weights (elements 0..8, 8..16, 16..24,
    /// 24..32), exactly as ggml dequantizes them.
    unsafe fn decode(&self, r: usize, b: usize) -> [__m256; 4];
}

pub struct Q41<'a> {
    pub scales: &'a [[f32; 2]],
    pub qs: &'a [[u8; 16]],
    pub kb: usize,
}

pub struct Q80<'a> {
    pub d: &'a [f32],
    pub qs: &'a [[i8; BLOCK]],
    pub kb: usize,
}

impl Decode for Q41<'_> {
    fn blocks(&self) -> usize {
        self.kb
    }
    #[inline(always)]
    unsafe fn decode(&self, r: usize, b: usize) -> [__m256; 4] {
        // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
        // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
        unsafe {
            let i = r * self.kb + b;
            let [d, m] = *self.scales.get_unchecked(i);
            let mask = _mm_set1_epi8(0x0f);
            let q = _mm_loadu_si128(self.qs.get_unchecked(i).as_ptr() as *const __m128i);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let (dv, mv) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
            // q·d + m in one FMA: what ggml's dequantization computes.
            let f =
                |v: __m128i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), dv, mv);
            [f(lo), f(_mm_srli_si128(lo, 8)), f(hi), f(_mm_srli_si128(hi, 8))]
        }
    }
}

impl Decode for Q80<'_> {
    fn blocks(&self) -> usize {
        self.kb
    }
    #[inline(always)]
    unsafe fn decode(&self, r: usize, b: usize) -> [__m256; 4] {
        // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
        // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
        unsafe {
            let i = r * self.kb + b;
            let q = _mm256_loadu_si256(self.qs.get_unchecked(i).as_ptr() as *const __m256i);
            let (lo, hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            let dv = _mm256_set1_ps(*self.d.get_unchecked(i));
            let f = |v: __m128i| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), dv);
            [f(lo), f(_mm_srli_si128(lo, 8)), f(hi), f(_mm_srli_si128(hi, 8))]
        }
    }
}

/// Row `r` dequantized into `out` (`blocks × 32` values).
pub fn dequantize_row<W: Decode>(w: &W, r: usize, out: &mut [f32]) {
    assert!(out.len() >= w.blocks() * BLOCK);
    // SAFETY: Kernel::Avx2 was detected by the caller; `out` holds the row (asserted).
    unsafe { dequantize_row_avx2(w, r, out) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dequantize_row_avx2<W: Decode>(w: &W, r: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let p = out.as_mut_ptr();
        for b in 0..w.blocks() {
            let v = w.decode(r, b);
            for (k, v) in v.into_iter().enumerate() {
                _mm256_storeu_ps(p.add(b * BLOCK + k * 8), v);
            }
        }
    }
}

/// `R` weight rows from `r0` against `N` consecutive input rows of `x`. Every (row, input)
/// pair has one accumulator fed by the same four FMAs per block in the same order, whatever
/// `R` and `N` are, so a beam's numbers do not depend on the batch it is computed in. The tile
/// shapes only decide how many independent FMA chains are in flight and how often a weight
/// block is decoded (once per tile).
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<W: Decode, const R: usize, const N: usize>(
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
        let mut acc = [[_mm256_setzero_ps(); N]; R];
        for b in 0..kb {
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = w.decode(r0 + r, b);
                for (j, acc) in acc.iter_mut().enumerate() {
                    let p = xp.add(j * cols + b * BLOCK);
                    let mut a = *acc;
                    a = _mm256_fmadd_ps(wv[0], _mm256_loadu_ps(p), a);
                    a = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(p.add(8)), a);
                    a = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(p.add(16)), a);
                    a = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(p.add(24)), a);
                    *acc = a;
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|j| hsum(acc[r][j])))
    }
}

/// Exact products of weight rows `rows` with the `n` input rows of `x`, reported through
/// `write(row, input, value)`. Tile shapes: one input → 4 rows at a time (4 chains); 2–3
/// inputs → 2 rows × all inputs; more → 1 row × 8 inputs per decoded block.
pub fn exact_range<W: Decode>(
    w: &W,
    x: &[f32],
    n: usize,
    rows: std::ops::Range<usize>,
    write: &mut impl FnMut(usize, usize, f32),
) {
    let cols = w.blocks() * BLOCK;
    macro_rules! run {
        ($r0:expr, $i:expr, $R:literal, $N:literal) => {{
            // SAFETY: Kernel::Avx2 was detected by the caller.
            let v = unsafe { tile::<W, $R, $N>(w, $r0, &x[$i * cols..($i + $N) * cols]) };
            for (r, v) in v.iter().enumerate() {
                for (j, &v) in v.iter().enumerate() {
                    write($r0 + r, $i + j, v);
                }
            }
        }};
    }
    let mut r = rows.start;
    while r < rows.end {
        let left = rows.end - r;
        match n {
            0 => return,
            1 => {
                match left {
                    1 => run!(r, 0, 1, 1),
                    2 => run!(r, 0, 2, 1),
                    3 => run!(r, 0, 3, 1),
                    _ => run!(r, 0, 4, 1),
                }
                r += left.min(4);
            }
            2 | 3 => {
                match (left.min(2), n) {
                    (1, 2) => run!(r, 0, 1, 2),
                    (1, _) => run!(r, 0, 1, 3),
                    (_, 2) => run!(r, 0, 2, 2),
                    _ => run!(r, 0, 2, 3),
                }
                r += left.min(2);
            }
            _ => {
                let mut i = 0;
                while i < n {
                    match (n - i).min(8) {
                        1 => run!(r, i, 1, 1),
                        2 => run!(r, i, 1, 2),
                        3 => run!(r, i, 1, 3),
                        4 => run!(r, i, 1, 4),
                        5 => run!(r, i, 1, 5),
                        6 => run!(r, i, 1, 6),
                        7 => run!(r, i, 1, 7),
                        _ => run!(r, i, 1, 8),
                    }
                    i += 8;
                }
                r += 1;
            }
        }
    }
}
