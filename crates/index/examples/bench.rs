//! Benchmark of `seal-index` on a real corpus, with the `fm-index` crate as the peer in the
//! same run. Prints build throughput and peak memory, index size per component, and latency
//! percentiles of every query SEAL's decoder and scorer make.
//!
//! Not for: correctness (the tests do that) or tokenizer quality. Without `--tokens`, documents
//! are tokenized by a small deterministic stand-in for a BPE written here (see `Vocabulary`);
//! rerun with the model tokenizer's ids through `--tokens` once that exists.
//!
//! ```text
//! cargo run --release -p seal-index --example bench -- \
//!     --corpus ../shared/datasets/scifact/corpus.jsonl [--corpus more.jsonl ...] \
//!     [--tokens ids.txt --separator 0]   # pre-tokenized: one document a line, ids by spaces
//!     [--stream-tokens 20000000]         # also build over the corpus repeated to this size
//!     [--queries 20000] [--no-peer] [--index-file /tmp/bench.fm]
//! ```

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fm_index::{FMIndexWithLocate, MatchWithLocate, Search, SearchIndex, Text};
use seal_index::{FmIndex, FmIndexBuilder, SaRange, TokenId};

/// Separator id of the built-in tokenizer (SmolLM2's EOS is 0 too).
const BUILTIN_SEPARATOR: TokenId = 0;
/// Vocabulary size of the built-in tokenizer (SmolLM2's is 49,152).
const BUILTIN_VOCAB: usize = 49_152;

struct Args {
    corpora: Vec<PathBuf>,
    tokens: Option<PathBuf>,
    separator: TokenId,
    stream_tokens: usize,
    queries: usize,
    peer: bool,
    index_file: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        corpora: Vec::new(),
        tokens: None,
        separator: BUILTIN_SEPARATOR,
        stream_tokens: 0,
        queries: 20_000,
        peer: true,
        index_file: std::env::temp_dir().join(format!("seal-bench-{}.fm", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--corpus" => args.corpora.push(value().into()),
            "--tokens" => args.tokens = Some(value().into()),
            "--separator" => args.separator = value().parse().expect("--separator takes a u32"),
            "--stream-tokens" => args.stream_tokens = value().parse().expect("a number"),
            "--queries" => args.queries = value().parse().expect("a number"),
            "--no-peer" => args.peer = false,
            "--index-file" => args.index_file = value().into(),
            _ => panic!("unknown argument {a}; see the header of examples/bench.rs"),
        }
    }
    assert!(args.tokens.is_some() || !args.corpora.is_empty(), "give --corpus or --tokens");
    args
}

/// A stand-in for a BPE: text is cut into pieces (a word with its leading space, or one
/// punctuation character); the `BUILTIN_VOCAB - 257` most frequent pieces get their own id
/// (by frequency, ties by bytes), every other piece is spelled as UTF-8 bytes (ids 1..=256).
/// Deterministic for a given corpus. Token statistics (Zipfian, ~1.3 tokens per word) are
/// close enough to a real BPE for an index benchmark.
struct Vocabulary {
    ids: HashMap<String, TokenId>,
}

fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            cur.push(ch);
        } else {
            if !cur.is_empty() && cur != " " {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
            if ch.is_whitespace() {
                cur.push(' ');
            } else {
                out.push(ch.to_string());
            }
        }
    }
    if !cur.is_empty() && cur != " " {
        out.push(cur);
    }
    out
}

impl Vocabulary {
    fn train(docs: &[String]) -> Vocabulary {
        let mut freq: HashMap<String, u64> = HashMap::new();
        for d in docs {
            for p in pieces(d) {
                *freq.entry(p).or_default() += 1;
            }
        }
        let mut by_freq: Vec<(String, u64)> = freq.into_iter().collect();
        by_freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let ids = by_freq
            .into_iter()
            .take(BUILTIN_VOCAB - 257)
            .enumerate()
            .map(|(i, (p, _))| (p, 257 + i as TokenId))
            .collect();
        Vocabulary { ids }
    }

    fn encode(&self, text: &str) -> Vec<TokenId> {
        let mut out = Vec::new();
        for p in pieces(text) {
            match self.ids.get(&p) {
                Some(&id) => out.push(id),
                None => out.extend(p.bytes().map(|b| b as TokenId + 1)),
            }
        }
        out
    }
}

/// SEAL's document string: `title @@ text`, whitespace collapsed.
fn load_corpus(paths: &[PathBuf]) -> Vec<String> {
    let mut docs = Vec::new();
    for path in paths {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in std::io::BufReader::new(file).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let title = v["title"].as_str().unwrap_or("");
            let text = v["text"].as_str().unwrap_or("");
            let s = format!("{title} @@ {text}");
            docs.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    docs
}

fn load_tokens(path: &PathBuf) -> Vec<Vec<TokenId>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(file)
        .lines()
        .map(|l| l.unwrap().split_whitespace().map(|t| t.parse().expect("u32 ids")).collect())
        .collect()
}

fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so the next reading is this phase's peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// xorshift64*: a fixed-seed generator, so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

fn stats(mut ns: Vec<u64>) -> Stats {
    ns.sort_unstable();
    let pick = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0;
    Stats { p50: pick(0.5), p99: pick(0.99), mean }
}

/// This thread's CPU time in nanoseconds. The benchmark machine is shared (load above its
/// core count), so wall-clock latencies mostly measure the scheduler; CPU time does not count
/// the time the thread waits to run (cache pollution by neighbours still counts).
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The median cost of reading the clock twice, subtracted from every sample.
/// CPU time of the whole process (all threads) in nanoseconds.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: as in `cpu_ns`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn clock_overhead() -> u64 {
    let mut ns: Vec<u64> = (0..2001)
        .map(|_| {
            let t = cpu_ns();
            cpu_ns() - t
        })
        .collect();
    ns.sort_unstable();
    ns[ns.len() / 2]
}

fn time_each<T>(items: &[T], mut f: impl FnMut(&T)) -> Stats {
    // Warm-up pass over a few items (page faults of the memory map, branch predictors).
    for item in items.iter().take(100) {
        f(item);
    }
    let overhead = clock_overhead();
    let ns = items
        .iter()
        .map(|item| {
            let t = cpu_ns();
            f(item);
            (cpu_ns() - t).saturating_sub(overhead)
        })
        .collect();
    stats(ns)
}

fn row(name: &str, s: &Stats, extra: &str) {
    println!("| {name} | {:.2} | {:.2} | {:.2} | {extra} |", s.p50, s.p99, s.mean);
}

/// Builds in memory; returns the index, wall time, process CPU time and peak memory growth.
fn build_index(
    docs: impl Iterator<Item = Vec<TokenId>>,
    separator: TokenId,
) -> (FmIndex, Duration, Duration, u64) {
    reset_peak();
    let base = proc_status("VmRSS:");
    let t = Instant::now();
    let cpu = process_cpu_ns();
    let verbose = std::env::var_os("BENCH_STAGE_RSS").is_some();
    let mut b = FmIndexBuilder::new(separator).on_progress(move |p| {
        if verbose {
            eprintln!(
                "  {:?} {}/{}: RSS {:.1} MB, peak {:.1} MB",
                p.stage,
                p.done,
                p.total,
                proc_status("VmRSS:") as f64 / 1e6,
                proc_status("VmHWM:") as f64 / 1e6
            );
        }
    });
    for d in docs {
        b.push_document(&d).expect("valid document");
    }
    let index = b.build().expect("build");
    let elapsed = t.elapsed();
    let cpu = Duration::from_nanos(process_cpu_ns() - cpu);
    let peak = proc_status("VmHWM:").saturating_sub(base);
    (index, elapsed, cpu, peak)
}

fn main() {
    let args = parse_args();
    let (docs, separator, tokenizer) = match &args.tokens {
        Some(path) => {
            (load_tokens(path), args.separator, format!("pre-tokenized ({})", path.display()))
        }
        None => {
            let texts = load_corpus(&args.corpora);
            let vocab = Vocabulary::train(&texts);
            let docs = texts.iter().map(|t| vocab.encode(t)).collect();
            (docs, BUILTIN_SEPARATOR, format!("built-in word/byte stand-in, vocab {BUILTIN_VOCAB}"))
        }
    };
    let n_doc_tokens: usize = docs.iter().map(|d| d.len()).sum();
    println!(
        "corpus: {} docs, {} tokens + separators; tokenizer: {tokenizer}",
        docs.len(),
        n_doc_tokens
    );

    // ---- build (in memory), peak memory ----
    let (index, build_time, build_cpu, peak) = build_index(docs.iter().cloned(), separator);
    let n = index.num_tokens();
    println!("\n## Build ({n} tokens, {} distinct)\n", index.num_distinct_tokens());
    println!("| measure | value |\n|---|---|");
    println!("| build time (push + build, in memory), wall | {:.3} s |", build_time.as_secs_f64());
    println!("| build CPU time, all threads | {:.3} s |", build_cpu.as_secs_f64());
    println!(
        "| build throughput, wall | {:.2} M tokens/s |",
        n as f64 / build_time.as_secs_f64() / 1e6
    );
    println!(
        "| build throughput, per CPU-second | {:.2} M tokens/s |",
        n as f64 / build_cpu.as_secs_f64() / 1e6
    );
    println!(
        "| build peak memory above the loaded corpus | {:.1} MB = {:.2} bytes/token |",
        peak as f64 / 1e6,
        peak as f64 / n as f64
    );

    // ---- write, open (mmap + validation) ----
    let t = Instant::now();
    let mut b = FmIndexBuilder::new(separator);
    for d in &docs {
        b.push_document(d).unwrap();
    }
    b.write(&args.index_file).expect("write");
    let write_time = t.elapsed();
    let t = Instant::now();
    let index = FmIndex::open(&args.index_file).expect("open");
    let open_time = t.elapsed();
    println!("| build + write file | {:.3} s |", write_time.as_secs_f64());
    println!("| open (mmap, checksum, validation) | {:.1} ms |", open_time.as_secs_f64() * 1e3);

    println!(
        "\n## Index size ({} bytes = {:.3} bytes/token)\n",
        index.size_bytes(),
        index.size_bytes() as f64 / n as f64
    );
    println!("| component | bytes | bytes/token |\n|---|---|---|");
    for (name, bytes) in index.size_breakdown() {
        println!("| {name} | {bytes} | {:.4} |", bytes as f64 / n as f64);
    }

    // ---- queries ----
    let mut rng = Rng(0x5EA1_2026);
    let long_docs: Vec<u32> =
        (0..docs.len() as u32).filter(|&d| docs[d as usize].len() >= 4).collect();
    let prefixes: Vec<Vec<TokenId>> = (0..args.queries)
        .map(|_| {
            let d = &docs[long_docs[rng.below(long_docs.len())] as usize];
            let off = rng.below(d.len() - 3);
            d[off..off + 4].to_vec()
        })
        .collect();
    println!(
        "\n## Query latency (µs of thread CPU time, clock overhead of {} ns subtracted; {} random \
         n-grams from the corpus, fixed seed)\n",
        clock_overhead(),
        args.queries
    );
    println!("| operation | p50 | p99 | mean | notes |\n|---|---|---|---|---|");
    let mut buf = Vec::with_capacity(65_536);
    for k in 1..=3 {
        let ranges: Vec<SaRange> = prefixes.iter().map(|p| index.range(&p[..k])).collect();
        let mut listed = 0usize;
        let s = time_each(&ranges, |&r| {
            index.continuations_into(r, &mut buf);
            listed += buf.len();
        });
        let avg_rows = ranges.iter().map(|r| r.len()).sum::<usize>() as f64 / ranges.len() as f64;
        row(
            &format!("continuations after {k} token(s)"),
            &s,
            &format!(
                "mean range {avg_rows:.0} rows, {:.1} distinct next tokens",
                listed as f64 / (ranges.len() + 100) as f64
            ),
        );
    }
    let empty = time_each(&[index.full_range()], |&r| index.continuations_into(r, &mut buf));
    row("continuations of the empty prefix", &empty, &format!("{} tokens", buf.len()));
    for k in 1..=2 {
        let steps: Vec<(SaRange, TokenId)> =
            prefixes.iter().map(|p| (index.range(&p[..k]), p[k])).collect();
        let s = time_each(&steps, |&(r, t)| {
            std::hint::black_box(index.extend(r, t));
        });
        row(&format!("extend (one backward step) after {k} token(s)"), &s, "");
    }
    let s = time_each(&prefixes, |p| {
        std::hint::black_box(index.extend(index.full_range(), p[0]));
    });
    row("extend from the empty prefix", &s, "C-array lookup");
    for k in [1usize, 3] {
        let s = time_each(&prefixes, |p| {
            std::hint::black_box(index.count(&p[..k]));
        });
        row(&format!("count of a {k}-gram"), &s, "");
    }
    let rows: Vec<usize> = (0..args.queries).map(|_| 1 + rng.below(n)).collect();
    let s = time_each(&rows, |&r| {
        std::hint::black_box(index.locate(r));
    });
    row("locate (random row)", &s, &format!("sample rate {}", index.sa_sample_rate()));
    let s = time_each(&rows, |&r| {
        std::hint::black_box(index.doc_at(index.locate(r)));
    });
    row("locate + doc_at", &s, "");
    let doc_ids: Vec<u32> =
        (0..args.queries.min(5000)).map(|_| rng.below(docs.len()) as u32).collect();
    let avg_len = doc_ids.iter().map(|&d| docs[d as usize].len()).sum::<usize>() as f64
        / doc_ids.len() as f64;
    let s = time_each(&doc_ids, |&d| {
        std::hint::black_box(index.doc_tokens(d));
    });
    row(
        "doc_tokens (whole document)",
        &s,
        &format!("mean {avg_len:.0} tokens: {:.3} µs/token", s.mean / avg_len),
    );
    for d in doc_ids.iter().take(200) {
        assert_eq!(index.doc_tokens(*d), docs[*d as usize]);
    }

    // ---- peer: fm-index 0.3 on the same layout ----
    if args.peer {
        // Same text as ours: each document separator + reversed tokens, then a trailing
        // separator; ids shifted by one so 0 is the terminator the crate requires.
        let mut text: Vec<u32> = Vec::with_capacity(n + 1);
        for d in &docs {
            text.push(separator + 1);
            text.extend(d.iter().rev().map(|&t| t + 1));
        }
        text.push(separator + 1);
        text.push(0);
        let max = *text.iter().max().unwrap();
        reset_peak();
        let base = proc_status("VmRSS:");
        let t = Instant::now();
        let peer = FMIndexWithLocate::new(&Text::with_max_character(text, max), 5)
            .expect("fm-index build");
        let peer_build = t.elapsed();
        let peer_peak = proc_status("VmHWM:").saturating_sub(base);
        println!(
            "\n## Peer: fm-index 0.3.1 `FMIndexWithLocate<u32>`, sampling level 5 (every 32nd)\n"
        );
        println!("| measure | seal-index | fm-index | ratio (fm-index / seal-index) |\n|---|---|---|---|");
        println!(
            "| build CPU time (all threads) | {:.3} s | {:.3} s | {:.1}x |",
            build_cpu.as_secs_f64(),
            peer_build.as_secs_f64(),
            peer_build.as_secs_f64() / build_cpu.as_secs_f64()
        );
        println!(
            "| build peak bytes/token | {:.2} | {:.2} | {:.1}x |",
            peak as f64 / n as f64,
            peer_peak as f64 / n as f64,
            peer_peak as f64 / peak as f64
        );
        println!(
            "| index bytes/token | {:.3} | {:.3} (heap_size) | {:.1}x |",
            index.size_bytes() as f64 / n as f64,
            peer.heap_size() as f64 / n as f64,
            peer.heap_size() as f64 / index.size_bytes() as f64
        );
        for k in [1usize, 3] {
            let reversed: Vec<Vec<u32>> =
                prefixes.iter().map(|p| p[..k].iter().rev().map(|&t| t + 1).collect()).collect();
            for (p, r) in prefixes.iter().zip(&reversed).take(200) {
                assert_eq!(
                    peer.search(r).count() as u64,
                    index.count(&p[..k]),
                    "peer disagrees on {:?}",
                    &p[..k]
                );
            }
            let ours = time_each(&prefixes, |p| {
                std::hint::black_box(index.count(&p[..k]));
            });
            let theirs = time_each(&reversed, |r| {
                std::hint::black_box(peer.search(r).count());
            });
            println!(
                "| count {k}-gram p50 / p99 (µs) | {:.2} / {:.2} | {:.2} / {:.2} | {:.1}x / {:.1}x |",
                ours.p50, ours.p99, theirs.p50, theirs.p99, theirs.p50 / ours.p50, theirs.p99 / ours.p99
            );
        }
        // Locate every occurrence of 3-grams with at most 1,000 occurrences: time per occurrence.
        let (mut ours_ns, mut theirs_ns, mut occ) = (0u128, 0u128, 0usize);
        for p in prefixes.iter().take(2000) {
            let range = index.range(&p[..3]);
            if range.len() > 1000 {
                continue;
            }
            let rev: Vec<u32> = p[..3].iter().rev().map(|&t| t + 1).collect();
            let t = cpu_ns();
            let mut ours_sum = 0usize;
            for r in range.start..range.end {
                ours_sum += index.locate(r);
            }
            ours_ns += (cpu_ns() - t) as u128;
            let t = cpu_ns();
            let theirs_sum: usize = peer.search(&rev).iter_matches().map(|m| m.locate()).sum();
            theirs_ns += (cpu_ns() - t) as u128;
            assert_eq!(ours_sum, theirs_sum, "locate disagrees");
            occ += range.len();
        }
        let (o, t) = (ours_ns as f64 / occ as f64 / 1e3, theirs_ns as f64 / occ as f64 / 1e3);
        println!("| locate, mean per occurrence (µs, {occ} occurrences of 3-grams) | {o:.2} | {t:.2} | {:.1}x |", t / o);
    }
    drop(index);
    let _ = std::fs::remove_file(&args.index_file);

    // ---- a long stream: the corpus repeated with permuted ids ----
    if args.stream_tokens > 0 {
        let mut vocab: Vec<TokenId> = docs.iter().flatten().copied().collect();
        vocab.sort_unstable();
        vocab.dedup();
        let stream = StreamDocs {
            docs: &docs,
            vocab,
            separator,
            target: args.stream_tokens,
            emitted: 0,
            i: 0,
            perm: Vec::new(),
            rng: Rng(7),
        };
        let (index, time, cpu, peak) = build_index(stream, separator);
        let n = index.num_tokens();
        println!(
            "\n## Build over a {n}-token stream (corpus repeated, ids permuted per repetition)\n"
        );
        println!("| measure | value |\n|---|---|");
        println!("| build time, wall | {:.2} s |", time.as_secs_f64());
        println!("| build CPU time, all threads | {:.2} s |", cpu.as_secs_f64());
        println!(
            "| build throughput, wall | {:.2} M tokens/s |",
            n as f64 / time.as_secs_f64() / 1e6
        );
        println!(
            "| build throughput, per CPU-second | {:.2} M tokens/s |",
            n as f64 / cpu.as_secs_f64() / 1e6
        );
        println!(
            "| build peak memory | {:.1} MB = {:.2} bytes/token |",
            peak as f64 / 1e6,
            peak as f64 / n as f64
        );
        println!("| index size | {:.3} bytes/token |", index.size_bytes() as f64 / n as f64);
        let s = time_each(&prefixes, |p| {
            let r = index.range(&p[..1]);
            index.continuations_into(r, &mut buf);
        });
        row("range + continuations after 1 token (stream index)", &s, "");
    }
    let _ = std::io::stdout().flush();
}

/// The corpus repeated until `target` tokens, each repetition with its ids permuted (a
/// shuffled bijection of the vocabulary, the separator kept), so repetitions do not collapse
/// into long repeats that would flatter suffix sorting.
struct StreamDocs<'a> {
    docs: &'a [Vec<TokenId>],
    vocab: Vec<TokenId>,
    separator: TokenId,
    target: usize,
    emitted: usize,
    i: usize,
    perm: Vec<TokenId>,
    rng: Rng,
}

impl Iterator for StreamDocs<'_> {
    type Item = Vec<TokenId>;
    fn next(&mut self) -> Option<Vec<TokenId>> {
        if self.emitted >= self.target {
            return None;
        }
        if self.i.is_multiple_of(self.docs.len()) {
            let mut shuffled = self.vocab.clone();
            for k in (1..shuffled.len()).rev() {
                shuffled.swap(k, self.rng.below(k + 1));
            }
            let max = *self.vocab.last().unwrap() as usize;
            self.perm = vec![0; max + 1];
            for (&from, &to) in self.vocab.iter().zip(&shuffled) {
                self.perm[from as usize] = to;
            }
            let _ = self.separator;
        }
        let doc: Vec<TokenId> =
            self.docs[self.i % self.docs.len()].iter().map(|&t| self.perm[t as usize]).collect();
        self.i += 1;
        self.emitted += doc.len() + 1;
        Some(doc)
    }
}
