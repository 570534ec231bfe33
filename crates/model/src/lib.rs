//! `seal-model`: the language model layer of `seal`. Obtaining GGUF files ([`hub`]), the
//! tokenizer read from GGUF metadata ([`tokenizer`]), one file per model family ([`llama`],
//! [`gemma`]), [`LanguageModel`], which loads whichever family a file holds, and the kernels they
//! run on ([`ops`]).
//!
//! Useful for: running a small GGUF decoder on the CPU for beam search (prefill, batched steps
//! over forked beams, teacher-forced scoring), tokenizing text exactly as the model does.
//! Not for: FM-indexes, decoding policy, scoring, HTTP or command lines (all in `seal`).

mod beams;
pub mod error;
pub mod gemma;
pub mod hub;
pub mod language_model;
pub mod llama;
pub mod ops;
pub mod requant;
pub mod tokenizer;
pub mod train;

pub use error::{Error, ErrorKind, Result};
pub use language_model::{load, load_with_precision, LanguageModel};
pub use llama::Precision;

/// A token id of the model's vocabulary (the same `u32` the FM-index stores).
pub type TokenId = u32;
