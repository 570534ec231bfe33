//! Fuzz target: arbitrary bytes given to `FmIndex::from_bytes` must be refused with an error or
//! opened; an opened index must answer every query without panicking.
//!
//! Half of the inputs get their checksum recomputed first (decided by the first byte), so the
//! fuzzer also reaches the structural checks behind the checksum.
//!
//! ```text
//! cd crates/index/fuzz
//! mkdir -p corpus/open_bytes   # seeds: the golden index, as is and with reseal requested
//! (printf '\x00'; cat ../../../testdata/index/golden_v1.fm) > corpus/open_bytes/golden
//! (printf '\x01'; cat ../../../testdata/index/golden_v1.fm) > corpus/open_bytes/golden_resealed
//! cargo +nightly fuzz run open_bytes corpus/open_bytes -- -max_total_time=600
//! ```
//!
//! Crashes go to `artifacts/`; copy each into `tests/fuzz_regressions/` (run by
//! `tests/corrupt.rs`) and add a named test that says what it found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seal_index::FmIndex;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        seal_index::__private::reseal(&mut bytes);
    }
    let Ok(index) = FmIndex::from_bytes(bytes) else { return };
    let full = index.full_range();
    let conts = index.continuations(full);
    for &(t, _) in conts.iter().take(16) {
        let r = index.range(&[t]);
        for &(u, _) in index.continuations(r).iter().take(4) {
            let r2 = index.extend(r, u);
            let _ = index.count(&[t, u]);
            let _ = index.occurrences(r2, 2).take(16).count();
        }
    }
    for row in 0..=index.num_tokens().min(256) + 1 {
        let _ = index.doc_at(index.locate(row));
    }
    for d in 0..index.num_docs().min(32) as u32 + 1 {
        let _ = index.doc_tokens(d);
    }
});
