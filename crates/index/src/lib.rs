//! `seal-index`: an FM-index over documents of `u32` token ids, laid out as SEAL does
//! (each document reversed on its own, a separator per document) so that backward search
//! extends an n-gram one token at a time in forward order.
//!
//! Not for: tokenization, models or scoring; this crate knows only token ids.

mod bits;
mod builder;
mod error;
mod format;
mod index;
mod wavelet;

pub use builder::{BuildProgress, BuildStage, FmIndexBuilder};
pub use error::{Error, Result};
pub use index::{FmIndex, SaRange};

/// A token id of the corpus alphabet, as given to the builder (no shift applied).
pub type TokenId = u32;

/// The position of a document in corpus order (0-based).
pub type DocId = u32;
