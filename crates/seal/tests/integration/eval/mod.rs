//! Evaluation tests: metrics against ir_measures/pytrec_eval fixtures
//! (`testdata/eval/make_fixtures.py`), and `seal eval --system bm25` end to end on the tiny
//! hand-made dataset `testdata/eval/tiny` with values worked out by hand. Provenance, guiding
//! errors, `seal eval compare` and its statistics are in the submodules.

mod compare;
mod provenance;
mod significance;

use seal::corpus::{read_corpus, CorpusFormat, ReadOptions};
use seal::eval::dataset::read_queries;
use seal::eval::metrics::{answer_metrics, normalize_answer_tokens, ranking_metrics, read_qrels};
use seal::eval::run::read_trec_run;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/eval")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(testdata().join("fixtures/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub(super) fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-9, "{what}: got {got}, reference {want}");
}

#[test]
fn ranking_metrics_equal_ir_measures_per_query_and_mean() {
    let fixtures = testdata().join("fixtures");
    let qrels = read_qrels(&fixtures.join("qrels.tsv")).unwrap();
    let run = read_trec_run(&fixtures.join("run.trec")).unwrap();
    let expected = expected();
    let per_query = expected["per_query"].as_object().unwrap();
    assert_eq!(per_query.len(), 29);
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for (query, reference) in per_query {
        let ours = ranking_metrics(&run[query], &qrels[query]);
        for (metric, value) in reference.as_object().unwrap() {
            let got = ours[metric.as_str()];
            assert_close(got, value.as_f64().unwrap(), &format!("{query} {metric}"));
            *sums.entry(metric.clone()).or_default() += got;
        }
    }
    let mean = expected["mean"].as_object().unwrap();
    assert_eq!(mean.len(), 11);
    for (metric, value) in mean {
        assert_close(sums[metric] / 29.0, value.as_f64().unwrap(), &format!("mean {metric}"));
    }
}

#[test]
fn answer_at_k_equals_the_independent_python_implementation() {
    let fixtures = testdata().join("fixtures");
    let reader = read_corpus(
        &fixtures.join("qa_corpus.jsonl"),
        Some(CorpusFormat::BeirJsonl),
        ReadOptions::default(),
    )
    .unwrap();
    let tokens: HashMap<String, Vec<String>> = reader
        .map(|p| p.unwrap())
        .map(|p| (p.id.clone(), normalize_answer_tokens(&p.text)))
        .collect();
    let queries = read_queries(&fixtures.join("qa_queries.jsonl")).unwrap();
    let run = read_trec_run(&fixtures.join("qa_run.trec")).unwrap();
    let expected = expected();
    let reference = expected["qa_per_query"].as_object().unwrap();
    assert_eq!(reference.len(), queries.len());
    let mut hits = 0.0;
    for query in &queries {
        let ours =
            answer_metrics(&run[&query.id], &query.answers, |id| tokens.get(id).map(Vec::as_slice));
        for (metric, value) in reference[&query.id].as_object().unwrap() {
            assert_close(
                ours[metric.as_str()],
                value.as_f64().unwrap(),
                &format!("{} {metric}", query.id),
            );
        }
        hits += ours["answer@100"];
    }
    // The fixture is not trivial: some answers are found, two never are.
    assert_eq!(hits, 8.0);
}

pub(super) fn seal_eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seal")).arg("eval").args(args).output().unwrap()
}

pub(super) fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(super) fn run_tiny(extra: &[&str], out: &Path) -> serde_json::Value {
    let dataset = testdata().join("tiny");
    let mut args = vec!["--dataset", dataset.to_str().unwrap(), "--json", "--out"];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    let output = seal_eval(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "seal eval failed: {stderr}");
    assert!(stderr.contains(" passages (1 empty skipped"), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Hand-worked BM25 rankings on testdata/eval/tiny (see its README):
/// q1 "glacier ice" → d2 first (gold); q2 "volcano aircraft" → d3 (rel 2), d1 (rel 1): ideal;
/// q3 "ash" → only d3, gold d1 never retrieved: all 0; q4 "ice" → only d2 (gold).
/// Means over 4 queries: 3/4 for nDCG, MAP, MRR, R@k, gold@k, answer@k; P@10 = (1+2+0+1)/40.
#[test]
fn tiny_dataset_bm25_end_to_end() {
    let out = out_dir("eval-tiny");
    let report = run_tiny(&[], &out);
    assert_eq!(report["num_queries"], 4);
    let mean = &report["mean"];
    for metric in ["nDCG@10", "MAP", "MRR@10", "R@5", "R@100", "gold@1", "gold@100"] {
        assert_close(mean[metric].as_f64().unwrap(), 0.75, metric);
    }
    for metric in ["answer@1", "answer@5", "answer@20", "answer@100"] {
        assert_close(mean[metric].as_f64().unwrap(), 0.75, metric);
    }
    assert_close(mean["P@10"].as_f64().unwrap(), 0.1, "P@10");
    let run = std::fs::read_to_string(out.join("run.trec")).unwrap();
    let q2: Vec<&str> = run.lines().filter(|l| l.starts_with("q2 ")).collect();
    assert_eq!(q2.len(), 2);
    assert!(q2[0].starts_with("q2 Q0 d3 1 ") && q2[1].starts_with("q2 Q0 d1 2 "), "{run}");
    assert!(!run.contains("q5 "), "unjudged queries are not run");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["per_query"]["q3"]["nDCG@10"], 0.0);
    assert_eq!(metrics["per_query"]["q2"]["P@10"], 0.2);
}

/// With distractors, x1 ("Ice hockey is played on ice.", ice × 3) outranks d2 for q4 "ice":
/// q4 gets nDCG 1/log2(3), AP 1/2, RR 1/2, gold@1 0, answer@1 0 (x1 lacks "glacier").
#[test]
fn tiny_dataset_with_distractors() {
    let out = out_dir("eval-tiny-distractors");
    let report = run_tiny(&["--with-distractors"], &out);
    let mean = &report["mean"];
    assert_close(mean["nDCG@10"].as_f64().unwrap(), (2.0 + 1.0 / 3f64.log2()) / 4.0, "nDCG@10");
    assert_close(mean["MAP"].as_f64().unwrap(), 0.625, "MAP");
    assert_close(mean["MRR@10"].as_f64().unwrap(), 0.625, "MRR@10");
    assert_close(mean["gold@1"].as_f64().unwrap(), 0.5, "gold@1");
    assert_close(mean["gold@5"].as_f64().unwrap(), 0.75, "gold@5");
    assert_close(mean["answer@1"].as_f64().unwrap(), 0.5, "answer@1");
    assert_close(mean["answer@5"].as_f64().unwrap(), 0.75, "answer@5");
}

#[test]
fn query_filter_limit_and_index_reuse() {
    let out = out_dir("eval-tiny-filter");
    let index = out.join("bm25");
    let report = run_tiny(&["--queries", "q2-q3", "--bm25-index", index.to_str().unwrap()], &out);
    assert_eq!(report["num_queries"], 2);
    assert_close(report["mean"]["nDCG@10"].as_f64().unwrap(), 0.5, "q2 = 1, q3 = 0");
    assert!(index.join("seal-bm25.json").exists());
    // Second run reuses the index (and the first query only).
    let again = run_tiny(&["--limit", "1", "--bm25-index", index.to_str().unwrap()], &out);
    assert_eq!(again["num_queries"], 1);
    assert_close(again["mean"]["nDCG@10"].as_f64().unwrap(), 1.0, "q1");
    // A different corpus (with distractors) must not reuse it.
    let dataset = testdata().join("tiny");
    let output = seal_eval(&[
        "--dataset",
        dataset.to_str().unwrap(),
        "--with-distractors",
        "--bm25-index",
        index.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("built from other corpus files"));
}

#[test]
fn seal_and_hybrid_systems_run_end_to_end_with_the_real_model() {
    let dataset = testdata().join("tiny");
    let out = out_dir("eval-tiny-seal");
    let index = out.join("seal-index");
    let built = Command::new(env!("CARGO_BIN_EXE_seal"))
        .args(["index", "--json", "--corpus"])
        .arg(dataset.join("corpus.jsonl"))
        .arg("--out")
        .arg(&index)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let eval = |system: &str, dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "--dataset",
            dataset.to_str().unwrap(),
            "--system",
            system,
            "--index",
            index.to_str().unwrap(),
            "--beam",
            "5",
            "--json",
            "--out",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        seal_eval(&args)
    };
    for system in ["seal", "hybrid"] {
        let dir = out.join(system);
        let output = eval(system, &dir, &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["num_queries"], 4, "{report:#}");
        if system == "seal" {
            let stages = &report["stages_ms"];
            for stage in ["body", "titles", "scoring", "total"] {
                let (p50, p95) = (
                    stages[stage]["p50"].as_f64().unwrap(),
                    stages[stage]["p95"].as_f64().unwrap(),
                );
                assert!(p50 > 0.0 && p95 >= p50, "{stage}: {stages:#}");
            }
            assert!(stages["total"]["p50"].as_f64() >= stages["body"]["p50"].as_f64());
        }
        let run = std::fs::read_to_string(dir.join("run.trec")).unwrap();
        // On a 6-passage corpus a query can have no n-gram of positive weight (then nothing is
        // retrieved); the others must retrieve.
        assert!(run.lines().count() >= 2, "{run}");
        for line in run.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 6, "{line}");
            assert!(fields[4].parse::<f64>().unwrap().is_finite(), "{line}");
        }
    }

    // The hybrid records both systems, the model and index by sha256, and the fusion.
    let hybrid: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("hybrid").join("metrics.json")).unwrap(),
    )
    .unwrap();
    let provenance = &hybrid["provenance"];
    assert_eq!(provenance["system"], "hybrid");
    assert_eq!(provenance["fusion"]["method"], "zscore");
    assert_eq!(provenance["fusion"]["weight_on"], "seal");
    assert_eq!(provenance["bm25"]["k1"], 0.9);
    let seal_side = &provenance["seal_system"];
    assert_eq!(seal_side["model"]["name"], "smollm2-135m");
    assert_eq!(seal_side["model"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(seal_side["index"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(seal_side["settings"]["beam"], 5);
    assert_eq!(seal_side["settings"]["precision"], "exact");

    // Without --index an index is built under --out, said on stderr, then reused.
    let built = out.join("built");
    for (attempt, said) in [
        (0, "no --index given: building an index of tiny's 5 passages"),
        (1, "no --index given: reusing"),
    ] {
        let output = seal_eval(&[
            "--dataset",
            dataset.to_str().unwrap(),
            "--system",
            "seal",
            "--beam",
            "2",
            "--limit",
            "1",
            "--json",
            "--out",
            built.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains(said), "attempt {attempt}: {stderr}");
    }
    assert!(built.join("tiny-seal-index-smollm2-135m").join("seal-eval-corpus.sha256").exists());

    // One decode ranked both ways gives exactly the runs of two separate evaluations.
    let both = out.join("both");
    let output = eval("seal", &both, &["--both-rankings"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lmfm = out.join("lmfm");
    let output = eval("seal", &lmfm, &["--ranking", "lm+fm"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read = |path: PathBuf| std::fs::read_to_string(&path).unwrap();
    let without_tag = |run: String| -> Vec<String> {
        run.lines().map(|l| l.rsplit_once(' ').unwrap().0.to_owned()).collect()
    };
    assert_eq!(
        without_tag(read(both.join("run.trec"))),
        without_tag(read(out.join("seal").join("run.trec")))
    );
    let side = without_tag(read(both.join("seal-lm_fm").join("run.trec")));
    assert!(!side.is_empty());
    assert_eq!(side, without_tag(read(lmfm.join("run.trec"))));
}

#[test]
fn fusing_saved_runs_from_files() {
    let out = out_dir("eval-tiny-fuse");
    let first = run_tiny(&[], &out.join("a"));
    assert_eq!(first["num_queries"], 4);
    let run = out.join("a/run.trec");
    // Fusing a run with itself by RRF keeps its order: same metrics. The fused system is named
    // after its inputs (the folders of their run.trec), and records how it was fused.
    let fused = run_tiny(
        &["--from-runs", run.to_str().unwrap(), run.to_str().unwrap(), "--fusion", "rrf"],
        &out.join("b"),
    );
    assert_eq!(fused["mean"]["nDCG@10"], first["mean"]["nDCG@10"]);
    assert_eq!(fused["system"], "a+a");
    let fusion = &fused["provenance"]["fusion"];
    assert_eq!(
        (fusion["method"].as_str(), fusion["weight"].as_f64(), fusion["weight_on"].as_str()),
        (Some("rrf"), Some(0.2), Some("a"))
    );
    assert_eq!(fusion["rrf_k"], 60.0);
    // Measured from files: not timed, and said so (null, not 0).
    assert!(fused["queries_per_second"].is_null() && fused["latency_ms"].is_null());
    let run_text = std::fs::read_to_string(out.join("b/run.trec")).unwrap();
    assert!(run_text.lines().all(|l| l.ends_with(" a+a")), "{run_text}");
}

/// Not a test of the code but a measurement over the shared datasets (skipped without them):
/// how many passages the mojibake fix changes, with examples, and how fast the reader runs.
/// `cargo test -p seal --test eval -- --ignored --nocapture shared_corpora`
#[test]
#[ignore = "reads /work/shared/datasets; a measurement for BENCHMARKS.md"]
fn shared_corpora_mojibake_and_read_speed() {
    let root = Path::new("/work/shared/datasets");
    let names = [
        "scifact/corpus.jsonl",
        "nq_gold_passages/corpus.jsonl",
        "nq_gold_passages/distractors.jsonl",
        "cranfield/corpus.jsonl",
        "cisi/corpus.jsonl",
    ];
    for name in names {
        let path = root.join(name);
        if !path.exists() {
            eprintln!("{} missing: skipped", path.display());
            continue;
        }
        let mut changed = 0;
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in ["title", "text"] {
                let raw = value[field].as_str().unwrap_or("");
                let fixed = seal::corpus::fix_mojibake(raw);
                if fixed != raw {
                    changed += 1;
                    let at = raw.chars().zip(fixed.chars()).position(|(a, b)| a != b).unwrap_or(0);
                    let before: String = raw.chars().skip(at.saturating_sub(15)).take(30).collect();
                    let after: String =
                        fixed.chars().skip(at.saturating_sub(15)).take(30).collect();
                    eprintln!("  {name} {field}: {before:?} -> {after:?}");
                }
            }
        }
        let start = std::time::Instant::now();
        let mut reader = read_corpus(&path, None, ReadOptions::default()).unwrap();
        let passages = reader.by_ref().filter(|p| p.is_ok()).count();
        let seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {changed} fields changed by the mojibake fix; read and cleaned {passages} \
             passages ({} empty skipped) in {seconds:.3} s ({:.1} MB/s)",
            reader.stats().empty_passages,
            text.len() as f64 / seconds / 1e6
        );
    }
}
