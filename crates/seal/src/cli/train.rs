//! `seal train`: make training pairs (`seal train data`) and fine-tune the model on them
//! (`seal train --pairs FILE --out DIR`), writing an adapter directory that `seal search`,
//! `seal eval` (`--adapter DIR`) and `seal model merge` use. Glue over [`seal::train`].

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use seal::corpus::{read_corpus, Passage, ReadOptions};
use seal::eval::dataset::LoadOptions;
use seal::eval::Dataset;
use seal::model::{hub, tokenizer::Tokenizer};
use seal::train::adapter::{save_adapter, BaseModel};
use seal::train::data::{
    count_kinds, supervised_pairs, unsupervised_pairs, RecipeSettings, SplitMix64, TrainingPair,
    TRAINING_PROMPT_STYLE,
};
use seal::train::net::{load_gguf_weights, Batch, LoraSettings, Projection, TrainMode, TrainNet};
use seal::train::optim::{AdamW, OptimSettings};
use seal::train::trainer::{self, batch_for_step, Example, TrainSettings};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Fine-tune the model on training pairs (see `seal train data`), writing an adapter.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrainArgs {
    #[command(subcommand)]
    command: Option<TrainCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum TrainCommand {
    /// Write training pairs in SEAL's recipe as JSONL ({prompt, target, kind}).
    Data(DataArgs),
}

#[derive(Args, Debug)]
struct DataArgs {
    /// A BEIR-layout dataset folder: its corpus.jsonl gives unsupervised pairs, its
    /// qrels/<split>.tsv (when present) supervised pairs.
    #[arg(long, value_name = "DIR", required_unless_present = "corpus")]
    dataset: Option<PathBuf>,
    /// A corpus file alone (BEIR JSONL, DPR TSV, KILT TSV): unsupervised pairs only.
    #[arg(long, value_name = "FILE", conflicts_with = "dataset")]
    corpus: Option<PathBuf>,
    /// The qrels split of the supervised pairs (never `test`).
    #[arg(long, default_value = "train")]
    split: String,
    /// Output JSONL file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Seed of the span sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the corpus pairs, even where judged queries exist.
    #[arg(long)]
    unsupervised_only: bool,
}

/// What to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Low-rank adapters; the base model stays frozen.
    Lora,
    /// Every weight.
    Full,
}

/// Which projections get LoRA adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Targets {
    /// Attention and MLP projections.
    All,
    /// Q, K, V and output projections.
    Attention,
    /// Gate, up and down projections.
    Mlp,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Training pairs (JSONL from `seal train data`).
    #[arg(long, value_name = "FILE")]
    pairs: Option<PathBuf>,
    /// Output directory: the adapter (adapter.safetensors, manifest.json) and checkpoint/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Base model: a known name or a GGUF path.
    #[arg(long, default_value = hub::DEFAULT_MODEL)]
    model: String,
    /// What to train.
    #[arg(long, value_enum, default_value_t = Mode::Lora)]
    mode: Mode,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// LoRA alpha (updates are scaled by alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    alpha: f64,
    /// LoRA projections.
    #[arg(long, value_enum, default_value_t = Targets::All)]
    targets: Targets,
    /// Adapt only the top N layers (LoRA); gradients stop below them, so steps are cheaper
    /// [default: all layers; 8 with --budget-minutes].
    #[arg(long, value_name = "N")]
    top_layers: Option<usize>,
    /// Peak learning rate [default: 1e-3 for LoRA, 1e-4 for full].
    #[arg(long)]
    lr: Option<f64>,
    /// Warm-up steps (linear), then linear decay to 0 at the last step.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Update steps [default: one epoch over the pairs].
    #[arg(long, conflicts_with = "budget_minutes")]
    steps: Option<usize>,
    /// Time budget: times two probe steps, plans as many steps as fit (the schedule decays to 0
    /// at the end of the budget) and stops at the budget in any case. With LoRA it adapts the
    /// top 8 layers unless --top-layers says otherwise (on a 2-core CPU a step through all 30
    /// layers of SmolLM2 costs several times more, and its activations need > 17 GB at batch 16).
    #[arg(long, value_name = "MINUTES")]
    budget_minutes: Option<f64>,
    /// Clip gradients to this global norm.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Pairs set aside for the held-out loss.
    #[arg(long, default_value_t = 64)]
    held_out: usize,
    /// Held-out loss every N steps (and at the end).
    #[arg(long, default_value_t = 50)]
    eval_every: usize,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 25)]
    checkpoint_every: usize,
    /// Continue from OUT/checkpoint (same pairs and settings).
    #[arg(long)]
    resume: bool,
    /// Seed of the held-out split, the example order and the adapter initialization.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Longest example in tokens (longer ones are dropped).
    #[arg(long, default_value_t = 256)]
    max_len: usize,
    /// Where the training network runs: `cpu`, or `cuda` / `cuda:N` in a binary built with
    /// `--features cuda` (the same candle code; unverified here: no GPU was at hand).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: TrainDevice,
    /// Model cache directory (default: $SEAL_CACHE_DIR, else ~/.cache/seal).
    #[arg(long, env = "SEAL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// No progress bar (one line per evaluation instead).
    #[arg(long, short)]
    quiet: bool,
}

/// Layers a budgeted LoRA run adapts by default (see `--budget-minutes`).
const BUDGET_TOP_LAYERS: usize = 8;

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    match args.command {
        Some(TrainCommand::Data(d)) => data(d),
        None => train(args.run),
    }
}

fn data(args: DataArgs) -> anyhow::Result<()> {
    let settings = RecipeSettings { seed: args.seed, ..RecipeSettings::default() };
    if args.split == "test" {
        bail!("training pairs from the `test` split would leak the evaluation; use `train`");
    }
    let (corpus, mut pairs, supervised_from): (Vec<Passage>, Vec<TrainingPair>, Option<String>) =
        match (&args.dataset, &args.corpus) {
            (Some(dir), _) => {
                let qrels = dir.join("qrels").join(format!("{}.tsv", args.split));
                if qrels.exists() && !args.unsupervised_only {
                    let ds = Dataset::load(dir, &args.split, &LoadOptions::default())?;
                    let queries: Vec<(String, String)> =
                        ds.queries.iter().map(|q| (q.id.clone(), q.text.clone())).collect();
                    let pairs = supervised_pairs(&queries, &ds.qrels, &ds.corpus, &settings);
                    let from = format!("{} judged queries of {}", queries.len(), qrels.display());
                    (ds.corpus, pairs, Some(from))
                } else {
                    (read_passages(&dir.join("corpus.jsonl"))?, Vec::new(), None)
                }
            }
            (None, Some(file)) => (read_passages(file)?, Vec::new(), None),
            (None, None) => bail!("give --dataset DIR or --corpus FILE"),
        };
    pairs.extend(unsupervised_pairs(&corpus, &settings));
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut w = BufWriter::new(file);
    for p in &pairs {
        serde_json::to_writer(&mut w, p)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    eprintln!(
        "wrote {} pairs to {} ({} passages{}; prompt style `{}`: search a model trained on them with --prompt {} or --adapter)",
        pairs.len(),
        args.out.display(),
        corpus.len(),
        supervised_from.map(|s| format!(", {s}")).unwrap_or_else(|| ", no judged queries".into()),
        TRAINING_PROMPT_STYLE,
        TRAINING_PROMPT_STYLE
    );
    for (kind, n) in count_kinds(&pairs) {
        eprintln!("  {kind:?}: {n}");
    }
    Ok(())
}

fn read_passages(path: &Path) -> anyhow::Result<Vec<Passage>> {
    let reader = read_corpus(path, None, ReadOptions::default())?;
    reader.collect::<seal::Result<Vec<_>>>().with_context(|| format!("reading {}", path.display()))
}

fn read_pairs(path: &Path) -> anyhow::Result<Vec<TrainingPair>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        pairs.push(serde_json::from_str(&line).with_context(|| {
            format!(
                "{} line {}: not a training pair {{prompt, target, kind}}",
                path.display(),
                i + 1
            )
        })?);
    }
    Ok(pairs)
}

fn train(args: RunArgs) -> anyhow::Result<()> {
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
    let epoch_steps = examples.len().div_ceil(args.batch_size);
    let mut steps = args.steps.unwrap_or(epoch_steps);
    let mut deadline = None;
    if let Some(minutes) = args.budget_minutes {
        let budget = minutes * 60.0;
        let per_step = probe_seconds_per_step(&net, &examples, args.batch_size, args.seed)?;
        // The held-out evaluations cost about a step per batch of held-out pairs each.
        let evals = 1 + steps_guess(budget, per_step) / args.eval_every.max(1);
        let eval_cost =
            evals as f64 * held_out.len().div_ceil(args.batch_size) as f64 * per_step / 3.0;
        steps = (((budget - eval_cost) / per_step).floor() as usize).max(1);
        deadline = Some(started + std::time::Duration::from_secs_f64(budget));
        eprintln!(
            "seal: budget {minutes} min: {per_step:.2} s per step of {} pairs → {steps} steps ({} pairs, {:.2} epochs)",
            args.batch_size,
            steps * args.batch_size,
            steps as f64 / epoch_steps as f64
        );
    }
    let optim = OptimSettings {
        lr,
        warmup_steps: args.warmup.min(steps / 10).max(1),
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
        batch_size: args.batch_size,
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
        Some(trainer::held_out_loss(&net, &held_out, args.batch_size)?)
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
        None if !held_out.is_empty() => {
            Some(trainer::held_out_loss(&net, &held_out, args.batch_size)?)
        }
        None => None,
    };
    let training = serde_json::json!({
        "pairs_file": pairs_path.display().to_string(),
        "training_pairs": examples.len(),
        "held_out_pairs": held_out.len(),
        "steps": done,
        "planned_steps": steps,
        "batch_size": args.batch_size,
        "pairs_seen": done * args.batch_size,
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

fn format_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `--device`: the CPU or a CUDA GPU by ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrainDevice {
    Cpu,
    Cuda(usize),
}

fn parse_device(s: &str) -> Result<TrainDevice, String> {
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
