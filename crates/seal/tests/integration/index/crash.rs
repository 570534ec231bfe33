//! The crash test of index replacement: the real `seal index` killed with SIGKILL at seeded
//! random instants while it rebuilds over an existing index. After every kill the directory
//! must open, checked, as the old index or the new one; after every build that completes,
//! nothing of the killed ones may be left; and a reader that opened the first index before all
//! this still answers from it.

use super::{generated_corpus, seal, tiny_corpus, Corpus};
use crate::common;
use seal::indexer::IndexFiles;
use seal::searcher::{SearchSettings, Searcher};
use std::path::Path;
use std::time::{Duration, Instant};

/// Kill trials. Half of them aim at the last part of a build, where the swap happens.
const TRIALS: usize = 50;
/// Every this many trials a build runs to completion, so that clean-up is checked often.
const COMPLETE_EVERY: usize = 10;

/// xorshift64*: seeded delays without a dependency.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn index_command(corpus: &Corpus, dir: &Path) -> std::process::Command {
    let mut command = seal();
    command
        .args(["index", "--json", "--corpus"])
        .arg(&corpus.path)
        .arg("--out")
        .arg(dir)
        .arg("--model")
        .arg(common::smollm2_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// Which corpus the directory holds, after checking that it opens whole (manifest, FM-index
/// and passages agree: [`IndexFiles::open`]) and holds nothing else.
fn opened_as<'a>(dir: &Path, corpora: [&'a Corpus; 2]) -> &'a Corpus {
    let files =
        IndexFiles::open(dir).unwrap_or_else(|e| panic!("{} does not open: {e}", dir.display()));
    let corpus = corpora
        .into_iter()
        .find(|c| c.num_docs == files.manifest.num_docs)
        .unwrap_or_else(|| panic!("{} docs: neither index", files.manifest.num_docs));
    assert_eq!(files.docs.get(0).unwrap().id, corpus.first_id);
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(["manifest.json", "fm.idx", "docs.bin"].contains(&name.as_str()), "stray {name}");
    }
    corpus
}

/// Everything in `parent` besides the index directory itself.
fn leftovers(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "idx" && !n.ends_with(".jsonl"))
        .collect()
}

#[test]
fn rebuilds_killed_at_random_instants_leave_the_old_or_the_new_index() {
    let started = Instant::now();
    let parent = std::env::temp_dir().join(format!("seal-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&parent);
    std::fs::create_dir_all(&parent).unwrap();
    let dir = parent.join("idx");
    let small = tiny_corpus();
    let large = generated_corpus(&parent, 800);
    let corpora = [&small, &large];

    // The first index, and a reader that keeps it open through every rebuild.
    assert!(index_command(&small, &dir).status().unwrap().success());
    let reader = IndexFiles::open(&dir).unwrap();
    let probe = reader.fm_index.doc_tokens(0);
    let probe_count = reader.fm_index.count(&probe[..3]);
    // The large build's length sets the range of the kill delays.
    let t = Instant::now();
    assert!(index_command(&large, &dir).status().unwrap().success());
    let full = t.elapsed();
    let mut current = opened_as(&dir, corpora);
    assert_eq!(current.num_docs, large.num_docs);

    let mut rng = Rng(0x5EA1_C0DE_2026);
    let (mut kept_old, mut got_new, mut left_behind, mut completed) = (0, 0, 0, 0);
    for trial in 0..TRIALS {
        let next = if current.num_docs == small.num_docs { &large } else { &small };
        let before = current;
        let mut child = index_command(next, &dir).spawn().unwrap();
        let finished = if trial % COMPLETE_EVERY == COMPLETE_EVERY - 1 {
            assert!(child.wait().unwrap().success(), "trial {trial}: the build failed");
            true
        } else {
            let fraction = if trial % 2 == 0 { rng.next_f64() } else { 0.6 + 0.5 * rng.next_f64() };
            std::thread::sleep(full.mul_f64(fraction));
            let _ = child.kill();
            child.wait().unwrap().success()
        };
        current = opened_as(&dir, corpora);
        assert!(
            current.num_docs == before.num_docs || current.num_docs == next.num_docs,
            "trial {trial}"
        );
        if current.num_docs == before.num_docs {
            kept_old += 1;
        } else {
            got_new += 1;
        }
        if finished {
            completed += 1;
            let stale = leftovers(&parent);
            assert!(stale.is_empty(), "trial {trial}: a finished build left {stale:?}");
        } else if !leftovers(&parent).is_empty() {
            left_behind += 1;
        }
    }
    eprintln!(
        "{TRIALS} rebuilds (full build {full:?}): old index kept {kept_old}, new one in place \
         {got_new}, {left_behind} kills left a staging directory, {completed} completed; {:?}",
        started.elapsed()
    );
    assert!(kept_old > 0, "some kills must land before the swap");
    assert!(left_behind > 0, "some kills must land mid-build");

    // The reader opened before every rebuild still answers from the first index.
    assert_eq!(reader.docs.get(0).unwrap().id, small.first_id);
    assert_eq!(reader.fm_index.doc_tokens(0), probe);
    assert_eq!(reader.fm_index.count(&probe[..3]), probe_count);

    // And the directory answers a real search.
    let searcher = Searcher::open(&dir, &common::smollm2_path()).unwrap();
    let settings = SearchSettings { k: 3, ..SearchSettings::default() };
    let hits = searcher.search(&current.query, &settings).unwrap().hits;
    assert!(!hits.is_empty(), "a search over the rebuilt index finds passages");
    std::fs::remove_dir_all(&parent).unwrap();
    assert!(started.elapsed() < Duration::from_secs(300), "{:?}", started.elapsed());
}
