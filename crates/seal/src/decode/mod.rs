//! FM-index-constrained beam search: generates n-grams that occur in the corpus. Not for: scoring.
