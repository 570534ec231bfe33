//! `seal`: the search engine. An autoregressive language model generates n-grams that are
//! likely given the query, decoding is constrained by an FM-index over the corpus token ids so
//! that every n-gram occurs, and passages are ranked by the weights of the n-grams they contain.
//!
//! Layers, bottom up: [`corpus`] reads passages, [`model`] runs the language model and its
//! tokenizer, [`decode`] is the FM-index-constrained beam search, [`score`] turns n-grams into
//! passage scores, [`searcher`] is the facade that ties them together. [`bm25`] and [`eval`] are
//! the baseline and the evaluation harness. The `seal` binary (`src/cli/`) is glue only.

pub mod bm25;
pub mod corpus;
pub mod decode;
pub mod docstore;
pub mod error;
pub mod eval;
pub mod indexer;
pub mod prompt;
pub mod score;
pub mod searcher;
pub mod serve;
pub mod train;

pub use error::{Error, ErrorKind, Result};
/// The language model layer (the `seal-model` crate).
pub use seal_model as model;

/// The position of a document in corpus order (0-based).
pub use seal_index::DocId;
/// A token id of the language model's vocabulary (as stored in the FM-index).
pub use seal_index::TokenId;

/// A retrieval score: higher is better.
pub type Score = f64;
