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

/// Tokens per chunk of the pushed text (64 MiB). Above glibc's largest mmap threshold
/// (32 MiB), so every full chunk is its own mapping and returns to the OS when it is freed
/// during the build; smaller chunks would stay resident as free heap and raise the peak.
const TEXT_CHUNK: usize = 1 << 24;

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
/// While documents are pushed: 4 bytes per token plus 8 per document. During `build`: about
/// 6.5 bytes per token at the peak for alphabets under 65,536 distinct ids (16-bit text, 32-bit
/// suffix array that the BWT then overwrites in place, samples), about 10.5 above, plus
/// `libsais`'s working memory and a fixed few MB; see the crate docs, "Memory usage".
pub struct FmIndexBuilder {
    separator: TokenId,
    sample_rate: u32,
    /// The text in index layout (each document: separator, then its tokens reversed), with
    /// original ids, in chunks of `TEXT_CHUNK` tokens: no `Vec` doubling (up to 2x memory)
    /// while pushing, and chunks are freed one by one while the text is converted.
    text: Vec<Vec<u32>>,
    /// Tokens in `text`.
    text_len: usize,
    /// Tokens per chunk of `text` (`TEXT_CHUNK`; smaller in tests).
    chunk_tokens: usize,
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
            .field("num_tokens", &self.text_len)
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
            text_len: 0,
            chunk_tokens: TEXT_CHUNK,
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
        self.doc_starts.push(self.text_len as u64);
        self.push_token(self.separator);
        for &t in tokens.iter().rev() {
            self.push_token(t);
            self.mark_seen(t);
        }
        Ok(id)
    }

    #[inline]
    fn push_token(&mut self, token: u32) {
        match self.text.last_mut() {
            Some(chunk) if chunk.len() < self.chunk_tokens => chunk.push(token),
            _ => {
                let mut chunk = Vec::with_capacity(self.chunk_tokens.min(self.text_len.max(1024)));
                chunk.push(token);
                self.text.push(chunk);
            }
        }
        self.text_len += 1;
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
        let words = words.as_slice();
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
    fn build_words(&mut self) -> Result<format::AlignedWords> {
        if self.sample_rate == 0 {
            return Err(Error::invalid("the suffix-array sample rate must be at least 1"));
        }
        let num_docs = self.doc_starts.len();
        if num_docs == 0 {
            return Err(Error::invalid("no documents were added"));
        }
        if self.text_len == num_docs {
            return Err(Error::invalid(
                "every document is empty; an index needs at least one token",
            ));
        }
        // The trailing separator: makes the last document's title reachable through the
        // boundary like every other document's.
        self.push_token(self.separator);
        let num_tokens = self.text_len;
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
        let sigma = alphabet.symbols.len() + 1;
        let mut counts = vec![0u64; sigma + 1];
        counts[1] = 1; // the sentinel
        for chunk in self.text.iter_mut() {
            for t in chunk.iter_mut() {
                *t = alphabet.symbol(*t);
                counts[*t as usize + 1] += 1;
            }
        }
        for i in 1..=sigma {
            counts[i] += counts[i - 1];
        }
        self.report(BuildStage::Alphabet, num_tokens as u64, num_tokens as u64);

        let levels = bits_for(sigma as u64 - 1);
        let rate = self.sample_rate as usize;
        let chunks = std::mem::take(&mut self.text);
        // Compact fast path: 16-bit text and BWT when the alphabet allows. Either way the
        // pushed chunks are freed as they are copied, the suffix array's buffer is reused for
        // the BWT, and the text is freed before the wavelet matrix is built.
        let (zeros, level_words, scan) = if sigma <= 1 << 16 {
            let mut text: Vec<u16> = Vec::with_capacity(num_tokens);
            for chunk in chunks {
                text.extend(chunk.iter().map(|&s| s as u16));
            }
            let mut buf = self.suffix_array_u16(&text)?;
            self.report(BuildStage::Bwt, 0, num_tokens as u64);
            let scan = scan_suffix_array(&text, &mut buf, rate, &doc_starts);
            drop(text);
            let bwt: Vec<u16> = buf.iter().map(|&s| s as u16).collect();
            drop(buf);
            self.report(BuildStage::Bwt, num_tokens as u64, num_tokens as u64);
            let (z, w) = self.wavelet(bwt, levels);
            (z, w, scan)
        } else {
            let mut text: Vec<i32> = Vec::with_capacity(num_tokens);
            for chunk in chunks {
                text.extend(chunk.iter().map(|&s| s as i32));
            }
            let mut buf = self.suffix_array_i32(&mut text, sigma)?;
            self.report(BuildStage::Bwt, 0, num_tokens as u64);
            let symbols: &[u32] = bytemuck::cast_slice(&text);
            let scan = scan_suffix_array(symbols, &mut buf, rate, &doc_starts);
            drop(text);
            let bwt: Vec<u32> = bytemuck::cast_vec(buf);
            self.report(BuildStage::Bwt, num_tokens as u64, num_tokens as u64);
            let (z, w) = self.wavelet(bwt, levels);
            (z, w, scan)
        };
        let rows = num_tokens + 1;
        let wm = WaveletMatrix::from_words(&zeros, &level_words, rows)
            .ok_or_else(|| Error::Construction { detail: "wavelet matrix size mismatch".into() })?;
        let symbol_counts = pack_ints(
            (0..=sigma).flat_map(|c| {
                let base = if c < sigma { Some(wm.map_down(c as u32, 0) as u64) } else { None };
                std::iter::once(counts[c]).chain(base)
            }),
            2 * sigma + 1,
            bits_for(rows as u64),
        );

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
                &symbol_counts,
                &zeros,
                &level_words,
                &marks,
                &samples,
                &doc_starts,
                &scan.anchors,
            ],
        ))
    }

    /// The suffix array of `text` in the first `n` slots of an `n + 1` buffer (the last slot
    /// takes the sentinel row's BWT symbol later).
    fn suffix_array_u16(&mut self, text: &[u16]) -> Result<Vec<i32>> {
        let n = text.len() as u64;
        self.report(BuildStage::SuffixArray, 0, n);
        let mut buf = vec![0i32; text.len() + 1];
        libsais::SuffixArrayConstruction::for_text(text)
            .in_borrowed_buffer(&mut buf)
            .multi_threaded(libsais::ThreadCount::openmp_default())
            .run()
            .map_err(|e| Error::Construction { detail: format!("{e:?}") })?;
        self.report(BuildStage::SuffixArray, n, n);
        Ok(buf)
    }

    fn suffix_array_i32(&mut self, text: &mut [i32], sigma: usize) -> Result<Vec<i32>> {
        let n = text.len() as u64;
        self.report(BuildStage::SuffixArray, 0, n);
        let mut buf = vec![0i32; text.len() + 1];
        let construction = libsais::SuffixArrayConstruction::for_text_mut(text)
            .in_borrowed_buffer(&mut buf)
            .multi_threaded(libsais::ThreadCount::openmp_default());
        // SAFETY: (the library's contract, not memory's) every value of `text` is a dense
        // symbol in `1..sigma`, so `[0, sigma)` holds them all and none is negative.
        let construction = unsafe {
            construction.with_alphabet_size(libsais::suffix_array::AlphabetSize::new(sigma as i32))
        };
        construction.run().map_err(|e| Error::Construction { detail: format!("{e:?}") })?;
        self.report(BuildStage::SuffixArray, n, n);
        Ok(buf)
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

/// What one pass over the suffix array produces besides the BWT.
struct Scan {
    /// Sample marks, one bit per row.
    marks: Vec<u64>,
    /// Sampled text positions, in row order.
    samples: Vec<u64>,
    /// Row of every document start position (and of the trailing separator).
    anchors: Vec<u64>,
}

/// Reads the BWT, the samples and the document anchors off the suffix array of `text`, which
/// `libsais` sorts as if a sentinel followed it (that sentinel's suffix is row 0, so suffix-
/// array slot `i` is row `i + 1`). `buf` holds the suffix array in its first `n` slots; on
/// return it holds the BWT in row order (as `u32` symbols), overwriting the suffix array in
/// place.
fn scan_suffix_array<S: Copy + Into<u32>>(
    text: &[S],
    buf: &mut [i32],
    rate: usize,
    doc_starts: &[u64],
) -> Scan {
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

    let mut marks = BitsBuilder::zeros(rows);
    let mut samples = Vec::with_capacity(rows / rate + 2);
    let mut anchors = vec![0u64; doc_starts.len()];
    if n.is_multiple_of(rate) {
        marks.set(0);
        samples.push(n as u64);
    }
    for (i, slot) in buf[..n].iter_mut().enumerate() {
        let row = i + 1;
        let p = *slot as usize;
        // The sentinel (symbol 0) precedes the suffix at position 0.
        *slot = if p == 0 { 0 } else { text[p - 1].into() as i32 };
        if p.is_multiple_of(rate) {
            marks.set(row);
            samples.push(p as u64);
        }
        if starts.get(p) {
            anchors[starts.rank1(p)] = row as u64;
        }
    }
    // Row 0 (the sentinel's suffix) is preceded by the last token; shift it into place.
    buf[n] = text[n - 1].into() as i32;
    buf.rotate_right(1);
    Scan { marks: marks.into_parts().0, samples, anchors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Progress arrives stage by stage, each stage ending with `done == total`.
    #[test]
    fn progress_reports_every_stage_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let mut b = FmIndexBuilder::new(0).on_progress(move |p| sink.lock().unwrap().push(p));
        b.push_document(&[1, 2, 3]).unwrap();
        b.push_document(&[3, 2]).unwrap();
        let dir = std::env::temp_dir().join(format!("seal-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        b.write(&dir.join("i.fm")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let seen = seen.lock().unwrap();
        let stages: Vec<BuildStage> = seen.iter().map(|p| p.stage).collect();
        let mut order = stages.clone();
        order.dedup();
        use BuildStage::*;
        assert_eq!(order, vec![Alphabet, SuffixArray, Bwt, WaveletMatrix, Writing]);
        for stage in order {
            let last = seen.iter().rev().find(|p| p.stage == stage).unwrap();
            assert_eq!(last.done, last.total, "{stage:?} did not finish");
        }
        // 5 internal symbols (sentinel, separator, 3 tokens) need 3 levels.
        assert_eq!(stages.iter().filter(|&&s| s == WaveletMatrix).count(), 1 + 3);
    }

    /// Text split over many chunks builds the same bytes as one chunk.
    #[test]
    fn chunked_text_builds_the_same_index() {
        let docs: Vec<Vec<u32>> =
            (0..40u32).map(|d| (0..d % 9).map(|i| 1 + (d * 7 + i * 3) % 11).collect()).collect();
        let build = |chunk_tokens: usize| {
            let mut b = FmIndexBuilder::new(0).sa_sample_rate(3);
            b.chunk_tokens = chunk_tokens;
            for d in &docs {
                b.push_document(d).unwrap();
            }
            assert!(b.text.len() >= (b.text_len / chunk_tokens).max(1));
            b.build_words().unwrap().as_slice().to_vec()
        };
        assert_eq!(build(5), build(TEXT_CHUNK));
        assert_eq!(build(1), build(TEXT_CHUNK));
    }
}
