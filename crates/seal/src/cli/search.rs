//! `seal search`: answer one query (or a file of queries) from an index, printing ranked passages
//! with the n-grams that matched, highlighted.

use super::progress::Bars;
use anyhow::Context;
use clap::Args;
use seal::decode::BeamSettings;
use seal::model::Precision;
use seal::prompt::PromptStyle;
use seal::score::{Ranking, ScoringSettings};
use seal::searcher::{Field, Hit, SearchResponse, SearchSettings, Searcher, SearcherBuilder};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Search an index: the model writes n-grams for the query, the FM-index keeps those that occur,
/// passages are ranked by the n-grams they contain.
///
/// Without --index, searches a bundled sample of 299 Wikipedia passages (indexed on first use).
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The query. Omit it when using --queries.
    pub query: Option<String>,
    /// Index directory built by `seal index` (default: the bundled sample corpus).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Model: a known name or a GGUF path (default: the model the index was built with).
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// A trained adapter directory (`seal train`), merged into the model at load; the search
    /// then uses the prompt style the adapter was trained with.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Print JSON (one object per query) instead of text.
    #[arg(long)]
    pub json: bool,
    /// A file of queries to run in a batch: BEIR queries.jsonl (`_id`, `text`) or TSV (`id<TAB>text`).
    #[arg(long, requires = "run")]
    pub queries: Option<PathBuf>,
    /// Where to write the TREC run file of a --queries batch.
    #[arg(long, requires = "queries")]
    pub run: Option<PathBuf>,
    /// Also print time per stage and the generated n-grams with their weights.
    #[arg(short, long)]
    pub verbose: bool,
    /// Model cache directory (default: $SEAL_CACHE_DIR, else ~/.cache/seal).
    #[arg(long, env = "SEAL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Search settings of `search` and `serve`, with SEAL's defaults.
#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// Passages to return.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub k: usize,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// How n-grams are generated and passages ranked (shared by `search`, `eval` and `serve`).
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Beam size of the constrained beam search (SEAL: 15).
    #[arg(long, default_value_t = 15)]
    pub beam: usize,
    /// Maximum tokens of a generated passage n-gram (SEAL: 10).
    #[arg(long, default_value_t = 10)]
    pub max_tokens: usize,
    /// Ranking: intersective (SEAL's headline method) or lm+fm (best single n-gram).
    #[arg(long, default_value = "intersective")]
    pub ranking: Ranking,
    /// Prompt design: few-shot (two worked examples) or plain (the fine-tuning prompt).
    #[arg(long, default_value = "few-shot")]
    pub prompt: PromptStyle,
    /// Do not generate title n-grams.
    #[arg(long)]
    pub no_titles: bool,
    /// Do not add the query's own 1-3-word spans.
    #[arg(long)]
    pub no_query_ngrams: bool,
    /// Drop generated passage n-grams that end inside a word in most of their occurrences
    /// (fragments like "autoph"); not in SEAL, chosen on dev queries (`false` = SEAL's behaviour).
    #[arg(long, value_name = "BOOL", default_value_t = ScoringSettings::default().whole_words, action = clap::ArgAction::Set)]
    pub whole_words: bool,
    /// Also use title prefixes: titles still open after 15 generated tokens count as prefixes
    /// (matching every passage whose title starts so). Not in SEAL, whose short Wikipedia titles
    /// end within 15 tokens; SciFact's mostly do not (`false` = complete titles only, SEAL's way).
    #[arg(long, value_name = "BOOL", default_value_t = BeamSettings::default().title_prefixes, action = clap::ArgAction::Set)]
    pub title_prefixes: bool,
    /// Length normalization of intersective scores, b in [0, 1]: a passage's score is divided by
    /// 1 − b + b·(its tokens / the mean), so long passages stop topping unrelated queries. Not in
    /// SEAL (`0` = SEAL's behaviour, right for equal-length passages); the default was chosen on
    /// dev queries (BENCHMARKS.md, "Length normalization").
    #[arg(long, value_name = "B", default_value_t = ScoringSettings::default().length_norm)]
    pub length_norm: f64,
    /// The model's arithmetic: exact (the default) or int8 (llama.cpp's, about 35 % less model
    /// time per query).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Exact)]
    pub precision: PrecisionArg,
}

/// The model's arithmetic, chosen when it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// Log-probabilities within 0.005 nats of a float64 forward pass (16-bit activations on
    /// AVX-512 VNNI CPUs).
    Exact,
    /// llama.cpp's arithmetic (8-bit activations): faster, about as far from the exact model as
    /// llama.cpp is (0.12 nats on average over the golden top-20, up to about 1 on rare tokens).
    Int8,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::Exact => Precision::Exact,
            PrecisionArg::Int8 => Precision::Int8Activations,
        }
    }
}

impl SettingsArgs {
    /// The library's settings.
    pub fn to_settings(&self) -> SearchSettings {
        SearchSettings { k: self.k, ..self.decode.to_settings() }
    }
}

impl DecodeArgs {
    /// The library's settings (k = 10).
    pub fn to_settings(&self) -> SearchSettings {
        SearchSettings {
            beam: BeamSettings {
                beam: self.beam,
                max_body_tokens: self.max_tokens,
                title_prefixes: self.title_prefixes,
                ..BeamSettings::default()
            },
            prompt: self.prompt,
            titles: !self.no_titles,
            query_ngrams: !self.no_query_ngrams,
            scoring: ScoringSettings {
                ranking: self.ranking,
                whole_words: self.whole_words,
                length_norm: self.length_norm,
                ..ScoringSettings::default()
            },
            ..SearchSettings::default()
        }
    }
}

/// The library's [`SearcherBuilder`] as the subcommands use it: a download bar and the sample
/// build's bars on stderr when `progress`.
pub fn searcher_builder(
    index: Option<&Path>,
    model: Option<&str>,
    cache_dir: Option<&Path>,
    progress: bool,
    adapter: Option<&Path>,
    precision: Precision,
) -> SearcherBuilder {
    let builder = SearcherBuilder::new()
        .index(index)
        .model(model)
        .cache_dir(cache_dir)
        .adapter(adapter)
        .precision(precision)
        .download_progress(progress);
    if !progress {
        return builder;
    }
    let bars = Bars::new(true);
    // The bars finish when the builder drops them, after opening.
    builder.on_progress(Box::new(move |stage, done, total| bars.update(stage, done, total)))
}

/// Opens a searcher as [`searcher_builder`] describes, with the prompt style a trained model
/// must be searched with (`None` for a base model).
pub fn open_searcher(
    index: Option<&Path>,
    model: Option<&str>,
    cache_dir: Option<&Path>,
    progress: bool,
    adapter: Option<&Path>,
    precision: Precision,
) -> anyhow::Result<(Searcher, Option<PromptStyle>)> {
    let builder = searcher_builder(index, model, cache_dir, progress, adapter, precision);
    let style = builder.trained_prompt_style()?;
    Ok((builder.open()?, style))
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let mut settings = args.settings.to_settings();
    // The library's and the API's own ranges, checked before the model loads.
    settings.check().map_err(|e| anyhow::anyhow!(e.for_command_line()))?;
    let progress = !args.json;
    let (searcher, trained_style) = open_searcher(
        args.index.as_deref(),
        args.model.as_deref(),
        args.cache_dir.as_deref(),
        progress,
        args.adapter.as_deref(),
        args.settings.decode.precision.into(),
    )?;
    if let Some(style) = trained_style {
        settings.prompt = style;
    }
    if let (Some(queries), Some(run)) = (&args.queries, &args.run) {
        return run_batch(&searcher, &settings, queries, run, args.json);
    }
    let Some(query) = args.query.as_deref() else {
        anyhow::bail!("give a query, e.g. `seal search \"who wrote hamlet\"`, or a batch with --queries FILE --run OUT");
    };
    let response = searcher.search(query, &settings)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        print_response(&response, args.verbose);
    }
    Ok(())
}

fn run_batch(
    searcher: &Searcher,
    settings: &SearchSettings,
    queries: &Path,
    run: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let queries: Vec<(String, String)> =
        seal::eval::dataset::read_queries(queries)?.into_iter().map(|q| (q.id, q.text)).collect();
    let bars = Bars::new(!json);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(run).with_context(|| format!("cannot create {}", run.display()))?,
    );
    let started = Instant::now();
    let mut totals = Vec::with_capacity(queries.len());
    for (i, (id, text)) in queries.iter().enumerate() {
        let response = searcher.search(text, settings).with_context(|| format!("query {id}"))?;
        for hit in &response.hits {
            writeln!(out, "{id} Q0 {} {} {:.6} seal", hit.id, hit.rank, hit.score)?;
        }
        if json {
            println!("{}", serde_json::to_string(&response)?);
        }
        totals.push(response.timings.total_ms);
        bars.update("searching", i as u64 + 1, queries.len() as u64);
    }
    bars.finish();
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    totals.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        totals.get(((totals.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
    };
    eprintln!(
        "{} queries in {:.1} s ({:.2} queries/s), latency p50 {:.0} ms, p95 {:.0} ms; run written to {}",
        queries.len(),
        secs,
        queries.len() as f64 / secs.max(1e-9),
        pct(0.5),
        pct(0.95),
        run.display()
    );
    Ok(())
}

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn print_response(r: &SearchResponse, verbose: bool) {
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (bold, dim, reset) = if color { (BOLD, DIM, RESET) } else { ("", "", "") };
    if r.hits.is_empty() {
        println!("no passage matched");
    }
    for hit in &r.hits {
        println!(
            "{bold}{}. {}{reset} {dim}[{}] score {:.2}{reset}",
            hit.rank, hit.title, hit.id, hit.score
        );
        println!("   {}", snippet(hit, color));
        let matched: Vec<String> = hit
            .evidence
            .iter()
            .filter(|e| e.contribution > 0.0)
            .take(8)
            .map(|e| format!("\"{}\" {:.2}", e.ngram, e.contribution))
            .collect();
        if !matched.is_empty() {
            println!("   {dim}matched: {}{reset}", matched.join(", "));
        }
    }
    if verbose {
        let t = &r.timings;
        println!(
            "\n{bold}time{reset}: body {:.0} ms, query n-grams {:.0} ms, titles {:.0} ms, scoring {:.0} ms, total {:.0} ms",
            t.body_ms, t.query_ngrams_ms, t.titles_ms, t.scoring_ms, t.total_ms
        );
        println!("{bold}n-grams{reset} (weight, source, log-prob, count):");
        for n in r.ngrams.iter().filter(|n| n.weight > 0.0).take(40) {
            println!(
                "  {:>8.2}  {:<8} {:>7.2} {:>7}  {}",
                n.weight,
                format!("{:?}", n.source).to_lowercase(),
                n.logprob,
                n.count,
                n.text
            );
        }
    }
}

/// About 300 characters of the passage text around its strongest match, matches highlighted.
fn snippet(hit: &Hit, color: bool) -> String {
    const WIDTH: usize = 300;
    let text = &hit.text;
    let mut spans: Vec<(usize, usize, f64)> = hit
        .evidence
        .iter()
        .flat_map(|e| {
            e.spans
                .iter()
                .filter(|s| s.field == Field::Text)
                .map(move |s| (s.byte_start, s.byte_end, e.contribution))
        })
        .collect();
    let center = spans.iter().max_by(|a, b| a.2.total_cmp(&b.2)).map_or(0, |s| s.0);
    let mut start = center.saturating_sub(WIDTH / 3);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + WIDTH).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    spans.retain(|s| s.0 >= start && s.1 <= end);
    spans.sort_by_key(|s| s.0);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut pos = start;
    for (a, b, _) in spans {
        if a < pos {
            continue;
        }
        out.push_str(&text[pos..a]);
        if color {
            out.push_str("\x1b[1;33m");
            out.push_str(&text[a..b]);
            out.push_str(RESET);
        } else {
            out.push('[');
            out.push_str(&text[a..b]);
            out.push(']');
        }
        pos = b;
    }
    out.push_str(&text[pos..end]);
    if end < text.len() {
        out.push('…');
    }
    out
}
