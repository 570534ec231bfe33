//! `seal train` on the CPU trainer ([`seal_model::train`]): pairs in, a full-weights adapter
//! out. The top `layers` layers (and the final norm) are fine-tuned; pairs that share a prompt
//! train as one tree; the adapter directory is rewritten at every checkpoint (temp file, then
//! rename), so it always holds the latest trained weights, and `--resume` continues the run
//! exactly.
//!
//! Useful for: [`run`], the library form of `seal train` (the CLI only parses arguments and
//! draws progress). Not for: making pairs ([`super::data`]), LoRA (the candle trainer,
//! [`super::trainer`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{Device, Tensor};

use crate::model::adapter::{write_adapter, AdapterManifest, BaseModel};
use crate::model::tokenizer::Tokenizer;
use crate::model::train::network::NamedTensor;
use crate::model::train::run::{self as runner, Outcome, Progress};
use crate::model::train::{batch, AdamWSettings, Example, Network};
use crate::train::data::{TrainingPair, TRAINING_PROMPT_STYLE};
use crate::{Error, ErrorKind, Result};

/// Everything a CPU training run needs.
#[derive(Debug, Clone)]
pub struct CpuPlan {
    /// The base model (GGUF).
    pub gguf: PathBuf,
    /// Its name as the user gave it (recorded in the adapter).
    pub model_name: String,
    /// Output directory: the adapter, and `checkpoint/`.
    pub out: PathBuf,
    /// Trained top layers (the model's depth: all of them).
    pub layers: Option<usize>,
    /// The optimizer, schedule, batching and checkpoint settings.
    pub run: runner::Plan,
    /// Pairs longer than this many tokens are dropped.
    pub max_len: usize,
    /// Continue from `out/checkpoint`.
    pub resume: bool,
    /// Fit the run into this much time: two probe steps measure the speed, and the epochs
    /// shrink (never grow) so the whole schedule, its learning-rate decay included, ends in
    /// time; `run.time_limit` stays as a safety net.
    pub budget: Option<Duration>,
}

/// What [`run`] reports before training starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Pairs used.
    pub pairs: usize,
    /// Pairs dropped as too long.
    pub dropped: usize,
    /// Distinct prompts (trees).
    pub trees: usize,
    /// Rows computed per epoch (shared prompts once).
    pub rows_per_epoch: usize,
    /// Tokens of the pairs per epoch, each pair alone.
    pub pair_tokens_per_epoch: usize,
    /// Trained parameters.
    pub trained_parameters: usize,
    /// Trained layers of all.
    pub layers: (usize, usize),
    /// Update steps planned.
    pub total_steps: usize,
    /// Passes over the pairs planned (fewer than asked when the budget is short).
    pub epochs: f64,
    /// Rows per second the probe measured (with --budget-minutes).
    pub probe_rows_per_second: Option<f64>,
}

/// Writes the trained tensors of `net` as a full-weights adapter (atomically: temp file, then
/// rename; the manifest last).
///
/// # Errors
/// The directory cannot be written.
pub fn save_full_adapter(
    dir: &Path,
    tensors: Vec<NamedTensor>,
    base: BaseModel,
    training: serde_json::Value,
) -> Result<()> {
    let map = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            Tensor::from_vec(values, shape, &Device::Cpu).map(|t| (name, t))
        })
        .collect::<candle_core::Result<HashMap<String, Tensor>>>()
        .map_err(|e| Error::new(ErrorKind::Model, "cannot convert the weights").with_source(e))?;
    let manifest =
        AdapterManifest::new("full", base, TRAINING_PROMPT_STYLE.name(), 0, 0.0, training);
    Ok(write_adapter(dir, &map, &manifest)?)
}

/// Tokenizes pairs as search tokenizes prompts; drops those longer than `max_len` tokens.
///
/// # Errors
/// A tokenizer failure.
pub fn tokenize(
    tokenizer: &Tokenizer,
    pairs: &[TrainingPair],
    max_len: usize,
) -> Result<(Vec<Example>, usize)> {
    let mut out = Vec::with_capacity(pairs.len());
    let mut dropped = 0;
    for p in pairs {
        let e = Example::tokenize(tokenizer, &p.prompt, &p.target)?;
        if e.len() > max_len {
            dropped += 1;
        } else {
            out.push(e);
        }
    }
    Ok((out, dropped))
}

/// Trains on `pairs` as `plan` says and writes the adapter into `plan.out` at every
/// checkpoint. `on_prepared` sees the plan's numbers before the first step, `on_progress`
/// every step, and `on_checkpoint` the adapter directory and step after each checkpoint (to
/// evaluate retrieval, say).
///
/// # Errors
/// No pairs, an unreadable model, a checkpoint of another run, an unwritable output.
pub fn run(
    plan: &CpuPlan,
    pairs: &[TrainingPair],
    on_prepared: impl FnOnce(&Prepared),
    on_progress: impl FnMut(&Progress),
    mut on_checkpoint: impl FnMut(&Path, usize) -> Result<()>,
) -> Result<Outcome> {
    let tokenizer = Tokenizer::from_gguf(&plan.gguf)?;
    let (examples, dropped) = tokenize(&tokenizer, pairs, plan.max_len)?;
    if examples.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "no training pair left (all empty or longer than --max-len)",
        ));
    }
    let trees = batch::trees(&examples);
    let depth = {
        let content = crate::model::tokenizer::read_gguf_metadata(&plan.gguf)?;
        crate::model::llama::read_config(&content, &plan.gguf)?.block_count
    };
    let layers = plan.layers.unwrap_or(depth);
    let mut net = Network::<f32>::from_gguf(&plan.gguf, layers)?;
    let mut run_plan = plan.run.clone();
    let mut probe = None;
    let checkpoint_dir = plan.out.join("checkpoint");
    let fitted_path = checkpoint_dir.join(FITTED_EPOCHS);
    if let (Some(budget), true) = (plan.budget, plan.resume) {
        // Continue the plan the budget fitted when the run started (its epochs are part of
        // the checkpoint's fingerprint); the time limit is this session's budget.
        if let Some(epochs) = read_fitted_epochs(&fitted_path)? {
            run_plan.epochs = epochs;
        }
        run_plan.time_limit = Some(run_plan.time_limit.map_or(budget, |t| t.min(budget)));
    }
    if let (Some(budget), false) = (plan.budget, plan.resume) {
        let rows_per_second = probe_rows_per_second(&net, &trees, &run_plan)?;
        let rows_per_epoch: usize = trees.iter().map(|t| t.rows()).sum();
        // The frozen bottom runs once per row, forward only: about a third of a trained
        // layer's cost per layer.
        let bottom_share =
            net.first_trained() as f64 / (3.0 * (depth - net.first_trained()) as f64);
        let epoch_seconds = rows_per_epoch as f64 / rows_per_second;
        let fits = (0.92 * budget.as_secs_f64() / epoch_seconds - bottom_share).max(0.05);
        if fits < run_plan.epochs {
            run_plan.epochs = (fits * 100.0).floor() / 100.0;
        }
        run_plan.time_limit = Some(run_plan.time_limit.map_or(budget, |t| t.min(budget)));
        probe = Some(rows_per_second);
    }
    let steps = runner::schedule(&trees, &run_plan);
    if steps.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            match probe {
                Some(rate) => format!(
                    "--budget-minutes is too short for one training step at the probed \
                     {rate:.0} rows/s; give more minutes or fewer --top-layers"
                ),
                None => "--epochs is too small for one training step".to_string(),
            },
        ));
    }
    on_prepared(&Prepared {
        pairs: examples.len(),
        dropped,
        trees: trees.len(),
        rows_per_epoch: trees.iter().map(|t| t.rows()).sum(),
        pair_tokens_per_epoch: examples.iter().map(Example::len).sum(),
        trained_parameters: net.params().len(),
        layers: (layers, depth),
        total_steps: steps.len(),
        epochs: run_plan.epochs,
        probe_rows_per_second: probe,
    });
    let base = BaseModel {
        name: plan.model_name.clone(),
        fingerprint: crate::model::hub::fingerprint(&plan.gguf)?,
    };
    if plan.resume && !runner::has_checkpoint(&checkpoint_dir) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("--resume: no checkpoint in {}", checkpoint_dir.display()),
        ));
    }
    let facts = |step: usize| {
        serde_json::json!({
            "trainer": "seal-model cpu",
            "pairs": examples.len(),
            "trees": trees.len(),
            "trained_layers": layers,
            "epochs": run_plan.epochs,
            "pairs_per_batch": plan.run.pairs_per_batch,
            "lr": plan.run.adamw.lr,
            "seed": plan.run.seed,
            "step": step,
            "total_steps": steps.len(),
        })
    };
    if probe.is_some() && run_plan.epochs != plan.run.epochs {
        write_fitted_epochs(&checkpoint_dir, &fitted_path, run_plan.epochs)?;
    }
    let out = plan.out.clone();
    runner::run(
        &mut net,
        &trees,
        &run_plan,
        &checkpoint_dir,
        plan.resume,
        on_progress,
        |net, step| {
            save_full_adapter(&out, net.trained_tensors(), base.clone(), facts(step))?;
            on_checkpoint(&out, step)
        },
    )
}

/// Rows per second of forward + backward + update on two batches of the plan's first epoch
/// (the second one timed), without changing `net`.
fn probe_rows_per_second(
    net: &Network<f32>,
    trees: &[batch::Tree],
    plan: &runner::Plan,
) -> Result<f64> {
    let steps = runner::schedule(trees, plan);
    let mut timed = 0.0;
    for (i, step) in steps.iter().take(2).enumerate() {
        let chosen: Vec<&batch::Tree> = step.iter().map(|&t| &trees[t]).collect();
        let packed = batch::PackedBatch::pack(chosen.iter().copied());
        let start = std::time::Instant::now();
        let mut grads = vec![0f32; net.params().len()];
        net.loss_and_grad(&packed, None, &mut grads)?;
        // The update touches every parameter about as much as the gradient did once more.
        let mut scratch = net.params().to_vec();
        crate::model::train::AdamW::new(scratch.len(), AdamWSettings::default())
            .update(&mut scratch, &grads);
        if i == 1 || steps.len() == 1 {
            timed = packed.rows() as f64 / start.elapsed().as_secs_f64().max(1e-9);
        }
    }
    Ok(timed.max(1e-9))
}

/// The file in the checkpoint directory that keeps the epochs `--budget-minutes` fitted.
const FITTED_EPOCHS: &str = "fitted-epochs.json";

fn write_fitted_epochs(dir: &Path, path: &Path, epochs: f64) -> Result<()> {
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, format!("cannot write {}", path.display())).with_source(e)
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::json!({ "epochs": epochs }).to_string() + "\n").map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn read_fitted_epochs(path: &Path) -> Result<Option<f64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(
                Error::new(ErrorKind::Io, format!("cannot read {}", path.display())).with_source(e)
            )
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("{} is not JSON", path.display()))
            .with_source(e)
    })?;
    match value.get("epochs").and_then(serde_json::Value::as_f64) {
        Some(epochs) if epochs > 0.0 => Ok(Some(epochs)),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} has no positive \"epochs\"", path.display()),
        )),
    }
}

/// The default checkpoint interval.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(300);

/// AdamW defaults of the recipe: lr 1e-4, no weight decay, clip at norm 1.
pub fn recipe_adamw(lr: f64) -> AdamWSettings {
    AdamWSettings { lr, ..AdamWSettings::default() }
}
