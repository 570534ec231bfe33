//! One open GGUF file: its header (metadata and tensor directory) parsed once, its tensors read
//! on demand. [`crate::load`] reads the architecture from it and hands the same open file to the
//! family's loader, so loading a model parses the header once.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;

use crate::error::candle_err;
use crate::{Error, ErrorKind, Result};

/// An open GGUF file with its parsed header.
pub(crate) struct GgufFile {
    /// Where it was opened from (for error messages).
    pub(crate) path: PathBuf,
    /// Metadata and tensor directory.
    pub(crate) content: gguf_file::Content,
    /// Positioned anywhere: [`gguf_file::Content::tensor`] seeks.
    pub(crate) reader: BufReader<File>,
}

impl GgufFile {
    /// Opens `path` and parses its header.
    ///
    /// # Errors
    /// The file cannot be opened or is not GGUF.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| {
            Error::new(ErrorKind::Model, format!("cannot open model file {}", path.display()))
                .with_source(e)
        })?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(candle_err(format!("{} is not a readable GGUF file", path.display())))?;
        Ok(GgufFile { path: path.to_path_buf(), content, reader })
    }

    /// The `general.architecture` metadata value.
    ///
    /// # Errors
    /// The metadata lacks it.
    pub(crate) fn architecture(&self) -> Result<String> {
        self.content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Model,
                    format!("{}: GGUF metadata lacks `general.architecture`", self.path.display()),
                )
            })
    }
}
