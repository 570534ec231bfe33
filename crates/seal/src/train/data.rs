//! Training pairs in SEAL's recipe (SEAL.md §4, issue 6): what the model should write for a
//! query (supervised, from judged query-passage pairs) or for a piece of a passage
//! (unsupervised, from the corpus alone).
//!
//! Useful for: `seal train data` and the trainer's input. Not for: tokenization or batching
//! ([`super::batch`]).
//!
//! Every pair's prompt is [`crate::prompt::prompt`] with [`PromptStyle::Plain`], the prompt the
//! searcher uses when it searches with a trained model, so training and search agree on every
//! token before the answer. Answers start with a space (as generated n-grams do); title answers
//! end with a newline, the token the searcher scores in place of the title delimiter. The
//! tokenizer appends EOS to every answer at batching time.
//!
//! Recipe, per judged (query, passage) pair: the passage's title ×3 under the title prompt and
//! ×10 a 10-word span of the passage text under the body prompt, spans sampled with a bias to
//! words shared with the query. Per passage: its first 40 words → its title (title prompt) and ×2
//! a 10-word span → another span of the same passage (body prompt). Sampling is deterministic
//! for a seed.

use crate::corpus::Passage;
use crate::eval::metrics::Qrels;
use crate::prompt::{prompt, PromptKind, PromptStyle};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// The prompt style every training pair uses; a trained model is searched with it (the adapter
/// manifest records it, and `--adapter` picks it).
pub const TRAINING_PROMPT_STYLE: PromptStyle = PromptStyle::Plain;

/// Which part of the recipe a pair comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairKind {
    /// Query → title of a relevant passage.
    QueryTitle,
    /// Query → span of a relevant passage.
    QuerySpan,
    /// First words of a passage → its title.
    PassageTitle,
    /// Span of a passage → another span of it.
    SpanSpan,
}

impl PairKind {
    /// Whether the pair needs judged queries.
    pub fn is_supervised(self) -> bool {
        matches!(self, PairKind::QueryTitle | PairKind::QuerySpan)
    }
}

/// One training example: the model reads `prompt` and should write `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingPair {
    /// The full prompt, exactly as the searcher builds it (without BOS).
    pub prompt: String,
    /// The answer, starting with a space (EOS is appended at tokenization).
    pub target: String,
    /// Which part of the recipe it comes from.
    pub kind: PairKind,
}

/// How many pairs of each kind, and their sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeSettings {
    /// Query → title copies per judged pair (SEAL: 3).
    pub title_copies: usize,
    /// Query → span samples per judged pair (SEAL: 10).
    pub span_copies: usize,
    /// Words per span (SEAL: 10).
    pub span_words: usize,
    /// Words of a passage's beginning used to ask for its title.
    pub passage_words: usize,
    /// Span → span samples per passage.
    pub span_span_copies: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for RecipeSettings {
    fn default() -> Self {
        RecipeSettings {
            title_copies: 3,
            span_copies: 10,
            span_words: 10,
            passage_words: 40,
            span_span_copies: 2,
            seed: 0,
        }
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same pairs on every
/// platform, without a dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }
    /// A standard normal sample (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Lower-cased alphanumeric core of a word, for overlap with the query.
fn normalize_word(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()
}

/// Start of the window of `span` words out of `len`, sampled with weight `(1 + shared)²`
/// where `shared` counts the window's words that occur in the query (the bias to overlap).
fn biased_window(
    words: &[&str],
    query_words: &HashSet<String>,
    span: usize,
    rng: &mut SplitMix64,
) -> usize {
    let windows = words.len().saturating_sub(span) + 1;
    let hit: Vec<u32> =
        words.iter().map(|w| u32::from(query_words.contains(&normalize_word(w)))).collect();
    let mut weights = Vec::with_capacity(windows);
    let mut shared: u32 = hit[..span.min(hit.len())].iter().sum();
    for start in 0..windows {
        if start > 0 {
            shared = shared + hit[start + span - 1] - hit[start - 1];
        }
        weights.push(f64::from(1 + shared).powi(2));
    }
    let total: f64 = weights.iter().sum();
    let mut x = rng.next_f64() * total;
    for (start, w) in weights.iter().enumerate() {
        if x < *w {
            return start;
        }
        x -= w;
    }
    windows - 1
}

fn span_text(words: &[&str], start: usize, span: usize) -> String {
    words[start..(start + span).min(words.len())].join(" ")
}

fn body_pair(query: &str, answer: &str, kind: PairKind) -> TrainingPair {
    TrainingPair {
        prompt: prompt(TRAINING_PROMPT_STYLE, PromptKind::Body, query),
        target: format!(" {answer}"),
        kind,
    }
}

fn title_pair(query: &str, title: &str, kind: PairKind) -> TrainingPair {
    TrainingPair {
        prompt: prompt(TRAINING_PROMPT_STYLE, PromptKind::Title, query),
        target: format!(" {title}\n"),
        kind,
    }
}

/// Supervised pairs: for every query with a positive judgment on a passage of `corpus`, the
/// title pairs and the biased span pairs. Queries are `(id, text)`; judgments of passages that
/// are not in the corpus are skipped. Order: queries as given, their passages by id.
pub fn supervised_pairs(
    queries: &[(String, String)],
    qrels: &Qrels,
    corpus: &[Passage],
    settings: &RecipeSettings,
) -> Vec<TrainingPair> {
    let by_id: HashMap<&str, &Passage> = corpus.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut rng = SplitMix64::new(settings.seed ^ 0x5EA1_0001);
    let mut pairs = Vec::new();
    for (qid, query) in queries {
        let query = query.split_whitespace().collect::<Vec<_>>().join(" ");
        if query.is_empty() {
            continue;
        }
        let Some(judged) = qrels.get(qid) else { continue };
        let query_words: HashSet<String> =
            query.split_whitespace().map(normalize_word).filter(|w| !w.is_empty()).collect();
        for (doc, &grade) in judged {
            let Some(passage) = by_id.get(doc.as_str()).filter(|_| grade > 0) else { continue };
            let title = passage.title.trim();
            if !title.is_empty() {
                for _ in 0..settings.title_copies {
                    pairs.push(title_pair(&query, title, PairKind::QueryTitle));
                }
            }
            let words: Vec<&str> = passage.text.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            for _ in 0..settings.span_copies {
                let start = biased_window(&words, &query_words, settings.span_words, &mut rng);
                pairs.push(body_pair(
                    &query,
                    &span_text(&words, start, settings.span_words),
                    PairKind::QuerySpan,
                ));
            }
        }
    }
    pairs
}

/// Unsupervised pairs from the corpus alone: per passage, its beginning → its title (when it
/// has a title) and span → another span (when it has at least two spans' worth of words).
pub fn unsupervised_pairs(corpus: &[Passage], settings: &RecipeSettings) -> Vec<TrainingPair> {
    let mut rng = SplitMix64::new(settings.seed ^ 0x5EA1_0002);
    let span = settings.span_words;
    let mut pairs = Vec::new();
    for passage in corpus {
        let words: Vec<&str> = passage.text.split_whitespace().collect();
        let title = passage.title.trim();
        if !title.is_empty() && !words.is_empty() {
            pairs.push(title_pair(
                &span_text(&words, 0, settings.passage_words),
                title,
                PairKind::PassageTitle,
            ));
        }
        if words.len() < 2 * span {
            continue;
        }
        let windows = words.len() - span + 1;
        // Sources that leave room for a non-overlapping target window before or after them.
        let sources: Vec<usize> =
            (0..windows).filter(|&s| s >= span || s + span < windows).collect();
        for _ in 0..settings.span_span_copies {
            let source = sources[rng.below(sources.len())];
            let before = (source + 1).saturating_sub(span); // targets 0..=source-span
            let after = windows.saturating_sub(source + span); // targets source+span..windows
            let pick = rng.below(before + after);
            let target = if pick < before { pick } else { source + span + (pick - before) };
            pairs.push(body_pair(
                &span_text(&words, source, span),
                &span_text(&words, target, span),
                PairKind::SpanSpan,
            ));
        }
    }
    pairs
}

/// Counts of each kind, in [`PairKind`] order, for reports.
pub fn count_kinds(pairs: &[TrainingPair]) -> [(PairKind, usize); 4] {
    let kinds =
        [PairKind::QueryTitle, PairKind::QuerySpan, PairKind::PassageTitle, PairKind::SpanSpan];
    kinds.map(|k| (k, pairs.iter().filter(|p| p.kind == k).count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<Passage> {
        vec![
            Passage::new(
                "d1",
                "Gene therapy",
                "one two three four five six seven eight nine ten \
                 eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty",
            ),
            Passage::new("d2", "", "alpha beta gamma"),
            Passage::new("d3", "Short", "only five words are here"),
        ]
    }

    fn qrels(entries: &[(&str, &str, i32)]) -> Qrels {
        let mut q = Qrels::new();
        for (qid, doc, g) in entries {
            q.entry(qid.to_string()).or_default().insert(doc.to_string(), *g);
        }
        q
    }

    #[test]
    fn supervised_pairs_follow_the_recipe() {
        let settings = RecipeSettings::default();
        let queries = vec![("q1".to_string(), "what  is  seventeen".to_string())];
        let pairs = supervised_pairs(
            &queries,
            &qrels(&[("q1", "d1", 1), ("q1", "d3", 0), ("q1", "missing", 1)]),
            &corpus(),
            &settings,
        );
        // d1 only (d3 has grade 0, `missing` is not in the corpus): 3 titles + 10 spans.
        assert_eq!(pairs.len(), 13);
        for p in &pairs[..3] {
            assert_eq!(p.kind, PairKind::QueryTitle);
            assert_eq!(p.prompt, "Query: what is seventeen\nTitle of a relevant passage:");
            assert_eq!(p.target, " Gene therapy\n");
        }
        let c = corpus();
        let words: Vec<&str> = c[0].text.split_whitespace().collect();
        let mut with_seventeen = 0;
        for p in &pairs[3..] {
            assert_eq!(p.kind, PairKind::QuerySpan);
            assert_eq!(p.prompt, "Query: what is seventeen\nKey phrases from a relevant passage:");
            let span: Vec<&str> = p.target.strip_prefix(' ').unwrap().split(' ').collect();
            assert_eq!(span.len(), 10);
            // A contiguous window of the passage.
            let start = words.iter().position(|w| *w == span[0]).unwrap();
            assert_eq!(&words[start..start + 10], span.as_slice());
            with_seventeen += usize::from(span.contains(&"seventeen"));
        }
        // Windows containing "seventeen" (starts 7..=10: 4 of 11) weigh 4, the others 1: the
        // bias makes them 16/23 of the draws in expectation; uniform would give 4/11.
        assert!(with_seventeen >= 5, "{with_seventeen} of 10 spans contain the query word");
    }

    #[test]
    fn the_prompt_is_the_searchers_plain_prompt() {
        let pairs = unsupervised_pairs(&corpus(), &RecipeSettings::default());
        for p in &pairs {
            let kind = if p.target.ends_with('\n') { PromptKind::Title } else { PromptKind::Body };
            let query = p.prompt.strip_prefix("Query: ").unwrap().split('\n').next().unwrap();
            assert_eq!(p.prompt, prompt(PromptStyle::Plain, kind, query));
            assert!(p.target.starts_with(' '));
        }
    }

    #[test]
    fn unsupervised_pairs_follow_the_recipe() {
        let settings = RecipeSettings { passage_words: 4, ..RecipeSettings::default() };
        let pairs = unsupervised_pairs(&corpus(), &settings);
        let kinds: Vec<PairKind> = pairs.iter().map(|p| p.kind).collect();
        // d1: title + 2 span pairs; d2: no title, too short; d3: title only (5 < 20 words).
        assert_eq!(
            kinds,
            [
                PairKind::PassageTitle,
                PairKind::SpanSpan,
                PairKind::SpanSpan,
                PairKind::PassageTitle
            ]
        );
        assert_eq!(pairs[0].prompt, "Query: one two three four\nTitle of a relevant passage:");
        assert_eq!(pairs[0].target, " Gene therapy\n");
        assert_eq!(pairs[3].prompt, "Query: only five words are\nTitle of a relevant passage:");
        let c = corpus();
        let words: Vec<&str> = c[0].text.split_whitespace().collect();
        for p in &pairs[1..3] {
            let source: Vec<&str> = p
                .prompt
                .strip_prefix("Query: ")
                .unwrap()
                .split('\n')
                .next()
                .unwrap()
                .split(' ')
                .collect();
            let target: Vec<&str> = p.target.trim_start().split(' ').collect();
            assert_eq!((source.len(), target.len()), (10, 10));
            let s = words.iter().position(|w| *w == source[0]).unwrap();
            let t = words.iter().position(|w| *w == target[0]).unwrap();
            assert_eq!(&words[s..s + 10], source.as_slice());
            assert_eq!(&words[t..t + 10], target.as_slice());
            assert!(s + 10 <= t || t + 10 <= s, "spans {s} and {t} overlap");
        }
    }

    #[test]
    fn pairs_are_deterministic_for_a_seed() {
        let queries = vec![("q1".to_string(), "eleven".to_string())];
        let judged = qrels(&[("q1", "d1", 1)]);
        let make = |seed| {
            let s = RecipeSettings { seed, ..RecipeSettings::default() };
            (supervised_pairs(&queries, &judged, &corpus(), &s), unsupervised_pairs(&corpus(), &s))
        };
        assert_eq!(make(0), make(0));
        // Ten spans drawn from eleven windows: another seed differs somewhere.
        assert_ne!(make(0).0, make(7).0);
    }
}
