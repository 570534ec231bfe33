//! The corpus reader's tests: formats, bad lines, cleaning and mojibake.

use super::clean::cp1252_byte;
use super::*;

fn read(text: &str, format: CorpusFormat, skip: bool) -> (Vec<Result<Passage>>, ReadStats) {
    let mut reader = CorpusReader::from_str(text, format, ReadOptions { skip_bad_lines: skip });
    let items: Vec<_> = reader.by_ref().collect();
    (items, reader.stats())
}

fn ok(items: Vec<Result<Passage>>) -> Vec<Passage> {
    items.into_iter().map(|r| r.unwrap()).collect()
}

#[test]
fn beir_jsonl_reads_fields_and_cleans_them() {
    let text = concat!(
        r#"{"_id": "d1", "title": "  Caf\u00c3\u00a9 \n society ", "text": "It\u00e2\u0080\u0099s   open.", "metadata": {}}"#,
        "\n",
        r#"{"_id": 42, "text": "no title here"}"#,
        "\n\n",
    );
    let (items, stats) = read(text, CorpusFormat::BeirJsonl, false);
    assert_eq!(
        ok(items),
        vec![
            Passage::new("d1", "Café society", "It’s open."),
            Passage::new("42", "", "no title here"),
        ]
    );
    assert_eq!(stats, ReadStats { passages: 2, bad_lines: 0, empty_passages: 0 });
}

#[test]
fn dpr_tsv_skips_header_and_unquotes() {
    let text =
        "id\ttext\ttitle\n1\t\"Aaron ( or ; \"\"Ahärôn\"\") is a prophet\"\tAaron\n2\tplain\tT\n";
    let (items, _) = read(text, CorpusFormat::DprTsv, false);
    assert_eq!(
        ok(items),
        vec![
            Passage::new("1", "Aaron", "Aaron ( or ; \"Ahärôn\") is a prophet"),
            Passage::new("2", "T", "plain"),
        ]
    );
}

#[test]
fn kilt_tsv_without_header_has_title_before_text() {
    let text = "123-0\tSome Page\tThe body.\r\n";
    let (items, _) = read(text, CorpusFormat::KiltTsv, false);
    assert_eq!(ok(items), vec![Passage::new("123-0", "Some Page", "The body.")]);
}

#[test]
fn a_bad_line_names_source_and_line_number() {
    let text = "{\"_id\": \"a\", \"text\": \"x\"}\n\n{\"_id\": \"b\", \"text\": \n";
    let (items, _) = read(text, CorpusFormat::BeirJsonl, false);
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    let error = items[1].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Corpus);
    let message = error.to_string();
    assert!(message.starts_with("<memory>:3: invalid JSON"), "{message}");
    assert!(message.contains("--skip-bad-lines"), "{message}");
}

#[test]
fn wrong_field_count_is_an_error_with_the_expected_layout() {
    let (items, _) = read("id\ttext\ttitle\n1\tonly text\n", CorpusFormat::DprTsv, false);
    let message = items[0].as_ref().unwrap_err().to_string();
    assert!(message.contains(":2: expected 3 tab-separated fields (id, text, title), found 2"));
}

#[test]
fn skip_bad_lines_counts_them_and_goes_on() {
    let text = "{\"_id\": \"a\", \"text\": \"x\"}\nnot json\n{\"text\": \"no id\"}\n{\"_id\": \"b\", \"text\": \"y\"}\n";
    let (items, stats) = read(text, CorpusFormat::BeirJsonl, true);
    let ids: Vec<String> = ok(items).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(stats, ReadStats { passages: 2, bad_lines: 2, empty_passages: 0 });
}

#[test]
fn skipped_lines_are_listed_with_their_line_numbers_and_reasons() {
    let long = format!("{{\"_id\": \"x\", \"text\": \"{}", "é".repeat(300));
    let text = format!(
        "{{\"_id\": \"a\", \"text\": \"x\"}}\n\nnot json\n{long}\n{{\"text\": \"no id\"}}\n"
    );
    let mut reader = CorpusReader::from_str(
        &text,
        CorpusFormat::BeirJsonl,
        ReadOptions { skip_bad_lines: true },
    );
    assert_eq!(reader.by_ref().count(), 1);
    let lines: Vec<u64> = reader.skipped_lines().iter().map(|s| s.line).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert!(reader.skipped_lines()[0].reason.starts_with("invalid JSON"));
    assert!(reader.skipped_lines()[1].reason.len() <= MAX_SKIP_REASON_BYTES);
    assert!(reader.skipped_lines()[2].reason.contains("_id"), "{:?}", reader.skipped_lines());
}

#[test]
fn without_skip_bad_lines_nothing_is_listed() {
    let mut reader =
        CorpusReader::from_str("not json\n", CorpusFormat::BeirJsonl, ReadOptions::default());
    assert!(reader.next().unwrap().is_err());
    assert!(reader.skipped_lines().is_empty());
}

#[test]
fn invalid_utf8_is_a_bad_line() {
    let mut bytes = b"1\tt\tok\n2\tt\t".to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFE, b'\n']);
    let mut reader = CorpusReader::from_reader(
        std::io::Cursor::new(bytes),
        "c.tsv",
        CorpusFormat::KiltTsv,
        ReadOptions::default(),
    );
    assert!(reader.next().unwrap().is_ok());
    let message = reader.next().unwrap().unwrap_err().to_string();
    assert!(message.starts_with("c.tsv:2: invalid UTF-8"), "{message}");
    assert!(reader.next().is_none(), "the reader stops after an error");
}

#[test]
fn empty_passages_are_skipped_and_counted_but_title_only_is_kept() {
    let text = "a\t \t\u{a0}\nb\tTitle only\t\nc\t\ttext only\n";
    let (items, stats) = read(text, CorpusFormat::KiltTsv, false);
    let ids: Vec<String> = ok(items).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["b", "c"]);
    assert_eq!(stats.empty_passages, 1);
}

#[test]
fn header_must_match_chosen_format() {
    let (items, _) = read("id\ttitle\ttext\n1\ta\tb\n", CorpusFormat::DprTsv, false);
    assert!(items[0].as_ref().unwrap_err().to_string().contains("does not match"));
}

#[test]
fn detect_by_extension_and_header() {
    let dir = std::env::temp_dir().join(format!("seal-corpus-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("a.jsonl", "{}\n", CorpusFormat::BeirJsonl),
        ("b.tsv", "id\ttext\ttitle\n", CorpusFormat::DprTsv),
        ("c.tsv", "id\ttitle\ttext\n", CorpusFormat::KiltTsv),
        ("d.tsv", "1\tT\tx\n", CorpusFormat::KiltTsv),
    ];
    for (name, content, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        assert_eq!(CorpusFormat::detect(&path).unwrap(), expected, "{name}");
    }
    let unknown = dir.join("e.txt");
    std::fs::write(&unknown, "x").unwrap();
    assert_eq!(CorpusFormat::detect(&unknown).unwrap_err().kind(), ErrorKind::InvalidInput);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mojibake_cases() {
    let cases = [
        ("itâ€™s", "it’s"),                // cp1252: E2 80 99
        ("â€œquotedâ€\u{9d}", "“quoted”"), // 0x9D is undefined in cp1252: Latin-1 C1 char
        ("cafÃ©", "café"),
        ("Ã\u{a0}", "à"), // C3 A0
        ("naÃ¯ve rÃ©sumÃ©", "naïve résumé"),
        ("â€“", "–"),
        ("ðŸ˜€", "😀"),                           // four-byte
        ("cafÃƒÂ©", "café"),                      // encoded twice
        ("Ã", "Ã"),                               // lone lead char at the end
        ("Ãx", "Ãx"),                             // not followed by a continuation
        ("São Paulo — “ok”", "São Paulo — “ok”"), // genuine text untouched
        ("Â½ cup", "½ cup"),
    ];
    for (input, expected) in cases {
        assert_eq!(fix_mojibake(input), expected, "{input:?}");
    }
}

#[test]
fn clean_text_collapses_whitespace_and_strips() {
    assert_eq!(clean_text("  a\t\tb \n c\u{a0}\u{2003}d  "), "a b c d");
    assert_eq!(clean_text("NBSPÂ\u{a0}here"), "NBSP here");
    assert_eq!(clean_text(" \n\t "), "");
}

#[test]
fn document_string_is_title_delimiter_text() {
    let p = Passage::new("1", " The  Title ", "Body\ntext. ");
    assert_eq!(document_string(&p), "The Title @@ Body text.");
    assert_eq!(document_string(&Passage::new("2", "", "only")), "@@ only");
    assert_eq!(document_string(&Passage::new("3", "T", "")), "T @@");
    assert!(Passage::new("4", " ", "\u{a0}").is_empty());
    assert!(!Passage::new("5", "T", "").is_empty());
}

proptest::proptest! {
    #[test]
    fn clean_text_is_idempotent(s in "\\PC{0,40}") {
        let once = clean_text(&s);
        proptest::prop_assert_eq!(clean_text(&once), once.clone());
    }

    #[test]
    fn fixing_reverses_cp1252_mojibake(s in "[a-zé’“”–àçüÀ😀 ]{0,20}") {
        // Text that itself looks like mojibake (`ç’“` is E7 92 93 read as cp1252) cannot be
        // told apart from it: the property holds for text that fixing leaves alone.
        proptest::prop_assume!(fix_mojibake(&s) == s);
        // Encode as UTF-8, decode as cp1252/Latin-1: the classic mojibake.
        let broken: String = s.bytes().map(|b| {
            cp1252_char(b)
        }).collect();
        proptest::prop_assert_eq!(fix_mojibake(&broken), s);
    }
}

/// How a cp1252 (Latin-1 for the bytes cp1252 leaves undefined) decoder shows `byte`: the
/// inverse of [`cp1252_byte`].
fn cp1252_char(byte: u8) -> char {
    let special =
        (0x100u32..0x2200).filter_map(char::from_u32).find(|&c| cp1252_byte(c) == Some(byte));
    special.unwrap_or(byte as char)
}
