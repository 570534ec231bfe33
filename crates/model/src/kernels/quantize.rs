//! The activation quantizers: ggml's 8-bit blocks ([`ActBlock`]), 16-bit blocks for the int16
//! products ([`Act16Block`]) and 8-bit blocks in the packed kernel's layout ([`Act8Block`]),
//! each as portable code with its AVX-512 version chosen at run time (same bytes, tested).

#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{Kernel, BLOCK};

/// One row block of activations quantized to 8 bits: `x[j] ≈ d * qs[j]`; `s = d * Σ qs`
/// (needed by `Q4_1`, whose weights carry an offset).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct ActBlock {
    /// The quantized values.
    pub qs: [i8; BLOCK],
    /// The scale.
    pub d: f32,
    /// `d · Σ qs`.
    pub s: f32,
}

/// Quantizes one row (length a multiple of [`BLOCK`]) the way ggml's x86 `quantize_row_q8_1`
/// does (scale = max |x| / 127, `x · (1 / scale)` rounded to nearest, ties to even), keeping the
/// scales in f32. Runs 16 lanes wide on AVX-512 (the same values, tested).
pub fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
    debug_assert_eq!(x.len(), out.len() * BLOCK);
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect().avx512() {
        // SAFETY: AVX-512F was detected (Kernel::avx512).
        return unsafe { x86::quantize_row_512(x, out) };
    }
    quantize_row_scalar(x, out)
}

/// The portable [`quantize_row`].
pub(crate) fn quantize_row_scalar(x: &[f32], out: &mut [ActBlock]) {
    for (chunk, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(chunk) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        block.d = d;
        block.s = d * sum as f32;
    }
}

/// Largest 16-bit activation magnitude: a block's `max |x|` maps to ±`INT16_MAX` (symmetric, so
/// that `x_int + 32768` always fits two unsigned bytes).
pub(crate) const INT16_MAX: f32 = 32767.0;

/// One block of 32 activations quantized to 16 bits for the int16 products:
/// `x[e] ≈ d · x_int[e]` with `x_int = round(x / d)`, `d = max |x| / 32767`, so the rounding error
/// of an element is at most `d / 2` (`max |x| / 65534`, 256× finer than 8 bits).
///
/// `vpdpbusd` multiplies unsigned by signed bytes, and the `Q8_0` weights are the signed ones, so
/// the activations are the unsigned operand: `x_int + 32768 = 256 · hi + lo` with `hi`, `lo` in
/// 0..256. The products subtract `32768 · Σ w` (a per-block weight constant, [`Packed16`]). The
/// bytes are stored in the 4-byte group order of the packed weights ([`group_start`]); the sum
/// `sx = d · Σ x_int` serves `Q4_1`'s offset term.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Act16Block {
    /// High bytes of `x_int + 32768`, in group order.
    pub hi: [u8; BLOCK],
    /// Low bytes of `x_int + 32768`, in group order.
    pub lo: [u8; BLOCK],
    /// The scale.
    pub d: f32,
    /// `d · Σ x_int`.
    pub sx: f32,
}

impl Default for Act16Block {
    /// The all-zero block (`x_int = 0`, i.e. bytes of 32768).
    fn default() -> Act16Block {
        Act16Block { hi: [128; BLOCK], lo: [0; BLOCK], d: 0.0, sx: 0.0 }
    }
}

/// First element of the block that 4-byte group `g` (0..8) holds: groups alternate between the
/// first and the second half of the block (0..4, 16..20, 4..8, 20..24, …) because a `Q4_1` byte
/// holds element `j` in its low nibble and `j + 16` in its high one, so one 64-byte load of
/// nibbles unpacks into two consecutive groups.
pub(crate) const fn group_start(g: usize) -> usize {
    (g / 2) * 4 + (g % 2) * 16
}

/// Where element `e` of a block sits in the group order of [`group_start`].
const fn group_position(e: usize) -> usize {
    let (half, within) = (e / 16, e % 16);
    (within / 4) * 8 + half * 4 + within % 4
}

impl Act16Block {
    /// The quantized value `x_int` of element `e` (0..32).
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    pub fn value(&self, e: usize) -> i32 {
        let p = group_position(e);
        self.hi[p] as i32 * 256 + self.lo[p] as i32 - 32768
    }
}

/// Quantizes one row (length a multiple of [`BLOCK`]) to 16-bit blocks ([`Act16Block`]). A block
/// with a NaN or infinite value gets a NaN scale, so the products it enters are NaN, as in f32.
/// Portable reference; the int16 kernel uses its AVX-512 version (same bytes, tested).
#[cfg_attr(not(test), allow(dead_code))] // the reference the tests hold the AVX-512 quantizer to
pub(crate) fn quantize_row16(x: &[f32], out: &mut [Act16Block]) {
    debug_assert_eq!(x.len(), out.len() * BLOCK);
    for (chunk, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        let finite = chunk.iter().all(|v| v.is_finite());
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = if finite { amax / INT16_MAX } else { f32::NAN };
        let mut sum = 0i32;
        for (e, &v) in chunk.iter().enumerate() {
            // Dividing (not multiplying by 1/d) keeps |v / d| ≈ 32767 at most even for subnormal
            // d; ties to even is what the SIMD conversion does.
            let q =
                if d > 0.0 { ((v / d).round_ties_even() as i32).clamp(-32767, 32767) } else { 0 };
            sum += q;
            let u = (q + 32768) as u32;
            let p = group_position(e);
            block.hi[p] = (u >> 8) as u8;
            block.lo[p] = u as u8;
        }
        block.d = d;
        block.sx = d * sum as f32;
    }
}

/// One block of 8-bit activations ([`ActBlock`], ggml's quantization) laid out for the packed
/// VNNI kernel: `u[p] = qs[e] + 128` at the group position `p` of element `e` ([`group_start`]),
/// so that the activations are `vpdpbusd`'s unsigned operand as in [`Act16Block`]'s high plane
/// (the weights' `−128 · Σ w` correction is shared). `d`, `s` as in [`ActBlock`].
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Act8Block {
    /// `qs + 128`, in group order.
    pub u: [u8; BLOCK],
    /// The scale.
    pub d: f32,
    /// `d · Σ qs`.
    pub s: f32,
}

impl Default for Act8Block {
    /// The all-zero block.
    fn default() -> Act8Block {
        Act8Block { u: [128; BLOCK], d: 0.0, s: 0.0 }
    }
}

impl From<&ActBlock> for Act8Block {
    fn from(a: &ActBlock) -> Act8Block {
        let mut u = [0u8; BLOCK];
        for (e, &q) in a.qs.iter().enumerate() {
            u[group_position(e)] = (q as i32 + 128) as u8;
        }
        Act8Block { u, d: a.d, s: a.s }
    }
}

/// Quantizes one row straight into the packed kernel's 8-bit layout ([`Act8Block`]): the bytes
/// and scales of [`quantize_row`] in group order. Portable fallback: quantize, then reorder.
pub(crate) fn quantize_row8(x: &[f32], out: &mut [Act8Block]) {
    debug_assert_eq!(x.len(), out.len() * BLOCK);
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect().avx512() {
        // SAFETY: AVX-512F was detected (Kernel::avx512).
        return unsafe { x86::quantize_row8_512(x, out) };
    }
    let mut block = [ActBlock::default()];
    for (chunk, o) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        quantize_row_scalar(chunk, &mut block);
        *o = Act8Block::from(&block[0]);
    }
}
