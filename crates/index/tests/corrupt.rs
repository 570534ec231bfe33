//! Damaged, truncated, forged and foreign index bytes: opening them is an `Err` that tells the
//! user to rebuild, never a panic; and when forged bytes with a recomputed checksum do pass
//! validation, every query still returns without panicking.

use proptest::prelude::*;
use seal_index::{FmIndex, FmIndexBuilder};

fn index_bytes(docs: &[Vec<u32>], rate: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.fm");
    let mut b = FmIndexBuilder::new(0).sa_sample_rate(rate);
    for d in docs {
        b.push_document(d).unwrap();
    }
    b.write(&path).unwrap();
    std::fs::read(path).unwrap()
}

fn docs() -> impl Strategy<Value = Vec<Vec<u32>>> {
    proptest::collection::vec(proptest::collection::vec(1u32..20, 1..12), 1..5)
}

/// Runs every query over the index; they must not panic whatever the bytes were.
fn exercise(index: &FmIndex) {
    let full = index.full_range();
    let conts = index.continuations(full);
    for &(t, _) in conts.iter().take(20) {
        let r = index.range(&[t]);
        let _ = index.continuations(r);
        for &(u, _) in index.continuations(r).iter().take(5) {
            let r2 = index.extend(r, u);
            let _ = index.occurrences(r2, 2).take(50).count();
        }
    }
    for row in 0..=index.num_tokens().min(300) + 1 {
        let p = index.locate(row);
        let _ = index.doc_at(p);
    }
    for d in 0..index.num_docs().min(50) as u32 + 1 {
        let _ = index.doc_tokens(d);
    }
    let _ = index.occurrences(full, 1).take(100).count();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn truncation_is_an_error(docs in docs(), cut in 0.0f64..1.0) {
        let bytes = index_bytes(&docs, 4);
        let len = (bytes.len() as f64 * cut) as usize;
        let err = FmIndex::from_bytes(bytes[..len].to_vec()).unwrap_err().to_string();
        prop_assert!(err.contains("rebuild the index"), "{}", err);
    }

    #[test]
    fn damage_is_an_error(docs in docs(), flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4)) {
        let mut bytes = index_bytes(&docs, 4);
        for &(at, x) in &flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        // Flips may cancel out; anything changed must be refused.
        if bytes != index_bytes(&docs, 4) {
            let err = FmIndex::from_bytes(bytes).unwrap_err().to_string();
            prop_assert!(err.contains("rebuild the index"), "{}", err);
        }
    }

    #[test]
    fn forged_bytes_never_panic(docs in docs(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut bytes = index_bytes(&docs, 3);
        for &(at, x) in &flips {
            // Skip the magic and version so the structural checks are what is exercised.
            let i = 16 + at % (bytes.len() - 16);
            bytes[i] ^= x;
        }
        seal_index::__private::reseal(&mut bytes);
        if let Ok(index) = FmIndex::from_bytes(bytes) {
            exercise(&index);
        }
    }

    #[test]
    fn foreign_bytes_are_not_an_index(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        prop_assert!(FmIndex::from_bytes(bytes).is_err());
    }
}

#[test]
fn wrong_version_says_so() {
    let mut bytes = index_bytes(&[vec![1, 2, 3]], 32);
    bytes[8] = 2;
    let err = FmIndex::from_bytes(bytes).unwrap_err().to_string();
    assert!(err.contains("version 2") && err.contains("rebuild the index"), "{err}");
}

#[test]
fn missing_and_empty_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.fm");
    assert!(FmIndex::open(&missing).unwrap_err().to_string().contains("missing.fm"));
    let empty = dir.path().join("empty.fm");
    std::fs::write(&empty, b"").unwrap();
    assert!(FmIndex::open(&empty).unwrap_err().to_string().contains("not a seal FM-index"));
    let text = dir.path().join("text.fm");
    std::fs::write(&text, b"this is a text file, not an index\n").unwrap();
    assert!(FmIndex::open(&text).unwrap_err().to_string().contains("not a seal FM-index"));
}

#[test]
fn a_failed_write_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("i.fm");
    let mut b = FmIndexBuilder::new(0);
    b.push_document(&[1, 2]).unwrap();
    assert!(b.write(&path).is_err());
    assert!(std::fs::read_dir(dir.path()).unwrap().count() == 0);
}

/// Inputs the fuzzer (`fuzz/`, target `open_bytes`) found; each file is the fuzzer's input
/// (first byte: 1 = recompute the checksum). Every one must open or fail quickly, and queries
/// on whatever opens must return.
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let (mode, rest) = data.split_first().unwrap();
        let mut bytes = rest.to_vec();
        if mode & 1 == 1 {
            seal_index::__private::reseal(&mut bytes);
        }
        let started = std::time::Instant::now();
        if let Ok(index) = FmIndex::from_bytes(bytes) {
            exercise(&index);
        }
        assert!(started.elapsed().as_secs() < 5, "{} is slow", path.display());
    }
}

/// Found by fuzzing: a forged header with a sample rate of 2^28 made every `locate` walk
/// 2^28 LF steps before giving up. The walk is now bounded by the number of rows too.
#[test]
fn slow_locate_huge_sample_rate() {
    let data = include_bytes!("fuzz_regressions/slow_locate_huge_sample_rate.bin");
    let mut bytes = data[1..].to_vec();
    seal_index::__private::reseal(&mut bytes);
    if let Ok(index) = FmIndex::from_bytes(bytes) {
        for row in 0..40 {
            let _ = index.locate(row);
        }
    }
}

/// Found by fuzzing: a forged header with `num_docs` near `u64::MAX` overflowed
/// `num_docs + 2` in the header check (a panic in debug builds). Sizes are now bounded first.
#[test]
fn overflow_num_docs() {
    let data = include_bytes!("fuzz_regressions/overflow_num_docs.bin");
    let mut bytes = data[1..].to_vec();
    if data[0] & 1 == 1 {
        seal_index::__private::reseal(&mut bytes);
    }
    let err = FmIndex::from_bytes(bytes).unwrap_err().to_string();
    assert!(err.contains("rebuild the index"), "{err}");
}
