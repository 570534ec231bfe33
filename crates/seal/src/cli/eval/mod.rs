//! `seal eval`: evaluate a retrieval system (BM25, SEAL, or their fusion) on a BEIR-layout
//! dataset; prints a metrics table and writes a TREC run file and per-query metrics (JSON).

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use seal::bm25::{Bm25Index, Bm25Params};
use seal::eval::dataset::LoadOptions;
use seal::eval::fusion::{fuse_runs, FusionMethod, Hybrid, Normalization};
use seal::eval::harness::evaluate_run;
use seal::eval::run::{read_trec_run, write_trec_run};
use seal::eval::{evaluate, Dataset, EvalOptions, EvalReport, QueryFilter};
use seal::eval::{SealRetriever, SideRanking};
use seal::score::{Ranking, ScoringSettings};
use std::path::{Path, PathBuf};
use std::time::Instant;

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

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The dataset folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.
    #[arg(long, value_name = "DIR")]
    dataset: PathBuf,
    /// Which qrels split to evaluate (never tune on `test`).
    #[arg(long, default_value = "test")]
    split: String,
    /// The system to evaluate.
    #[arg(long, value_enum, default_value_t = System::Bm25)]
    system: System,
    /// The SEAL index (for --system seal|hybrid).
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// Where the BM25 index is kept: reused when it was built from the same corpus files, built
    /// there when missing. Without it the index is built in memory.
    #[arg(long, value_name = "DIR")]
    bm25_index: Option<PathBuf>,
    /// Where to write run.trec and metrics.json [default: seal-eval/<dataset>-<split>-<system>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the report (mean metrics, timings) as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Evaluate only the first N queries (after --queries).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Evaluate only these queries: a range of numbered ids (`q0500-q2654`, `1-300`) or `@FILE`
    /// with one id a line.
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
    #[arg(long, default_value_t = 0.9)]
    k1: f64,
    /// BM25 b.
    #[arg(long, default_value_t = 0.4)]
    b: f64,
    /// BM25 with exact document lengths instead of one-byte quantised ones (Lucene's way, the
    /// default).
    #[arg(long)]
    bm25_exact_lengths: bool,
    /// Hybrid fusion method. The default (z-score interpolation, SEAL weight 0.2) was chosen on
    /// SciFact's train queries with --fusion-grid (BENCHMARKS.md, "Choosing the hybrid").
    #[arg(long, value_enum, default_value_t = Fusion::Zscore)]
    fusion: Fusion,
    /// Reciprocal-rank fusion constant.
    #[arg(long, default_value_t = 60.0)]
    rrf_k: f64,
    /// Fusion weight of SEAL (BM25 gets 1 − weight), for rrf, minmax and zscore.
    #[arg(long, default_value_t = 0.2)]
    weight: f64,
    /// Model for --system seal|hybrid: a known name or a GGUF path (default: the index's own
    /// model, or smollm2-135m when the index must be built).
    #[arg(long)]
    model: Option<String>,
    /// A trained adapter directory (`seal train`) merged into the model (--system seal|hybrid);
    /// its prompt style is used.
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    #[command(flatten)]
    decode: crate::cli::search::DecodeArgs,
    /// Model cache directory (default: $SEAL_CACHE_DIR, else ~/.cache/seal).
    #[arg(long, env = "SEAL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Evaluate existing TREC run files instead of retrieving: one file is measured as it is,
    /// two are fused with --fusion (the first takes --weight).
    #[arg(long, value_name = "RUN", num_args = 1..=2)]
    from_runs: Vec<PathBuf>,
    /// With two --from-runs: measure every fusion method at weights 0, 0.1, …, 1 (and RRF at
    /// k = 10 and 60) and print one line each, to choose a fusion on train/dev queries.
    #[arg(long, requires = "from_runs")]
    fusion_grid: bool,
    /// With --system seal: rank each query's generated n-grams both ways (intersective and
    /// lm+fm) from one decode; the other ranking's run and metrics go to <out>/seal-<ranking>/.
    #[arg(long)]
    both_rankings: bool,
    /// With --system seal: also rank each query with the opposite --whole-words setting, from
    /// the same decode (to choose it on train/dev queries); written to <out>/seal-whole-words-<on|off>/.
    #[arg(long)]
    compare_whole_words: bool,
    /// With --system seal: also rank each query with these --length-norm values (comma
    /// separated, e.g. `0,0.25,0.75`), from the same decode (to choose it on train/dev queries);
    /// written to <out>/seal-length-norm-<b>/.
    #[arg(long, value_name = "B,B,...", value_delimiter = ',')]
    compare_length_norm: Vec<f64>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let filter = args.queries.as_deref().map(QueryFilter::parse).transpose()?;
    let load_options = LoadOptions {
        with_distractors: args.with_distractors,
        filter,
        limit: args.limit,
        skip_bad_lines: args.skip_bad_lines,
    };
    let dataset = Dataset::load(&args.dataset, &args.split, &load_options)
        .with_context(|| format!("cannot load the dataset {}", args.dataset.display()))?;
    if dataset.queries.is_empty() {
        bail!("no query to evaluate: the split has no judged query that passes --queries/--limit");
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
    let method = match args.fusion {
        Fusion::Rrf => FusionMethod::ReciprocalRank { k: args.rrf_k, weight: args.weight },
        Fusion::Minmax => FusionMethod::Interpolation {
            weight: args.weight,
            normalization: Normalization::MinMax,
        },
        Fusion::Zscore => FusionMethod::Interpolation {
            weight: args.weight,
            normalization: Normalization::ZScore,
        },
    };
    let options = EvalOptions { depth: args.depth, progress: true };

    if args.fusion_grid {
        return fusion_grid(&args, &dataset);
    }
    let report = if !args.from_runs.is_empty() {
        let first = read_trec_run(&args.from_runs[0])?;
        let (run, name) = match args.from_runs.get(1) {
            None => (first, file_stem(&args.from_runs[0])),
            Some(second) => {
                let second_run = read_trec_run(second)?;
                let name = format!("{}+{}", file_stem(&args.from_runs[0]), file_stem(second));
                (fuse_runs(&first, &second_run, method, args.depth), name)
            }
        };
        evaluate_run(&dataset, run, &name)
    } else {
        let params =
            Bm25Params { k1: args.k1, b: args.b, quantized_lengths: !args.bm25_exact_lengths };
        match args.system {
            System::Bm25 => {
                let bm25 = bm25_index(&dataset, args.bm25_index.as_deref())?.with_params(params);
                evaluate(&dataset, &bm25, &options)?
            }
            System::Seal => {
                let mut seal = seal_retriever(&args, &dataset)?;
                let main = seal.settings.scoring.clone();
                if args.both_rankings {
                    let ranking = match main.ranking {
                        Ranking::Intersective => Ranking::LmFm,
                        Ranking::LmFm => Ranking::Intersective,
                    };
                    let scoring = ScoringSettings { ranking, ..main.clone() };
                    seal.side_rankings.push(SideRanking::new(format!("seal-{ranking}"), scoring));
                }
                if args.compare_whole_words {
                    let whole_words = !main.whole_words;
                    let name =
                        format!("seal-whole-words-{}", if whole_words { "on" } else { "off" });
                    let scoring = ScoringSettings { whole_words, ..main.clone() };
                    seal.side_rankings.push(SideRanking::new(name, scoring));
                }
                for &length_norm in &args.compare_length_norm {
                    let scoring = ScoringSettings { length_norm, ..main.clone() };
                    scoring.validate()?;
                    let name = format!("seal-length-norm-{length_norm}");
                    seal.side_rankings.push(SideRanking::new(name, scoring));
                }
                let mut report = evaluate(&dataset, &seal, &options)?;
                report.stages = seal.stage_timings();
                for side in &seal.side_rankings {
                    let run =
                        side.run(dataset.queries.iter().map(|q| (q.id.as_str(), q.text.as_str())));
                    let name = &side.name;
                    let mut side_report = evaluate_run(&dataset, run, name);
                    side_report.latencies = report.latencies.clone();
                    side_report.total_seconds = report.total_seconds;
                    let out = output_dir(&args, &report).join(name.replace('+', "_"));
                    write_outputs_to(&out, &side_report)?;
                    if !args.json {
                        print!("{}", side_report.table());
                    }
                }
                report
            }
            System::Hybrid => {
                if args.both_rankings
                    || args.compare_whole_words
                    || !args.compare_length_norm.is_empty()
                {
                    bail!(
                        "--both-rankings, --compare-whole-words and --compare-length-norm work \
                         with --system seal"
                    );
                }
                let seal = seal_retriever(&args, &dataset)?;
                let bm25 = bm25_index(&dataset, args.bm25_index.as_deref())?.with_params(params);
                let hybrid = Hybrid {
                    first: seal,
                    second: bm25,
                    method,
                    depth: args.depth,
                    name: "hybrid".to_string(),
                };
                evaluate(&dataset, &hybrid, &options)?
            }
        }
    };
    write_outputs(&args, &report)?;
    if args.json {
        let mut json = report.to_json();
        if let Some(object) = json.as_object_mut() {
            object.remove("per_query");
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// The SEAL retriever over `--index`, or over an index of the dataset's corpus built on first use
/// and kept under `--out` when given, else in the model cache
/// (`<cache>/seal-eval/<dataset>-seal-index-<model>`): never relative to the working directory,
/// so an evaluation run inside a checkout leaves no build output in it.
fn seal_retriever(args: &EvalArgs, dataset: &Dataset) -> anyhow::Result<Box<SealRetriever>> {
    use seal::indexer::{build_index, read_manifest, ModelRef};
    use seal::model::{hub, tokenizer::Tokenizer};
    let cache = args.cache_dir.clone().unwrap_or_else(hub::default_cache_dir);
    let index = match &args.index {
        Some(dir) => dir.clone(),
        None => {
            let model = args.model.as_deref().unwrap_or(hub::DEFAULT_MODEL);
            let suffix = if args.with_distractors { "-distractors" } else { "" };
            let model_tag: String =
                model.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
            let name = format!("{}{suffix}-seal-index-{model_tag}", dataset.name);
            let dir = match &args.out {
                Some(out) => out.join(name),
                None => cache.join("seal-eval").join(name),
            };
            match read_manifest(&dir) {
                Ok(m) if m.num_docs == dataset.corpus.len() => {
                    eprintln!("seal: reusing the index in {}", dir.display());
                }
                _ => {
                    let gguf = hub::resolve_model(model, &cache, true)?;
                    let tokenizer = Tokenizer::from_gguf(&gguf)?;
                    let bars = crate::cli::progress::Bars::new(true);
                    let m = build_index(
                        dataset.corpus.clone(),
                        &tokenizer,
                        ModelRef { name: model.to_owned(), fingerprint: hub::fingerprint(&gguf)? },
                        &dir,
                        &|stage, done, total| bars.update(stage, done, total),
                    )?;
                    bars.finish();
                    eprintln!(
                        "seal: indexed {} passages ({} tokens) into {} in {:.1} s",
                        m.num_docs,
                        m.num_tokens,
                        dir.display(),
                        m.build_seconds
                    );
                }
            }
            dir
        }
    };
    let (searcher, trained_style) = crate::cli::search::open_searcher(
        Some(&index),
        args.model.as_deref(),
        Some(&cache),
        true,
        args.adapter.as_deref(),
        args.decode.precision.into(),
    )?;
    let mut settings = args.decode.to_settings();
    if let Some(style) = trained_style {
        settings.prompt = style;
    }
    Ok(Box::new(SealRetriever::new(searcher, settings, "seal")))
}

/// Opens the BM25 index in `dir` when it was built from this corpus, builds it there when the
/// directory does not exist, or builds it in memory without `dir`.
fn bm25_index(dataset: &Dataset, dir: Option<&Path>) -> anyhow::Result<Bm25Index> {
    let fingerprint = dataset.corpus_fingerprint();
    let passages = || dataset.corpus.iter().cloned().map(Ok);
    let start = Instant::now();
    let index = match dir {
        None => Bm25Index::build(passages(), &fingerprint)?,
        Some(dir) if dir.exists() => {
            let manifest = Bm25Index::manifest_in(dir)?;
            if manifest.corpus_fingerprint != fingerprint {
                bail!(
                    "the BM25 index in {} was built from other corpus files ({}); delete it or \
                     choose another --bm25-index",
                    dir.display(),
                    manifest.corpus_fingerprint
                );
            }
            let index = Bm25Index::open(dir)?;
            eprintln!("bm25: opened {} ({} passages)", dir.display(), index.num_docs());
            return Ok(index);
        }
        Some(dir) => Bm25Index::build_in(dir, passages(), &fingerprint)?,
    };
    eprintln!(
        "bm25: indexed {} passages in {:.2} s{}",
        index.num_docs(),
        start.elapsed().as_secs_f64(),
        dir.map(|d| format!(" into {}", d.display())).unwrap_or_default()
    );
    Ok(index)
}

/// `--fusion-grid`: every fusion setting of the two runs, measured on `dataset`'s queries.
fn fusion_grid(args: &EvalArgs, dataset: &Dataset) -> anyhow::Result<()> {
    let [first, second] = args.from_runs.as_slice() else {
        bail!("--fusion-grid needs two --from-runs files: the SEAL run first, then the BM25 run");
    };
    let (first, second) = (read_trec_run(first)?, read_trec_run(second)?);
    let mut methods: Vec<(String, f64, FusionMethod)> = Vec::new();
    for step in 0..=10 {
        let weight = f64::from(step) / 10.0;
        for k in [10.0, 60.0] {
            methods.push((
                format!("rrf k={k}"),
                weight,
                FusionMethod::ReciprocalRank { k, weight },
            ));
        }
        for (name, normalization) in
            [("minmax", Normalization::MinMax), ("zscore", Normalization::ZScore)]
        {
            methods.push((
                name.to_string(),
                weight,
                FusionMethod::Interpolation { weight, normalization },
            ));
        }
    }
    let mut rows = Vec::new();
    for (name, weight, method) in methods {
        let report = evaluate_run(dataset, fuse_runs(&first, &second, method, args.depth), &name);
        rows.push((name, weight, report));
    }
    let columns: Vec<&str> = rows[0].2.metric_names();
    let columns: Vec<&str> = columns
        .into_iter()
        .filter(|c| ["nDCG@10", "R@100", "answer@5", "answer@20", "MRR@10"].contains(c))
        .collect();
    let mut json_rows = Vec::new();
    println!(
        "fusion grid on {} ({}, {} queries); weight = the first run's share",
        dataset.name,
        dataset.split,
        dataset.queries.len()
    );
    let header: Vec<String> = columns.iter().map(|c| format!("{c:>10}")).collect();
    println!("{:<12} {:>6} {}", "method", "weight", header.join(" "));
    for (name, weight, report) in &rows {
        let values: Vec<String> =
            columns.iter().map(|c| format!("{:>10.4}", report.mean[*c])).collect();
        println!("{name:<12} {weight:>6.1} {}", values.join(" "));
        let metrics: serde_json::Map<String, serde_json::Value> =
            columns.iter().map(|c| (c.to_string(), report.mean[*c].into())).collect();
        json_rows.push(serde_json::json!({"method": name, "weight": weight, "metrics": metrics}));
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let path = out.join("fusion-grid.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json_rows)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into())
}

/// `--out`, or `seal-eval/<dataset>-<split>-<system>[-distractors]`.
fn output_dir(args: &EvalArgs, report: &EvalReport) -> PathBuf {
    match &args.out {
        Some(out) => out.clone(),
        None => PathBuf::from("seal-eval").join(format!(
            "{}-{}-{}{}",
            report.dataset,
            report.split,
            report.system.replace('+', "_"),
            if args.with_distractors { "-distractors" } else { "" }
        )),
    }
}

fn write_outputs(args: &EvalArgs, report: &EvalReport) -> anyhow::Result<()> {
    write_outputs_to(&output_dir(args, report), report)
}

/// Writes `run.trec` and `metrics.json` into `out`.
fn write_outputs_to(out: &Path, report: &EvalReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let run_path = out.join("run.trec");
    write_trec_run(&run_path, &report.run, &report.system)?;
    let metrics_path = out.join("metrics.json");
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&report.to_json())? + "\n")
        .with_context(|| format!("cannot write {}", metrics_path.display()))?;
    eprintln!("wrote {} and {}", run_path.display(), metrics_path.display());
    Ok(())
}
