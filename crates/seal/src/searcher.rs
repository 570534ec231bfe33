//! The facade: an index, a model and a scorer answering queries. Not for: HTTP or CLI concerns.
