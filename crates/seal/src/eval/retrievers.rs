//! The two systems as evaluation [`Retriever`]s: BM25's index, and [`SealRetriever`] (a
//! [`Searcher`] with fixed settings, which can also collect other rankings of the same
//! generation: [`SideRanking`]).

use super::harness::Retriever;
use crate::score::ScoringSettings;
use crate::searcher::{thread_cpu_ms, SearchResponse, SearchSettings, Searcher, Timings};
use crate::{Result, Score};

impl Retriever for crate::bm25::Bm25Index {
    fn name(&self) -> &str {
        "bm25"
    }

    fn retrieve(&self, query: &str, k: usize) -> Result<Vec<(String, Score)>> {
        self.search(query, k)
    }
}

/// A [`Searcher`] with fixed settings, as an evaluation [`Retriever`].
pub struct SealRetriever {
    /// The searcher.
    pub searcher: Searcher,
    /// Settings for every query; `k` and `evidence` are set per call.
    pub settings: SearchSettings,
    /// Name in tables and run files.
    pub name: String,
    /// Other rankings of the same generated n-grams, collected per query as a by-product (one
    /// decode, several rankings: `seal eval --both-rankings`).
    pub side_rankings: Vec<SideRanking>,
    /// The [`Timings`] of every query answered, in order.
    pub timings: std::sync::Mutex<Vec<Timings>>,
}

impl SealRetriever {
    /// A retriever answering with `settings`, no side rankings.
    pub fn new(searcher: Searcher, settings: SearchSettings, name: impl Into<String>) -> Self {
        SealRetriever {
            searcher,
            settings,
            name: name.into(),
            side_rankings: Vec::new(),
            timings: Default::default(),
        }
    }

    /// Milliseconds per stage of every query so far, by stage name (`body`, `query_ngrams`,
    /// `titles`, `scoring`, `total`, `thread_cpu`), for [`crate::eval::EvalReport::stages`].
    /// With side rankings, `scoring` and `total` count the main ranking only and `thread_cpu`
    /// counts them all.
    pub fn stage_timings(&self) -> std::collections::BTreeMap<String, Vec<f64>> {
        let timings = self.timings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stage = |f: fn(&Timings) -> f64| timings.iter().map(f).collect::<Vec<f64>>();
        [
            ("body", stage(|t| t.body_ms)),
            ("query_ngrams", stage(|t| t.query_ngrams_ms)),
            ("titles", stage(|t| t.titles_ms)),
            ("scoring", stage(|t| t.scoring_ms)),
            ("total", stage(|t| t.total_ms)),
            ("thread_cpu", stage(|t| t.thread_cpu_ms)),
        ]
        .into_iter()
        .map(|(name, ms)| (name.to_owned(), ms))
        .collect()
    }
}

/// Another ranking of the same generation as a [`SealRetriever`]'s main one: its scoring
/// settings replace the main ones (the generation is shared, so only ranking-stage settings
/// differ).
pub struct SideRanking {
    /// Its name in tables and run files (`seal-lm+fm`).
    pub name: String,
    /// Its scoring settings.
    pub scoring: ScoringSettings,
    /// Its results by query text.
    pub results: std::sync::Mutex<std::collections::HashMap<String, Vec<(String, Score)>>>,
}

impl SideRanking {
    /// An empty collection for `scoring`.
    pub fn new(name: impl Into<String>, scoring: ScoringSettings) -> Self {
        SideRanking { name: name.into(), scoring, results: Default::default() }
    }

    /// The collected results as a run keyed by query id (`queries`: (id, text) pairs; a text
    /// asked twice gives both ids the same results).
    pub fn run<'q>(
        &self,
        queries: impl IntoIterator<Item = (&'q str, &'q str)>,
    ) -> crate::eval::run::Run {
        let results = self.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queries
            .into_iter()
            .filter_map(|(id, text)| Some((id.to_owned(), results.get(text)?.clone())))
            .collect()
    }
}

impl Retriever for SealRetriever {
    fn name(&self) -> &str {
        &self.name
    }

    fn retrieve(&self, query: &str, k: usize) -> Result<Vec<(String, Score)>> {
        let settings = SearchSettings { k, evidence: false, ..self.settings.clone() };
        let hits = |response: SearchResponse| -> Vec<(String, Score)> {
            response.hits.into_iter().map(|h| (h.id, h.score)).collect()
        };
        let record = |timings: Timings| {
            self.timings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(timings);
        };
        if self.side_rankings.is_empty() {
            let response = self.searcher.search(query, &settings)?;
            record(response.timings.clone());
            return Ok(hits(response));
        }
        let started_cpu = thread_cpu_ms();
        let generated = self.searcher.generate(query, &settings)?;
        for side in &self.side_rankings {
            let side_settings =
                SearchSettings { scoring: side.scoring.clone(), ..settings.clone() };
            let ranked = hits(self.searcher.rank(&generated, &side_settings)?);
            side.results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(query.to_owned(), ranked);
        }
        let mut response = self.searcher.rank(&generated, &settings)?;
        response.timings.thread_cpu_ms = thread_cpu_ms() - started_cpu;
        record(response.timings.clone());
        Ok(hits(response))
    }
}
