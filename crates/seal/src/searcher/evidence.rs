//! Evidence spans: a match's token interval in a passage's indexed string, mapped back to a
//! character span of the passage's title or text (by re-tokenizing the string with offsets).

use super::response::{Field, Span};
use crate::model::tokenizer::Tokenizer;

/// Maps token spans of a passage's indexed string back to character spans of its title and text.
pub(super) struct SpanLocator<'a> {
    title: &'a str,
    text: &'a str,
    /// Byte offsets of each token in the indexed string, when re-tokenizing it reproduced the
    /// indexed tokens; `None` otherwise (then no spans are reported rather than wrong ones).
    offsets: Option<Vec<(usize, usize)>>,
    title_start: usize,
    text_start: usize,
}

impl<'a> SpanLocator<'a> {
    pub(super) fn new(tokenizer: &Tokenizer, title: &'a str, text: &'a str) -> Self {
        let passage = crate::corpus::Passage::new("", title, text);
        let s = crate::indexer::indexed_string(&passage);
        // The indexed string is " " + title + " @@ " + text when cleaning left the stored fields
        // unchanged (the corpus reader stores cleaned fields, so it does).
        let title_start = 1;
        let text_start = s.len().saturating_sub(text.len());
        let layout_ok = s.get(title_start..title_start + title.len()) == Some(title)
            && s.get(text_start..) == Some(text);
        let offsets = if layout_ok {
            tokenizer.encode_with_offsets(&s).ok().map(|(_, offsets)| offsets)
        } else {
            None
        };
        SpanLocator { title, text, offsets, title_start, text_start }
    }

    /// The span of tokens `[start, start + len)` of the indexed string, if it lies in the title
    /// or the text.
    pub(super) fn span(&self, start: usize, len: usize) -> Option<Span> {
        let offsets = self.offsets.as_ref()?;
        let first = offsets.get(start)?;
        let last = offsets.get(start + len.max(1) - 1)?;
        let (mut a, b) = (first.0, last.1);
        let (field, base, content) = if a >= self.text_start {
            (Field::Text, self.text_start, self.text)
        } else if b <= self.title_start + self.title.len() + 1 {
            (Field::Title, self.title_start, self.title)
        } else {
            // A span across the delimiter (a title key): report its title part.
            (Field::Title, self.title_start, self.title)
        };
        a = a.max(base);
        let b = b.min(base + content.len());
        // Skip the space a word-initial token carries.
        while a < b && content.as_bytes()[a - base] == b' ' {
            a += 1;
        }
        if a >= b {
            return None;
        }
        let (byte_start, byte_end) = (a - base, b - base);
        if !content.is_char_boundary(byte_start) || !content.is_char_boundary(byte_end) {
            return None;
        }
        Some(Span {
            field,
            start: content[..byte_start].chars().count(),
            end: content[..byte_end].chars().count(),
            byte_start,
            byte_end,
        })
    }
}
