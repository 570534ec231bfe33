//! The language model layer: obtaining GGUF files ([`hub`]), the tokenizer read from GGUF
//! metadata ([`tokenizer`]), and one file per model family ([`llama`]). Not for: decoding policy.

pub mod hub;
pub mod llama;
pub mod ops;
pub mod tokenizer;
