//! The language model layer: obtaining GGUF files ([`hub`]), the tokenizer read from GGUF
//! metadata ([`tokenizer`]), one file per model family ([`llama`], [`gemma`]), and
//! [`LanguageModel`], which loads whichever family a file holds. Not for: decoding policy.

mod beams;
pub mod gemma;
pub mod hub;
pub mod language_model;
pub mod llama;
pub mod ops;
pub mod requant;
pub mod tokenizer;

pub use language_model::{load, load_with_precision, LanguageModel};
pub use llama::Precision;
