//! The tokenizer, read from GGUF metadata into the `tokenizers` crate.
