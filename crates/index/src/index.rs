//! The read side: [`FmIndex`] answers backward-search, listing, locate and document queries
//! over validated parts that live in a `Vec<u64>` or in a memory-mapped file.
//!
//! Not for: building (see `builder.rs`) or the byte layout (see `format.rs`).

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, AlignedWords, Parts, NUM_SECTIONS, SECTION_NAMES};
use crate::{DocId, TokenId};

/// Defines a public query method that runs its `#[inline(always)]` implementation compiled
/// with the `popcnt` instruction when the CPU has it (every x86-64 CPU since 2008; the default
/// target does not assume it), and the portable build otherwise. Rank is popcount-bound: an
/// A/B run of the benchmark (whole crate built for `x86-64-v2` vs default) gave 1.3-2.5x per
/// query. Only the outermost call dispatches.
macro_rules! popcnt_dispatch {
    ($(#[$doc:meta])* pub fn $name:ident(&self $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)? => $imp:ident, $fast:ident) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("popcnt") {
                    // SAFETY: the CPU supports `popcnt`, checked just above.
                    return unsafe { self.$fast($($arg),*) };
                }
            }
            self.$imp($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "popcnt")]
        fn $fast(&self $(, $arg: $ty)*) $(-> $ret)? {
            self.$imp($($arg),*)
        }
    };
}

/// Ranges of at most this many rows are listed by reading each row's symbol.
const SMALL_RANGE: usize = 4;

/// A half-open range `[start, end)` of suffix-array rows: the rows whose suffixes start with
/// the (reversed) n-gram that produced it. Empty when `start >= end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SaRange {
    /// First row.
    pub start: usize,
    /// One past the last row.
    pub end: usize,
}

impl SaRange {
    /// Number of rows (0 for an empty or inverted range).
    #[inline]
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// `true` when the range holds no rows.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Where the index's words live. Both variants keep their buffer at a fixed address for as
/// long as they exist, which is what lets [`FmIndex`] hold views into them.
enum Storage {
    Owned(#[allow(dead_code)] AlignedWords),
    Mapped(#[allow(dead_code)] memmap2::Mmap),
}

/// An FM-index over documents of token ids in SEAL's layout (see the crate docs).
///
/// Cheap to query from many threads at once (`&self` everywhere, `Sync`).
pub struct FmIndex {
    // Field order matters: `parts` borrows from `_storage` and must be dropped first.
    parts: Parts<'static>,
    _storage: Storage,
}

impl std::fmt::Debug for FmIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FmIndex")
            .field("num_tokens", &self.num_tokens())
            .field("num_docs", &self.num_docs())
            .field("sigma", &self.parts.header.sigma)
            .finish()
    }
}

impl FmIndex {
    /// Opens an index file by memory-mapping it, after validating its header, checksum and
    /// structure (this reads the whole file once).
    ///
    /// The file must not be modified while it is open (the usual memory-map caveat); the
    /// builder never modifies a file in place, it renames a new one over it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read; [`Error::NotAnIndex`], [`Error::Version`],
    /// [`Error::Checksum`] or [`Error::Corrupt`] when its contents are not a valid index.
    pub fn open(path: &Path) -> Result<FmIndex> {
        let io = |action| move |source| Error::Io { action, path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io("opening FM-index"))?;
        let len = file.metadata().map_err(io("reading metadata of FM-index"))?.len();
        if len < 8 {
            // Mapping an empty file fails on some systems; report what it is instead.
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(io("reading FM-index"))?;
            format::check_preamble(&bytes)?;
        }
        // SAFETY: the map is read-only; the documented contract is that the file is not
        // modified while the index is open (index files are replaced by rename, never edited).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("memory-mapping FM-index"))?;
        format::check_preamble(&map)?;
        match bytemuck::try_cast_slice::<u8, u64>(&map) {
            Ok(_) => FmIndex::from_storage(Storage::Mapped(map)),
            // A map is page-aligned, so this is unreachable in practice; copy rather than fail.
            Err(_) => FmIndex::from_bytes(map.to_vec()),
        }
    }

    /// Validates an index held in memory (the bytes of an index file).
    ///
    /// # Errors
    ///
    /// As [`FmIndex::open`], except [`Error::Io`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<FmIndex> {
        format::check_preamble(&bytes)?;
        // `Vec<u8>` has no alignment guarantee for u64 reads: copy into aligned words.
        let mut words = AlignedWords::zeroed(bytes.len() / 8);
        for (w, c) in words.as_mut_slice().iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        }
        drop(bytes);
        FmIndex::from_storage(Storage::Owned(words))
    }

    /// Wraps words produced by the builder.
    pub(crate) fn from_words(words: AlignedWords) -> Result<FmIndex> {
        FmIndex::from_storage(Storage::Owned(words))
    }

    fn from_storage(storage: Storage) -> Result<FmIndex> {
        if cfg!(target_endian = "big") {
            return Err(Error::NotAnIndex {
                detail: "index files are little-endian and this machine is big-endian".into(),
            });
        }
        let words: &[u64] = match &storage {
            Storage::Owned(v) => v.as_slice(),
            Storage::Mapped(m) => bytemuck::try_cast_slice(m).map_err(|_| Error::NotAnIndex {
                detail: "the memory map is not 8-byte aligned".into(),
            })?,
        };
        // SAFETY: `words` points into a heap buffer or a memory map owned by `storage`, which
        // moves into the returned struct without moving that buffer, is never mutated, and
        // outlives `parts` (declared first, so dropped first). `parts` is private and only
        // ever handed out reborrowed to `&self`'s lifetime.
        let words: &'static [u64] =
            unsafe { std::slice::from_raw_parts(words.as_ptr(), words.len()) };
        let parts = format::parse(words)?;
        Ok(FmIndex { parts, _storage: storage })
    }

    /// The range of the empty n-gram: every row whose suffix starts with a token (all rows but
    /// the sentinel's), `num_tokens()` rows.
    #[inline]
    pub fn full_range(&self) -> SaRange {
        SaRange { start: 1, end: self.rows() }
    }

    #[inline]
    fn rows(&self) -> usize {
        self.parts.header.rows() as usize
    }

    /// The rows whose BWT symbols are the next tokens of `range`'s n-gram. For the empty n-gram
    /// this includes the sentinel row 0, whose BWT symbol is the trailing separator (the one
    /// token that no real suffix follows).
    #[inline(always)]
    fn bwt_rows(&self, range: SaRange) -> (usize, usize) {
        if range == self.full_range() {
            (0, self.rows())
        } else {
            (range.start.min(self.rows()), range.end.min(self.rows()))
        }
    }

    /// The internal symbol of an original token id, if it occurs in the corpus.
    #[inline(always)]
    fn symbol_of(&self, token: TokenId) -> Option<u32> {
        self.parts.symbols.binary_search(&token).ok().map(|i| i as u32 + 1)
    }

    /// The original token id of an internal symbol (`None` for the sentinel).
    #[inline(always)]
    fn token_of(&self, symbol: u32) -> Option<TokenId> {
        symbol.checked_sub(1).and_then(|i| self.parts.symbols.get(i as usize)).copied()
    }

    popcnt_dispatch! {
        /// Appends `token` to the forward n-gram whose range is `range` (one backward-search
        /// step). An empty input range, or a token that does not occur, gives an empty range.
        pub fn extend(&self, range: SaRange, token: TokenId) -> SaRange => extend_impl, extend_popcnt
    }

    #[inline(always)]
    fn extend_impl(&self, range: SaRange, token: TokenId) -> SaRange {
        if range.is_empty() {
            return SaRange::default();
        }
        let Some(c) = self.symbol_of(token) else { return SaRange::default() };
        let n = self.rows();
        let counts = &self.parts.symbol_counts;
        let c = c as usize;
        if range == self.full_range() {
            return SaRange {
                start: counts.get(2 * c) as usize,
                end: counts.get(2 * c + 2) as usize,
            };
        }
        let (a, b) = self.bwt_rows(range);
        let (a, b) = self.parts.wavelet.map_range_down(c as u32, a, b);
        let offset = counts.get(2 * c).wrapping_sub(counts.get(2 * c + 1));
        let start = (offset.wrapping_add(a as u64) as usize).min(n);
        let end = (offset.wrapping_add(b as u64) as usize).min(n);
        if start >= end {
            SaRange::default()
        } else {
            SaRange { start, end }
        }
    }

    popcnt_dispatch! {
        /// The range of a forward n-gram (`full_range()` for the empty one).
        pub fn range(&self, ngram: &[TokenId]) -> SaRange => range_impl, range_popcnt
    }

    #[inline(always)]
    fn range_impl(&self, ngram: &[TokenId]) -> SaRange {
        let mut range = self.full_range();
        for &t in ngram {
            range = self.extend_impl(range, t);
            if range.is_empty() {
                break;
            }
        }
        range
    }

    /// Number of occurrences of a forward n-gram (`num_tokens()` for the empty one).
    pub fn count(&self, ngram: &[TokenId]) -> u64 {
        self.range(ngram).len() as u64
    }

    /// Every distinct token that follows `range`'s n-gram, with how often, sorted by token id.
    /// The separator is reported like any token; the internal sentinel never is.
    pub fn continuations(&self, range: SaRange) -> Vec<(TokenId, u64)> {
        let mut out = Vec::new();
        self.continuations_into(range, &mut out);
        out
    }

    popcnt_dispatch! {
        /// [`FmIndex::continuations`] into a caller's buffer: clears `out` and fills it. Does
        /// not allocate when `out` has enough capacity.
        pub fn continuations_into(&self, range: SaRange, out: &mut Vec<(TokenId, u64)>)
            => continuations_impl, continuations_popcnt
    }

    #[inline(always)]
    fn continuations_impl(&self, range: SaRange, out: &mut Vec<(TokenId, u64)>) {
        out.clear();
        if range.is_empty() {
            return;
        }
        if range == self.full_range() {
            let counts = &self.parts.symbol_counts;
            for (i, &token) in self.parts.symbols.iter().enumerate() {
                let symbol = i + 1;
                out.push((token, counts.get(2 * symbol + 2) - counts.get(2 * symbol)));
            }
            return;
        }
        let (a, b) = self.bwt_rows(range);
        let symbols = self.parts.symbols;
        if b.saturating_sub(a) <= SMALL_RANGE {
            // A few rows: reading each symbol (one rank per level) beats the enumeration
            // (two per level and node).
            let mut found = [0u32; SMALL_RANGE];
            let found = &mut found[..b - a];
            for (slot, row) in found.iter_mut().zip(a..b) {
                *slot = self.parts.wavelet.access_and_map(row).0;
            }
            found.sort_unstable();
            for (i, &symbol) in found.iter().enumerate() {
                if i > 0 && found[i - 1] == symbol {
                    if let Some(last) = out.last_mut() {
                        last.1 += 1;
                    }
                } else if let Some(token) = self.token_of(symbol) {
                    out.push((token, 1));
                }
            }
            return;
        }
        self.parts.wavelet.for_each_symbol(a, b, &mut |symbol, count| {
            if let Some(&token) = symbol.checked_sub(1).and_then(|i| symbols.get(i as usize)) {
                out.push((token, count as u64));
            }
        });
    }

    /// One LF step: the BWT symbol at `row` and the row of the suffix one position earlier.
    #[inline(always)]
    fn lf(&self, row: usize) -> (u32, usize) {
        let (symbol, i) = self.parts.wavelet.access_and_map(row);
        let counts = &self.parts.symbol_counts;
        let s = symbol as usize;
        let offset = counts.get(2 * s).wrapping_sub(counts.get(2 * s + 1));
        (symbol, (offset.wrapping_add(i as u64) as usize).min(self.rows() - 1))
    }

    popcnt_dispatch! {
        /// The text position (in the reversed layout, see the crate docs) of the suffix at
        /// `row`. Row 0, the sentinel, is at position `num_tokens()`. Takes fewer than
        /// `sa_sample_rate` LF steps.
        pub fn locate(&self, row: usize) -> usize => locate_impl, locate_popcnt
    }

    #[inline(always)]
    fn locate_impl(&self, row: usize) -> usize {
        let mut row = row.min(self.rows() - 1);
        let marks = &self.parts.marks;
        // A valid index needs fewer than `rate` steps (and fewer than `rows`: LF is one cycle
        // through all rows and the row of position 0 is sampled); the bound only guards
        // forged files, which must not loop for long either.
        let bound = (self.parts.header.sample_rate as usize).min(self.rows());
        for steps in 0..=bound {
            if marks.get(row) {
                return self.parts.samples.get(marks.rank1(row)) as usize + steps;
            }
            row = self.lf(row).1;
        }
        0
    }

    /// The document that holds text position `text_pos` and the forward offset of that token
    /// in it (the document's own separator is at offset `doc_len`). The trailing separator,
    /// which precedes the last document in forward order, maps to `(last document, 0)`;
    /// positions past the text are treated as the trailing separator.
    pub fn doc_at(&self, text_pos: usize) -> (DocId, usize) {
        let starts = self.parts.doc_starts;
        let docs = self.num_docs();
        let pos = text_pos as u64;
        if pos >= starts[docs] {
            return ((docs - 1) as DocId, 0);
        }
        let doc = starts.partition_point(|&s| s <= pos) - 1;
        let within = (pos - starts[doc]) as usize;
        // Document `doc` occupies `[SEP, t_len, .., t_1]`: offset `j` holds forward offset `len - j`.
        (doc as DocId, self.doc_len(doc as DocId).saturating_sub(within))
    }

    /// The occurrences of a forward n-gram of length `ngram_len` whose range is `range`: for
    /// each row, the document and the forward offset of the n-gram's first token. Lazy (one
    /// `locate` per item): use `.take(limit)`.
    ///
    /// An occurrence is attributed to the document that holds the n-gram's last token. An
    /// n-gram that reaches back over that document's start (a title pattern `SEP T1 .. Tm`,
    /// whose separator ends the previous document) reports offset 0.
    pub fn occurrences(
        &self,
        range: SaRange,
        ngram_len: usize,
    ) -> impl Iterator<Item = (DocId, usize)> + '_ {
        let (start, end) = (range.start.max(1).min(self.rows()), range.end.min(self.rows()));
        (start..end).map(move |row| {
            let (doc, last) = self.doc_at(self.locate(row));
            (doc, last.saturating_sub(ngram_len.saturating_sub(1)))
        })
    }

    popcnt_dispatch! {
        /// The tokens of document `doc` in forward order, without its separator (empty when
        /// `doc` is out of range).
        pub fn doc_tokens(&self, doc: DocId) -> Vec<TokenId> => doc_tokens_impl, doc_tokens_popcnt
    }

    #[inline(always)]
    fn doc_tokens_impl(&self, doc: DocId) -> Vec<TokenId> {
        let len = self.doc_len(doc);
        let mut out = Vec::with_capacity(len);
        if len == 0 {
            return out;
        }
        // The row of the position just after the document's last (reversed) token, i.e. the
        // next document's separator; LF from there reads the document forward.
        let mut row = self.parts.doc_anchors[doc as usize + 1] as usize;
        for _ in 0..len {
            let (symbol, next) = self.lf(row);
            out.push(self.token_of(symbol).unwrap_or(0));
            row = next;
        }
        out
    }

    /// Number of tokens of document `doc`, without its separator (0 when out of range).
    pub fn doc_len(&self, doc: DocId) -> usize {
        let starts = self.parts.doc_starts;
        let d = doc as usize;
        if d >= self.num_docs() {
            return 0;
        }
        (starts[d + 1] - starts[d] - 1) as usize
    }

    /// Number of documents.
    #[inline]
    pub fn num_docs(&self) -> usize {
        self.parts.header.num_docs as usize
    }

    /// Length of the indexed text: every document's tokens and separator plus the trailing
    /// separator (SEAL's `N`). The sentinel is not counted.
    #[inline]
    pub fn num_tokens(&self) -> usize {
        self.parts.header.num_tokens as usize
    }

    /// The separator token id (original, as given to the builder).
    #[inline]
    pub fn separator(&self) -> TokenId {
        self.parts.header.separator as TokenId
    }

    /// The suffix-array sample rate the index was built with.
    pub fn sa_sample_rate(&self) -> u32 {
        self.parts.header.sample_rate as u32
    }

    /// Number of distinct tokens in the corpus (the separator included).
    pub fn num_distinct_tokens(&self) -> usize {
        self.parts.symbols.len()
    }

    /// The largest token id in the corpus, the separator included (what a vocabulary must
    /// cover to have produced this index).
    pub fn max_token_id(&self) -> TokenId {
        self.parts.symbols.last().copied().unwrap_or(0).max(self.separator())
    }

    /// Size in bytes of every component of the index, in file order (the header excluded).
    pub fn size_breakdown(&self) -> Vec<(&'static str, usize)> {
        (0..NUM_SECTIONS).map(|i| (SECTION_NAMES[i], self.parts.section_words[i] * 8)).collect()
    }

    /// Total size in bytes of the index (the file size).
    pub fn size_bytes(&self) -> usize {
        (format::HEADER_WORDS
            + self.parts.section_words.iter().map(|&w| crate::bits::align_words(w)).sum::<usize>())
            * 8
    }
}

#[cfg(test)]
mod tests {
    use crate::FmIndexBuilder;

    /// The decoder shares one index across threads and moves builders to worker threads.
    #[test]
    fn index_is_shareable_and_builder_movable() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<super::FmIndex>();
        send::<FmIndexBuilder>();
    }

    /// The portable implementations (used on CPUs without `popcnt`) answer like the public
    /// methods, which dispatch to the `popcnt` build on this machine.
    #[test]
    fn portable_and_popcnt_builds_agree() {
        let mut b = FmIndexBuilder::new(0).sa_sample_rate(3);
        for d in 0..30u32 {
            let doc: Vec<u32> = (0..d % 11).map(|i| 1 + (d * 5 + i * 7) % 13).collect();
            b.push_document(&doc).unwrap();
        }
        let index = b.build().unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for t in 0..15u32 {
            for u in 0..15u32 {
                let r = index.range_impl(&[t]);
                assert_eq!(r, index.range(&[t]));
                assert_eq!(index.extend_impl(r, u), index.extend(r, u));
                index.continuations_impl(r, &mut x);
                index.continuations_into(r, &mut y);
                assert_eq!(x, y);
            }
        }
        for row in 0..=index.num_tokens() {
            assert_eq!(index.locate_impl(row), index.locate(row));
        }
        for d in 0..30 {
            assert_eq!(index.doc_tokens_impl(d), index.doc_tokens(d));
        }
    }
}
