//! The accepted range of every search setting, checked in one place: the library
//! ([`super::Searcher::search`]), the CLI (`seal search` before it loads anything) and the HTTP
//! API ([`crate::serve::api`]) all call [`SearchSettings::check`], so none of them can accept a
//! value another rejects. Each front end words the failure in its own terms: a JSON field, or a
//! `--flag`.
//!
//! Not for: server-only limits (a server's `max_k`, query bytes, body size), which stay in
//! [`crate::serve`].

use super::SearchSettings;
use crate::{Error, ErrorKind, Result};
use std::fmt;

/// Largest beam size: beyond it a query costs minutes, not seconds.
pub const MAX_BEAM: usize = 64;
/// Largest number of generated tokens per body n-gram or title.
pub const MAX_NGRAM_TOKENS: usize = 32;

/// A search setting outside its accepted range.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidSetting {
    /// The setting as the HTTP API names it (`beam`, `max_tokens`, `length_norm`, ...); the CLI
    /// flag is the same with hyphens ([`Self::flag`]).
    pub name: &'static str,
    /// The value given, as text.
    pub value: String,
    /// What it must be, e.g. `between 1 and 64`.
    pub expected: String,
}

impl InvalidSetting {
    /// The command-line flag of the setting: `--beam`, `--max-tokens`, ...
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }

    /// The message for a command line: `--beam 0: it must be between 1 and 64 (default 15)`.
    pub fn for_command_line(&self) -> String {
        format!("{} {}: it must be {}", self.flag(), self.value, self.expected)
    }

    /// The message for a JSON request: `"beam" is 0; it must be between 1 and 64 (default 15)`.
    pub fn for_json(&self) -> String {
        format!("\"{}\" is {}; it must be {}", self.name, self.value, self.expected)
    }
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}; it must be {}", self.name, self.value, self.expected)
    }
}

impl std::error::Error for InvalidSetting {}

impl SearchSettings {
    /// Checks every setting a caller can choose (`k`, beam size, n-gram lengths, length
    /// normalization) against its accepted range; the remaining scoring constants are checked
    /// by [`crate::score::ScoringSettings::validate`], which [`Self::validate`] adds.
    ///
    /// # Errors
    /// The first setting out of range, with its name, value and range.
    pub fn check(&self) -> std::result::Result<(), InvalidSetting> {
        let defaults = SearchSettings::default();
        let in_range = |name: &'static str, value: usize, max: usize, default: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                let expected = if max == usize::MAX {
                    format!("at least 1 (default {default})")
                } else {
                    format!("between 1 and {max} (default {default})")
                };
                Err(InvalidSetting { name, value: value.to_string(), expected })
            }
        };
        in_range("k", self.k, usize::MAX, defaults.k)?;
        in_range("beam", self.beam.beam, MAX_BEAM, defaults.beam.beam)?;
        in_range(
            "max_tokens",
            self.beam.max_body_tokens,
            MAX_NGRAM_TOKENS,
            defaults.beam.max_body_tokens,
        )?;
        in_range(
            "max_title_tokens",
            self.beam.max_title_tokens,
            MAX_NGRAM_TOKENS,
            defaults.beam.max_title_tokens,
        )?;
        let b = self.scoring.length_norm;
        if !(0.0..=1.0).contains(&b) {
            return Err(InvalidSetting {
                name: "length_norm",
                value: b.to_string(),
                expected: format!(
                    "a number from 0 (SEAL's scoring) to 1 (default {})",
                    defaults.scoring.length_norm
                ),
            });
        }
        Ok(())
    }

    /// [`Self::check`] and the scoring constants, as a library error.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the setting and its range.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        self.scoring.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(change: impl FnOnce(&mut SearchSettings)) -> std::result::Result<(), InvalidSetting> {
        let mut s = SearchSettings::default();
        change(&mut s);
        s.check()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(SearchSettings::default().check(), Ok(()));
        assert!(SearchSettings::default().validate().is_ok());
    }

    #[test]
    fn every_range_has_both_ends() {
        assert_eq!(with(|s| s.beam.beam = 1), Ok(()));
        assert_eq!(with(|s| s.beam.beam = MAX_BEAM), Ok(()));
        assert_eq!(with(|s| s.beam.max_body_tokens = MAX_NGRAM_TOKENS), Ok(()));
        assert_eq!(with(|s| s.scoring.length_norm = 1.0), Ok(()));
        let name = |r: std::result::Result<(), InvalidSetting>| r.unwrap_err().name;
        assert_eq!(name(with(|s| s.k = 0)), "k");
        assert_eq!(name(with(|s| s.beam.beam = 0)), "beam");
        assert_eq!(name(with(|s| s.beam.beam = 100_000)), "beam");
        assert_eq!(name(with(|s| s.beam.max_body_tokens = 0)), "max_tokens");
        assert_eq!(name(with(|s| s.beam.max_title_tokens = 33)), "max_title_tokens");
        assert_eq!(name(with(|s| s.scoring.length_norm = -0.1)), "length_norm");
        assert_eq!(name(with(|s| s.scoring.length_norm = f64::NAN)), "length_norm");
    }

    #[test]
    fn each_front_end_words_it_its_own_way() {
        let e = with(|s| s.beam.beam = 0).unwrap_err();
        assert_eq!(e.for_command_line(), "--beam 0: it must be between 1 and 64 (default 15)");
        assert_eq!(e.for_json(), "\"beam\" is 0; it must be between 1 and 64 (default 15)");
        let e = with(|s| s.beam.max_body_tokens = 99).unwrap_err();
        assert_eq!(e.flag(), "--max-tokens");
        let library = SearchSettings { k: 0, ..Default::default() }.validate().unwrap_err();
        assert_eq!(library.kind(), ErrorKind::InvalidInput);
        assert!(library.to_string().starts_with("k is 0; it must be at least 1"), "{library}");
    }
}
