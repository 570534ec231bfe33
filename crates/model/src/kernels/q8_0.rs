//! `Q8_0` (32 weights per block, `w = d·q`, 8-bit `q`): the portable scalar reference of every
//! product the SIMD kernels compute on it, one per arithmetic.

use super::quantize::{Act16Block, ActBlock};
use super::BLOCK;

/// Portable exact `Q8_0` product.
pub(crate) fn exact_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, (&d, q)) in d.iter().zip(qs).enumerate() {
        let dot: f32 =
            q.iter().zip(&x[b * BLOCK..(b + 1) * BLOCK]).map(|(&q, &v)| q as f32 * v).sum();
        acc += d * dot;
    }
    acc
}

/// Portable reference for the `Q8_0` × 8-bit dot product.
pub(crate) fn dot_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for ((&dw, q), a) in d.iter().zip(qs).zip(x) {
        let sum: i32 = q.iter().zip(&a.qs).map(|(&w, &v)| w as i32 * v as i32).sum();
        acc += dw * a.d * sum as f32;
    }
    acc
}

/// Portable reference of the int16 `Q8_0` product (bit for bit the SIMD kernel's arithmetic).
#[cfg_attr(not(test), allow(dead_code))] // the reference the tests hold the VNNI tiles to
pub(crate) fn int16_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[Act16Block]) -> f32 {
    let mut acc = 0f32;
    for ((&dw, q), a) in d.iter().zip(qs).zip(x) {
        let s: i32 = q.iter().enumerate().map(|(e, &w)| w as i32 * a.value(e)).sum();
        acc = (s as f32).mul_add(dw * a.d, acc);
    }
    acc
}

/// Portable reference of the packed int8 `Q8_0` product (bit for bit the VNNI kernel's).
#[cfg_attr(not(test), allow(dead_code))] // the reference the tests hold the VNNI tiles to
pub(crate) fn int8_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for ((&dw, q), a) in d.iter().zip(qs).zip(x) {
        let sum: i32 = q.iter().zip(&a.qs).map(|(&w, &v)| w as i32 * v as i32).sum();
        acc = (sum as f32).mul_add(dw * a.d, acc);
    }
    acc
}
