//! [`Matrix`] and [`Weights`]: a weight matrix kept in its GGUF blocks (or dequantized to f32,
//! or packed), built from a GGUF tensor, stacked, packed, and read back row by row. Its products
//! are in `dispatch.rs`.

use candle_core::quantized::{GgmlDType, QTensor};

use super::{Kernel, Packed16, BLOCK};

/// A weight matrix of `rows` output features × `cols` input features, row-major (GGUF layout).
pub(crate) enum Weights {
    /// ggml `Q4_1`: per block of 32, `w = d * q + m` with `q` in 0..16; nibbles kept as in ggml
    /// (low nibble = element j, high nibble = element j + 16).
    Q4_1 { scales: Vec<[f32; 2]>, qs: Vec<[u8; 16]> },
    /// ggml `Q8_0`: per block of 32, `w = d * q` with `q` an i8.
    Q8_0 { d: Vec<f32>, qs: Vec<[i8; BLOCK]> },
    /// Any other GGUF type, dequantized (exact) to f32.
    F32(Vec<f32>),
    /// `Q4_1`/`Q8_0` weights kept only in the packed VNNI layout ([`Matrix::pack`]): the original
    /// blocks are dropped, so a model holds one copy of its weights.
    Packed(Packed16),
}

/// A weight matrix with its shape.
pub struct Matrix {
    /// Output features (weight rows).
    pub rows: usize,
    /// Input features (weight columns).
    pub cols: usize,
    pub(crate) weights: Weights,
    /// Products of the quantized kinds run on 8-bit activations (llama.cpp's arithmetic) instead
    /// of f32 activations against exactly dequantized weights.
    pub(crate) int8: bool,
    /// The weights regrouped for the int16 kernel, built on its first product (only when
    /// [`Kernel::Avx512Int16`] runs, so other kernels pay no memory for it).
    pub(crate) packed16: std::sync::OnceLock<Option<Packed16>>,
}

/// IEEE half to f32 (ggml stores block scales as f16).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // subnormal: value = man * 2^-24
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 31 {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

fn read_f16(bytes: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
}

impl Matrix {
    /// Takes a 2-D GGUF tensor. With `int8_activations`, `Q4_1`/`Q8_0` stay quantized and
    /// their products run on 8-bit activations; everything else is dequantized to f32 (exact).
    pub fn from_qtensor(t: &QTensor, int8_activations: bool) -> candle_core::Result<Matrix> {
        let (rows, cols) = t.shape().dims2()?;
        let quantizable = cols.is_multiple_of(BLOCK);
        let weights = match t.dtype() {
            GgmlDType::Q4_1 if quantizable => {
                let data = t.data()?;
                let mut scales = Vec::with_capacity(data.len() / 20);
                let mut qs = Vec::with_capacity(data.len() / 20);
                for b in data.chunks_exact(20) {
                    scales.push([read_f16(&b[0..2]), read_f16(&b[2..4])]);
                    let mut q = [0u8; 16];
                    q.copy_from_slice(&b[4..20]);
                    qs.push(q);
                }
                Weights::Q4_1 { scales, qs }
            }
            GgmlDType::Q8_0 if quantizable => {
                let data = t.data()?;
                let mut d = Vec::with_capacity(data.len() / 34);
                let mut qs = Vec::with_capacity(data.len() / 34);
                for b in data.chunks_exact(34) {
                    d.push(read_f16(&b[0..2]));
                    let mut q = [0i8; BLOCK];
                    for (dst, &src) in q.iter_mut().zip(&b[2..34]) {
                        *dst = src as i8;
                    }
                    qs.push(q);
                }
                Weights::Q8_0 { d, qs }
            }
            _ => {
                let dense = t.dequantize(&candle_core::Device::Cpu)?;
                Weights::F32(dense.flatten_all()?.to_vec1::<f32>()?)
            }
        };
        Ok(Matrix::new(rows, cols, weights, int8_activations))
    }

    /// A matrix from its weights (`int8`: see the field).
    pub(crate) fn new(rows: usize, cols: usize, weights: Weights, int8: bool) -> Matrix {
        Matrix { rows, cols, weights, int8, packed16: std::sync::OnceLock::new() }
    }

    /// The int16 kernel's copy of the weights (`None` for f32 weights), packed on first use.
    pub(crate) fn packed16(&self) -> Option<&Packed16> {
        if let Weights::Packed(p) = &self.weights {
            return Some(p);
        }
        self.packed16.get_or_init(|| Packed16::new(self)).as_ref()
    }

    /// Where the packed VNNI kernel runs ([`Kernel::Avx512Int16`]), replaces quantized weights by
    /// their packed records and drops the original blocks (half the resident memory of packing
    /// on first use); elsewhere, or for f32 weights, leaves the matrix as it is. For matrices
    /// that are complete (after [`Self::stack`]).
    pub(crate) fn pack(&mut self) {
        if Kernel::detect() != Kernel::Avx512Int16 {
            return;
        }
        let packed = self.packed16.take().flatten().or_else(|| Packed16::new(self));
        if let Some(p) = packed {
            self.weights = Weights::Packed(p);
        }
    }

    /// The rows of several matrices with the same column count stacked into one matrix (so that
    /// one pass over the thread pool computes all their products), or `None` when their weight
    /// kinds differ.
    pub(crate) fn stack(parts: Vec<Matrix>) -> std::result::Result<Matrix, Vec<Matrix>> {
        let cols = parts[0].cols;
        let same_kind = parts.iter().all(|p| {
            !matches!(p.weights, Weights::Packed(_))
                && p.cols == cols
                && std::mem::discriminant(&p.weights) == std::mem::discriminant(&parts[0].weights)
        });
        if !same_kind {
            return Err(parts);
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let int8 = parts[0].int8;
        let mut iter = parts.into_iter();
        let mut first = iter.next().expect("at least one part").weights;
        for part in iter {
            match (&mut first, part.weights) {
                (Weights::Q4_1 { scales, qs }, Weights::Q4_1 { scales: s, qs: q }) => {
                    scales.extend(s);
                    qs.extend(q);
                }
                (Weights::Q8_0 { d, qs }, Weights::Q8_0 { d: e, qs: q }) => {
                    d.extend(e);
                    qs.extend(q);
                }
                (Weights::F32(w), Weights::F32(v)) => w.extend(v),
                _ => unreachable!("kinds checked above"),
            }
        }
        Ok(Matrix::new(rows, cols, first, int8))
    }

    /// Blocks per row (for the quantized kinds).
    pub(crate) fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Whether the product needs the caller to quantize the activations ([`quantize_row`]). The
    /// packed VNNI kernel quantizes the f32 rows itself, into its own layout.
    pub(crate) fn wants_quantized_input(&self) -> bool {
        self.int8 && !matches!(self.weights, Weights::F32(_)) && self.packed_kernel().is_none()
    }

    /// The packed records when products run on the packed VNNI kernel ([`Kernel::Avx512Int16`]
    /// and quantized weights it packs): the one test of "runs packed" for every product path.
    pub(super) fn packed_kernel(&self) -> Option<&Packed16> {
        if cfg!(target_arch = "x86_64") && Kernel::detect() == Kernel::Avx512Int16 {
            self.packed16()
        } else {
            None
        }
    }

    /// Row `r` of the matrix in f32 (exact dequantization), written to `out`.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let kb = self.cols / BLOCK;
        match &self.weights {
            Weights::Q4_1 { scales, qs } => {
                for b in 0..kb {
                    let [d, m] = scales[r * kb + b];
                    let q = &qs[r * kb + b];
                    let o = &mut out[b * BLOCK..(b + 1) * BLOCK];
                    for j in 0..16 {
                        o[j] = d * (q[j] & 0x0f) as f32 + m;
                        o[j + 16] = d * (q[j] >> 4) as f32 + m;
                    }
                }
            }
            Weights::Q8_0 { d, qs } => {
                for b in 0..kb {
                    let s = d[r * kb + b];
                    for (o, &q) in out[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(&qs[r * kb + b]) {
                        *o = s * q as f32;
                    }
                }
            }
            Weights::F32(w) => out.copy_from_slice(&w[r * self.cols..(r + 1) * self.cols]),
            Weights::Packed(p) => p.dequantize_row(r, out),
        }
    }
}
