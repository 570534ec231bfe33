//! The training loop: tokenized pairs → length-grouped batches → loss → gradients → AdamW, with
//! a held-out loss, checkpoints that resume exactly, and a progress callback.
//!
//! Useful for: `seal train` and tests. Not for: printing (the caller renders [`Progress`]),
//! producing pairs ([`super::data`]). [`save_adapter`] writes the trained LoRA or full weights as an
//! adapter ([`crate::model::adapter`]).
//!
//! Determinism: the order of examples in epoch `e` is a function of `(seed, e)` only, so step
//! `s` always sees the same batch; a checkpoint stores the parameters, both Adam moments and the
//! step, and resuming from it continues bit for bit like an uninterrupted run (tested).

use crate::model::adapter::{write_adapter, AdapterManifest, BaseModel};
use crate::model::tokenizer::Tokenizer;
use crate::prompt::PromptStyle;
use crate::train::data::{SplitMix64, TrainingPair};
use crate::train::net::{train_err, Batch, LoraSettings, TrainMode, TrainNet};
use crate::train::optim::{AdamW, OptimSettings};
use crate::{Error, ErrorKind, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// One tokenized pair: prompt ids (with BOS when the model wants it) and target ids + EOS.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Target tokens, EOS last.
    pub target: Vec<u32>,
}

/// Tokenizes pairs as the searcher tokenizes its prompts (BOS when the tokenizer adds one,
/// the prompt, then the target and EOS). Examples longer than `max_len` tokens are dropped
/// (counted in the second value).
///
/// # Errors
/// A tokenizer failure.
pub fn tokenize_pairs(
    tokenizer: &Tokenizer,
    pairs: &[TrainingPair],
    max_len: usize,
) -> Result<(Vec<Example>, usize)> {
    let bos = tokenizer.bos_id().filter(|_| tokenizer.add_bos());
    let mut out = Vec::with_capacity(pairs.len());
    let mut dropped = 0;
    for p in pairs {
        let mut prompt: Vec<u32> = bos.into_iter().collect();
        prompt.extend(tokenizer.encode(&p.prompt)?);
        let mut target = tokenizer.encode(&p.target)?;
        target.push(tokenizer.eos_id());
        if prompt.len() + target.len() > max_len {
            dropped += 1;
            continue;
        }
        out.push(Example { prompt, target });
    }
    Ok((out, dropped))
}

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    /// Examples per batch.
    pub batch_size: usize,
    /// Update steps to run (the schedule's `total_steps` is set to this).
    pub steps: usize,
    /// Optimizer and schedule (`total_steps` is overwritten by `steps`).
    pub optim: OptimSettings,
    /// Seed of the example order.
    pub seed: u64,
    /// Compute the held-out loss every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            batch_size: 8,
            steps: 100,
            optim: OptimSettings::default(),
            seed: 0,
            eval_every: 0,
            checkpoint_every: 0,
        }
    }
}

/// What the progress callback sees after each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Loss of this step's batch (nats per target token).
    pub loss: f64,
    /// The held-out loss, when it was computed after this step.
    pub held_out_loss: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Tokens (padded batch tokens) processed per second in this session.
    pub tokens_per_second: f64,
    /// Estimated seconds left.
    pub eta_seconds: f64,
}

/// The order of example indices in `epoch`: a seeded shuffle, then batches of similar length
/// (windows of 32 batches sorted by length, the batches of a window shuffled), which keeps
/// padding low without making the order length-sorted.
pub fn epoch_batches(
    examples: &[Example],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::new(seed.wrapping_mul(0x9E37_79B9).wrapping_add(epoch));
    let mut order: Vec<usize> = (0..examples.len()).collect();
    rng.shuffle(&mut order);
    let window = batch_size * 32;
    let mut batches = Vec::new();
    for chunk in order.chunks_mut(window) {
        chunk.sort_by_key(|&i| (examples[i].prompt.len() + examples[i].target.len(), i));
        let mut group: Vec<Vec<usize>> = chunk.chunks(batch_size).map(<[usize]>::to_vec).collect();
        rng.shuffle(&mut group);
        batches.extend(group);
    }
    batches
}

fn make_batch(examples: &[Example], indices: &[usize]) -> Batch {
    let refs: Vec<(&[u32], &[u32])> = indices
        .iter()
        .map(|&i| (examples[i].prompt.as_slice(), examples[i].target.as_slice()))
        .collect();
    Batch::from_examples(&refs, 0)
}

/// The batch of update `step` (0-based): epochs follow each other, each in its own order.
pub fn batch_for_step(examples: &[Example], batch_size: usize, seed: u64, step: usize) -> Batch {
    let per_epoch = examples.len().div_ceil(batch_size).max(1);
    let epoch = (step / per_epoch) as u64;
    let batches = epoch_batches(examples, batch_size, seed, epoch);
    make_batch(examples, &batches[step % per_epoch])
}

/// Mean loss per target token over `examples`, in batches of `batch_size`, without gradients.
///
/// # Errors
/// A forward failure.
pub fn held_out_loss(net: &TrainNet, examples: &[Example], batch_size: usize) -> Result<f64> {
    let mut total = 0f64;
    let mut tokens = 0usize;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| examples[i].prompt.len() + examples[i].target.len());
    for chunk in order.chunks(batch_size.max(1)) {
        let batch = make_batch(examples, chunk);
        let loss = net.loss(&batch)?.detach();
        let loss = loss.to_dtype(candle_core::DType::F64).and_then(|l| l.to_scalar::<f64>());
        total += loss.map_err(train_err("held-out loss"))? * batch.target_tokens() as f64;
        tokens += batch.target_tokens();
    }
    Ok(if tokens == 0 { f64::NAN } else { total / tokens as f64 })
}

/// The state a checkpoint restores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointInfo {
    /// Updates done.
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Number of trainable tensors (a consistency check).
    pub params: usize,
}

const CHECKPOINT_TENSORS: &str = "checkpoint.safetensors";
const CHECKPOINT_INFO: &str = "checkpoint.json";

/// Writes parameters, Adam moments and the step into `dir` (atomically: a temporary file is
/// renamed into place).
///
/// # Errors
/// The directory cannot be written.
pub fn save_checkpoint(dir: &Path, net: &TrainNet, opt: &AdamW) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let (first, second) = opt.moments();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let cpu = |t: &Tensor| {
        t.to_device(&candle_core::Device::Cpu).map_err(train_err("cannot copy the weights"))
    };
    for (i, (name, v)) in net.params().iter().enumerate() {
        tensors.insert(format!("param.{name}"), cpu(v.as_tensor())?);
        tensors.insert(format!("adam_m.{name}"), cpu(&first[i])?);
        tensors.insert(format!("adam_v.{name}"), cpu(&second[i])?);
    }
    let tmp = dir.join(format!("{CHECKPOINT_TENSORS}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp)
        .map_err(train_err(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, dir.join(CHECKPOINT_TENSORS)).map_err(|e| io_err(dir, e))?;
    let info = CheckpointInfo {
        step: opt.step(),
        total_steps: opt.settings().total_steps,
        params: net.params().len(),
    };
    let json = serde_json::to_string_pretty(&info).expect("serializable");
    let tmp = dir.join(format!("{CHECKPOINT_INFO}.tmp"));
    std::fs::write(&tmp, json).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(CHECKPOINT_INFO)).map_err(|e| io_err(dir, e))?;
    Ok(())
}

/// Whether `dir` holds a checkpoint.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(CHECKPOINT_INFO).exists() && dir.join(CHECKPOINT_TENSORS).exists()
}

/// Restores a checkpoint written by [`save_checkpoint`] into `net` and `opt`.
///
/// # Errors
/// Missing files, or a checkpoint of another model or training mode.
pub fn load_checkpoint(dir: &Path, net: &TrainNet, opt: &mut AdamW) -> Result<CheckpointInfo> {
    let info_path = dir.join(CHECKPOINT_INFO);
    let text = std::fs::read_to_string(&info_path).map_err(|e| io_err(&info_path, e))?;
    let info: CheckpointInfo = serde_json::from_str(&text).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("{} is not a checkpoint", info_path.display()))
            .with_source(e)
    })?;
    let path = dir.join(CHECKPOINT_TENSORS);
    let tensors = candle_core::safetensors::load(&path, net.device())
        .map_err(train_err(format!("cannot read {}", path.display())))?;
    let mismatch = |what: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the checkpoint in {} does not fit this model and mode ({what}); resume with the \
                 settings it was started with",
                dir.display()
            ),
        )
    };
    if info.params != net.params().len() {
        return Err(mismatch("number of trainable tensors"));
    }
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (name, v) in net.params() {
        let get =
            |prefix: &str| tensors.get(&format!("{prefix}.{name}")).ok_or_else(|| mismatch(name));
        let p = get("param")?;
        if p.dims() != v.dims() {
            return Err(mismatch(name));
        }
        v.set(p).map_err(train_err("cannot restore a parameter"))?;
        first.push(get("adam_m")?.clone());
        second.push(get("adam_v")?.clone());
    }
    opt.restore(info.step, first, second)?;
    Ok(info)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot write {}", path.display())).with_source(e)
}

/// Runs updates from `opt.step()` to `settings.steps` (so a restored optimizer resumes), calling
/// `progress` after each, checkpointing into `checkpoint_dir` when given. Stops early, with a
/// checkpoint, when `should_stop` returns true. Returns the last held-out loss.
///
/// # Errors
/// A forward/backward failure or an unwritable checkpoint.
#[allow(clippy::too_many_arguments)]
pub fn train(
    net: &TrainNet,
    opt: &mut AdamW,
    examples: &[Example],
    held_out: &[Example],
    settings: &TrainSettings,
    checkpoint_dir: Option<&Path>,
    progress: &mut dyn FnMut(&Progress),
    should_stop: &dyn Fn() -> bool,
) -> Result<Option<f64>> {
    if examples.is_empty() {
        return Err(Error::new(ErrorKind::InvalidInput, "no training examples"));
    }
    let started = Instant::now();
    let first_step = opt.step();
    let mut tokens = 0usize;
    let mut last_held_out = None;
    for step in first_step..settings.steps {
        let batch = batch_for_step(examples, settings.batch_size, settings.seed, step);
        let loss = net.loss(&batch)?;
        let grads = loss.backward().map_err(train_err("the backward pass failed"))?;
        let report = opt.update(net.params(), &grads)?;
        let loss = loss
            .to_dtype(candle_core::DType::F64)
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(train_err("loss"))?;
        tokens += batch.batch * batch.len;
        let done = step + 1;
        let eval_now = (settings.eval_every > 0 && done.is_multiple_of(settings.eval_every))
            || done == settings.steps;
        let held_out_loss = if eval_now && !held_out.is_empty() {
            let l = held_out_loss(net, held_out, settings.batch_size)?;
            last_held_out = Some(l);
            Some(l)
        } else {
            None
        };
        let elapsed = started.elapsed().as_secs_f64();
        let per_step = elapsed / (done - first_step) as f64;
        progress(&Progress {
            step: done,
            total_steps: settings.steps,
            loss,
            held_out_loss,
            grad_norm: report.grad_norm,
            lr: report.lr,
            tokens_per_second: tokens as f64 / elapsed.max(1e-9),
            eta_seconds: per_step * (settings.steps - done) as f64,
        });
        if !loss.is_finite() {
            return Err(Error::new(
                ErrorKind::Model,
                format!("the loss became {loss} at step {done}; lower the learning rate"),
            ));
        }
        let stop = should_stop();
        if let Some(dir) = checkpoint_dir {
            let periodic =
                settings.checkpoint_every > 0 && done.is_multiple_of(settings.checkpoint_every);
            if periodic || done == settings.steps || stop {
                save_checkpoint(dir, net, opt)?;
            }
        }
        if stop {
            break;
        }
    }
    Ok(last_held_out)
}

/// Writes the trainable tensors of `net` as an adapter directory ([`write_adapter`]).
///
/// # Errors
/// The directory cannot be written.
pub fn save_adapter(
    dir: &Path,
    net: &TrainNet,
    mode: &TrainMode,
    base: BaseModel,
    prompt_style: PromptStyle,
    training: serde_json::Value,
) -> Result<()> {
    let tensors: HashMap<String, Tensor> = net
        .params()
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_dtype(DType::F32)?.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()
        .map_err(train_err("cannot convert the weights"))?;
    let (kind, rank, alpha) = match mode {
        TrainMode::Full => ("full", 0, 0.0),
        TrainMode::Lora(LoraSettings { rank, alpha, .. }) => ("lora", *rank, *alpha),
    };
    let manifest = AdapterManifest::new(kind, base, prompt_style.name(), rank, alpha, training);
    Ok(write_adapter(dir, &tensors, &manifest)?)
}
