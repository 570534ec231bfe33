//! Provenance (`metrics.json` and `run.trec.provenance.json` record what made a run), the refusal
//! of runs made on another dataset or split, and errors that say what to do.

use super::{out_dir, run_tiny, seal_eval, testdata};
use seal::eval::origin::{sidecar_path, RunFile};
use seal::eval::provenance::{sha256_bytes, Provenance};
use std::path::{Path, PathBuf};

/// `sha256sum testdata/eval/tiny/corpus.jsonl`, `qrels/test.tsv`: computed outside seal.
const TINY_CORPUS_SHA256: &str = "3edbb272fb187b8e2f61dda7549e0d7fcb74aa779a403f8adc989fe34a221239";
const TINY_QRELS_SHA256: &str = "baa7cbec61f7b325c322a661b8c4e53ff8babfa05ceac115c509e4512895c47e";

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn metrics_and_run_record_what_produced_them_and_round_trip() {
    let out = out_dir("eval-provenance");
    run_tiny(&["--queries", "q1-q3", "--k1", "1.2", "--depth", "50"], &out);
    let metrics = read_json(&out.join("metrics.json"));
    let recorded: Provenance = serde_json::from_value(metrics["provenance"].clone()).unwrap();
    assert_eq!(recorded.system, "bm25");
    assert_eq!((recorded.dataset.name.as_str(), recorded.dataset.split.as_str()), ("tiny", "test"));
    // The corpus fingerprint is over `<file name> <sha256>` lines (one file here).
    let corpus_line = format!("corpus.jsonl {TINY_CORPUS_SHA256}\n");
    assert_eq!(recorded.dataset.corpus_sha256, sha256_bytes(corpus_line.as_bytes()));
    assert_eq!(recorded.dataset.qrels_sha256, TINY_QRELS_SHA256);
    assert!(!recorded.dataset.with_distractors);
    assert_eq!(recorded.queries.filter.as_deref(), Some("q1-q3"));
    assert_eq!((recorded.queries.count, recorded.queries.limit), (3, None));
    assert_eq!(recorded.queries.ids_sha256, sha256_bytes(b"q1\nq2\nq3\n"));
    assert_eq!(recorded.depth, 50);
    let bm25 = recorded.bm25.as_ref().unwrap();
    assert_eq!((bm25.k1, bm25.b, bm25.quantized_lengths), (1.2, 0.4, true));
    assert!(recorded.seal.starts_with(&format!("seal {} (", env!("CARGO_PKG_VERSION"))));
    assert!(recorded.fusion.is_none() && recorded.seal_system.is_none());

    // The sidecar describes this very run file and reads back as the same provenance.
    let run_path = out.join("run.trec");
    let sidecar = read_json(&sidecar_path(&run_path));
    assert_eq!(sidecar["run_sha256"], sha256_bytes(&std::fs::read(&run_path).unwrap()));
    let back = RunFile::read(&out).unwrap();
    assert_eq!(back.provenance(), Some(&recorded));
    // No temporary file is left behind by the atomic writes.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

/// A copy of the tiny dataset under `dir`, with `edit` applied.
fn tiny_copy(dir: &Path, edit: impl Fn(&Path)) -> PathBuf {
    let source = testdata().join("tiny");
    let target = dir.join("tiny");
    std::fs::create_dir_all(target.join("qrels")).unwrap();
    for file in ["corpus.jsonl", "queries.jsonl", "distractors.jsonl", "qrels/test.tsv"] {
        std::fs::copy(source.join(file), target.join(file)).unwrap();
    }
    edit(&target);
    target
}

fn from_runs(dataset: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--dataset", dataset.to_str().unwrap(), "--from-runs"];
    args.push(run.to_str().unwrap());
    let out = run.parent().unwrap().join("remeasured");
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    seal_eval(&args)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn runs_of_another_dataset_or_split_are_refused_and_old_runs_accepted_with_a_note() {
    let out = out_dir("eval-refusals");
    let dataset = testdata().join("tiny");
    run_tiny(&[], &out.join("tiny-run"));
    let run = out.join("tiny-run").join("run.trec");

    // Its own dataset: accepted, no note.
    let same = from_runs(&dataset, &run, &[]);
    assert!(same.status.success(), "{}", stderr(&same));
    assert!(!stderr(&same).contains("note:"), "{}", stderr(&same));

    // Another corpus (one passage more): refused, naming both.
    let edited = tiny_copy(&out.join("edited"), |d| {
        let mut corpus = std::fs::read_to_string(d.join("corpus.jsonl")).unwrap();
        corpus.push_str("{\"_id\": \"d9\", \"title\": \"\", \"text\": \"a new passage\"}\n");
        std::fs::write(d.join("corpus.jsonl"), corpus).unwrap();
    });
    let other = from_runs(&edited, &run, &[]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("was made on tiny (test), not on tiny (test): its corpus differs"),
        "{}",
        stderr(&other)
    );
    // The same folder with distractors: refused, saying how it was made.
    let with = from_runs(&dataset, &run, &["--with-distractors"]);
    assert!(stderr(&with).contains("it was made without --with-distractors"), "{}", stderr(&with));

    // Another split of the same corpus: refused with the flag to pass.
    let splits = tiny_copy(&out.join("splits"), |d| {
        std::fs::copy(d.join("qrels/test.tsv"), d.join("qrels/dev.tsv")).unwrap();
    });
    let dev_out = out.join("dev-run");
    let made = seal_eval(&[
        "--dataset",
        splits.to_str().unwrap(),
        "--split",
        "dev",
        "--out",
        dev_out.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let wrong_split = from_runs(&splits, &dev_out.join("run.trec"), &[]);
    assert!(!wrong_split.status.success());
    assert!(
        stderr(&wrong_split)
            .contains("answers the `dev` queries of tiny, not the `test` ones: pass --split dev"),
        "{}",
        stderr(&wrong_split)
    );

    // A run without provenance (an old one): accepted, with a note that it cannot be checked.
    let legacy_dir = out.join("legacy");
    std::fs::create_dir_all(&legacy_dir).unwrap();
    let legacy = legacy_dir.join("old.trec");
    std::fs::copy(&run, &legacy).unwrap();
    let accepted = from_runs(&dataset, &legacy, &[]);
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    assert!(stderr(&accepted).contains("old.trec: it has no provenance"), "{}", stderr(&accepted));
    assert!(stderr(&accepted).contains("so its dataset cannot be checked"));
    // … unless it answers none of the queries: that is a run of another dataset, not zeros.
    std::fs::write(&legacy, "PLAIN-1 Q0 d1 1 2.5 x\nPLAIN-2 Q0 d2 1 1.5 x\n").unwrap();
    let foreign = from_runs(&dataset, &legacy, &[]);
    assert!(!foreign.status.success());
    assert!(
        stderr(&foreign).contains("answers none of the 4 evaluated queries of tiny (test) (its query ids: PLAIN-1, PLAIN-2; the dataset's: q1, q2, q3)"),
        "{}",
        stderr(&foreign)
    );
}

#[test]
fn errors_say_what_to_do_once_per_cause() {
    let dataset = testdata().join("tiny");
    let dataset = dataset.to_str().unwrap();
    let out = out_dir("eval-errors");
    let out = out.to_str().unwrap();
    let failed = |args: &[&str]| {
        let mut all = vec!["--dataset", dataset, "--out", out];
        all.extend_from_slice(args);
        let output = seal_eval(&all);
        assert!(!output.status.success(), "{args:?} should fail");
        stderr(&output)
    };
    // A numeric range on ids that are not plain numbers: the ids' form and the @FILE way.
    let range = failed(&["--queries", "1-300"]);
    assert!(range.contains("a range selects ids `<number>`"), "{range}");
    assert!(range.contains("ids look like `q1`, `q2`, `q3`"), "{range}");
    assert!(range.contains("--queries @FILE"), "{range}");
    let outside = failed(&["--queries", "q7-q9"]);
    assert!(outside.contains("its ids `q<number>` run from q1 to q4 (4 ids)"), "{outside}");
    // A missing @FILE: each cause on its own line, the OS error once.
    let missing = failed(&["--queries", "@/nonexistent/ids.txt"]);
    assert_eq!(missing.matches("No such file or directory").count(), 1, "{missing}");
    assert!(missing.starts_with("error: cannot use --queries\n  caused by: cannot read the query id list `/nonexistent/ids.txt` (@FILE)\n  caused by: "), "{missing}");
    // Retrieval flags beside --from-runs are rejected, not ignored.
    for flag in [&["--system", "seal"][..], &["--index", "x"], &["--k1", "1.5"]] {
        let mut args = flag.to_vec();
        args.extend(["--from-runs", "some.trec"]);
        let conflict = failed(&args);
        assert!(conflict.contains("cannot be used with"), "{conflict}");
    }
}
