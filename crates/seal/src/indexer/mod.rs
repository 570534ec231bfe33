//! Building a SEAL index directory from a corpus: tokenize every passage's document string with
//! the model's tokenizer (in parallel), build the FM-index, store the passages, write a manifest.
//!
//! Useful for: `seal index` and the embedded default. Not for: reading an index (that is
//! [`crate::searcher`]) or the FM-index internals (that is `seal-index`).
//!
//! # An index directory
//!
//! ```text
//! manifest.json   format version, model fingerprint, tokenizer facts, settings, counts, sizes
//! fm.idx          the FM-index over token ids (seal-index format)
//! docs.bin        passage ids, titles and texts (docstore format)
//! ```
//!
//! The manifest is written last, so a directory without one is an unfinished build.

use crate::corpus::Passage;
use crate::docstore::{write_atomically, DocStore};
use crate::model::tokenizer::Tokenizer;
use crate::{Error, ErrorKind, Result, TokenId};
use rayon::prelude::*;
use seal_index::FmIndexBuilder;
use serde::{Deserialize, Serialize};
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

/// What an index directory holds, written as `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`INDEX_FORMAT_VERSION`] at build time.
    pub format_version: u32,
    /// The `seal` version that built the index.
    pub seal_version: String,
    /// The model whose tokenizer produced the token ids.
    pub model: ModelRef,
    /// Facts about the tokenizer the search side must agree on.
    pub tokenizer: TokenizerFacts,
    /// Number of indexed passages.
    pub num_docs: usize,
    /// Passages skipped because their document string was empty.
    pub skipped_empty: usize,
    /// Tokens in the FM-index text, separators included (SEAL's N).
    pub num_tokens: usize,
    /// Seconds the build took.
    pub build_seconds: f64,
    /// Size of each file in bytes.
    pub sizes: FileSizes,
}

/// The model an index was built with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRef {
    /// The name or path it was given as.
    pub name: String,
    /// sha256 of the GGUF file.
    pub fingerprint: String,
}

/// Tokenizer facts recorded at build time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenizerFacts {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// The separator appended to every document (the model's EOS).
    pub separator: TokenId,
    /// The tokens of [`TITLE_DELIMITER`].
    pub title_delimiter: Vec<TokenId>,
}

/// Byte sizes of the files of an index directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FileSizes {
    /// `fm.idx`.
    pub fm_index: u64,
    /// `docs.bin`.
    pub docs: u64,
}

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

/// Builds an index directory at `out` from `passages`.
///
/// # Errors
/// When tokenization, the FM-index build or a write fails.
pub fn build_index(
    passages: Vec<Passage>,
    tokenizer: &Tokenizer,
    model: ModelRef,
    out: &Path,
    progress: Progress<'_>,
) -> Result<Manifest> {
    let start = Instant::now();
    std::fs::create_dir_all(out).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot create index directory {}", out.display()))
            .with_source(e)
    })?;
    // A stale manifest must not describe the files we are about to replace.
    let _ = std::fs::remove_file(out.join(MANIFEST_FILE));

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
        num_tokens: fm.num_tokens(),
        build_seconds: start.elapsed().as_secs_f64(),
        sizes: FileSizes { fm_index: file_size(&fm_path), docs: file_size(&docs_path) },
    };
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Reads `manifest.json` of an index directory and checks its format version.
///
/// # Errors
/// When it is missing, unreadable, or of another format version.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::new(
            ErrorKind::Index,
            format!(
                "{} is not a seal index (no readable {MANIFEST_FILE}); build one with `seal index --corpus FILE --out {}`",
                dir.display(),
                dir.display()
            ),
        )
        .with_source(e)
    })?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::Index,
            format!("{} is corrupt; rebuild the index with `seal index`", path.display()),
        )
        .with_source(e)
    })?;
    if m.format_version != INDEX_FORMAT_VERSION {
        return Err(Error::new(
            ErrorKind::Index,
            format!(
                "{} has index format version {}, this seal reads version {INDEX_FORMAT_VERSION}; rebuild the index with `seal index`",
                dir.display(),
                m.format_version
            ),
        ));
    }
    Ok(m)
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
