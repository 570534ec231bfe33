//! Evaluation: BEIR datasets, qrels, retrieval metrics, TREC run files. Not for: retrieval itself.
