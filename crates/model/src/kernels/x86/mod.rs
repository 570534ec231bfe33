//! The x86-64 SIMD kernels, one file per instruction set. Every function here is reached only
//! through [`super::Kernel::detect`], which has checked that the CPU has the features it enables,
//! and each names the portable reference it equals.

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod quantize;
pub(crate) mod vnni;

pub(crate) use avx2::{
    dequantize_row, dot4_q4_1_avx2, dot_q4_1_avx2, dot_q8_0_avx2, exact_range, Q41, Q80,
};
pub(crate) use avx512::exact_range_512;
pub(crate) use quantize::{quantize_row16_512, quantize_row8_512, quantize_row_512};
pub(crate) use vnni::{packed_range_512, PackedActivation};
