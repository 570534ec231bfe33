//! Retrieval metrics with trec_eval's conventions, and the question-answering metrics of DPR.
//!
//! Not for: running retrieval, or reading runs ([`super::run`]).
//!
//! # Conventions (checked against ir_measures 0.3.7 / pytrec_eval on committed fixtures)
//!
//! - Each query's results are first put in trec_eval's order: score descending, ties by document
//!   id descending ([`super::run::sort_like_trec_eval`]); the caller's order does not matter.
//! - A document is *relevant* when its judgment is ≥ 1; unjudged documents count as 0;
//!   judgments ≤ 0 are never relevant and give no gain.
//! - `nDCG@10`: gain = judgment (graded, only when > 0), discount `log2(rank + 1)`, ideal DCG
//!   from the query's judgments sorted descending (trec_eval's `ndcg_cut_10`).
//! - `MAP`: average precision over everything retrieved (the run's depth), divided by the
//!   number of relevant documents.
//! - `MRR@10`: 1 / rank of the first relevant document within the first 10, else 0
//!   (trec_eval's `recip_rank` on the first 10 in trec_eval's order; ir_measures' own `RR@10`
//!   breaks ties by input order instead).
//! - `R@k` = relevant in the first k / relevant; `P@10` = relevant in the first 10 / 10 (also
//!   when fewer were retrieved); `gold@k` = 1 when a relevant document is in the first k
//!   (ir_measures' `Success@k`).
//! - A query with no relevant document scores 0 on every metric and is still averaged
//!   (trec_eval does the same). Queries without any judgment are not evaluated at all.
//! - `answer@k` (DPR's top-k accuracy): 1 when the text of one of the first k passages contains
//!   one of the query's answers, by token sequence after [`normalize_answer_tokens`].

use super::run::sort_like_trec_eval;
use crate::{Error, ErrorKind, Result, Score};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Judgments: query id → passage id → graded relevance.
pub type Qrels = BTreeMap<String, BTreeMap<String, i32>>;

/// Metric name → value, for one query or averaged.
pub type Metrics = BTreeMap<String, f64>;

/// The ranking metrics, in display order.
pub const RANKING_METRICS: [&str; 11] = [
    "nDCG@10", "MAP", "MRR@10", "R@5", "R@20", "R@100", "P@10", "gold@1", "gold@5", "gold@20",
    "gold@100",
];

/// The cut-offs of `gold@k` and `answer@k`.
pub const QA_CUTOFFS: [usize; 4] = [1, 5, 20, 100];

/// The answer metrics, in display order.
pub const ANSWER_METRICS: [&str; 4] = ["answer@1", "answer@5", "answer@20", "answer@100"];

/// Reads qrels: BEIR TSV (`query-id<TAB>corpus-id<TAB>score`, an optional header) or TREC
/// (`qid 0 docid rel`, whitespace-separated), told apart line by line by the column count.
///
/// # Errors
///
/// When the file cannot be read or a line is neither layout (the message names the line).
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot open the qrels {}", path.display()))
            .with_source(e)
    })?;
    let mut qrels = Qrels::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot read {}", path.display())).with_source(e)
        })?;
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        let (query, doc, relevance) = match fields.as_slice() {
            [] | [""] => continue,
            [q, d, r] | [q, _, d, r] => (*q, *d, *r),
            _ => {
                return Err(Error::new(
                    ErrorKind::Corpus,
                    format!(
                        "{}:{}: expected `query-id<TAB>corpus-id<TAB>score` or `qid 0 docid rel`",
                        path.display(),
                        index + 1
                    ),
                ))
            }
        };
        let relevance: i32 = match relevance.parse() {
            Ok(r) => r,
            Err(_) if index == 0 => continue, // the BEIR header
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Corpus,
                    format!(
                        "{}:{}: the relevance `{relevance}` is not an integer",
                        path.display(),
                        index + 1
                    ),
                ))
            }
        };
        qrels.entry(query.to_string()).or_default().insert(doc.to_string(), relevance);
    }
    Ok(qrels)
}

/// The ranking metrics of one query ([`RANKING_METRICS`]); `results` in any order.
pub fn ranking_metrics(results: &[(String, Score)], judgments: &BTreeMap<String, i32>) -> Metrics {
    let mut ranked = results.to_vec();
    sort_like_trec_eval(&mut ranked);
    let relevance = |doc: &str| judgments.get(doc).copied().unwrap_or(0);
    let num_relevant = judgments.values().filter(|&&r| r >= 1).count();
    let relevant_in_first =
        |k: usize| ranked.iter().take(k).filter(|(d, _)| relevance(d) >= 1).count();
    let mut metrics = Metrics::new();

    let discount = |rank0: usize| ((rank0 + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, (d, _))| f64::from(relevance(d).max(0)) / discount(i))
        .sum();
    let mut ideal: Vec<i32> = judgments.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let ideal_dcg: f64 =
        ideal.iter().take(10).enumerate().map(|(i, &r)| f64::from(r) / discount(i)).sum();
    metrics.insert("nDCG@10".into(), if ideal_dcg > 0.0 { dcg / ideal_dcg } else { 0.0 });

    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    for (i, (d, _)) in ranked.iter().enumerate() {
        if relevance(d) >= 1 {
            hits += 1;
            precision_sum += hits as f64 / (i + 1) as f64;
        }
    }
    let map = if num_relevant > 0 { precision_sum / num_relevant as f64 } else { 0.0 };
    metrics.insert("MAP".into(), map);

    let first_relevant = ranked.iter().take(10).position(|(d, _)| relevance(d) >= 1);
    metrics.insert("MRR@10".into(), first_relevant.map_or(0.0, |i| 1.0 / (i + 1) as f64));

    for k in [5, 20, 100] {
        let recall =
            if num_relevant > 0 { relevant_in_first(k) as f64 / num_relevant as f64 } else { 0.0 };
        metrics.insert(format!("R@{k}"), recall);
    }
    metrics.insert("P@10".into(), relevant_in_first(10) as f64 / 10.0);
    for k in QA_CUTOFFS {
        metrics.insert(format!("gold@{k}"), if relevant_in_first(k) > 0 { 1.0 } else { 0.0 });
    }
    metrics
}

/// Characters outside ASCII that [`normalize_answer_tokens`] treats as punctuation (besides
/// ASCII punctuation).
pub const UNICODE_PUNCTUATION: &str = "‘’‚‛“”„‟–—―…«»‹›·¡¿′″";

/// DPR/SQuAD answer normalisation, as tokens: lowercase; punctuation (ASCII punctuation and
/// [`UNICODE_PUNCTUATION`]) replaced by a space, so that `1950–1960` gives two tokens as DPR's
/// tokenizer does; split on whitespace; the articles `a`, `an`, `the` dropped.
pub fn normalize_answer_tokens(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase();
    let spaced: String = lowered
        .chars()
        .map(|c| if c.is_ascii_punctuation() || UNICODE_PUNCTUATION.contains(c) { ' ' } else { c })
        .collect();
    spaced
        .split_whitespace()
        .filter(|t| !matches!(*t, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

/// True when the normalised tokens of `answer` occur contiguously in `passage_tokens` (already
/// normalised). An answer that normalises to nothing never matches.
pub fn contains_answer_tokens(passage_tokens: &[String], answer: &[String]) -> bool {
    !answer.is_empty() && passage_tokens.windows(answer.len()).any(|window| window == answer)
}

/// True when `passage_text` contains `answer` in DPR's sense (see [`normalize_answer_tokens`]).
pub fn has_answer(passage_text: &str, answer: &str) -> bool {
    contains_answer_tokens(&normalize_answer_tokens(passage_text), &normalize_answer_tokens(answer))
}

/// `answer@k` for k in [`QA_CUTOFFS`]; `passage_tokens` gives the normalised tokens of a passage
/// by id (`None`: a passage not in the corpus never contains an answer). `results` in any order.
pub fn answer_metrics<'a>(
    results: &[(String, Score)],
    answers: &[String],
    passage_tokens: impl Fn(&str) -> Option<&'a [String]>,
) -> Metrics {
    let mut ranked = results.to_vec();
    sort_like_trec_eval(&mut ranked);
    let answers: Vec<Vec<String>> = answers.iter().map(|a| normalize_answer_tokens(a)).collect();
    let first_hit = ranked.iter().position(|(doc, _)| {
        passage_tokens(doc)
            .is_some_and(|tokens| answers.iter().any(|a| contains_answer_tokens(tokens, a)))
    });
    QA_CUTOFFS
        .iter()
        .map(|&k| (format!("answer@{k}"), if first_hit.is_some_and(|i| i < k) { 1.0 } else { 0.0 }))
        .collect()
}

/// The mean of each metric over the given queries (a metric missing for a query counts as
/// absent, not as 0: every query of an evaluation has the same metrics).
pub fn mean<'a>(per_query: impl IntoIterator<Item = &'a Metrics>) -> Metrics {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for metrics in per_query {
        for (name, value) in metrics {
            let entry = sums.entry(name.clone()).or_default();
            entry.0 += value;
            entry.1 += 1;
        }
    }
    sums.into_iter().map(|(name, (sum, count))| (name, sum / count as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgments(items: &[(&str, i32)]) -> BTreeMap<String, i32> {
        items.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }

    fn results(items: &[(&str, f64)]) -> Vec<(String, Score)> {
        items.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    /// Worked by hand: ranking a(0) b(2) c(-1) d(1), judgments b=2, d=1, e=3, c=-1.
    #[test]
    fn hand_worked_graded_query() {
        let m = ranking_metrics(
            &results(&[("a", 4.0), ("b", 3.0), ("c", 2.0), ("d", 1.0)]),
            &judgments(&[("b", 2), ("d", 1), ("e", 3), ("c", -1)]),
        );
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let ideal = 3.0 + 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((m["nDCG@10"] - dcg / ideal).abs() < 1e-12);
        assert!((m["MAP"] - (1.0 / 2.0 + 2.0 / 4.0) / 3.0).abs() < 1e-12);
        assert_eq!(m["MRR@10"], 0.5);
        assert!((m["R@5"] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m["P@10"], 0.2);
        assert_eq!((m["gold@1"], m["gold@5"]), (0.0, 1.0));
    }

    #[test]
    fn no_relevant_document_gives_zeros() {
        let m = ranking_metrics(&results(&[("a", 1.0)]), &judgments(&[("a", 0), ("b", -2)]));
        assert!(m.values().all(|&v| v == 0.0), "{m:?}");
    }

    #[test]
    fn answer_normalisation() {
        assert_eq!(
            normalize_answer_tokens("The U.S.A.’s  “Best” — an Answer!"),
            ["u", "s", "s", "best", "answer"]
        );
        assert!(has_answer("Released on May 18, 2018, in the US.", "May 18, 2018"));
        assert!(has_answer("born 1950–1960", "1950"));
        assert!(!has_answer("Wilhelm Conrad Röntgen", "Röntgen Wilhelm"));
        assert!(!has_answer("a the an", "the"), "empty answers never match");
        assert!(!has_answer("the 1980s", "1980"), "token match, not substring");
    }

    #[test]
    fn answer_at_k_uses_the_first_hit_in_trec_order() {
        let tokens: BTreeMap<String, Vec<String>> = [("x", "nothing here"), ("y", "it was 1603")]
            .iter()
            .map(|(id, text)| (id.to_string(), normalize_answer_tokens(text)))
            .collect();
        // Tie between x and y: trec order puts y (larger id) first.
        let m = answer_metrics(&results(&[("x", 1.0), ("y", 1.0)]), &["1603".into()], |id| {
            tokens.get(id).map(Vec::as_slice)
        });
        assert_eq!(m["answer@1"], 1.0);
        let m = answer_metrics(
            &results(&[("x", 2.0), ("y", 1.0), ("z", 0.0)]),
            &["1603".into()],
            |id| tokens.get(id).map(Vec::as_slice),
        );
        assert_eq!((m["answer@1"], m["answer@5"]), (0.0, 1.0));
    }
}
