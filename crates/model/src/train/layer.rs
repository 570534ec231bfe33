//! One llama layer, forward and backward, over packed rows:
//! `x₂ = x + Wₒ·attn(rope(W_qkv·norm₁(x)))`, `y = x₂ + W_down·swiglu(W_gate_up·norm₂(x₂))`.
//!
//! A layer's parameters are one contiguous slice of a flat vector ([`Dims::layer_len`]), split
//! by [`Dims::split`] in this order: attention norm (`d`), stacked `[q; k; v]` projection
//! (`(q + 2kv)·head_dim × d`), output projection (`d × q·head_dim`), MLP norm (`d`), stacked
//! `[gate; up]` projection (`2f × d`), down projection (`d × f`). Matrices are row-major
//! `out × in`, as in GGUF. Gradients use the same layout, so an optimizer sees two flat
//! vectors.

use super::attention::{attention, attention_backward, Heads};
use super::batch::PackedBatch;
use super::mat::{matmul, matmul_into, View};
use super::pointwise::{rms_norm, rms_norm_backward, swiglu, swiglu_backward, RopeTable};
use super::real::Real;

/// The sizes of a layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dims {
    /// Model width.
    pub d: usize,
    /// MLP width.
    pub f: usize,
    /// Attention heads.
    pub heads: Heads,
    /// RMSNorm ε.
    pub eps: f64,
}

/// A layer's parameters (or gradients) as slices of one flat vector.
pub struct Layer<S> {
    /// Attention RMSNorm weight (`d`).
    pub attn_norm: S,
    /// `[q; k; v]` projection.
    pub qkv: S,
    /// Attention output projection.
    pub wo: S,
    /// MLP RMSNorm weight (`d`).
    pub ffn_norm: S,
    /// `[gate; up]` projection.
    pub gate_up: S,
    /// Down projection.
    pub down: S,
}

impl Dims {
    fn sizes(&self) -> [usize; 6] {
        let (d, f, h) = (self.d, self.f, self.heads);
        [d, h.qkv_width() * d, d * h.out_width(), d, 2 * f * d, d * f]
    }

    /// Parameters in one layer.
    pub fn layer_len(&self) -> usize {
        self.sizes().iter().sum()
    }

    /// A layer's parts in `flat` (exactly [`Self::layer_len`] long).
    pub fn split<'a, T>(&self, flat: &'a [T]) -> Layer<&'a [T]> {
        assert_eq!(flat.len(), self.layer_len());
        let [a, b, c, d, e, _] = self.sizes();
        let (attn_norm, rest) = flat.split_at(a);
        let (qkv, rest) = rest.split_at(b);
        let (wo, rest) = rest.split_at(c);
        let (ffn_norm, rest) = rest.split_at(d);
        let (gate_up, down) = rest.split_at(e);
        Layer { attn_norm, qkv, wo, ffn_norm, gate_up, down }
    }

    /// [`Self::split`], mutable.
    pub fn split_mut<'a, T>(&self, flat: &'a mut [T]) -> Layer<&'a mut [T]> {
        assert_eq!(flat.len(), self.layer_len());
        let [a, b, c, d, e, _] = self.sizes();
        let (attn_norm, rest) = flat.split_at_mut(a);
        let (qkv, rest) = rest.split_at_mut(b);
        let (wo, rest) = rest.split_at_mut(c);
        let (ffn_norm, rest) = rest.split_at_mut(d);
        let (gate_up, down) = rest.split_at_mut(e);
        Layer { attn_norm, qkv, wo, ffn_norm, gate_up, down }
    }
}

/// What the backward pass needs from the forward pass.
pub struct Saved<T> {
    x: Vec<T>,
    inv1: Vec<T>,
    qkv: Vec<T>,
    probs: Vec<Vec<T>>,
    att: Vec<T>,
    x2: Vec<T>,
    inv2: Vec<T>,
    gate_up: Vec<T>,
    m: Vec<T>,
}

/// `x · inv · w` row by row: the normed rows, recomputed from what was saved.
fn normed<T: Real>(x: &[T], inv: &[T], w: &[T]) -> Vec<T> {
    let d = w.len();
    let mut out = x.to_vec();
    for (row, &r) in out.chunks_mut(d).zip(inv) {
        for (v, &w) in row.iter_mut().zip(w) {
            *v = *v * r * w;
        }
    }
    out
}

/// Rows of `cols` values as a view.
fn rows_of<T: Real>(x: &[T], cols: usize) -> View<'_, T> {
    View::rows(x, x.len() / cols, cols)
}

/// `x · Wᵀ` for row-major `W` (`out × in`).
fn project<T: Real>(x: &[T], w: &[T], inputs: usize) -> Vec<T> {
    let rows = x.len() / inputs;
    let outputs = w.len() / inputs;
    matmul(View::rows(x, rows, inputs), View::rows(w, outputs, inputs).t(), true)
}

/// The layer's output rows, and (when `save`) what its backward pass needs.
pub fn forward<T: Real>(
    dims: &Dims,
    w: &Layer<&[T]>,
    x: Vec<T>,
    batch: &PackedBatch,
    rope: &RopeTable<T>,
    save: bool,
) -> (Vec<T>, Option<Saved<T>>) {
    let (d, h) = (dims.d, dims.heads);
    let rows = batch.rows();
    let (h1, inv1) = rms_norm(&x, w.attn_norm, dims.eps);
    let mut qkv = project(&h1, w.qkv, d);
    drop(h1);
    let width = h.qkv_width();
    rope.rotate(&mut qkv, width, 0, h.q, &batch.pos, false);
    rope.rotate(&mut qkv, width, h.q * h.dim, h.kv, &batch.pos, false);
    let (att, probs) = attention(&qkv, batch, h);
    let mut x2 = x.clone();
    let ow = h.out_width();
    matmul_into(&mut x2, d, View::rows(&att, rows, ow), View::rows(w.wo, d, ow).t(), true, true);
    let (h2, inv2) = rms_norm(&x2, w.ffn_norm, dims.eps);
    let gate_up = project(&h2, w.gate_up, d);
    drop(h2);
    let m = swiglu(&gate_up, dims.f);
    let mut out = x2.clone();
    matmul_into(
        &mut out,
        d,
        View::rows(&m, rows, dims.f),
        View::rows(w.down, d, dims.f).t(),
        true,
        true,
    );
    let saved = save.then_some(Saved { x, inv1, qkv, probs, att, x2, inv2, gate_up, m });
    (out, saved)
}

/// Backward of [`forward`]: adds the parameter gradients to `g` and returns the gradient of
/// the input rows.
pub fn backward<T: Real>(
    dims: &Dims,
    w: &Layer<&[T]>,
    saved: Saved<T>,
    d_out: Vec<T>,
    batch: &PackedBatch,
    rope: &RopeTable<T>,
    g: &mut Layer<&mut [T]>,
) -> Vec<T> {
    let (d, f, h) = (dims.d, dims.f, dims.heads);
    let rows = batch.rows();
    let (ow, width) = (h.out_width(), h.qkv_width());
    let _ = rows;

    // MLP: out = x₂ + m·downᵀ.
    let d_m = matmul(rows_of(&d_out, d), View::rows(w.down, d, f), true);
    matmul_into(g.down, f, rows_of(&d_out, d).t(), rows_of(&saved.m, f), true, true);
    drop(saved.m);
    let d_gu = swiglu_backward(&d_m, &saved.gate_up, f);
    drop(d_m);
    let h2 = normed(&saved.x2, &saved.inv2, w.ffn_norm);
    matmul_into(g.gate_up, d, rows_of(&d_gu, 2 * f).t(), rows_of(&h2, d), true, true);
    drop(h2);
    let d_h2 = matmul(rows_of(&d_gu, 2 * f), View::rows(w.gate_up, 2 * f, d), true);
    drop(d_gu);
    let mut d_x2 = d_out;
    rms_norm_backward(&d_h2, &saved.x2, &saved.inv2, w.ffn_norm, &mut d_x2, g.ffn_norm);
    drop(d_h2);

    // Attention: x₂ = x + att·Wₒᵀ.
    matmul_into(g.wo, ow, rows_of(&d_x2, d).t(), rows_of(&saved.att, ow), true, true);
    let d_att = matmul(rows_of(&d_x2, d), View::rows(w.wo, d, ow), true);
    let mut d_qkv = attention_backward(&d_att, &saved.qkv, &saved.probs, batch, h);
    drop(d_att);
    rope.rotate(&mut d_qkv, width, 0, h.q, &batch.pos, true);
    rope.rotate(&mut d_qkv, width, h.q * h.dim, h.kv, &batch.pos, true);
    let h1 = normed(&saved.x, &saved.inv1, w.attn_norm);
    matmul_into(g.qkv, d, rows_of(&d_qkv, width).t(), rows_of(&h1, d), true, true);
    drop(h1);
    let d_h1 = matmul(rows_of(&d_qkv, width), View::rows(w.qkv, width, d), true);
    let mut d_x = d_x2;
    rms_norm_backward(&d_h1, &saved.x, &saved.inv1, w.attn_norm, &mut d_x, g.attn_norm);
    d_x
}
