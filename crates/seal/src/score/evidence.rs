//! The result of scoring one document: its score and the evidence for it (which key occurrences
//! and which uncovered unigrams contributed what). Produced by `matcher`, collected by `rank`.
//!
//! Not for: computing scores (see `matcher`, `rank`).

use crate::{DocId, Score, TokenId};
use serde::Serialize;

impl ScoredDoc {
    /// Multiplies the score and every contribution by `factor` (length normalization), so that
    /// the contributions still sum to the score.
    pub fn scale(&mut self, factor: f64) {
        self.score *= factor;
        for m in &mut self.matches {
            m.contribution *= factor;
        }
        for u in &mut self.unigrams {
            u.contribution *= factor;
        }
    }
}

/// One accepted occurrence of a key in a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// Index into [`super::KeySet::keys`].
    pub key: usize,
    /// First token of the occurrence, as an offset into the document's forward tokens (without
    /// the separator; a title key's separator is left out of the span).
    pub start: usize,
    /// Number of document tokens covered.
    pub len: usize,
    /// What this occurrence added to the score: the key's weight times its coverage factor on the
    /// key's first accepted occurrence, 0 on its further occurrences.
    pub contribution: f64,
}

/// A token type left uncovered by the keys that adds its unigram weight (intersective only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnigramMatch {
    /// The token.
    pub token: TokenId,
    /// Its uncovered occurrences (offsets into the forward tokens), ascending.
    pub starts: Vec<usize>,
    /// Its unigram weight times its coverage factor, counted once.
    pub contribution: f64,
}

/// A scored document with the evidence for its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredDoc {
    /// The document.
    pub doc: DocId,
    /// Its score (higher is better); the sum of the contributions below.
    pub score: Score,
    /// Accepted key occurrences, in the order the matcher accepted them (by key weight).
    pub matches: Vec<Match>,
    /// Uncovered tokens with a unigram weight, in order of first occurrence.
    pub unigrams: Vec<UnigramMatch>,
}
