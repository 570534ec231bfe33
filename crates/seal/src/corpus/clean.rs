//! SEAL's text cleaning (its `preprocess`): mojibake repaired, every run of Unicode whitespace
//! collapsed to one space, stripped. Used on every title and text the corpus reader yields.

/// SEAL's cleaning of a title or a text: [`fix_mojibake`], then every run of Unicode whitespace
/// (including no-break spaces, tabs and newlines) becomes one space, then strip.
///
/// Idempotent: `clean_text(clean_text(s)) == clean_text(s)` (a property test checks it).
pub fn clean_text(text: &str) -> String {
    let fixed = fix_mojibake(text);
    let mut out = String::with_capacity(fixed.len());
    for word in fixed.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The byte that Windows-1252 (or, for U+0080..U+00FF, Latin-1) encodes `c` as, if any. These are
/// the characters that UTF-8 bytes turn into when a UTF-8 file is read as cp1252/Latin-1.
pub(super) fn cp1252_byte(c: char) -> Option<u8> {
    let code = c as u32;
    if (0x80..=0xFF).contains(&code) {
        // Latin-1, including the C1 controls that cp1252 leaves undefined (0x81, 0x8D, ...).
        return Some(code as u8);
    }
    let byte = match c {
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        _ => return None,
    };
    Some(byte)
}

/// Fixes mojibake made by decoding UTF-8 as Windows-1252 or Latin-1 (`â€™` → `’`, `Ã©` → `é`,
/// `Â ` (with a no-break space) → no-break space), also when it happened twice.
///
/// What it does: it looks for a character that would be a UTF-8 lead byte (`Â`..`ô`, i.e. bytes
/// 0xC2..0xF4) followed by exactly the number of continuation characters (bytes 0x80..0xBF in
/// cp1252/Latin-1) that lead byte announces, and replaces the group by the character those bytes
/// decode to when they form valid UTF-8. It repeats (at most three passes) for doubly encoded text.
///
/// What it does not do (unlike Python's `ftfy`): it does not fix mojibake whose no-break space
/// was later turned into a plain space (`Â ` + space stays), mojibake through other code pages
/// (cp437, MacRoman, Shift-JIS), HTML entities, or lost bytes (`�`). It can in principle "fix"
/// genuine Latin-1 text such as `Ã©` written on purpose; such pairs (a capital letter with an
/// accent followed by a symbol from 0x80..0xBF) essentially never occur in real prose.
pub fn fix_mojibake(text: &str) -> String {
    let mut current = std::borrow::Cow::Borrowed(text);
    for _ in 0..3 {
        match fix_mojibake_once(&current) {
            Some(fixed) => current = std::borrow::Cow::Owned(fixed),
            None => break,
        }
    }
    current.into_owned()
}

/// One pass of [`fix_mojibake`]; `None` when nothing changed.
fn fix_mojibake_once(text: &str) -> Option<String> {
    // Fast path: mojibake always contains a lead character in U+00C2..U+00F4.
    if !text.chars().any(|c| ('\u{C2}'..='\u{F4}').contains(&c)) {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let continuation_count = match c as u32 {
            0xC2..=0xDF => 1,
            0xE0..=0xEF => 2,
            0xF0..=0xF4 => 3,
            _ => 0,
        };
        if continuation_count > 0 && i + continuation_count < chars.len() {
            let mut bytes = [c as u8, 0, 0, 0];
            let mut all_continuations = true;
            for k in 1..=continuation_count {
                match cp1252_byte(chars[i + k]) {
                    Some(b) if (0x80..=0xBF).contains(&b) => bytes[k] = b,
                    _ => {
                        all_continuations = false;
                        break;
                    }
                }
            }
            if all_continuations {
                if let Ok(decoded) = std::str::from_utf8(&bytes[..=continuation_count]) {
                    out.push_str(decoded);
                    i += continuation_count + 1;
                    changed = true;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}
