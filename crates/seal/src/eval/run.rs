//! TREC run files and the order trec_eval ranks a query's results in.
//!
//! Not for: computing metrics ([`super::metrics`]).
//!
//! # The sorting rule
//!
//! trec_eval (and so pytrec_eval and ir_measures' default provider) ignores the rank column of a
//! run file: it sorts each query's documents by score descending and breaks ties by document id
//! **descending** (byte order). Every metric here uses that order ([`sort_like_trec_eval`]), and
//! [`write_trec_run`] writes each query in that order, so the file, the per-query metrics and
//! any external trec_eval run agree even when scores tie.

use crate::{Error, ErrorKind, Result, Score};
use std::collections::BTreeMap;
use std::path::Path;

/// Ranked results of many queries: query id → (passage id, score), best first.
pub type Run = BTreeMap<String, Vec<(String, Score)>>;

/// trec_eval's order: score descending, ties by document id descending (byte order).
pub fn trec_eval_order(a: &(String, Score), b: &(String, Score)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
}

/// Sorts one query's results in trec_eval's order (see the module docs).
pub fn sort_like_trec_eval(results: &mut [(String, Score)]) {
    results.sort_by(trec_eval_order);
}

/// `run` as the text of a TREC run file (`qid Q0 docid rank score tag`), queries in id order,
/// each query's results in trec_eval's order; `tag` loses its whitespace (`seal` when empty).
pub fn format_trec_run(run: &Run, tag: &str) -> String {
    use std::fmt::Write as _;
    let tag = if tag.trim().is_empty() { "seal" } else { tag.trim() };
    let tag: String = tag.split_whitespace().collect::<Vec<_>>().join("_");
    let mut out = String::new();
    for (query_id, results) in run {
        let mut sorted = results.clone();
        sort_like_trec_eval(&mut sorted);
        for (rank, (doc_id, score)) in sorted.iter().enumerate() {
            let _ = writeln!(out, "{query_id} Q0 {doc_id} {} {score} {tag}", rank + 1);
        }
    }
    out
}

/// Writes `run` as a TREC run file ([`format_trec_run`]) through a temporary file and a rename.
/// To record what made it as well, use [`super::origin::write_run_with_provenance`].
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_trec_run(path: &Path, run: &Run, tag: &str) -> Result<()> {
    crate::docstore::write_atomically(path, format_trec_run(run, tag).as_bytes())
}

/// Reads a TREC run file (6 whitespace-separated columns; the rank column is ignored, the order
/// of each query is trec_eval's). [`super::origin::RunFile::read`] also reads its provenance.
///
/// # Errors
///
/// When the file cannot be read, or a line does not have 6 columns and a numeric score (the
/// message names the line).
pub fn read_trec_run(path: &Path) -> Result<Run> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot read the run file {}", path.display()))
            .with_source(e)
    })?;
    parse_trec_run(&text, path)
}

/// Parses the text of a TREC run file read from `path` (named in errors); see
/// [`read_trec_run`].
///
/// # Errors
///
/// A line without 6 columns and a finite numeric score.
pub fn parse_trec_run(text: &str, path: &Path) -> Result<Run> {
    let mut run = Run::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = |what: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}:{}: {what}; a TREC run line is `qid Q0 docid rank score tag`",
                    path.display(),
                    index + 1
                ),
            )
        };
        if fields.len() != 6 {
            return Err(bad(&format!("expected 6 columns, found {}", fields.len())));
        }
        let score: Score = fields[4].parse().map_err(|_| bad("the score is not a number"))?;
        if !score.is_finite() {
            return Err(bad("the score is not finite"));
        }
        run.entry(fields[0].to_string()).or_default().push((fields[2].to_string(), score));
    }
    for results in run.values_mut() {
        sort_like_trec_eval(results);
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_break_by_id_descending_in_byte_order() {
        let mut results = vec![
            ("d1".to_string(), 1.0),
            ("d10".to_string(), 1.0),
            ("d2".to_string(), 2.0),
            ("d9".to_string(), 1.0),
            ("D9".to_string(), 1.0),
        ];
        sort_like_trec_eval(&mut results);
        let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["d2", "d9", "d10", "d1", "D9"]);
    }

    #[test]
    fn write_then_read_round_trips_in_trec_order() {
        let dir = std::env::temp_dir().join(format!("seal-run-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.trec");
        let mut run = Run::new();
        run.insert("q1".into(), vec![("a".into(), 0.5), ("b".into(), 0.5), ("c".into(), 2.25)]);
        run.insert("q0".into(), vec![("z".into(), -1.0)]);
        write_trec_run(&path, &run, "my system").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "q0 Q0 z 1 -1 my_system\nq1 Q0 c 1 2.25 my_system\nq1 Q0 b 2 0.5 my_system\n\
             q1 Q0 a 3 0.5 my_system\n"
        );
        let back = read_trec_run(&path).unwrap();
        assert_eq!(back["q1"], vec![("c".into(), 2.25), ("b".into(), 0.5), ("a".into(), 0.5)]);
        std::fs::write(&path, "q1 Q0 a 1 x tag\n").unwrap();
        let message = read_trec_run(&path).unwrap_err().to_string();
        assert!(message.contains("run.trec:1: the score is not a number"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
