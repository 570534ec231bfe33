//! Reading passages: BEIR JSONL, DPR TSV and KILT TSV, with SEAL's cleaning. Not for: tokenizing.
