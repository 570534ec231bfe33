//! `seal index` and opening an index: the target directory's checks, the manifest checked
//! against the files and the model, `--skip-bad-lines`' list, search settings refused before the
//! model loads, and (in [`crash`]) rebuilds killed at random instants.

mod crash;

use crate::common;
use seal::indexer::{IndexFiles, Manifest};
use seal::model::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn seal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_seal"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A corpus file and what an index of it holds.
struct Corpus {
    path: PathBuf,
    num_docs: usize,
    first_id: String,
    /// A query its passages answer.
    query: String,
}

/// The committed tiny corpus: 25 Wikipedia passages.
fn tiny_corpus() -> Corpus {
    Corpus {
        path: repo_root().join("testdata/tiny/corpus.jsonl"),
        num_docs: 25,
        first_id: "nqg0000".into(),
        query: "who won the first nobel prize in physics".into(),
    }
}

/// `copies` renamed copies of the tiny corpus's passages in `dir`: a build long enough to be
/// killed in the middle.
fn generated_corpus(dir: &Path, passages: usize) -> Corpus {
    let tiny = std::fs::read_to_string(tiny_corpus().path).unwrap();
    let lines: Vec<Value> = tiny.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut out = String::new();
    for i in 0..passages {
        let mut passage = lines[i % lines.len()].clone();
        passage["_id"] = Value::from(format!("copy{i}"));
        passage["title"] = Value::from(format!("{} ({i})", passage["title"].as_str().unwrap()));
        out.push_str(&passage.to_string());
        out.push('\n');
    }
    let path = dir.join(format!("generated-{passages}.jsonl"));
    std::fs::write(&path, out).unwrap();
    Corpus { path, num_docs: passages, first_id: "copy0".into(), query: tiny_corpus().query }
}

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seal-index-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn index(corpus: &Path, out: &Path, extra: &[&str]) -> Output {
    seal()
        .arg("index")
        .args(extra)
        .arg("--corpus")
        .arg(corpus)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(common::smollm2_path())
        .output()
        .unwrap()
}

/// The tiny corpus indexed once; tests copy it before they change it.
fn tiny_index() -> &'static Path {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| {
        let dir = scratch("tiny").join("idx");
        let out = index(&tiny_corpus().path, &dir, &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// A copy of the tiny index whose manifest `edit` changed.
fn with_manifest(test: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = scratch(test).join("idx");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["fm.idx", "docs.bin", "manifest.json"] {
        std::fs::copy(tiny_index().join(f), dir.join(f)).unwrap();
    }
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    dir
}

#[test]
fn a_manifest_that_does_not_describe_its_files_is_an_error_naming_the_field() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 6] = [
        ("docs", |m| m["num_docs"] = 999.into(), "num_docs = 999, but fm.idx holds 25 passages"),
        ("tokens", |m| m["num_tokens"] = 7.into(), "num_tokens = 7, but fm.idx holds"),
        (
            "vocab",
            |m| m["tokenizer"]["vocab_size"] = 100.into(),
            "vocab_size = 100, but fm.idx holds token id",
        ),
        (
            "sep",
            |m| m["tokenizer"]["separator"] = 5.into(),
            "separator = 5, but fm.idx separates passages with token",
        ),
        ("size", |m| m["sizes"]["docs"] = 1.into(), "sizes.docs = 1, but docs.bin is"),
        (
            "delim",
            |m| m["tokenizer"]["title_delimiter"] = serde_json::json!([1, 99_999_999]),
            "token 99999999 is outside the vocabulary",
        ),
    ];
    for (name, edit, expected) in cases {
        let dir = with_manifest(&format!("bad-{name}"), edit);
        let e = IndexFiles::open(&dir).unwrap_err().to_string();
        assert!(e.contains(expected), "{name}: {e}");
        assert!(e.contains("rebuild the index with `seal index"), "{name}: {e}");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}

#[test]
fn tokenizer_facts_are_checked_against_the_model() {
    let tokenizer = Tokenizer::from_gguf(&common::smollm2_path()).unwrap();
    let good = IndexFiles::open(tiny_index()).unwrap().manifest;
    good.check_tokenizer(tiny_index(), &tokenizer).unwrap();
    let edited = |edit: fn(&mut Manifest)| {
        let mut m = good.clone();
        edit(&mut m);
        m.check_tokenizer(tiny_index(), &tokenizer).unwrap_err().to_string()
    };
    // Values the files cannot contradict: a larger vocabulary, another title delimiter.
    let e = edited(|m| m.tokenizer.vocab_size += 1000);
    assert!(e.contains("but the model's tokenizer has 49152"), "{e}");
    let e = edited(|m| m.tokenizer.title_delimiter = vec![1]);
    assert!(e.contains("tokenizer.title_delimiter = [1]"), "{e}");
}

#[test]
fn an_index_written_before_the_skipped_lines_field_still_opens() {
    let dir = with_manifest("legacy", |m| {
        m.as_object_mut().unwrap().remove("skipped_bad_lines");
    });
    let files = IndexFiles::open(&dir).unwrap();
    assert_eq!(files.manifest.skipped_bad_lines, 0);
    assert_eq!(files.docs.len(), 25);
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn out_refuses_a_directory_that_is_not_a_seal_index_and_keeps_its_files() {
    let dir = scratch("foreign");
    std::fs::write(dir.join("manifest.json"), r#"{"name": "another-app"}"#).unwrap();
    std::fs::write(dir.join("thesis.tex"), "mine").unwrap();
    let out = index(&tiny_corpus().path, &dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a seal index: it holds thesis.tex"), "{err}");
    std::fs::remove_file(dir.join("thesis.tex")).unwrap();
    let out = index(&tiny_corpus().path, &dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manifest.json is not a seal index manifest"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("manifest.json")).unwrap(),
        r#"{"name": "another-app"}"#
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn skip_bad_lines_lists_the_first_lines_and_where_the_full_list_is() {
    let dir = scratch("skip");
    let good = std::fs::read_to_string(tiny_corpus().path).unwrap();
    let mut corpus = String::new();
    let mut bad = Vec::new();
    for (i, line) in good.lines().enumerate() {
        corpus.push_str(line);
        corpus.push('\n');
        if i % 2 == 0 {
            corpus.push_str("{\"_id\": \"broken\", \"text\": \n");
            bad.push((corpus.lines().count()) as u64);
        }
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, corpus).unwrap();
    let out_dir = dir.join("idx");
    let out = index(&path, &out_dir, &["--skip-bad-lines"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: Vec<String> = bad.iter().take(10).map(u64::to_string).collect();
    let list = out_dir.join("skipped-lines.tsv");
    let expected = format!(
        "unreadable lines: {} (the first 10 of {}; the list with reasons is in {})",
        first.join(", "),
        bad.len(),
        list.display()
    );
    assert!(stdout.contains(&expected), "{stdout}\nexpected: {expected}");
    let listed: Vec<u64> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (line, reason) = l.split_once('\t').unwrap();
            assert!(reason.starts_with("invalid JSON"), "{l}");
            line.parse().unwrap()
        })
        .collect();
    assert_eq!(listed, bad);
    let files = IndexFiles::open(&out_dir).unwrap();
    assert_eq!(files.manifest.skipped_bad_lines, bad.len() as u64);
    assert_eq!(files.docs.len(), 25);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn search_settings_out_of_range_are_refused_before_the_model_loads() {
    // The index does not exist: the settings are refused before anything is opened.
    let cases: [(&[&str], &str); 5] = [
        (&["--beam", "0"], "--beam 0: it must be between 1 and 64 (default 15)"),
        (&["--beam", "100000"], "--beam 100000: it must be between 1 and 64"),
        (&["--max-tokens", "0"], "--max-tokens 0: it must be between 1 and 32"),
        (&["-k", "0"], "--k 0: it must be at least 1"),
        (&["--length-norm", "2"], "--length-norm 2: it must be a number from 0"),
    ];
    for (args, expected) in cases {
        let out = seal()
            .args(["search", "--index", "/nonexistent/seal-index"])
            .args(args)
            .arg("a query")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout, no \"no passage matched\"");
    }
}
