//! File format version 1: how the parts of an FM-index are laid out as little-endian `u64`
//! words, how they are checksummed, and how a byte buffer is validated before any query runs.
//!
//! Not for: deciding what the parts mean (see `index.rs`) or how they are built (`builder.rs`).
//!
//! ```text
//! word 0   magic  b"SEALFMIX"
//! word 1   format version (1)
//! word 2   file length in words
//! word 3   checksum of words 4.. (see `checksum`)
//! word 4.. num_tokens, num_docs, separator, sa_sample_rate, sigma, levels,
//!          sample_width, num_samples, num_sections
//! then     section table: (offset in words, length in words) per section, in `Section` order
//! then     the sections in the same order, each starting on a 64-byte boundary (zero padding)
//! ```
//!
//! Everything is 64-byte aligned in the file, and in memory (a memory map is page-aligned;
//! owned buffers are aligned by [`AlignedWords`]), so every 512-bit rank block is one cache line.

use crate::bits::{align_words, bits_for, packed_words, rank_bits_words, PackedInts, RankBits};
use crate::error::{Error, Result};
use crate::wavelet::WaveletMatrix;

/// The first eight bytes of every index file.
pub(crate) const MAGIC: [u8; 8] = *b"SEALFMIX";
/// The format version this build writes and reads.
pub(crate) const VERSION: u64 = 1;

const W_FILE_WORDS: usize = 2;
const W_CHECKSUM: usize = 3;
const W_FIELDS: usize = 4;
const NUM_FIELDS: usize = 9;
const W_TABLE: usize = W_FIELDS + NUM_FIELDS;
/// Number of sections in format version 1.
pub(crate) const NUM_SECTIONS: usize = 8;
/// Words before the first section (the header and table, padded to a cache line).
pub(crate) const HEADER_WORDS: usize = (W_TABLE + 2 * NUM_SECTIONS).div_ceil(8) * 8;

/// The sections of a version-1 file, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Section {
    /// Original token id of every internal symbol `1..sigma` (u32, strictly increasing).
    Symbols,
    /// Bit-packed (width `bits_for(rows)`), interleaved: `C[0], B[0], C[1], B[1], ..,
    /// C[sigma]`, where `C[c]` counts the BWT symbols smaller than `c` and `B[c]` is where the
    /// wavelet matrix's bottom level puts symbol `c`'s first occurrence (`map_down(c, 0)`);
    /// `C[c] + i - B[c]` turns a bottom-level position `i` of `c` into a row.
    SymbolCounts,
    /// Zero count of every wavelet-matrix level.
    WaveletZeros,
    /// The wavelet-matrix levels (rank bit vectors), concatenated.
    WaveletLevels,
    /// One bit per row: is that row's suffix-array value sampled?
    SampleMarks,
    /// Sampled suffix-array values in row order, bit-packed.
    Samples,
    /// Text position of every document's separator, plus the trailing separator.
    DocStarts,
    /// The row of every `DocStarts` position (where a document's LF walk begins).
    DocAnchors,
}

/// Human-readable section names, for size reports.
pub(crate) const SECTION_NAMES: [&str; NUM_SECTIONS] = [
    "symbols",
    "symbol_counts",
    "wavelet_zeros",
    "wavelet_levels (BWT)",
    "sample_marks",
    "sa_samples",
    "doc_starts",
    "doc_anchors",
];

/// The scalar fields of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub num_tokens: u64,
    pub num_docs: u64,
    pub separator: u64,
    pub sample_rate: u64,
    pub sigma: u64,
    pub levels: u64,
    pub sample_width: u64,
    pub num_samples: u64,
}

impl Header {
    /// Rows of the BWT: the tokens plus the sentinel.
    pub(crate) fn rows(&self) -> u64 {
        self.num_tokens + 1
    }

    /// The exact length in words of every section, or `None` when a size overflows.
    fn section_lengths(&self) -> Option<[usize; NUM_SECTIONS]> {
        let usz = |x: u64| usize::try_from(x).ok();
        let n = usz(self.rows())?;
        let sigma = usz(self.sigma)?;
        let levels = usz(self.levels)?;
        let docs = usz(self.num_docs)?;
        let samples = usz(self.num_samples)?;
        // Keep every product far from overflow before multiplying.
        if n > (1 << 56) || sigma > (1 << 33) || levels > 32 || docs > (1 << 56) || samples > n {
            return None;
        }
        Some([
            (sigma - 1).div_ceil(2),
            packed_words(2 * sigma + 1, bits_for(n as u64)),
            levels,
            levels.checked_mul(rank_bits_words(n))?,
            rank_bits_words(n),
            packed_words(samples, self.sample_width as u32),
            docs + 1,
            docs + 1,
        ])
    }
}

/// A fast 64-bit checksum of `words` (four independent multiply-rotate lanes, as in xxHash64;
/// written here, not a general-purpose hash). Detects truncation and random damage.
pub(crate) fn checksum(words: &[u64]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    let round =
        |acc: u64, w: u64| acc.wrapping_add(w.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1);
    let mut lanes = [P1, P2, P3, P1 ^ P2];
    let mut chunks = words.chunks_exact(4);
    for c in &mut chunks {
        lanes[0] = round(lanes[0], c[0]);
        lanes[1] = round(lanes[1], c[1]);
        lanes[2] = round(lanes[2], c[2]);
        lanes[3] = round(lanes[3], c[3]);
    }
    let mut h = lanes[0].rotate_left(1)
        ^ lanes[1].rotate_left(7)
        ^ lanes[2].rotate_left(12)
        ^ lanes[3].rotate_left(18);
    for &w in chunks.remainder() {
        h = round(h, w);
    }
    h ^= words.len() as u64;
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// A zeroed word buffer whose first word is 64-byte aligned (a `Vec<u64>` is only 8-aligned).
pub(crate) struct AlignedWords {
    buf: Vec<u64>,
    offset: usize,
    len: usize,
}

impl AlignedWords {
    /// `len` zero words, 64-byte aligned.
    pub(crate) fn zeroed(len: usize) -> AlignedWords {
        let buf = vec![0u64; len + 7];
        let misalignment = (buf.as_ptr() as usize / 8) % 8;
        let offset = (8 - misalignment) % 8;
        AlignedWords { buf, offset, len }
    }

    pub(crate) fn as_slice(&self) -> &[u64] {
        &self.buf[self.offset..self.offset + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u64] {
        &mut self.buf[self.offset..self.offset + self.len]
    }
}

/// Writes the header and the sections (given in `Section` order) as one aligned word buffer.
pub(crate) fn assemble(header: &Header, sections: [&[u64]; NUM_SECTIONS]) -> AlignedWords {
    let total: usize = HEADER_WORDS + sections.iter().map(|s| align_words(s.len())).sum::<usize>();
    let mut aligned = AlignedWords::zeroed(total);
    let mut out = Vec::with_capacity(HEADER_WORDS);
    out.push(u64::from_le_bytes(MAGIC));
    out.push(VERSION);
    out.push(total as u64);
    out.push(0); // checksum, filled in below
    out.extend_from_slice(&[
        header.num_tokens,
        header.num_docs,
        header.separator,
        header.sample_rate,
        header.sigma,
        header.levels,
        header.sample_width,
        header.num_samples,
        NUM_SECTIONS as u64,
    ]);
    let mut offset = HEADER_WORDS;
    for s in &sections {
        out.push(offset as u64);
        out.push(s.len() as u64);
        offset += align_words(s.len());
    }
    let words = aligned.as_mut_slice();
    words[..out.len()].copy_from_slice(&out);
    let mut offset = HEADER_WORDS;
    for s in &sections {
        words[offset..offset + s.len()].copy_from_slice(s);
        offset += align_words(s.len());
    }
    debug_assert_eq!(offset, total);
    words[W_CHECKSUM] = checksum(&words[W_FIELDS..]);
    aligned
}

/// Recomputes the checksum word of a whole file's bytes in place (for fuzzing and tests).
pub(crate) fn reseal(bytes: &mut [u8]) {
    if bytes.len() < HEADER_WORDS * 8 || !bytes.len().is_multiple_of(8) {
        return;
    }
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let sum = checksum(&words[W_FIELDS..]);
    bytes[W_CHECKSUM * 8..W_CHECKSUM * 8 + 8].copy_from_slice(&sum.to_le_bytes());
}

/// Validated, borrowed views of every part of an index.
#[derive(Clone, Debug)]
pub(crate) struct Parts<'a> {
    pub header: Header,
    pub symbols: &'a [u32],
    pub symbol_counts: PackedInts<'a>,
    pub wavelet: WaveletMatrix<'a>,
    pub marks: RankBits<'a>,
    pub samples: PackedInts<'a>,
    pub doc_starts: &'a [u64],
    pub doc_anchors: &'a [u64],
    /// Length in words of every section, for size reports.
    pub section_words: [usize; NUM_SECTIONS],
}

/// Checks the magic bytes, the version and the length of a raw file before anything else.
pub(crate) fn check_preamble(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        let detail = if bytes.len() < 8 {
            format!("the file is only {} bytes long", bytes.len())
        } else {
            "its first bytes are not the magic bytes `SEALFMIX`".to_string()
        };
        return Err(Error::NotAnIndex { detail });
    }
    if bytes.len() < HEADER_WORDS * 8 {
        return Err(Error::corrupt(format!(
            "the file is truncated: {} bytes, shorter than the {}-byte header",
            bytes.len(),
            HEADER_WORDS * 8
        )));
    }
    let version = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(Error::Version { expected: VERSION, got: version });
    }
    if !bytes.len().is_multiple_of(8) {
        return Err(Error::corrupt(format!(
            "the file is truncated: its length {} is not a multiple of 8",
            bytes.len()
        )));
    }
    Ok(())
}

/// Validates `words` (a whole file) and returns views of its parts.
///
/// After this succeeds every length, offset and rank directory is known to be consistent, so
/// queries cannot index out of bounds; values that would need a full scan to verify (sampled
/// positions, LF offsets) are clamped where they are used instead.
pub(crate) fn parse(words: &[u64]) -> Result<Parts<'_>> {
    let bytes: &[u8] = bytemuck::cast_slice(words);
    check_preamble(bytes)?;
    let file_words = words[W_FILE_WORDS];
    if file_words != words.len() as u64 {
        return Err(Error::corrupt(format!(
            "the file is truncated or padded: the header says {} bytes, the file has {}",
            file_words.saturating_mul(8),
            bytes.len()
        )));
    }
    let expected = words[W_CHECKSUM];
    let got = checksum(&words[W_FIELDS..]);
    if expected != got {
        return Err(Error::Checksum { expected, got });
    }
    let f = &words[W_FIELDS..W_TABLE];
    if f[8] != NUM_SECTIONS as u64 {
        return Err(Error::corrupt(format!("{} sections instead of {NUM_SECTIONS}", f[8])));
    }
    let header = Header {
        num_tokens: f[0],
        num_docs: f[1],
        separator: f[2],
        sample_rate: f[3],
        sigma: f[4],
        levels: f[5],
        sample_width: f[6],
        num_samples: f[7],
    };
    check_header(&header)?;
    let lengths = header
        .section_lengths()
        .ok_or_else(|| Error::corrupt("the header's sizes are impossibly large"))?;
    let mut offset = HEADER_WORDS;
    let mut sections: [&[u64]; NUM_SECTIONS] = [&[]; NUM_SECTIONS];
    for (i, &len) in lengths.iter().enumerate() {
        let (o, l) = (words[W_TABLE + 2 * i], words[W_TABLE + 2 * i + 1]);
        if o != offset as u64 || l != len as u64 {
            return Err(Error::corrupt(format!(
                "section `{}` is at word {o} with {l} words, expected word {offset} with {len}",
                SECTION_NAMES[i]
            )));
        }
        let slice = words.get(offset..offset + len).ok_or_else(|| {
            Error::corrupt(format!("section `{}` runs past the end", SECTION_NAMES[i]))
        })?;
        sections[i] = slice;
        offset += align_words(len);
    }
    if offset != words.len() {
        return Err(Error::corrupt("trailing bytes after the last section"));
    }
    let n = header.rows() as usize;
    let sigma = header.sigma as usize;
    let symbols: &[u32] = bytemuck::cast_slice(sections[Section::Symbols as usize]);
    let symbols = &symbols[..sigma - 1];
    if symbols.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::corrupt("the symbol table is not strictly increasing"));
    }
    if symbols.binary_search(&(header.separator as u32)).is_err() {
        return Err(Error::corrupt("the separator is not in the symbol table"));
    }
    let symbol_counts = PackedInts::from_words(
        sections[Section::SymbolCounts as usize],
        bits_for(n as u64),
        2 * sigma + 1,
    )
    .ok_or_else(|| Error::corrupt("the symbol counts have the wrong size"))?;
    let count_before = |c: usize| symbol_counts.get(2 * c);
    if count_before(0) != 0
        || count_before(1) != 1
        || count_before(sigma) != n as u64
        || (1..=sigma).any(|c| count_before(c - 1) >= count_before(c))
    {
        return Err(Error::corrupt("the symbol counts are inconsistent"));
    }
    let wavelet = WaveletMatrix::from_words(
        sections[Section::WaveletZeros as usize],
        sections[Section::WaveletLevels as usize],
        n,
    )
    .filter(|w| w.is_consistent())
    .ok_or_else(|| Error::corrupt("the wavelet matrix's rank directory is inconsistent"))?;
    let marks = RankBits::from_words(sections[Section::SampleMarks as usize], n)
        .filter(|m| m.directory_is_consistent() && m.count_ones() as u64 == header.num_samples)
        .ok_or_else(|| Error::corrupt("the suffix-array sample marks are inconsistent"))?;
    let samples = PackedInts::from_words(
        sections[Section::Samples as usize],
        header.sample_width as u32,
        header.num_samples as usize,
    )
    .ok_or_else(|| Error::corrupt("the suffix-array samples have the wrong size"))?;
    let doc_starts = sections[Section::DocStarts as usize];
    if doc_starts[0] != 0
        || doc_starts[header.num_docs as usize] != header.num_tokens - 1
        || doc_starts.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(Error::corrupt("the document offsets are inconsistent"));
    }
    let doc_anchors = sections[Section::DocAnchors as usize];
    if doc_anchors.iter().any(|&r| r >= n as u64) {
        return Err(Error::corrupt("a document anchor row is out of range"));
    }
    Ok(Parts {
        header,
        symbols,
        symbol_counts,
        wavelet,
        marks,
        samples,
        doc_starts,
        doc_anchors,
        section_words: lengths,
    })
}

fn check_header(h: &Header) -> Result<()> {
    let bad = |what: &str| Err(Error::corrupt(format!("impossible header: {what}")));
    // Bound the sizes first, so no arithmetic below (or in queries) can overflow.
    if h.num_tokens >= (1u64 << 56) || h.num_docs >= (1u64 << 56) {
        return bad("text too long");
    }
    if h.num_docs == 0 || h.num_tokens < h.num_docs + 2 {
        return bad("too few documents or tokens");
    }
    if h.sigma < 3 || h.sigma > (1u64 << 32) {
        return bad("alphabet size out of range");
    }
    if h.levels != bits_for(h.sigma - 1) as u64 {
        return bad("wavelet-matrix depth does not match the alphabet size");
    }
    if h.sample_rate == 0 || h.sample_rate > u32::MAX as u64 {
        return bad("suffix-array sample rate out of range");
    }
    if h.sample_width != bits_for(h.num_tokens) as u64 {
        return bad("suffix-array sample width does not match the text length");
    }
    if h.separator > u32::MAX as u64 {
        return bad("separator is not a u32");
    }
    Ok(())
}
