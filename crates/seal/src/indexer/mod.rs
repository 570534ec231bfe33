//! Building a SEAL index directory from a corpus: tokenize every passage's document string with
//! the model's tokenizer (in parallel), build the FM-index, store the passages, write a manifest.
//!
//! Useful for: `seal index` and the embedded default. Not for: reading an index (that is
//! [`crate::searcher`]) or the FM-index internals (that is `seal-index`).
//!
//! # An index directory
//!
//! ```text
//! manifest.json        format version, model fingerprint, tokenizer facts, settings, counts, sizes
//! fm.idx               the FM-index over token ids (seal-index format)
//! docs.bin             passage ids, titles and texts (docstore format)
//! skipped-lines.tsv    only when corpus lines were skipped: their numbers and reasons
//! ```
//!
//! The files are written into a staging directory beside the target, the manifest last, and
//! the staging directory is swapped in whole ([`replace`]): the target is the old index or the
//! new one at every instant. Opening checks the manifest against the files ([`IndexFiles`]).
//! Directories of earlier versions (the same flat layout) open as they are.

mod manifest;
pub mod replace;

pub use manifest::{read_manifest, FileSizes, IndexFiles, Manifest, ModelRef, TokenizerFacts};

use crate::corpus::{Passage, SkippedLine};
use crate::docstore::{write_atomically, DocStore};
use crate::model::tokenizer::Tokenizer;
use crate::{Error, ErrorKind, Result, TokenId};
use rayon::prelude::*;
use seal_index::FmIndexBuilder;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Version of the index directory layout and manifest.
pub const INDEX_FORMAT_VERSION: u32 = 1;
/// The string that ends a title in a document string (SEAL.md §1).
pub const TITLE_DELIMITER: &str = " @@";

/// File names inside an index directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The FM-index file.
pub const FM_INDEX_FILE: &str = "fm.idx";
/// The document store file.
pub const DOCS_FILE: &str = "docs.bin";
/// The corpus lines a build skipped (`--skip-bad-lines`): `line<TAB>reason`, after `#` comments.
pub const SKIPPED_LINES_FILE: &str = "skipped-lines.tsv";

/// Reports build progress: `(stage, done, total)`.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// The document string of a passage as SEAL indexes it: `title @@ text`, with the leading space
/// that the tokenizer needs to produce word-initial tokens (SEAL.md §1). Empty when the passage
/// has neither title nor text.
pub fn indexed_string(p: &Passage) -> String {
    let s = crate::corpus::document_string(p);
    if s.is_empty() {
        s
    } else {
        format!(" {s}")
    }
}

/// Corpus lines a build skipped as unreadable, recorded in the index
/// ([`Manifest::skipped_bad_lines`], [`SKIPPED_LINES_FILE`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SkippedLines<'a> {
    /// How many lines were skipped.
    pub total: u64,
    /// The first of them, in file order, with their reasons
    /// ([`crate::corpus::CorpusReader::skipped_lines`]).
    pub listed: &'a [SkippedLine],
}

/// Builds an index directory at `out` from `passages`, replacing an index there atomically
/// (see [`replace`]).
///
/// # Errors
/// When `out` is a non-empty directory that is not a seal index, or tokenization, the FM-index
/// build or a write fails; the index that was in `out` is then unchanged.
pub fn build_index(
    passages: Vec<Passage>,
    tokenizer: &Tokenizer,
    model: ModelRef,
    out: &Path,
    progress: Progress<'_>,
) -> Result<Manifest> {
    build_index_with(passages, SkippedLines::default(), tokenizer, model, out, progress)
}

/// [`build_index`], recording the corpus lines that were skipped.
///
/// # Errors
/// As [`build_index`].
pub fn build_index_with(
    passages: Vec<Passage>,
    skipped: SkippedLines<'_>,
    tokenizer: &Tokenizer,
    model: ModelRef,
    out: &Path,
    progress: Progress<'_>,
) -> Result<Manifest> {
    let start = Instant::now();
    let target = replace::Target::prepare(out)?;
    let staging = target.stage()?;
    let manifest =
        write_index(passages, skipped, tokenizer, model, staging.path(), start, progress)?;
    staging.commit(&target)?;
    Ok(manifest)
}

/// Writes an index's files into `out`, an empty directory, the manifest last.
fn write_index(
    passages: Vec<Passage>,
    skipped: SkippedLines<'_>,
    tokenizer: &Tokenizer,
    model: ModelRef,
    out: &Path,
    start: Instant,
    progress: Progress<'_>,
) -> Result<Manifest> {
    let total = passages.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let encoded: Vec<Result<Option<Vec<TokenId>>>> = passages
        .par_iter()
        .map(|p| {
            let s = indexed_string(p);
            let r = if s.is_empty() {
                Ok(None)
            } else {
                tokenizer.encode(&s).map(Some).map_err(crate::Error::from)
            };
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_multiple_of(256) || n == total {
                progress("tokenizing", n, total);
            }
            r
        })
        .collect();

    let separator = tokenizer.eos_id();
    let mut builder = FmIndexBuilder::new(separator);
    let mut docs = DocStore::new();
    let mut skipped_empty = 0;
    for (p, tokens) in passages.iter().zip(encoded) {
        let Some(tokens) = tokens? else {
            skipped_empty += 1;
            continue;
        };
        builder.push_document(&tokens).map_err(index_error)?;
        docs.push(&p.id, &p.title, &p.text);
    }
    progress("building FM-index", 0, 1);
    let fm_path = out.join(FM_INDEX_FILE);
    let num_docs = docs.len();
    builder.write(&fm_path).map_err(index_error)?;
    progress("building FM-index", 1, 1);
    let docs_path = out.join(DOCS_FILE);
    docs.write(&docs_path)?;
    let fm = seal_index::FmIndex::open(&fm_path).map_err(index_error)?;

    let manifest = Manifest {
        format_version: INDEX_FORMAT_VERSION,
        seal_version: env!("CARGO_PKG_VERSION").to_owned(),
        model,
        tokenizer: TokenizerFacts {
            vocab_size: tokenizer.vocab_size(),
            separator,
            title_delimiter: tokenizer.encode(TITLE_DELIMITER)?,
        },
        num_docs,
        skipped_empty,
        skipped_bad_lines: skipped.total,
        num_tokens: fm.num_tokens(),
        build_seconds: start.elapsed().as_secs_f64(),
        sizes: FileSizes { fm_index: file_size(&fm_path), docs: file_size(&docs_path) },
    };
    if skipped.total > 0 {
        write_skipped_lines(out, skipped)?;
    }
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

fn write_skipped_lines(dir: &Path, skipped: SkippedLines<'_>) -> Result<()> {
    use std::fmt::Write;
    let mut text = format!(
        "# {} corpus lines could not be read and were skipped (--skip-bad-lines)",
        skipped.total
    );
    if (skipped.listed.len() as u64) < skipped.total {
        let _ = write!(text, "; the first {} are listed", skipped.listed.len());
    }
    text.push_str("\n# line\treason\n");
    for s in skipped.listed {
        let reason = s.reason.replace(['\t', '\n', '\r'], " ");
        let _ = writeln!(text, "{}\t{reason}", s.line);
    }
    write_atomically(&dir.join(SKIPPED_LINES_FILE), text.as_bytes())
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let json = serde_json::to_vec_pretty(m).expect("a manifest always serializes");
    write_atomically(&dir.join(MANIFEST_FILE), &json)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Wraps an FM-index error.
pub(crate) fn index_error(e: seal_index::Error) -> Error {
    Error::new(ErrorKind::Index, "FM-index error").with_source(e)
}

/// The paths of an index directory's files.
pub fn index_paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(MANIFEST_FILE), dir.join(FM_INDEX_FILE), dir.join(DOCS_FILE))
}
