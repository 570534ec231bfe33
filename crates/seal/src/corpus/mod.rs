//! Reading passages: BEIR JSONL, DPR TSV and KILT-style TSV, streamed line by line, with SEAL's
//! cleaning (SEAL.md §1) applied to every title and text.
//!
//! Not for: tokenizing, indexing or storing passages (the SEAL index and the BM25 baseline both
//! consume [`Passage`]s from here, so that they see exactly the same documents).
//!
//! # Formats
//!
//! | [`CorpusFormat`] | file | fields |
//! |---|---|---|
//! | `BeirJsonl` | `*.jsonl`, one JSON object a line | `_id` (string or number), `title` (optional), `text` |
//! | `DprTsv` | `*.tsv` whose first line is the header `id<TAB>text<TAB>title` | id, text, title |
//! | `KiltTsv` | `*.tsv` with the header `id<TAB>title<TAB>text`, or with no header | id, title, text |
//!
//! [`CorpusFormat::detect`] picks the format from the extension and, for TSV, from the first
//! line. TSV fields may be quoted as DPR's `psgs_w100.tsv` is (`"..."` with `""` for a quote);
//! a quoted field may not contain a tab or a newline. Compressed files are not read: decompress
//! first.
//!
//! # Bad lines and empty passages
//!
//! A line that cannot be read (invalid UTF-8, invalid JSON, a missing `_id`/`text`, a wrong number
//! of TSV fields) is an error that names the file and the 1-based line, unless
//! [`ReadOptions::skip_bad_lines`] is set: then it is skipped, counted in [`ReadStats`] and
//! listed with its reason ([`CorpusReader::skipped_lines`], the first
//! [`MAX_LISTED_SKIPPED_LINES`]).
//! Blank lines are ignored. A passage whose cleaned title **and** cleaned text are both empty is
//! skipped and counted ([`ReadStats::empty_passages`]); a passage with only a title or only a
//! text is kept. Duplicate ids are not detected here.
//!
//! # Cleaning
//!
//! [`clean_text`] is what SEAL calls `preprocess`: fix mojibake, collapse every run of Unicode
//! whitespace to one space, strip. See [`fix_mojibake`] for exactly which mojibake is fixed.

use crate::{Error, ErrorKind, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

mod clean;
pub use clean::{clean_text, fix_mojibake};

/// One passage of a corpus, as read (title and text already cleaned by [`read_corpus`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Passage {
    /// The corpus's own id for the passage (BEIR `_id`, DPR/KILT `id`).
    pub id: String,
    /// The title; empty when the corpus has none.
    pub title: String,
    /// The passage text.
    pub text: String,
}

impl Passage {
    /// A passage from its three fields, taken as they are (no cleaning).
    pub fn new(id: impl Into<String>, title: impl Into<String>, text: impl Into<String>) -> Self {
        Passage { id: id.into(), title: title.into(), text: text.into() }
    }

    /// True when the cleaned title and the cleaned text are both empty: such passages are not
    /// indexed.
    pub fn is_empty(&self) -> bool {
        clean_text(&self.title).is_empty() && clean_text(&self.text).is_empty()
    }
}

/// The string SEAL indexes for a passage: `title + " @@ " + text`, cleaned (SEAL.md §1).
///
/// With an empty title the string starts with `@@` (the delimiter is always there, so that a
/// title n-gram can never run into the text).
pub fn document_string(passage: &Passage) -> String {
    clean_text(&format!("{} @@ {}", passage.title, passage.text))
}

/// A corpus file format; see the module docs for the fields of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusFormat {
    /// BEIR JSONL: `{"_id", "title", "text"}` a line.
    BeirJsonl,
    /// DPR TSV: header `id<TAB>text<TAB>title`.
    DprTsv,
    /// KILT-style TSV: `id<TAB>title<TAB>text`, with or without that header.
    KiltTsv,
}

impl CorpusFormat {
    /// Picks the format of `path` from its extension (`.jsonl`/`.json` → BEIR; `.tsv` → DPR or
    /// KILT by the header line, KILT when there is no header).
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, or the extension is neither JSONL nor TSV (then say
    /// which format it is with a flag).
    pub fn detect(path: &Path) -> Result<Self> {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("jsonl") | Some("json") => Ok(CorpusFormat::BeirJsonl),
            Some("tsv") => {
                let file = open(path)?;
                let mut first = Vec::new();
                BufReader::new(file).read_until(b'\n', &mut first).map_err(|e| {
                    Error::new(ErrorKind::Io, format!("cannot read {}", path.display()))
                        .with_source(e)
                })?;
                let first = String::from_utf8_lossy(&first);
                Ok(match tsv_header(&first) {
                    Some(format) => format,
                    None => CorpusFormat::KiltTsv,
                })
            }
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "cannot tell the format of corpus {} from its extension: name it .jsonl \
                     (BEIR) or .tsv (DPR/KILT), or choose the format explicitly",
                    path.display()
                ),
            )),
        }
    }

    /// Parses a format name as given on the command line: `beir`/`jsonl`, `dpr`, `kilt`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "beir" | "jsonl" | "beir-jsonl" => Some(CorpusFormat::BeirJsonl),
            "dpr" | "dpr-tsv" => Some(CorpusFormat::DprTsv),
            "kilt" | "kilt-tsv" => Some(CorpusFormat::KiltTsv),
            _ => None,
        }
    }
}

/// Which TSV format a first line announces, if it is a header.
fn tsv_header(line: &str) -> Option<CorpusFormat> {
    let fields: Vec<String> = line
        .trim_end_matches(['\n', '\r'])
        .split('\t')
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    match fields.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["id", "text", "title"] => Some(CorpusFormat::DprTsv),
        ["id", "title", "text"] => Some(CorpusFormat::KiltTsv),
        _ => None,
    }
}

/// How to read a corpus.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Skip (and count) lines that cannot be read instead of failing on the first one.
    pub skip_bad_lines: bool,
}

/// What a reader has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Passages yielded.
    pub passages: u64,
    /// Lines skipped because they could not be read (only with `skip_bad_lines`).
    pub bad_lines: u64,
    /// Passages skipped because title and text were both empty after cleaning.
    pub empty_passages: u64,
}

/// How many skipped lines a reader lists with their reasons; later ones are only counted (a
/// corpus that bad is the wrong file, and the list must not grow without bound).
pub const MAX_LISTED_SKIPPED_LINES: usize = 100_000;
/// Longest reason kept for a skipped line, in bytes (a JSON error can quote a long line).
const MAX_SKIP_REASON_BYTES: usize = 200;

/// A corpus line that could not be read and was skipped (`skip_bad_lines`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// Its 1-based line number in the corpus file.
    pub line: u64,
    /// Why it could not be read (at most 200 bytes).
    pub reason: String,
}

/// A streaming reader of passages: an iterator of `Result<Passage>`, cleaned, empty ones
/// skipped. After an error (without `skip_bad_lines`) the iterator ends.
pub struct CorpusReader {
    lines: Box<dyn BufRead + Send>,
    source: PathBuf,
    format: CorpusFormat,
    options: ReadOptions,
    line_number: u64,
    buffer: Vec<u8>,
    stats: ReadStats,
    skipped: Vec<SkippedLine>,
    finished: bool,
}

/// Opens a corpus file for streaming; `format` `None` means [`CorpusFormat::detect`].
///
/// # Errors
///
/// When the file cannot be opened or its format cannot be detected. Errors in lines come from
/// the iterator.
pub fn read_corpus(
    path: &Path,
    format: Option<CorpusFormat>,
    options: ReadOptions,
) -> Result<CorpusReader> {
    let format = match format {
        Some(format) => format,
        None => CorpusFormat::detect(path)?,
    };
    let file = open(path)?;
    Ok(CorpusReader::from_reader(BufReader::with_capacity(1 << 20, file), path, format, options))
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot open corpus {}", path.display())).with_source(e)
    })
}

impl CorpusReader {
    /// A reader over any byte stream; `source` names it in error messages.
    pub fn from_reader(
        reader: impl BufRead + Send + 'static,
        source: impl Into<PathBuf>,
        format: CorpusFormat,
        options: ReadOptions,
    ) -> Self {
        CorpusReader {
            lines: Box::new(reader),
            source: source.into(),
            format,
            options,
            line_number: 0,
            buffer: Vec::new(),
            stats: ReadStats::default(),
            skipped: Vec::new(),
            finished: false,
        }
    }

    /// A reader over an in-memory string (tests, small inputs).
    pub fn from_str(text: &str, format: CorpusFormat, options: ReadOptions) -> Self {
        let bytes = text.as_bytes().to_vec();
        CorpusReader::from_reader(std::io::Cursor::new(bytes), "<memory>", format, options)
    }

    /// Counts of passages yielded and lines/passages skipped so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The lines skipped so far (`skip_bad_lines`), in file order with their reasons: the first
    /// [`MAX_LISTED_SKIPPED_LINES`] of them; [`ReadStats::bad_lines`] counts them all.
    pub fn skipped_lines(&self) -> &[SkippedLine] {
        &self.skipped
    }

    /// The format being read.
    pub fn format(&self) -> CorpusFormat {
        self.format
    }

    fn line_error(&self, what: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Corpus,
            format!(
                "{}:{}: {what} (fix the line, or skip such lines with --skip-bad-lines)",
                self.source.display(),
                self.line_number
            ),
        )
    }

    /// Parses one non-blank line into a raw (uncleaned) passage, or `Ok(None)` for a header.
    fn parse_line(&self, line: &str) -> std::result::Result<Option<Passage>, String> {
        match self.format {
            CorpusFormat::BeirJsonl => parse_beir_line(line).map(Some),
            CorpusFormat::DprTsv | CorpusFormat::KiltTsv => {
                if self.line_number == 1 && tsv_header(line).is_some() {
                    if tsv_header(line) != Some(self.format) {
                        return Err(format!(
                            "the header `{}` does not match the chosen format {:?}",
                            line.trim_end(),
                            self.format
                        ));
                    }
                    return Ok(None);
                }
                let fields: Vec<&str> = line.split('\t').collect();
                if fields.len() != 3 {
                    return Err(format!(
                        "expected 3 tab-separated fields ({}), found {}",
                        if self.format == CorpusFormat::DprTsv {
                            "id, text, title"
                        } else {
                            "id, title, text"
                        },
                        fields.len()
                    ));
                }
                let id = unquote(fields[0])?;
                if id.trim().is_empty() {
                    return Err("empty id".to_string());
                }
                let (text, title) = if self.format == CorpusFormat::DprTsv {
                    (unquote(fields[1])?, unquote(fields[2])?)
                } else {
                    (unquote(fields[2])?, unquote(fields[1])?)
                };
                Ok(Some(Passage { id: id.trim().to_string(), title, text }))
            }
        }
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Passage>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            self.buffer.clear();
            match self.lines.read_until(b'\n', &mut self.buffer) {
                Ok(0) => {
                    self.finished = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.finished = true;
                    let error = Error::new(
                        ErrorKind::Io,
                        format!(
                            "cannot read {} after line {}",
                            self.source.display(),
                            self.line_number
                        ),
                    )
                    .with_source(e);
                    return Some(Err(error));
                }
            }
            self.line_number += 1;
            let parsed = match std::str::from_utf8(&self.buffer) {
                Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
                Ok(line) => {
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.trim().is_empty() {
                        continue;
                    }
                    self.parse_line(line)
                }
            };
            match parsed {
                Ok(None) => continue,
                Ok(Some(raw)) => {
                    let passage = Passage {
                        id: raw.id,
                        title: clean_text(&raw.title),
                        text: clean_text(&raw.text),
                    };
                    if passage.title.is_empty() && passage.text.is_empty() {
                        self.stats.empty_passages += 1;
                        continue;
                    }
                    self.stats.passages += 1;
                    return Some(Ok(passage));
                }
                Err(message) => {
                    if self.options.skip_bad_lines {
                        self.stats.bad_lines += 1;
                        if self.skipped.len() < MAX_LISTED_SKIPPED_LINES {
                            let reason = truncate_at_char(&message, MAX_SKIP_REASON_BYTES);
                            self.skipped.push(SkippedLine {
                                line: self.line_number,
                                reason: reason.into(),
                            });
                        }
                        continue;
                    }
                    self.finished = true;
                    return Some(Err(self.line_error(message)));
                }
            }
        }
        None
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn parse_beir_line(line: &str) -> std::result::Result<Passage, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let object = value.as_object().ok_or("expected a JSON object")?;
    let id = match object.get("_id") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err("`_id` must be a non-empty string or a number".to_string()),
        None => return Err("missing `_id`".to_string()),
    };
    let field = |name: &str, required: bool| match object.get(name) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Null) | None if !required => Ok(String::new()),
        None => Err(format!("missing `{name}`")),
        Some(_) => Err(format!("`{name}` must be a string")),
    };
    Ok(Passage { id, title: field("title", false)?, text: field("text", true)? })
}

/// Removes DPR-style quoting: `"a ""b"""` → `a "b"`. Unquoted fields are returned as they are.
fn unquote(field: &str) -> std::result::Result<String, String> {
    if field.len() >= 2 && field.starts_with('"') && field.ends_with('"') {
        let inner = &field[1..field.len() - 1];
        // Inside quotes every quote must be doubled.
        if inner.replace("\"\"", "").contains('"') {
            return Err(format!("badly quoted field `{field}`"));
        }
        Ok(inner.replace("\"\"", "\""))
    } else {
        Ok(field.to_string())
    }
}

/// Reads a whole corpus into memory (small corpora: tests, evaluation datasets).
///
/// # Errors
///
/// As [`read_corpus`] and its iterator.
pub fn read_all(
    path: &Path,
    format: Option<CorpusFormat>,
    options: ReadOptions,
) -> Result<(Vec<Passage>, ReadStats)> {
    let mut reader = read_corpus(path, format, options)?;
    let passages = reader.by_ref().collect::<Result<Vec<_>>>()?;
    Ok((passages, reader.stats()))
}

#[cfg(test)]
mod tests;
