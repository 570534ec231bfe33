//! The model layer's error type: an opaque struct with a coarse [`ErrorKind`], a message that
//! says what to do, and an optional source. `seal::Error` converts from it, keeping all three.

use std::fmt;

/// What went wrong, coarsely; the message has the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing a file failed.
    Io,
    /// The model could not be obtained, loaded or run.
    Model,
    /// The tokenizer could not be built or failed on an input.
    Tokenizer,
    /// An argument or request is invalid.
    InvalidInput,
    /// Anything else.
    Other,
}

/// The error of every fallible function in this crate.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result<T, seal_model::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message that should say what to do about it.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Kind, message and source, for wrapping this error in another crate's error type.
    pub fn into_parts(
        self,
    ) -> (ErrorKind, String, Option<Box<dyn std::error::Error + Send + Sync + 'static>>) {
        (self.kind, self.message, self.source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, {self})", self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, "I/O error").with_source(e)
    }
}

/// A [`ErrorKind::Model`] error: the model file is not what a family expects.
pub(crate) fn model_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Model, msg)
}

/// Wraps a candle error as a [`ErrorKind::Model`] error with `context` (for `map_err`).
pub(crate) fn candle_err(context: String) -> impl FnOnce(candle_core::Error) -> Error {
    move |e| Error::new(ErrorKind::Model, context).with_source(e)
}
