//! `seal train --mode lora` (and `--device cuda`): the candle trainer, kept for LoRA until the
//! CPU trainer ([`seal::train::cpu`]) has it. Slow on a CPU (see BENCHMARKS.md, "Training").

use super::train::{format_secs, read_pairs, Mode, RunArgs, Targets};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use seal::model::adapter::BaseModel;
use seal::model::{hub, tokenizer::Tokenizer};
use seal::train::data::{SplitMix64, TRAINING_PROMPT_STYLE};
use seal::train::net::{load_gguf_weights, Batch, LoraSettings, Projection, TrainMode, TrainNet};
use seal::train::optim::{AdamW, OptimSettings};
use seal::train::trainer::save_adapter;
use seal::train::trainer::{self, batch_for_step, Example, TrainSettings};
use std::time::Instant;

/// Layers a budgeted LoRA run adapts by default (see `--budget-minutes`).
const BUDGET_TOP_LAYERS: usize = 8;

pub fn train_candle(args: RunArgs) -> anyhow::Result<()> {
    let batch_size = args.batch_size.unwrap_or(8);
    let warmup = args.warmup.unwrap_or(100);
    let (Some(pairs_path), Some(out)) = (&args.pairs, &args.out) else {
        bail!("give --pairs FILE (from `seal train data`) and --out DIR");
    };
    let cache = args.cache_dir.clone().unwrap_or_else(hub::default_cache_dir);
    let gguf = hub::resolve_model(&args.model, &cache, !args.quiet)?;
    let fingerprint = hub::fingerprint(&gguf)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;

    let mut pairs = read_pairs(pairs_path)?;
    let mut rng = SplitMix64::new(args.seed ^ 0x4E1D);
    rng.shuffle(&mut pairs);
    let held_out_n = args.held_out.min(pairs.len() / 10);
    let (held_out_pairs, train_pairs) = pairs.split_at(held_out_n);
    let (examples, dropped) = trainer::tokenize_pairs(&tokenizer, train_pairs, args.max_len)?;
    let (held_out, _) = trainer::tokenize_pairs(&tokenizer, held_out_pairs, args.max_len)?;
    if examples.is_empty() {
        bail!("no training pairs in {}", pairs_path.display());
    }

    let mode = match args.mode {
        Mode::Full => TrainMode::Full,
        Mode::Lora => TrainMode::Lora(LoraSettings {
            rank: args.rank,
            alpha: args.alpha,
            projections: match args.targets {
                Targets::All => Projection::ALL.to_vec(),
                Targets::Attention => Projection::ATTENTION.to_vec(),
                Targets::Mlp => Projection::MLP.to_vec(),
            },
            top_layers: args.top_layers.or(args.budget_minutes.map(|_| BUDGET_TOP_LAYERS)),
        }),
    };
    let load_start = Instant::now();
    let device = args.device.open()?;
    let (config, weights) = load_gguf_weights(&gguf, candle_core::DType::F32, &device)?;
    let net = TrainNet::new(config, weights, &mode, args.seed)?;
    eprintln!(
        "seal: {} ({} layers), {:?}: {} trainable parameters; {} training pairs ({} too long, dropped), {} held out; loaded in {:.1} s",
        args.model,
        net.config().block_count,
        args.mode,
        net.num_trainable(),
        examples.len(),
        dropped,
        held_out.len(),
        load_start.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let checkpoint_dir = out.join("checkpoint");
    let lr = args.lr.unwrap_or(match args.mode {
        Mode::Lora => 1e-3,
        Mode::Full => 1e-4,
    });
    let epoch_steps = examples.len().div_ceil(batch_size);
    let mut steps = args.steps.unwrap_or(epoch_steps);
    let mut deadline = None;
    if let Some(minutes) = args.budget_minutes {
        let budget = minutes * 60.0;
        let per_step = probe_seconds_per_step(&net, &examples, batch_size, args.seed)?;
        // The held-out evaluations cost about a step per batch of held-out pairs each.
        let evals = 1 + steps_guess(budget, per_step) / args.eval_every.max(1);
        let eval_cost = evals as f64 * held_out.len().div_ceil(batch_size) as f64 * per_step / 3.0;
        steps = (((budget - eval_cost) / per_step).floor() as usize).max(1);
        deadline = Some(started + std::time::Duration::from_secs_f64(budget));
        eprintln!(
            "seal: budget {minutes} min: {per_step:.2} s per step of {} pairs → {steps} steps ({} pairs, {:.2} epochs)",
            batch_size,
            steps * batch_size,
            steps as f64 / epoch_steps as f64
        );
    }
    let optim = OptimSettings {
        lr,
        warmup_steps: warmup.min(steps / 10).max(1),
        total_steps: steps,
        weight_decay: args.weight_decay,
        max_grad_norm: Some(args.max_grad_norm),
        ..OptimSettings::default()
    };
    let mut opt = AdamW::new(net.params(), optim.clone())?;
    if args.resume && trainer::has_checkpoint(&checkpoint_dir) {
        let info = trainer::load_checkpoint(&checkpoint_dir, &net, &mut opt)?;
        if info.total_steps != steps {
            // Keep the schedule the run started with.
            steps = info.total_steps;
            let restored = (opt.step(), opt.moments().0.to_vec(), opt.moments().1.to_vec());
            opt = AdamW::new(net.params(), OptimSettings { total_steps: steps, ..optim.clone() })?;
            opt.restore(restored.0, restored.1, restored.2)?;
        }
        eprintln!("seal: resumed from {} at step {}/{steps}", checkpoint_dir.display(), info.step);
    } else if args.resume {
        eprintln!("seal: no checkpoint in {}; starting afresh", checkpoint_dir.display());
    }
    let settings = TrainSettings {
        batch_size,
        steps,
        optim: opt.settings().clone(),
        seed: args.seed,
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
    };
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(steps as u64) };
    bar.set_style(
        ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_position(opt.step() as u64);
    let mut last_held_out = None;
    let mut first_loss = None;
    let mut last_loss = f64::NAN;
    let mut smoothed: Option<f64> = None;
    let mut tokens_per_second = 0.0;
    let mut on_progress = |p: &trainer::Progress| {
        first_loss.get_or_insert(p.loss);
        last_loss = p.loss;
        let s = smoothed.map_or(p.loss, |s| 0.95 * s + 0.05 * p.loss);
        smoothed = Some(s);
        tokens_per_second = p.tokens_per_second;
        if let Some(h) = p.held_out_loss {
            last_held_out = Some(h);
            let line = format!(
                "step {}/{}: loss {:.4} (smoothed {s:.4}), held-out {h:.4}, lr {:.2e}, grad norm {:.2}, {:.0} tok/s",
                p.step, p.total_steps, p.loss, p.lr, p.grad_norm, p.tokens_per_second
            );
            if args.quiet {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
        bar.set_position(p.step as u64);
        bar.set_message(format!(
            "loss {s:.3} held-out {} | {:.0} tok/s | eta {}",
            last_held_out.map_or("-".into(), |h| format!("{h:.3}")),
            p.tokens_per_second,
            format_secs(p.eta_seconds)
        ));
    };
    let should_stop = || deadline.is_some_and(|d| Instant::now() >= d);
    let initial_held_out = if opt.step() == 0 && !held_out.is_empty() {
        Some(trainer::held_out_loss(&net, &held_out, batch_size)?)
    } else {
        None
    };
    if let Some(h) = initial_held_out {
        eprintln!("seal: held-out loss before training {h:.4}");
    }
    let final_held_out = trainer::train(
        &net,
        &mut opt,
        &examples,
        &held_out,
        &settings,
        Some(&checkpoint_dir),
        &mut on_progress,
        &should_stop,
    )?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    let done = opt.step();
    let final_held_out = match final_held_out {
        Some(h) => Some(h),
        None if !held_out.is_empty() => Some(trainer::held_out_loss(&net, &held_out, batch_size)?),
        None => None,
    };
    let training = serde_json::json!({
        "pairs_file": pairs_path.display().to_string(),
        "training_pairs": examples.len(),
        "held_out_pairs": held_out.len(),
        "steps": done,
        "planned_steps": steps,
        "batch_size": batch_size,
        "pairs_seen": done * batch_size,
        "lr": lr,
        "mode": format!("{mode:?}"),
        "seed": args.seed,
        "held_out_loss_before": initial_held_out,
        "held_out_loss_after": final_held_out,
        "seconds": seconds,
        "tokens_per_second": tokens_per_second,
    });
    save_adapter(
        out,
        &net,
        &mode,
        BaseModel { name: args.model.clone(), fingerprint },
        TRAINING_PROMPT_STYLE,
        training,
    )?;
    eprintln!(
        "seal: {done} steps in {}, loss {:.4} → {last_loss:.4}, held-out {} → {}; adapter written to {} (search with --adapter {})",
        format_secs(seconds),
        first_loss.unwrap_or(f64::NAN),
        initial_held_out.map_or("-".into(), |h| format!("{h:.4}")),
        final_held_out.map_or("-".into(), |h| format!("{h:.4}")),
        out.display(),
        out.display()
    );
    Ok(())
}

fn steps_guess(budget: f64, per_step: f64) -> usize {
    (budget / per_step.max(1e-9)) as usize
}

/// Seconds per training step (forward + backward, no update), the second of two probe steps.
fn probe_seconds_per_step(
    net: &TrainNet,
    examples: &[Example],
    batch_size: usize,
    seed: u64,
) -> anyhow::Result<f64> {
    let mut last = 0.0;
    for step in 0..2 {
        let batch: Batch = batch_for_step(examples, batch_size, seed, step);
        let t = Instant::now();
        let loss = net.loss(&batch)?;
        let _grads = loss.backward()?;
        last = t.elapsed().as_secs_f64();
    }
    // The optimizer update adds a little.
    Ok(last * 1.05)
}

/// `--device`: the CPU or a CUDA GPU by ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainDevice {
    Cpu,
    Cuda(usize),
}

pub fn parse_device(s: &str) -> Result<TrainDevice, String> {
    match s {
        "cpu" => Ok(TrainDevice::Cpu),
        "cuda" => Ok(TrainDevice::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(TrainDevice::Cuda)
            .ok_or_else(|| format!("unknown device {s:?}; use cpu, cuda or cuda:N")),
    }
}

impl TrainDevice {
    fn open(self) -> anyhow::Result<candle_core::Device> {
        match self {
            TrainDevice::Cpu => Ok(candle_core::Device::Cpu),
            TrainDevice::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    bail!(
                        "this seal was built without CUDA; rebuild with `cargo build --release -p seal --features cuda` \
                         on a machine with the CUDA toolkit, or train with --device cpu"
                    );
                }
                candle_core::Device::new_cuda(n)
                    .with_context(|| format!("cannot open CUDA device {n}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_cuda_needs_the_feature() {
        assert_eq!(parse_device("cpu"), Ok(TrainDevice::Cpu));
        assert_eq!(parse_device("cuda"), Ok(TrainDevice::Cuda(0)));
        assert_eq!(parse_device("cuda:3"), Ok(TrainDevice::Cuda(3)));
        assert!(parse_device("gpu").unwrap_err().contains("cpu, cuda or cuda:N"));
        assert!(parse_device("cuda:x").is_err());
        assert!(TrainDevice::Cpu.open().unwrap().is_cpu());
        if !cfg!(feature = "cuda") {
            let e = TrainDevice::Cuda(0).open().unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
