//! `seal index`: build an index directory from a corpus file.

use super::progress::Bars;
use anyhow::Context;
use clap::Args;
use seal::corpus::SkippedLine;
use seal::corpus::{read_corpus, CorpusFormat, ReadOptions};
use seal::indexer::{build_index_with, ModelRef, SkippedLines, SKIPPED_LINES_FILE};
use seal::model::{hub, tokenizer::Tokenizer};
use std::path::PathBuf;

/// Build a SEAL index (FM-index over the model's token ids + passage store) from a corpus.
#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Corpus file: BEIR JSONL (`_id`, `title`, `text`), DPR TSV (`id`, `text`, `title`) or
    /// KILT TSV (`id`, `title`, `text`).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Directory to write the index to: created if missing; an index there is replaced whole
    /// when the new one is complete (it answers until then, and survives a failed build); a
    /// non-empty directory that is not a seal index is refused.
    #[arg(long)]
    pub out: PathBuf,
    /// Model whose tokenizer produces the token ids: a known name (see `seal model list`) or a
    /// path to a GGUF file. Search must use the same model.
    #[arg(long, default_value = hub::DEFAULT_MODEL)]
    pub model: String,
    /// Corpus format: beir, dpr or kilt (default: from the file extension and header).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<CorpusFormat>,
    /// Skip corpus lines that cannot be read instead of stopping at the first one; they are
    /// listed with their reasons in skipped-lines.tsv in the index directory.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Model cache directory (default: $SEAL_CACHE_DIR, else ~/.cache/seal).
    #[arg(long, env = "SEAL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_format(s: &str) -> Result<CorpusFormat, String> {
    CorpusFormat::from_name(s)
        .ok_or_else(|| format!("unknown corpus format {s:?}; use beir, dpr or kilt"))
}

pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let cache = args.cache_dir.clone().unwrap_or_else(hub::default_cache_dir);
    let gguf = hub::resolve_model(&args.model, &cache, true)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let fingerprint = hub::fingerprint(&gguf)?;

    let mut reader = read_corpus(
        &args.corpus,
        args.format,
        ReadOptions { skip_bad_lines: args.skip_bad_lines },
    )?;
    let passages = reader.by_ref().collect::<seal::Result<Vec<_>>>()?;
    let stats = reader.stats();
    anyhow::ensure!(
        !passages.is_empty(),
        "{} holds no passage; check the file and its format",
        args.corpus.display()
    );

    let bars = Bars::new(!args.json);
    let skipped = SkippedLines { total: stats.bad_lines, listed: reader.skipped_lines() };
    let manifest = build_index_with(
        passages,
        skipped,
        &tokenizer,
        ModelRef { name: args.model.clone(), fingerprint },
        &args.out,
        &|stage, done, total| bars.update(stage, done, total),
    )
    .with_context(|| format!("building the index in {}", args.out.display()))?;
    bars.finish();

    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        let bytes = manifest.sizes.fm_index + manifest.sizes.docs;
        println!(
            "indexed {} passages ({} tokens) into {} in {:.1} s",
            manifest.num_docs,
            manifest.num_tokens,
            args.out.display(),
            manifest.build_seconds
        );
        println!(
            "  FM-index {:.2} MB ({:.2} bytes/token), passages {:.2} MB, total {:.2} MB",
            manifest.sizes.fm_index as f64 / 1e6,
            manifest.sizes.fm_index as f64 / manifest.num_tokens.max(1) as f64,
            manifest.sizes.docs as f64 / 1e6,
            bytes as f64 / 1e6
        );
        if stats.bad_lines > 0 || stats.empty_passages > 0 {
            println!(
                "  skipped {} unreadable lines and {} empty passages",
                stats.bad_lines, stats.empty_passages
            );
        }
    }
    if stats.bad_lines > 0 {
        // On stderr with --json, so that stdout stays one JSON document.
        let note = skipped_note(stats.bad_lines, reader.skipped_lines(), &args.out);
        if args.json {
            eprintln!("{note}");
        } else {
            println!("{note}");
        }
    }
    Ok(())
}

/// How many of the skipped line numbers the summary shows.
const SHOWN_SKIPPED_LINES: usize = 10;

/// `  unreadable lines: 2, 7, 9 (all of them, with reasons, in DIR/skipped-lines.tsv)`.
fn skipped_note(total: u64, listed: &[SkippedLine], out: &std::path::Path) -> String {
    let shown: Vec<String> =
        listed.iter().take(SHOWN_SKIPPED_LINES).map(|s| s.line.to_string()).collect();
    let which = if total as usize > shown.len() {
        format!("the first {} of {total}", shown.len())
    } else {
        "all of them".to_owned()
    };
    format!(
        "  unreadable lines: {} ({which}; the list with reasons is in {})",
        shown.join(", "),
        out.join(SKIPPED_LINES_FILE).display()
    )
}
