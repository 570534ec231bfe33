//! `seal eval --system bm25|seal|hybrid`: opening the systems (building what is missing, and
//! saying so), running them over the queries, and recording their provenance: BM25's
//! parameters, SEAL's model, adapter and index with their sha256 and every search setting.
//!
//! Not for: evaluating saved runs ([`super::from_runs`]).

use super::{output, Evaluation, System};
use anyhow::bail;
use seal::bm25::{Bm25Index, Bm25Params};
use seal::eval::harness::evaluate_run;
use seal::eval::provenance::{sha256_dir, Bm25Record, FileRecord, SealRecord};
use seal::eval::{evaluate, Dataset, EvalOptions, EvalReport, SealRetriever, SideRanking};
use seal::score::{Ranking, ScoringSettings};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Runs `--system` over the queries; side rankings (`--both-rankings`, …) are written here.
pub(super) fn evaluate_system(evaluation: &Evaluation) -> anyhow::Result<EvalReport> {
    let args = evaluation.args;
    let dataset = &evaluation.dataset;
    let options = EvalOptions { depth: args.depth, progress: true };
    let bm25_record =
        Bm25Record { k1: args.k1, b: args.b, quantized_lengths: !args.bm25_exact_lengths };
    let params = Bm25Params { k1: args.k1, b: args.b, quantized_lengths: !args.bm25_exact_lengths };
    match args.system {
        System::Bm25 => {
            let bm25 = bm25_index(dataset, args.bm25_index.as_deref())?.with_params(params);
            let mut report = evaluate(dataset, &bm25, &options)?;
            let mut provenance = evaluation.provenance("bm25");
            provenance.bm25 = Some(bm25_record);
            report.provenance = Some(provenance);
            Ok(report)
        }
        System::Seal => evaluate_seal(evaluation, &options),
        System::Hybrid => {
            if args.both_rankings
                || args.compare_whole_words
                || !args.compare_length_norm.is_empty()
            {
                bail!(
                    "--both-rankings, --compare-whole-words and --compare-length-norm work with \
                     --system seal"
                );
            }
            let (seal, seal_record) = seal_retriever(evaluation)?;
            let bm25 = bm25_index(dataset, args.bm25_index.as_deref())?.with_params(params);
            let (method, fusion) = evaluation.fusion("seal");
            let hybrid = seal::eval::fusion::Hybrid {
                first: seal,
                second: bm25,
                method,
                depth: args.depth,
                name: "hybrid".to_string(),
            };
            let mut report = evaluate(dataset, &hybrid, &options)?;
            let mut provenance = evaluation.provenance("hybrid");
            provenance.bm25 = Some(bm25_record);
            provenance.seal_system = Some(seal_record);
            provenance.fusion = Some(fusion);
            report.provenance = Some(provenance);
            Ok(report)
        }
    }
}

/// `--system seal`, with its side rankings from the same decode.
fn evaluate_seal(evaluation: &Evaluation, options: &EvalOptions) -> anyhow::Result<EvalReport> {
    let args = evaluation.args;
    let dataset = &evaluation.dataset;
    let (mut seal, record) = seal_retriever(evaluation)?;
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
        let name = format!("seal-whole-words-{}", if whole_words { "on" } else { "off" });
        let scoring = ScoringSettings { whole_words, ..main.clone() };
        seal.side_rankings.push(SideRanking::new(name, scoring));
    }
    for &length_norm in &args.compare_length_norm {
        let scoring = ScoringSettings { length_norm, ..main.clone() };
        scoring.validate()?;
        let name = format!("seal-length-norm-{length_norm}");
        seal.side_rankings.push(SideRanking::new(name, scoring));
    }
    let mut report = evaluate(dataset, &seal, options)?;
    report.stages = seal.stage_timings();
    let mut provenance = evaluation.provenance("seal");
    provenance.seal_system = Some(record.clone());
    report.provenance = Some(provenance);
    for side in &seal.side_rankings {
        let run = side.run(dataset.queries.iter().map(|q| (q.id.as_str(), q.text.as_str())));
        let name = &side.name;
        let mut side_report = evaluate_run(dataset, run, name);
        side_report.latencies = report.latencies.clone();
        side_report.total_seconds = report.total_seconds;
        let settings = seal::searcher::SearchSettings {
            scoring: side.scoring.clone(),
            ..seal.settings.clone()
        };
        let mut side_provenance = evaluation.provenance(name);
        side_provenance.seal_system = Some(SealRecord {
            settings: SealRecord::settings_of(&settings, &precision_name(args)),
            ..record.clone()
        });
        side_report.provenance = Some(side_provenance);
        let out = output::output_dir(args, &report).join(name.replace('+', "_"));
        output::write_outputs(&out, &side_report)?;
        if !args.json {
            print!("{}", side_report.table());
        }
    }
    Ok(report)
}

fn precision_name(args: &super::EvalArgs) -> String {
    use clap::ValueEnum;
    args.decode
        .precision
        .to_possible_value()
        .map_or_else(|| format!("{:?}", args.decode.precision), |v| v.get_name().to_owned())
}

/// The file beside an index built by `seal eval` that names the corpus it was built from.
const CORPUS_STAMP: &str = "seal-eval-corpus.sha256";

/// The SEAL retriever over `--index`, or over an index of the dataset's corpus built on first use
/// (and said so on stderr) under `--out` when given, else in the model cache
/// (`<cache>/seal-eval/<dataset>-seal-index-<model>`): never relative to the working directory,
/// so an evaluation run inside a checkout leaves no build output in it. A built index is reused
/// only while the corpus files are byte for byte the same.
fn seal_retriever(evaluation: &Evaluation) -> anyhow::Result<(Box<SealRetriever>, SealRecord)> {
    use seal::indexer::{build_index, ModelRef};
    use seal::model::{hub, tokenizer::Tokenizer};
    let args = evaluation.args;
    let dataset = &evaluation.dataset;
    let cache = args.cache_dir.clone().unwrap_or_else(hub::default_cache_dir);
    let index = match &args.index {
        Some(dir) => dir.clone(),
        None => {
            let model = args.model.as_deref().unwrap_or(hub::DEFAULT_MODEL);
            let suffix = if args.with_distractors { "-distractors" } else { "" };
            let model_tag: String =
                model.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
            let name = format!("{}{suffix}-seal-index-{model_tag}", dataset.name);
            let dir: PathBuf = match &args.out {
                Some(out) => out.join(name),
                None => cache.join("seal-eval").join(name),
            };
            let corpus = &evaluation.fingerprint.corpus_sha256;
            let stamp = std::fs::read_to_string(dir.join(CORPUS_STAMP)).unwrap_or_default();
            if stamp.trim() == corpus {
                eprintln!(
                    "seal: no --index given: reusing {} (built by an earlier seal eval from the \
                     same corpus files)",
                    dir.display()
                );
            } else {
                eprintln!(
                    "seal: no --index given: building an index of {}'s {} passages with {model} \
                     into {} (reused next time; pass --index DIR to search your own)",
                    dataset.name,
                    dataset.corpus.len(),
                    dir.display()
                );
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
                std::fs::write(dir.join(CORPUS_STAMP), format!("{corpus}\n"))?;
                eprintln!(
                    "seal: indexed {} passages ({} tokens) into {} in {:.1} s",
                    m.num_docs,
                    m.num_tokens,
                    dir.display(),
                    m.build_seconds
                );
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
    let model_name = args.model.clone().unwrap_or_else(|| searcher.manifest().model.name.clone());
    let model_path = hub::resolve_model(&model_name, &cache, false)?;
    let record = SealRecord {
        model: FileRecord { name: model_name, sha256: hub::fingerprint(&model_path)? },
        adapter: match &args.adapter {
            Some(dir) => {
                Some(FileRecord { name: dir.display().to_string(), sha256: sha256_dir(dir)? })
            }
            None => None,
        },
        index: FileRecord { name: index.display().to_string(), sha256: sha256_dir(&index)? },
        settings: SealRecord::settings_of(&settings, &precision_name(args)),
    };
    Ok((Box::new(SealRetriever::new(searcher, settings, "seal")), record))
}

/// Opens the BM25 index in `dir` when it was built from this corpus, builds it there when the
/// directory does not exist, or builds it in memory without `dir`.
pub(super) fn bm25_index(dataset: &Dataset, dir: Option<&Path>) -> anyhow::Result<Bm25Index> {
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
