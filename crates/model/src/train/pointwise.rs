//! The row-wise pieces of a llama layer, forward and backward: RMSNorm, rotary position
//! embedding and the SwiGLU gate. Rows are independent (rayon splits them); the only
//! reduction across rows, the norm weight's gradient, runs in row order so results do not
//! depend on the thread count.

use rayon::prelude::*;

use super::real::Real;

/// Rows per rayon task: enough work to amortise the split.
const ROWS_PER_TASK: usize = 16;

/// `y = x · w / √(mean(x²) + eps)` for each row of `x` (`rows × d`); returns `y` and the
/// per-row `1 / √(mean(x²) + eps)`, which the backward pass needs.
pub fn rms_norm<T: Real>(x: &[T], w: &[T], eps: f64) -> (Vec<T>, Vec<T>) {
    let d = w.len();
    let rows = x.len() / d;
    let mut y = vec![T::ZERO; x.len()];
    let mut inv = vec![T::ZERO; rows];
    y.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(inv.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|((y, inv), x)| {
            for ((y, inv), x) in y.chunks_mut(d).zip(inv.iter_mut()).zip(x.chunks(d)) {
                let ms: T = x.iter().map(|&v| v * v).sum::<T>() / T::of(d as f64);
                let r = T::ONE / (ms + T::of(eps)).sqrt();
                *inv = r;
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                    *y = x * r * w;
                }
            }
        });
    (y, inv)
}

/// Backward of [`rms_norm`]: from `dy`, adds the input gradient to `dx` and the weight
/// gradient to `dw`.
pub fn rms_norm_backward<T: Real>(
    dy: &[T],
    x: &[T],
    inv: &[T],
    w: &[T],
    dx: &mut [T],
    dw: &mut [T],
) {
    let d = w.len();
    dx.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(dy.par_chunks(d * ROWS_PER_TASK))
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .zip(inv.par_chunks(ROWS_PER_TASK))
        .for_each(|(((dx, dy), x), inv)| {
            for (((dx, dy), x), &r) in dx.chunks_mut(d).zip(dy.chunks(d)).zip(x.chunks(d)).zip(inv)
            {
                let dot: T = dy.iter().zip(w).zip(x).map(|((&g, &w), &x)| g * w * x).sum();
                let c = dot * r * r * r / T::of(d as f64);
                for (((dx, &g), &w), &x) in dx.iter_mut().zip(dy).zip(w).zip(x) {
                    *dx += g * w * r - x * c;
                }
            }
        });
    for ((dy, x), &r) in dy.chunks(d).zip(x.chunks(d)).zip(inv) {
        for ((dw, &g), &x) in dw.iter_mut().zip(dy).zip(x) {
            *dw += g * x * r;
        }
    }
}

/// cos/sin of RoPE angles `pos · base^(−2i/head_dim)`, `i < head_dim/2`, for positions below
/// `len`: two `len × head_dim/2` tables.
pub struct RopeTable<T> {
    half: usize,
    adjacent_pairs: bool,
    cos: Vec<T>,
    sin: Vec<T>,
}

impl<T: Real> RopeTable<T> {
    /// The table for positions `0..len`; `adjacent_pairs` rotates pairs `(2i, 2i+1)` (llama
    /// GGUFs), otherwise `(i, i + half)`.
    pub fn new(len: usize, head_dim: usize, base: f64, adjacent_pairs: bool) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in 0..len {
            for i in 0..half {
                let theta = p as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(T::of(theta.cos()));
                sin.push(T::of(theta.sin()));
            }
        }
        RopeTable { half, adjacent_pairs, cos, sin }
    }

    /// Positions covered.
    pub fn len(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Whether it covers no position.
    pub fn is_empty(&self) -> bool {
        self.cos.is_empty()
    }

    /// Rotates `heads · head_dim` values from `offset` in each row (`width` apart) by its
    /// position's angles; `inverse` rotates back (the backward pass of a rotation is the
    /// opposite rotation).
    ///
    /// # Panics
    /// A position beyond the table.
    pub fn rotate(
        &self,
        rows: &mut [T],
        width: usize,
        offset: usize,
        heads: usize,
        pos: &[u32],
        inverse: bool,
    ) {
        let half = self.half;
        let hd = 2 * half;
        let adjacent_pairs = self.adjacent_pairs;
        rows.par_chunks_mut(width * ROWS_PER_TASK).zip(pos.par_chunks(ROWS_PER_TASK)).for_each(
            |(rows, pos)| {
                for (row, &p) in rows.chunks_mut(width).zip(pos) {
                    let p = p as usize;
                    let cos = &self.cos[p * half..(p + 1) * half];
                    let sin = &self.sin[p * half..(p + 1) * half];
                    for h in row[offset..offset + heads * hd].chunks_mut(hd) {
                        for i in 0..half {
                            let (a, b) =
                                if adjacent_pairs { (2 * i, 2 * i + 1) } else { (i, i + half) };
                            let (x0, x1) = (h[a], h[b]);
                            let s = if inverse { -sin[i] } else { sin[i] };
                            h[a] = x0 * cos[i] - x1 * s;
                            h[b] = x0 * s + x1 * cos[i];
                        }
                    }
                }
            },
        );
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// SwiGLU: rows of `gate_up` are `[g | u]` (`2f` wide); returns rows of `silu(g) · u`.
pub fn swiglu<T: Real>(gate_up: &[T], f: usize) -> Vec<T> {
    let rows = gate_up.len() / (2 * f);
    let mut out = vec![T::ZERO; rows * f];
    out.par_chunks_mut(f * ROWS_PER_TASK).zip(gate_up.par_chunks(2 * f * ROWS_PER_TASK)).for_each(
        |(out, gu)| {
            for (o, gu) in out.chunks_mut(f).zip(gu.chunks(2 * f)) {
                let (g, u) = gu.split_at(f);
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = g * sigmoid(g) * u;
                }
            }
        },
    );
    out
}

/// Backward of [`swiglu`]: the gradient of `[g | u]` rows from the gradient of the output.
pub fn swiglu_backward<T: Real>(d_out: &[T], gate_up: &[T], f: usize) -> Vec<T> {
    let mut d_gu = vec![T::ZERO; gate_up.len()];
    d_gu.par_chunks_mut(2 * f * ROWS_PER_TASK)
        .zip(gate_up.par_chunks(2 * f * ROWS_PER_TASK))
        .zip(d_out.par_chunks(f * ROWS_PER_TASK))
        .for_each(|((d_gu, gu), d_out)| {
            for ((dgu, gu), dy) in d_gu.chunks_mut(2 * f).zip(gu.chunks(2 * f)).zip(d_out.chunks(f))
            {
                let (g, u) = gu.split_at(f);
                let (dg, du) = dgu.split_at_mut(f);
                for i in 0..f {
                    let s = sigmoid(g[i]);
                    let silu = g[i] * s;
                    du[i] = dy[i] * silu;
                    dg[i] = dy[i] * u[i] * s * (T::ONE + g[i] * (T::ONE - s));
                }
            }
        });
    d_gu
}
