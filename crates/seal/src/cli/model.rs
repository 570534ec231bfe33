//! `seal model`: obtain (`pull`), list, inspect (`info`) language models and try their
//! tokenizer (`tokenize`). Glue over [`seal::model::hub`] and [`seal::model::tokenizer`].

use anyhow::Context;
use clap::{Args, Subcommand};
use seal::model::hub::{self, CachedModel};
use seal::model::tokenizer::{read_gguf_metadata, Tokenizer};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Args, Debug, Clone)]
struct CacheArgs {
    /// Where models are cached [default: $SEAL_CACHE_DIR, else $XDG_CACHE_HOME/seal, else ~/.cache/seal].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl CacheArgs {
    fn dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(hub::default_cache_dir)
    }
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Download a known model into the cache (verifies its sha256; does nothing when cached).
    Pull {
        /// Model name (see `seal model list --known`).
        #[arg(default_value = hub::DEFAULT_MODEL)]
        name: String,
        #[command(flatten)]
        cache: CacheArgs,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List the cached models (size, path, licence, sha256).
    List {
        #[command(flatten)]
        cache: CacheArgs,
        /// Also list the known models that are not cached yet.
        #[arg(long)]
        known: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show a model's architecture, vocabulary, context length, quantization and tokenizer.
    Info {
        /// A known model name (pulled if needed) or a path to a .gguf file.
        model: String,
        #[command(flatten)]
        cache: CacheArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Tokenize a text with a model's tokenizer: ids, token strings and byte spans.
    Tokenize {
        /// A known model name (pulled if needed) or a path to a .gguf file.
        model: String,
        /// The text to tokenize (no BOS/EOS is added).
        #[arg(required_unless_present = "file")]
        text: Option<String>,
        /// Read the text from this file instead.
        #[arg(long, value_name = "PATH", conflicts_with = "text")]
        file: Option<PathBuf>,
        /// Print only counts and timings (tokenizer load, encoding speed).
        #[arg(long, conflicts_with = "json")]
        summary: bool,
        #[command(flatten)]
        cache: CacheArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write a GGUF with a trained adapter (`seal train`) merged in; it loads like any model
    /// (`--model FILE.gguf`) and opens the base model's indexes.
    Merge {
        /// The adapter directory.
        #[arg(long, value_name = "DIR")]
        adapter: PathBuf,
        /// The merged GGUF to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The base model [default: the one named in the adapter's manifest].
        #[arg(long)]
        model: Option<String>,
        /// Store the merged matrices as dense f32 (exact) instead of Q8_0.
        #[arg(long)]
        f32: bool,
        #[command(flatten)]
        cache: CacheArgs,
    },
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Pull { name, cache, quiet } => pull(&name, &cache.dir(), !quiet),
        ModelCommand::List { cache, known, json } => list(&cache.dir(), known, json),
        ModelCommand::Info { model, cache, json } => info(&model, &cache.dir(), json),
        ModelCommand::Tokenize { model, text, file, summary, cache, json } => {
            let text = match (text, file) {
                (Some(text), _) => text,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?,
                (None, None) => anyhow::bail!("give a TEXT or --file PATH"),
            };
            tokenize(&model, &text, &cache.dir(), json, summary)
        }
        ModelCommand::Merge { adapter, out, model, f32, cache } => {
            merge(&adapter, &out, model.as_deref(), f32, &cache.dir())
        }
    }
}

fn pull(name: &str, cache_dir: &std::path::Path, progress: bool) -> anyhow::Result<()> {
    let spec = hub::find_model(name).with_context(|| {
        let names: Vec<&str> = hub::known_models().iter().map(|m| m.name).collect();
        format!("unknown model `{name}`; known models: {}", names.join(", "))
    })?;
    if progress {
        eprintln!("pulling {} ({}; licence: {})", spec.name, spec.description, spec.license);
    }
    let path = hub::pull(spec, cache_dir, progress)?;
    if progress {
        eprintln!("ok: {} (sha256 {})", path.display(), spec.sha256);
    }
    println!("{}", path.display());
    Ok(())
}

fn cached_json(model: &CachedModel) -> serde_json::Value {
    serde_json::json!({
        "name": model.name,
        "path": model.path,
        "size_bytes": model.size_bytes,
        "license": model.license,
        "sha256": model.sha256,
        "verified": model.verified,
        "known": model.spec.is_some(),
    })
}

fn list(cache_dir: &std::path::Path, known: bool, json: bool) -> anyhow::Result<()> {
    let cached = hub::list_cached(cache_dir)?;
    let missing: Vec<&hub::ModelSpec> = if known {
        hub::known_models()
            .iter()
            .filter(|spec| !cached.iter().any(|c| c.spec == Some(*spec)))
            .collect()
    } else {
        Vec::new()
    };
    if json {
        let value = serde_json::json!({
            "cache_dir": cache_dir,
            "cached": cached.iter().map(cached_json).collect::<Vec<_>>(),
            "not_cached": missing.iter().map(|s| serde_json::json!({
                "name": s.name, "license": s.license, "size_bytes": s.size, "sha256": s.sha256,
                "packages": s.requirements(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if cached.is_empty() {
        println!("no models cached in {} (run `seal model pull`)", cache_dir.display());
    }
    for model in &cached {
        let status = if model.spec.is_none() {
            "placed by hand"
        } else if model.verified {
            "verified"
        } else {
            "SHA256 MISMATCH: run `seal model pull` again"
        };
        println!(
            "{:<14} {:>7.1} MB  {}\n{:<14} licence: {}; sha256 {} ({status})",
            model.name,
            model.size_bytes as f64 / 1e6,
            model.path.display(),
            "",
            model.license,
            model.sha256,
        );
    }
    for spec in missing {
        println!(
            "{:<14} {:>7.1} MB  not cached (`seal model pull {}`); licence: {}",
            spec.name,
            spec.size as f64 / 1e6,
            spec.name,
            spec.license
        );
    }
    Ok(())
}

/// GGUF `general.file_type` codes (llama.cpp's `llama_ftype`) for the common quantizations.
fn file_type_name(code: u32) -> &'static str {
    match code {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => "other",
    }
}

fn info(model: &str, cache_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    use candle_core::quantized::gguf_file::Value;
    let path = hub::resolve_model(model, cache_dir, true)?;
    let content = read_gguf_metadata(&path)?;
    let meta = |key: &str| content.metadata.get(key);
    let text = |key: &str| match meta(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let number = |key: &str| -> Option<u64> {
        match meta(key)? {
            Value::U8(v) => Some(u64::from(*v)),
            Value::U16(v) => Some(u64::from(*v)),
            Value::U32(v) => Some(u64::from(*v)),
            Value::U64(v) => Some(*v),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    };
    let arch = text("general.architecture").unwrap_or_else(|| "unknown".to_string());
    let arch_key = |suffix: &str| number(&format!("{arch}.{suffix}"));
    let vocab_size = match meta("tokenizer.ggml.tokens") {
        Some(Value::Array(tokens)) => Some(tokens.len() as u64),
        _ => arch_key("vocab_size"),
    };
    let merges = match meta("tokenizer.ggml.merges") {
        Some(Value::Array(m)) => m.len(),
        _ => 0,
    };
    let file_type = number("general.file_type").map(|c| file_type_name(c as u32));
    let mut tensor_types: std::collections::BTreeMap<String, usize> = Default::default();
    for tensor in content.tensor_infos.values() {
        *tensor_types.entry(format!("{:?}", tensor.ggml_dtype)).or_default() += 1;
    }
    let parameters: usize = content.tensor_infos.values().map(|t| t.shape.elem_count()).sum();
    let size_bytes = std::fs::metadata(&path)?.len();
    let tokenizer_model = text("tokenizer.ggml.model");
    let tokenizer_pre = text("tokenizer.ggml.pre");
    let token_name = |key: &str| -> Option<String> {
        let id = number(key)? as usize;
        match meta("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => match tokens.get(id) {
                Some(Value::String(s)) => Some(format!("{id} {s:?}")),
                _ => None,
            },
            _ => None,
        }
    };
    let value = serde_json::json!({
        "path": path,
        "size_bytes": size_bytes,
        "sha256": hub::fingerprint(&path)?,
        "name": text("general.name"),
        "license": text("general.license"),
        "architecture": arch,
        "parameters": parameters,
        "context_length": arch_key("context_length"),
        "embedding_length": arch_key("embedding_length"),
        "block_count": arch_key("block_count"),
        "head_count": arch_key("attention.head_count"),
        "head_count_kv": arch_key("attention.head_count_kv"),
        "vocab_size": vocab_size,
        "quantization": file_type,
        "tensor_types": tensor_types,
        "tokenizer": {
            "model": tokenizer_model,
            "pre": tokenizer_pre,
            "merges": merges,
            "bos": token_name("tokenizer.ggml.bos_token_id"),
            "eos": token_name("tokenizer.ggml.eos_token_id"),
            "chat_template": meta("tokenizer.chat_template").is_some(),
        },
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!("path            {}", path.display());
    println!(
        "size            {:.1} MB, sha256 {}",
        size_bytes as f64 / 1e6,
        show(&value["sha256"])
    );
    println!("name            {} (licence: {})", show(&value["name"]), show(&value["license"]));
    println!(
        "architecture    {} ({:.1} M parameters)",
        show(&value["architecture"]),
        parameters as f64 / 1e6
    );
    println!(
        "layers          {} blocks, {} wide, {} heads ({} KV)",
        show(&value["block_count"]),
        show(&value["embedding_length"]),
        show(&value["head_count"]),
        show(&value["head_count_kv"])
    );
    println!("context length  {}", show(&value["context_length"]));
    println!("vocab size      {}", show(&value["vocab_size"]));
    let types: Vec<String> = tensor_types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    println!("quantization    {} (tensors: {})", show(&value["quantization"]), types.join(", "));
    println!(
        "tokenizer       {} (pre: {}, {}), bos {}, eos {}",
        show(&value["tokenizer"]["model"]),
        show(&value["tokenizer"]["pre"]),
        if merges > 0 {
            format!("{merges} merges")
        } else {
            "no merges: pieces merge by score".to_string()
        },
        show(&value["tokenizer"]["bos"]),
        show(&value["tokenizer"]["eos"])
    );
    Ok(())
}

fn tokenize(
    model: &str,
    text: &str,
    cache_dir: &std::path::Path,
    json: bool,
    summary: bool,
) -> anyhow::Result<()> {
    let path = hub::resolve_model(model, cache_dir, true)?;
    let started = std::time::Instant::now();
    let tokenizer = Tokenizer::from_gguf(&path)?;
    let loaded = started.elapsed();
    if summary {
        // Line by line, as an indexer would encode documents.
        let started = std::time::Instant::now();
        let mut tokens = 0usize;
        for line in text.lines() {
            tokens += tokenizer.encode(line)?.len();
        }
        let encoding = started.elapsed().as_secs_f64();
        println!(
            "{} lines, {} bytes -> {tokens} tokens; tokenizer loaded in {:.2} s; encoded in \
             {encoding:.2} s ({:.2} MB/s, {:.0} tokens/s, one thread)",
            text.lines().count(),
            text.len(),
            loaded.as_secs_f64(),
            text.len() as f64 / 1e6 / encoding,
            tokens as f64 / encoding
        );
        return Ok(());
    }
    let (ids, offsets) = tokenizer.encode_with_offsets(text)?;
    if json {
        let tokens: Vec<serde_json::Value> = ids
            .iter()
            .zip(&offsets)
            .map(|(&id, &(start, end))| {
                serde_json::json!({
                    "id": id,
                    "piece": tokenizer.token_piece(id),
                    "text": tokenizer.token_text(id),
                    "start": start,
                    "end": end,
                    "word_start": tokenizer.is_word_start(id),
                })
            })
            .collect();
        let value =
            serde_json::json!({ "ids": ids, "tokens": tokens, "decoded": tokenizer.decode(&ids)? });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{} tokens: {:?}", ids.len(), ids);
    for (&id, &(start, end)) in ids.iter().zip(&offsets) {
        println!(
            "{id:>7}  {:<20} {:<20} [{start}..{end})",
            format!("{:?}", tokenizer.token_piece(id).unwrap_or_default()),
            format!("{:?}", tokenizer.token_text(id).unwrap_or_default()),
        );
    }
    Ok(())
}

fn merge(
    adapter: &std::path::Path,
    out: &std::path::Path,
    model: Option<&str>,
    f32: bool,
    cache: &std::path::Path,
) -> anyhow::Result<()> {
    use seal::model::adapter::{read_adapter_manifest, write_merged_gguf, MergeFormat};
    let manifest = read_adapter_manifest(adapter)?;
    let base = hub::resolve_model(model.unwrap_or(&manifest.base_model.name), cache, true)?;
    let format = if f32 { MergeFormat::F32 } else { MergeFormat::Q8_0 };
    write_merged_gguf(&base, adapter, out, format)?;
    eprintln!(
        "wrote {} ({:?} merged matrices; search it with --model {} and the prompt style `{}`, picked automatically)",
        out.display(),
        format,
        out.display(),
        manifest.prompt_style
    );
    Ok(())
}
