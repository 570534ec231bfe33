//! The products of a [`Matrix`] with a batch of input rows: the one place that picks, per weight
//! kind, arithmetic and [`Kernel`], which kernel runs (the packed VNNI tiles, the AVX-512 or AVX2
//! exact tiles, the blocked f32 gemm for prompts, the int8 dot products, or portable code).

#[cfg(target_arch = "x86_64")]
use super::packed::LANES;
use super::q4_1::{dot_q4_1_scalar, exact_q4_1_scalar};
use super::q8_0::{dot_q8_0_scalar, exact_q8_0_scalar};
#[cfg(target_arch = "x86_64")]
use super::quantize::Act16Block;
use super::quantize::{quantize_row8, Act8Block, ActBlock};
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{dot_f32, Kernel, Matrix, Packed16, SendPtr, Weights, BLOCK};

impl Matrix {
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
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = self.packed_kernel() {
            if self.int8 {
                let mut xs = vec![Act8Block::default(); n_inputs * self.blocks_per_row()];
                quantize_row8(&xf[..n_inputs * self.cols], &mut xs);
                return self.matmul_rows_packed(packed, &xs, n_inputs, rows, out, out_stride);
            }
            let mut xs = vec![Act16Block::default(); n_inputs * self.blocks_per_row()];
            // SAFETY: Kernel::Avx512Int16 (AVX-512F) was detected; xs holds n_inputs rows.
            unsafe { x86::quantize_row16_512(&xf[..n_inputs * self.cols], &mut xs) };
            return self.matmul_rows_packed(packed, &xs, n_inputs, rows, out, out_stride);
        }
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

    /// [`Self::matmul_rows`] on the packed VNNI kernel (int16 or int8 activations, quantized
    /// once per call by the caller, each row on its own so that its blocks do not depend on the
    /// batch): the pool takes groups of 16 weight rows (one 16-lane register: one lane per row).
    #[cfg(target_arch = "x86_64")]
    fn matmul_rows_packed<A: x86::PackedActivation>(
        &self,
        packed: &Packed16,
        xs: &[A],
        n_inputs: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
        out_stride: usize,
    ) {
        let out_ptr = SendPtr(out.as_mut_ptr());
        let first = rows.start;
        let (g0, g1) = (rows.start / LANES, rows.end.div_ceil(LANES));
        candle_core::utils::barrier_pool().execute_chunked(g1 - g0, |items| {
            let out_ptr = &out_ptr;
            let lo = rows.start.max((g0 + items.start) * LANES);
            let hi = rows.end.min((g0 + items.end) * LANES);
            // SAFETY: the tile reports rows `r` in `lo..hi` ⊆ `rows` and inputs `i < n_inputs`,
            // whose places in `out` the caller's assert reserved (`v` holds one value per row
            // of the group from `r` on); the pool gives each worker its own groups of rows.
            let mut write = |r: usize, i: usize, v: &[f32]| unsafe {
                std::ptr::copy_nonoverlapping(
                    v.as_ptr(),
                    out_ptr.0.add(i * out_stride + (r - first)),
                    v.len(),
                )
            };
            // SAFETY: Kernel::Avx512Int16 was detected; each weight row r writes only column
            // r - first of each output row, and the pool hands out disjoint groups.
            unsafe { x86::packed_range_512(packed, xs, n_inputs, lo..hi, &mut write) }
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
    pub(super) fn dequantize_row_fast(&self, r: usize, out: &mut [f32]) {
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
                Weights::F32(_) | Weights::Packed(_) => {}
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
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = self.packed_kernel() {
            fn each<A: x86::PackedActivation>(
                packed: &Packed16,
                xs: &[A],
                ids: &[u32],
                out: &mut [f32],
            ) {
                for (o, &id) in out.iter_mut().zip(ids) {
                    let id = id as usize;
                    // SAFETY: Kernel::Avx512Int16 was detected. The row's lane of its group
                    // gets the arithmetic it gets in a full product.
                    unsafe {
                        x86::packed_range_512(packed, xs, 1, id..id + 1, &mut |_, _, v| *o = v[0])
                    };
                }
            }
            if self.int8 {
                let mut xs = vec![Act8Block::default(); kb];
                quantize_row8(&xf[input * self.cols..(input + 1) * self.cols], &mut xs);
                return each(packed, &xs, ids, out);
            }
            let mut xs = vec![Act16Block::default(); kb];
            // SAFETY: Kernel::Avx512Int16 (AVX-512F) was detected.
            unsafe {
                x86::quantize_row16_512(&xf[input * self.cols..(input + 1) * self.cols], &mut xs)
            };
            return each(packed, &xs, ids, out);
        }
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
    ///
    /// # Safety
    /// `out` is valid for writes at `i * out_stride + (r - first)` for every input `i` and row
    /// `r` in `rows`, and no other thread writes those places; `kernel` runs on this CPU (it came
    /// from [`Kernel::detect`]).
    unsafe fn matmul_range(
        &self,
        kernel: Kernel,
        input: &Input<'_>,
        rows: std::ops::Range<usize>,
        first: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        // SAFETY: this function's contract (`# Safety`): every write goes to a place of `out` that
        // the caller reserved for this row range, and the SIMD paths run only for a detected `kernel`.
        unsafe {
            let kb = self.cols / BLOCK;
            let cols = self.cols;
            let n_inputs = input.n;
            let (xq, xf) = (input.xq, input.xf);
            #[cfg(target_arch = "x86_64")]
            if kernel.avx512() && !self.int8 {
                let mut write =
                    |r: usize, i: usize, v: f32| *out.add(i * out_stride + (r - first)) = v;
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
                    Weights::F32(_) | Weights::Packed(_) => {}
                }
            }
            #[cfg(target_arch = "x86_64")]
            if kernel == Kernel::Avx2 && !self.int8 {
                let mut write =
                    |r: usize, i: usize, v: f32| *out.add(i * out_stride + (r - first)) = v;
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
                    Weights::F32(_) | Weights::Packed(_) => {}
                }
            }
            for r in rows {
                let write = |i: usize, v: f32| *out.add(i * out_stride + (r - first)) = v;
                match (&self.weights, self.int8) {
                    (Weights::Packed(_), _) => {
                        unreachable!("packed weights exist only where the packed tiles run")
                    }
                    (Weights::F32(w), _) => {
                        for i in 0..n_inputs {
                            write(
                                i,
                                dot_f32(
                                    &w[r * cols..(r + 1) * cols],
                                    &xf[i * cols..(i + 1) * cols],
                                ),
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
                                let (s, q) =
                                    (&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                                while i + 4 <= n_inputs {
                                    let v =
                                        x86::dot4_q4_1_avx2(s, q, &xq[i * kb..(i + 4) * kb], kb);
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
    }

    #[inline]
    fn dot_quant(&self, kernel: Kernel, r: usize, x: &[ActBlock]) -> f32 {
        let kb = x.len();
        match &self.weights {
            Weights::Q4_1 { scales, qs } => {
                let (s, q) = (&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: these kernels imply AVX2 + FMA (detected); `s`, `q` and `x` hold
                    // `kb` blocks each.
                    Kernel::Avx2 | Kernel::Avx512 | Kernel::Avx512Int16 => unsafe {
                        x86::dot_q4_1_avx2(s, q, x)
                    },

                    _ => dot_q4_1_scalar(s, q, x),
                }
            }
            Weights::Q8_0 { d, qs } => {
                let (s, q) = (&d[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: these kernels imply AVX2 + FMA (detected); `s`, `q` and `x` hold
                    // `kb` blocks each.
                    Kernel::Avx2 | Kernel::Avx512 | Kernel::Avx512Int16 => unsafe {
                        x86::dot_q8_0_avx2(s, q, x)
                    },

                    _ => dot_q8_0_scalar(s, q, x),
                }
            }
            Weights::F32(_) => unreachable!("f32 weights take the f32 path"),
            Weights::Packed(_) => unreachable!("packed weights take the packed tiles"),
        }
    }
}

/// From this many input rows on (prompts, teacher forcing), exact products go through a blocked
/// f32 gemm on rows dequantized per call; below it (decoding steps), through the tile kernels,
/// whose per-row results do not depend on the batch. Not with the AVX-512 kernels: they are as
/// fast as the gemm on prompts, so every batch size takes them and a row's numbers never depend
/// on its batch (a prompt prefilled in parts equals the prompt prefilled at once, bit for bit).
pub(crate) const GEMM_MIN_INPUTS: usize = 32;

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
pub(crate) type Vec4 = [f32; 4];
