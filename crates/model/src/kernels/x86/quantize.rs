//! The activation quantizers in 16 AVX-512 lanes (references `quantize_row_scalar`,
//! `quantize_row8`, `quantize_row16` in `kernels/quantize.rs`: the same bytes and scales).

use crate::kernels::quantize::{Act16Block, Act8Block, ActBlock};
use crate::kernels::BLOCK;
use std::arch::x86_64::*;

/// One block of 32 values at `p`, as two 16-lane halves, and its `max |x|` when every value
/// is finite (ordered "less than ∞" is false for NaN and ±∞).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_block(p: *const f32) -> (__m512, __m512, Option<f32>) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let (v0, v1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
        let (a0, a1) = (_mm512_abs_ps(v0), _mm512_abs_ps(v1));
        let inf = _mm512_set1_ps(f32::INFINITY);
        let finite = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a0, inf)
            & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a1, inf)
            == 0xffff;
        (v0, v1, finite.then(|| _mm512_reduce_max_ps(_mm512_max_ps(a0, a1))))
    }
}

/// ggml's 8-bit rounding of a finite block (scale `max |x| / 127`, `x · (1 / scale)` to
/// nearest even): the rounded halves, the scale and `Σ q`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn round_block8(v0: __m512, v1: __m512, amax: f32) -> (__m512i, __m512i, f32, i32) {
    let d = amax / 127.0;
    let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    // The default rounding mode: to nearest, ties to even.
    let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
    let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
    (q0, q1, d, _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)))
}

/// [`crate::kernels::quantize::quantize_row_scalar`] in 16 lanes (same bytes and scales); a block with a
/// non-finite value takes the scalar code.
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `out.len()` blocks.
#[target_feature(enable = "avx512f")]
pub unsafe fn quantize_row_512(x: &[f32], out: &mut [ActBlock]) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        assert!(x.len() >= out.len() * BLOCK);
        for (b, block) in out.iter_mut().enumerate() {
            let p = x.as_ptr().add(b * BLOCK);
            let (v0, v1, Some(amax)) = load_block(p) else {
                let chunk = std::slice::from_raw_parts(p, BLOCK);
                crate::kernels::quantize::quantize_row_scalar(chunk, std::slice::from_mut(block));
                continue;
            };
            let (q0, q1, d, sum) = round_block8(v0, v1, amax);
            let qs = block.qs.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(qs, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128(qs.add(1), _mm512_cvtepi32_epi8(q1));
            block.d = d;
            block.s = d * sum as f32;
        }
    }
}

/// [`crate::kernels::quantize::quantize_row8`] in 16 lanes: [`quantize_row_512`]'s bytes and scales, stored in
/// group order with 128 added (a non-finite block takes the scalar code).
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `out.len()` blocks.
#[target_feature(enable = "avx512f")]
pub unsafe fn quantize_row8_512(x: &[f32], out: &mut [Act8Block]) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        assert!(x.len() >= out.len() * BLOCK);
        let flip = _mm_set1_epi8(-128);
        for (b, block) in out.iter_mut().enumerate() {
            let p = x.as_ptr().add(b * BLOCK);
            let (v0, v1, Some(amax)) = load_block(p) else {
                let mut one = [ActBlock::default()];
                crate::kernels::quantize::quantize_row_scalar(
                    std::slice::from_raw_parts(p, BLOCK),
                    &mut one,
                );
                *block = Act8Block::from(&one[0]);
                continue;
            };
            let (q0, q1, d, sum) = round_block8(v0, v1, amax);
            // q + 128 as a byte is q ^ 0x80; elements 0..16 and 16..32 interleaved by 4-byte
            // groups: the group order.
            let b0 = _mm_xor_si128(_mm512_cvtepi32_epi8(q0), flip);
            let b1 = _mm_xor_si128(_mm512_cvtepi32_epi8(q1), flip);
            let u = block.u.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(u, _mm_unpacklo_epi32(b0, b1));
            _mm_storeu_si128(u.add(1), _mm_unpackhi_epi32(b0, b1));
            block.d = d;
            block.s = d * sum as f32;
        }
    }
}

/// [`crate::kernels::quantize::quantize_row16`] in 16 lanes (same bytes and scales: the same division, rounding
/// to nearest even, clamp and sum).
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `out.len()` blocks.
#[target_feature(enable = "avx512f")]
pub unsafe fn quantize_row16_512(x: &[f32], out: &mut [Act16Block]) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        assert!(x.len() >= out.len() * BLOCK);
        let (lim, off) = (_mm512_set1_epi32(32767), _mm512_set1_epi32(32768));
        let neg_lim = _mm512_set1_epi32(-32767);
        for (b, block) in out.iter_mut().enumerate() {
            let (v0, v1, amax) = load_block(x.as_ptr().add(b * BLOCK));
            let d = amax.map_or(f32::NAN, |amax| amax / crate::kernels::quantize::INT16_MAX);
            if d.is_nan() || d == 0.0 {
                *block = Act16Block { d, sx: d * 0.0, ..Act16Block::default() };
                continue;
            }
            let dv = _mm512_set1_ps(d);
            let quantize = |v: __m512| {
                let q = _mm512_cvtps_epi32(_mm512_div_ps(v, dv));
                _mm512_max_epi32(_mm512_min_epi32(q, lim), neg_lim)
            };
            let (q0, q1) = (quantize(v0), quantize(v1));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            let (u0, u1) = (_mm512_add_epi32(q0, off), _mm512_add_epi32(q1, off));
            let (lo0, lo1) = (_mm512_cvtepi32_epi8(u0), _mm512_cvtepi32_epi8(u1));
            let hi0 = _mm512_cvtepi32_epi8(_mm512_srli_epi32::<8>(u0));
            let hi1 = _mm512_cvtepi32_epi8(_mm512_srli_epi32::<8>(u1));
            // Elements 0..16 and 16..32 interleaved by 4-byte groups: the group order.
            let store = |dst: &mut [u8; BLOCK], a: __m128i, b: __m128i| {
                _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, _mm_unpacklo_epi32(a, b));
                _mm_storeu_si128(
                    dst.as_mut_ptr().add(16) as *mut __m128i,
                    _mm_unpackhi_epi32(a, b),
                );
            };
            store(&mut block.hi, hi0, hi1);
            store(&mut block.lo, lo0, lo1);
            block.d = d;
            block.sx = d * sum as f32;
        }
    }
}
