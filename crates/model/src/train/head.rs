//! The output of the network during training: the final RMSNorm and the vocabulary head,
//! computed only at the rows that predict a target token, and the weighted cross-entropy.
//!
//! The head is frozen (it is the token embedding in tied models); the final norm's weight is
//! trained. The loss is `Σ wᵢ·(logsumexp(zᵢ) − zᵢ[tᵢ]) / Σ wᵢ`, the mean over target tokens of
//! the pairs the batch stands for. Loss rows are processed in chunks so the logits of a whole
//! batch (`rows × vocabulary`) never exist at once.

use rayon::prelude::*;

use super::batch::PackedBatch;
use super::mat::{matmul, View};
use super::pointwise::{rms_norm, rms_norm_backward};
use super::real::Real;

/// Loss rows per chunk of logits.
const CHUNK: usize = 256;

/// The frozen vocabulary head: `vocab × d`, row-major.
pub struct Head<'a, T> {
    /// The head matrix.
    pub weight: &'a [T],
    /// Model width.
    pub d: usize,
    /// RMSNorm ε of the final norm.
    pub eps: f64,
}

/// The weighted cross-entropy of the batch's targets given the last layer's rows `x`. With
/// `grads = Some((d_x, d_norm))`, adds the gradient of the mean loss to the rows of `d_x` and
/// to the final norm's weight `d_norm`.
///
/// Returns `(Σ wᵢ·lossᵢ, Σ wᵢ)`; with `per_entry`, also pushes each entry's
/// `log p(target)` there.
pub fn loss<T: Real>(
    head: &Head<'_, T>,
    norm: &[T],
    x: &[T],
    batch: &PackedBatch,
    mut grads: Option<(&mut [T], &mut [T])>,
    mut per_entry: Option<&mut Vec<f64>>,
) -> (f64, f64) {
    let d = head.d;
    let vocab = head.weight.len() / d;
    let total_weight = batch.loss_weight();
    let mut total = 0.0;
    for chunk in (0..batch.loss_rows.len()).collect::<Vec<_>>().chunks(CHUNK) {
        let n = chunk.len();
        let mut rows = Vec::with_capacity(n * d);
        for &e in chunk {
            let r = batch.loss_rows[e];
            rows.extend_from_slice(&x[r * d..(r + 1) * d]);
        }
        let (h, inv) = rms_norm(&rows, norm, head.eps);
        let mut logits = matmul(View::rows(&h, n, d), View::rows(head.weight, vocab, d).t(), true);
        // Rows in parallel: each row's log-sum-exp (exp in T, sums in f64) and, with gradients,
        // its softmax scaled by w/W minus the one-hot, in place. Losses are summed in row
        // order afterwards, so the result does not depend on the thread count.
        let want_grads = grads.is_some();
        let row_losses: Vec<(f64, f64)> = logits
            .par_chunks_mut(vocab)
            .zip(chunk.par_iter())
            .map(|(z, &e)| {
                let target = batch.loss_targets[e] as usize;
                let w = batch.loss_weights[e];
                let max =
                    z.iter().fold(T::of(f64::NEG_INFINITY), |m, &v| if v > m { v } else { m });
                let logit = z[target].f64();
                let mut sum = 0.0;
                if want_grads {
                    for v in z.iter_mut() {
                        *v = (*v - max).exp();
                        sum += v.f64();
                    }
                } else {
                    sum = z.iter().map(|&v| (v - max).exp().f64()).sum();
                }
                let lse = max.f64() + sum.ln();
                if want_grads {
                    // d(mean loss)/dz = w/W · (softmax(z) − onehot(target)).
                    let scale = T::of(w / total_weight / sum);
                    for v in z.iter_mut() {
                        *v *= scale;
                    }
                    z[target] -= T::of(w / total_weight);
                }
                (w * (lse - logit), logit - lse)
            })
            .collect();
        for (loss, log_p) in row_losses {
            total += loss;
            if let Some(out) = per_entry.as_mut() {
                out.push(log_p);
            }
        }
        if let Some((d_x, d_norm)) = grads.as_mut() {
            let d_h =
                matmul(View::rows(&logits, n, vocab), View::rows(head.weight, vocab, d), true);
            let mut d_rows = vec![T::ZERO; n * d];
            rms_norm_backward(&d_h, &rows, &inv, norm, &mut d_rows, d_norm);
            for (i, &e) in chunk.iter().enumerate() {
                let r = batch.loss_rows[e];
                for (a, &b) in d_x[r * d..(r + 1) * d].iter_mut().zip(&d_rows[i * d..(i + 1) * d]) {
                    *a += b;
                }
            }
        }
    }
    (total, total_weight)
}
