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
//!   16 bits per 32-block ([`quantize_row16`]), split into two 8-bit planes and multiplied with
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
pub fn quantize_row_scalar(x: &[f32], out: &mut [ActBlock]) {
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
const INT16_MAX: f32 = 32767.0;

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
pub struct Act16Block {
    pub hi: [u8; BLOCK],
    pub lo: [u8; BLOCK],
    pub d: f32,
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
pub const fn group_start(g: usize) -> usize {
    (g / 2) * 4 + (g % 2) * 16
}

/// Where element `e` of a block sits in the group order of [`group_start`].
const fn group_position(e: usize) -> usize {
    let (half, within) = (e / 16, e % 16);
    (within / 4) * 8 + half * 4 + within % 4
}

impl Act16Block {
    /// The quantized value `x_int` of element `e` (0..32).
    pub fn value(&self, e: usize) -> i32 {
        let p = group_position(e);
        self.hi[p] as i32 * 256 + self.lo[p] as i32 - 32768
    }
}

/// Quantizes one row (length a multiple of [`BLOCK`]) to 16-bit blocks ([`Act16Block`]). A block
/// with a NaN or infinite value gets a NaN scale, so the products it enters are NaN, as in f32.
/// Portable reference; the int16 kernel uses its AVX-512 version (same bytes, tested).
pub fn quantize_row16(x: &[f32], out: &mut [Act16Block]) {
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

/// Portable reference of the int16 `Q4_1` product: per block the exact integer `S = Σ q·x_int`,
/// then `acc = S·(d_w·d_x) + acc` and `acc = m·sx + acc`, each one fused multiply-add. The SIMD
/// kernel computes the same operations in the same order, so it equals this bit for bit.
pub fn int16_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[Act16Block]) -> f32 {
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

/// Portable reference of the int16 `Q8_0` product (bit for bit the SIMD kernel's arithmetic).
pub fn int16_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[Act16Block]) -> f32 {
    let mut acc = 0f32;
    for ((&dw, q), a) in d.iter().zip(qs).zip(x) {
        let s: i32 = q.iter().enumerate().map(|(e, &w)| w as i32 * a.value(e)).sum();
        acc = (s as f32).mul_add(dw * a.d, acc);
    }
    acc
}

/// One block of 8-bit activations ([`ActBlock`], ggml's quantization) laid out for the packed
/// VNNI kernel: `u[p] = qs[e] + 128` at the group position `p` of element `e` ([`group_start`]),
/// so that the activations are `vpdpbusd`'s unsigned operand as in [`Act16Block`]'s high plane
/// (the weights' `−128 · Σ w` correction is shared). `d`, `s` as in [`ActBlock`].
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Act8Block {
    pub u: [u8; BLOCK],
    pub d: f32,
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
pub fn quantize_row8(x: &[f32], out: &mut [Act8Block]) {
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

/// Portable reference of the packed int8 `Q4_1` product: per block the integer `S = Σ q·x_q`
/// (ggml's), then `acc = S·(d_w·d_x) + acc` and `acc = m·s + acc`, each one fused multiply-add;
/// the VNNI kernel equals it bit for bit (ggml sums the same integers in another float order).
pub fn int8_q4_1_scalar(scales: &[[f32; 2]], qs: &[[u8; 16]], x: &[ActBlock]) -> f32 {
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

/// Portable reference of the packed int8 `Q8_0` product (bit for bit the VNNI kernel's).
pub fn int8_q8_0_scalar(d: &[f32], qs: &[[i8; BLOCK]], x: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for ((&dw, q), a) in d.iter().zip(qs).zip(x) {
        let sum: i32 = q.iter().zip(&a.qs).map(|(&w, &v)| w as i32 * v as i32).sum();
        acc = (sum as f32).mul_add(dw * a.d, acc);
    }
    acc
}

/// Weight rows per group of the int16 kernel: one 16-lane register holds one value per row.
pub const LANES: usize = 16;

/// 64 bytes, aligned: one AVX-512 register's worth of packed weights or scales.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// `Q4_1`/`Q8_0` weights regrouped for the int16 kernel. Rows go in groups of [`LANES`] (the last
/// one padded with zero rows); for each group and block, one record of 64-byte lines:
/// - the weights, lane `r` = row `r` of the group, 4 bytes per lane per line: `Q4_1` in 4 lines of
///   its own nibble bytes (line `k` holds bytes `4k..4k+4`: low nibbles are group `2k`, high
///   nibbles group `2k + 1` of [`group_start`]), `Q8_0` in 8 lines (line `g` = group `g`);
/// - the scales `d` (f32 per lane), `Q4_1`'s offsets `m`, and the correction `−128 · Σ q`
///   (i32 per lane) that starts each block's integer sum (see [`Act16Block`]).
///
/// With one row per lane, a block's integer sum stays in its lane for all 32 elements (8 groups ×
/// 2 planes of `vpdpbusd`), is converted and scaled once, and no horizontal sum is ever needed;
/// a row's arithmetic is the same whatever group, tile or batch it is computed in.
pub struct Packed16 {
    q4: bool,
    kb: usize,
    lines: Vec<Line>,
}

impl Packed16 {
    /// Lines per (group, block) record.
    fn record_lines(&self) -> usize {
        if self.q4 {
            7
        } else {
            10
        }
    }

    /// Row `r` of the weights in f32, read back from the packed records: the same values (and
    /// the same arithmetic) as [`Matrix::dequantize_row`] of the original blocks.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, l, per) = (r / LANES, r % LANES, self.record_lines());
        let lane = |line: &Line| -> [u8; 4] { std::array::from_fn(|t| line.0[l * 4 + t]) };
        for b in 0..self.kb {
            let rec = &self.lines[(g * self.kb + b) * per..(g * self.kb + b + 1) * per];
            let o = &mut out[b * BLOCK..(b + 1) * BLOCK];
            let tail = per - if self.q4 { 3 } else { 2 };
            let d = f32::from_le_bytes(lane(&rec[tail]));
            if self.q4 {
                let m = f32::from_le_bytes(lane(&rec[tail + 1]));
                for k in 0..4 {
                    for (t, byte) in lane(&rec[k]).into_iter().enumerate() {
                        o[4 * k + t] = d * (byte & 0x0f) as f32 + m;
                        o[4 * k + t + 16] = d * (byte >> 4) as f32 + m;
                    }
                }
            } else {
                for (gi, line) in rec[..8].iter().enumerate() {
                    for (t, byte) in lane(line).into_iter().enumerate() {
                        o[group_start(gi) + t] = d * (byte as i8) as f32;
                    }
                }
            }
        }
    }

    /// Bytes held by the packed records.
    pub fn bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<Line>()
    }

    /// The packed copy of `m`'s weights, or `None` for f32 weights.
    pub fn new(m: &Matrix) -> Option<Packed16> {
        let kb = m.cols / BLOCK;
        let groups = m.rows.div_ceil(LANES);
        let (q4, per) = match &m.weights {
            Weights::Q4_1 { .. } => (true, 7),
            Weights::Q8_0 { .. } => (false, 10),
            Weights::F32(_) | Weights::Packed(_) => return None,
        };
        let mut lines = vec![Line([0; 64]); groups * kb * per];
        for g in 0..groups {
            for b in 0..kb {
                let rec = &mut lines[(g * kb + b) * per..(g * kb + b + 1) * per];
                for r in 0..LANES.min(m.rows - g * LANES) {
                    let i = (g * LANES + r) * kb + b;
                    let lane = |line: &mut Line, bytes: [u8; 4]| {
                        line.0[r * 4..r * 4 + 4].copy_from_slice(&bytes);
                    };
                    let (d, off, qsum) = match &m.weights {
                        Weights::Q4_1 { scales, qs } => {
                            let q = &qs[i];
                            for k in 0..4 {
                                lane(
                                    &mut rec[k],
                                    [q[4 * k], q[4 * k + 1], q[4 * k + 2], q[4 * k + 3]],
                                );
                            }
                            let qsum: i32 =
                                q.iter().map(|&v| (v & 0x0f) as i32 + (v >> 4) as i32).sum();
                            (scales[i][0], scales[i][1], qsum)
                        }
                        Weights::Q8_0 { d, qs } => {
                            let q = &qs[i];
                            for (gi, line) in rec[..8].iter_mut().enumerate() {
                                let s = group_start(gi);
                                lane(line, std::array::from_fn(|t| q[s + t] as u8));
                            }
                            (d[i], 0.0, q.iter().map(|&v| v as i32).sum())
                        }
                        Weights::F32(_) | Weights::Packed(_) => unreachable!("returned above"),
                    };
                    let tail = per - if q4 { 3 } else { 2 };
                    lane(&mut rec[tail], d.to_le_bytes());
                    if q4 {
                        lane(&mut rec[tail + 1], off.to_le_bytes());
                    }
                    lane(&mut rec[per - 1], (-128 * qsum).to_le_bytes());
                }
            }
        }
        Some(Packed16 { q4, kb, lines })
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
    /// `Q4_1`/`Q8_0` weights kept only in the packed VNNI layout ([`Matrix::pack`]): the original
    /// blocks are dropped, so a model holds one copy of its weights.
    Packed(Packed16),
}

/// A weight matrix with its shape.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub weights: Weights,
    /// Products of the quantized kinds run on 8-bit activations (llama.cpp's arithmetic) instead
    /// of f32 activations against exactly dequantized weights.
    pub int8: bool,
    /// The weights regrouped for the int16 kernel, built on its first product (only when
    /// [`Kernel::Avx512Int16`] runs, so other kernels pay no memory for it).
    pub packed16: std::sync::OnceLock<Option<Packed16>>,
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
        Ok(Matrix::new(rows, cols, weights, int8_activations))
    }

    /// A matrix from its weights (`int8`: see the field).
    pub fn new(rows: usize, cols: usize, weights: Weights, int8: bool) -> Matrix {
        Matrix { rows, cols, weights, int8, packed16: std::sync::OnceLock::new() }
    }

    /// The int16 kernel's copy of the weights (`None` for f32 weights), packed on first use.
    pub fn packed16(&self) -> Option<&Packed16> {
        if let Weights::Packed(p) = &self.weights {
            return Some(p);
        }
        self.packed16.get_or_init(|| Packed16::new(self)).as_ref()
    }

    /// Where the packed VNNI kernel runs ([`Kernel::Avx512Int16`]), replaces quantized weights by
    /// their packed records and drops the original blocks (half the resident memory of packing
    /// on first use); elsewhere, or for f32 weights, leaves the matrix as it is. For matrices
    /// that are complete (after [`Self::stack`]).
    pub fn pack(&mut self) {
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
    pub fn stack(parts: Vec<Matrix>) -> std::result::Result<Matrix, Vec<Matrix>> {
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
    pub fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Whether the product needs the caller to quantize the activations ([`quantize_row`]). The
    /// packed VNNI kernel quantizes the f32 rows itself, into its own layout.
    pub fn wants_quantized_input(&self) -> bool {
        self.int8 && !matches!(self.weights, Weights::F32(_)) && self.packed_kernel().is_none()
    }

    /// The packed records when products run on the packed VNNI kernel ([`Kernel::Avx512Int16`]
    /// and quantized weights it packs): the one test of "runs packed" for every product path.
    fn packed_kernel(&self) -> Option<&Packed16> {
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
        if kernel.avx512() && !self.int8 {
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
                Weights::F32(_) | Weights::Packed(_) => {}
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
    /// AVX-512F/BW + VNNI: the `Q4_1`/`Q8_0` products on 16-bit activations (`vpdpbusd`, see
    /// [`Packed16`]); everything else as [`Kernel::Avx512`].
    #[cfg(target_arch = "x86_64")]
    Avx512Int16,
}

/// Whether [`Kernel::detect`] picks [`Kernel::Avx512Int16`] when the CPU has it and
/// `SEAL_KERNELS` does not say otherwise. Decided by measurement (BENCHMARKS.md): steps at 15
/// beams 1.4–1.5× faster, prompts 2×, and the golden tests pass (0.004 nats from float64,
/// tolerance 0.005).
pub const INT16_BY_DEFAULT: bool = true;

impl Kernel {
    /// Whether the exact products of `weights` give every input row the same numbers whatever
    /// the batch size (no gemm for large batches). With AVX-512 every kind does, f32 weights
    /// included (Gemma's `Q6_K` tensors): their prompts take the per-row dot product instead of
    /// the gemm, so that a continued prefill equals a whole one bit for bit.
    pub fn batch_invariant(self, weights: &Weights) -> bool {
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

/// The gating nonlinearity of a gated feed-forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `g · σ(g)` (SwiGLU: the llama family).
    Silu,
    /// GELU with the tanh approximation, `g · σ(2·√(2/π)·(g + 0.044715·g³))` (Gemma; equal to
    /// `0.5·g·(1 + tanh(…))`).
    GeluTanh,
}

impl Gate {
    /// The portable scalar form of one element.
    pub fn apply(self, g: f32) -> f32 {
        match self {
            Gate::Silu => g / (1.0 + (-g).exp()),
            Gate::GeluTanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                0.5 * g * (1.0 + (SQRT_2_OVER_PI * g * (1.0 + 0.044_715 * g * g)).tanh())
            }
        }
    }
}

/// `out[i] = act(g[i]) · u[i]` over one row of a gated feed-forward. With AVX-512 (rows a
/// multiple of 16 long) 16 lanes with a polynomial exponential (a few ulp from libm's; this
/// loop was 10 % of a decoding step's serial time with libm); otherwise [`Gate::apply`]. A row's
/// numbers never depend on other rows.
pub fn gated_row(act: Gate, g: &[f32], u: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect().avx512() && g.len().is_multiple_of(16) {
        // SAFETY: AVX-512F was detected; lengths checked by the callee.
        return unsafe { x86::gated_row_512(act, g, u, out) };
    }
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = act.apply(g) * u;
    }
}

/// log Σ exp(x), stable (max first), for the log-softmax over a vocabulary. With AVX-512 the
/// exponentials are a 16-lane Cephes-style polynomial (within 2 ulp of libm's `expf`) summed in
/// 16 lanes; otherwise libm's `exp` summed in order. Either way every caller gets the same
/// arithmetic for the same row on a given machine (the full and subset heads agree).
pub fn logsumexp_row(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect().avx512() {
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
    if Kernel::detect().avx512() && hd.is_multiple_of(16) && hd <= 256 {
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
    use super::{Act16Block, Act8Block, ActBlock, Line, Packed16, BLOCK, LANES};
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
    /// e^x in 16 lanes (Cephes `expf`: x = n·ln2 + r, degree-6 polynomial of r, scaled by
    /// 2^n; +∞ past 88.7). Inputs below −103 count as e^−103 ≈ 1e−45: nothing next to the sum's
    /// largest term in a log-sum-exp, which is 1, nor next to the 1 of a sigmoid.
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

    /// [`super::gated_row`] in 16 lanes (`g.len()` a multiple of 16): `g · σ(z) · u` with the
    /// sigmoid's exponential from [`exp_512`] and an IEEE division.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `u` and `out` are at least as long as `g`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gated_row_512(act: super::Gate, g: &[f32], u: &[f32], out: &mut [f32]) {
        assert!(g.len().is_multiple_of(16) && u.len() >= g.len() && out.len() >= g.len());
        let one = _mm512_set1_ps(1.0);
        for i in (0..g.len()).step_by(16) {
            let gv = _mm512_loadu_ps(g.as_ptr().add(i));
            let z = match act {
                super::Gate::Silu => gv,
                super::Gate::GeluTanh => {
                    // 2·√(2/π)·(g + 0.044715·g³): tanh(y) = 2σ(2y) − 1.
                    let g2 = _mm512_mul_ps(gv, gv);
                    let inner = _mm512_fmadd_ps(_mm512_set1_ps(0.044_715), g2, one);
                    _mm512_mul_ps(_mm512_mul_ps(gv, inner), _mm512_set1_ps(2.0 * 0.797_884_6))
                }
            };
            let e = exp_512(_mm512_sub_ps(_mm512_setzero_ps(), z));
            let h = _mm512_div_ps(gv, _mm512_add_ps(one, e));
            let v = _mm512_mul_ps(h, _mm512_loadu_ps(u.as_ptr().add(i)));
            _mm512_storeu_ps(out.as_mut_ptr().add(i), v);
        }
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

    /// One block of 32 values at `p`, as two 16-lane halves, and its `max |x|` when every value
    /// is finite (ordered "less than ∞" is false for NaN and ±∞).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_block(p: *const f32) -> (__m512, __m512, Option<f32>) {
        let (v0, v1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
        let (a0, a1) = (_mm512_abs_ps(v0), _mm512_abs_ps(v1));
        let inf = _mm512_set1_ps(f32::INFINITY);
        let finite = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a0, inf)
            & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a1, inf)
            == 0xffff;
        (v0, v1, finite.then(|| _mm512_reduce_max_ps(_mm512_max_ps(a0, a1))))
    }

    /// ggml's 8-bit rounding of a finite block (scale `max |x| / 127`, `x · (1 / scale)` to
    /// nearest even): the rounded halves, the scale and `Σ q`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn round_block8(v0: __m512, v1: __m512, amax: f32) -> (__m512i, __m512i, f32, i32) {
        let d = amax / 127.0;
        let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        // The default rounding mode: to nearest, ties to even.
        let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
        let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
        (q0, q1, d, _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)))
    }

    /// [`super::quantize_row_scalar`] in 16 lanes (same bytes and scales); a block with a
    /// non-finite value takes the scalar code.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds `out.len()` blocks.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quantize_row_512(x: &[f32], out: &mut [ActBlock]) {
        assert!(x.len() >= out.len() * BLOCK);
        for (b, block) in out.iter_mut().enumerate() {
            let p = x.as_ptr().add(b * BLOCK);
            let (v0, v1, Some(amax)) = load_block(p) else {
                let chunk = std::slice::from_raw_parts(p, BLOCK);
                super::quantize_row_scalar(chunk, std::slice::from_mut(block));
                continue;
            };
            let (q0, q1, d, sum) = round_block8(v0, v1, amax);
            let qs = block.qs.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(qs, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128(qs.add(1), _mm512_cvtepi32_epi8(q1));
            block.d = d;
            block.s = d * sum as f32;
        }
    }

    /// [`super::quantize_row8`] in 16 lanes: [`quantize_row_512`]'s bytes and scales, stored in
    /// group order with 128 added (a non-finite block takes the scalar code).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds `out.len()` blocks.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quantize_row8_512(x: &[f32], out: &mut [Act8Block]) {
        assert!(x.len() >= out.len() * BLOCK);
        let flip = _mm_set1_epi8(-128);
        for (b, block) in out.iter_mut().enumerate() {
            let p = x.as_ptr().add(b * BLOCK);
            let (v0, v1, Some(amax)) = load_block(p) else {
                let mut one = [ActBlock::default()];
                super::quantize_row_scalar(std::slice::from_raw_parts(p, BLOCK), &mut one);
                *block = Act8Block::from(&one[0]);
                continue;
            };
            let (q0, q1, d, sum) = round_block8(v0, v1, amax);
            // q + 128 as a byte is q ^ 0x80; elements 0..16 and 16..32 interleaved by 4-byte
            // groups: the group order.
            let b0 = _mm_xor_si128(_mm512_cvtepi32_epi8(q0), flip);
            let b1 = _mm_xor_si128(_mm512_cvtepi32_epi8(q1), flip);
            let u = block.u.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(u, _mm_unpacklo_epi32(b0, b1));
            _mm_storeu_si128(u.add(1), _mm_unpackhi_epi32(b0, b1));
            block.d = d;
            block.s = d * sum as f32;
        }
    }

    /// [`super::quantize_row16`] in 16 lanes (same bytes and scales: the same division, rounding
    /// to nearest even, clamp and sum).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds `out.len()` blocks.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quantize_row16_512(x: &[f32], out: &mut [Act16Block]) {
        assert!(x.len() >= out.len() * BLOCK);
        let (lim, off) = (_mm512_set1_epi32(32767), _mm512_set1_epi32(32768));
        let neg_lim = _mm512_set1_epi32(-32767);
        for (b, block) in out.iter_mut().enumerate() {
            let (v0, v1, amax) = load_block(x.as_ptr().add(b * BLOCK));
            let d = amax.map_or(f32::NAN, |amax| amax / super::INT16_MAX);
            if d.is_nan() || d == 0.0 {
                *block = Act16Block { d, sx: d * 0.0, ..Act16Block::default() };
                continue;
            }
            let dv = _mm512_set1_ps(d);
            let quantize = |v: __m512| {
                let q = _mm512_cvtps_epi32(_mm512_div_ps(v, dv));
                _mm512_max_epi32(_mm512_min_epi32(q, lim), neg_lim)
            };
            let (q0, q1) = (quantize(v0), quantize(v1));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            let (u0, u1) = (_mm512_add_epi32(q0, off), _mm512_add_epi32(q1, off));
            let (lo0, lo1) = (_mm512_cvtepi32_epi8(u0), _mm512_cvtepi32_epi8(u1));
            let hi0 = _mm512_cvtepi32_epi8(_mm512_srli_epi32::<8>(u0));
            let hi1 = _mm512_cvtepi32_epi8(_mm512_srli_epi32::<8>(u1));
            // Elements 0..16 and 16..32 interleaved by 4-byte groups: the group order.
            let store = |dst: &mut [u8; BLOCK], a: __m128i, b: __m128i| {
                _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, _mm_unpacklo_epi32(a, b));
                _mm_storeu_si128(
                    dst.as_mut_ptr().add(16) as *mut __m128i,
                    _mm_unpackhi_epi32(a, b),
                );
            };
            store(&mut block.hi, hi0, hi1);
            store(&mut block.lo, lo0, lo1);
            block.d = d;
            block.sx = d * sum as f32;
        }
    }

    /// One (group, block) record of [`Packed16`]: the 8 weight groups (`Q4_1` nibbles unpacked to
    /// bytes), the scales `d`, the offsets `m` (`d` again for `Q8_0`) and the correction.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn block_record<const Q4: bool>(
        rec: *const Line,
        per: usize,
    ) -> ([__m512i; 8], __m512, __m512, __m512i) {
        let load = |l: *const Line| _mm512_load_si512(l as *const _);
        let mut w = [_mm512_setzero_si512(); 8];
        if Q4 {
            let mask = _mm512_set1_epi8(0x0f);
            for k in 0..4 {
                let q = load(rec.add(k));
                w[2 * k] = _mm512_and_si512(q, mask);
                w[2 * k + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(q), mask);
            }
        } else {
            for k in 0..8 {
                w[k] = load(rec.add(k));
            }
        }
        let tail = per - if Q4 { 3 } else { 2 };
        let dw = _mm512_load_ps(rec.add(tail) as *const f32);
        let mw = if Q4 { _mm512_load_ps(rec.add(tail + 1) as *const f32) } else { dw };
        (w, dw, mw, load(rec.add(per - 1)))
    }

    /// The int16 tile: weight rows `16·g .. 16·g + 16` (one per lane) against `N` consecutive
    /// input rows of `x` (`kb` blocks each). Per block and input: the integer sum starts at the
    /// record's correction and takes the 8 high-plane groups (`vpdpbusd`, 4 elements per lane
    /// each), a second one the 8 low-plane groups; `(high << 8) + low` is then exact
    /// (`Σ q·x_int`, at most 32·128·32768 < 2³¹ in magnitude); converted to f32, it is scaled by `d_w·d_x` in one FMA (plus
    /// `m·sx` for `Q4_1`). The same operations in the same order for every row and input,
    /// whatever `N`: equal to [`super::int16_q4_1_scalar`] / [`super::int16_q8_0_scalar`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile16<const Q4: bool, const N: usize>(
        p: &Packed16,
        g: usize,
        x: &[Act16Block],
    ) -> [[f32; 16]; N] {
        let kb = p.kb;
        let per = p.record_lines();
        assert!(x.len() >= N * kb && (g + 1) * kb * per <= p.lines.len());
        let base = p.lines.as_ptr().add(g * kb * per);
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..kb {
            let rec = base.add(b * per);
            let (w, dw, mw, corr) = block_record::<Q4>(rec, per);
            for j in 0..N {
                let a = x.get_unchecked(j * kb + b);
                let (hi, lo) = (a.hi.as_ptr() as *const i32, a.lo.as_ptr() as *const i32);
                // Two independent chains (high and low plane) halve the latency of a block.
                let (mut sh, mut sl) = (corr, _mm512_setzero_si512());
                for k in 0..8 {
                    sh = _mm512_dpbusd_epi32(
                        sh,
                        _mm512_set1_epi32(hi.add(k).read_unaligned()),
                        w[k],
                    );
                    sl = _mm512_dpbusd_epi32(
                        sl,
                        _mm512_set1_epi32(lo.add(k).read_unaligned()),
                        w[k],
                    );
                }
                let s = _mm512_add_epi32(_mm512_slli_epi32::<8>(sh), sl);
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[j]);
                if Q4 {
                    acc[j] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.sx), acc[j]);
                }
            }
        }
        let mut out = [[0f32; 16]; N];
        for j in 0..N {
            _mm512_storeu_ps(out[j].as_mut_ptr(), acc[j]);
        }
        out
    }

    /// The 8-bit tile: as [`tile16`] with one plane. Per block and input the integer sum starts
    /// at the record's correction and takes the 8 groups of `x + 128` (`vpdpbusd`), which gives
    /// ggml's `Σ q·x_q` exactly; then `acc = S·(d_w·d_x) + acc` (and `m·s + acc` for `Q4_1`),
    /// equal to [`super::int8_q4_1_scalar`] / [`super::int8_q8_0_scalar`] bit for bit.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile8<const Q4: bool, const N: usize>(
        p: &Packed16,
        g: usize,
        x: &[Act8Block],
    ) -> [[f32; 16]; N] {
        let kb = p.kb;
        let per = p.record_lines();
        assert!(x.len() >= N * kb && (g + 1) * kb * per <= p.lines.len());
        let base = p.lines.as_ptr().add(g * kb * per);
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..kb {
            let rec = base.add(b * per);
            let (w, dw, mw, corr) = block_record::<Q4>(rec, per);
            for j in 0..N {
                let a = x.get_unchecked(j * kb + b);
                let u = a.u.as_ptr() as *const i32;
                // Two chains of four halve the latency of a block (integer sums are exact).
                let (mut s0, mut s1) = (corr, _mm512_setzero_si512());
                for k in 0..4 {
                    s0 = _mm512_dpbusd_epi32(
                        s0,
                        _mm512_set1_epi32(u.add(2 * k).read_unaligned()),
                        w[2 * k],
                    );
                    s1 = _mm512_dpbusd_epi32(
                        s1,
                        _mm512_set1_epi32(u.add(2 * k + 1).read_unaligned()),
                        w[2 * k + 1],
                    );
                }
                let s = _mm512_add_epi32(s0, s1);
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[j]);
                if Q4 {
                    acc[j] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s), acc[j]);
                }
            }
        }
        let mut out = [[0f32; 16]; N];
        for j in 0..N {
            _mm512_storeu_ps(out[j].as_mut_ptr(), acc[j]);
        }
        out
    }

    /// Activation blocks that a packed VNNI tile multiplies ([`Act16Block`]: int16,
    /// [`Act8Block`]: int8).
    pub trait PackedActivation: Copy + Sync {
        /// Widest input chunk of a tile (at most 16).
        const MAX_INPUTS: usize;
        /// Weight rows `16·g .. 16·g + 16` against `N` consecutive input rows of `x`.
        ///
        /// # Safety
        /// The CPU has AVX-512F/BW and VNNI; `x` holds `N` rows of `p.kb` blocks.
        unsafe fn tile<const Q4: bool, const N: usize>(
            p: &Packed16,
            g: usize,
            x: &[Self],
        ) -> [[f32; 16]; N];
    }

    impl PackedActivation for Act16Block {
        const MAX_INPUTS: usize = MAX_TILE_INPUTS;
        unsafe fn tile<const Q4: bool, const N: usize>(
            p: &Packed16,
            g: usize,
            x: &[Self],
        ) -> [[f32; 16]; N] {
            tile16::<Q4, N>(p, g, x)
        }
    }

    impl PackedActivation for Act8Block {
        const MAX_INPUTS: usize = 8;
        unsafe fn tile<const Q4: bool, const N: usize>(
            p: &Packed16,
            g: usize,
            x: &[Self],
        ) -> [[f32; 16]; N] {
            tile8::<Q4, N>(p, g, x)
        }
    }

    /// Products of weight rows `rows` with the `n` quantized input rows of `x` (int16 or int8
    /// activations), reported through `write(first_row, input, values)` for the runs of up to 16
    /// consecutive rows (`values[k]` is row `first_row + k`): each 16-row group overlapping
    /// `rows` against chunks of up to [`MAX_TILE_INPUTS`] inputs (equal chunks, as
    /// [`exact_range_512`]).
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW and VNNI; `x` holds `n` rows of `p.kb` blocks.
    pub unsafe fn packed_range_512<A: PackedActivation>(
        p: &Packed16,
        x: &[A],
        n: usize,
        rows: std::ops::Range<usize>,
        write: &mut impl FnMut(usize, usize, &[f32]),
    ) {
        if n == 0 || rows.is_empty() {
            return;
        }
        let kb = p.kb;
        let chunks = n.div_ceil(A::MAX_INPUTS);
        macro_rules! run {
            ($g:expr, $i:expr, $N:literal) => {{
                let xs = &x[$i * kb..($i + $N) * kb];
                let v = if p.q4 {
                    A::tile::<true, $N>(p, $g, xs)
                } else {
                    A::tile::<false, $N>(p, $g, xs)
                };
                // The group's lanes that fall in `rows`, as one contiguous run.
                let lo = rows.start.max($g * LANES);
                let hi = rows.end.min(($g + 1) * LANES);
                for (j, lanes) in v.iter().enumerate() {
                    write(lo, $i + j, &lanes[lo - $g * LANES..hi - $g * LANES]);
                }
            }};
        }
        for g in rows.start / LANES..rows.end.div_ceil(LANES) {
            let mut i = 0;
            for c in 0..chunks {
                let len = (n - i) / (chunks - c);
                match len {
                    1 => run!(g, i, 1),
                    2 => run!(g, i, 2),
                    3 => run!(g, i, 3),
                    4 => run!(g, i, 4),
                    5 => run!(g, i, 5),
                    6 => run!(g, i, 6),
                    7 => run!(g, i, 7),
                    8 => run!(g, i, 8),
                    9 => run!(g, i, 9),
                    10 => run!(g, i, 10),
                    11 => run!(g, i, 11),
                    12 => run!(g, i, 12),
                    13 => run!(g, i, 13),
                    14 => run!(g, i, 14),
                    15 => run!(g, i, 15),
                    _ => run!(g, i, 16),
                }
                i += len;
            }
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
        let w41 = Matrix::new(
            1,
            kb * BLOCK,
            Weights::Q4_1 { scales: scales.clone(), qs: qs.clone() },
            true,
        );
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

    /// Random `Q4_1` and `Q8_0` matrices (`rows` not a multiple of 16, so the last group is
    /// padded) and `n` input rows whose blocks include the extremes: one huge value among tiny
    /// ones, all zeros, a negative maximum, a single nonzero value, and plain random values.
    /// Row `r` of a quantized `m` times one int16-quantized input, by the scalar reference.
    fn int16_row_scalar(m: &Matrix, r: usize, x: &[Act16Block]) -> f32 {
        let kb = m.cols / BLOCK;
        match &m.weights {
            Weights::Q4_1 { scales, qs } => {
                int16_q4_1_scalar(&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb], x)
            }
            Weights::Q8_0 { d, qs } => {
                int16_q8_0_scalar(&d[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb], x)
            }
            Weights::F32(_) | Weights::Packed(_) => {
                unreachable!("quantized, unpacked test weights")
            }
        }
    }

    fn int16_case(rows: usize, kb: usize, n: usize) -> (Matrix, Matrix, Vec<f32>) {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let mut unit = move || (rnd() % 2_000_001) as f32 / 1_000_000.0 - 1.0;
        let cols = kb * BLOCK;
        let scales: Vec<[f32; 2]> =
            (0..rows * kb).map(|_| [unit().abs() * 0.05 + 1e-4, unit() * 0.4]).collect();
        let qs: Vec<[u8; 16]> =
            (0..rows * kb).map(|_| std::array::from_fn(|_| (unit().abs() * 255.0) as u8)).collect();
        let d8: Vec<f32> = (0..rows * kb).map(|_| unit().abs() * 0.02 + 1e-4).collect();
        let q8: Vec<[i8; BLOCK]> =
            (0..rows * kb).map(|_| std::array::from_fn(|_| (unit() * 127.9) as i8)).collect();
        let mut x: Vec<f32> = (0..n * cols).map(|_| unit() * 3.0).collect();
        for i in 0..n {
            let row = &mut x[i * cols..(i + 1) * cols];
            let block = |b: usize| b % kb * BLOCK;
            // One huge value, the others tiny: they round to 0 or ±1 step.
            let o = block(i);
            for v in &mut row[o..o + BLOCK] {
                *v *= 1e-6;
            }
            row[o + 5] = 3.0e4;
            // All zeros.
            let o = block(i + 1);
            row[o..o + BLOCK].iter_mut().for_each(|v| *v = 0.0);
            // The largest magnitude negative.
            let o = block(i + 2);
            row[o + 31] = -50.0;
            // A single nonzero value (exactly representable: no rounding at all).
            let o = block(i + 3);
            row[o..o + BLOCK].iter_mut().for_each(|v| *v = 0.0);
            row[o + 17] = -0.125;
        }
        (
            Matrix::new(rows, cols, Weights::Q4_1 { scales, qs }, false),
            Matrix::new(rows, cols, Weights::Q8_0 { d: d8, qs: q8 }, false),
            x,
        )
    }

    #[test]
    fn int16_quantization_error_is_at_most_half_a_step() {
        let (_, _, x) = int16_case(1, 6, 4);
        let mut q = vec![Act16Block::default(); x.len() / BLOCK];
        quantize_row16(&x, &mut q);
        for (b, block) in q.iter().enumerate() {
            let chunk = &x[b * BLOCK..(b + 1) * BLOCK];
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(block.d, amax / 32767.0);
            let mut sum = 0i64;
            for (e, &v) in chunk.iter().enumerate() {
                let xi = block.value(e);
                assert!(xi.abs() <= 32767);
                sum += xi as i64;
                // round(v / d) with v / d correct to 2^-24 relative: ≤ 0.5 + 32767·2^-24 steps.
                let err = (block.d as f64 * xi as f64 - v as f64).abs();
                assert!(
                    err <= 0.502 * block.d as f64,
                    "block {b} element {e}: {err} vs step {}",
                    block.d
                );
            }
            assert_eq!(block.sx, block.d * sum as f32);
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            let mut simd = vec![Act16Block::default(); q.len()];
            // SAFETY: AVX-512F detected; simd holds the row's blocks.
            unsafe { x86::quantize_row16_512(&x, &mut simd) };
            for (a, b) in simd.iter().zip(&q) {
                assert_eq!(
                    (a.hi, a.lo, a.d.to_bits(), a.sx.to_bits()),
                    (b.hi, b.lo, b.d.to_bits(), b.sx.to_bits())
                );
            }
        }
        // Non-finite input poisons its block's scale (the products become NaN, as in f32).
        let mut bad = vec![0f32; BLOCK];
        bad[3] = f32::INFINITY;
        quantize_row16(&bad, &mut q[..1]);
        assert!(q[0].d.is_nan());
    }

    /// The int16 products against the exact f32 products (computed in float64 from the
    /// dequantized weights). Bound: each activation moves by at most 0.502 steps `d_x` of its
    /// block (see above), so a product moves by at most `Σ_b 0.502·d_x,b · Σ_e |w_e|`; the f32
    /// scaling and accumulation add at most ~(3·kb)·2⁻²⁴ relative of `Σ |w·x|`.
    #[test]
    fn int16_products_stay_within_the_rounding_bound_of_the_exact_product() {
        let (rows, kb, n) = (37, 18, 8);
        let (m41, m80, x) = int16_case(rows, kb, n);
        let cols = kb * BLOCK;
        let mut xs = vec![Act16Block::default(); n * kb];
        quantize_row16(&x, &mut xs);
        let mut w = vec![0f32; cols];
        for m in [&m41, &m80] {
            for r in 0..rows {
                m.dequantize_row(r, &mut w);
                for i in 0..n {
                    let (xi, qi) = (&x[i * cols..(i + 1) * cols], &xs[i * kb..(i + 1) * kb]);
                    let ours = int16_row_scalar(m, r, qi);
                    let exact: f64 = w.iter().zip(xi).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let magnitude: f64 =
                        w.iter().zip(xi).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                    let rounding: f64 = (0..kb)
                        .map(|b| {
                            let wsum: f64 =
                                w[b * BLOCK..(b + 1) * BLOCK].iter().map(|v| v.abs() as f64).sum();
                            0.502 * qi[b].d as f64 * wsum
                        })
                        .sum();
                    let bound =
                        rounding + 3.0 * kb as f64 * magnitude / (1u64 << 24) as f64 + 1e-30;
                    let err = (ours as f64 - exact).abs();
                    assert!(err <= bound, "row {r} input {i}: {ours} vs {exact}: {err} > {bound}");
                }
            }
        }
    }

    /// The packed VNNI kernel over the first `batch` inputs of `xs` and a row range, for several
    /// batch sizes (tile shapes) and ranges (groups cut at both ends), equals `reference[row][input]`
    /// bit for bit and reports every asked row once.
    #[cfg(target_arch = "x86_64")]
    fn packed_kernel_matches<A: x86::PackedActivation>(
        p: &Packed16,
        xs: &[A],
        reference: &[Vec<f32>],
        kb: usize,
    ) {
        let rows = reference.len();
        for (batch, range) in
            [(1, 0..rows), (2, 3..20), (5, 0..16), (13, 17..37), (15, 0..rows), (26, 1..36)]
        {
            let mut seen = vec![false; rows * batch];
            let mut write = |first: usize, i: usize, values: &[f32]| {
                for (k, v) in values.iter().enumerate() {
                    let r = first + k;
                    assert_eq!(
                        v.to_bits(),
                        reference[r][i].to_bits(),
                        "batch {batch} row {r} input {i}"
                    );
                    seen[r * batch + i] = true;
                }
            };
            // SAFETY: the caller checked the features; xs holds at least `batch` rows of kb blocks.
            unsafe {
                x86::packed_range_512(p, &xs[..batch * kb], batch, range.clone(), &mut write)
            };
            for r in 0..rows {
                for i in 0..batch {
                    assert_eq!(seen[r * batch + i], range.contains(&r), "row {r} input {i}");
                }
            }
        }
    }

    /// The AVX-512 VNNI kernel equals the scalar reference bit for bit, for every batch size
    /// (tile shapes) and row range (groups cut at both ends), so a row's numbers never depend
    /// on its batch.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn int16_kernel_equals_its_scalar_reference_at_every_batch_size() {
        if !(is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni"))
        {
            eprintln!("no AVX-512 VNNI: int16 kernel not tested");
            return;
        }
        let (rows, kb, n) = (37, 18, 26);
        let (m41, m80, x) = int16_case(rows, kb, n);
        let mut xs = vec![Act16Block::default(); n * kb];
        quantize_row16(&x, &mut xs);
        for m in [&m41, &m80] {
            let p = m.packed16().unwrap();
            let reference: Vec<Vec<f32>> = (0..rows)
                .map(|r| {
                    (0..n).map(|i| int16_row_scalar(m, r, &xs[i * kb..(i + 1) * kb])).collect()
                })
                .collect();
            packed_kernel_matches(p, &xs, &reference, kb);
        }
    }

    /// The packed int8 VNNI kernel equals its scalar reference bit for bit at every batch size
    /// and row range, through `matmul_rows` and `matmul_ids` too, and its integer sums are
    /// ggml's (the scalar reference against ggml's float order, up to rounding).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn int8_kernel_equals_its_scalar_reference_at_every_batch_size() {
        let (rows, kb, n) = (37, 18, 26);
        let (m41, m80, x) = int16_case(rows, kb, n);
        let mut xq = vec![ActBlock::default(); n * kb];
        quantize_row(&x, &mut xq);
        let as_int8 = |m: Matrix| {
            let Matrix { rows, cols, weights, .. } = m;
            Matrix::new(rows, cols, weights, true)
        };
        for m in [as_int8(m41), as_int8(m80)] {
            let reference: Vec<Vec<f32>> = (0..rows)
                .map(|r| {
                    (0..n)
                        .map(|i| {
                            let xi = &xq[i * kb..(i + 1) * kb];
                            let (ours, ggml) = match &m.weights {
                                Weights::Q4_1 { scales, qs } => {
                                    let (s, q) =
                                        (&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                                    (int8_q4_1_scalar(s, q, xi), dot_q4_1_scalar(s, q, xi))
                                }
                                Weights::Q8_0 { d, qs } => {
                                    let (s, q) =
                                        (&d[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                                    (int8_q8_0_scalar(s, q, xi), dot_q8_0_scalar(s, q, xi))
                                }
                                Weights::F32(_) | Weights::Packed(_) => {
                                    unreachable!("quantized cases")
                                }
                            };
                            let magnitude = 1.0 + ggml.abs().max(ours.abs());
                            assert!(
                                (ours - ggml).abs() <= 1e-4 * magnitude,
                                "row {r}: {ours} vs {ggml}"
                            );
                            ours
                        })
                        .collect()
                })
                .collect();
            if !(is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni"))
            {
                eprintln!("no AVX-512 VNNI: int8 VNNI kernel not tested");
                return;
            }
            let p = m.packed16().unwrap();
            let xs: Vec<Act8Block> = xq.iter().map(Act8Block::from).collect();
            packed_kernel_matches(p, &xs, &reference, kb);
            if Kernel::detect() == Kernel::Avx512Int16 {
                let mut out = vec![0f32; n * rows];
                // The packed kernel quantizes the f32 rows itself, to the same blocks.
                assert!(!m.wants_quantized_input());
                m.matmul_rows(&[], &x, n, 0..rows, &mut out, rows);
                let mut by_id = vec![0f32; 2];
                m.matmul_ids(&[], &x, 3, &[30, 2], &mut by_id);
                assert_eq!(by_id, [reference[30][3], reference[2][3]]);
                for r in 0..rows {
                    for i in 0..n {
                        assert_eq!(out[i * rows + r].to_bits(), reference[r][i].to_bits());
                    }
                }
            }
        }
    }

    /// The AVX-512 8-bit quantizer gives the scalar one's bytes and scales, also for blocks of
    /// zeros, ties, huge and non-finite values.
    #[test]
    fn int8_quantizer_simd_equals_scalar() {
        let (_, _, mut x) = int16_case(1, 12, 3);
        // Exact ties after scaling (max 127 → scale 1): 0.5, 1.5, -2.5 round to even.
        x[..BLOCK].iter_mut().enumerate().for_each(|(e, v)| *v = e as f32 - 15.5);
        x[0] = 127.0;
        x[BLOCK + 7] = f32::NAN;
        x[2 * BLOCK + 3] = f32::NEG_INFINITY;
        let mut scalar = vec![ActBlock::default(); x.len() / BLOCK];
        quantize_row_scalar(&x, &mut scalar);
        assert_eq!(&scalar[0].qs[14..18], &[-2, 0, 0, 2]);
        let mut fast = vec![ActBlock::default(); scalar.len()];
        quantize_row(&x, &mut fast);
        for (a, b) in fast.iter().zip(&scalar) {
            assert_eq!((a.qs, a.d.to_bits(), a.s.to_bits()), (b.qs, b.d.to_bits(), b.s.to_bits()));
        }
        // Straight into the packed layout: the same blocks, reordered.
        let mut packed = vec![Act8Block::default(); scalar.len()];
        quantize_row8(&x, &mut packed);
        for (a, b) in packed.iter().zip(&scalar) {
            let b = Act8Block::from(b);
            assert_eq!((a.u, a.d.to_bits(), a.s.to_bits()), (b.u, b.d.to_bits(), b.s.to_bits()));
        }
    }

    /// The gate (vectorized where AVX-512 runs) stays within a few ulp of the function in
    /// float64, also past the exponential's clamp and overflow; the tolerance grows with |z|, the
    /// sigmoid's argument, whose own f32 rounding e^z amplifies (the scalar forms do the same).
    #[test]
    fn gated_rows_match_a_float64_reference() {
        let g: Vec<f32> = (0..4096)
            .map(|i| {
                let t = i as f32 / 4096.0;
                (t - 0.5) * if i % 7 == 0 { 400.0 } else { 24.0 }
            })
            .collect();
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 13) as f32 * 0.25).collect();
        for act in [Gate::Silu, Gate::GeluTanh] {
            let z = |g: f64| match act {
                Gate::Silu => g,
                Gate::GeluTanh => {
                    2.0 * (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)
                }
            };
            let mut out = vec![0f32; g.len()];
            gated_row(act, &g, &u, &mut out);
            for ((&o, &g), &u) in out.iter().zip(&g).zip(&u) {
                let z = z(g as f64);
                let want = g as f64 / (1.0 + (-z).exp()) * u as f64;
                let tol = (4e-6 + 4e-7 * z.abs()) * want.abs() + 1e-30;
                assert!((o as f64 - want).abs() <= tol, "{act:?}({g}) · {u}: {o} vs {want}");
            }
        }
    }

    /// Packed weights read back to the original rows bit for bit, and a matrix packed in place
    /// (original blocks dropped) gives the products and rows it gave before.
    #[test]
    fn packed_weights_replace_the_original_blocks_exactly() {
        let (rows, kb, n) = (37, 6, 5);
        let (m41, m80, x) = int16_case(rows, kb, n);
        let cols = kb * BLOCK;
        for mut m in [m41, m80] {
            let p = Packed16::new(&m).unwrap();
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            for r in 0..rows {
                m.dequantize_row(r, &mut a);
                p.dequantize_row(r, &mut b);
                assert_eq!(
                    a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "row {r}"
                );
            }
            let mut before = vec![0f32; n * rows];
            m.matmul_rows(&[], &x, n, 0..rows, &mut before, rows);
            m.pack();
            if Kernel::detect() != Kernel::Avx512Int16 {
                assert!(
                    !matches!(m.weights, Weights::Packed(_)),
                    "packed only for the VNNI kernel"
                );
                continue;
            }
            assert!(matches!(m.weights, Weights::Packed(_)));
            let mut after = vec![0f32; n * rows];
            m.matmul_rows(&[], &x, n, 0..rows, &mut after, rows);
            assert_eq!(before, after);
            let mut by_id = vec![0f32; 2];
            m.matmul_ids(&[], &x, 2, &[36, 0], &mut by_id);
            assert_eq!(by_id, [after[2 * rows + 36], after[2 * rows]]);
            for r in [0, 17, 36] {
                m.dequantize_row(r, &mut b);
                m.dequantize_row_fast(r, &mut a);
                assert_eq!(a, b);
            }
        }
    }
}
