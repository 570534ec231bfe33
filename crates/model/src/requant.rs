//! Lossless re-encoding of GGUF block types that [`crate::kernels`] has no kernel for into kinds it
//! has, so that K-quant files (e.g. Gemma 3's `Q4_K_M`) keep their weights compact in memory
//! instead of being dequantized to f32 at load.
//!
//! - `Q5_0` (per 32: f16 scale, 5-bit values minus 16) → `Q8_0` with the same f16 scale and the
//!   same integers in `i8`: identical weights, 1.06 bytes per weight instead of 4.
//! - `Q4_K` (per 256: f16 `d`, `dmin`, eight 6-bit sub-scales and mins) → `Q4_1` blocks of 32 with
//!   f32 scale `d·sc` and offset `−dmin·m`: the weights ggml dequantizes, up to one rounding of
//!   the fused multiply-add (≤ 1 ulp).
//! - Everything else goes to [`Matrix::from_qtensor`] unchanged (`Q6_K` becomes f32 there).
//!
//! Not for: new arithmetic (the products are those of `kernels/`), or lossy re-quantization.

use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
use candle_core::Device;

use crate::kernels::{f16_to_f32, Matrix, Weights, BLOCK};

const Q5_0_BYTES: usize = 22;
const Q8_0_BYTES: usize = 34;
const QK_K: usize = 256;
const Q4_K_BYTES: usize = 144;

/// A weight matrix from a 2-D GGUF tensor, re-encoding `Q5_0` and `Q4_K` losslessly (see the
/// module docs); other types as [`Matrix::from_qtensor`] reads them.
///
/// # Errors
/// The tensor is not 2-D or its data cannot be read.
pub fn matrix(t: &QTensor, int8_activations: bool) -> candle_core::Result<Matrix> {
    let (rows, cols) = t.shape().dims2()?;
    match t.dtype() {
        GgmlDType::Q5_0 if cols.is_multiple_of(BLOCK) => {
            let data = t.data()?;
            let mut out = Vec::with_capacity(data.len() / Q5_0_BYTES * Q8_0_BYTES);
            for b in data.chunks_exact(Q5_0_BYTES) {
                out.extend_from_slice(&b[0..2]);
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let qs = &b[6..22];
                for i in 0..BLOCK {
                    let low = if i < 16 { qs[i] & 0x0f } else { qs[i - 16] >> 4 };
                    let high = (((qh >> i) & 1) as u8) << 4;
                    out.push(((low | high) as i8 - 16) as u8);
                }
            }
            let q8 = ggml_file::qtensor_from_ggml(
                GgmlDType::Q8_0,
                &out,
                vec![rows, cols],
                &Device::Cpu,
            )?;
            Matrix::from_qtensor(&q8, int8_activations)
        }
        GgmlDType::Q4K if cols.is_multiple_of(QK_K) => {
            let data = t.data()?;
            let n_blocks = data.len() / Q4_K_BYTES * (QK_K / BLOCK);
            let mut scales = Vec::with_capacity(n_blocks);
            let mut qs = Vec::with_capacity(n_blocks);
            for b in data.chunks_exact(Q4_K_BYTES) {
                let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                let dmin = f16_to_f32(u16::from_le_bytes([b[2], b[3]]));
                let sc = &b[4..16];
                let q = &b[16..144];
                for sub in 0..QK_K / BLOCK {
                    let (s, m) = scale_min_k4(sub, sc);
                    scales.push([d * s as f32, -(dmin * m as f32)]);
                    // Sub-block 2k is the low nibbles of bytes 32k..32k+32, 2k+1 the high ones.
                    let bytes = &q[(sub / 2) * 32..(sub / 2) * 32 + 32];
                    let nib = |j: usize| if sub % 2 == 0 { bytes[j] & 0x0f } else { bytes[j] >> 4 };
                    // Q4_1 layout: low nibble = element j, high nibble = element j + 16.
                    qs.push(std::array::from_fn(|j| nib(j) | (nib(j + 16) << 4)));
                }
            }
            Ok(Matrix::new(rows, cols, Weights::Q4_1 { scales, qs }, int8_activations))
        }
        _ => Matrix::from_qtensor(t, int8_activations),
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a `Q4_K` super-block (ggml's packing).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The re-encoded matrices equal candle's own dequantization of the original blocks.
    #[test]
    fn reencoded_weights_equal_the_original_dequantization() {
        let (rows, cols) = (3, 2 * QK_K);
        let w = candle_core::Tensor::randn(0f32, 0.3, (rows, cols), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q5_0, GgmlDType::Q4K] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let dense = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let m = matrix(&q, false).unwrap();
            assert!(!matches!(m.weights, Weights::F32(_)), "{dtype:?} stayed f32");
            let mut row = vec![0f32; cols];
            for (r, expected) in dense.iter().enumerate() {
                m.dequantize_row(r, &mut row);
                for (c, (&a, &b)) in row.iter().zip(expected).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                        "{dtype:?} row {r} col {c}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
