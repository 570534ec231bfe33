//! `seal eval compare` end to end on the tiny dataset: identical runs differ by 0 with p = 1; a
//! hand-made run with one worse query gives the hand-worked difference, interval and counts;
//! stored metrics compare without the dataset; runs of another corpus are refused.

use super::{assert_close, out_dir, run_tiny, testdata};
use std::path::Path;
use std::process::Command;

fn compare(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seal")).args(["eval", "compare"]).args(args).output().unwrap()
}

fn compare_json(args: &[&str]) -> serde_json::Value {
    let output = compare(args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn identical_runs_differ_by_zero_with_p_one() {
    let out = out_dir("eval-compare-same");
    run_tiny(&[], &out.join("first"));
    std::fs::create_dir_all(out.join("second")).unwrap();
    for file in ["run.trec", "run.trec.provenance.json", "metrics.json"] {
        std::fs::copy(out.join("first").join(file), out.join("second").join(file)).unwrap();
    }
    let dataset = testdata().join("tiny");
    let report = compare_json(&[
        "--dataset",
        path(&dataset),
        path(&out.join("first")),
        path(&out.join("second")),
        "--json",
        "--out",
        path(&out.join("cmp")),
    ]);
    assert_eq!(report["systems"], serde_json::json!(["first", "second"]));
    let rows = report["comparisons"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "nDCG@10 and R@100 by default");
    for row in rows {
        assert_eq!(row["difference"], 0.0);
        assert_eq!(row["p_value"], 1.0);
        assert_eq!(row["interval"], serde_json::json!([0.0, 0.0]));
        assert_eq!((row["wins"].as_u64(), row["ties"].as_u64()), (Some(0), Some(4)));
        assert_eq!(row["significant"], false);
    }
    assert_eq!(report["test"]["name"], "randomization");
    assert_eq!(report["dataset"]["name"], "tiny");
    let tsv = std::fs::read_to_string(out.join("cmp/per-query.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 1 + 2 * 4, "{tsv}");
    assert!(tsv.starts_with("query\tmetric\tsystem\tbaseline\tvalue\tdifference\n"), "{tsv}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cmp/compare.json")).unwrap())
            .unwrap();
    assert_eq!(written, report);

    // Without --dataset the stored per-query metrics give the same comparison.
    let stored = compare_json(&[
        path(&out.join("first")),
        path(&out.join("second")),
        "--json",
        "--out",
        path(&out.join("cmp-stored")),
    ]);
    assert_eq!(stored["comparisons"], report["comparisons"]);
}

/// BM25 on tiny ranks every gold passage first except q3's (never retrieved). The hand-made
/// run `worse` puts d1 above d2 for q1 (nDCG 1 → 1/log2(3), R@100 unchanged) and copies the
/// rest. Differences: nDCG@10 −0.369 on q1, 0 elsewhere → mean −0.0923, 0/3/1; a sign flip of
/// one non-zero difference never changes |mean|, so p = 1; the bootstrap mean is −0.369·k/4
/// with k ~ Binomial(4, ¼) picks of q1: P(k = 4) = 0.4 % < 2.5 % < P(k ≥ 3) = 5.1 %, so the
/// 2.5 % quantile is −0.369·3/4 and the 97.5 % one is 0.
#[test]
fn a_hand_made_worse_run_gives_the_hand_worked_comparison() {
    let out = out_dir("eval-compare-worse");
    run_tiny(&[], &out.join("bm25"));
    let run = std::fs::read_to_string(out.join("bm25/run.trec")).unwrap();
    let mut worse: String =
        run.lines().filter(|l| !l.starts_with("q1 ")).map(|l| format!("{l}\n")).collect();
    worse.push_str("q1 Q0 d1 1 9.0 worse\nq1 Q0 d2 2 8.0 worse\n");
    let worse_path = out.join("worse.trec");
    std::fs::write(&worse_path, worse).unwrap();
    let (dataset, bm25, cmp) = (testdata().join("tiny"), out.join("bm25"), out.join("cmp"));
    let args = [
        "--dataset",
        path(&dataset),
        path(&bm25),
        path(&worse_path),
        "--metrics",
        "nDCG@10,R@100,MRR@10",
        "--out",
        path(&cmp),
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let report = compare_json(&with_json);
    let rows = report["comparisons"].as_array().unwrap();
    let ndcg = &rows[0];
    let q1 = 1.0 / 3f64.log2() - 1.0;
    assert_eq!(ndcg["system"], "worse");
    assert_close(ndcg["difference"].as_f64().unwrap(), q1 / 4.0, "Δ nDCG@10");
    assert_eq!(ndcg["p_value"], 1.0);
    assert_close(ndcg["interval"][0].as_f64().unwrap(), 0.75 * q1, "interval low");
    assert_close(ndcg["interval"][1].as_f64().unwrap(), 0.0, "interval high");
    assert_eq!(
        (ndcg["wins"].as_u64(), ndcg["ties"].as_u64(), ndcg["losses"].as_u64()),
        (Some(0), Some(3), Some(1))
    );
    assert_eq!(rows[1]["difference"], 0.0, "R@100 is unchanged");
    assert_close(rows[2]["difference"].as_f64().unwrap(), -0.5 / 4.0, "MRR@10: q1 1 → 1/2");

    // The table names the test and shows the difference beside the mean.
    let output = compare(&args);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("paired randomization test (two-sided, 10000 trials, seed 1)"),
        "{table}"
    );
    assert!(table.contains("worse   0.6577  (−0.0923)"), "{table}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("worse.trec: it has no provenance"), "{stderr}");
}

#[test]
fn runs_of_different_corpora_or_queries_are_not_compared() {
    let out = out_dir("eval-compare-refused");
    run_tiny(&[], &out.join("plain"));
    run_tiny(&["--with-distractors"], &out.join("distractors"));
    run_tiny(&["--limit", "2"], &out.join("two"));
    let dataset = testdata().join("tiny");
    let refused = compare(&[
        "--dataset",
        path(&dataset),
        path(&out.join("plain")),
        path(&out.join("distractors")),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("it was made with --with-distractors"), "{stderr}");
    // Stored metrics of different corpora or different queries: refused too.
    let stored = compare(&[path(&out.join("plain")), path(&out.join("distractors"))]);
    let stderr = String::from_utf8_lossy(&stored.stderr);
    assert!(stderr.contains("were measured on different corpora of tiny"), "{stderr}");
    let fewer = compare(&[path(&out.join("plain")), path(&out.join("two"))]);
    let stderr = String::from_utf8_lossy(&fewer.stderr);
    assert!(stderr.contains("two lacks `q3`"), "{stderr}");
}
