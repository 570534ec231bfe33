//! `seal-index`: an FM-index over documents of `u32` token ids, laid out as SEAL does (each
//! document reversed on its own, a separator per document) so that backward search extends an
//! n-gram one token at a time in *forward* order, and the tokens that may follow an n-gram are
//! one range listing away.
//!
//! Not for: tokenization, models or scoring; this crate knows only token ids.
//!
//! # Overview
//!
//! ```
//! use seal_index::{FmIndex, FmIndexBuilder};
//!
//! const SEP: u32 = 0;
//! let mut builder = FmIndexBuilder::new(SEP);
//! builder.push_document(&[5, 6, 7])?; // document 0
//! builder.push_document(&[6, 7, 8])?; // document 1
//! let index: FmIndex = builder.build()?;
//!
//! // Constrained decoding: which tokens may follow [6]? (sorted by id, with counts)
//! let range = index.range(&[6]);
//! assert_eq!(index.continuations(range), vec![(7, 2)]);
//! // One decoding step: append 7.
//! let range = index.extend(range, 7);
//! assert_eq!(index.count(&[6, 7]), 2);
//! assert_eq!(index.continuations(range), vec![(SEP, 1), (8, 1)]);
//! // Where does [6, 7] occur? (document, forward offset of its first token)
//! let mut hits: Vec<_> = index.occurrences(range, 2).collect();
//! hits.sort();
//! assert_eq!(hits, vec![(0, 1), (1, 0)]);
//! // Titles through the boundary: the separator precedes every document, the last one too.
//! assert_eq!(index.count(&[SEP, 6, 7, 8]), 1);
//! assert_eq!(index.doc_tokens(1), vec![6, 7, 8]);
//! # Ok::<(), seal_index::Error>(())
//! ```
//!
//! # Layout
//!
//! Each document `t1 .. tk` becomes `SEP tk .. t1` (the separator appended, then the whole
//! reversed); documents are concatenated in order and one more separator ends the text. The
//! text has `N = Σ (len + 1) + 1` tokens ([`FmIndex::num_tokens`]); a virtual sentinel, smaller
//! than every token, follows it. Read right to left the text is
//! `SEP D_last SEP .. D_1 SEP D_0 SEP`: every document is preceded by a separator, so the
//! forward pattern `SEP T1 .. Tm @@` matches the complete title of *every* document.
//!
//! Internally token ids are mapped to a dense alphabet `1..σ` in id order (0 is the sentinel):
//! the wavelet matrix then needs `⌈log2 σ⌉` levels for the ids that occur, not for the largest
//! id, and any `u32` works as a token id. The map is invisible: every method takes and returns
//! the caller's ids.
//!
//! Text positions ([`FmIndex::locate`]) are in this reversed layout; [`FmIndex::doc_at`] turns
//! one into a document and a forward offset, and [`FmIndex::occurrences`] does both for a range.
//!
//! # Components
//!
//! | part | what | size |
//! |---|---|---|
//! | wavelet matrix | the BWT, one plain bit vector with a rank directory per level | `⌈log2 σ⌉ · 1.03` bits/token |
//! | symbols, symbol counts | the id of each internal symbol; `C[c]` and where the wavelet matrix's bottom level puts symbol `c`, bit-packed | `4 + 2 · ⌈log2 N⌉ / 8` bytes per distinct token |
//! | sample marks + samples | which rows have their suffix-array value stored (text positions divisible by the sample rate), and those values | `1.03 + ⌈log2 N⌉ / rate` bits/token |
//! | document starts + anchors | each document's separator position, and the row of that position | 16 bytes per document |
//!
//! `locate` walks LF from a row until it reaches a sampled one: fewer than `rate` steps.
//! `doc_tokens` needs no stored text and no sampled inverse suffix array: the anchor of document
//! `d + 1` is the row just after document `d`'s first token, and LF from there reads `d` in
//! forward order, one wavelet access per token (SEAL walks from an inverse-SA sample every 64
//! positions instead, which costs up to 63 extra steps per document). A plain token store
//! would read a document in nanoseconds but costs 2-4 bytes per token, more than the whole
//! index; the crate leaves that to callers who need it.
//!
//! # Format
//!
//! One file, little-endian `u64` words: magic bytes `SEALFMIX`, format version (1), length,
//! a 64-bit checksum of everything after it, the header fields, a table of section offsets,
//! then the sections above. [`FmIndex::open`] memory-maps the file and validates, before any
//! query runs: magic, version, length, checksum, every section's offset and length against
//! the header, the symbol table's order, the counts, the rank directories of every bit vector
//! and the document table. A truncated, damaged or foreign file is an [`Error`] that says to
//! rebuild the index, never a panic. Values that only a full reconstruction could verify (the
//! sampled positions, the bottom-level offsets) are clamped where they are used, so even a forged file
//! with a valid checksum gives wrong answers rather than a crash. [`FmIndexBuilder::write`]
//! writes to a temporary file, syncs it and renames it into place.
//!
//! # Memory usage
//!
//! Building: while documents are pushed, 4 bytes per token (in 64 MiB chunks, no `Vec`
//! doubling). During [`FmIndexBuilder::build`] the chunks are converted to a 16-bit text
//! (2 bytes/token; 4 for alphabets of 65,536 ids or more) and freed, the 32-bit suffix array
//! (4) is built and then overwritten in place by the BWT, and the wavelet matrix is built from
//! the BWT and one scratch copy: about 6.5 bytes per token at the peak, plus `libsais`'s
//! working memory and a fixed few MB. Measured (`BENCHMARKS.md`): 7.8 bytes/token on a
//! 20M-token stream, 12.3 on SciFact's 1.4M tokens where the fixed part weighs more.
//! [`FmIndexBuilder::build`] also holds the finished index (about 2.4-2.6 bytes/token);
//! [`FmIndexBuilder::write`] frees it once written.
//!
//! Querying: the index itself (memory-mapped, pages loaded as queries touch them; or a
//! 64-byte-aligned copy with [`FmIndex::from_bytes`]), and nothing per query:
//! [`FmIndex::continuations_into`] fills a caller's buffer, and `extend`, `count` and `locate`
//! never allocate.
//!
//! # Quirks (of SEAL's reference code, decided here)
//!
//! 1. *Off-by-one first step* (SEAL.md §6.1): the reference starts backward search from a range
//!    one row short, so unigram ranges can miss a row. **Fixed**: [`FmIndex::full_range`] is
//!    treated as the range of the empty n-gram, which includes the sentinel row (whose BWT
//!    symbol is the trailing separator), so `range(&[t])` is exact for every token. The full
//!    range still reports `num_tokens()` rows, without the sentinel.
//! 2. *Last title unreachable* (SEAL.md §6.6): **fixed** by the trailing separator.
//! 3. An occurrence of an n-gram that reaches back over its document's start (a title pattern
//!    `SEP T1 ..`, whose separator ends the *previous* document) is attributed by
//!    [`FmIndex::occurrences`] to the document of its last token at offset 0.
//! 4. An index needs at least one token: a corpus whose documents are all empty is rejected.
//! 5. Fewer than 2^31 - 1 tokens per index in this version (32-bit suffix array).
//!
//! # References
//!
//! - Ferragina, Manzini. *Opportunistic data structures with applications*. FOCS 2000.
//! - Claude, Navarro, Ordóñez. *The wavelet matrix*. Information Systems 47, 2015.
//! - Nong, Zhang, Chan. *Two efficient algorithms for linear time suffix array construction*.
//!   IEEE TC 2011; Grebnov, `libsais`.
//! - Bevilacqua et al. *Autoregressive Search Engines*. NeurIPS 2022 (SEAL).

// Every unsafe block says why it is sound; an unsafe fn's body is no blanket unsafe context.
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

mod bits;
mod builder;
mod error;
mod format;
mod index;
mod wavelet;

pub use builder::{BuildProgress, BuildStage, FmIndexBuilder};
pub use error::{Error, Result};
pub use index::{FmIndex, SaRange};

/// Helpers for this crate's fuzz target and corruption tests. Not part of the API.
#[doc(hidden)]
pub mod __private {
    /// Recomputes the checksum of index bytes in place (no-op on buffers too short or not
    /// a multiple of 8 bytes), so that mutated bytes reach the structural checks.
    pub fn reseal(bytes: &mut [u8]) {
        crate::format::reseal(bytes)
    }
}

/// A token id of the corpus alphabet, as given to the builder (no shift applied).
pub type TokenId = u32;

/// The position of a document in corpus order (0-based).
pub type DocId = u32;
