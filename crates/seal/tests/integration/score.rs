//! The scoring layer through its public API only: candidates and unigram log-probabilities in,
//! ranked documents with evidence out, on a small in-memory corpus; and a timing run of the
//! full-scoring matcher at SEAL's sizes (ignored by default, see BENCHMARKS.md, "Scoring layer").

use proptest::prelude::*;
use seal::score::{Candidate, CorpusView, NaiveCorpus, Ranking, Scorer, ScoringSettings};
use seal::searcher::FmCorpus;
use seal::TokenId;
use seal_index::{FmIndex, FmIndexBuilder};
use std::time::Instant;

/// The FM-index of `docs`, to be seen through the searcher's own [`FmCorpus`] and checked
/// against [`NaiveCorpus`].
fn fm_index(docs: &[Vec<TokenId>], separator: TokenId) -> FmIndex {
    let mut builder = FmIndexBuilder::new(separator).sa_sample_rate(4);
    for doc in docs {
        builder.push_document(doc).unwrap();
    }
    builder.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Ranking over the FM-index equals ranking over the scanning twin, title keys included.
    /// (Keys are built once, from the index, because the two `N` differ by the index's trailing
    /// separator.)
    #[test]
    fn ranking_over_the_fm_index_equals_the_naive_corpus(
        docs in prop::collection::vec(prop::collection::vec(1u32..7, 0..15), 1..8),
        candidates in prop::collection::vec(
            (any::<bool>(), prop::collection::vec(1u32..7, 1..4), -6.0f64..0.0), 0..15),
        unigram in prop::collection::vec((1u32..7, -4.0f64..0.0), 0..7),
        lm_fm in any::<bool>(),
        max_occurrences in prop::sample::select(vec![1usize, 3, 1500]),
        length_norm in prop::sample::select(vec![0.0f64, 0.25, 1.0]),
    ) {
        prop_assume!(docs.iter().any(|d| !d.is_empty()), "an index needs at least one token");
        let index = fm_index(&docs, 0);
        let fm = FmCorpus(&index);
        let naive = NaiveCorpus::new(docs.clone()).with_separator(0);
        let candidates: Vec<Candidate> = candidates
            .into_iter()
            .map(|(title, body, logprob)| {
                let tokens = if title { [&[0][..], &body].concat() } else { body };
                Candidate { tokens, logprob }
            })
            .collect();
        for c in &candidates {
            prop_assert_eq!(fm.count(&c.tokens), naive.count(&c.tokens));
        }
        let ranking = if lm_fm { Ranking::LmFm } else { Ranking::Intersective };
        let scorer = Scorer::new(ScoringSettings { ranking, max_occurrences, length_norm, ..Default::default() }).unwrap();
        let keys = scorer.keys(&fm, &candidates, &unigram);
        let ranked = scorer.rank(&fm, &keys);
        if max_occurrences == 1500 {
            prop_assert_eq!(&ranked, &scorer.rank(&naive, &keys));
        }
        // With few located occurrences the candidates depend on the index's order, but every
        // result is still its document's full score (without length normalization: with it,
        // the unit tests of `score::rank` check the division).
        if length_norm == 0.0 || lm_fm {
            for d in &ranked {
                prop_assert_eq!(d, &scorer.score_document(&keys, d.doc, &docs[d.doc as usize], Some(0)));
            }
        }
        // The index and the scan agree on the mean document length.
        prop_assert!((fm.mean_doc_len() - naive.mean_doc_len()).abs() < 1e-12);
    }
}

/// Tiny "corpus" of word ids: 0 is the separator, 1 the title delimiter "@@".
fn corpus() -> NaiveCorpus {
    NaiveCorpus::new(vec![
        // "paris @@ paris is the capital of france"
        vec![10, 1, 10, 11, 12, 13, 14, 15],
        // "lyon @@ lyon is a city in france"
        vec![20, 1, 20, 11, 21, 22, 23, 15],
        // "capital @@ the capital of a country is its seat of government"
        vec![13, 1, 12, 13, 14, 21, 24, 11, 25, 26, 14, 27],
        // "france @@ france is a country"
        vec![15, 1, 15, 11, 21, 24],
    ])
    .with_separator(0)
}

#[test]
fn a_rare_phrase_from_the_query_ranks_its_passage_first() {
    let corpus = corpus();
    let candidates: Vec<Candidate> = vec![
        (vec![13, 14, 15], -0.1).into(), // "capital of france": only in doc 0
        (vec![13, 14], -0.7).into(),     // "capital of": docs 0 and 2
        (vec![15], -0.5).into(),         // "france"
        (vec![0, 15, 1], -1.0).into(),   // title "france"
        (vec![11], -3.0).into(),         // "is": everywhere, weight 0
    ];
    let unigrams = [(10, -1.5), (13, -0.3), (24, -2.0), (11, -0.2)];
    for ranking in [Ranking::Intersective, Ranking::LmFm] {
        let scorer = Scorer::new(ScoringSettings { ranking, ..Default::default() }).unwrap();
        let keys = scorer.keys(&corpus, &candidates, &unigrams);
        assert_eq!(keys.keys()[4].weight, 0.0, "a word in every passage is no evidence");
        let ranked = scorer.rank(&corpus, &keys);
        assert_eq!(ranked[0].doc, 0, "{ranking}: {ranked:?}");
        let best = &ranked[0].matches[0];
        assert_eq!(keys.keys()[best.key].tokens, vec![13, 14, 15]);
        assert_eq!(&corpus.doc_tokens(0)[best.start..best.start + best.len], &[13, 14, 15]);
        for doc in &ranked {
            let total: f64 = doc.matches.iter().map(|m| m.contribution).sum::<f64>()
                + doc.unigrams.iter().map(|u| u.contribution).sum::<f64>();
            assert!((total - doc.score).abs() < 1e-9);
        }
        // The same query twice gives the same answer, bit for bit.
        assert_eq!(ranked, scorer.rank(&corpus, &scorer.keys(&corpus, &candidates, &unigrams)));
    }
}

/// A reproducible pseudo-random stream (xorshift64*), so the timing run needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A word-frequency-like token: small ids are much more common.
    fn zipf_token(&mut self) -> TokenId {
        let u = (self.below(1 << 20) as f64 + 1.0) / (1u64 << 20) as f64;
        (30_000f64.powf(u) as TokenId).max(2)
    }
}

/// Nanoseconds this thread has spent on a CPU (Linux), so that the timing survives a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

#[test]
#[ignore = "timing run: cargo test -p seal --test score -- --ignored --nocapture"]
fn time_full_scoring_at_seal_sizes() {
    // 1,500 candidate passages of 150 tokens; 400 candidate keys of 1-9 tokens cut from the
    // passages (so they match), 400 added unigram keys, 5,000 unigram weights.
    let mut rng = Rng(0x5EA1);
    let docs: Vec<Vec<TokenId>> =
        (0..1500).map(|_| (0..150).map(|_| rng.zipf_token()).collect()).collect();
    let candidates: Vec<Candidate> = (0..400)
        .map(|_| {
            let doc = &docs[rng.below(docs.len() as u64) as usize];
            let len = 1 + rng.below(9) as usize;
            let start = rng.below((doc.len() - len) as u64) as usize;
            Candidate {
                tokens: doc[start..start + len].to_vec(),
                logprob: -(rng.below(1000) as f64) / 100.0,
            }
        })
        .collect();
    let unigrams: Vec<(TokenId, f64)> =
        (0..5000).map(|t| (t + 2, -(rng.below(1500) as f64) / 100.0)).collect();
    let corpus = NaiveCorpus::new(docs.clone()).with_separator(0);
    let scorer = Scorer::new(ScoringSettings::default()).unwrap();
    let start = Instant::now();
    let keys = scorer.keys(&corpus, &candidates, &unigrams);
    let keys_time = start.elapsed();
    let active = keys.keys().iter().filter(|k| k.weight > 0.0).count();

    let runs: u32 = std::env::var("SEAL_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    let mut checksum = 0.0;
    for _ in 0..runs {
        for (doc, tokens) in docs.iter().enumerate() {
            checksum += scorer.score_document(&keys, doc as u32, tokens, Some(0)).score;
        }
    }
    let per_query = start.elapsed() / runs;
    let cpu_per_query =
        cpu_start.zip(thread_cpu_ns()).map(|(a, b)| (b - a) as f64 / 1e6 / f64::from(runs));
    println!(
        "keys: {} ({} with weight > 0), built in {:?} (NaiveCorpus counts by scanning)",
        keys.keys().len(),
        active,
        keys_time
    );
    println!(
        "full scoring of 1500 docs x 150 tokens, per query: {per_query:?} wall, \
         {cpu_per_query:.1?} ms on CPU (checksum {checksum:.3})"
    );
    let start = Instant::now();
    let ranked = scorer.rank(&corpus, &keys);
    println!(
        "rank() with NaiveCorpus (scanning occurrences): {:?}, {} docs",
        start.elapsed(),
        ranked.len()
    );

    // The same query end to end over the FM-index (SEAL's sample rate 32): keys (counts), first
    // stage (one locate per occurrence of a rare key), full scoring (one doc_tokens per candidate).
    let index = docs
        .iter()
        .fold(FmIndexBuilder::new(0), |mut b, d| {
            b.push_document(d).unwrap();
            b
        })
        .build()
        .unwrap();
    let fm = FmCorpus(&index);
    let (cpu_start, start) = (thread_cpu_ns(), Instant::now());
    let fm_keys = scorer.keys(&fm, &candidates, &unigrams);
    let (cpu_keys, keys_time) = (thread_cpu_ns(), start.elapsed());
    let fm_ranked = scorer.rank(&fm, &fm_keys);
    let (cpu_rank, rank_time) = (thread_cpu_ns(), start.elapsed() - keys_time);
    let ms = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| (b - a) as f64 / 1e6);
    println!(
        "FM-index: keys {keys_time:?} wall / {:.1?} ms CPU; rank {rank_time:?} wall / {:.1?} ms CPU; \
         {} docs; {} rare keys with {} occurrences",
        ms(cpu_start, cpu_keys),
        ms(cpu_keys, cpu_rank),
        fm_ranked.len(),
        fm_keys.keys().iter().filter(|k| k.weight > 0.0 && k.count <= 1500).count(),
        fm_keys.keys().iter().filter(|k| k.weight > 0.0 && k.count <= 1500).map(|k| k.count).sum::<u64>(),
    );
    let (cpu_start, start) = (thread_cpu_ns(), Instant::now());
    let tokens: usize = (0..1500).map(|d| fm.doc_tokens(d).len()).sum();
    println!(
        "FM-index: doc_tokens of 1500 docs ({tokens} tokens): {:?} wall / {:.1?} ms CPU",
        start.elapsed(),
        ms(cpu_start, thread_cpu_ns())
    );
}
