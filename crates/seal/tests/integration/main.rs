//! The integration tests of `seal`, in one test binary (as ripgrep does): one link of tantivy,
//! candle, tokenizers and axum instead of one per file. Each former `tests/<name>.rs` is a module
//! here, so `cargo test -p seal --test integration <name>::` runs what `--test <name>` ran.

mod common;

mod eval;
mod gemma;
mod hub;
mod index;
mod llama;
mod score;
mod search;
mod serve;
mod tokenizer;
mod train;
