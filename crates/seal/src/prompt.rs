//! Prompts that make a decoder-only model play the role of SEAL's fine-tuned BART: given a query,
//! write a phrase of a relevant passage (body n-grams) or the title of one (title n-grams).
//!
//! Useful for: building the text before the generated n-gram. Not for: tokenization or
//! decoding. The generated continuation starts with a space, because the corpus is tokenized with
//! a leading space and the first generated token must be a word-initial token (SEAL.md §8).
//!
//! Every prompt ends right after a colon, so the model's natural continuation is `" <words>"`,
//! the same token boundaries as the indexed text.

use std::fmt;
use std::str::FromStr;

/// The prompt designs that can be chosen with `--prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptStyle {
    /// Two worked examples, then the query (the best zero-shot design in a prototype).
    #[default]
    FewShot,
    /// The bare instruction without examples; the design a fine-tuned model is trained on.
    Plain,
}

impl PromptStyle {
    /// Every style, for `--help` and evaluation sweeps.
    pub const ALL: [PromptStyle; 2] = [PromptStyle::FewShot, PromptStyle::Plain];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PromptStyle::FewShot => "few-shot",
            PromptStyle::Plain => "plain",
        }
    }
}

impl fmt::Display for PromptStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PromptStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PromptStyle::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = PromptStyle::ALL.iter().map(|p| p.name()).collect();
            format!("unknown prompt style {s:?}; expected one of {}", names.join(", "))
        })
    }
}

/// What the model is asked to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// A phrase from a relevant passage.
    Body,
    /// The title of a relevant passage.
    Title,
}

const BODY_CUE: &str = "Key phrases from a relevant passage:";
const TITLE_CUE: &str = "Title of a relevant passage:";

/// Worked examples for the few-shot prompt: (query, passage phrase, title). Written for this
/// project, general knowledge, not drawn from any evaluation set.
const EXAMPLES: [(&str, &str, &str); 2] = [
    (
        "what is the boiling point of water at sea level",
        "water boils at 100 degrees Celsius at standard atmospheric pressure",
        "Boiling point",
    ),
    (
        "who painted the ceiling of the sistine chapel",
        "the Sistine Chapel ceiling, painted by Michelangelo between 1508 and 1512",
        "Sistine Chapel ceiling",
    ),
];

/// The part of the prompt that does not depend on the query: the model can process it once
/// and reuse its state for every query.
pub fn prompt_prefix(style: PromptStyle, kind: PromptKind) -> String {
    match style {
        PromptStyle::Plain => String::new(),
        PromptStyle::FewShot => {
            let mut s = String::new();
            for (query, phrase, title) in EXAMPLES {
                let (cue, answer) = match kind {
                    PromptKind::Body => (BODY_CUE, phrase),
                    PromptKind::Title => (TITLE_CUE, title),
                };
                s.push_str(&format!("Query: {query}\n{cue} {answer}\n\n"));
            }
            s
        }
    }
}

/// The query-dependent rest of the prompt, to append to [`prompt_prefix`].
pub fn prompt_suffix(kind: PromptKind, query: &str) -> String {
    let cue = match kind {
        PromptKind::Body => BODY_CUE,
        PromptKind::Title => TITLE_CUE,
    };
    let query = query.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("Query: {query}\n{cue}")
}

/// The whole prompt.
pub fn prompt(style: PromptStyle, kind: PromptKind, query: &str) -> String {
    prompt_prefix(style, kind) + &prompt_suffix(kind, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prompt_is_the_training_prompt() {
        assert_eq!(
            prompt(PromptStyle::Plain, PromptKind::Body, "  what   is\tdna "),
            "Query: what is dna\nKey phrases from a relevant passage:"
        );
    }

    #[test]
    fn few_shot_prompt_ends_with_the_query_and_cue() {
        let p = prompt(PromptStyle::FewShot, PromptKind::Title, "q");
        assert!(p.starts_with("Query: what is the boiling point"));
        assert!(p.ends_with("\n\nQuery: q\nTitle of a relevant passage:"));
        assert_eq!(p.matches("Query:").count(), 3);
    }

    #[test]
    fn styles_parse_by_name() {
        assert_eq!("few-shot".parse::<PromptStyle>(), Ok(PromptStyle::FewShot));
        assert!("chat".parse::<PromptStyle>().unwrap_err().contains("few-shot, plain"));
    }
}
