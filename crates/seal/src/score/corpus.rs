//! What the scorer needs from a corpus ([`CorpusView`]), and a slow in-memory twin
//! ([`NaiveCorpus`]) that scans, for tests, benchmarks and as the oracle the FM-index must agree
//! with.
//!
//! Not for: building or querying the FM-index (that is `seal-index`; the searcher implements
//! [`CorpusView`] for it).

use crate::{DocId, TokenId};

/// The corpus as the scorer sees it: n-gram counts, located occurrences and document tokens.
///
/// Coordinates: a document is its *forward* token list without the separator, as
/// [`doc_tokens`](CorpusView::doc_tokens) returns it, and offsets index into that list. When the
/// corpus has a [`separator`](CorpusView::separator) (SEAL: the model's EOS), every document is
/// matched as if that separator stood just before its first token, so that title keys of the form
/// `SEP T1 .. Tm @@` match at the document start (SEAL.md §1 "Titles through the boundary").
pub trait CorpusView {
    /// SEAL's `N`: the number of tokens the index was built over (separators included).
    fn num_tokens(&self) -> u64;

    /// SEAL's `F(n)`: how often `ngram` occurs in the corpus.
    fn count(&self, ngram: &[TokenId]) -> u64;

    /// At most `limit` occurrences of `ngram`, as `(document, forward start offset)`.
    ///
    /// For an n-gram that begins with the [`separator`](CorpusView::separator) the offset is not
    /// read: such an n-gram can only match at the start of a document, and the scorer places it
    /// there. Which occurrences are returned when there are more than `limit` is up to the
    /// implementation, but must be deterministic.
    fn occurrences(&self, ngram: &[TokenId], limit: usize) -> Vec<(DocId, usize)>;

    /// The forward tokens of `doc`, without the separator.
    fn doc_tokens(&self, doc: DocId) -> Vec<TokenId>;

    /// The number of documents.
    fn num_docs(&self) -> usize;

    /// The mean document length in tokens (separators left out), at least 1.
    fn mean_doc_len(&self) -> f64 {
        let docs = self.num_docs().max(1) as f64;
        let separators = if self.separator().is_some() { docs } else { 0.0 };
        ((self.num_tokens() as f64 - separators) / docs).max(1.0)
    }

    /// The document separator, if keys may begin with it (title keys). `None` by default: then
    /// nothing stands before a document's first token.
    fn separator(&self) -> Option<TokenId> {
        None
    }
}

impl<T: CorpusView + ?Sized> CorpusView for &T {
    fn num_tokens(&self) -> u64 {
        (**self).num_tokens()
    }
    fn count(&self, ngram: &[TokenId]) -> u64 {
        (**self).count(ngram)
    }
    fn occurrences(&self, ngram: &[TokenId], limit: usize) -> Vec<(DocId, usize)> {
        (**self).occurrences(ngram, limit)
    }
    fn doc_tokens(&self, doc: DocId) -> Vec<TokenId> {
        (**self).doc_tokens(doc)
    }
    fn num_docs(&self) -> usize {
        (**self).num_docs()
    }
    fn separator(&self) -> Option<TokenId> {
        (**self).separator()
    }
}

/// A [`CorpusView`] over documents held in memory, answering every question by scanning.
///
/// Each document is matched as `[separator] + tokens` when a separator is set (nothing crosses
/// from one document into the next), and `N` counts one separator per document, as the FM-index
/// stores one per document. Occurrences come in (document, offset) order.
#[derive(Debug, Clone, Default)]
pub struct NaiveCorpus {
    docs: Vec<Vec<TokenId>>,
    separator: Option<TokenId>,
}

impl NaiveCorpus {
    /// A corpus of `docs` (forward token lists) without a separator.
    pub fn new(docs: Vec<Vec<TokenId>>) -> Self {
        NaiveCorpus { docs, separator: None }
    }

    /// The same corpus with `separator` standing before every document.
    pub fn with_separator(mut self, separator: TokenId) -> Self {
        self.separator = Some(separator);
        self
    }

    /// The documents, in corpus order.
    pub fn docs(&self) -> &[Vec<TokenId>] {
        &self.docs
    }

    /// Every occurrence of `ngram` as (document, position in `[separator] + tokens` if a separator
    /// is set, else in `tokens`).
    fn scan(&self, ngram: &[TokenId]) -> Vec<(DocId, usize)> {
        let mut hits = Vec::new();
        let Some((&first, rest)) = ngram.split_first() else { return hits };
        for (doc, tokens) in self.docs.iter().enumerate() {
            let doc = doc as DocId;
            let shift = match self.separator {
                Some(separator) => {
                    if first == separator && tokens.starts_with(rest) {
                        hits.push((doc, 0));
                    }
                    1
                }
                None => 0,
            };
            if ngram.len() <= tokens.len() {
                for p in 0..=tokens.len() - ngram.len() {
                    if tokens[p] == first && tokens[p + 1..].starts_with(rest) {
                        hits.push((doc, p + shift));
                    }
                }
            }
        }
        hits
    }
}

impl CorpusView for NaiveCorpus {
    fn num_docs(&self) -> usize {
        self.docs.len()
    }

    fn num_tokens(&self) -> u64 {
        let separators = if self.separator.is_some() { self.docs.len() } else { 0 };
        (self.docs.iter().map(Vec::len).sum::<usize>() + separators) as u64
    }

    fn count(&self, ngram: &[TokenId]) -> u64 {
        self.scan(ngram).len() as u64
    }

    fn occurrences(&self, ngram: &[TokenId], limit: usize) -> Vec<(DocId, usize)> {
        let shift = usize::from(self.separator.is_some());
        // Position 0 with a separator is the separator slot: report offset 0 (not read anyway).
        self.scan(ngram)
            .into_iter()
            .take(limit)
            .map(|(doc, p)| (doc, p.saturating_sub(shift)))
            .collect()
    }

    fn doc_tokens(&self, doc: DocId) -> Vec<TokenId> {
        self.docs.get(doc as usize).cloned().unwrap_or_default()
    }

    fn separator(&self) -> Option<TokenId> {
        self.separator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_corpus_counts_locates_and_matches_titles_through_the_separator() {
        let corpus =
            NaiveCorpus::new(vec![vec![5, 6, 5, 6, 5], vec![6, 5], vec![]]).with_separator(1);
        assert_eq!(corpus.num_tokens(), 5 + 2 + 3);
        assert_eq!(corpus.count(&[5, 6]), 2);
        assert_eq!(corpus.count(&[6, 5]), 3);
        assert_eq!(corpus.occurrences(&[6, 5], 10), vec![(0, 1), (0, 3), (1, 0)]);
        assert_eq!(corpus.occurrences(&[6, 5], 2), vec![(0, 1), (0, 3)]);
        // A title key: the separator then the first tokens of a document.
        assert_eq!(corpus.count(&[1, 6]), 1);
        assert_eq!(corpus.occurrences(&[1, 6], 10), vec![(1, 0)]);
        assert_eq!(corpus.count(&[1]), 3);
        assert_eq!(corpus.count(&[]), 0);
        assert_eq!(corpus.doc_tokens(1), vec![6, 5]);
        assert_eq!(corpus.doc_tokens(7), Vec::<TokenId>::new());
        let plain = NaiveCorpus::new(vec![vec![1, 6]]);
        assert_eq!(plain.num_tokens(), 2);
        assert_eq!(plain.occurrences(&[6], 10), vec![(0, 1)]);
    }
}
