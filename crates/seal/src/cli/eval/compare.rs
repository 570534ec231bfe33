//! `seal eval compare`: two or more runs on one dataset, the first as baseline → each metric's
//! mean, difference, paired test, interval, wins/ties/losses; a table (or `--json`), and
//! `compare.json` and `per-query.tsv` (the per-query differences, for plots) under `--out`.
//!
//! With `--dataset`, the runs are measured here (and each is checked against the dataset, as
//! `--from-runs` does); without it, the per-query metrics stored in each folder's
//! `metrics.json` are compared, provided they were measured on the same dataset and queries.
//!
//! Not for: the statistics ([`seal::eval::significance`], [`seal::eval::compare`]).

use super::output::write_json;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use seal::eval::compare::{compare_systems, CompareSettings, SystemScores};
use seal::eval::harness::evaluate_run;
use seal::eval::metrics::Metrics;
use seal::eval::origin::{run_name, write_file, RunFile};
use seal::eval::provenance::DatasetFingerprint;
use seal::eval::significance::{PairedTest, TestSettings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which paired test gives the p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestArg {
    /// Fisher's randomization test: random sign flips of the per-query differences.
    Randomization,
    /// The bootstrap test: resampling of the centred per-query differences.
    Bootstrap,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The runs, baseline first: TREC run files or `seal eval --out` folders (their run.trec
    /// with --dataset, else their metrics.json).
    #[arg(value_name = "RUN", required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    /// Measure the runs on this dataset (BEIR layout); without it, each folder's metrics.json
    /// per-query values are compared.
    #[arg(long, value_name = "DIR")]
    dataset: Option<PathBuf>,
    /// The qrels split (with --dataset).
    #[arg(long, default_value = "test", requires = "dataset")]
    split: String,
    /// Compare only these queries (with --dataset): a range of numbered ids (`q0500-q2654`,
    /// `1-300`) or `@FILE` with one id a line.
    #[arg(long, value_name = "SPEC", requires = "dataset")]
    queries: Option<String>,
    /// Compare only the first N queries (with --dataset, after --queries).
    #[arg(long, value_name = "N", requires = "dataset")]
    limit: Option<usize>,
    /// Add the dataset's distractors.jsonl to the corpus (as the runs were made).
    #[arg(long, requires = "dataset")]
    with_distractors: bool,
    /// Names in the table, one per run, comma separated [default: each run's folder, or its
    /// file stem].
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    /// The metrics, comma separated (nDCG@10, MAP, MRR@10, R@5, R@20, R@100, P@10, gold@k,
    /// answer@k).
    #[arg(long, value_delimiter = ',', default_value = "nDCG@10,R@100")]
    metrics: Vec<String>,
    /// The paired test that gives the p-value.
    #[arg(long, value_enum, default_value_t = TestArg::Randomization)]
    test: TestArg,
    /// Trials of the test, and resamples of the bootstrap interval.
    #[arg(long, default_value_t = 10_000)]
    trials: usize,
    /// The seed of the test (the interval uses seed + 1): the same seed, the same numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The coverage of the interval of each difference.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Differences with a p-value below this are marked `*`.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Correct each metric's p-values for the number of systems compared with the baseline
    /// (Holm's step-down method).
    #[arg(long)]
    holm: bool,
    /// Print the comparison as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Where to write compare.json and per-query.tsv [default:
    /// seal-eval/<dataset>-<split>-compare].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// One input: its name, per-query metrics, and what to record of it.
struct Input {
    scores: SystemScores,
    record: serde_json::Value,
}

pub(super) fn run(args: CompareArgs) -> anyhow::Result<()> {
    if !args.names.is_empty() && args.names.len() != args.runs.len() {
        bail!(
            "--names gives {} names for {} runs: give one per run, in the same order",
            args.names.len(),
            args.runs.len()
        );
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        bail!("--alpha must be in (0, 1), e.g. 0.05; got {}", args.alpha);
    }
    let (mut inputs, dataset) = match &args.dataset {
        Some(dir) => measure_runs(&args, dir)?,
        None => stored_metrics(&args)?,
    };
    for (input, name) in inputs.iter_mut().zip(&args.names) {
        input.scores.name = name.clone();
    }
    let settings = CompareSettings {
        metrics: args.metrics.clone(),
        test: TestSettings {
            test: match args.test {
                TestArg::Randomization => PairedTest::Randomization,
                TestArg::Bootstrap => PairedTest::Bootstrap,
            },
            trials: args.trials,
            seed: args.seed,
            confidence: args.confidence,
        },
        holm: args.holm,
        alpha: args.alpha,
    };
    let systems: Vec<SystemScores> = inputs.iter().map(|i| i.scores.clone()).collect();
    let comparison = compare_systems(&systems, &settings)?;
    let mut json = comparison.to_json();
    json["dataset"] = dataset.json.clone();
    json["runs"] = inputs.iter().map(|i| i.record.clone()).collect();
    json["seal"] = seal::eval::provenance::seal_build().into();

    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("seal-eval").join(format!("{}-{}-compare", dataset.name, dataset.split))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    write_json(&out.join("compare.json"), &json)?;
    write_file(&out.join("per-query.tsv"), comparison.per_query_tsv().as_bytes())?;
    eprintln!(
        "wrote {} and {} (per-query differences)",
        out.join("compare.json").display(),
        out.join("per-query.tsv").display()
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{}: {} queries, baseline {}",
            dataset.description,
            comparison.queries.len(),
            comparison.systems[0]
        );
        println!("{}\n", comparison.method_line());
        print!("{}", comparison.table());
    }
    Ok(())
}

/// What the compared runs were measured on.
struct DatasetLabel {
    name: String,
    split: String,
    description: String,
    json: serde_json::Value,
}

/// `--dataset`: measure every run on it, after checking that each belongs to it.
fn measure_runs(args: &CompareArgs, dir: &Path) -> anyhow::Result<(Vec<Input>, DatasetLabel)> {
    let dataset = super::load_dataset(
        dir,
        &args.split,
        args.queries.as_deref(),
        args.limit,
        args.with_distractors,
        false,
    )?;
    let fingerprint = DatasetFingerprint::of(&dataset)?;
    let mut inputs = Vec::new();
    for path in &args.runs {
        let run = RunFile::read(path)?;
        for note in run.check_fits(&dataset, &fingerprint)? {
            eprintln!("note: {note}");
        }
        let report = evaluate_run(&dataset, run.run.clone(), &run.name);
        let record = serde_json::json!({
            "name": run.name,
            "path": run.path.display().to_string(),
            "sha256": run.sha256,
            "system": run.provenance().map(|p| p.system.clone()),
        });
        inputs.push(Input {
            scores: SystemScores { name: run.name, per_query: report.per_query },
            record,
        });
    }
    let label = DatasetLabel {
        name: dataset.name.clone(),
        split: dataset.split.clone(),
        description: fingerprint.describe(),
        json: serde_json::to_value(&fingerprint)?,
    };
    Ok((inputs, label))
}

/// Without `--dataset`: the per-query metrics each folder's metrics.json stores.
fn stored_metrics(args: &CompareArgs) -> anyhow::Result<(Vec<Input>, DatasetLabel)> {
    let mut inputs = Vec::new();
    let mut made_on: Option<(String, String, Option<serde_json::Value>, String)> = None;
    for path in &args.runs {
        let metrics_path = if path.is_dir() {
            path.join("metrics.json")
        } else if path.extension().is_some_and(|e| e == "json") {
            path.clone()
        } else if path.file_name().is_some_and(|n| n == "run.trec") {
            path.with_file_name("metrics.json")
        } else {
            bail!(
                "{} is a run file without a metrics.json beside it: give --dataset DIR to \
                 measure it",
                path.display()
            );
        };
        let text = std::fs::read_to_string(&metrics_path).with_context(|| {
            format!(
                "cannot read {} (without --dataset, compare reads each run's metrics.json; give \
                 --dataset DIR to measure the runs instead)",
                metrics_path.display()
            )
        })?;
        let metrics: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", metrics_path.display()))?;
        let per_query: BTreeMap<String, Metrics> =
            serde_json::from_value(metrics["per_query"].clone()).with_context(|| {
                format!("{} has no per-query metrics (`per_query`)", metrics_path.display())
            })?;
        let field = |name: &str| metrics[name].as_str().unwrap_or("?").to_owned();
        let (dataset, split) = (field("dataset"), field("split"));
        let fingerprint = metrics.pointer("/provenance/dataset").cloned();
        let shown = metrics_path.display().to_string();
        match &made_on {
            None => made_on = Some((dataset, split, fingerprint, shown)),
            Some((first_dataset, first_split, first_fingerprint, first)) => {
                if (first_dataset, first_split) != (&dataset, &split) {
                    bail!(
                        "{shown} was measured on {dataset} ({split}), {first} on {first_dataset} \
                         ({first_split}): compare runs of one dataset and split"
                    );
                }
                let corpus = |f: &Option<serde_json::Value>| {
                    f.as_ref().and_then(|f| f["corpus_sha256"].as_str().map(str::to_owned))
                };
                if let (Some(a), Some(b)) = (corpus(first_fingerprint), corpus(&fingerprint)) {
                    if a != b {
                        bail!(
                            "{shown} and {first} were measured on different corpora of \
                             {dataset} (sha256 {} vs {}): compare runs of one corpus",
                            &b[..12.min(b.len())],
                            &a[..12.min(a.len())]
                        );
                    }
                }
            }
        }
        let name = run_name(&metrics_path.with_file_name("run.trec"));
        let record = serde_json::json!({
            "name": name,
            "path": metrics_path.display().to_string(),
            "system": metrics["system"],
        });
        inputs.push(Input { scores: SystemScores { name, per_query }, record });
    }
    eprintln!(
        "comparing the per-query metrics stored in each metrics.json (give --dataset DIR to \
         measure the runs here and check that they belong to it)"
    );
    let (name, split, fingerprint, _) = made_on.unwrap_or_default();
    let label = DatasetLabel {
        description: format!("{name} ({split})"),
        json: fingerprint.unwrap_or(serde_json::json!({"name": name, "split": split})),
        name,
        split,
    };
    Ok((inputs, label))
}
