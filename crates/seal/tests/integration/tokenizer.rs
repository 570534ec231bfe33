//! The tokenizer built from GGUF metadata against llama.cpp's tokenizer on the same files:
//! golden ids, decoded text and per-token bytes from `testdata/tokenizer/make_golden.py`
//! (llama-cpp-python 0.3.16). The models are obtained by the project's own `resolve_model`
//! (downloaded once into the default cache, under a lock).

use proptest::prelude::*;
use seal::model::hub;
use seal::model::tokenizer::{Tokenizer, TokenizerKind};
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
struct Golden {
    model: String,
    gguf_sha256: String,
    vocab_size: usize,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
    decoded_hex: String,
    token_bytes_hex: Vec<String>,
}

fn golden(name: &str) -> Golden {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/tokenizer")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden file parses")
}

fn model_path(name: &str) -> PathBuf {
    hub::resolve_model(name, &hub::default_cache_dir(), false)
        .unwrap_or_else(|e| panic!("cannot get {name}: {e}"))
}

fn smollm2() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_gguf(&model_path("smollm2-135m")).expect("SmolLM2 tokenizer loads")
    })
}

fn gemma3() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_gguf(&model_path("gemma3-270m")).expect("Gemma 3 tokenizer loads")
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_against_golden(name: &str, tokenizer: &Tokenizer) {
    let golden = golden(name);
    assert_eq!(golden.model, name);
    assert!(golden.cases.len() >= 300, "golden file has too few cases");
    check_cases(&golden, tokenizer);
}

/// Every difference from the reference, so that one run shows them all.
fn check_cases(golden: &Golden, tokenizer: &Tokenizer) {
    let name = &golden.model;
    let spec = hub::find_model(name).expect("known model");
    assert_eq!(golden.gguf_sha256, spec.sha256, "the golden file was made from another GGUF file");
    assert_eq!(tokenizer.vocab_size(), golden.vocab_size);
    let mut failures = Vec::new();
    for case in &golden.cases {
        let ids = tokenizer.encode(&case.text).expect("encode");
        if ids != case.ids {
            failures.push(format!(
                "encode({:?}):\n   ours {:?}\n    ref {:?}\n   ours {:?}\n    ref {:?}",
                case.text,
                ids,
                case.ids,
                ids.iter()
                    .map(|&i| tokenizer.token_piece(i).unwrap_or_default())
                    .collect::<Vec<_>>(),
                case.ids
                    .iter()
                    .map(|&i| tokenizer.token_piece(i).unwrap_or_default())
                    .collect::<Vec<_>>(),
            ));
        }
        let decoded = tokenizer.decode(&case.ids).expect("decode");
        if decoded != case.decoded
            || hex(&tokenizer.decode_bytes(&case.ids).expect("decode")) != case.decoded_hex
        {
            failures
                .push(format!("decode({:?}): ours {decoded:?}, ref {:?}", case.ids, case.decoded));
        }
        for (&id, expected) in case.ids.iter().zip(&case.token_bytes_hex) {
            let ours = hex(tokenizer.token_bytes(id).expect("id in vocabulary"));
            if &ours != expected {
                failures.push(format!("token_bytes({id}): ours {ours}, ref {expected}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} differences from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp_on_golden_texts() {
    check_against_golden("smollm2-135m", smollm2());
}

#[test]
fn gemma3_matches_llama_cpp_on_golden_texts() {
    check_against_golden("gemma3-270m", gemma3());
}

#[test]
fn tokenizer_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    let tokenizer = smollm2();
    let ids: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| scope.spawn(move || tokenizer.encode(&format!(" doc {i}")).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, ids) in ids.iter().enumerate() {
        assert_eq!(tokenizer.decode(ids).unwrap(), format!(" doc {i}"));
    }
}

#[test]
fn special_ids_and_chat_markers() {
    let smol = smollm2();
    assert_eq!(smol.eos_id(), 2);
    assert_eq!(smol.token_text(2).as_deref(), Some("<|im_end|>"));
    assert_eq!(smol.bos_id(), Some(1));
    assert_eq!(smol.encode("<|im_start|>").unwrap(), [1]);
    assert!(smol.is_special(1));
    assert!(!smol.is_special(smol.encode(" the").unwrap()[0]));

    let gemma = gemma3();
    assert_eq!(gemma.eos_id(), 1);
    assert_eq!(gemma.token_text(1).as_deref(), Some("<eos>"));
    assert_eq!(gemma.bos_id(), Some(2));
    assert_eq!(gemma.encode("<start_of_turn>").unwrap(), [105]);
    assert_eq!(gemma.encode("<end_of_turn>").unwrap(), [106]);
    assert!(gemma.is_special(105));
}

#[test]
fn word_starts_and_token_text() {
    for tokenizer in [smollm2(), gemma3()] {
        let ids = tokenizer.encode(" the cat").unwrap();
        assert_eq!(ids.len(), 2, "{:?}", tokenizer.kind());
        assert_eq!(tokenizer.token_text(ids[0]).as_deref(), Some(" the"));
        assert_eq!(tokenizer.token_text(ids[1]).as_deref(), Some(" cat"));
        assert!(ids.iter().all(|&id| tokenizer.is_word_start(id)));
        let ids = tokenizer.encode("the").unwrap();
        assert!(!tokenizer.is_word_start(ids[0]));
        assert!(tokenizer.token_text(u32::MAX).is_none());
        assert!(tokenizer.decode(&[tokenizer.vocab_size() as u32]).is_err());
    }
}

const SPM_SPACE: char = '\u{2581}';

fn spm(tokenizer: &Tokenizer) -> bool {
    *tokenizer.kind() == TokenizerKind::SentencePieceBpe
}

/// Every token's span covers exactly the text it stands for (or, for a piece of a multi-byte
/// character, that whole character).
fn check_offsets(tokenizer: &Tokenizer, text: &str) {
    let (ids, spans) = tokenizer.encode_with_offsets(text).unwrap();
    assert_eq!(ids, tokenizer.encode(text).unwrap(), "{text:?}");
    assert_eq!(ids.len(), spans.len());
    let (mut previous_start, mut previous_end) = (0, 0);
    for (&id, &(start, end)) in ids.iter().zip(&spans) {
        assert!(start <= end && end <= text.len(), "{text:?}: span {start}..{end}");
        assert!(
            start >= previous_start && end >= previous_end,
            "{text:?}: spans go backwards at {start}"
        );
        assert!(
            start <= previous_end,
            "{text:?}: bytes {previous_end}..{start} belong to no token"
        );
        (previous_start, previous_end) = (start, end);
        let bytes = tokenizer.token_bytes(id).unwrap();
        let slice = &text.as_bytes()[start..end];
        if std::str::from_utf8(bytes).is_ok() {
            // A literal U+2581 in the text is a space to SentencePiece (and decodes as one).
            let read_as = String::from_utf8_lossy(slice).replace(SPM_SPACE, " ");
            assert!(
                slice == bytes || (spm(tokenizer) && read_as.as_bytes() == bytes),
                "{text:?}: token {id} span {start}..{end} holds {:?}, the token {:?}",
                String::from_utf8_lossy(slice),
                String::from_utf8_lossy(bytes)
            );
        } else {
            assert!(
                slice.windows(bytes.len()).any(|w| w == bytes),
                "{text:?}: token {id} bytes not in its span"
            );
        }
    }
}

#[test]
fn offsets_map_tokens_back_to_text() {
    for name in ["smollm2-135m", "gemma3-270m"] {
        let tokenizer = if name == "smollm2-135m" { smollm2() } else { gemma3() };
        for case in golden(name).cases {
            check_offsets(tokenizer, &case.text);
        }
    }
}

/// A larger reference file made by `make_golden.py --corpus` (e.g. real documents of a
/// dataset):
/// `SEAL_TOKENIZER_GOLDEN=a.json:b.json cargo test -p seal --test tokenizer -- --ignored`.
#[test]
#[ignore = "needs SEAL_TOKENIZER_GOLDEN=<files made by make_golden.py --corpus>"]
fn matches_llama_cpp_on_external_reference_files() {
    let files = std::env::var("SEAL_TOKENIZER_GOLDEN").expect("set SEAL_TOKENIZER_GOLDEN");
    for file in files.split(':') {
        let golden: Golden = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let tokenizer = match golden.model.as_str() {
            "smollm2-135m" => smollm2(),
            "gemma3-270m" => gemma3(),
            other => panic!("{file}: unknown model {other}"),
        };
        check_cases(&golden, tokenizer);
        for case in &golden.cases {
            check_offsets(tokenizer, &case.text);
        }
        let tokens: usize = golden.cases.iter().map(|c| c.ids.len()).sum();
        eprintln!("{file}: {} texts, {tokens} tokens, identical", golden.cases.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// decode(encode(text)) gives the text back, for any text (SentencePiece reads a literal
    /// U+2581 as a space, as llama.cpp does).
    #[test]
    fn encode_then_decode_is_identity(text in "(\\PC|[ \\n\\t\u{2581}]){0,40}") {
        for tokenizer in [smollm2(), gemma3()] {
            let ids = tokenizer.encode(&text).unwrap();
            let expected = if spm(tokenizer) { text.replace(SPM_SPACE, " ") } else { text.clone() };
            prop_assert_eq!(tokenizer.decode(&ids).unwrap(), expected);
        }
    }
}
