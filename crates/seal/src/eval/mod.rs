//! Evaluation: BEIR-layout datasets, qrels, retrieval metrics, TREC run files, fusion of two
//! rankings, and the harness that runs a [`Retriever`] over a dataset's queries.
//!
//! Not for: retrieval itself (BM25 is [`crate::bm25`], SEAL is [`crate::searcher`]; both plug in
//! through [`Retriever`]).
//!
//! - [`dataset`]: `corpus.jsonl`, `queries.jsonl` (with `metadata.answers`), `qrels/<split>.tsv`,
//!   query filters (`q0500-q2654`, id lists), optional `distractors.jsonl`.
//! - [`metrics`]: nDCG@10, MAP, MRR@10, R@k, P@10, gold@k, answer@k, in trec_eval's conventions
//!   (checked against ir_measures/pytrec_eval on committed fixtures).
//! - [`run`]: TREC run files (read, write, sort as trec_eval does).
//! - [`provenance`]: what produced a run (system, model and index sha256, settings, fusion and
//!   its inputs, dataset fingerprint, query selection, `seal` build).
//! - [`origin`]: run files with their provenance sidecar, and the check that a run belongs to
//!   the dataset it is measured on.
//! - [`fusion`]: reciprocal-rank fusion and normalised score interpolation.
//! - [`harness`]: the [`Retriever`] trait and [`evaluate`], which runs every query and measures.
//! - [`retrievers`]: BM25 and SEAL ([`SealRetriever`]) as [`Retriever`]s.
//! - [`significance`]: paired randomization and bootstrap tests, bootstrap intervals, Holm.
//! - [`compare`]: several systems against a baseline, metric by metric (`seal eval compare`).

pub mod compare;
pub mod dataset;
pub mod fusion;
pub mod harness;
pub mod metrics;
pub mod origin;
pub mod provenance;
pub mod retrievers;
pub mod run;
pub mod significance;

pub use dataset::{Dataset, Query, QueryFilter};
pub use harness::{evaluate, EvalOptions, EvalReport, Retriever};
pub use metrics::{Metrics, Qrels};
pub use retrievers::{SealRetriever, SideRanking};
pub use run::Run;
