//! [`SearcherBuilder`]: everything between "an index (or none), a model name (or none), maybe an
//! adapter" and an open [`Searcher`] — the bundled sample built on first use, the model resolved
//! by name or path (pulled into the cache when it is a known name), the prompt style a trained
//! model must be searched with. The CLI, the server and the evaluation all open searchers here.

use super::Searcher;
use crate::corpus::{CorpusFormat, CorpusReader, ReadOptions};
use crate::indexer::{build_index, read_manifest, ModelRef};
use crate::model::{hub, tokenizer::Tokenizer, Precision};
use crate::prompt::PromptStyle;
use crate::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

/// The bundled sample corpus (299 Wikipedia passages, CC BY-SA 3.0; see data/sample/README.md),
/// searched when no index is given.
pub const SAMPLE_CORPUS: &str = include_str!("../../data/sample/corpus.jsonl");

/// Progress of the work a builder may do before the searcher opens: `(stage, done, total)`.
pub type OpenProgress = Box<dyn Fn(&str, u64, u64) + Send + Sync>;

/// How to open a [`Searcher`]; see the module docs.
#[derive(Default)]
pub struct SearcherBuilder {
    index: Option<PathBuf>,
    model: Option<String>,
    adapter: Option<PathBuf>,
    precision: Precision,
    cache_dir: Option<PathBuf>,
    download_progress: bool,
    progress: Option<OpenProgress>,
}

impl SearcherBuilder {
    /// Defaults: the bundled sample with the default model, exact arithmetic, the default cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index directory (`seal index`); without one, the bundled sample is indexed for the
    /// model under the cache directory on first use.
    pub fn index(mut self, dir: Option<impl Into<PathBuf>>) -> Self {
        self.index = dir.map(Into::into);
        self
    }

    /// A known model name or a GGUF path; without one, the model the index was built with.
    pub fn model(mut self, name_or_path: Option<impl Into<String>>) -> Self {
        self.model = name_or_path.map(Into::into);
        self
    }

    /// A trained adapter directory (`seal train`) merged into the model.
    pub fn adapter(mut self, dir: Option<impl Into<PathBuf>>) -> Self {
        self.adapter = dir.map(Into::into);
        self
    }

    /// The model's arithmetic.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The model cache (default: `$SEAL_CACHE_DIR`, else `~/.cache/seal`).
    pub fn cache_dir(mut self, dir: Option<impl Into<PathBuf>>) -> Self {
        self.cache_dir = dir.map(Into::into);
        self
    }

    /// Show a download bar when a known model must be pulled into the cache.
    pub fn download_progress(mut self, show: bool) -> Self {
        self.download_progress = show;
        self
    }

    /// Called while the bundled sample is indexed (first use only).
    pub fn on_progress(mut self, progress: OpenProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The prompt style a trained model must be searched with: the adapter's, or the one a
    /// merged GGUF records (`seal model merge`); `None` for a base model.
    ///
    /// # Errors
    /// An unreadable adapter manifest.
    pub fn trained_prompt_style(&self) -> Result<Option<PromptStyle>> {
        if let Some(dir) = &self.adapter {
            let manifest = crate::model::adapter::read_adapter_manifest(dir)?;
            return manifest.prompt_style.parse().map(Some).map_err(|e: String| {
                Error::new(ErrorKind::InvalidInput, format!("adapter {}: {e}", dir.display()))
            });
        }
        Ok(self
            .model
            .as_deref()
            .map(Path::new)
            .filter(|p| p.is_file())
            .and_then(crate::model::adapter::prompt_style_of)
            .and_then(|name| name.parse().ok()))
    }

    /// Opens the searcher.
    ///
    /// # Errors
    /// A missing or corrupt index, an unknown model, a model or adapter that does not fit the
    /// index, a failed download or sample build.
    pub fn open(self) -> Result<Searcher> {
        let cache = self.cache_dir.clone().unwrap_or_else(hub::default_cache_dir);
        let dir = match &self.index {
            Some(dir) => dir.clone(),
            None => self.sample_index(&cache)?,
        };
        let manifest = read_manifest(&dir)?;
        let model_name = self.model.clone().unwrap_or(manifest.model.name.clone());
        let gguf = hub::resolve_model(&model_name, &cache, self.download_progress)?;
        Searcher::open_with(&dir, &gguf, self.adapter.as_deref(), self.precision).map_err(|e| {
            Error::new(e.kind(), format!("opening the index in {}", dir.display())).with_source(e)
        })
    }

    /// The index of the bundled sample for the model, built on first use under the cache.
    fn sample_index(&self, cache: &Path) -> Result<PathBuf> {
        let model = self.model.as_deref().unwrap_or(hub::DEFAULT_MODEL);
        let gguf = hub::resolve_model(model, cache, self.download_progress)?;
        let fingerprint = hub::fingerprint(&gguf)?;
        let dir = cache
            .join("indexes")
            .join(format!("sample-{}", &fingerprint[..16.min(fingerprint.len())]));
        if read_manifest(&dir).is_ok() {
            return Ok(dir);
        }
        let reader =
            CorpusReader::from_str(SAMPLE_CORPUS, CorpusFormat::BeirJsonl, ReadOptions::default());
        let passages = reader.collect::<Result<Vec<_>>>()?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let report = |stage: &str, done: u64, total: u64| {
            if let Some(progress) = &self.progress {
                progress(stage, done, total);
            }
        };
        report("indexing the bundled sample", 0, passages.len() as u64);
        build_index(
            passages,
            &tokenizer,
            ModelRef { name: model.to_owned(), fingerprint },
            &dir,
            &report,
        )?;
        Ok(dir)
    }
}
