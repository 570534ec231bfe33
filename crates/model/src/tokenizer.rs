//! The language model's tokenizer, built from the GGUF file's own metadata (tokens, merges or
//! scores, token types, pre-tokenizer name, special token ids) into the `tokenizers` crate, so
//! that the corpus, the queries and the model all see the same token ids.
//!
//! Two families are supported:
//!
//! * **Byte-level BPE** (`tokenizer.ggml.model = "gpt2"`, e.g. SmolLM2): vocabulary + merges,
//!   the pre-tokenizer regex chosen by `tokenizer.ggml.pre` (`smollm`: every digit on its own,
//!   then the GPT-2 split; `gpt2`/`default`: the GPT-2 split; `llama-bpe`/`llama3` and `qwen2`
//!   follow llama.cpp's splits but are not covered by a golden test), byte-level decoding.
//! * **SentencePiece-style BPE** (`tokenizer.ggml.model = "llama"`, e.g. Gemma 3): spaces become
//!   `▁`, no pre-split, pieces merge in the order of their scores (the merge list is derived
//!   from the scores, as SentencePiece's BPE does), characters outside the vocabulary fall back
//!   to `<0xXX>` byte tokens. A literal `▁` (U+2581) in the text is read as a space, as in
//!   llama.cpp, so it decodes as `" "`.
//!
//! In both, control tokens (chat markers such as `<|im_start|>` or `<start_of_turn>`) and
//! user-defined tokens are matched in the raw text first and always encode as one id.
//! Encoding never adds BOS/EOS. The reference that this must match exactly is llama.cpp's
//! tokenizer on the same file (golden files in `testdata/tokenizer/`).
//!
//! Not for: chat templates, prompt formats, or anything about the model's weights.

use crate::{Error, ErrorKind, Result, TokenId};
use candle_core::quantized::gguf_file::{Content, Value};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
};

/// GGUF token types (llama.cpp's `llama_token_type`).
mod token_type {
    /// The unknown-token placeholder.
    pub const UNKNOWN: u32 = 2;
    /// A control token (BOS, EOS, turn markers).
    pub const CONTROL: u32 = 3;
    /// A token the model's authors added to the vocabulary.
    pub const USER_DEFINED: u32 = 4;
    /// A byte-fallback token (`<0xAB>`).
    pub const BYTE: u32 = 6;
}

/// The SentencePiece word-boundary marker that stands for a space.
const SPM_SPACE: char = '\u{2581}';

/// Llama 3's split (digits in groups of up to three).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split (every digit on its own).
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A half-open byte range `(start, end)` of an encoded text.
pub type ByteSpan = (usize, usize);

/// Which tokenizer family a GGUF file uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerKind {
    /// GPT-2 style byte-level BPE; `pre` is the GGUF pre-tokenizer name.
    ByteLevelBpe {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
    },
    /// SentencePiece-style BPE with byte fallback.
    SentencePieceBpe,
}

/// A tokenizer read from a GGUF file. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    kind: TokenizerKind,
    /// The surface bytes of every token (what it decodes to on its own).
    surfaces: Vec<Vec<u8>>,
    special: Vec<bool>,
    eos_id: TokenId,
    bos_id: Option<TokenId>,
    /// Whether the model expects its BOS before a prompt (`tokenizer.ggml.add_bos_token`).
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.vocab_size())
            .field("eos_id", &self.eos_id)
            .field("bos_id", &self.bos_id)
            .finish()
    }
}

fn tokenizer_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Tokenizer, message)
}

fn wrap_tokenizers_error(what: &str, e: tokenizers::Error) -> Error {
    Error::new(ErrorKind::Tokenizer, format!("{what}: {e}"))
}

/// Typed access to the GGUF metadata that the tokenizer needs.
struct Metadata<'a> {
    path: &'a Path,
    content: &'a Content,
}

impl Metadata<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn missing(&self, key: &str) -> Error {
        tokenizer_error(format!(
            "{} has no usable `{key}` in its metadata; is it a GGUF file of a language model \
             with an embedded tokenizer?",
            self.path.display()
        ))
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.missing(key)),
        }
    }

    fn id(&self, key: &str) -> Result<Option<TokenId>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => integer(v).map(Some).ok_or_else(|| self.missing(key)),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(values)) => Ok(Some(values)),
            Some(_) => Err(self.missing(key)),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(values) = self.array(key)? else { return Ok(None) };
        values
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(self.missing(key)),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn integer(value: &Value) -> Option<u32> {
    match value {
        Value::U8(v) => Some(u32::from(*v)),
        Value::I8(v) => u32::try_from(*v).ok(),
        Value::U16(v) => Some(u32::from(*v)),
        Value::I16(v) => u32::try_from(*v).ok(),
        Value::U32(v) => Some(*v),
        Value::I32(v) => u32::try_from(*v).ok(),
        Value::U64(v) => u32::try_from(*v).ok(),
        Value::I64(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f32> {
    match value {
        Value::F32(v) => Some(*v),
        Value::F64(v) => Some(*v as f32),
        other => integer(other).map(|v| v as f32),
    }
}

/// Reads the metadata (not the weights) of a GGUF file.
///
/// # Errors
///
/// [`ErrorKind::Io`] when the file cannot be opened; [`ErrorKind::Model`] when it is not GGUF.
pub fn read_gguf_metadata(path: &Path) -> Result<Content> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot open {}", path.display())).with_source(e)
    })?;
    let mut reader = std::io::BufReader::new(file);
    Content::read(&mut reader).map_err(|e| {
        Error::new(ErrorKind::Model, format!("{} is not a readable GGUF file: {e}", path.display()))
    })
}

impl Tokenizer {
    /// Builds the tokenizer embedded in a GGUF file's metadata.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`]/[`ErrorKind::Model`] when the file cannot be read as GGUF;
    /// [`ErrorKind::Tokenizer`] when the tokenizer type or pre-tokenizer is not supported or the
    /// metadata is inconsistent.
    pub fn from_gguf(path: &Path) -> Result<Tokenizer> {
        let content = read_gguf_metadata(path)?;
        Self::from_gguf_content(path, &content)
    }

    /// Like [`Tokenizer::from_gguf`], from metadata already read (`path` is for messages only).
    ///
    /// # Errors
    ///
    /// As [`Tokenizer::from_gguf`].
    pub fn from_gguf_content(path: &Path, content: &Content) -> Result<Tokenizer> {
        let meta = Metadata { path, content };
        let model = meta
            .string("tokenizer.ggml.model")?
            .ok_or_else(|| meta.missing("tokenizer.ggml.model"))?;
        let tokens = meta
            .strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| meta.missing("tokenizer.ggml.tokens"))?;
        let types: Vec<u32> = match meta.array("tokenizer.ggml.token_type")? {
            Some(values) => values
                .iter()
                .map(|v| integer(v).ok_or_else(|| meta.missing("tokenizer.ggml.token_type")))
                .collect::<Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(tokenizer_error(format!(
                "{}: {} token types for {} tokens",
                path.display(),
                types.len(),
                tokens.len()
            )));
        }
        let eos_id = meta
            .id("tokenizer.ggml.eos_token_id")?
            .ok_or_else(|| meta.missing("tokenizer.ggml.eos_token_id"))?;
        let bos_id = meta.id("tokenizer.ggml.bos_token_id")?;
        for (key, id) in [("eos", Some(eos_id)), ("bos", bos_id)] {
            if let Some(id) = id {
                if id as usize >= tokens.len() {
                    return Err(tokenizer_error(format!(
                        "{}: {key} token id {id} is outside the vocabulary of {} tokens",
                        path.display(),
                        tokens.len()
                    )));
                }
            }
        }

        let (inner, kind) = match model.as_str() {
            "gpt2" => {
                let pre =
                    meta.string("tokenizer.ggml.pre")?.unwrap_or_else(|| "default".to_string());
                let merges = meta
                    .strings("tokenizer.ggml.merges")?
                    .ok_or_else(|| meta.missing("tokenizer.ggml.merges"))?;
                (build_byte_level(&tokens, &merges, &pre)?, TokenizerKind::ByteLevelBpe { pre })
            }
            "llama" => {
                let scores: Vec<f32> = match meta.array("tokenizer.ggml.scores")? {
                    Some(values) => values
                        .iter()
                        .map(|v| float(v).ok_or_else(|| meta.missing("tokenizer.ggml.scores")))
                        .collect::<Result<_>>()?,
                    None => return Err(meta.missing("tokenizer.ggml.scores")),
                };
                if scores.len() != tokens.len() {
                    return Err(meta.missing("tokenizer.ggml.scores"));
                }
                let add_space_prefix = match meta.get("tokenizer.ggml.add_space_prefix") {
                    Some(Value::Bool(b)) => *b,
                    // llama.cpp's default for SentencePiece vocabularies.
                    _ => true,
                };
                if add_space_prefix {
                    return Err(tokenizer_error(format!(
                        "{}: SentencePiece tokenizers with add_space_prefix = true are not supported yet \
                         (only Gemma-style vocabularies without a space prefix are)",
                        path.display()
                    )));
                }
                (build_sentencepiece(&tokens, &scores, &types)?, TokenizerKind::SentencePieceBpe)
            }
            other => {
                return Err(tokenizer_error(format!(
                    "{}: tokenizer type `{other}` is not supported \
                     (supported: gpt2 byte-level BPE, llama/SentencePiece BPE)",
                    path.display()
                )))
            }
        };
        let mut tokenizer = Tokenizer {
            inner,
            kind,
            surfaces: Vec::new(),
            special: types
                .iter()
                .map(|&t| t == token_type::CONTROL || t == token_type::UNKNOWN)
                .collect(),
            eos_id,
            bos_id,
            add_bos: match meta.get("tokenizer.ggml.add_bos_token") {
                Some(Value::Bool(b)) => *b,
                // llama.cpp's default: SentencePiece vocabularies start with BOS, GPT-2 ones do not.
                _ => model == "llama",
            },
        };
        tokenizer.add_special_and_user_tokens(&tokens, &types)?;
        tokenizer.surfaces = tokens
            .iter()
            .zip(&types)
            .map(|(token, &ty)| surface_bytes(&tokenizer.kind, token, ty))
            .collect();
        Ok(tokenizer)
    }

    fn add_special_and_user_tokens(&mut self, tokens: &[String], types: &[u32]) -> Result<()> {
        let mut added = Vec::new();
        for (token, &ty) in tokens.iter().zip(types) {
            let special = ty == token_type::CONTROL || ty == token_type::UNKNOWN;
            if (special || ty == token_type::USER_DEFINED) && !token.is_empty() {
                // Matched in the raw text, before any normalization, like llama.cpp does.
                added.push(AddedToken::from(token.clone(), special).normalized(false));
            }
        }
        // Their texts are in the model's vocabulary, so they keep their GGUF ids.
        self.inner
            .add_tokens(added)
            .map_err(|e| wrap_tokenizers_error("cannot add special tokens", e))?;
        if self.inner.get_vocab_size(true) != tokens.len() {
            return Err(tokenizer_error(format!(
                "the vocabulary has {} entries after adding special tokens, expected {}; \
                 duplicate token texts?",
                self.inner.get_vocab_size(true),
                tokens.len()
            )));
        }
        Ok(())
    }

    /// Which family this tokenizer belongs to.
    pub fn kind(&self) -> &TokenizerKind {
        &self.kind
    }

    /// Token ids of `text`, without BOS/EOS. Chat markers and other control tokens written in
    /// the text encode as their single ids.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Tokenizer`] when the tokenizer fails (not expected for any UTF-8 input).
    pub fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| wrap_tokenizers_error("encoding failed", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of `text` and, for each, the byte span `(start, end)` of `text` it came from.
    /// Spans include a token's leading space; tokens that are parts of one multi-byte character
    /// (byte fallback, byte-level pieces) all get that character's span.
    ///
    /// # Errors
    ///
    /// As [`Tokenizer::encode`].
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<TokenId>, Vec<ByteSpan>)> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| wrap_tokenizers_error("encoding failed", e))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// The text of a sequence of token ids. Control tokens are written as their text
    /// (`<|im_end|>`); byte sequences that are not valid UTF-8 become U+FFFD.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when an id is outside the vocabulary.
    pub fn decode(&self, ids: &[TokenId]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// The exact bytes that `ids` stand for (what [`Tokenizer::decode`] shows, before the lossy
    /// UTF-8 conversion). Useful for streaming, where a character may span tokens.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when an id is outside the vocabulary.
    pub fn decode_bytes(&self, ids: &[TokenId]) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for &id in ids {
            let surface = self.surfaces.get(id as usize).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "token id {id} is outside the vocabulary of {} tokens",
                        self.vocab_size()
                    ),
                )
            })?;
            bytes.extend_from_slice(surface);
        }
        Ok(bytes)
    }

    /// The surface text of one token on its own (e.g. `" the"`), lossy for tokens that hold only
    /// part of a multi-byte character; `None` for an id outside the vocabulary.
    pub fn token_text(&self, id: TokenId) -> Option<String> {
        self.surfaces.get(id as usize).map(|s| String::from_utf8_lossy(s).into_owned())
    }

    /// The surface bytes of one token (see [`Tokenizer::decode_bytes`]).
    pub fn token_bytes(&self, id: TokenId) -> Option<&[u8]> {
        self.surfaces.get(id as usize).map(Vec::as_slice)
    }

    /// The token's string as stored in the vocabulary (e.g. `"Ġthe"` or `"▁the"`).
    pub fn token_piece(&self, id: TokenId) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// True when the token's surface text begins with a space (GPT-2 `Ġ`, SentencePiece `▁`),
    /// i.e. it starts a new word.
    pub fn is_word_start(&self, id: TokenId) -> bool {
        self.surfaces.get(id as usize).is_some_and(|s| s.first() == Some(&b' '))
    }

    /// True for control tokens (chat markers, BOS/EOS, padding, unused slots).
    pub fn is_special(&self, id: TokenId) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// End-of-sequence token (also SEAL's document separator).
    pub fn eos_id(&self) -> TokenId {
        self.eos_id
    }

    /// Beginning-of-sequence token, if the model has one.
    pub fn bos_id(&self) -> Option<TokenId> {
        self.bos_id
    }

    /// Whether prompts should start with [`Tokenizer::bos_id`], as the GGUF metadata says
    /// (`tokenizer.ggml.add_bos_token`; llama.cpp's default when absent). Gemma needs it.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos_id.is_some()
    }

    /// Number of token ids (the model's vocabulary size).
    pub fn vocab_size(&self) -> usize {
        self.surfaces.len()
    }

    /// The id of a token given as its vocabulary string (e.g. `"<|im_end|>"`).
    pub fn token_to_id(&self, piece: &str) -> Option<TokenId> {
        self.inner.token_to_id(piece)
    }
}

/// The bytes a token decodes to on its own.
fn surface_bytes(kind: &TokenizerKind, token: &str, ty: u32) -> Vec<u8> {
    if ty == token_type::CONTROL || ty == token_type::USER_DEFINED || ty == token_type::UNKNOWN {
        return token.as_bytes().to_vec();
    }
    match kind {
        TokenizerKind::ByteLevelBpe { .. } => {
            let table = byte_level_chars();
            token
                .chars()
                .flat_map(|c| match table.get(&c) {
                    Some(&b) => vec![b],
                    // Not a byte-level character: keep it as UTF-8 (llama.cpp does the same).
                    None => c.to_string().into_bytes(),
                })
                .collect()
        }
        TokenizerKind::SentencePieceBpe => {
            if ty == token_type::BYTE {
                if let Some(byte) = parse_byte_token(token) {
                    return vec![byte];
                }
            }
            token.replace(SPM_SPACE, " ").into_bytes()
        }
    }
}

/// `<0xAB>` -> 0xAB.
fn parse_byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-to-character table, inverted: printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100 onwards.
fn byte_level_chars() -> &'static HashMap<char, u8> {
    static TABLE: std::sync::OnceLock<HashMap<char, u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| {
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
        };
        let mut table = HashMap::with_capacity(256);
        let mut next = 0u32;
        for b in 0..=255u8 {
            let c = if printable(b) {
                char::from(b)
            } else {
                next += 1;
                char::from_u32(255 + next).expect("U+0100.. are chars")
            };
            table.insert(c, b);
        }
        table
    })
}

fn split_regex(pattern: &str) -> Result<PreTokenizerWrapper> {
    Split::new(SplitPattern::Regex(pattern.to_string()), SplitDelimiterBehavior::Isolated, false)
        .map(Into::into)
        .map_err(|e| wrap_tokenizers_error("bad pre-tokenizer regex", e))
}

fn build_byte_level(
    tokens: &[String],
    merges: &[String],
    pre: &str,
) -> Result<tokenizers::Tokenizer> {
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| {
                tokenizer_error(format!(
                    "malformed merge {m:?} (expected two tokens separated by a space)"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| wrap_tokenizers_error("cannot build the BPE model", e))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    // Offsets are not trimmed: a token's span includes its leading space.
    let byte_level = |use_regex: bool| ByteLevel::new(false, false, use_regex);
    let (normalizer, pre_tokenizer): (Option<NormalizerWrapper>, PreTokenizerWrapper) = match pre {
        "gpt2" | "default" => (None, byte_level(true).into()),
        "smollm" => (
            None,
            PreTokenizerSequence::new(vec![Digits::new(true).into(), byte_level(true).into()])
                .into(),
        ),
        "llama-bpe" | "llama3" | "smaug-bpe" => (
            None,
            PreTokenizerSequence::new(vec![split_regex(LLAMA3_SPLIT)?, byte_level(false).into()])
                .into(),
        ),
        "qwen2" => (
            Some(NFC.into()),
            PreTokenizerSequence::new(vec![split_regex(QWEN2_SPLIT)?, byte_level(false).into()])
                .into(),
        ),
        other => {
            return Err(tokenizer_error(format!(
                "pre-tokenizer `{other}` is not supported \
                 (supported: smollm, gpt2, default, llama-bpe, llama3, smaug-bpe, qwen2)"
            )))
        }
    };
    if let Some(normalizer) = normalizer {
        tokenizer
            .with_normalizer(Some(normalizer))
            .map_err(|e| wrap_tokenizers_error("normalizer", e))?;
    }
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(DecoderWrapper::from(ByteLevelDecoder::new(false, false, false))));
    Ok(tokenizer)
}

/// SentencePiece BPE merges, derived from the piece scores: every way of writing a piece as two
/// shorter pieces is a merge, and merges apply in the order of the merged piece's score
/// (higher first), which is how SentencePiece and llama.cpp pick the next pair.
fn merges_from_scores(tokens: &[String], scores: &[f32], types: &[u32]) -> Vec<(String, String)> {
    let index: HashMap<&str, usize> =
        tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        if types[id] != 1 {
            continue;
        }
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if let (Some(&l), Some(&r)) = (index.get(left), index.get(right)) {
                merges.push((scores[id], id, l, r));
            }
        }
    }
    // Higher score first; ties (several splits of one piece) by the pieces' ids, for determinism.
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3))
    });
    merges.into_iter().map(|(_, _, l, r)| (tokens[l].clone(), tokens[r].clone())).collect()
}

fn build_sentencepiece(
    tokens: &[String],
    scores: &[f32],
    types: &[u32],
) -> Result<tokenizers::Tokenizer> {
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges = merges_from_scores(tokens, scores, types);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .build()
        .map_err(|e| wrap_tokenizers_error("cannot build the BPE model", e))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    let space = Replace::new(" ", SPM_SPACE.to_string())
        .map_err(|e| wrap_tokenizers_error("normalizer", e))?;
    tokenizer
        .with_normalizer(Some(NormalizerWrapper::from(space)))
        .map_err(|e| wrap_tokenizers_error("normalizer", e))?;
    let unspace = Replace::new(SPM_SPACE.to_string(), " ")
        .map_err(|e| wrap_tokenizers_error("decoder", e))?;
    tokenizer.with_decoder(Some(DecoderWrapper::from(DecoderSequence::new(vec![
        unspace.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ]))));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_is_a_bijection_with_known_points() {
        let table = byte_level_chars();
        assert_eq!(table.len(), 256);
        assert_eq!(table[&'\u{120}'], b' '); // Ġ
        assert_eq!(table[&'\u{10A}'], b'\n'); // Ċ
        assert_eq!(table[&'a'], b'a');
        let mut bytes: Vec<u8> = table.values().copied().collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(b'\n'));
        assert_eq!(parse_byte_token("<0xFF>"), Some(0xFF));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
        assert_eq!(parse_byte_token("0x0A"), None);
    }

    /// Every supported pre-tokenizer builds (its regex compiles) and round-trips text over a
    /// vocabulary of the 256 byte characters with no merges.
    #[test]
    fn every_supported_pre_tokenizer_builds_and_round_trips() {
        let mut chars: Vec<(char, u8)> = byte_level_chars().iter().map(|(&c, &b)| (c, b)).collect();
        chars.sort_by_key(|&(_, b)| b);
        let tokens: Vec<String> = chars.iter().map(|(c, _)| c.to_string()).collect();
        let text = "Hello 123 world's\n\n  x caf\u{e9} \u{1f980}";
        for pre in ["smollm", "gpt2", "default", "llama-bpe", "llama3", "smaug-bpe", "qwen2"] {
            let tokenizer = build_byte_level(&tokens, &[], pre).unwrap();
            let ids = tokenizer.encode_fast(text, false).unwrap().get_ids().to_vec();
            assert_eq!(ids.len(), text.len(), "{pre}: one token per byte without merges");
            let bytes: Vec<u8> = ids.iter().map(|&id| chars[id as usize].1).collect();
            assert_eq!(bytes, text.as_bytes(), "{pre}");
        }
        assert!(build_byte_level(&tokens, &[], "falcon").is_err());
    }

    #[test]
    fn merges_from_scores_prefers_higher_scores() {
        let tokens: Vec<String> =
            ["a", "b", "c", "ab", "bc", "abc"].iter().map(|s| s.to_string()).collect();
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let types = [1; 6];
        let merges = merges_from_scores(&tokens, &scores, &types);
        let pairs: Vec<(&str, &str)> =
            merges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(pairs, [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]);
    }
}
