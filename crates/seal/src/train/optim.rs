//! AdamW with a warm-up + linear-decay learning rate and clipping by global gradient norm.
//!
//! Useful for: the trainer's update step, with its state readable and restorable (for
//! checkpoints). Not for: anything else. candle-nn's `AdamW` computes the same update but keeps
//! its moments private, so a checkpoint could not resume it exactly; this one keeps them in
//! named tensors.
//!
//! The update is PyTorch's `AdamW`: `p ← p − lr·wd·p`, `m ← β₁m + (1−β₁)g`,
//! `v ← β₂v + (1−β₂)g²`, `p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.

use crate::train::net::train_err;
use crate::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Optimizer and schedule settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimSettings {
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: usize,
    /// Total steps: the rate decays linearly from `lr` at the end of warm-up to 0 here.
    pub total_steps: usize,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl Default for OptimSettings {
    fn default() -> Self {
        OptimSettings {
            lr: 1e-4,
            warmup_steps: 100,
            total_steps: 1000,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
        }
    }
}

impl OptimSettings {
    /// The learning rate of update number `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let done = (step - self.warmup_steps) as f64 / decay_steps as f64;
        self.lr * (1.0 - done).max(0.0)
    }
}

/// AdamW state over a fixed list of parameters.
pub struct AdamW {
    settings: OptimSettings,
    /// Updates done so far.
    step: usize,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateReport {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

impl AdamW {
    /// Fresh state (zero moments) for `params`.
    ///
    /// # Errors
    /// A candle failure.
    pub fn new(params: &[(String, Var)], settings: OptimSettings) -> Result<AdamW> {
        let zeros = |v: &Var| v.zeros_like().map_err(train_err("cannot allocate optimizer state"));
        let first = params.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?;
        let second = params.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?;
        Ok(AdamW { settings, step: 0, first, second })
    }

    /// Updates done so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The settings.
    pub fn settings(&self) -> &OptimSettings {
        &self.settings
    }

    /// The moments, in parameter order.
    pub fn moments(&self) -> (&[Tensor], &[Tensor]) {
        (&self.first, &self.second)
    }

    /// Restores moments and the step count (from a checkpoint).
    ///
    /// # Errors
    /// Counts or shapes that do not match the current moments.
    pub fn restore(&mut self, step: usize, first: Vec<Tensor>, second: Vec<Tensor>) -> Result<()> {
        let same = first.len() == self.first.len()
            && second.len() == self.second.len()
            && first.iter().zip(&self.first).all(|(a, b)| a.dims() == b.dims())
            && second.iter().zip(&self.second).all(|(a, b)| a.dims() == b.dims());
        if !same {
            return Err(crate::Error::new(
                crate::ErrorKind::InvalidInput,
                "the checkpoint's optimizer state does not fit this model and training mode; \
                 resume with the same --mode, --rank and layers it was started with",
            ));
        }
        self.step = step;
        self.first = first;
        self.second = second;
        Ok(())
    }

    /// One update of `params` from `grads` (clipped first when the settings say so).
    ///
    /// # Errors
    /// A candle failure.
    pub fn update(&mut self, params: &[(String, Var)], grads: &GradStore) -> Result<UpdateReport> {
        self.update_inner(params, grads).map_err(train_err("the optimizer step failed"))
    }

    fn update_inner(
        &mut self,
        params: &[(String, Var)],
        grads: &GradStore,
    ) -> candle_core::Result<UpdateReport> {
        let s = &self.settings;
        let mut sq = 0f64;
        for (_, v) in params {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
            }
        }
        let grad_norm = sq.sqrt();
        let clip = match s.max_grad_norm {
            Some(max) if grad_norm > max => max / (grad_norm + 1e-6),
            _ => 1.0,
        };
        let lr = s.lr_at(self.step);
        let t = (self.step + 1) as i32;
        let bias1 = 1.0 - s.beta1.powi(t);
        let bias2 = 1.0 - s.beta2.powi(t);
        for (i, (_, v)) in params.iter().enumerate() {
            let Some(g) = grads.get(v.as_tensor()) else { continue };
            let g = if clip < 1.0 { (g * clip)? } else { g.clone() };
            let m = ((&self.first[i] * s.beta1)? + (&g * (1.0 - s.beta1))?)?;
            let sec = ((&self.second[i] * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?;
            let denom = ((&sec / bias2)?.sqrt()? + s.eps)?;
            let step = ((&m / bias1)? / denom)?;
            let mut p = v.as_tensor().clone();
            if s.weight_decay > 0.0 {
                p = (&p * (1.0 - lr * s.weight_decay))?;
            }
            v.set(&(p - (step * lr)?)?)?;
            self.first[i] = m;
            self.second[i] = sec;
        }
        self.step += 1;
        Ok(UpdateReport { grad_norm, lr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let s = OptimSettings { lr: 1.0, warmup_steps: 4, total_steps: 12, ..Default::default() };
        let lrs: Vec<f64> = (0..13).map(|i| s.lr_at(i)).collect();
        assert_eq!(&lrs[..5], &[0.25, 0.5, 0.75, 1.0, 1.0]);
        assert_eq!(lrs[8], 0.5);
        assert_eq!(lrs[12], 0.0);
    }

    #[test]
    fn one_update_matches_the_formula_and_clipping() {
        // f(p) = 3 p² summed: gradient 6p. p = [1, -2]: g = [6, -12], ‖g‖ = 13.416.
        let p = Var::new(&[1f64, -2.0], &candle_core::Device::Cpu).unwrap();
        let params = vec![("p".to_string(), p.clone())];
        let settings = OptimSettings {
            lr: 0.1,
            warmup_steps: 0,
            total_steps: 10,
            max_grad_norm: Some(1.0),
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut opt = AdamW::new(&params, settings).unwrap();
        let loss = (p.as_tensor().sqr().unwrap() * 3.0).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let report = opt.update(&params, &grads).unwrap();
        assert!((report.grad_norm - 180f64.sqrt()).abs() < 1e-9);
        // First Adam step: m̂ / √v̂ = sign(g) (the clip scale cancels); decay then step.
        let got = p.as_tensor().to_vec1::<f64>().unwrap();
        let eps_term = |g: f64| g / (g.abs() + 1e-8);
        let want =
            [1.0 * (1.0 - 0.05) - 0.1 * eps_term(6.0), -2.0 * (1.0 - 0.05) - 0.1 * eps_term(-12.0)];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert_eq!(opt.step(), 1);
    }
}
