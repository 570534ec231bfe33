//! `seal eval`: evaluate a retrieval system (BM25, SEAL, or their fusion) on a BEIR-layout
//! dataset; prints a metrics table and writes a TREC run file (with its provenance sidecar) and
//! per-query metrics with provenance (JSON). `seal eval compare` compares runs ([`compare`]).
//!
//! Not for: the metrics, fusion, provenance or statistics themselves (all in
//! [`seal::eval`]); this is argument parsing, orchestration and printing.

mod compare;
mod from_runs;
mod output;
mod systems;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use seal::eval::dataset::{explain_no_query, LoadOptions};
use seal::eval::fusion::{FusionMethod, Normalization};
use seal::eval::provenance::{DatasetFingerprint, FusionRecord, Provenance, QuerySelection};
use seal::eval::{Dataset, QueryFilter};
use std::path::PathBuf;

/// Which system to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// BM25 (k1 = 0.9, b = 0.4, English stemming) over title + text.
    Bm25,
    /// SEAL: generated n-grams constrained by the FM-index.
    Seal,
    /// SEAL fused with BM25 (see --fusion).
    Hybrid,
}

/// How a hybrid fuses its two rankings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fusion {
    /// Reciprocal-rank fusion (--rrf-k).
    Rrf,
    /// Min-max normalised score interpolation (--weight).
    Minmax,
    /// z-score normalised score interpolation (--weight).
    Zscore,
}

#[derive(Subcommand, Debug)]
enum EvalCommand {
    /// Compare two or more runs on one dataset: each metric's difference to the first run, a
    /// paired significance test, 95 % intervals, wins/ties/losses per query.
    Compare(compare::CompareArgs),
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    /// The dataset folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.
    #[arg(long, value_name = "DIR", required = true)]
    dataset: Option<PathBuf>,
    /// Which qrels split to evaluate (never tune on `test`).
    #[arg(long, default_value = "test")]
    split: String,
    /// The system to evaluate (not with --from-runs, which evaluates the runs given).
    #[arg(long, value_enum, default_value_t = System::Bm25, conflicts_with = "from_runs")]
    system: System,
    /// The SEAL index (for --system seal|hybrid). Without it, an index of the dataset's corpus
    /// is built on first use (said on stderr) under --out, or under the model cache
    /// (<cache>/seal-eval/) without --out, and reused while the corpus files are unchanged.
    #[arg(long, value_name = "DIR", conflicts_with = "from_runs")]
    index: Option<PathBuf>,
    /// Where the BM25 index is kept: reused when it was built from the same corpus files, built
    /// there when missing. Without it the index is built in memory.
    #[arg(long, value_name = "DIR", conflicts_with = "from_runs")]
    bm25_index: Option<PathBuf>,
    /// Where to write run.trec (with run.trec.provenance.json) and metrics.json
    /// [default: seal-eval/<dataset>-<split>-<system>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the report (mean metrics, timings, provenance) as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Evaluate only the first N queries (after --queries).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Evaluate only these queries: a range of numbered ids with one prefix (`q0500-q2654`,
    /// `1-300`) or `@FILE` with one id a line (for ids that are not numbered).
    #[arg(long, value_name = "SPEC")]
    queries: Option<String>,
    /// Add the dataset's distractors.jsonl to the corpus.
    #[arg(long)]
    with_distractors: bool,
    /// Skip unreadable corpus lines (counted) instead of stopping at the first.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Passages retrieved per query (MAP is measured over this depth).
    #[arg(long, default_value_t = 1000)]
    depth: usize,
    /// BM25 k1.
    #[arg(long, default_value_t = 0.9, conflicts_with = "from_runs")]
    k1: f64,
    /// BM25 b.
    #[arg(long, default_value_t = 0.4, conflicts_with = "from_runs")]
    b: f64,
    /// BM25 with exact document lengths instead of one-byte quantised ones (Lucene's way, the
    /// default).
    #[arg(long, conflicts_with = "from_runs")]
    bm25_exact_lengths: bool,
    /// Hybrid fusion method. The default (z-score interpolation, SEAL weight 0.2) was chosen on
    /// SciFact's train queries with --fusion-grid (BENCHMARKS.md, "Choosing the hybrid").
    #[arg(long, value_enum, default_value_t = Fusion::Zscore)]
    fusion: Fusion,
    /// Reciprocal-rank fusion constant.
    #[arg(long, default_value_t = 60.0)]
    rrf_k: f64,
    /// Fusion weight of SEAL (BM25 gets 1 − weight), for rrf, minmax and zscore; with two
    /// --from-runs, the weight of the first.
    #[arg(long, default_value_t = 0.2)]
    weight: f64,
    /// Model for --system seal|hybrid: a known name or a GGUF path (default: the index's own
    /// model, or smollm2-135m when the index must be built).
    #[arg(long, conflicts_with = "from_runs")]
    model: Option<String>,
    /// A trained adapter directory (`seal train`) merged into the model (--system seal|hybrid);
    /// its prompt style is used.
    #[arg(long, value_name = "DIR", conflicts_with = "from_runs")]
    adapter: Option<PathBuf>,
    #[command(flatten)]
    decode: crate::cli::search::DecodeArgs,
    /// Model cache directory (default: $SEAL_CACHE_DIR, else ~/.cache/seal).
    #[arg(long, env = "SEAL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Evaluate existing TREC run files (or `seal eval --out` folders) instead of retrieving:
    /// one is measured as it is, two are fused with --fusion (the first takes --weight). A run
    /// recorded on another dataset or split is refused.
    #[arg(long, value_name = "RUN", num_args = 1..=2)]
    from_runs: Vec<PathBuf>,
    /// With two --from-runs: measure every fusion method at weights 0, 0.1, …, 1 (and RRF at
    /// k = 10 and 60) and print one line each, to choose a fusion on train/dev queries.
    #[arg(long, requires = "from_runs")]
    fusion_grid: bool,
    /// With --system seal: rank each query's generated n-grams both ways (intersective and
    /// lm+fm) from one decode; the other ranking's run and metrics go to <out>/seal-<ranking>/.
    #[arg(long, conflicts_with = "from_runs")]
    both_rankings: bool,
    /// With --system seal: also rank each query with the opposite --whole-words setting, from
    /// the same decode (to choose it on train/dev queries); written to <out>/seal-whole-words-<on|off>/.
    #[arg(long, conflicts_with = "from_runs")]
    compare_whole_words: bool,
    /// With --system seal: also rank each query with these --length-norm values (comma
    /// separated, e.g. `0,0.25,0.75`), from the same decode (to choose it on train/dev queries);
    /// written to <out>/seal-length-norm-<b>/.
    #[arg(long, value_name = "B,B,...", value_delimiter = ',', conflicts_with = "from_runs")]
    compare_length_norm: Vec<f64>,
}

/// What every path of `seal eval` shares: the arguments, the loaded dataset, and what the
/// provenance of its runs records about them.
pub(crate) struct Evaluation<'a> {
    pub args: &'a EvalArgs,
    pub dataset: Dataset,
    pub fingerprint: DatasetFingerprint,
    pub selection: QuerySelection,
}

impl Evaluation<'_> {
    /// A provenance record of `system` on this dataset and query selection.
    pub fn provenance(&self, system: &str) -> Provenance {
        Provenance::new(system, self.fingerprint.clone(), self.selection.clone(), self.args.depth)
    }

    /// The fusion method of `--fusion`, `--weight`, `--rrf-k`, and its record (the weight on
    /// `weight_on`).
    pub fn fusion(&self, weight_on: &str) -> (FusionMethod, FusionRecord) {
        let a = self.args;
        let (method, name) = match a.fusion {
            Fusion::Rrf => (FusionMethod::ReciprocalRank { k: a.rrf_k, weight: a.weight }, "rrf"),
            Fusion::Minmax => (
                FusionMethod::Interpolation {
                    weight: a.weight,
                    normalization: Normalization::MinMax,
                },
                "minmax",
            ),
            Fusion::Zscore => (
                FusionMethod::Interpolation {
                    weight: a.weight,
                    normalization: Normalization::ZScore,
                },
                "zscore",
            ),
        };
        let record = FusionRecord {
            method: name.to_owned(),
            weight: a.weight,
            weight_on: weight_on.to_owned(),
            rrf_k: (a.fusion == Fusion::Rrf).then_some(a.rrf_k),
        };
        (method, record)
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(EvalCommand::Compare(compare)) = args.command {
        return compare::run(compare);
    }
    let Some(dir) = args.dataset.clone() else {
        bail!(
            "give --dataset DIR (a BEIR-layout folder), or compare runs with `seal eval compare`"
        );
    };
    if !(0.0..=1.0).contains(&args.weight) {
        bail!("--weight must be in [0, 1] (the first ranking's share); got {}", args.weight);
    }
    let dataset = load_dataset(
        &dir,
        &args.split,
        args.queries.as_deref(),
        args.limit,
        args.with_distractors,
        args.skip_bad_lines,
    )?;
    let fingerprint = DatasetFingerprint::of(&dataset)?;
    let selection = QuerySelection::of(&dataset, args.queries.as_deref(), args.limit);
    let evaluation = Evaluation { args: &args, dataset, fingerprint, selection };

    if args.fusion_grid {
        return from_runs::fusion_grid(&evaluation);
    }
    let report = if args.from_runs.is_empty() {
        systems::evaluate_system(&evaluation)?
    } else {
        from_runs::evaluate_from_runs(&evaluation)?
    };
    output::write_outputs(&output::output_dir(&args, &report), &report)?;
    output::print_report(&report, args.json)
}

/// Loads the dataset with the query selection, explaining an empty selection, and says what was
/// loaded on stderr.
pub(crate) fn load_dataset(
    dir: &std::path::Path,
    split: &str,
    queries: Option<&str>,
    limit: Option<usize>,
    with_distractors: bool,
    skip_bad_lines: bool,
) -> anyhow::Result<Dataset> {
    let filter = queries.map(QueryFilter::parse).transpose().context("cannot use --queries")?;
    let load_options =
        LoadOptions { with_distractors, filter: filter.clone(), limit, skip_bad_lines };
    let dataset = Dataset::load(dir, split, &load_options)
        .with_context(|| format!("cannot load the dataset {}", dir.display()))?;
    if dataset.queries.is_empty() {
        bail!(explain_no_query(dir, split, filter.as_ref(), queries, limit));
    }
    let stats = dataset.corpus_stats;
    eprintln!(
        "{}: {} passages ({} empty skipped, {} bad lines skipped), {} queries ({})",
        dataset.name,
        dataset.corpus.len(),
        stats.empty_passages,
        stats.bad_lines,
        dataset.queries.len(),
        dataset.split
    );
    Ok(dataset)
}
