//! The committed golden index of format version 1 (`testdata/index/golden_v1.fm`) must keep
//! opening and answering exactly what an independent naive Python scan computed
//! (`testdata/index/golden_expected.txt`, from `make_golden_expected.py`), and building the
//! golden corpus must still produce that file byte for byte: a change of the bytes is a change
//! of the format and needs a new version (and a new golden file beside the old one).
//!
//! To (re)create the file after a deliberate format change:
//! `SEAL_WRITE_GOLDEN=1 cargo test -p seal-index --test golden`.

use std::path::PathBuf;

use seal_index::{FmIndex, FmIndexBuilder, TokenId};

const SEPARATOR: TokenId = 2;
const SAMPLE_RATE: u32 = 4;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/index")
}

fn corpus() -> Vec<Vec<TokenId>> {
    std::fs::read_to_string(testdata().join("golden_corpus.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect()
}

fn build_golden(path: &std::path::Path) {
    let mut b = FmIndexBuilder::new(SEPARATOR).sa_sample_rate(SAMPLE_RATE);
    for d in corpus() {
        b.push_document(&d).unwrap();
    }
    b.write(path).unwrap();
}

fn nums(s: &str) -> Vec<u64> {
    s.split_whitespace().map(|t| t.parse().unwrap()).collect()
}

fn pairs(s: &str) -> Vec<(u64, u64)> {
    s.split_whitespace()
        .map(|p| {
            let (a, b) = p.split_once(':').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

#[test]
fn golden_v1_opens_and_answers_as_expected() {
    let golden = testdata().join("golden_v1.fm");
    if std::env::var_os("SEAL_WRITE_GOLDEN").is_some() {
        build_golden(&golden);
    }
    let index = FmIndex::open(&golden).expect("the golden index must keep opening");
    let expected = std::fs::read_to_string(testdata().join("golden_expected.txt")).unwrap();
    let mut checked = 0;
    for line in expected.lines() {
        let (kind, rest) = line.split_once(' ').unwrap();
        match kind {
            "num_tokens" => assert_eq!(index.num_tokens() as u64, nums(rest)[0]),
            "num_docs" => assert_eq!(index.num_docs() as u64, nums(rest)[0]),
            "separator" => assert_eq!(index.separator() as u64, nums(rest)[0]),
            "doc" => {
                let (head, tokens) = rest.split_once(':').unwrap();
                let head = nums(head);
                let want: Vec<TokenId> = nums(tokens).into_iter().map(|t| t as TokenId).collect();
                assert_eq!(index.doc_len(head[0] as u32) as u64, head[1]);
                assert_eq!(index.doc_tokens(head[0] as u32), want, "{line}");
            }
            "locate" => {
                let v = nums(rest);
                assert_eq!(index.locate(v[0] as usize) as u64, v[1], "{line}");
            }
            "doc_at" => {
                let v = nums(rest);
                let (d, o) = index.doc_at(v[0] as usize);
                assert_eq!((d as u64, o as u64), (v[1], v[2]), "{line}");
            }
            "ngram" => {
                let parts: Vec<&str> = rest.split(" | ").collect();
                let ngram: Vec<TokenId> =
                    nums(parts[0]).into_iter().map(|t| t as TokenId).collect();
                let count = nums(parts[1].strip_prefix("count").unwrap())[0];
                let conts = pairs(parts[2].strip_prefix("cont").unwrap());
                let occ = pairs(parts[3].strip_prefix("occ").unwrap());
                let range = index.range(&ngram);
                assert_eq!(index.count(&ngram), count, "{line}");
                let got: Vec<(u64, u64)> =
                    index.continuations(range).into_iter().map(|(t, c)| (t as u64, c)).collect();
                assert_eq!(got, conts, "{line}");
                let mut got: Vec<(u64, u64)> = index
                    .occurrences(range, ngram.len())
                    .map(|(d, o)| (d as u64, o as u64))
                    .collect();
                got.sort_unstable();
                assert_eq!(got, occ, "{line}");
            }
            _ => panic!("unknown line {line}"),
        }
        checked += 1;
    }
    assert!(checked > 100, "the expected file looks truncated");
}

#[test]
fn building_the_golden_corpus_reproduces_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("golden.fm");
    build_golden(&path);
    let committed = std::fs::read(testdata().join("golden_v1.fm")).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == committed,
        "the builder no longer writes the committed golden bytes: a format change needs a new \
         format version and a new golden file (see this file's header)"
    );
}
