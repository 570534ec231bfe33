//! The packed VNNI tiles (AVX-512F/BW + VNNI, `vpdpbusd`) over [`Packed16`] records: 16-bit
//! activations in two byte planes (references `int16_q4_1_scalar`, `int16_q8_0_scalar`) or 8-bit
//! activations in one (references `int8_q4_1_scalar`, `int8_q8_0_scalar`); bit for bit equal.

use super::avx512::MAX_TILE_INPUTS;
use crate::kernels::packed::{Line, LANES};
use crate::kernels::quantize::{Act16Block, Act8Block};
use crate::kernels::Packed16;
use std::arch::x86_64::*;

/// One (group, block) record of [`Packed16`]: the 8 weight groups (`Q4_1` nibbles unpacked to
/// bytes), the scales `d`, the offsets `m` (`d` again for `Q8_0`) and the correction.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::needless_range_loop)]
unsafe fn block_record<const Q4: bool>(
    rec: *const Line,
    per: usize,
) -> ([__m512i; 8], __m512, __m512, __m512i) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let load = |l: *const Line| _mm512_load_si512(l as *const _);
        let mut w = [_mm512_setzero_si512(); 8];
        if Q4 {
            let mask = _mm512_set1_epi8(0x0f);
            for k in 0..4 {
                let q = load(rec.add(k));
                w[2 * k] = _mm512_and_si512(q, mask);
                w[2 * k + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(q), mask);
            }
        } else {
            for k in 0..8 {
                w[k] = load(rec.add(k));
            }
        }
        let tail = per - if Q4 { 3 } else { 2 };
        let dw = _mm512_load_ps(rec.add(tail) as *const f32);
        let mw = if Q4 { _mm512_load_ps(rec.add(tail + 1) as *const f32) } else { dw };
        (w, dw, mw, load(rec.add(per - 1)))
    }
}

/// The int16 tile: weight rows `16·g .. 16·g + 16` (one per lane) against `N` consecutive
/// input rows of `x` (`kb` blocks each). Per block and input: the integer sum starts at the
/// record's correction and takes the 8 high-plane groups (`vpdpbusd`, 4 elements per lane
/// each), a second one the 8 low-plane groups; `(high << 8) + low` is then exact
/// (`Σ q·x_int`, at most 32·128·32768 < 2³¹ in magnitude); converted to f32, it is scaled by `d_w·d_x` in one FMA (plus
/// `m·sx` for `Q4_1`). The same operations in the same order for every row and input,
/// whatever `N`: equal to `int16_q4_1_scalar` / `int16_q8_0_scalar`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile16<const Q4: bool, const N: usize>(
    p: &Packed16,
    g: usize,
    x: &[Act16Block],
) -> [[f32; 16]; N] {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let kb = p.kb;
        let per = p.record_lines();
        assert!(x.len() >= N * kb && (g + 1) * kb * per <= p.lines.len());
        let base = p.lines.as_ptr().add(g * kb * per);
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..kb {
            let rec = base.add(b * per);
            let (w, dw, mw, corr) = block_record::<Q4>(rec, per);
            for j in 0..N {
                let a = x.get_unchecked(j * kb + b);
                let (hi, lo) = (a.hi.as_ptr() as *const i32, a.lo.as_ptr() as *const i32);
                // Two independent chains (high and low plane) halve the latency of a block.
                let (mut sh, mut sl) = (corr, _mm512_setzero_si512());
                for k in 0..8 {
                    sh = _mm512_dpbusd_epi32(
                        sh,
                        _mm512_set1_epi32(hi.add(k).read_unaligned()),
                        w[k],
                    );
                    sl = _mm512_dpbusd_epi32(
                        sl,
                        _mm512_set1_epi32(lo.add(k).read_unaligned()),
                        w[k],
                    );
                }
                let s = _mm512_add_epi32(_mm512_slli_epi32::<8>(sh), sl);
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[j]);
                if Q4 {
                    acc[j] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.sx), acc[j]);
                }
            }
        }
        let mut out = [[0f32; 16]; N];
        for j in 0..N {
            _mm512_storeu_ps(out[j].as_mut_ptr(), acc[j]);
        }
        out
    }
}

/// The 8-bit tile: as [`tile16`] with one plane. Per block and input the integer sum starts
/// at the record's correction and takes the 8 groups of `x + 128` (`vpdpbusd`), which gives
/// ggml's `Σ q·x_q` exactly; then `acc = S·(d_w·d_x) + acc` (and `m·s + acc` for `Q4_1`),
/// equal to `int8_q4_1_scalar` / `int8_q8_0_scalar` bit for bit.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile8<const Q4: bool, const N: usize>(
    p: &Packed16,
    g: usize,
    x: &[Act8Block],
) -> [[f32; 16]; N] {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let kb = p.kb;
        let per = p.record_lines();
        assert!(x.len() >= N * kb && (g + 1) * kb * per <= p.lines.len());
        let base = p.lines.as_ptr().add(g * kb * per);
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..kb {
            let rec = base.add(b * per);
            let (w, dw, mw, corr) = block_record::<Q4>(rec, per);
            for j in 0..N {
                let a = x.get_unchecked(j * kb + b);
                let u = a.u.as_ptr() as *const i32;
                // Two chains of four halve the latency of a block (integer sums are exact).
                let (mut s0, mut s1) = (corr, _mm512_setzero_si512());
                for k in 0..4 {
                    s0 = _mm512_dpbusd_epi32(
                        s0,
                        _mm512_set1_epi32(u.add(2 * k).read_unaligned()),
                        w[2 * k],
                    );
                    s1 = _mm512_dpbusd_epi32(
                        s1,
                        _mm512_set1_epi32(u.add(2 * k + 1).read_unaligned()),
                        w[2 * k + 1],
                    );
                }
                let s = _mm512_add_epi32(s0, s1);
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[j]);
                if Q4 {
                    acc[j] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s), acc[j]);
                }
            }
        }
        let mut out = [[0f32; 16]; N];
        for j in 0..N {
            _mm512_storeu_ps(out[j].as_mut_ptr(), acc[j]);
        }
        out
    }
}

/// Activation blocks that a packed VNNI tile multiplies ([`Act16Block`]: int16,
/// [`Act8Block`]: int8).
pub trait PackedActivation: Copy + Sync {
    /// Widest input chunk of a tile (at most 16).
    const MAX_INPUTS: usize;
    /// Weight rows `16·g .. 16·g + 16` against `N` consecutive input rows of `x`.
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW and VNNI; `x` holds `N` rows of `p.kb` blocks.
    unsafe fn tile<const Q4: bool, const N: usize>(
        p: &Packed16,
        g: usize,
        x: &[Self],
    ) -> [[f32; 16]; N];
}

impl PackedActivation for Act16Block {
    const MAX_INPUTS: usize = MAX_TILE_INPUTS;
    unsafe fn tile<const Q4: bool, const N: usize>(
        p: &Packed16,
        g: usize,
        x: &[Self],
    ) -> [[f32; 16]; N] {
        // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
        // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
        unsafe { tile16::<Q4, N>(p, g, x) }
    }
}

impl PackedActivation for Act8Block {
    const MAX_INPUTS: usize = 8;
    unsafe fn tile<const Q4: bool, const N: usize>(
        p: &Packed16,
        g: usize,
        x: &[Self],
    ) -> [[f32; 16]; N] {
        // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
        // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
        unsafe { tile8::<Q4, N>(p, g, x) }
    }
}

/// Products of weight rows `rows` with the `n` quantized input rows of `x` (int16 or int8
/// activations), reported through `write(first_row, input, values)` for the runs of up to 16
/// consecutive rows (`values[k]` is row `first_row + k`): each 16-row group overlapping
/// `rows` against chunks of up to [`MAX_TILE_INPUTS`] inputs (equal chunks, as
/// [`exact_range_512`]).
///
/// # Safety
/// The CPU has AVX-512F/BW and VNNI; `x` holds `n` rows of `p.kb` blocks.
pub unsafe fn packed_range_512<A: PackedActivation>(
    p: &Packed16,
    x: &[A],
    n: usize,
    rows: std::ops::Range<usize>,
    write: &mut impl FnMut(usize, usize, &[f32]),
) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        if n == 0 || rows.is_empty() {
            return;
        }
        let kb = p.kb;
        let chunks = n.div_ceil(A::MAX_INPUTS);
        macro_rules! run {
            ($g:expr, $i:expr, $N:literal) => {{
                let xs = &x[$i * kb..($i + $N) * kb];
                let v = if p.q4 {
                    A::tile::<true, $N>(p, $g, xs)
                } else {
                    A::tile::<false, $N>(p, $g, xs)
                };
                // The group's lanes that fall in `rows`, as one contiguous run.
                let lo = rows.start.max($g * LANES);
                let hi = rows.end.min(($g + 1) * LANES);
                for (j, lanes) in v.iter().enumerate() {
                    write(lo, $i + j, &lanes[lo - $g * LANES..hi - $g * LANES]);
                }
            }};
        }
        for g in rows.start / LANES..rows.end.div_ceil(LANES) {
            let mut i = 0;
            for c in 0..chunks {
                let len = (n - i) / (chunks - c);
                match len {
                    1 => run!(g, i, 1),
                    2 => run!(g, i, 2),
                    3 => run!(g, i, 3),
                    4 => run!(g, i, 4),
                    5 => run!(g, i, 5),
                    6 => run!(g, i, 6),
                    7 => run!(g, i, 7),
                    8 => run!(g, i, 8),
                    9 => run!(g, i, 9),
                    10 => run!(g, i, 10),
                    11 => run!(g, i, 11),
                    12 => run!(g, i, 12),
                    13 => run!(g, i, 13),
                    14 => run!(g, i, 14),
                    15 => run!(g, i, 15),
                    _ => run!(g, i, 16),
                }
                i += len;
            }
        }
    }
}
