//! The evaluation harness: the [`Retriever`] trait every system implements, and [`evaluate`],
//! which runs a dataset's queries through one, times them, and measures the run.
//!
//! Not for: command-line parsing or printing beyond [`EvalReport::table`] (that is `seal eval`).

use super::dataset::Dataset;
use super::metrics::{self, Metrics, ANSWER_METRICS, RANKING_METRICS};
use super::provenance::Provenance;
use super::run::{sort_like_trec_eval, Run};
use crate::{Result, Score};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A retrieval system under evaluation: BM25, SEAL, a hybrid.
pub trait Retriever: Send + Sync {
    /// A short name for tables and run files (`bm25`, `seal`).
    fn name(&self) -> &str;

    /// The best `k` passages for `query`, best first: (passage id, score).
    ///
    /// # Errors
    ///
    /// Whatever the system cannot do; the evaluation stops with that error.
    fn retrieve(&self, query: &str, k: usize) -> Result<Vec<(String, Score)>>;
}

impl<R: Retriever + ?Sized> Retriever for Box<R> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn retrieve(&self, query: &str, k: usize) -> Result<Vec<(String, Score)>> {
        (**self).retrieve(query, k)
    }
}

impl<R: Retriever + ?Sized> Retriever for &R {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn retrieve(&self, query: &str, k: usize) -> Result<Vec<(String, Score)>> {
        (**self).retrieve(query, k)
    }
}

/// How to run an evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Passages retrieved per query (MAP is measured over this depth).
    pub depth: usize,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { depth: 1000, progress: true }
    }
}

/// The outcome of an evaluation: the run, per-query and mean metrics, timings.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// [`Retriever::name`].
    pub system: String,
    /// [`Dataset::name`].
    pub dataset: String,
    /// The qrels split.
    pub split: String,
    /// Every evaluated query's results (trec_eval order).
    pub run: Run,
    /// Metrics by query id.
    pub per_query: BTreeMap<String, Metrics>,
    /// Mean over the evaluated queries.
    pub mean: Metrics,
    /// Seconds per query, in evaluation order (empty for a run evaluated from a file).
    pub latencies: Vec<f64>,
    /// Wall time of all queries, seconds.
    pub total_seconds: f64,
    /// Per-stage milliseconds of every query, by stage name (SEAL's `body`, `titles`, …; empty
    /// for systems that do not report stages).
    pub stages: BTreeMap<String, Vec<f64>>,
    /// What produced the run (`None` until the caller records it; `seal eval` always does).
    pub provenance: Option<Provenance>,
}

/// Runs every query of `dataset` through `retriever` and measures the run.
///
/// # Errors
///
/// The first error of the retriever.
pub fn evaluate(
    dataset: &Dataset,
    retriever: &dyn Retriever,
    options: &EvalOptions,
) -> Result<EvalReport> {
    let progress = if options.progress {
        indicatif::ProgressBar::new(dataset.queries.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} queries, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress.set_message(format!("{} on {}", retriever.name(), dataset.name));
    let mut run = Run::new();
    let mut latencies = Vec::with_capacity(dataset.queries.len());
    let start = Instant::now();
    // Without a terminal the bar is hidden; a log line every minute says how far it got.
    let log_lines = options.progress && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = Instant::now();
    let total = dataset.queries.len();
    for (done, query) in dataset.queries.iter().enumerate() {
        let query_start = Instant::now();
        let results = retriever.retrieve(&query.text, options.depth)?;
        latencies.push(query_start.elapsed().as_secs_f64());
        run.insert(query.id.clone(), results);
        progress.inc(1);
        if log_lines && (last_line.elapsed().as_secs() >= 60 || done + 1 == total) {
            last_line = Instant::now();
            let elapsed = start.elapsed().as_secs_f64();
            let rate = (done + 1) as f64 / elapsed;
            eprintln!(
                "{} on {}: {}/{total} queries, {rate:.2} queries/s, eta {:.0} s",
                retriever.name(),
                dataset.name,
                done + 1,
                (total - done - 1) as f64 / rate
            );
        }
    }
    let total_seconds = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let mut report = evaluate_run(dataset, run, retriever.name());
    report.latencies = latencies;
    report.total_seconds = total_seconds;
    Ok(report)
}

/// Measures an existing run (e.g. a fusion of two runs) on `dataset`'s evaluated queries; a
/// query missing from the run scores 0 (trec_eval's `-c`), queries that are not evaluated are
/// dropped, and a passage listed twice for a query keeps only its best-scored entry.
pub fn evaluate_run(dataset: &Dataset, mut run: Run, system: &str) -> EvalReport {
    run.retain(|query, _| dataset.qrels.contains_key(query));
    for query in dataset.qrels.keys() {
        run.entry(query.clone()).or_default();
    }
    for results in run.values_mut() {
        sort_like_trec_eval(results);
        // trec_eval rejects a document listed twice for a query; keep its best entry.
        let mut seen = std::collections::HashSet::new();
        results.retain(|(id, _)| seen.insert(id.clone()));
    }
    let answer_tokens: HashMap<&str, Vec<String>> = if dataset.has_answers() {
        dataset
            .corpus
            .iter()
            .map(|p| (p.id.as_str(), metrics::normalize_answer_tokens(&p.text)))
            .collect()
    } else {
        HashMap::new()
    };
    let mut per_query = BTreeMap::new();
    for query in &dataset.queries {
        let results = &run[&query.id];
        let mut values = metrics::ranking_metrics(results, &dataset.qrels[&query.id]);
        if dataset.has_answers() {
            values.extend(metrics::answer_metrics(results, &query.answers, |id| {
                answer_tokens.get(id).map(Vec::as_slice)
            }));
        }
        per_query.insert(query.id.clone(), values);
    }
    let mean = metrics::mean(per_query.values());
    EvalReport {
        system: system.to_string(),
        dataset: dataset.name.clone(),
        split: dataset.split.clone(),
        run,
        per_query,
        mean,
        latencies: Vec::new(),
        total_seconds: 0.0,
        stages: BTreeMap::new(),
        provenance: None,
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of `values`; `None` when empty.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

impl EvalReport {
    /// Queries per second over the whole evaluation; `None` when not timed (a run measured from
    /// files).
    pub fn queries_per_second(&self) -> Option<f64> {
        (self.total_seconds > 0.0 && !self.latencies.is_empty())
            .then(|| self.latencies.len() as f64 / self.total_seconds)
    }

    /// The `p`-th percentile (0..=100, nearest rank) of per-query latency in milliseconds.
    pub fn latency_ms(&self, p: f64) -> Option<f64> {
        percentile(&self.latencies, p).map(|s| s * 1000.0)
    }

    /// p50 and p95 (ms) of each stage in [`Self::stages`].
    pub fn stage_percentiles(&self) -> BTreeMap<String, (f64, f64)> {
        self.stages
            .iter()
            .filter_map(|(name, ms)| {
                Some((name.clone(), (percentile(ms, 50.0)?, percentile(ms, 95.0)?)))
            })
            .collect()
    }

    /// The metric names measured, in display order.
    pub fn metric_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = RANKING_METRICS.to_vec();
        if self.mean.contains_key(ANSWER_METRICS[0]) {
            names.extend(ANSWER_METRICS);
        }
        names
    }

    /// A plain-text table of the mean metrics and timings.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} on {} ({}, {} queries)\n",
            self.system,
            self.dataset,
            self.split,
            self.per_query.len()
        );
        if let Some(fusion) = self.provenance.as_ref().and_then(|p| p.fusion.as_ref()) {
            out.push_str(&format!("  ({})\n", fusion.describe()));
        }
        for name in self.metric_names() {
            if let Some(value) = self.mean.get(name) {
                out.push_str(&format!("  {name:<11} {value:.4}\n"));
            }
        }
        if let (Some(p50), Some(p95), Some(rate)) =
            (self.latency_ms(50.0), self.latency_ms(95.0), self.queries_per_second())
        {
            out.push_str(&format!(
                "  {rate:.1} queries/s, latency p50 {p50:.2} ms, p95 {p95:.2} ms\n"
            ));
        }
        let stages = self.stage_percentiles();
        if !stages.is_empty() {
            let parts: Vec<String> = stages
                .iter()
                .map(|(name, (p50, p95))| format!("{name} {p50:.0}/{p95:.0}"))
                .collect();
            out.push_str(&format!("  by stage, ms p50/p95: {}\n", parts.join(", ")));
        }
        out
    }

    /// The report as JSON: mean and per-query metrics, timings (`null` when not timed: a run
    /// measured from files), provenance (the run itself is written as a TREC file instead).
    pub fn to_json(&self) -> serde_json::Value {
        let latency_ms = (!self.latencies.is_empty()).then(|| {
            serde_json::json!({
                "p50": self.latency_ms(50.0),
                "p95": self.latency_ms(95.0),
                "mean": self.latencies.iter().sum::<f64>() * 1000.0 / self.latencies.len() as f64,
            })
        });
        serde_json::json!({
            "system": self.system,
            "dataset": self.dataset,
            "split": self.split,
            "num_queries": self.per_query.len(),
            "mean": self.mean,
            "queries_per_second": self.queries_per_second(),
            "latency_ms": latency_ms,
            "stages_ms": self
                .stage_percentiles()
                .into_iter()
                .map(|(name, (p50, p95))| (name, serde_json::json!({"p50": p50, "p95": p95})))
                .collect::<serde_json::Map<_, _>>(),
            "per_query": self.per_query,
            "provenance": self.provenance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Passage;
    use crate::eval::dataset::Query;

    fn dataset() -> Dataset {
        let judged = [("q1", "a")]
            .iter()
            .map(|(q, d)| (q.to_string(), [(d.to_string(), 1)].into_iter().collect()))
            .collect();
        Dataset {
            name: "hand".into(),
            dir: ".".into(),
            split: "test".into(),
            corpus: vec![Passage::new("a", "", "the answer is 42"), Passage::new("b", "", "no")],
            corpus_files: vec![],
            corpus_stats: Default::default(),
            queries: vec![Query { id: "q1".into(), text: "?".into(), answers: vec!["42".into()] }],
            qrels: judged,
        }
    }

    #[test]
    fn duplicates_and_unevaluated_queries_are_dropped_and_missing_ones_score_zero() {
        let mut run = Run::new();
        let entries = [("b", 3.0), ("b", 2.0), ("a", 1.0)];
        run.insert("q1".into(), entries.iter().map(|(d, s)| (d.to_string(), *s)).collect());
        run.insert("q9".into(), vec![("a".into(), 1.0)]);
        let report = evaluate_run(&dataset(), run, "hand");
        assert_eq!(report.run.len(), 1);
        assert_eq!(report.run["q1"].len(), 2, "b once");
        assert_eq!(report.mean["MRR@10"], 0.5, "a is second, not third");
        assert_eq!((report.mean["answer@1"], report.mean["answer@5"]), (0.0, 1.0));
        let empty = evaluate_run(&dataset(), Run::new(), "nothing");
        assert_eq!(empty.mean["nDCG@10"], 0.0);
        assert!(empty.run["q1"].is_empty());
    }
}
