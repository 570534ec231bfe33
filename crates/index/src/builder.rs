//! The write side: [`FmIndexBuilder`] collects documents, then builds the suffix array
//! (`libsais`), the BWT, the wavelet matrix, the samples and the document tables, and hands
//! back an [`FmIndex`] or writes a file atomically.
//!
//! Not for: queries (see `index.rs`) or the byte layout (see `format.rs`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use crate::bits::{bits_for, pack_ints, write_rank_bits, BitsBuilder, RankBits};
use crate::error::{Error, Result};
use crate::format::{self, Header};
use crate::index::FmIndex;
use crate::wavelet::{self, WaveletMatrix};
use crate::{DocId, TokenId};

/// Token ids below this are tracked in a bitset while documents are pushed; larger ids (rare:
/// only synthetic or very large vocabularies) in a set.
const SMALL_ID_LIMIT: u32 = 1 << 24;

/// A stage of [`FmIndexBuilder::build`], reported through [`FmIndexBuilder::on_progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildStage {
    /// Mapping token ids to the dense internal alphabet.
    Alphabet,
    /// Suffix-array construction (`libsais`); `done` jumps from 0 to `total`.
    SuffixArray,
    /// Reading the BWT, the samples and the document anchors off the suffix array.
    Bwt,
    /// Building the wavelet matrix; `done` and `total` count levels.
    WaveletMatrix,
    /// Writing the file.
    Writing,
}

/// One progress report: `done` of `total` units of `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildProgress {
    /// The stage.
    pub stage: BuildStage,
    /// Units finished.
    pub done: u64,
    /// Units in the stage.
    pub total: u64,
}

type ProgressFn = Box<dyn FnMut(BuildProgress) + Send>;

/// Collects documents and builds an [`FmIndex`] over them.
///
/// # Memory usage
///
/// While documents are pushed: 4 bytes per token plus 8 per document. During `build`, for
/// alphabets under 65,536 distinct ids, the peak is about 8.3 bytes per token on top of
/// nothing else (16-bit text 2, suffix array 4, BWT 2, samples 0.25; the pushed 32-bit text
/// is released after conversion) and then about 6 while the wavelet matrix is built; for
/// larger alphabets about 12.3 (32-bit text and BWT). `build` returns the finished index in
/// memory (about 2-3 bytes per token); `write` releases it once the file is written.
pub struct FmIndexBuilder {
    separator: TokenId,
    sample_rate: u32,
    /// The text in index layout (each document: separator, then its tokens reversed), with
    /// original ids.
    text: Vec<u32>,
    /// Text position of every document's separator.
    doc_starts: Vec<u64>,
    seen_small: Vec<u64>,
    seen_large: BTreeSet<u32>,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for FmIndexBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FmIndexBuilder")
            .field("separator", &self.separator)
            .field("sample_rate", &self.sample_rate)
            .field("num_docs", &self.doc_starts.len())
            .field("num_tokens", &self.text.len())
            .finish()
    }
}

impl FmIndexBuilder {
    /// A builder whose documents will each end with `separator` (SEAL: the model's EOS).
    /// The separator must not occur inside documents.
    pub fn new(separator: TokenId) -> Self {
        FmIndexBuilder {
            separator,
            sample_rate: 32,
            text: Vec::new(),
            doc_starts: Vec::new(),
            seen_small: Vec::new(),
            seen_large: BTreeSet::new(),
            progress: None,
        }
    }

    /// Samples every `rate`-th text position of the suffix array (default 32): `locate` takes
    /// fewer than `rate` LF steps; the samples take about `log2(N) / rate` bits per token.
    /// A rate of 0 makes `build` fail.
    pub fn sa_sample_rate(mut self, rate: u32) -> Self {
        self.sample_rate = rate;
        self
    }

    /// Calls `report` at the start and end of every build stage (and after every wavelet
    /// level). Keep it cheap; it runs on the building thread.
    pub fn on_progress(mut self, report: impl FnMut(BuildProgress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(report));
        self
    }

    /// Reserves room for `tokens` more tokens (documents' tokens, not counting separators).
    pub fn reserve(&mut self, tokens: usize) {
        self.text.reserve(tokens);
    }

    /// Adds a document (its tokens in forward order, without a separator) and returns its id.
    /// Empty documents are allowed: they contribute only their separator.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when the document contains the separator, or when there are
    /// already `u32::MAX` documents.
    pub fn push_document(&mut self, tokens: &[TokenId]) -> Result<DocId> {
        let id = DocId::try_from(self.doc_starts.len())
            .ok()
            .filter(|&id| id < DocId::MAX)
            .ok_or_else(|| Error::invalid("too many documents (the limit is u32::MAX - 1)"))?;
        if let Some(i) = tokens.iter().position(|&t| t == self.separator) {
            return Err(Error::invalid(format!(
                "document {id} contains the separator token {} at offset {i}; the separator may \
                 only end documents",
                self.separator
            )));
        }
        self.doc_starts.push(self.text.len() as u64);
        self.text.push(self.separator);
        self.text.extend(tokens.iter().rev());
        for &t in tokens {
            self.mark_seen(t);
        }
        Ok(id)
    }

    #[inline]
    fn mark_seen(&mut self, token: TokenId) {
        if token < SMALL_ID_LIMIT {
            let word = (token / 64) as usize;
            if word >= self.seen_small.len() {
                self.seen_small.resize(word + 1, 0);
            }
            self.seen_small[word] |= 1 << (token % 64);
        } else {
            self.seen_large.insert(token);
        }
    }

    /// Number of documents pushed so far.
    pub fn num_docs(&self) -> usize {
        self.doc_starts.len()
    }

    fn report(&mut self, stage: BuildStage, done: u64, total: u64) {
        if let Some(f) = &mut self.progress {
            f(BuildProgress { stage, done, total });
        }
    }

    /// Builds the index in memory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when there are no documents, when every document is empty, when
    /// the sample rate is 0, or when the text has 2^31 - 1 tokens or more;
    /// [`Error::Construction`] when `libsais` fails.
    pub fn build(mut self) -> Result<FmIndex> {
        let words = self.build_words()?;
        FmIndex::from_words(words)
    }

    /// Builds the index and writes it to `path`: first to a temporary file next to it, which
    /// is synced and then renamed over `path`, so a crash never leaves a half-written index.
    ///
    /// # Errors
    ///
    /// As [`FmIndexBuilder::build`], plus [`Error::Io`].
    pub fn write(mut self, path: &Path) -> Result<()> {
        let words = self.build_words()?;
        let total = words.len() as u64 * 8;
        self.report(BuildStage::Writing, 0, total);
        let io = |action, p: &Path| {
            let path = p.to_path_buf();
            move |source| Error::Io { action, path, source }
        };
        let file_name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            for chunk in words.chunks(1 << 16) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|w| w.to_le_bytes()).collect();
                w.write_all(&bytes).map_err(io("writing", &tmp))?;
            }
            let file = w.into_inner().map_err(|e| io("writing", &tmp)(e.into_error()))?;
            file.sync_all().map_err(io("syncing", &tmp))?;
            std::fs::rename(&tmp, path).map_err(io("renaming into place", path))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        self.report(BuildStage::Writing, total, total);
        Ok(())
    }

    /// Everything of `build` except wrapping the words.
    fn build_words(&mut self) -> Result<Vec<u64>> {
        if self.sample_rate == 0 {
            return Err(Error::invalid("the suffix-array sample rate must be at least 1"));
        }
        let num_docs = self.doc_starts.len();
        if num_docs == 0 {
            return Err(Error::invalid("no documents were added"));
        }
        if self.text.len() == num_docs {
            return Err(Error::invalid(
                "every document is empty; an index needs at least one token",
            ));
        }
        // The trailing separator: makes the last document's title reachable through the
        // boundary like every other document's.
        let mut text = std::mem::take(&mut self.text);
        text.push(self.separator);
        let num_tokens = text.len();
        if num_tokens >= i32::MAX as usize {
            return Err(Error::invalid(format!(
                "the corpus has {num_tokens} tokens; this version indexes fewer than 2^31 - 1"
            )));
        }
        let mut doc_starts = std::mem::take(&mut self.doc_starts);
        doc_starts.push(num_tokens as u64 - 1);

        // Dense alphabet: symbol 0 is the sentinel, 1.. the distinct token ids in order.
        self.report(BuildStage::Alphabet, 0, num_tokens as u64);
        self.mark_seen(self.separator);
        let alphabet = Alphabet::new(
            std::mem::take(&mut self.seen_small),
            std::mem::take(&mut self.seen_large),
        );
        for t in text.iter_mut() {
            *t = alphabet.symbol(*t);
        }
        let sigma = alphabet.symbols.len() + 1;
        let mut counts = vec![0u64; sigma + 1];
        counts[1] = 1; // the sentinel
        for &s in &text {
            counts[s as usize + 1] += 1;
        }
        for i in 1..=sigma {
            counts[i] += counts[i - 1];
        }
        self.report(BuildStage::Alphabet, num_tokens as u64, num_tokens as u64);

        let levels = bits_for(sigma as u64 - 1);
        let rate = self.sample_rate as usize;
        // Compact fast path: 16-bit text and BWT when the alphabet allows.
        let (zeros, level_words, scan) = if sigma <= 1 << 16 {
            let text: Vec<u16> = text.into_iter().map(|s| s as u16).collect();
            let sa = self.suffix_array_u16(&text)?;
            self.report(BuildStage::Bwt, 0, num_tokens as u64);
            let mut scan = scan_suffix_array(&text, &sa, rate, &doc_starts);
            drop(sa);
            drop(text);
            self.report(BuildStage::Bwt, num_tokens as u64, num_tokens as u64);
            let (z, w) = self.wavelet(std::mem::take(&mut scan.bwt), levels);
            (
                z,
                w,
                Scan {
                    bwt: Vec::<u32>::new(),
                    marks: scan.marks,
                    samples: scan.samples,
                    anchors: scan.anchors,
                },
            )
        } else {
            let mut text: Vec<i32> = bytemuck::cast_vec(text);
            let sa = self.suffix_array_i32(&mut text, sigma)?;
            let text: Vec<u32> = bytemuck::cast_vec(text);
            self.report(BuildStage::Bwt, 0, num_tokens as u64);
            let mut scan = scan_suffix_array(&text, &sa, rate, &doc_starts);
            drop(sa);
            drop(text);
            self.report(BuildStage::Bwt, num_tokens as u64, num_tokens as u64);
            let (z, w) = self.wavelet(std::mem::take(&mut scan.bwt), levels);
            (z, w, scan)
        };
        let rows = num_tokens + 1;
        let wm = WaveletMatrix::from_words(&zeros, &level_words, rows)
            .ok_or_else(|| Error::Construction { detail: "wavelet matrix size mismatch".into() })?;
        let lf_offsets: Vec<u64> =
            (0..sigma).map(|c| counts[c].wrapping_sub(wm.map_down(c as u32, 0) as u64)).collect();

        let sample_width = bits_for(num_tokens as u64);
        let num_samples = scan.samples.len();
        let samples = pack_ints(scan.samples.iter().copied(), num_samples, sample_width);
        let mut marks = Vec::new();
        write_rank_bits(&scan.marks, rows, &mut marks);
        let symbol_words: Vec<u64> = alphabet
            .symbols
            .chunks(2)
            .map(|c| c[0] as u64 | (c.get(1).copied().unwrap_or(0) as u64) << 32)
            .collect();
        let header = Header {
            num_tokens: num_tokens as u64,
            num_docs: num_docs as u64,
            separator: self.separator as u64,
            sample_rate: self.sample_rate as u64,
            sigma: sigma as u64,
            levels: levels as u64,
            sample_width: sample_width as u64,
            num_samples: num_samples as u64,
        };
        Ok(format::assemble(
            &header,
            [
                &symbol_words,
                &counts,
                &lf_offsets,
                &zeros,
                &level_words,
                &marks,
                &samples,
                &doc_starts,
                &scan.anchors,
            ],
        ))
    }

    fn suffix_array_u16(&mut self, text: &[u16]) -> Result<Vec<i32>> {
        let n = text.len() as u64;
        self.report(BuildStage::SuffixArray, 0, n);
        let sa = libsais::SuffixArrayConstruction::for_text(text)
            .in_owned_buffer32()
            .multi_threaded(libsais::ThreadCount::openmp_default())
            .run()
            .map_err(|e| Error::Construction { detail: format!("{e:?}") })?
            .into_vec();
        self.report(BuildStage::SuffixArray, n, n);
        Ok(sa)
    }

    fn suffix_array_i32(&mut self, text: &mut [i32], sigma: usize) -> Result<Vec<i32>> {
        let n = text.len() as u64;
        self.report(BuildStage::SuffixArray, 0, n);
        let construction = libsais::SuffixArrayConstruction::for_text_mut(text)
            .in_owned_buffer32()
            .multi_threaded(libsais::ThreadCount::openmp_default());
        // SAFETY (of the library's contract, not of memory): every value of `text` is a dense
        // symbol in `1..sigma`, so `[0, sigma)` holds them all and none is negative.
        let construction = unsafe {
            construction.with_alphabet_size(libsais::suffix_array::AlphabetSize::new(sigma as i32))
        };
        let sa = construction
            .run()
            .map_err(|e| Error::Construction { detail: format!("{e:?}") })?
            .into_vec();
        self.report(BuildStage::SuffixArray, n, n);
        Ok(sa)
    }

    fn wavelet<S: Copy + Into<u32> + Default>(
        &mut self,
        bwt: Vec<S>,
        levels: u32,
    ) -> (Vec<u64>, Vec<u64>) {
        self.report(BuildStage::WaveletMatrix, 0, levels as u64);
        let mut progress = self.progress.take();
        let out = wavelet::build(bwt, levels, |l| {
            if let Some(f) = &mut progress {
                f(BuildProgress {
                    stage: BuildStage::WaveletMatrix,
                    done: l as u64,
                    total: levels as u64,
                });
            }
        });
        self.progress = progress;
        out
    }
}

/// The map from original token ids to dense symbols (`1..`; 0 is the sentinel).
struct Alphabet {
    /// Original ids in increasing order; symbol `s` is `symbols[s - 1]`.
    symbols: Vec<u32>,
    small_bits: Vec<u64>,
    /// Number of set bits in `small_bits` before each word.
    small_prefix: Vec<u32>,
    small_count: u32,
}

impl Alphabet {
    fn new(small_bits: Vec<u64>, large: BTreeSet<u32>) -> Alphabet {
        let mut symbols = Vec::new();
        let mut small_prefix = Vec::with_capacity(small_bits.len());
        for (w, &bits) in small_bits.iter().enumerate() {
            small_prefix.push(symbols.len() as u32);
            let mut b = bits;
            while b != 0 {
                symbols.push(w as u32 * 64 + b.trailing_zeros());
                b &= b - 1;
            }
        }
        let small_count = symbols.len() as u32;
        symbols.extend(large);
        Alphabet { symbols, small_bits, small_prefix, small_count }
    }

    /// The dense symbol of a token that was marked seen.
    #[inline]
    fn symbol(&self, token: u32) -> u32 {
        if token < SMALL_ID_LIMIT {
            let w = (token / 64) as usize;
            let below = self.small_bits[w] & ((1u64 << (token % 64)) - 1);
            self.small_prefix[w] + below.count_ones() + 1
        } else {
            let i = self.symbols[self.small_count as usize..].binary_search(&token).unwrap_or(0);
            self.small_count + i as u32 + 1
        }
    }
}

/// What one pass over the suffix array produces.
struct Scan<S> {
    /// The BWT in row order (row 0 = the sentinel suffix).
    bwt: Vec<S>,
    /// Sample marks, one bit per row.
    marks: Vec<u64>,
    /// Sampled text positions, in row order.
    samples: Vec<u64>,
    /// Row of every document start position (and of the trailing separator).
    anchors: Vec<u64>,
}

/// Reads the BWT, the samples and the document anchors off the suffix array of `text` (which
/// `libsais` sorts as if a sentinel followed it; that sentinel's suffix is row 0).
fn scan_suffix_array<S: Copy + Default>(
    text: &[S],
    sa: &[i32],
    rate: usize,
    doc_starts: &[u64],
) -> Scan<S> {
    let n = text.len();
    let rows = n + 1;
    let mut is_start = BitsBuilder::zeros(n);
    for &p in doc_starts {
        is_start.set(p as usize);
    }
    let (start_bits, _) = is_start.into_parts();
    let mut start_words = Vec::new();
    write_rank_bits(&start_bits, n, &mut start_words);
    let starts = RankBits::from_words(&start_words, n).expect("sizes computed above");

    let mut bwt = Vec::with_capacity(rows);
    let mut marks = BitsBuilder::zeros(rows);
    let mut samples = Vec::with_capacity(rows / rate + 2);
    let mut anchors = vec![0u64; doc_starts.len()];
    bwt.push(text[n - 1]);
    if n % rate == 0 {
        marks.set(0);
        samples.push(n as u64);
    }
    for (i, &p) in sa.iter().enumerate() {
        let row = i + 1;
        let p = p as usize;
        bwt.push(if p == 0 { S::default() } else { text[p - 1] });
        if p % rate == 0 {
            marks.set(row);
            samples.push(p as u64);
        }
        if starts.get(p) {
            anchors[starts.rank1(p)] = row as u64;
        }
    }
    Scan { bwt, marks: marks.into_parts().0, samples, anchors }
}
