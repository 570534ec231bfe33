//! Layers every model family shares, so that no family borrows from another: [`Precision`],
//! projections through stacked matrices ([`project`]), RMS normalization, RoPE (the table and its
//! application), the gated feed-forward nonlinearity ([`gated_row`]), log-sum-exp and
//! log-softmax over a vocabulary, one attention head over cache entries ([`attend_head`]).
//! `gated_row`, `logsumexp_row` and `attend_head` run 16 AVX-512 lanes where the CPU has them
//! (`x86.rs`) and portable code elsewhere, chosen by [`Kernel::detect`].
//!
//! Not for: weight products or activation quantization (`crate::kernels`), anything one family
//! alone needs (its own file), the cache and decoding API (`crate::beams`).

use crate::kernels::{self, dot_f32, ActBlock, Kernel, Matrix, BLOCK};

/// The pool's disjoint-output pointer, under the name the families' forward passes use.
pub(crate) use crate::kernels::SendPtr as OutPtr;

#[cfg(target_arch = "x86_64")]
mod x86;

/// How the matrix products are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Weights dequantized exactly, activations and products in f32: within 0.05 nats of a
    /// float64 forward pass on the golden fixture. The default. On AVX-512 VNNI CPUs the
    /// quantized products round their activations to 16 bits per block (`Kernel::Avx512Int16`,
    /// 0.004 nats from float64 on the golden fixture); `SEAL_KERNELS=avx512` keeps them in f32.
    #[default]
    Exact,
    /// llama.cpp's arithmetic: activations quantized to 8 bits per block of 32, integer dot
    /// products (on AVX-512 VNNI CPUs the packed `vpdpbusd` tiles with one byte plane). Faster,
    /// and on average as far from the exact log-probs as llama.cpp (0.12 nats over the golden
    /// top-20), up to about 1 nat on rare tokens. Opt-in (`--precision int8`).
    Int8Activations,
}

/// `out[i]` = the concatenated products of every matrix in `parts` with input row `i` of `x`
/// (`n` rows); `xq` is scratch for the quantized input.
pub(crate) fn project(parts: &[Matrix], x: &[f32], n: usize, xq: &mut [ActBlock], out: &mut [f32]) {
    let cols = parts[0].cols;
    let total: usize = parts.iter().map(|m| m.rows).sum();
    if parts.iter().any(Matrix::wants_quantized_input) {
        let kb = cols / BLOCK;
        for i in 0..n {
            kernels::quantize_row(&x[i * cols..(i + 1) * cols], &mut xq[i * kb..(i + 1) * kb]);
        }
    }
    let mut offset = 0;
    for m in parts {
        m.matmul_rows(xq, x, n, 0..m.rows, &mut out[offset..], total);
        offset += m.rows;
    }
}

/// Full-vocabulary logits of `n` normalized hidden rows through the output head `head` into
/// `out` (`n × head.rows`).
pub(crate) fn head_full(head: &Matrix, hidden: &[f32], n: usize, out: &mut [f32]) {
    let kb = head.blocks_per_row();
    let mut xq = Vec::new();
    if head.wants_quantized_input() {
        xq = vec![ActBlock::default(); n * kb];
        for i in 0..n {
            kernels::quantize_row(
                &hidden[i * head.cols..(i + 1) * head.cols],
                &mut xq[i * kb..(i + 1) * kb],
            );
        }
    }
    head.matmul_rows(&xq, hidden, n, 0..head.rows, out, head.rows);
}

/// Logits of the given ids per hidden row through `head`, each row's passed through `finish`
/// (a family's logit cap): the same kernel and arithmetic as [`head_full`], so the subset head
/// and the full head agree.
pub(crate) fn head_ids(
    head: &Matrix,
    hidden: &[f32],
    ids: &[&[u32]],
    finish: impl Fn(&mut [f32]),
) -> Vec<Vec<f32>> {
    let kb = head.blocks_per_row();
    let d = head.cols;
    let mut xq = vec![ActBlock::default(); kb];
    ids.iter()
        .enumerate()
        .map(|(i, ids)| {
            let x = &hidden[i * d..(i + 1) * d];
            if head.wants_quantized_input() {
                kernels::quantize_row(x, &mut xq);
            }
            let mut out = vec![0f32; ids.len()];
            head.matmul_ids(&xq, x, 0, ids, &mut out);
            finish(&mut out);
            out
        })
        .collect()
}

/// RMS normalization of each row of `x` (rows of `weight.len()`), times `weight`. The sum of
/// squares runs in 16 independent partial sums (vectorized: a strict left-to-right f32 sum was
/// half of the decoding step's serial arithmetic), then adds those in a fixed order.
pub(crate) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mut partial = [0f32; 16];
        let chunks = row.chunks_exact(16);
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for chunk in chunks {
            for (p, v) in partial.iter_mut().zip(chunk) {
                *p += v * v;
            }
        }
        let ms = (partial.iter().sum::<f32>() + tail) / d as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * s * w;
        }
    }
}

/// cos/sin of every (position, frequency) pair of one RoPE base, for positions `0..positions`.
#[derive(Default)]
pub(crate) struct RopeTable {
    /// Positions covered.
    pub(crate) positions: usize,
    /// `cos[p * head_dim / 2 + i]` = cos θ(p, i).
    pub(crate) cos: Vec<f32>,
    /// `sin[p * head_dim / 2 + i]` = sin θ(p, i).
    pub(crate) sin: Vec<f32>,
}

impl RopeTable {
    /// How many positions a table grown to cover `positions` holds: the next power of two (at
    /// least 256, so that it rarely regrows), capped by the context length.
    pub(crate) fn size_for(positions: usize, context_length: usize) -> usize {
        positions.next_power_of_two().max(256).min(context_length.max(positions))
    }

    /// The table for `n` positions: θ(p, i) = p · scale · base^(−2i / head_dim). llama.cpp
    /// evaluates it in f32; f64 here is closer to exact, and the difference is far below the
    /// tolerance of the golden tests. (`scale` is 1 except for linearly scaled RoPE: a product
    /// with 1.0 is exact, so unscaled tables are the same numbers either way.)
    pub(crate) fn new(n: usize, head_dim: usize, base: f32, scale: f32) -> RopeTable {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for i in 0..half {
                let theta =
                    p as f64 * scale as f64 * (base as f64).powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        RopeTable { positions: n, cos, sin }
    }
}

/// Rotates one head `h` by the angles of one position (`cos`, `sin`: `h.len() / 2` values):
/// pairs `(2i, 2i + 1)` with `adjacent_pairs` (llama.cpp's "normal" layout), else `(i, i + half)`
/// ("neox").
pub(crate) fn apply_rope(h: &mut [f32], cos: &[f32], sin: &[f32], adjacent_pairs: bool) {
    let half = h.len() / 2;
    for i in 0..half {
        let (a, b) = if adjacent_pairs { (2 * i, 2 * i + 1) } else { (i, i + half) };
        let (x0, x1) = (h[a], h[b]);
        h[a] = x0 * cos[i] - x1 * sin[i];
        h[b] = x0 * sin[i] + x1 * cos[i];
    }
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

/// log Σ exp(x), stable ([`logsumexp_row`]).
pub(crate) fn logsumexp(x: &[f32]) -> f32 {
    logsumexp_row(x)
}

/// `x` minus its log-sum-exp: log-probabilities from logits.
pub(crate) fn log_softmax_in_place(x: &mut [f32]) {
    let z = logsumexp(x);
    for v in x.iter_mut() {
        *v -= z;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
