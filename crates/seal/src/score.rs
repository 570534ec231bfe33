//! n-gram weights and passage scoring (SEAL's LM+FM and intersective rankings). Not for: decoding.
