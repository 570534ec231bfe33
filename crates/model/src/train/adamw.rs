//! AdamW on flat parameter slices, with a warm-up + linear-decay learning rate and clipping by
//! the global gradient norm: PyTorch's `AdamW` update,
//! `p ← p − lr·wd·p`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
//!
//! The moments are plain vectors so a checkpoint can store and restore them exactly.

use rayon::prelude::*;

use super::real::Real;

/// Optimizer and schedule settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWSettings {
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: usize,
    /// Total steps: the rate decays linearly from `lr` after warm-up to 0 here.
    pub total_steps: usize,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm.
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        AdamWSettings {
            lr: 1e-4,
            warmup_steps: 0,
            total_steps: 1000,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
        }
    }
}

impl AdamWSettings {
    /// The learning rate of update number `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        self.lr * (1.0 - (step - self.warmup_steps) as f64 / decay as f64).max(0.0)
    }
}

/// AdamW state for one flat parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    /// Settings.
    pub settings: AdamWSettings,
    /// Updates done.
    pub step: usize,
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

const CHUNK: usize = 1 << 14;

impl AdamW {
    /// Fresh state for `len` parameters.
    pub fn new(len: usize, settings: AdamWSettings) -> Self {
        AdamW { settings, step: 0, m: vec![0.0; len], v: vec![0.0; len] }
    }

    /// One update of `params` from `grads` (same length).
    ///
    /// # Panics
    /// Lengths differ.
    pub fn update<T: Real>(&mut self, params: &mut [T], grads: &[T]) -> Update {
        assert_eq!(params.len(), grads.len());
        assert_eq!(params.len(), self.m.len());
        // The norm in f64, in a fixed chunk order: the same at any thread count.
        let partial: Vec<f64> = grads
            .par_chunks(CHUNK)
            .map(|c| c.iter().map(|&g| g.f64() * g.f64()).sum::<f64>())
            .collect();
        let grad_norm = partial.iter().sum::<f64>().sqrt();
        let clip = match self.settings.max_grad_norm {
            Some(max) if grad_norm > max => max / (grad_norm + 1e-6),
            _ => 1.0,
        };
        let s = &self.settings;
        let lr = s.lr_at(self.step);
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (s.beta1, s.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let (eps, decay) = (s.eps, 1.0 - lr * s.weight_decay);
        params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    let g = g[i].f64() * clip;
                    let mi = b1 * m[i] as f64 + (1.0 - b1) * g;
                    let vi = b2 * v[i] as f64 + (1.0 - b2) * g * g;
                    m[i] = mi as f32;
                    v[i] = vi as f32;
                    let step = lr * (mi / c1) / ((vi / c2).sqrt() + eps);
                    p[i] = T::of(p[i].f64() * decay - step);
                }
            });
        Update { grad_norm, lr }
    }
}
