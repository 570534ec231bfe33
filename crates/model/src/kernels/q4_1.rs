//! `Q4_1` (32 weights per block, `w = d·q + m`, 4-bit `q`): the portable scalar reference of
//! every product the SIMD kernels compute on it, one per arithmetic. The x86 kernels equal these
//! (bit for bit where stated, tested).

use super::quantize::{Act16Block, ActBlock};
use super::BLOCK;

/// Portable exact `Q4_1` product: each weight dequantized as ggml does (`d·q + m` in f32).
pub(crate) fn exact_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, (&[d, m], q)) in scales.iter().zip(qs).enumerate() {
        let xb = &x[b * BLOCK..(b + 1) * BLOCK];
        for j in 0..16 {
            acc +=
                ((q[j] & 0x0f) as f32 * d + m) * xb[j] + ((q[j] >> 4) as f32 * d + m) * xb[j + 16];
        }
    }
    acc
}

/// Portable reference for the `Q4_1` × 8-bit dot product (same integer sums as the SIMD paths).
#[allow(clippy::needless_range_loop)]
pub(crate) fn dot_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for ((&[d, m], q), a) in scales.iter().zip(qs).zip(x) {
        let mut sum = 0i32;
        for j in 0..16 {
            sum += (q[j] & 0x0f) as i32 * a.qs[j] as i32 + (q[j] >> 4) as i32 * a.qs[j + 16] as i32;
        }
        acc += d * a.d * sum as f32 + m * a.s;
    }
    acc
}

/// Portable reference of the int16 `Q4_1` product: per block the exact integer `S = Σ q·x_int`,
/// then `acc = S·(d_w·d_x) + acc` and `acc = m·sx + acc`, each one fused multiply-add. The SIMD
/// kernel computes the same operations in the same order, so it equals this bit for bit.
#[cfg_attr(not(test), allow(dead_code))] // the reference the tests hold the VNNI tiles to
pub(crate) fn int16_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[Act16Block]) -> f32 {
    let mut acc = 0f32;
    for ((&[d, m], q), a) in scales.iter().zip(qs).zip(x) {
        let mut s = 0i32;
        for (j, &byte) in q.iter().enumerate() {
            s += (byte & 0x0f) as i32 * a.value(j) + (byte >> 4) as i32 * a.value(j + 16);
        }
        acc = (s as f32).mul_add(d * a.d, acc);
        acc = m.mul_add(a.sx, acc);
    }
    acc
}

/// Portable reference of the packed int8 `Q4_1` product: per block the integer `S = Σ q·x_q`
/// (ggml's), then `acc = S·(d_w·d_x) + acc` and `acc = m·s + acc`, each one fused multiply-add;
/// the VNNI kernel equals it bit for bit (ggml sums the same integers in another float order).
#[cfg_attr(not(test), allow(dead_code))] // the reference the tests hold the VNNI tiles to
pub(crate) fn int8_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for ((&[d, m], q), a) in scales.iter().zip(qs).zip(x) {
        let sum: i32 = q
            .iter()
            .enumerate()
            .map(|(j, &b)| {
                (b & 0x0f) as i32 * a.qs[j] as i32 + (b >> 4) as i32 * a.qs[j + 16] as i32
            })
            .sum();
        acc = (sum as f32).mul_add(d * a.d, acc);
        acc = m.mul_add(a.s, acc);
    }
    acc
}
