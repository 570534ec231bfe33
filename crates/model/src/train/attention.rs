//! Causal grouped-query attention over packed sequences, forward and backward.
//!
//! Input rows are `[q heads | k heads | v heads]` (after RoPE); each sequence of a
//! [`PackedBatch`] is attended on its own, with the batch's tree mask ([`PackedBatch::attends`]).
//! The forward pass keeps each sequence's attention probabilities for the backward pass
//! (`heads × T × T` values for a sequence of `T` rows). Sequences run in parallel; within one,
//! the heads run in order, so the numbers do not depend on the thread count.

use rayon::prelude::*;

use super::batch::PackedBatch;
use super::mat::{matmul, matmul_into, View};
use super::real::Real;

/// Head counts and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub q: usize,
    /// Key/value heads (each shared by `q / kv` query heads).
    pub kv: usize,
    /// Values per head.
    pub dim: usize,
}

impl Heads {
    /// Width of a `[q | k | v]` row.
    pub fn qkv_width(&self) -> usize {
        (self.q + 2 * self.kv) * self.dim
    }

    /// Width of an output row.
    pub fn out_width(&self) -> usize {
        self.q * self.dim
    }

    fn kv_of(&self, h: usize) -> usize {
        h / (self.q / self.kv)
    }
}

/// Splits `data` (rows of `width`) into one mutable slice per sequence.
fn split_by_seq<'a, T>(
    mut data: &'a mut [T],
    batch: &PackedBatch,
    width: usize,
) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(batch.seqs.len());
    let mut at = 0;
    for s in &batch.seqs {
        assert_eq!(s.start, at, "sequences must be contiguous and in order");
        let (head, rest) = data.split_at_mut(s.len() * width);
        out.push(head);
        data = rest;
        at = s.end;
    }
    out
}

/// Attention output rows (`rows × heads.q · dim`) and the probabilities of each sequence.
pub fn attention<T: Real>(qkv: &[T], batch: &PackedBatch, heads: Heads) -> (Vec<T>, Vec<Vec<T>>) {
    let (w, ow, hd) = (heads.qkv_width(), heads.out_width(), heads.dim);
    let scale = T::of(1.0 / (hd as f64).sqrt());
    let mut out = vec![T::ZERO; batch.rows() * ow];
    let outs = split_by_seq(&mut out, batch, ow);
    let probs: Vec<Vec<T>> = outs
        .into_par_iter()
        .zip(batch.seqs.par_iter())
        .map(|(out, seq)| {
            let (r0, t) = (seq.start, seq.len());
            let mut probs = vec![T::ZERO; heads.q * t * t];
            for h in 0..heads.q {
                let g = heads.kv_of(h);
                let q = View::strided(&qkv[r0 * w + h * hd..], t, hd, w);
                let k = View::strided(&qkv[r0 * w + (heads.q + g) * hd..], t, hd, w);
                let v = View::strided(&qkv[r0 * w + (heads.q + heads.kv + g) * hd..], t, hd, w);
                let p = &mut probs[h * t * t..(h + 1) * t * t];
                let scores = matmul(q, k.t(), false);
                for i in 0..t {
                    let row = &mut p[i * t..(i + 1) * t];
                    let mut max = f64::NEG_INFINITY;
                    for j in 0..=i {
                        if batch.attends(r0 + i, r0 + j) {
                            max = max.max((scores[i * t + j] * scale).f64());
                        }
                    }
                    let max = T::of(max);
                    let mut sum = T::ZERO;
                    for j in 0..=i {
                        if batch.attends(r0 + i, r0 + j) {
                            let e = (scores[i * t + j] * scale - max).exp();
                            row[j] = e;
                            sum += e;
                        }
                    }
                    let inv = T::ONE / sum;
                    for x in &mut row[..=i] {
                        *x *= inv;
                    }
                }
                matmul_into(&mut out[h * hd..], ow, View::rows(p, t, t), v, false, false);
            }
            probs
        })
        .collect();
    (out, probs)
}

/// Backward of [`attention`]: the gradient of the `[q | k | v]` rows from the gradient of the
/// output rows.
pub fn attention_backward<T: Real>(
    d_out: &[T],
    qkv: &[T],
    probs: &[Vec<T>],
    batch: &PackedBatch,
    heads: Heads,
) -> Vec<T> {
    let (w, ow, hd) = (heads.qkv_width(), heads.out_width(), heads.dim);
    let scale = T::of(1.0 / (hd as f64).sqrt());
    let mut d_qkv = vec![T::ZERO; batch.rows() * w];
    let parts = split_by_seq(&mut d_qkv, batch, w);
    parts.into_par_iter().zip(batch.seqs.par_iter()).zip(probs.par_iter()).for_each(
        |((dq, seq), probs)| {
            let (r0, t) = (seq.start, seq.len());
            let mut ds = vec![T::ZERO; t * t];
            for h in 0..heads.q {
                let g = heads.kv_of(h);
                let q = View::strided(&qkv[r0 * w + h * hd..], t, hd, w);
                let k = View::strided(&qkv[r0 * w + (heads.q + g) * hd..], t, hd, w);
                let v = View::strided(&qkv[r0 * w + (heads.q + heads.kv + g) * hd..], t, hd, w);
                let d_o = View::strided(&d_out[r0 * ow + h * hd..], t, hd, ow);
                let p = &probs[h * t * t..(h + 1) * t * t];
                let dp = matmul(d_o, v.t(), false);
                for i in 0..t {
                    let (p, dp) = (&p[i * t..(i + 1) * t], &dp[i * t..(i + 1) * t]);
                    let dot: T = p[..=i].iter().zip(&dp[..=i]).map(|(&a, &b)| a * b).sum();
                    let row = &mut ds[i * t..(i + 1) * t];
                    for j in 0..t {
                        row[j] = if j <= i { p[j] * (dp[j] - dot) * scale } else { T::ZERO };
                    }
                }
                let ds_v = View::rows(&ds, t, t);
                matmul_into(&mut dq[h * hd..], w, ds_v, k, false, false);
                matmul_into(&mut dq[(heads.q + g) * hd..], w, ds_v.t(), q, true, false);
                let p_v = View::rows(p, t, t);
                matmul_into(&mut dq[(heads.q + heads.kv + g) * hd..], w, p_v.t(), d_o, true, false);
            }
        },
    );
    d_qkv
}
