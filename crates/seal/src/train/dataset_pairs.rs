//! Training pairs for a whole dataset folder or corpus file (`seal train data`): which judged
//! queries give supervised pairs, and the corpus pairs of every passage.
//!
//! Useful for: turning a BEIR-layout dataset into the trainer's input. Not for: the recipe of one
//! pair ([`super::data`]).
//!
//! **Invariant**: no pair comes from a `test` split's queries unless the caller names the slice
//! it trains on (`only`): NQ's pool has a single `test` qrels file whose first queries
//! (q0000-q0499) are the development slice, and the evaluation then uses the rest.

use std::path::Path;

use crate::corpus::{read_corpus, Passage, ReadOptions};
use crate::eval::dataset::{LoadOptions, QueryFilter};
use crate::eval::Dataset;
use crate::train::data::{supervised_pairs, unsupervised_pairs, RecipeSettings, TrainingPair};
use crate::{Error, ErrorKind, Result};

/// Which judged queries give supervised pairs.
#[derive(Debug, Clone, Default)]
pub struct QuerySelection {
    /// Only these (required on a `test` split: the development slice trained on).
    pub only: Option<QueryFilter>,
    /// Never these (held out to choose a recipe on them later).
    pub exclude: Option<QueryFilter>,
}

/// The pairs of a dataset, and where they came from.
#[derive(Debug, Clone)]
pub struct DatasetPairs {
    /// Supervised pairs first, then the corpus pairs.
    pub pairs: Vec<TrainingPair>,
    /// Passages in the corpus.
    pub passages: usize,
    /// Judged queries that gave supervised pairs (0 for a corpus alone).
    pub queries_used: usize,
    /// Judged queries of the split left out by the selection.
    pub queries_left_out: usize,
}

/// Pairs of the dataset in `dir`: supervised pairs from the judged queries of `qrels/<split>.tsv`
/// that `selection` keeps (none when `corpus_only` or when the split has no qrels file), then
/// the corpus pairs.
///
/// # Errors
/// A `test` split without `selection.only`, a selection that keeps no judged query, or an
/// unreadable dataset.
pub fn dataset_pairs(
    dir: &Path,
    split: &str,
    selection: &QuerySelection,
    corpus_only: bool,
    settings: &RecipeSettings,
) -> Result<DatasetPairs> {
    let qrels = dir.join("qrels").join(format!("{split}.tsv"));
    if corpus_only || !qrels.exists() {
        let corpus = read_passages(&dir.join("corpus.jsonl"))?;
        return Ok(corpus_pairs(corpus, settings));
    }
    if split == "test" && selection.only.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "training pairs from the `test` split would leak the evaluation; use `train`, or name the \
             development slice you train on with --queries (e.g. NQ's q0000-q0399) and evaluate on the rest",
        ));
    }
    let ds = Dataset::load(
        dir,
        split,
        &LoadOptions { filter: selection.only.clone(), ..LoadOptions::default() },
    )?;
    let judged = ds.queries.len();
    let queries: Vec<(String, String)> = ds
        .queries
        .iter()
        .filter(|q| !selection.exclude.as_ref().is_some_and(|f| f.matches(&q.id)))
        .map(|q| (q.id.clone(), q.text.clone()))
        .collect();
    if queries.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "no judged query of {} is left after --queries/--exclude-queries",
                qrels.display()
            ),
        ));
    }
    let mut pairs = supervised_pairs(&queries, &ds.qrels, &ds.corpus, settings);
    pairs.extend(unsupervised_pairs(&ds.corpus, settings));
    let all_judged = if selection.only.is_some() {
        Dataset::load(dir, split, &LoadOptions::default())?.queries.len()
    } else {
        judged
    };
    Ok(DatasetPairs {
        pairs,
        passages: ds.corpus.len(),
        queries_used: queries.len(),
        queries_left_out: all_judged - queries.len(),
    })
}

/// Corpus pairs only, from a corpus file (BEIR JSONL, DPR TSV, KILT TSV).
///
/// # Errors
/// An unreadable corpus.
pub fn corpus_file_pairs(file: &Path, settings: &RecipeSettings) -> Result<DatasetPairs> {
    Ok(corpus_pairs(read_passages(file)?, settings))
}

fn corpus_pairs(corpus: Vec<Passage>, settings: &RecipeSettings) -> DatasetPairs {
    DatasetPairs {
        pairs: unsupervised_pairs(&corpus, settings),
        passages: corpus.len(),
        queries_used: 0,
        queries_left_out: 0,
    }
}

fn read_passages(path: &Path) -> Result<Vec<Passage>> {
    read_corpus(path, None, ReadOptions::default())?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::PairKind;

    fn tiny() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/eval/tiny")
    }

    fn range(spec: &str) -> Option<QueryFilter> {
        Some(QueryFilter::parse(spec).unwrap())
    }

    /// The queries whose text a supervised pair's prompt carries.
    fn supervised_queries(made: &DatasetPairs) -> Vec<&'static str> {
        let texts = ["glacier ice", "volcano aircraft", "ash", "ice"];
        let mut seen: Vec<&str> = made
            .pairs
            .iter()
            .filter(|p| p.kind.is_supervised())
            .map(|p| {
                *texts
                    .iter()
                    .filter(|t| p.prompt.contains(&format!("{t}\n")) || p.prompt.contains(*t))
                    .max_by_key(|t| t.len())
                    .expect("a supervised prompt holds its query")
            })
            .collect();
        seen.dedup();
        seen
    }

    #[test]
    fn a_test_split_gives_supervised_pairs_only_for_a_named_slice() {
        let settings = RecipeSettings::default();
        let err = dataset_pairs(&tiny(), "test", &QuerySelection::default(), false, &settings)
            .unwrap_err();
        assert!(err.to_string().contains("--queries"), "{err}");

        let only = QuerySelection { only: range("q1-q2"), exclude: None };
        let made = dataset_pairs(&tiny(), "test", &only, false, &settings).unwrap();
        // d6 is empty and skipped.
        assert_eq!((made.queries_used, made.queries_left_out, made.passages), (2, 2, 5));
        // q1 judges one passage, q2 two: 3 title and 10 span pairs each.
        let per_judgment = settings.title_copies + settings.span_copies;
        let supervised = made.pairs.iter().filter(|p| p.kind.is_supervised()).count();
        assert_eq!(supervised, 3 * per_judgment);
        assert_eq!(supervised_queries(&made), ["glacier ice", "volcano aircraft"]);
        let corpus = made.pairs.iter().filter(|p| !p.kind.is_supervised()).count();
        assert_eq!(
            corpus,
            unsupervised_pairs(&read_passages(&tiny().join("corpus.jsonl")).unwrap(), &settings)
                .len()
        );
    }

    #[test]
    fn excluded_queries_give_no_pairs_and_corpus_only_gives_none_at_all() {
        let settings = RecipeSettings::default();
        let selection = QuerySelection { only: range("q1-q4"), exclude: range("q2-q2") };
        let made = dataset_pairs(&tiny(), "test", &selection, false, &settings).unwrap();
        assert_eq!((made.queries_used, made.queries_left_out), (3, 1));
        assert!(!supervised_queries(&made).contains(&"volcano aircraft"));

        let none = QuerySelection { only: range("q1-q1"), exclude: range("q1-q1") };
        assert!(dataset_pairs(&tiny(), "test", &none, false, &settings).is_err());

        let corpus_only =
            dataset_pairs(&tiny(), "test", &QuerySelection::default(), true, &settings).unwrap();
        assert_eq!(corpus_only.queries_used, 0);
        assert!(corpus_only.pairs.iter().all(|p| !p.kind.is_supervised()));
        assert!(corpus_only.pairs.iter().any(|p| p.kind == PairKind::PassageTitle));
    }
}
