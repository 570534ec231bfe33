//! Every `FmIndex` operation against a naive scan of the same text, over random small corpora:
//! random alphabets (small ids with many repeats, and large ids up to `u32::MAX - 1`), empty and
//! one-token documents, n-grams at document starts and ends and through the boundaries
//! (titles, including the last document's), on indexes built in memory, written to a file
//! and opened, and read back from bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use seal_index::{FmIndex, FmIndexBuilder, SaRange, TokenId};

/// The naive twin: the text in index layout and direct scans over it.
struct Naive {
    docs: Vec<Vec<TokenId>>,
    sep: TokenId,
    /// `[sep, doc reversed]` per document, then the trailing separator.
    text: Vec<TokenId>,
    /// Text position of every document's separator.
    starts: Vec<usize>,
}

impl Naive {
    fn new(docs: &[Vec<TokenId>], sep: TokenId) -> Naive {
        let mut text = Vec::new();
        let mut starts = Vec::new();
        for d in docs {
            starts.push(text.len());
            text.push(sep);
            text.extend(d.iter().rev());
        }
        text.push(sep);
        Naive { docs: docs.to_vec(), sep, text, starts }
    }

    /// Text positions where the reversed n-gram starts.
    fn occurrences(&self, ngram: &[TokenId]) -> Vec<usize> {
        let rev: Vec<TokenId> = ngram.iter().rev().copied().collect();
        (0..=self.text.len() - rev.len().min(self.text.len()))
            .filter(|&p| self.text[p..].starts_with(&rev))
            .collect()
    }

    fn count(&self, ngram: &[TokenId]) -> u64 {
        if ngram.is_empty() {
            return self.text.len() as u64;
        }
        self.occurrences(ngram).len() as u64
    }

    /// The forward next token of every occurrence is the token before it in the text.
    fn continuations(&self, ngram: &[TokenId]) -> Vec<(TokenId, u64)> {
        let mut counts = BTreeMap::new();
        let positions: Vec<usize> = if ngram.is_empty() {
            (0..=self.text.len()).collect()
        } else {
            self.occurrences(ngram)
        };
        for p in positions {
            if p > 0 {
                *counts.entry(self.text[p - 1]).or_insert(0u64) += 1;
            }
        }
        counts.into_iter().collect()
    }

    /// The suffix array of `text + sentinel`, the sentinel's suffix first.
    fn suffix_array(&self) -> Vec<usize> {
        let mut sa: Vec<usize> = (0..=self.text.len()).collect();
        sa.sort_by(|&a, &b| self.text[a..].cmp(&self.text[b..]));
        sa
    }

    fn doc_at(&self, pos: usize) -> (u32, usize) {
        if pos >= self.text.len() - 1 {
            return (self.docs.len() as u32 - 1, 0);
        }
        let d = self.starts.iter().rposition(|&s| s <= pos).unwrap();
        (d as u32, self.docs[d].len() - (pos - self.starts[d]))
    }

    /// The forward token stream the index searches: the text read right to left.
    fn forward(&self) -> Vec<TokenId> {
        self.text.iter().rev().copied().collect()
    }
}

/// Every query the index answers, compared with the naive twin.
fn check(index: &FmIndex, naive: &Naive, ngrams: &[Vec<TokenId>]) -> Result<(), TestCaseError> {
    let n = naive.text.len();
    prop_assert_eq!(index.num_tokens(), n);
    prop_assert_eq!(index.num_docs(), naive.docs.len());
    prop_assert_eq!(index.separator(), naive.sep);
    prop_assert_eq!(index.full_range(), SaRange { start: 1, end: n + 1 });
    prop_assert_eq!(index.count(&[]), n as u64);

    for (d, doc) in naive.docs.iter().enumerate() {
        prop_assert_eq!(&index.doc_tokens(d as u32), doc, "doc_tokens({})", d);
        prop_assert_eq!(index.doc_len(d as u32), doc.len());
    }
    prop_assert_eq!(index.doc_tokens(naive.docs.len() as u32), Vec::<TokenId>::new());

    let sa = naive.suffix_array();
    for (row, &pos) in sa.iter().enumerate() {
        prop_assert_eq!(index.locate(row), pos, "locate({})", row);
    }
    for pos in 0..n {
        prop_assert_eq!(index.doc_at(pos), naive.doc_at(pos), "doc_at({})", pos);
    }

    let mut buf = Vec::with_capacity(1);
    for ngram in ngrams {
        let range = index.range(ngram);
        let want = naive.count(ngram);
        prop_assert_eq!(range.len() as u64, want, "count of {:?}", ngram);
        prop_assert_eq!(index.count(ngram), want);
        // The range is exactly the rows whose suffixes start with the reversed n-gram.
        if !ngram.is_empty() && want > 0 {
            let rev: Vec<TokenId> = ngram.iter().rev().copied().collect();
            let rows: Vec<usize> =
                (0..sa.len()).filter(|&r| naive.text[sa[r]..].starts_with(&rev)).collect();
            prop_assert_eq!(range, SaRange { start: rows[0], end: rows[rows.len() - 1] + 1 });
        }
        // Step by step extension agrees with `range`.
        let mut r = index.full_range();
        for &t in ngram {
            r = index.extend(r, t);
        }
        if want > 0 {
            prop_assert_eq!(r, range);
        } else {
            prop_assert!(r.is_empty());
        }
        prop_assert!(index
            .extend(SaRange::default(), ngram.first().copied().unwrap_or(0))
            .is_empty());

        let conts = index.continuations(range);
        prop_assert_eq!(&conts, &naive.continuations(ngram), "continuations of {:?}", ngram);
        index.continuations_into(range, &mut buf);
        prop_assert_eq!(&buf, &conts);
        // Each continuation's count is the count of the extended n-gram.
        for &(t, c) in &conts {
            let mut longer = ngram.clone();
            longer.push(t);
            prop_assert_eq!(index.extend(range, t).len() as u64, c);
            prop_assert_eq!(naive.count(&longer), c);
        }

        // Occurrences: one per row, attributed as documented.
        let mut got: Vec<(u32, usize)> = index.occurrences(range, ngram.len()).collect();
        let mut want_occ: Vec<(u32, usize)> = if ngram.is_empty() {
            (0..n).map(|p| naive.doc_at(p)).collect()
        } else {
            naive
                .occurrences(ngram)
                .into_iter()
                .map(|p| {
                    let (d, last) = naive.doc_at(p);
                    (d, last.saturating_sub(ngram.len() - 1))
                })
                .collect()
        };
        got.sort_unstable();
        want_occ.sort_unstable();
        prop_assert_eq!(&got, &want_occ, "occurrences of {:?}", ngram);
        // Independent check: an n-gram without separators really is at that offset.
        if !ngram.is_empty() && !ngram.contains(&naive.sep) {
            for &(d, off) in &got {
                prop_assert_eq!(&naive.docs[d as usize][off..off + ngram.len()], &ngram[..]);
            }
        }
    }

    // Titles through the boundary: `SEP t1 .. tk` occurs for every non-empty document
    // prefix, the last document's included.
    for doc in naive.docs.iter().filter(|d| !d.is_empty()) {
        for k in 1..=doc.len() {
            let mut title = vec![naive.sep];
            title.extend_from_slice(&doc[..k]);
            let c = index.count(&title);
            prop_assert!(c >= 1, "title prefix {:?} not found", title);
            prop_assert_eq!(c, naive.count(&title));
        }
    }
    Ok(())
}

/// A corpus over `alphabet` (distinct ids; the first is the separator) from small indexes.
fn corpus() -> impl Strategy<Value = (Vec<Vec<TokenId>>, TokenId)> {
    let small = proptest::collection::vec(0u32..1000, 2..8);
    let large = proptest::collection::vec(
        prop_oneof![Just(u32::MAX - 1), Just(1 << 20), any::<u32>()],
        2..8,
    );
    (
        prop_oneof![small, large],
        proptest::collection::vec(proptest::collection::vec(0usize..8, 0..10), 1..7),
    )
        .prop_filter_map(
            "need distinct ids and one non-empty document",
            |(mut alphabet, docs)| {
                alphabet.sort_unstable();
                alphabet.dedup();
                if alphabet.len() < 2 || docs.iter().all(|d| d.is_empty()) {
                    return None;
                }
                let sep = alphabet[0];
                let tokens = &alphabet[1..];
                let docs = docs
                    .into_iter()
                    .map(|d| d.into_iter().map(|i| tokens[i % tokens.len()]).collect())
                    .collect();
                Some((docs, sep))
            },
        )
}

/// N-grams worth asking: substrings of the forward stream (so they occur, boundaries
/// included) and a few random ones.
fn ngrams_for(naive: &Naive, picks: &[(usize, usize)], random: &[Vec<u32>]) -> Vec<Vec<TokenId>> {
    let forward = naive.forward();
    let mut out = vec![vec![]];
    for &(start, len) in picks {
        let start = start % forward.len();
        let end = (start + len).min(forward.len());
        out.push(forward[start..end].to_vec());
    }
    let mut alphabet: Vec<TokenId> = naive.text.clone();
    alphabet.sort_unstable();
    alphabet.dedup();
    for r in random {
        out.push(r.iter().map(|&i| alphabet[i as usize % alphabet.len()]).collect());
    }
    out.push(vec![naive.sep]);
    out.push(vec![naive.sep, naive.sep]);
    out.push(vec![12345]); // usually absent
    out
}

fn build(docs: &[Vec<TokenId>], sep: TokenId, rate: u32) -> FmIndex {
    let mut b = FmIndexBuilder::new(sep).sa_sample_rate(rate);
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(b.push_document(d).unwrap(), i as u32);
    }
    b.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_operation_matches_naive_scan(
        (docs, sep) in corpus(),
        rate in prop_oneof![Just(1u32), 2u32..6, Just(32)],
        picks in proptest::collection::vec((0usize..200, 1usize..6), 0..12),
        random in proptest::collection::vec(proptest::collection::vec(0u32..10, 1..4), 0..6),
    ) {
        let naive = Naive::new(&docs, sep);
        let ngrams = ngrams_for(&naive, &picks, &random);
        let index = build(&docs, sep, rate);
        check(&index, &naive, &ngrams)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// The same answers after a round trip through a file (memory-mapped) and through bytes.
    #[test]
    fn file_and_bytes_round_trip((docs, sep) in corpus(), picks in proptest::collection::vec((0usize..200, 1usize..6), 0..8)) {
        let naive = Naive::new(&docs, sep);
        let ngrams = ngrams_for(&naive, &picks, &[]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.fm");
        let mut b = FmIndexBuilder::new(sep).sa_sample_rate(3);
        for d in &docs {
            b.push_document(d).unwrap();
        }
        b.write(&path).unwrap();
        let opened = FmIndex::open(&path).unwrap();
        check(&opened, &naive, &ngrams)?;
        let from_bytes = FmIndex::from_bytes(std::fs::read(&path).unwrap()).unwrap();
        check(&from_bytes, &naive, &ngrams)?;
        prop_assert_eq!(opened.size_bytes() as u64, std::fs::metadata(&path).unwrap().len());
    }
}

#[test]
fn large_alphabet_uses_the_32_bit_path() {
    // More than 65,536 distinct ids forces the i32 suffix-array path.
    let sep = 7;
    let docs: Vec<Vec<TokenId>> = (0..70u32)
        .map(|d| (0..1000u32).map(|i| 100 + ((d * 1000 + i) * 7919) % 70_000).collect())
        .collect();
    let naive = Naive::new(&docs, sep);
    let index = build(&docs, sep, 32);
    assert!(index.num_distinct_tokens() > 65_536);
    for d in [0u32, 35, 69] {
        assert_eq!(index.doc_tokens(d), docs[d as usize]);
    }
    let forward = naive.forward();
    for start in [0, 1, 999, 1001, 50_000, forward.len() - 3] {
        let ngram = &forward[start..start + 3];
        assert_eq!(index.count(ngram), naive.count(ngram));
    }
    let conts = index.continuations(index.full_range());
    assert_eq!(conts.len(), index.num_distinct_tokens());
    assert_eq!(conts.iter().map(|c| c.1).sum::<u64>(), naive.text.len() as u64);
}

#[test]
fn rejects_bad_input() {
    let mut b = FmIndexBuilder::new(0);
    assert!(b.push_document(&[1, 0, 2]).is_err(), "separator inside a document");
    assert!(FmIndexBuilder::new(0).build().is_err(), "no documents");
    let mut b = FmIndexBuilder::new(0);
    b.push_document(&[]).unwrap();
    b.push_document(&[]).unwrap();
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("every document is empty"), "{err}");
    let mut b = FmIndexBuilder::new(0).sa_sample_rate(0);
    b.push_document(&[1]).unwrap();
    assert!(b.build().is_err(), "sample rate 0");
}

/// Every substring of length 1..=4 of the forward stream, plus the usual extras.
fn all_ngrams(naive: &Naive) -> Vec<Vec<TokenId>> {
    let forward = naive.forward();
    let picks: Vec<(usize, usize)> =
        (0..forward.len()).flat_map(|s| (1..=4).map(move |l| (s, l))).collect();
    ngrams_for(naive, &picks, &[vec![0, 1], vec![2, 2, 2]])
}

fn check_named(docs: &[Vec<TokenId>], sep: TokenId) {
    let naive = Naive::new(docs, sep);
    for rate in [1, 2, 32] {
        let index = build(docs, sep, rate);
        check(&index, &naive, &all_ngrams(&naive)).unwrap();
    }
}

#[test]
fn empty_first_middle_and_last_documents() {
    check_named(&[vec![], vec![5, 6], vec![], vec![6, 5, 6], vec![]], 1);
}

#[test]
fn one_token_documents() {
    check_named(&[vec![7], vec![7], vec![8], vec![7]], 3);
}

#[test]
fn single_document() {
    check_named(&[vec![4, 5, 6, 4, 5]], 0);
}

#[test]
fn repeated_token_runs() {
    check_named(&[vec![9; 12], vec![9, 9, 8, 9, 9], vec![8; 5]], 2);
}

#[test]
fn separator_is_the_largest_id() {
    check_named(&[vec![0, 1, 2], vec![2, 1, 0, 0]], u32::MAX);
}

#[test]
fn large_and_sparse_ids() {
    check_named(
        &[
            vec![1 << 20, (1 << 31) - 1, u32::MAX - 1],
            vec![u32::MAX - 1, 1 << 20],
            vec![1 << 24, 0],
        ],
        262_143,
    );
}

/// The forward pattern `SEP T1 .. Tm DELIM` finds every document's complete title, the last
/// one included (SEAL loses the last one; the trailing separator fixes that).
#[test]
fn every_title_is_reachable_through_the_boundary() {
    const SEP: TokenId = 0;
    const DELIM: TokenId = 99;
    let docs = vec![
        vec![10, 11, DELIM, 20, 21],
        vec![12, DELIM, 22],
        vec![10, 11, DELIM, 23],
        vec![13, 14, 15, DELIM, 24, 25, 26],
    ];
    let index = build(&docs, SEP, 32);
    for (d, doc) in docs.iter().enumerate() {
        let end = doc.iter().position(|&t| t == DELIM).unwrap();
        let mut title = vec![SEP];
        title.extend_from_slice(&doc[..=end]);
        let expected = docs.iter().filter(|o| o.starts_with(&doc[..=end])).count() as u64;
        assert_eq!(index.count(&title), expected, "title of document {d}");
        let hits: Vec<(u32, usize)> = index.occurrences(index.range(&title), title.len()).collect();
        assert!(hits.contains(&(d as u32, 0)), "document {d} not among {hits:?}");
    }
}

/// Unigram ranges are exact (SEAL's first backward step is one row short): the separator's
/// count includes the trailing separator, whose BWT row is the sentinel's.
#[test]
fn unigram_counts_include_the_trailing_separator() {
    let docs = vec![vec![1, 2], vec![2, 3]];
    let index = build(&docs, 0, 32);
    assert_eq!(index.count(&[0]), 3);
    assert_eq!(index.count(&[2]), 2);
    let all: u64 = index.continuations(index.full_range()).iter().map(|c| c.1).sum();
    assert_eq!(all, index.num_tokens() as u64);
    assert_eq!(index.continuations(index.range(&[0])), vec![(1, 1), (2, 1)]);
}
