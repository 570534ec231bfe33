//! CPU kernels for the model layer: weight matrices kept in their GGUF blocks (`Q4_1`, `Q8_0`;
//! every other type dequantized to f32), and the batched matrix products over them, run on
//! candle's persistent thread pool.
//!
//! Why own kernels: candle 0.11.1's `Q4_1` dot product is its generic scalar code and its x86
//! repacked VNNI kernels need `k % 256 == 0` (this model has `k = 576`), so `QMatMul` is 10–18×
//! slower here at batch ≥ 5 (see BENCHMARKS.md, "Kernel choice").
//!
//! Two arithmetics:
//! - **exact** (default): each 32-weight block is decoded in registers exactly as ggml
//!   dequantizes it and multiplied into f32 activations with FMAs (AVX2 + FMA, or portable scalar
//!   code). Memory traffic stays that of the quantized file.
//! - **int8** (opt-in): ggml's own arithmetic, activations quantized to 8 bits per block and
//!   integer dot products, which is what llama.cpp computes (and as far from the exact model).
//!
//! For a given machine every product of a weight row with an input row runs the same operations in
//! the same order whatever the batch, the tile it falls in, or the rows asked for, so a beam's
//! numbers do not depend on the batch it runs in (the subset head and the beam tests rely on it).
//!
//! Not for: attention, normalisation or anything model-specific (see `llama.rs`).

use candle_core::quantized::{GgmlDType, QTensor};

/// Values per quantization block (ggml's `QK4_1` = `QK8_0` = 32).
pub const BLOCK: usize = 32;

/// One row block of activations quantized to 8 bits: `x[j] ≈ d * qs[j]`; `s = d * Σ qs`
/// (needed by `Q4_1`, whose weights carry an offset).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct ActBlock {
    pub qs: [i8; BLOCK],
    pub d: f32,
    pub s: f32,
}

/// Quantizes one row (length a multiple of [`BLOCK`]) the way ggml's `quantize_row_q8_1`
/// does (scale = max |x| / 127, round half away from zero), keeping the scales in f32.
pub fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
    debug_assert_eq!(x.len(), out.len() * BLOCK);
    for (chunk, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(chunk) {
            let r = (v * id).round() as i32;
            *q = r as i8;
            sum += r;
        }
        block.d = d;
        block.s = d * sum as f32;
    }
}

/// A weight matrix of `rows` output features × `cols` input features, row-major (GGUF layout).
pub enum Weights {
    /// ggml `Q4_1`: per block of 32, `w = d * q + m` with `q` in 0..16; nibbles kept as in ggml
    /// (low nibble = element j, high nibble = element j + 16).
    Q4_1 { scales: Vec<[f32; 2]>, qs: Vec<[u8; 16]> },
    /// ggml `Q8_0`: per block of 32, `w = d * q` with `q` an i8.
    Q8_0 { d: Vec<f32>, qs: Vec<[i8; BLOCK]> },
    /// Any other GGUF type, dequantized (exact) to f32.
    F32(Vec<f32>),
}

/// A weight matrix with its shape.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub weights: Weights,
    /// Products of the quantized kinds run on 8-bit activations (llama.cpp's arithmetic) instead
    /// of f32 activations against exactly dequantized weights.
    pub int8: bool,
}

/// IEEE half to f32 (ggml stores block scales as f16).
pub fn f16_to_f32(h: u16) -> f32 {
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
        Ok(Matrix { rows, cols, weights, int8: int8_activations })
    }

    /// The rows of several matrices with the same column count stacked into one matrix (so that
    /// one pass over the thread pool computes all their products), or `None` when their weight
    /// kinds differ.
    pub fn stack(parts: Vec<Matrix>) -> std::result::Result<Matrix, Vec<Matrix>> {
        let cols = parts[0].cols;
        let same_kind = parts.iter().all(|p| {
            p.cols == cols
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
        Ok(Matrix { rows, cols, weights: first, int8 })
    }

    /// Blocks per row (for the quantized kinds).
    pub fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Whether the product needs the activations quantized ([`quantize_row`]).
    pub fn wants_quantized_input(&self) -> bool {
        self.int8 && !matches!(self.weights, Weights::F32(_))
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
        }
    }

    /// `out[i * out_stride + r] = row r · input row i` for every `r` in `rows` (output features)
    /// and every input row `i`. `xq` holds the quantized input rows (`blocks_per_row` each) when
    /// [`Self::wants_quantized_input`], `xf` the f32 rows otherwise. Runs on candle's thread pool.
    pub fn matmul_rows(
        &self,
        xq: &[ActBlock],
        xf: &[f32],
        n_inputs: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
        out_stride: usize,
    ) {
        assert!(
            rows.end <= self.rows && out.len() >= (n_inputs.max(1) - 1) * out_stride + rows.len()
        );
        let kernel = Kernel::detect();
        if n_inputs >= GEMM_MIN_INPUTS && !self.int8 && !kernel.batch_invariant(&self.weights) {
            return self.matmul_rows_gemm(xf, n_inputs, rows, out, out_stride);
        }
        let out_ptr = SendPtr(out.as_mut_ptr());
        let n_rows = rows.len();
        let first = rows.start;
        // Chunks of 4 weight rows keep each chunk's weights in L1 while all inputs pass over them.
        let n_items = n_rows.div_ceil(4);
        let input = Input { xq, xf, n: n_inputs };
        candle_core::utils::barrier_pool().execute_chunked(n_items, |items| {
            let out_ptr = &out_ptr;
            let lo = first + items.start * 4;
            let hi = first + (items.end * 4).min(n_rows);
            // SAFETY: each weight row r writes only column r - first of each output row, and the
            // pool hands out disjoint item ranges.
            unsafe { self.matmul_range(kernel, &input, lo..hi, first, out_ptr.0, out_stride) }
        });
    }

    /// Prompt-sized batches: dequantize the rows once into f32 (exactly, as the tile kernels do in
    /// registers) and hand them to a blocked f32 gemm, which reuses each loaded weight across many
    /// inputs. Same values as the tile kernels up to f32 summation order (≈1e-6 relative).
    fn matmul_rows_gemm(
        &self,
        xf: &[f32],
        n_inputs: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
        out_stride: usize,
    ) {
        thread_local! {
            static DEQUANTIZED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let cols = self.cols;
        let n_rows = rows.len();
        DEQUANTIZED.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let weights: &[f32] = match &self.weights {
                Weights::F32(w) => &w[rows.start * cols..rows.end * cols],
                _ => {
                    scratch.resize(n_rows * cols, 0.0);
                    let dst = SendPtr(scratch.as_mut_ptr());
                    let first = rows.start;
                    candle_core::utils::barrier_pool().execute_chunked(n_rows, |chunk| {
                        let dst = &dst;
                        for r in chunk {
                            // SAFETY: each row writes its own `cols` values of the scratch.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(dst.0.add(r * cols), cols)
                            };
                            self.dequantize_row_fast(first + r, row);
                        }
                    });
                    &scratch[..n_rows * cols]
                }
            };
            let threads = candle_core::utils::get_num_threads();
            let parallelism = if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: dst is n_inputs × n_rows with row stride out_stride (checked by the caller's
            // assert); lhs is n_inputs × cols row-major; rhs is the transpose of the row-major
            // n_rows × cols weights.
            unsafe {
                gemm::gemm(
                    n_inputs,
                    n_rows,
                    cols,
                    out.as_mut_ptr(),
                    1,
                    out_stride as isize,
                    false,
                    xf.as_ptr(),
                    1,
                    cols as isize,
                    weights.as_ptr(),
                    cols as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        });
    }

    /// [`Self::dequantize_row`] with the SIMD decoder when the CPU has it (same values).
    fn dequantize_row_fast(&self, r: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if Kernel::detect() != Kernel::Scalar {
            let kb = self.cols / BLOCK;
            match &self.weights {
                Weights::Q4_1 { scales, qs } => {
                    return x86::dequantize_row(&x86::Q41 { scales, qs, kb }, r, out)
                }
                Weights::Q8_0 { d, qs } => {
                    return x86::dequantize_row(&x86::Q80 { d, qs, kb }, r, out)
                }
                Weights::F32(_) => {}
            }
        }
        self.dequantize_row(r, out)
    }

    /// Products for an explicit list of weight rows: `out[i * ids.len() + j] = row ids[j] · input i`.
    /// Same arithmetic as [`Self::matmul_rows`], single-threaded (meant for small lists).
    pub fn matmul_ids(
        &self,
        xq: &[ActBlock],
        xf: &[f32],
        input: usize,
        ids: &[u32],
        out: &mut [f32],
    ) {
        let kernel = Kernel::detect();
        let kb = self.cols / BLOCK;
        let xf_row =
            if xf.is_empty() { xf } else { &xf[input * self.cols..(input + 1) * self.cols] };
        let xq_row = if xq.is_empty() { xq } else { &xq[input * kb..(input + 1) * kb] };
        let one = Input { xq: xq_row, xf: xf_row, n: 1 };
        for (o, &id) in out.iter_mut().zip(ids) {
            // SAFETY: writes the one output `o`.
            unsafe {
                self.matmul_range(kernel, &one, id as usize..id as usize + 1, id as usize, o, 0)
            };
        }
    }

    /// Products of weight rows `rows` with every input, written to
    /// `out[i * out_stride + (r - first)]`.
    unsafe fn matmul_range(
        &self,
        kernel: Kernel,
        input: &Input<'_>,
        rows: std::ops::Range<usize>,
        first: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        let kb = self.cols / BLOCK;
        let cols = self.cols;
        let n_inputs = input.n;
        let (xq, xf) = (input.xq, input.xf);
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Avx512 && !self.int8 {
            let mut write = |r: usize, i: usize, v: f32| *out.add(i * out_stride + (r - first)) = v;
            match &self.weights {
                Weights::Q4_1 { scales, qs } => {
                    return x86::exact_range_512(
                        &x86::Q41 { scales, qs, kb },
                        xf,
                        n_inputs,
                        rows,
                        &mut write,
                    )
                }
                Weights::Q8_0 { d, qs } => {
                    return x86::exact_range_512(
                        &x86::Q80 { d, qs, kb },
                        xf,
                        n_inputs,
                        rows,
                        &mut write,
                    )
                }
                Weights::F32(_) => {}
            }
        }
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Avx2 && !self.int8 {
            let mut write = |r: usize, i: usize, v: f32| *out.add(i * out_stride + (r - first)) = v;
            match &self.weights {
                Weights::Q4_1 { scales, qs } => {
                    return x86::exact_range(
                        &x86::Q41 { scales, qs, kb },
                        xf,
                        n_inputs,
                        rows,
                        &mut write,
                    )
                }
                Weights::Q8_0 { d, qs } => {
                    return x86::exact_range(
                        &x86::Q80 { d, qs, kb },
                        xf,
                        n_inputs,
                        rows,
                        &mut write,
                    )
                }
                Weights::F32(_) => {}
            }
        }
        for r in rows {
            let write = |i: usize, v: f32| *out.add(i * out_stride + (r - first)) = v;
            match (&self.weights, self.int8) {
                (Weights::F32(w), _) => {
                    for i in 0..n_inputs {
                        write(
                            i,
                            dot_f32(&w[r * cols..(r + 1) * cols], &xf[i * cols..(i + 1) * cols]),
                        );
                    }
                }
                (Weights::Q4_1 { scales, qs }, false) => {
                    let (s, q) = (&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                    exact_rows(
                        n_inputs,
                        |i, n| {
                            let x = &xf[i * cols..(i + n) * cols];
                            std::array::from_fn(|j| {
                                if j < n {
                                    exact_q4_1_scalar(s, q, &x[j * cols..(j + 1) * cols])
                                } else {
                                    0.0
                                }
                            })
                        },
                        write,
                    );
                }
                (Weights::Q8_0 { d, qs }, false) => {
                    let (s, q) = (&d[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                    exact_rows(
                        n_inputs,
                        |i, n| {
                            let x = &xf[i * cols..(i + n) * cols];
                            std::array::from_fn(|j| {
                                if j < n {
                                    exact_q8_0_scalar(s, q, &x[j * cols..(j + 1) * cols])
                                } else {
                                    0.0
                                }
                            })
                        },
                        write,
                    );
                }
                (_, true) => {
                    let mut i = 0;
                    // Four inputs at a time share each unpacked weight block (same sums as one at a time).
                    #[cfg(target_arch = "x86_64")]
                    if kernel != Kernel::Scalar {
                        if let Weights::Q4_1 { scales, qs } = &self.weights {
                            let (s, q) = (&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                            while i + 4 <= n_inputs {
                                let v = x86::dot4_q4_1_avx2(s, q, &xq[i * kb..(i + 4) * kb], kb);
                                for (j, v) in v.into_iter().enumerate() {
                                    write(i + j, v);
                                }
                                i += 4;
                            }
                        }
                    }
                    for i in i..n_inputs {
                        write(i, self.dot_quant(kernel, r, &xq[i * kb..(i + 1) * kb]));
                    }
                }
            }
        }
    }

    #[inline]
    fn dot_quant(&self, kernel: Kernel, r: usize, x: &[ActBlock]) -> f32 {
        let kb = x.len();
        match &self.weights {
            Weights::Q4_1 { scales, qs } => {
                let (s, q) = (&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 | Kernel::Avx512 => unsafe { x86::dot_q4_1_avx2(s, q, x) },

                    _ => dot_q4_1_scalar(s, q, x),
                }
            }
            Weights::Q8_0 { d, qs } => {
                let (s, q) = (&d[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 | Kernel::Avx512 => unsafe { x86::dot_q8_0_avx2(s, q, x) },

                    _ => dot_q8_0_scalar(s, q, x),
                }
            }
            Weights::F32(_) => unreachable!("f32 weights take the f32 path"),
        }
    }
}

/// From this many input rows on (prompts, teacher forcing), exact products go through a blocked
/// f32 gemm on rows dequantized per call; below it (decoding steps), through the tile kernels,
/// whose per-row results do not depend on the batch. Not with the AVX-512 kernels: they are as
/// fast as the gemm on prompts, so every batch size takes them and a row's numbers never depend
/// on its batch (a prompt prefilled in parts equals the prompt prefilled at once, bit for bit).
pub const GEMM_MIN_INPUTS: usize = 32;

/// The inputs of a product: quantized rows (`xq`, int8 mode) or f32 rows (`xf`).
struct Input<'a> {
    xq: &'a [ActBlock],
    xf: &'a [f32],
    n: usize,
}

/// Runs `kernel(first_input, count)` over the inputs in tiles of up to 4 (a tile shares each
/// decoded weight block; every input's arithmetic is the same whatever its tile) and writes the
/// results.
#[inline(always)]
fn exact_rows(n: usize, kernel: impl Fn(usize, usize) -> Vec4, mut write: impl FnMut(usize, f32)) {
    let mut i = 0;
    while i < n {
        let count = (n - i).min(4);
        let v = kernel(i, count);
        for (j, &v) in v[..count].iter().enumerate() {
            write(i + j, v);
        }
        i += count;
    }
}

/// Up to four results (a fixed array, so the hot loop does not allocate).
pub type Vec4 = [f32; 4];

/// Portable exact `Q4_1` product: each weight dequantized as ggml does (`d·q + m` in f32).
pub fn exact_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[f32]) -> f32 {
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

/// Portable exact `Q8_0` product.
pub fn exact_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, (&d, q)) in d.iter().zip(qs).enumerate() {
        let dot: f32 =
            q.iter().zip(&x[b * BLOCK..(b + 1) * BLOCK]).map(|(&q, &v)| q as f32 * v).sum();
        acc += d * dot;
    }
    acc
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint output ranges to the pool's workers.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Which instruction set the quantized dot products use (decided once per call).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kernel {
    Scalar,
    /// AVX2 + FMA: `maddubs`/`madd` integer products (ggml's x86 path).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (implies AVX2 + FMA): the exact products run 16 lanes wide; the int8 products
    /// stay on the AVX2 code.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// Whether the exact products of `weights` give every input row the same numbers whatever
    /// the batch size (no gemm for large batches).
    pub fn batch_invariant(self, weights: &Weights) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512 {
            return !matches!(weights, Weights::F32(_));
        }
        let _ = weights;
        false
    }

    /// The best kernel this CPU runs, once per process. `SEAL_KERNELS=avx2` or `=scalar` caps it
    /// (for comparisons and tests of the fallbacks).
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            static DETECTED: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
            *DETECTED.get_or_init(|| {
                let wanted = std::env::var("SEAL_KERNELS").unwrap_or_default();
                let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                match wanted.as_str() {
                    "scalar" => Kernel::Scalar,
                    _ if !avx2 => Kernel::Scalar,
                    "avx2" => Kernel::Avx2,
                    _ if is_x86_feature_detected!("avx512f") => Kernel::Avx512,
                    _ => Kernel::Avx2,
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Scalar
    }
}

/// Portable reference for the `Q4_1` × 8-bit dot product (same integer sums as the SIMD paths).
#[allow(clippy::needless_range_loop)]
pub fn dot_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[ActBlock]) -> f32 {
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

/// Portable reference for the `Q8_0` × 8-bit dot product.
pub fn dot_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for ((&dw, q), a) in d.iter().zip(qs).zip(x) {
        let sum: i32 = q.iter().zip(&a.qs).map(|(&w, &v)| w as i32 * v as i32).sum();
        acc += dw * a.d * sum as f32;
    }
    acc
}

/// f32 dot product with 8 independent accumulators (vectorizes).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// log Σ exp(x), stable (max first), for the log-softmax over a vocabulary. With AVX-512 the
/// exponentials are a 16-lane Cephes-style polynomial (within 2 ulp of libm's `expf`) summed in
/// 16 lanes; otherwise libm's `exp` summed in order. Either way every caller gets the same
/// arithmetic for the same row on a given machine (the full and subset heads agree).
pub fn logsumexp_row(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect() == Kernel::Avx512 {
        // SAFETY: AVX-512F was detected.
        return unsafe { x86::logsumexp_512(x) };
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f32 = x.iter().map(|&v| (v - max).exp()).sum();
    max + sum.ln()
}

/// Attention of one query head `qh` over cache entries `0..contiguous` then `extra`, whose keys
/// and values are `keys[e * kv_dim + offset..][..qh.len()]` (same for `values`): softmax of the
/// scaled dot products, then the weighted sum of the values, written to `out`. `scores` is
/// scratch. With AVX-512 (head sizes that are multiples of 16, up to 256) in 16 lanes; the
/// numbers of a row never depend on other rows.
#[allow(clippy::too_many_arguments)]
pub fn attend_head(
    qh: &[f32],
    keys: &[f32],
    values: &[f32],
    kv_dim: usize,
    offset: usize,
    contiguous: usize,
    extra: &[u32],
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = qh.len();
    let entry = |i: usize| -> usize {
        if i < contiguous {
            i
        } else {
            extra[i - contiguous] as usize
        }
    };
    let len = contiguous + extra.len();
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect() == Kernel::Avx512 && hd.is_multiple_of(16) && hd <= 256 {
        // SAFETY: AVX-512F detected; every entry index is a row of the pools (the caller's
        // invariant, checked by the slice indexing below in debug builds).
        unsafe {
            return x86::attend_head_512(
                qh, keys, values, kv_dim, offset, &entry, len, scale, scores, out,
            );
        }
    }
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for i in 0..len {
        let e = entry(i);
        let s = dot_f32(qh, &keys[e * kv_dim + offset..e * kv_dim + offset + hd]) * scale;
        max = max.max(s);
        scores.push(s);
    }
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.iter_mut().for_each(|a| *a = 0.0);
    for (i, &w) in scores.iter().enumerate() {
        let e = entry(i);
        for (a, &x) in out.iter_mut().zip(&values[e * kv_dim + offset..e * kv_dim + offset + hd]) {
            *a += w * x;
        }
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|a| *a *= inv);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{ActBlock, BLOCK};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    // The integer dot product of 32 u8 × 32 i8 into 8 i32 lanes, per instruction set.
    #[inline(always)]
    unsafe fn dot_u8i8_avx2(w: __m256i, a: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
    }

    #[inline(always)]
    unsafe fn unpack_q4(q: &[u8; 16]) -> __m256i {
        let q = _mm_loadu_si128(q.as_ptr() as *const __m128i);
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f))
    }

    macro_rules! kernels {
        ($features:literal, $dot:ident, $q4_1:ident, $q4_1x4:ident, $q8_0:ident) => {
            #[target_feature(enable = $features)]
            pub unsafe fn $q4_1(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[ActBlock]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let mut offset = 0f32;
                for i in 0..x.len() {
                    let [d, m] = *scales.get_unchecked(i);
                    let a = x.get_unchecked(i);
                    let w = unpack_q4(qs.get_unchecked(i));
                    let av = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
                    acc = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps($dot(w, av)),
                        _mm256_set1_ps(d * a.d),
                        acc,
                    );
                    offset += m * a.s;
                }
                hsum(acc) + offset
            }

            /// One weight row against four consecutive input rows (`kb` blocks each).
            #[target_feature(enable = $features)]
            pub unsafe fn $q4_1x4(
                scales: &[[f32; 2]],
                qs: &[[u8; 16]],
                x: &[ActBlock],
                kb: usize,
            ) -> [f32; 4] {
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut offset = [0f32; 4];
                for i in 0..kb {
                    let [d, m] = *scales.get_unchecked(i);
                    let w = unpack_q4(qs.get_unchecked(i));
                    for j in 0..4 {
                        let a = x.get_unchecked(j * kb + i);
                        let av = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
                        acc[j] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps($dot(w, av)),
                            _mm256_set1_ps(d * a.d),
                            acc[j],
                        );
                        offset[j] += m * a.s;
                    }
                }
                [
                    hsum(acc[0]) + offset[0],
                    hsum(acc[1]) + offset[1],
                    hsum(acc[2]) + offset[2],
                    hsum(acc[3]) + offset[3],
                ]
            }

            #[target_feature(enable = $features)]
            pub unsafe fn $q8_0(d: &[f32], qs: &[[i8; BLOCK]], x: &[ActBlock]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                for i in 0..x.len() {
                    let a = x.get_unchecked(i);
                    let w = _mm256_loadu_si256(qs.get_unchecked(i).as_ptr() as *const __m256i);
                    let av = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
                    // i8 × i8 through u8 × i8: move the weight's sign onto the activation.
                    let p = $dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(av, w));
                    acc = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(p),
                        _mm256_set1_ps(*d.get_unchecked(i) * a.d),
                        acc,
                    );
                }
                hsum(acc)
            }
        };
    }

    kernels!("avx2,fma", dot_u8i8_avx2, dot_q4_1_avx2, dot4_q4_1_avx2, dot_q8_0_avx2);

    /// A quantized weight format whose 32-weight blocks decode exactly to f32 registers.
    pub trait Decode {
        /// Blocks per row.
        fn blocks(&self) -> usize;
        /// Block `b` of row `r` as four vectors of 8 f32 weights (elements 0..8, 8..16, 16..24,
        /// 24..32), exactly as ggml dequantizes them.
        unsafe fn decode(&self, r: usize, b: usize) -> [__m256; 4];
    }

    pub struct Q41<'a> {
        pub scales: &'a [[f32; 2]],
        pub qs: &'a [[u8; 16]],
        pub kb: usize,
    }

    pub struct Q80<'a> {
        pub d: &'a [f32],
        pub qs: &'a [[i8; BLOCK]],
        pub kb: usize,
    }

    impl Decode for Q41<'_> {
        fn blocks(&self) -> usize {
            self.kb
        }
        #[inline(always)]
        unsafe fn decode(&self, r: usize, b: usize) -> [__m256; 4] {
            let i = r * self.kb + b;
            let [d, m] = *self.scales.get_unchecked(i);
            let mask = _mm_set1_epi8(0x0f);
            let q = _mm_loadu_si128(self.qs.get_unchecked(i).as_ptr() as *const __m128i);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let (dv, mv) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
            // q·d + m in one FMA: what ggml's dequantization computes.
            let f =
                |v: __m128i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), dv, mv);
            [f(lo), f(_mm_srli_si128(lo, 8)), f(hi), f(_mm_srli_si128(hi, 8))]
        }
    }

    impl Decode for Q80<'_> {
        fn blocks(&self) -> usize {
            self.kb
        }
        #[inline(always)]
        unsafe fn decode(&self, r: usize, b: usize) -> [__m256; 4] {
            let i = r * self.kb + b;
            let q = _mm256_loadu_si256(self.qs.get_unchecked(i).as_ptr() as *const __m256i);
            let (lo, hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            let dv = _mm256_set1_ps(*self.d.get_unchecked(i));
            let f = |v: __m128i| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), dv);
            [f(lo), f(_mm_srli_si128(lo, 8)), f(hi), f(_mm_srli_si128(hi, 8))]
        }
    }

    /// Row `r` dequantized into `out` (`blocks × 32` values).
    pub fn dequantize_row<W: Decode>(w: &W, r: usize, out: &mut [f32]) {
        assert!(out.len() >= w.blocks() * BLOCK);
        // SAFETY: Kernel::Avx2 was detected by the caller; `out` holds the row (asserted).
        unsafe { dequantize_row_avx2(w, r, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dequantize_row_avx2<W: Decode>(w: &W, r: usize, out: &mut [f32]) {
        let p = out.as_mut_ptr();
        for b in 0..w.blocks() {
            let v = w.decode(r, b);
            for (k, v) in v.into_iter().enumerate() {
                _mm256_storeu_ps(p.add(b * BLOCK + k * 8), v);
            }
        }
    }

    /// `R` weight rows from `r0` against `N` consecutive input rows of `x`. Every (row, input)
    /// pair has one accumulator fed by the same four FMAs per block in the same order, whatever
    /// `R` and `N` are, so a beam's numbers do not depend on the batch it is computed in. The tile
    /// shapes only decide how many independent FMA chains are in flight and how often a weight
    /// block is decoded (once per tile).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<W: Decode, const R: usize, const N: usize>(
        w: &W,
        r0: usize,
        x: &[f32],
    ) -> [[f32; N]; R] {
        let kb = w.blocks();
        let cols = kb * BLOCK;
        assert!(x.len() >= N * cols);
        let xp = x.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); N]; R];
        for b in 0..kb {
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = w.decode(r0 + r, b);
                for (j, acc) in acc.iter_mut().enumerate() {
                    let p = xp.add(j * cols + b * BLOCK);
                    let mut a = *acc;
                    a = _mm256_fmadd_ps(wv[0], _mm256_loadu_ps(p), a);
                    a = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(p.add(8)), a);
                    a = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(p.add(16)), a);
                    a = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(p.add(24)), a);
                    *acc = a;
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|j| hsum(acc[r][j])))
    }

    /// Exact products of weight rows `rows` with the `n` input rows of `x`, reported through
    /// `write(row, input, value)`. Tile shapes: one input → 4 rows at a time (4 chains); 2–3
    /// inputs → 2 rows × all inputs; more → 1 row × 8 inputs per decoded block.
    pub fn exact_range<W: Decode>(
        w: &W,
        x: &[f32],
        n: usize,
        rows: std::ops::Range<usize>,
        write: &mut impl FnMut(usize, usize, f32),
    ) {
        let cols = w.blocks() * BLOCK;
        macro_rules! run {
            ($r0:expr, $i:expr, $R:literal, $N:literal) => {{
                // SAFETY: Kernel::Avx2 was detected by the caller.
                let v = unsafe { tile::<W, $R, $N>(w, $r0, &x[$i * cols..($i + $N) * cols]) };
                for (r, v) in v.iter().enumerate() {
                    for (j, &v) in v.iter().enumerate() {
                        write($r0 + r, $i + j, v);
                    }
                }
            }};
        }
        let mut r = rows.start;
        while r < rows.end {
            let left = rows.end - r;
            match n {
                0 => return,
                1 => {
                    match left {
                        1 => run!(r, 0, 1, 1),
                        2 => run!(r, 0, 2, 1),
                        3 => run!(r, 0, 3, 1),
                        _ => run!(r, 0, 4, 1),
                    }
                    r += left.min(4);
                }
                2 | 3 => {
                    match (left.min(2), n) {
                        (1, 2) => run!(r, 0, 1, 2),
                        (1, _) => run!(r, 0, 1, 3),
                        (_, 2) => run!(r, 0, 2, 2),
                        _ => run!(r, 0, 2, 3),
                    }
                    r += left.min(2);
                }
                _ => {
                    let mut i = 0;
                    while i < n {
                        match (n - i).min(8) {
                            1 => run!(r, i, 1, 1),
                            2 => run!(r, i, 1, 2),
                            3 => run!(r, i, 1, 3),
                            4 => run!(r, i, 1, 4),
                            5 => run!(r, i, 1, 5),
                            6 => run!(r, i, 1, 6),
                            7 => run!(r, i, 1, 7),
                            _ => run!(r, i, 1, 8),
                        }
                        i += 8;
                    }
                    r += 1;
                }
            }
        }
    }
    /// e^x for x ≤ 0 in 16 lanes (Cephes `expf`: x = n·ln2 + r, degree-6 polynomial of r,
    /// scaled by 2^n). Inputs below −103 count as e^−103 ≈ 1e−45: nothing next to the sum's
    /// largest term, which is 1.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn exp_512(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-103.0));
        let n = _mm512_roundscale_ps(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let r2 = _mm512_mul_ps(r, r);
        let e = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(e, n)
    }

    /// [`super::logsumexp_row`] in 16 lanes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn logsumexp_512(x: &[f32]) -> f32 {
        let chunks = x.len() / 16;
        let p = x.as_ptr();
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in 0..chunks {
            m = _mm512_max_ps(m, _mm512_loadu_ps(p.add(i * 16)));
        }
        let mut max = _mm512_reduce_max_ps(m);
        for &v in &x[chunks * 16..] {
            max = max.max(v);
        }
        if !max.is_finite() {
            // Empty, all −∞, or a NaN/∞ logit: the plain formula gives the IEEE answer.
            let sum: f32 = x.iter().map(|&v| (v - max).exp()).sum();
            return max + sum.ln();
        }
        let mv = _mm512_set1_ps(max);
        let mut acc = _mm512_setzero_ps();
        for i in 0..chunks {
            acc = _mm512_add_ps(acc, exp_512(_mm512_sub_ps(_mm512_loadu_ps(p.add(i * 16)), mv)));
        }
        let mut sum = _mm512_reduce_add_ps(acc);
        for &v in &x[chunks * 16..] {
            sum += (v - max).exp();
        }
        max + sum.ln()
    }

    /// [`super::attend_head`] in 16 lanes (`qh.len()` a multiple of 16, at most 256).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    pub unsafe fn attend_head_512(
        qh: &[f32],
        keys: &[f32],
        values: &[f32],
        kv_dim: usize,
        offset: usize,
        entry: &dyn Fn(usize) -> usize,
        len: usize,
        scale: f32,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let chunks = qh.len() / 16;
        let mut q = [_mm512_setzero_ps(); 16];
        for c in 0..chunks {
            q[c] = _mm512_loadu_ps(qh.as_ptr().add(c * 16));
        }
        scores.clear();
        scores.resize(len.next_multiple_of(16), f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        for i in 0..len {
            let k = &keys[entry(i) * kv_dim + offset..][..chunks * 16];
            let mut acc = _mm512_mul_ps(q[0], _mm512_loadu_ps(k.as_ptr()));
            for c in 1..chunks {
                acc = _mm512_fmadd_ps(q[c], _mm512_loadu_ps(k.as_ptr().add(c * 16)), acc);
            }
            let s = _mm512_reduce_add_ps(acc) * scale;
            max = max.max(s);
            *scores.get_unchecked_mut(i) = s;
        }
        let mv = _mm512_set1_ps(max);
        let mut sum = _mm512_setzero_ps();
        for c in 0..scores.len() / 16 {
            let p = scores.as_mut_ptr().add(c * 16);
            // Padding lanes (past `len`) must add nothing.
            let valid = len - c * 16;
            let mask: __mmask16 = if valid >= 16 { 0xffff } else { (1u16 << valid) - 1 };
            let e = _mm512_maskz_mov_ps(mask, exp_512(_mm512_sub_ps(_mm512_loadu_ps(p), mv)));
            _mm512_storeu_ps(p, e);
            sum = _mm512_add_ps(sum, e);
        }
        let inv = 1.0 / _mm512_reduce_add_ps(sum);
        let mut acc = [_mm512_setzero_ps(); 16];
        for i in 0..len {
            let w = _mm512_set1_ps(*scores.get_unchecked(i));
            let v = &values[entry(i) * kv_dim + offset..][..chunks * 16];
            for c in 0..chunks {
                acc[c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(v.as_ptr().add(c * 16)), acc[c]);
            }
        }
        let iv = _mm512_set1_ps(inv);
        for c in 0..chunks {
            _mm512_storeu_ps(out.as_mut_ptr().add(c * 16), _mm512_mul_ps(acc[c], iv));
        }
    }

    /// A quantized weight format whose 32-weight blocks decode exactly to two 16-lane registers
    /// (the AVX-512 counterpart of [`Decode`], same values).
    pub trait Decode512: Decode {
        /// Block `b` of row `r` as elements 0..16 and 16..32, exactly as ggml dequantizes them.
        unsafe fn decode16(&self, r: usize, b: usize) -> [__m512; 2];
    }

    impl Decode512 for Q41<'_> {
        #[inline(always)]
        unsafe fn decode16(&self, r: usize, b: usize) -> [__m512; 2] {
            let i = r * self.kb + b;
            let [d, m] = *self.scales.get_unchecked(i);
            let mask = _mm_set1_epi8(0x0f);
            let q = _mm_loadu_si128(self.qs.get_unchecked(i).as_ptr() as *const __m128i);
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let (dv, mv) = (_mm512_set1_ps(d), _mm512_set1_ps(m));
            // q·d + m in one FMA, as the AVX2 decoder computes it.
            let f =
                |v: __m128i| _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)), dv, mv);
            [f(lo), f(hi)]
        }
    }

    impl Decode512 for Q80<'_> {
        #[inline(always)]
        unsafe fn decode16(&self, r: usize, b: usize) -> [__m512; 2] {
            let i = r * self.kb + b;
            let p = self.qs.get_unchecked(i).as_ptr() as *const __m128i;
            let dv = _mm512_set1_ps(*self.d.get_unchecked(i));
            let f = |v: __m128i| _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), dv);
            [f(_mm_loadu_si128(p)), f(_mm_loadu_si128(p.add(1)))]
        }
    }

    /// The AVX-512 tile: `R` weight rows from `r0` against `N` consecutive input rows of `x`.
    /// Every (row, input) pair has one 16-lane accumulator fed by the same two FMAs per block in
    /// the same order, then the same horizontal sum, whatever `R` and `N` are: a row's numbers do
    /// not depend on the batch (nor on the tile shapes chosen for it).
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile512<W: Decode512, const R: usize, const N: usize>(
        w: &W,
        r0: usize,
        x: &[f32],
    ) -> [[f32; N]; R] {
        let kb = w.blocks();
        let cols = kb * BLOCK;
        assert!(x.len() >= N * cols);
        let xp = x.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        for b in 0..kb {
            let wv: [[__m512; 2]; R] = std::array::from_fn(|r| w.decode16(r0 + r, b));
            for j in 0..N {
                let p = xp.add(j * cols + b * BLOCK);
                let (x0, x1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                for r in 0..R {
                    let a = _mm512_fmadd_ps(wv[r][0], x0, acc[r][j]);
                    acc[r][j] = _mm512_fmadd_ps(wv[r][1], x1, a);
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|j| _mm512_reduce_add_ps(acc[r][j])))
    }

    /// Widest input chunk of an AVX-512 tile (`2 × MAX_TILE_INPUTS` accumulators + 4 decoded
    /// weight registers + 2 input registers fit the 32 vector registers).
    pub const MAX_TILE_INPUTS: usize = 12;

    /// [`exact_range`] on the AVX-512 tiles. Shapes: one input → 4 rows at a time; more → 2 rows
    /// × chunks of up to [`MAX_TILE_INPUTS`] inputs (equal chunks), so each loaded input vector
    /// feeds two FMAs and a decoded weight block up to 12 inputs.
    pub fn exact_range_512<W: Decode512>(
        w: &W,
        x: &[f32],
        n: usize,
        rows: std::ops::Range<usize>,
        write: &mut impl FnMut(usize, usize, f32),
    ) {
        let cols = w.blocks() * BLOCK;
        macro_rules! run {
            ($r0:expr, $i:expr, $R:literal, $N:literal) => {{
                // SAFETY: Kernel::Avx512 was detected by the caller.
                let v = unsafe { tile512::<W, $R, $N>(w, $r0, &x[$i * cols..($i + $N) * cols]) };
                for (r, v) in v.iter().enumerate() {
                    for (j, &v) in v.iter().enumerate() {
                        write($r0 + r, $i + j, v);
                    }
                }
            }};
        }
        macro_rules! chunk {
            ($r0:expr, $i:expr, $len:expr, $R:literal) => {
                match $len {
                    1 => run!($r0, $i, $R, 1),
                    2 => run!($r0, $i, $R, 2),
                    3 => run!($r0, $i, $R, 3),
                    4 => run!($r0, $i, $R, 4),
                    5 => run!($r0, $i, $R, 5),
                    6 => run!($r0, $i, $R, 6),
                    7 => run!($r0, $i, $R, 7),
                    8 => run!($r0, $i, $R, 8),
                    9 => run!($r0, $i, $R, 9),
                    10 => run!($r0, $i, $R, 10),
                    11 => run!($r0, $i, $R, 11),
                    _ => run!($r0, $i, $R, 12),
                }
            };
        }
        if n == 0 {
            return;
        }
        let chunks = n.div_ceil(MAX_TILE_INPUTS);
        let mut r = rows.start;
        while r < rows.end {
            let left = rows.end - r;
            if n == 1 {
                match left {
                    1 => run!(r, 0, 1, 1),
                    2 => run!(r, 0, 2, 1),
                    3 => run!(r, 0, 3, 1),
                    _ => run!(r, 0, 4, 1),
                }
                r += left.min(4);
                continue;
            }
            let mut i = 0;
            for c in 0..chunks {
                let len = (n - i) / (chunks - c);
                if left >= 2 {
                    chunk!(r, i, len, 2);
                } else {
                    chunk!(r, i, len, 1);
                }
                i += len;
            }
            r += left.min(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }

    #[test]
    fn exact_kernels_equal_the_dequantized_f32_product() {
        let (rows, cols) = (6, 3 * 2 * BLOCK);
        let w =
            candle_core::Tensor::randn(0f32, 0.1, (rows, cols), &candle_core::Device::Cpu).unwrap();
        let x: Vec<f32> = (0..5 * cols).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let m = Matrix::from_qtensor(&q, false).unwrap();
            let dense = q.dequantize(&candle_core::Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            // Batched products (tiles of 4 + a remainder) must equal one-at-a-time products bit
            // for bit, and the dequantized f32 product up to rounding.
            let mut batched = vec![0f32; 5 * rows];
            m.matmul_rows(&[], &x, 5, 0..rows, &mut batched, rows);
            for i in 0..5 {
                let xi = &x[i * cols..(i + 1) * cols];
                let mut single = vec![0f32; rows];
                m.matmul_rows(&[], xi, 1, 0..rows, &mut single, rows);
                let mut by_id = vec![0f32; 2];
                m.matmul_ids(&[], &x, i, &[4, 1], &mut by_id);
                assert_eq!(by_id, [single[4], single[1]]);
                for r in 0..rows {
                    assert_eq!(batched[i * rows + r], single[r], "{dtype:?} input {i} row {r}");
                    let oracle: f64 =
                        dense[r].iter().zip(xi).map(|(&a, &b)| a as f64 * b as f64).sum();
                    assert!(
                        (single[r] as f64 - oracle).abs() < 1e-4,
                        "{dtype:?}: {} vs {oracle}",
                        single[r]
                    );
                }
            }
        }
    }

    #[test]
    fn every_batch_size_gives_each_input_the_numbers_it_gets_alone() {
        // Tile shapes change with the batch (1 input, 2-12, chunks of up to 12) and with the
        // rows left (odd counts); a row's products must not.
        let (rows, cols) = (7, 2 * BLOCK * 3);
        let w =
            candle_core::Tensor::randn(0f32, 0.1, (rows, cols), &candle_core::Device::Cpu).unwrap();
        let x: Vec<f32> = (0..48 * cols).map(|i| ((i * 53 % 211) as f32 / 100.0) - 1.0).collect();
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let m = Matrix::from_qtensor(&QTensor::quantize(&w, dtype).unwrap(), false).unwrap();
            let alone: Vec<Vec<f32>> = (0..48)
                .map(|i| {
                    let mut out = vec![0f32; rows];
                    m.matmul_rows(&[], &x[i * cols..(i + 1) * cols], 1, 0..rows, &mut out, rows);
                    out
                })
                .collect();
            for n in [2usize, 3, 7, 8, 12, 13, 15, 16, 25, 31, 48] {
                if n >= GEMM_MIN_INPUTS && !Kernel::detect().batch_invariant(&m.weights) {
                    continue;
                }
                let mut out = vec![0f32; n * rows];
                m.matmul_rows(&[], &x[..n * cols], n, 0..rows, &mut out, rows);
                for i in 0..n {
                    assert_eq!(
                        &out[i * rows..(i + 1) * rows],
                        &alone[i][..],
                        "{dtype:?} n={n} i={i}"
                    );
                }
            }
        }
    }

    #[test]
    fn logsumexp_matches_a_float64_reference() {
        let x: Vec<f32> = (0..49_155).map(|i| ((i * 7919 % 10007) as f32 / 400.0) - 20.0).collect();
        let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let exact = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        let ours = logsumexp_row(&x) as f64;
        // The in-order f32 sum of the portable path drifts by ~3e-5 over 49k terms; the 16-lane
        // sum stays within ~1e-6.
        assert!((ours - exact).abs() < 1e-4, "{ours} vs {exact}");
        let mut tiny = vec![f32::NEG_INFINITY; 40];
        tiny[33] = -3.0;
        assert_eq!(logsumexp_row(&tiny), -3.0);
        assert!(logsumexp_row(&[]).is_infinite());
        assert!(logsumexp_row(&[f32::NAN, 1.0]).is_nan());
    }

    #[test]
    fn simd_dots_equal_scalar_dots() {
        let kb = 18;
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let x: Vec<f32> = (0..kb * BLOCK).map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0).collect();
        let mut xq = vec![ActBlock::default(); kb];
        quantize_row(&x, &mut xq);
        let scales: Vec<[f32; 2]> = (0..kb)
            .map(|_| [(rnd() % 100) as f32 / 1000.0, -((rnd() % 100) as f32) / 100.0])
            .collect();
        let qs: Vec<[u8; 16]> = (0..kb).map(|_| std::array::from_fn(|_| rnd() as u8)).collect();
        let d8: Vec<f32> = (0..kb).map(|_| (rnd() % 100) as f32 / 1000.0).collect();
        let q8: Vec<[i8; BLOCK]> = (0..kb).map(|_| std::array::from_fn(|_| rnd() as i8)).collect();
        let s41 = dot_q4_1_scalar(&scales, &qs, &xq);
        let s80 = dot_q8_0_scalar(&d8, &q8, &xq);
        // The dequantized f32 dot product is the oracle for the scalar integer path.
        let w41 = Matrix {
            rows: 1,
            cols: kb * BLOCK,
            weights: Weights::Q4_1 { scales: scales.clone(), qs: qs.clone() },
            int8: true,
        };
        let mut row = vec![0f32; kb * BLOCK];
        w41.dequantize_row(0, &mut row);
        let xd: Vec<f32> =
            xq.iter().flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d)).collect();
        assert!((dot_f32(&row, &xd) - s41).abs() < 1e-3 * (1.0 + s41.abs()));
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            let v41 = unsafe { x86::dot_q4_1_avx2(&scales, &qs, &xq) };
            let v80 = unsafe { x86::dot_q8_0_avx2(&d8, &q8, &xq) };
            assert!((v41 - s41).abs() <= 1e-4 * (1.0 + s41.abs()), "{v41} vs {s41}");
            assert!((v80 - s80).abs() <= 1e-4 * (1.0 + s80.abs()), "{v80} vs {s80}");
            let x4: Vec<ActBlock> = (0..4).flat_map(|_| xq.iter().copied()).collect();
            assert_eq!(unsafe { x86::dot4_q4_1_avx2(&scales, &qs, &x4, kb) }, [v41; 4]);
        }
    }
}
