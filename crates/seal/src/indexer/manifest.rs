//! An index directory's `manifest.json` and opening the directory's files checked against it:
//! every count, size and tokenizer fact the manifest states is compared with the files (and,
//! when searching, with the model's tokenizer), so a manifest edited to nonsense or copied from
//! another build is an error on open, not wrong answers later.
//!
//! Useful for: reading what an index holds ([`read_manifest`]) and opening its parts together
//! ([`IndexFiles::open`]). Not for: building (that is [`super::build_index`]) or replacing a
//! directory (that is [`super::replace`]).

use super::{index_error, DOCS_FILE, FM_INDEX_FILE, INDEX_FORMAT_VERSION, MANIFEST_FILE};
use crate::docstore::DocStore;
use crate::model::tokenizer::Tokenizer;
use crate::{Error, ErrorKind, Result, TokenId};
use seal_index::FmIndex;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    /// Corpus lines skipped because they could not be read (`--skip-bad-lines`); the list is in
    /// [`super::SKIPPED_LINES_FILE`]. Absent (0) in manifests of earlier versions.
    #[serde(default)]
    pub skipped_bad_lines: u64,
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
    /// The tokens of [`super::TITLE_DELIMITER`].
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

/// Reads `manifest.json` of an index directory and checks its format version. A directory
/// missing because a replacement died half-way (a platform without atomic exchange) is first
/// restored from the old index set aside beside it ([`super::replace::recover`]).
///
/// # Errors
/// When it is missing, unreadable, or of another format version.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    if !dir.exists() {
        // Best effort: without write access the error below says where the old index is.
        let _ = super::replace::recover(dir);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let hint = super::replace::interrupted_replacement_hint(dir).unwrap_or_default();
        Error::new(
            ErrorKind::Index,
            format!(
                "{} is not a seal index (no readable {MANIFEST_FILE}){hint}; build one with `seal index --corpus FILE --out {}`",
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

/// An index directory's manifest, FM-index and passage store, opened together and checked
/// against each other.
#[derive(Debug)]
pub struct IndexFiles {
    /// `manifest.json`.
    pub manifest: Manifest,
    /// `fm.idx`, memory-mapped.
    pub fm_index: FmIndex,
    /// `docs.bin`, in memory.
    pub docs: DocStore,
}

impl IndexFiles {
    /// Opens the index in `dir` and cross-checks the manifest against the files: passage and
    /// token counts, the separator, the largest token id against the vocabulary size, and the
    /// file sizes. An index replaced while it is being opened (a rebuild swapping in a new one)
    /// is opened again, so the parts always belong to one build.
    ///
    /// # Errors
    /// A missing or corrupt file, or a manifest that does not describe the files, each with a
    /// message that names the field and says to rebuild.
    pub fn open(dir: &Path) -> Result<IndexFiles> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let manifest = read_manifest(dir)?;
            let opened = Self::open_files(dir, &manifest);
            match opened {
                Ok(files) => return Ok(files),
                Err(e) if attempt < ATTEMPTS => {
                    // Another manifest now: the directory was replaced mid-way; open the new one.
                    match read_manifest(dir) {
                        Ok(now) if now != manifest => continue,
                        _ => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn open_files(dir: &Path, manifest: &Manifest) -> Result<IndexFiles> {
        let fm_index = FmIndex::open(&dir.join(FM_INDEX_FILE)).map_err(index_error)?;
        let docs = DocStore::open(&dir.join(DOCS_FILE))?;
        let files = IndexFiles { manifest: manifest.clone(), fm_index, docs };
        files.check(dir)?;
        Ok(files)
    }

    /// The cross-checks of [`Self::open`].
    fn check(&self, dir: &Path) -> Result<()> {
        let m = &self.manifest;
        let fm = &self.fm_index;
        let differs = |field: &str, stated: String, actual: String| {
            Err(mismatch(dir, &format!("says {field} = {stated}, but {actual}")))
        };
        if m.num_docs != fm.num_docs() {
            return differs(
                "num_docs",
                m.num_docs.to_string(),
                format!("{FM_INDEX_FILE} holds {} passages", fm.num_docs()),
            );
        }
        if self.docs.len() != fm.num_docs() {
            return Err(mismatch(
                dir,
                &format!(
                    "describes {} passages, and so does {FM_INDEX_FILE}, but {DOCS_FILE} holds {}",
                    fm.num_docs(),
                    self.docs.len()
                ),
            ));
        }
        if m.num_tokens != fm.num_tokens() {
            return differs(
                "num_tokens",
                m.num_tokens.to_string(),
                format!("{FM_INDEX_FILE} holds {} tokens", fm.num_tokens()),
            );
        }
        if m.tokenizer.separator != fm.separator() {
            return differs(
                "tokenizer.separator",
                m.tokenizer.separator.to_string(),
                format!("{FM_INDEX_FILE} separates passages with token {}", fm.separator()),
            );
        }
        let largest = fm.max_token_id();
        if largest as usize >= m.tokenizer.vocab_size {
            return differs(
                "tokenizer.vocab_size",
                m.tokenizer.vocab_size.to_string(),
                format!("{FM_INDEX_FILE} holds token id {largest}"),
            );
        }
        if let Some(&t) =
            m.tokenizer.title_delimiter.iter().find(|&&t| t as usize >= m.tokenizer.vocab_size)
        {
            return differs(
                "tokenizer.title_delimiter",
                format!("{:?}", m.tokenizer.title_delimiter),
                format!("token {t} is outside the vocabulary of {}", m.tokenizer.vocab_size),
            );
        }
        for (field, stated, file) in [
            ("sizes.fm_index", m.sizes.fm_index, FM_INDEX_FILE),
            ("sizes.docs", m.sizes.docs, DOCS_FILE),
        ] {
            let actual = std::fs::metadata(dir.join(file)).map(|md| md.len()).unwrap_or(0);
            if stated != actual {
                return differs(field, stated.to_string(), format!("{file} is {actual} bytes"));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// Checks the tokenizer facts against the tokenizer of the model that searches the index
    /// (the fingerprint check lets through a model merged from the index's model, which shares
    /// its tokenizer; this catches a manifest whose facts were edited).
    ///
    /// # Errors
    /// A vocabulary size, separator or title delimiter that the tokenizer does not have.
    pub fn check_tokenizer(&self, dir: &Path, tokenizer: &Tokenizer) -> Result<()> {
        let facts = &self.tokenizer;
        let differs = |field: &str, stated: String, actual: String| {
            Err(mismatch(
                dir,
                &format!("says {field} = {stated}, but the model's tokenizer has {actual}"),
            ))
        };
        if facts.vocab_size != tokenizer.vocab_size() {
            return differs(
                "tokenizer.vocab_size",
                facts.vocab_size.to_string(),
                tokenizer.vocab_size().to_string(),
            );
        }
        if facts.separator != tokenizer.eos_id() {
            return differs(
                "tokenizer.separator",
                facts.separator.to_string(),
                format!("end-of-sequence token {}", tokenizer.eos_id()),
            );
        }
        let delimiter = tokenizer.encode(super::TITLE_DELIMITER)?;
        if facts.title_delimiter != delimiter {
            return differs(
                "tokenizer.title_delimiter",
                format!("{:?}", facts.title_delimiter),
                format!("{delimiter:?} for {:?}", super::TITLE_DELIMITER),
            );
        }
        Ok(())
    }
}

fn mismatch(dir: &Path, what: &str) -> Error {
    Error::new(
        ErrorKind::Index,
        format!(
            "{} {what}: the manifest does not describe the files beside it (edited, or copied \
             from another build); rebuild the index with `seal index --corpus FILE --out {}`",
            dir.join(MANIFEST_FILE).display(),
            dir.display()
        ),
    )
}
