//! `seal-model`: the language model layer of `seal`. Obtaining GGUF files ([`hub`]), the
//! tokenizer read from GGUF metadata ([`tokenizer`]), one file per model family ([`llama`],
//! [`gemma`]), [`LanguageModel`], the one decoder every caller drives (it loads whichever family a
//! file holds), and the kernels they run on ([`kernels`]).
//!
//! Useful for: running a small GGUF decoder on the CPU for beam search (prefill, batched steps
//! over forked beams, teacher-forced scoring), tokenizing text exactly as the model does.
//! Not for: FM-indexes, decoding policy, scoring, HTTP or command lines (all in `seal`).

// Every unsafe block says why it is sound (the SIMD kernels are most of them); an unsafe fn's
// body is no blanket unsafe context. Every public item is documented.
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod adapter;
mod beams;
mod error;
pub mod gemma;
mod gguf;
pub mod hub;
pub mod kernels;
mod language_model;
mod layers;
pub mod llama;
mod requant;
pub mod tokenizer;
pub mod train;

pub use beams::{DecodeState, StepOutput};
pub use error::{Error, ErrorKind, Result};
pub use language_model::{load, load_with_precision, LanguageModel};
pub use layers::Precision;

/// A token id of the model's vocabulary (the same `u32` the FM-index stores).
pub type TokenId = u32;
