//! A whole training run: epochs of shuffled shared-prefix trees, packed into batches of about
//! `pairs_per_batch` pairs, AdamW updates, a cache of the frozen bottom's output per tree, and
//! checkpoints that resume bit for bit.
//!
//! Determinism: the trees of step `s` are a function of `(seed, epoch)` only, every kernel
//! gives the same bits at any thread count, and a checkpoint stores the trained parameters,
//! both Adam moments and the step; so an interrupted and resumed run ends with exactly the
//! parameters of an uninterrupted one (tested).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::adamw::{AdamW, AdamWSettings};
use super::batch::{plan_batches, PackedBatch, Tree};
use super::network::Network;
use crate::{Error, ErrorKind, Result};

/// What to train and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Passes over the trees (a fraction runs part of the last epoch).
    pub epochs: f64,
    /// A batch closes once it holds this many pairs (trees are never split).
    pub pairs_per_batch: f64,
    /// Optimizer settings; `total_steps` is set from the epochs, `warmup_steps` from
    /// `warmup_fraction`.
    pub adamw: AdamWSettings,
    /// Fraction of the steps spent warming up.
    pub warmup_fraction: f64,
    /// Seed of the tree order.
    pub seed: u64,
    /// Write a checkpoint at least this often.
    pub checkpoint_every: Duration,
    /// Stop (after a checkpoint) once this much time has passed in this session.
    pub time_limit: Option<Duration>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            epochs: 2.0,
            pairs_per_batch: 32.0,
            adamw: AdamWSettings::default(),
            warmup_fraction: 0.05,
            seed: 0,
            checkpoint_every: Duration::from_secs(300),
            time_limit: None,
        }
    }
}

/// The batches of a plan: tree indices per step.
pub fn schedule(trees: &[Tree], plan: &Plan) -> Vec<Vec<usize>> {
    let mut steps = Vec::new();
    let whole = plan.epochs.floor() as u64;
    for epoch in 0..plan.epochs.ceil() as u64 {
        let mut order: Vec<usize> = (0..trees.len()).collect();
        shuffle(&mut order, plan.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch);
        let mut batches = plan_batches(trees, &order, plan.pairs_per_batch);
        if epoch == whole {
            let keep = (batches.len() as f64 * (plan.epochs - whole as f64)).round() as usize;
            batches.truncate(keep);
        }
        steps.extend(batches);
    }
    steps
}

fn shuffle(items: &mut [usize], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// What the progress callback sees after each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Mean loss of this step's batch (nats per target token).
    pub loss: f64,
    /// Exponential moving average of the loss (weight 0.05 on the newest step).
    pub smoothed_loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Tokens of the pairs trained on per second in this session (prompt + target of every
    /// pair, as if each were trained alone: the measure PyTorch's trainers report).
    pub pair_tokens_per_second: f64,
    /// Rows actually computed per second (shared prompts once, no padding).
    pub rows_per_second: f64,
    /// Estimated seconds left.
    pub eta_seconds: f64,
}

/// `checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckpointInfo {
    format: String,
    step: usize,
    total_steps: usize,
    plan: u64,
    smoothed_loss: f64,
}

const CHECKPOINT_TENSORS: &str = "checkpoint.safetensors";
const CHECKPOINT_INFO: &str = "checkpoint.json";

/// A fingerprint of what a checkpoint must match to be resumed: the trees, the plan, the
/// trained layers and the parameter count.
fn plan_fingerprint(trees: &[Tree], plan: &Plan, net: &Network<f32>) -> u64 {
    let mut h = DefaultHasher::new();
    for t in trees {
        t.prompt.hash(&mut h);
        for (target, w) in &t.branches {
            target.hash(&mut h);
            w.to_bits().hash(&mut h);
        }
    }
    // What shapes the updates; not the checkpoint interval or the time limit.
    let what = (plan.epochs, plan.pairs_per_batch, &plan.adamw, plan.warmup_fraction, plan.seed);
    format!("{what:?}").hash(&mut h);
    net.first_trained().hash(&mut h);
    net.params().len().hash(&mut h);
    h.finish()
}

fn io_err<'a>(path: &'a Path, what: &str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::new(ErrorKind::Io, format!("cannot {what} {}", path.display())).with_source(e)
}

fn candle_err(path: &Path) -> impl FnOnce(candle_core::Error) -> Error + '_ {
    move |e| {
        Error::new(ErrorKind::Io, format!("cannot use checkpoint {}", path.display()))
            .with_source(e)
    }
}

/// Whether `dir` holds a checkpoint.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(CHECKPOINT_INFO).is_file() && dir.join(CHECKPOINT_TENSORS).is_file()
}

fn save_checkpoint(
    dir: &Path,
    net: &Network<f32>,
    opt: &AdamW,
    info: &CheckpointInfo,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir, "create"))?;
    let tensors = [("params", net.params()), ("adam_m", &opt.m[..]), ("adam_v", &opt.v[..])]
        .into_iter()
        .map(|(name, v)| {
            Tensor::from_slice(v, v.len(), &Device::Cpu).map(|t| (name.to_string(), t))
        })
        .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()
        .map_err(candle_err(dir))?;
    // Tensors first, then the info that names their step: a crash between the two renames
    // leaves tensors newer than the info, which the step check on resume refuses.
    let tmp: PathBuf = dir.join(format!("{CHECKPOINT_TENSORS}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp).map_err(candle_err(&tmp))?;
    std::fs::rename(&tmp, dir.join(CHECKPOINT_TENSORS)).map_err(io_err(dir, "write"))?;
    let json = serde_json::to_vec_pretty(info).expect("serializable");
    let tmp = dir.join(format!("{CHECKPOINT_INFO}.tmp"));
    std::fs::write(&tmp, json).map_err(io_err(&tmp, "write"))?;
    std::fs::rename(&tmp, dir.join(CHECKPOINT_INFO)).map_err(io_err(dir, "write"))?;
    Ok(())
}

fn load_checkpoint(
    dir: &Path,
    net: &mut Network<f32>,
    opt: &mut AdamW,
    plan: u64,
) -> Result<CheckpointInfo> {
    let info_path = dir.join(CHECKPOINT_INFO);
    let info: CheckpointInfo =
        serde_json::from_slice(&std::fs::read(&info_path).map_err(io_err(&info_path, "read"))?)
            .map_err(|e| {
                Error::new(ErrorKind::InvalidInput, format!("{} is damaged", info_path.display()))
                    .with_source(e)
            })?;
    if info.plan != plan {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the checkpoint in {} was made with other pairs or settings; resume with the \
                 same ones, or train into a new --out",
                dir.display()
            ),
        ));
    }
    let path = dir.join(CHECKPOINT_TENSORS);
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).map_err(candle_err(&path))?;
    let get = |name: &str, len: usize| -> Result<Vec<f32>> {
        let v: Vec<f32> = tensors
            .get(name)
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, format!("{} lacks `{name}`", path.display()))
            })?
            .to_vec1()
            .map_err(candle_err(&path))?;
        if v.len() != len {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{}: `{name}` has the wrong size", path.display()),
            ));
        }
        Ok(v)
    };
    let n = net.params().len();
    let params = get("params", n)?;
    opt.m = get("adam_m", n)?;
    opt.v = get("adam_v", n)?;
    net.params_mut().copy_from_slice(&params);
    opt.step = info.step;
    Ok(info)
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Steps done (in all sessions).
    pub steps: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Whether the plan is complete (false: stopped at the time limit, resumable).
    pub finished: bool,
    /// Smoothed loss at the end.
    pub smoothed_loss: f64,
    /// Seconds this session ran (wall, callbacks included).
    pub seconds: f64,
    /// Of those, seconds spent training (callbacks excluded).
    pub training_seconds: f64,
}

/// Runs (or, with `resume`, continues) `plan` on `trees`, checkpointing into `dir`.
/// `on_progress` sees every step; `on_checkpoint` runs after each checkpoint with the network
/// and the step (e.g. to evaluate retrieval on held-out queries), and its error (of the
/// caller's error type) stops the run.
///
/// # Errors
/// No trees, a checkpoint that does not match, an unwritable directory, a failing callback.
pub fn run<E: From<Error>>(
    net: &mut Network<f32>,
    trees: &[Tree],
    plan: &Plan,
    dir: &Path,
    resume: bool,
    mut on_progress: impl FnMut(&Progress),
    mut on_checkpoint: impl FnMut(&Network<f32>, usize) -> std::result::Result<(), E>,
) -> std::result::Result<Outcome, E> {
    if trees.is_empty() {
        return Err(Error::new(ErrorKind::InvalidInput, "no training pairs to train on").into());
    }
    let steps = schedule(trees, plan);
    let total_steps = steps.len();
    let mut settings = plan.adamw.clone();
    settings.total_steps = total_steps;
    settings.warmup_steps = (total_steps as f64 * plan.warmup_fraction).round() as usize;
    let mut opt = AdamW::new(net.params().len(), settings);
    let fingerprint = plan_fingerprint(trees, plan, net);
    let mut smoothed = f64::NAN;
    let mut start_step = 0;
    if resume {
        let info = load_checkpoint(dir, net, &mut opt, fingerprint)?;
        start_step = info.step;
        smoothed = info.smoothed_loss;
    }
    let mut cache: Vec<Option<Vec<f32>>> = vec![None; trees.len()];
    let d = net.config().embedding_length;
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let (mut pair_tokens, mut rows) = (0.0, 0usize);
    let mut callback_seconds = 0.0;
    let mut grads = vec![0f32; net.params().len()];
    let mut step = start_step;
    while step < total_steps {
        let chosen: Vec<&Tree> = steps[step].iter().map(|&t| &trees[t]).collect();
        let batch = PackedBatch::pack(chosen.iter().copied());
        let bottom = if net.first_trained() == 0 {
            None
        } else {
            // Each tree's bottom alone: the same bits whatever batch it lands in (a GEMM's
            // summation order depends on its shape), so a resumed run matches exactly.
            for &t in &steps[step] {
                if cache[t].is_none() {
                    cache[t] = Some(net.bottom(&PackedBatch::pack([&trees[t]]))?);
                }
            }
            let mut x = Vec::with_capacity(batch.rows() * d);
            for &t in &steps[step] {
                x.extend_from_slice(cache[t].as_deref().expect("cached"));
            }
            Some(x)
        };
        // The step runs on a pool thread while this one sleeps: its serial parts then do not
        // compete with the pool's threads for the cores.
        let mut result = None;
        rayon::scope(|scope| {
            scope.spawn(|_| {
                grads.par_chunks_mut(1 << 16).for_each(|g| g.fill(0.0));
                result = Some(net.loss_and_grad(&batch, bottom, &mut grads).map(|loss| {
                    let update = opt.update(net.params_mut(), &grads);
                    (loss, update)
                }));
            })
        });
        let ((sum, weight), update) = result.expect("the step ran")?;
        let loss = sum / weight.max(1e-12);
        smoothed = if smoothed.is_nan() { loss } else { 0.95 * smoothed + 0.05 * loss };
        step += 1;
        rows += batch.rows();
        pair_tokens += chosen
            .iter()
            .map(|t| {
                t.branches
                    .iter()
                    .map(|(target, w)| w * (t.prompt.len() + target.len()) as f64)
                    .sum::<f64>()
            })
            .sum::<f64>();
        let elapsed = (started.elapsed().as_secs_f64() - callback_seconds).max(1e-9);
        let done_here = step - start_step;
        on_progress(&Progress {
            step,
            total_steps,
            loss,
            smoothed_loss: smoothed,
            grad_norm: update.grad_norm,
            lr: update.lr,
            pair_tokens_per_second: pair_tokens / elapsed,
            rows_per_second: rows as f64 / elapsed,
            eta_seconds: elapsed / done_here as f64 * (total_steps - step) as f64,
        });
        let out_of_time = plan.time_limit.is_some_and(|limit| started.elapsed() >= limit);
        if step == total_steps || last_checkpoint.elapsed() >= plan.checkpoint_every || out_of_time
        {
            let info = CheckpointInfo {
                format: "seal-train-checkpoint-1".into(),
                step,
                total_steps,
                plan: fingerprint,
                smoothed_loss: smoothed,
            };
            save_checkpoint(dir, net, &opt, &info)?;
            let callback = Instant::now();
            on_checkpoint(net, step)?;
            // The interval and the speed count training time only, not the callback's.
            callback_seconds += callback.elapsed().as_secs_f64();
            last_checkpoint = Instant::now();
        }
        if out_of_time {
            break;
        }
    }
    Ok(Outcome {
        steps: step,
        total_steps,
        finished: step == total_steps,
        smoothed_loss: smoothed,
        seconds: started.elapsed().as_secs_f64(),
        training_seconds: started.elapsed().as_secs_f64() - callback_seconds,
    })
}
