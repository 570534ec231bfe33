//! The crate's error type: what went wrong and what to do about it.
//!
//! Not for: panics. Every error that bad input (a file, a document) can cause is one of these;
//! programmer errors inside the crate are bugs and are covered by tests.

use std::path::PathBuf;

/// What the command-line tool tells users whose index file cannot be used.
pub(crate) const REBUILD_HINT: &str = "rebuild the index with `seal index …`";

/// Everything that can go wrong while building, writing or opening an FM-index.
///
/// The enum is `#[non_exhaustive]`: match the variants you care about and keep a catch-all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("opening", "writing", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an FM-index of this crate at all (wrong magic bytes, too short).
    #[error("not a seal FM-index file ({detail}); {REBUILD_HINT}")]
    NotAnIndex {
        /// What was found instead.
        detail: String,
    },
    /// The file is an FM-index of a format version this build cannot read.
    #[error("FM-index format version {got} is not supported (this build reads version {expected}); {REBUILD_HINT}")]
    Version {
        /// The version this build reads.
        expected: u64,
        /// The version in the file.
        got: u64,
    },
    /// The payload does not match its checksum: the file was truncated or damaged.
    #[error("FM-index checksum mismatch (expected {expected:#018x}, got {got:#018x}): the file is damaged or truncated; {REBUILD_HINT}")]
    Checksum {
        /// The checksum stored in the header.
        expected: u64,
        /// The checksum of the bytes found.
        got: u64,
    },
    /// The header or a section is inconsistent (a length, an offset or a count is impossible).
    #[error("corrupt FM-index: {detail}; {REBUILD_HINT}")]
    Corrupt {
        /// Which check failed.
        detail: String,
    },
    /// The builder was given input it cannot index.
    #[error("cannot build the FM-index: {detail}")]
    InvalidInput {
        /// What is wrong with the input and how to fix it.
        detail: String,
    },
    /// Suffix-array construction failed inside `libsais`.
    #[error(
        "suffix array construction failed ({detail}); check free memory, or index fewer documents"
    )]
    Construction {
        /// The library's error.
        detail: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn corrupt(detail: impl Into<String>) -> Error {
        Error::Corrupt { detail: detail.into() }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Error {
        Error::InvalidInput { detail: detail.into() }
    }
}
