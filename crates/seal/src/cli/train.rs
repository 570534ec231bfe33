//! `seal train`: make training pairs (`seal train data`) and fine-tune the model on them
//! (`seal train --pairs FILE --out DIR`), writing an adapter directory that `seal search`,
//! `seal eval` (`--adapter DIR`) and `seal model merge` use. Glue over [`seal::train`].

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use seal::eval::dataset::QueryFilter;
use seal::model::hub;
use seal::train::data::{count_kinds, RecipeSettings, TrainingPair, TRAINING_PROMPT_STYLE};
use seal::train::dataset_pairs::{corpus_file_pairs, dataset_pairs, QuerySelection};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

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
    /// The qrels split of the supervised pairs. `test` only with --queries naming the
    /// development slice trained on (e.g. NQ's q0000-q0399); evaluate on the other queries.
    #[arg(long, default_value = "train")]
    split: String,
    /// Only these judged queries give supervised pairs: a range of numbered ids
    /// (`q0000-q0399`) or @FILE with one id a line.
    #[arg(long, value_name = "SPEC")]
    queries: Option<String>,
    /// Output JSONL file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Seed of the span sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the corpus pairs, even where judged queries exist.
    #[arg(long)]
    unsupervised_only: bool,
    /// Hold these judged queries out of the pairs (to choose a recipe on them later): a range
    /// of numbered ids (`q0400-q0499`) or @FILE with one id a line.
    #[arg(long, value_name = "SPEC")]
    exclude_queries: Option<String>,
}

/// What to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Mode {
    /// Full fine-tuning of the top layers (--top-layers, default all) on the CPU trainer.
    Full,
    /// Low-rank adapters on the candle trainer (slow on a CPU); the base model stays frozen.
    Lora,
}

/// Which projections get LoRA adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Targets {
    /// Attention and MLP projections.
    All,
    /// Q, K, V and output projections.
    Attention,
    /// Gate, up and down projections.
    Mlp,
}

#[derive(Args, Debug)]
pub(super) struct RunArgs {
    /// Training pairs (JSONL from `seal train data`).
    #[arg(long, value_name = "FILE")]
    pub pairs: Option<PathBuf>,
    /// Output directory: the adapter (adapter.safetensors, manifest.json, rewritten at every
    /// checkpoint) and checkpoint/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Base model: a known name or a GGUF path.
    #[arg(long, default_value = hub::DEFAULT_MODEL)]
    pub model: String,
    /// What to train: `full` fine-tunes the top layers on the CPU trainer (pairs that share a
    /// prompt train as one tree, no padding, the head only at target tokens); `lora` uses the
    /// older candle trainer.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    /// Train only the top N layers; the frozen layers below run once per distinct prompt and
    /// their output is cached [default: all layers (full); all, or 8 with --budget-minutes (LoRA)].
    #[arg(long, value_name = "N")]
    pub top_layers: Option<usize>,
    /// Passes over the pairs (full; a fraction trains part of the last pass).
    #[arg(long, default_value_t = 2.0)]
    pub epochs: f64,
    /// Only the supervised pairs (query → title, query → span): SEAL's recipe without the corpus
    /// pairs, about a third of the tokens.
    #[arg(long)]
    pub supervised_only: bool,
    /// Peak learning rate [default: 1e-4 for full, 1e-3 for LoRA].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warm-up steps (linear), then linear decay to 0 at the last step [default: 5 % of the
    /// steps (full), 100 (LoRA)].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Pairs per step [default: 32 (full), 8 (LoRA)]. With shared prompts a step holds whole
    /// prompts' pairs and closes once it reaches this many.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Time limit in minutes. Full: two probe steps measure the speed and the epochs shrink (never
    /// grow) so the whole schedule, its learning-rate decay included, ends in time; it stops at
    /// the limit in any case (continue with --resume; with --budget-minutes again it continues
    /// the fitted plan, and the minutes are that session's limit). LoRA: plans as many steps as
    /// fit.
    #[arg(long, value_name = "MINUTES")]
    pub budget_minutes: Option<f64>,
    /// Write a checkpoint (and the adapter) at least this often (full).
    #[arg(long, value_name = "MINUTES", default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// Evaluate retrieval while training (full): SEAL's nDCG@10 on these held-out queries of
    /// --dev-dataset, searched in --dev-index, after a checkpoint at most every
    /// --dev-every-minutes, and at the end. A range of numbered ids (`q0400-q0499`) or @FILE.
    #[arg(long, value_name = "SPEC", requires_all = ["dev_dataset", "dev_index"])]
    pub dev_queries: Option<String>,
    /// The dataset folder of --dev-queries (its qrels/<--dev-split>.tsv judges them).
    #[arg(long, value_name = "DIR")]
    pub dev_dataset: Option<PathBuf>,
    /// An index of that dataset's corpus, built with the base model (`seal index`).
    #[arg(long, value_name = "DIR")]
    pub dev_index: Option<PathBuf>,
    /// The qrels split of --dev-queries (never `test`).
    #[arg(long, default_value = "train")]
    pub dev_split: String,
    /// Minutes between retrieval evaluations.
    #[arg(long, default_value_t = 20.0)]
    pub dev_every_minutes: f64,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// LoRA alpha (updates are scaled by alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f64,
    /// LoRA projections.
    #[arg(long, value_enum, default_value_t = Targets::All)]
    pub targets: Targets,
    /// Update steps (LoRA) [default: one epoch over the pairs].
    #[arg(long, conflicts_with = "budget_minutes")]
    pub steps: Option<usize>,
    /// Clip gradients to this global norm.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Pairs set aside for the held-out loss (LoRA).
    #[arg(long, default_value_t = 64)]
    pub held_out: usize,
    /// Held-out loss every N steps, and at the end (LoRA).
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    /// Checkpoint every N steps, and at the end (LoRA).
    #[arg(long, default_value_t = 25)]
    pub checkpoint_every: usize,
    /// Continue from OUT/checkpoint (same pairs and settings).
    #[arg(long)]
    pub resume: bool,
    /// Seed of the pair order (and of the LoRA initialization and held-out split).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longest pair in tokens (longer ones are dropped).
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Where the candle trainer runs (LoRA): `cpu`, or `cuda` / `cuda:N` in a binary built with
    /// `--features cuda` (unverified here: no GPU was at hand).
    #[arg(long, default_value = "cpu", value_parser = super::train_candle::parse_device)]
    pub device: super::train_candle::TrainDevice,
    /// Model cache directory (default: $SEAL_CACHE_DIR, else ~/.cache/seal).
    #[arg(long, env = "SEAL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// No progress bar (a line per checkpoint instead).
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    match args.command {
        Some(TrainCommand::Data(d)) => data(d),
        None if args.run.mode == Mode::Lora
            || args.run.device != super::train_candle::TrainDevice::Cpu =>
        {
            super::train_candle::train_candle(args.run)
        }
        None => super::train_cpu::train_cpu(args.run),
    }
}

fn data(args: DataArgs) -> anyhow::Result<()> {
    let settings = RecipeSettings { seed: args.seed, ..RecipeSettings::default() };
    let made = match (&args.dataset, &args.corpus) {
        (Some(dir), _) => {
            let selection = QuerySelection {
                only: args.queries.as_deref().map(QueryFilter::parse).transpose()?,
                exclude: args.exclude_queries.as_deref().map(QueryFilter::parse).transpose()?,
            };
            if args.split == "test" && selection.only.is_some() {
                eprintln!(
                    "seal: training on queries of the `test` split: evaluate on the others only \
                     (e.g. --queries with the complementary range)"
                );
            }
            dataset_pairs(dir, &args.split, &selection, args.unsupervised_only, &settings)?
        }
        (None, Some(file)) => corpus_file_pairs(file, &settings)?,
        (None, None) => bail!("give --dataset DIR or --corpus FILE"),
    };
    if made.queries_left_out > 0 {
        eprintln!(
            "seal: --queries/--exclude-queries left out {} of {} judged queries",
            made.queries_left_out,
            made.queries_left_out + made.queries_used
        );
    }
    let pairs = &made.pairs;
    let tmp = args.out.with_extension("jsonl.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    for p in pairs {
        serde_json::to_writer(&mut w, p)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} pairs to {} ({} passages, {}; prompt style `{}`: search a model trained on them with --prompt {} or --adapter)",
        pairs.len(),
        args.out.display(),
        made.passages,
        if made.queries_used > 0 {
            format!("{} judged queries", made.queries_used)
        } else {
            "no judged queries".to_string()
        },
        TRAINING_PROMPT_STYLE,
        TRAINING_PROMPT_STYLE
    );
    for (kind, n) in count_kinds(pairs) {
        eprintln!("  {kind:?}: {n}");
    }
    Ok(())
}

pub(super) fn read_pairs(path: &Path) -> anyhow::Result<Vec<TrainingPair>> {
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

pub(super) fn format_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
