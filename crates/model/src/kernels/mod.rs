//! CPU kernels for the model layer: weight matrices kept in their GGUF blocks (`Q4_1`, `Q8_0`;
//! every other type dequantized to f32), and the batched matrix products over them, run on
//! candle's persistent thread pool.
//!
//! Why own kernels: candle 0.11.1's `Q4_1` dot product is its generic scalar code and its x86
//! repacked VNNI kernels need `k % 256 == 0` (this model has `k = 576`), so `QMatMul` is 10–18×
//! slower here at batch ≥ 5 (see BENCHMARKS.md, "Kernel choice").
//!
//! Three arithmetics:
//! - **exact**: each 32-weight block is decoded in registers exactly as ggml dequantizes it and
//!   multiplied into f32 activations with FMAs (AVX-512, AVX2 + FMA, or portable scalar code).
//!   Memory traffic stays that of the quantized file. The default without AVX-512 VNNI, and with
//!   `SEAL_KERNELS=avx512`.
//! - **int16** (default on AVX-512 VNNI CPUs, `Kernel::Avx512Int16`): activations quantized to
//!   16 bits per 32-block ([`quantize::quantize_row16`]), split into two 8-bit planes and multiplied with
//!   the integer weights by `vpdpbusd`; each block's integer sum is exact and is scaled in f32.
//!   The only error is the activations' rounding (≤ half a step of `max |x| / 32767` per
//!   element), 256× finer than the int8 arithmetic's: 0.004 nats from the float64 reference on
//!   the golden prompts (the exact tiles: 0.00003), for 1.4–1.5× faster decoding steps at 15 beams
//!   and 2× faster prompts (BENCHMARKS.md; [`Packed16`] for the layout).
//! - **int8** (opt-in, `--precision int8`): ggml's own arithmetic, activations quantized to 8
//!   bits per block and integer dot products, which is what llama.cpp computes (and as far from
//!   the exact model). On AVX-512 VNNI CPUs it runs the int16 kernel's packed tiles with one byte
//!   plane instead of two ([`Act8Block`]); elsewhere ggml-style AVX2 dot products.
//!
//! For a given machine every product of a weight row with an input row runs the same operations in
//! the same order whatever the batch, the tile it falls in, or the rows asked for, so a beam's
//! numbers do not depend on the batch it runs in (the subset head and the beam tests rely on it).
//!
//!
//! The tree, by role:
//! - [`detect`]: which [`Kernel`] this CPU runs (once per process, `SEAL_KERNELS` overrides);
//! - `quantize`: the activation quantizers (8-bit for ggml's arithmetic, 16-bit and 8-bit in the
//!   packed kernel's layout), portable code and dispatch;
//! - `packed`: the [`Packed16`] layout of `Q4_1`/`Q8_0` weights for the VNNI tiles;
//! - `matrix`: [`Matrix`] and [`Weights`], built from GGUF tensors; `dispatch`: its products, which
//!   pick the kernel for each weight kind and arithmetic;
//! - `q4_1`, `q8_0`, `f32`: the portable scalar reference of every product, per weight format;
//! - `x86/`: the SIMD kernels per instruction set (`avx2`, `avx512`, `vnni` for the packed tiles,
//!   `quantize` for the AVX-512 quantizers), each naming the scalar reference it equals.
//!
//! Not for: attention, normalisation or anything model-specific (see `crate::layers`).

mod detect;
mod dispatch;
mod f32;
mod matrix;
mod packed;
mod q4_1;
mod q8_0;
mod quantize;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use detect::Kernel;
pub(crate) use f32::dot_f32;
pub use matrix::Matrix;
pub(crate) use matrix::{f16_to_f32, Weights};
pub(crate) use packed::Packed16;
pub use quantize::{quantize_row, ActBlock};

/// Values per quantization block (ggml's `QK4_1` = `QK8_0` = 32).
pub const BLOCK: usize = 32;

/// A raw output pointer handed to the pool's workers, each of which writes a disjoint part.
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: used only to hand disjoint output ranges to the pool's workers.
unsafe impl Sync for SendPtr {}
// SAFETY: as for `Sync`: the pointee is written at disjoint places only.
unsafe impl Send for SendPtr {}
