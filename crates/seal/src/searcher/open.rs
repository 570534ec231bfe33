//! Opening a [`Searcher`]: the index directory's files checked against its manifest and the
//! manifest against the model it was built with (or a model merged from it), the model loaded
//! (an adapter merged in), and the per-token tables the decoder needs computed once.

use super::Searcher;
use crate::indexer::IndexFiles;
use crate::model::{hub, tokenizer::Tokenizer, Precision};
use crate::{Error, ErrorKind, Result, TokenId};
use std::path::Path;

impl Searcher {
    /// Opens the index in `dir` with the GGUF model at `model_path`.
    ///
    /// # Errors
    /// When the index is missing or corrupt, or the model is not the one the index was built
    /// with (its fingerprint differs).
    pub fn open(dir: &Path, model_path: &Path) -> Result<Searcher> {
        Self::open_with_adapter(dir, model_path, None)
    }

    /// [`Self::open`], with a trained adapter ([`crate::model::adapter`]) merged into the model.
    /// A model merged by `seal model merge` opens the indexes of its base model (they share the
    /// tokenizer).
    ///
    /// # Errors
    /// As [`Self::open`], and an adapter trained on another model.
    pub fn open_with_adapter(
        dir: &Path,
        model_path: &Path,
        adapter: Option<&Path>,
    ) -> Result<Searcher> {
        Self::open_with(dir, model_path, adapter, Precision::default())
    }

    /// [`Self::open_with_adapter`] with a choice of the model's arithmetic ([`Precision`]).
    ///
    /// # Errors
    /// As [`Self::open_with_adapter`].
    pub fn open_with(
        dir: &Path,
        model_path: &Path,
        adapter: Option<&Path>,
        precision: Precision,
    ) -> Result<Searcher> {
        // The manifest checked against the files: counts, sizes, separator, vocabulary.
        let IndexFiles { manifest, fm_index: index, docs } = IndexFiles::open(dir)?;
        let fingerprint = hub::fingerprint(model_path)?;
        if fingerprint != manifest.model.fingerprint
            && crate::model::adapter::base_fingerprint_of(model_path).as_ref()
                != Some(&manifest.model.fingerprint)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the index in {} was built with model {:?} (sha256 {}), but {} has sha256 {}; \
                     search with that model (--model {}), or rebuild the index with this one",
                    dir.display(),
                    manifest.model.name,
                    short(&manifest.model.fingerprint),
                    model_path.display(),
                    short(&fingerprint),
                    manifest.model.name
                ),
            ));
        }
        let tokenizer = Tokenizer::from_gguf(model_path)?;
        manifest.check_tokenizer(dir, &tokenizer)?;
        let model = match adapter {
            None => crate::model::load_with_precision(model_path, precision)?,
            Some(adapter) => {
                crate::model::adapter::load_model_with_adapter_and_precision(
                    model_path,
                    adapter,
                    Default::default(),
                    precision,
                )?
                .0
            }
        };
        let first_token_ok = (0..tokenizer.vocab_size() as TokenId)
            .map(|id| {
                tokenizer.is_word_start(id)
                    && !tokenizer.is_special(id)
                    && tokenizer
                        .token_text(id)
                        .and_then(|t| t.trim_start().chars().next())
                        .is_some_and(char::is_alphanumeric)
            })
            .collect();
        let continues_word = (0..tokenizer.vocab_size() as TokenId)
            .map(|id| {
                !tokenizer.is_word_start(id)
                    && !tokenizer.is_special(id)
                    && tokenizer
                        .token_text(id)
                        .and_then(|t| t.chars().next())
                        .is_some_and(char::is_alphanumeric)
            })
            .collect();
        let title_end_token = match tokenizer.encode("\n")?.as_slice() {
            [t] => Some(*t),
            _ => None,
        };
        Ok(Searcher {
            dir: dir.to_owned(),
            manifest,
            index,
            docs,
            tokenizer,
            model,
            first_token_ok,
            continues_word,
            title_end_token,
            prefixes: Default::default(),
        })
    }
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(12)]
}
