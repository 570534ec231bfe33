//! BEIR-layout datasets: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`, and optionally
//! `distractors.jsonl` (extra unjudged passages, as in `nq_gold_passages`).
//!
//! Not for: other layouts (convert them to BEIR's first), metrics.
//!
//! The evaluated queries are those with at least one judgment in the split's qrels, kept in
//! `queries.jsonl` order, then narrowed by a [`QueryFilter`] and a limit. A qrels query missing
//! from `queries.jsonl` is an error (the dataset is inconsistent).

use super::metrics::{read_qrels, Qrels};
use crate::corpus::{read_corpus, CorpusFormat, Passage, ReadOptions, ReadStats};
use crate::{Error, ErrorKind, Result};
use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// One query of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `_id` in `queries.jsonl`.
    pub id: String,
    /// The query text.
    pub text: String,
    /// `metadata.answers` (question answering sets); empty otherwise.
    pub answers: Vec<String>,
}

/// Which queries to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFilter {
    /// Ids `prefix + number` with `from <= number <= to`, e.g. `q0500-q2654` or `1-300`.
    Range {
        /// The non-numeric part shared by both ends (`q`, or empty).
        prefix: String,
        /// First number, inclusive.
        from: u64,
        /// Last number, inclusive.
        to: u64,
    },
    /// Exactly these ids.
    List(BTreeSet<String>),
}

/// Splits `q0500` into (`q`, 500); `None` when the id does not end in digits.
fn split_numbered_id(id: &str) -> Option<(&str, u64)> {
    let digits_start = id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, digits) = id.split_at(digits_start);
    if digits.is_empty() {
        return None;
    }
    digits.parse().ok().map(|n| (prefix, n))
}

impl QueryFilter {
    /// Parses `FROM-TO` (a range of numbered ids with the same prefix) or `@FILE` (one id a
    /// line; blank lines and `#` comments ignored).
    ///
    /// # Errors
    ///
    /// When the spec is neither form, or the file cannot be read.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if let Some(file) = spec.strip_prefix('@') {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot read the query id list `{file}` (@FILE)"))
                    .with_source(e)
            })?;
            let ids = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            return Ok(QueryFilter::List(ids));
        }
        for (dash, _) in spec.match_indices('-') {
            let (left, right) = (&spec[..dash], &spec[dash + 1..]);
            if let (Some((prefix, from)), Some((right_prefix, to))) =
                (split_numbered_id(left), split_numbered_id(right))
            {
                if prefix == right_prefix && from <= to {
                    return Ok(QueryFilter::Range { prefix: prefix.to_string(), from, to });
                }
            }
        }
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "cannot read the query filter `{spec}`: give a range of numbered ids with the \
                 same prefix (`q0500-q2654`, `1-300`) or `@FILE` with one query id a line"
            ),
        ))
    }

    /// Whether the query `id` passes the filter.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            QueryFilter::List(ids) => ids.contains(id),
            QueryFilter::Range { prefix, from, to } => split_numbered_id(id)
                .is_some_and(|(p, n)| p == prefix && (*from..=*to).contains(&n)),
        }
    }
}

/// How to load a dataset.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Add `distractors.jsonl` (next to `corpus.jsonl`) to the corpus.
    pub with_distractors: bool,
    /// Evaluate only the queries that pass.
    pub filter: Option<QueryFilter>,
    /// Evaluate at most this many queries (the first ones after filtering).
    pub limit: Option<usize>,
    /// Skip unreadable corpus lines instead of failing.
    pub skip_bad_lines: bool,
}

/// A loaded dataset: the whole corpus in memory, the evaluated queries and the split's qrels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder name (`scifact`).
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// The qrels split (`test`).
    pub split: String,
    /// Every passage, corpus order (then the distractors, when added).
    pub corpus: Vec<Passage>,
    /// The corpus files read, in order.
    pub corpus_files: Vec<PathBuf>,
    /// What reading the corpus skipped.
    pub corpus_stats: ReadStats,
    /// The queries to evaluate, in `queries.jsonl` order.
    pub queries: Vec<Query>,
    /// The judgments of the evaluated queries only.
    pub qrels: Qrels,
}

impl Dataset {
    /// Loads `dir` with the qrels of `split`.
    ///
    /// # Errors
    ///
    /// When a file is missing or unreadable, a passage id repeats, or a judged query is missing
    /// from `queries.jsonl`; messages name the file.
    pub fn load(dir: &Path, split: &str, options: &LoadOptions) -> Result<Self> {
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        if !qrels_path.exists() {
            let available: Vec<String> = std::fs::read_dir(dir.join("qrels"))
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .filter_map(|e| {
                            e.file_name().to_str()?.strip_suffix(".tsv").map(String::from)
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} has no qrels for split `{split}` (no {}); available: {}",
                    dir.display(),
                    qrels_path.display(),
                    if available.is_empty() { "none".to_string() } else { available.join(", ") }
                ),
            ));
        }
        let all_qrels = read_qrels(&qrels_path)?;
        let all_queries = read_queries(&dir.join("queries.jsonl"))?;
        let known: HashSet<&str> = all_queries.iter().map(|q| q.id.as_str()).collect();
        if let Some(missing) = all_qrels.keys().find(|q| !known.contains(q.as_str())) {
            return Err(Error::new(
                ErrorKind::Corpus,
                format!(
                    "query `{missing}` is judged in {} but missing from queries.jsonl",
                    qrels_path.display()
                ),
            ));
        }
        let mut queries: Vec<Query> = all_queries
            .into_iter()
            .filter(|q| all_qrels.contains_key(&q.id))
            .filter(|q| options.filter.as_ref().is_none_or(|f| f.matches(&q.id)))
            .collect();
        if let Some(limit) = options.limit {
            queries.truncate(limit);
        }
        let qrels: Qrels =
            queries.iter().map(|q| (q.id.clone(), all_qrels[&q.id].clone())).collect();

        let mut corpus_files = vec![dir.join("corpus.jsonl")];
        if options.with_distractors {
            let distractors = dir.join("distractors.jsonl");
            if !distractors.exists() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} has no distractors.jsonl to add", dir.display()),
                ));
            }
            corpus_files.push(distractors);
        }
        let mut corpus = Vec::new();
        let mut corpus_stats = ReadStats::default();
        let read_options = ReadOptions { skip_bad_lines: options.skip_bad_lines };
        for file in &corpus_files {
            let mut reader = read_corpus(file, Some(CorpusFormat::BeirJsonl), read_options)?;
            for passage in reader.by_ref() {
                corpus.push(passage?);
            }
            let stats = reader.stats();
            corpus_stats.passages += stats.passages;
            corpus_stats.bad_lines += stats.bad_lines;
            corpus_stats.empty_passages += stats.empty_passages;
        }
        let mut seen = HashSet::with_capacity(corpus.len());
        if let Some(duplicate) = corpus.iter().find(|p| !seen.insert(p.id.as_str())) {
            return Err(Error::new(
                ErrorKind::Corpus,
                format!("passage id `{}` occurs twice in {}", duplicate.id, dir.display()),
            ));
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Dataset {
            name,
            dir: dir.to_path_buf(),
            split: split.to_string(),
            corpus,
            corpus_files,
            corpus_stats,
            queries,
            qrels,
        })
    }

    /// Whether any evaluated query carries answers (then `answer@k` is measured).
    pub fn has_answers(&self) -> bool {
        self.queries.iter().any(|q| !q.answers.is_empty())
    }

    /// A string that changes when a corpus file changes (paths, sizes, modification times):
    /// stored in indexes built from this dataset so that a stale index is not reused.
    pub fn corpus_fingerprint(&self) -> String {
        self.corpus_files
            .iter()
            .map(|file| {
                let metadata = std::fs::metadata(file).ok();
                let size = metadata.as_ref().map_or(0, |m| m.len());
                let modified = metadata
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let path = file.canonicalize().unwrap_or_else(|_| file.clone());
                format!("{}:{size}:{modified}", path.display())
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Why no query of `split` in `dir` passes `filter` (given as `spec`) and `limit`, and what to
/// do: for a range, the form of the split's ids (a range needs numbered ids with one prefix;
/// other ids go in an `@FILE`); for a list, examples of both the list's and the split's ids.
pub fn explain_no_query(
    dir: &Path,
    split: &str,
    filter: Option<&QueryFilter>,
    spec: Option<&str>,
    limit: Option<usize>,
) -> String {
    if limit == Some(0) {
        return "no query to evaluate: --limit 0 leaves none; give a positive --limit".into();
    }
    let judged: Vec<String> = read_qrels(&dir.join("qrels").join(format!("{split}.tsv")))
        .map(|qrels| qrels.into_keys().collect())
        .unwrap_or_default();
    let examples = |ids: &mut dyn Iterator<Item = &String>| -> String {
        ids.take(3).map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
    };
    let spec = spec.unwrap_or_default();
    if judged.is_empty() {
        return format!("no query to evaluate: split `{split}` of {} judges none", dir.display());
    }
    match filter {
        None => format!("no query to evaluate in split `{split}` of {}", dir.display()),
        Some(QueryFilter::Range { prefix, .. }) => {
            let numbered: Vec<&String> = judged
                .iter()
                .filter(|id| split_numbered_id(id).is_some_and(|(p, _)| p == prefix))
                .collect();
            if numbered.is_empty() {
                format!(
                    "no judged query of split `{split}` matches --queries {spec}: a range selects \
                     ids `{prefix}<number>`, and this split's ids look like {}. Give a range of \
                     the ids' own form, or list the ids one a line in a file and pass --queries \
                     @FILE",
                    examples(&mut judged.iter())
                )
            } else {
                let mut numbers: Vec<u64> = numbered
                    .iter()
                    .filter_map(|id| split_numbered_id(id))
                    .map(|(_, n)| n)
                    .collect();
                numbers.sort_unstable();
                format!(
                    "no judged query of split `{split}` matches --queries {spec}: its ids \
                     `{prefix}<number>` run from {prefix}{} to {prefix}{} ({} ids)",
                    numbers[0],
                    numbers[numbers.len() - 1],
                    numbers.len()
                )
            }
        }
        Some(QueryFilter::List(ids)) => format!(
            "none of the {} ids in --queries {spec} (e.g. {}) is a judged query of split \
             `{split}` (e.g. {}): check the split (--split) and the ids",
            ids.len(),
            examples(&mut ids.iter()),
            examples(&mut judged.iter())
        ),
    }
}

/// Reads queries, one a line: BEIR JSONL (`_id` or `id`, string or number; `text` or `query`;
/// `metadata.answers` when present) or `id<TAB>query` (a first line `id<TAB>...` is a header).
/// The one query reader of the crate: `seal eval` and `seal search --queries` both use it.
///
/// # Errors
///
/// When the file cannot be read or a line is neither form (the message names the line).
pub fn read_queries(path: &Path) -> Result<Vec<Query>> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot open {}", path.display())).with_source(e)
    })?;
    let mut queries = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let bad = |what: String| {
            Error::new(ErrorKind::Corpus, format!("{}:{}: {what}", path.display(), index + 1))
        };
        let line = line.map_err(|e| bad(format!("cannot read the line: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        if !line.trim_start().starts_with('{') {
            let Some((id, text)) = line.split_once('\t') else {
                return Err(bad("expected a JSON object or `id<TAB>query`".into()));
            };
            if index == 0 && id == "id" {
                continue;
            }
            queries.push(Query { id: id.to_owned(), text: text.to_owned(), answers: Vec::new() });
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let id = match value.get("_id").or_else(|| value.get("id")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(bad("missing `_id`".into())),
        };
        let text = value
            .get("text")
            .or_else(|| value.get("query"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| bad("missing `text`".into()))?
            .to_string();
        let answers = match value.pointer("/metadata/answers") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("`metadata.answers` must be a list of strings".into()))?,
            Some(_) => return Err(bad("`metadata.answers` must be a list of strings".into())),
        };
        queries.push(Query { id, text, answers });
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_filter() {
        let filter = QueryFilter::parse("q0500-q2654").unwrap();
        assert_eq!(filter, QueryFilter::Range { prefix: "q".into(), from: 500, to: 2654 });
        assert!(filter.matches("q0500") && filter.matches("q2654") && filter.matches("q1000"));
        assert!(!filter.matches("q0499") && !filter.matches("q2655") && !filter.matches("x0600"));
        let numeric = QueryFilter::parse("1-300").unwrap();
        assert!(numeric.matches("300") && !numeric.matches("301") && !numeric.matches("q5"));
        let dashed = QueryFilter::parse("doc-1-doc-9").unwrap();
        assert!(dashed.matches("doc-5"));
        assert!(QueryFilter::parse("q9-q1").is_err());
        assert!(QueryFilter::parse("abc").is_err());
    }

    #[test]
    fn queries_read_as_jsonl_or_tsv() {
        let dir = std::env::temp_dir().join(format!("seal-queries-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let read = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            read_queries(&path)
        };
        let pairs = |q: Vec<Query>| -> Vec<(String, String)> {
            q.into_iter().map(|q| (q.id, q.text)).collect()
        };
        let want =
            vec![("1".to_owned(), "who wrote hamlet".to_owned()), ("q2".into(), "dna".into())];
        let jsonl = "{\"_id\": 1, \"text\": \"who wrote hamlet\"}\n\n{\"id\": \"q2\", \"query\": \"dna\"}\n";
        assert_eq!(pairs(read("q.jsonl", jsonl).unwrap()), want);
        let tsv = "id\tquery\n1\twho wrote hamlet\nq2\tdna\n";
        assert_eq!(pairs(read("q.tsv", tsv).unwrap()), want);
        let err = read("bad.tsv", "1\tok\nno tab here\n").unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
        assert!(read("bad.jsonl", "{\"text\": \"no id\"}\n").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
