//! BM25 baseline over the same passages as the SEAL index (tantivy). Not for: SEAL scoring.
