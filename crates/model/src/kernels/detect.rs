//! Kernel detection: which instruction set the products, quantizers and layers run on, chosen
//! once per process from the CPU's features and `SEAL_KERNELS`.

#[cfg(doc)]
use super::Packed16;
use super::Weights;

/// Which instruction set the quantized dot products use (decided once per call).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kernel {
    /// Portable code only (no x86-64, or a CPU without AVX2 + FMA, or `SEAL_KERNELS=scalar`).
    Scalar,
    /// AVX2 + FMA: `maddubs`/`madd` integer products (ggml's x86 path).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (implies AVX2 + FMA): the exact products run 16 lanes wide; the int8 products
    /// stay on the AVX2 code.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX-512F/BW + VNNI: the `Q4_1`/`Q8_0` products on 16-bit activations (`vpdpbusd`, see
    /// [`Packed16`]); everything else as [`Kernel::Avx512`].
    #[cfg(target_arch = "x86_64")]
    Avx512Int16,
}

/// Whether [`Kernel::detect`] picks [`Kernel::Avx512Int16`] when the CPU has it and
/// `SEAL_KERNELS` does not say otherwise. Decided by measurement (BENCHMARKS.md): steps at 15
/// beams 1.4–1.5× faster, prompts 2×, and the golden tests pass (0.004 nats from float64,
/// tolerance 0.005).
pub(crate) const INT16_BY_DEFAULT: bool = true;

impl Kernel {
    /// Whether the exact products of `weights` give every input row the same numbers whatever
    /// the batch size (no gemm for large batches). With AVX-512 every kind does, f32 weights
    /// included (Gemma's `Q6_K` tensors): their prompts take the per-row dot product instead of
    /// the gemm, so that a continued prefill equals a whole one bit for bit.
    pub(crate) fn batch_invariant(self, weights: &Weights) -> bool {
        let _ = weights;
        self.avx512()
    }

    /// Whether the 16-lane AVX-512 code runs (attention, log-sum-exp, f32 tiles).
    pub fn avx512(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return matches!(self, Kernel::Avx512 | Kernel::Avx512Int16);
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The best kernel this CPU runs, once per process. `SEAL_KERNELS` picks one for
    /// comparisons and tests of the fallbacks: `scalar`, `avx2`, `avx512` (exact f32 tiles) or
    /// `avx512-int16` (16-bit activations); a kernel the CPU lacks falls back to the best below.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            static DETECTED: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
            *DETECTED.get_or_init(|| {
                let wanted = std::env::var("SEAL_KERNELS").unwrap_or_default();
                let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                let vnni =
                    is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni");
                match wanted.as_str() {
                    "scalar" => Kernel::Scalar,
                    _ if !avx2 => Kernel::Scalar,
                    "avx2" => Kernel::Avx2,
                    _ if !is_x86_feature_detected!("avx512f") => Kernel::Avx2,
                    "avx512" => Kernel::Avx512,
                    "avx512-int16" if vnni => Kernel::Avx512Int16,
                    _ if vnni && INT16_BY_DEFAULT => Kernel::Avx512Int16,
                    _ => Kernel::Avx512,
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Scalar
    }
}
