//! `seal serve`: the HTTP API and search page over one index (the library's [`seal::serve`]).

use super::search::searcher_builder;
use anyhow::Context;
use clap::Args;
use seal::searcher::MAX_QUERY_BYTES;
use seal::serve::api::RequestLimits;
use seal::serve::{shutdown_signal, ServeConfig, Server};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Serve an index over HTTP: a JSON API (POST /search, GET /docs/{id}, /health, /stats,
/// /openapi.json) and a search page at / that shows why each passage matched.
///
/// Without --index, serves the bundled sample of 299 Wikipedia passages (indexed on first use).
/// Stops on Ctrl-C or SIGTERM after finishing the searches in flight.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Index directory built by `seal index` (default: the bundled sample corpus).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Model: a known name or a GGUF path (default: the model the index was built with).
    #[arg(long)]
    pub model: Option<String>,
    /// Address to listen on; loopback by default (put a reverse proxy in front to expose it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Searches running at once (default: the number of CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Searches that may wait for a worker; more get 503 with Retry-After (default: 4 per worker).
    #[arg(long)]
    pub queue: Option<usize>,
    /// Seconds a search may take, waiting included, before it is answered with 503.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Longest query in bytes.
    #[arg(long, default_value_t = MAX_QUERY_BYTES)]
    pub max_query_bytes: usize,
    /// Largest k a request may ask for.
    #[arg(long, default_value_t = 100)]
    pub max_k: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,
    /// A trained adapter directory (`seal train`) merged into the model at start-up; requests
    /// that name no prompt get the prompt it was trained with.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The model's arithmetic: exact, or int8 (llama.cpp's, faster).
    #[arg(long, value_enum, default_value_t = super::search::PrecisionArg::Exact)]
    pub precision: super::search::PrecisionArg,
    /// Model cache directory (default: $SEAL_CACHE_DIR, else ~/.cache/seal).
    #[arg(long, env = "SEAL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let defaults = ServeConfig::default();
    let workers = args.workers.unwrap_or(defaults.workers);
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout < 1e6) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let builder = searcher_builder(
        args.index.as_deref(),
        args.model.as_deref(),
        args.cache_dir.as_deref(),
        true,
        args.adapter.as_deref(),
        args.precision.into(),
    );
    let default_prompt = builder.trained_prompt_style()?.unwrap_or_default();
    let config = ServeConfig {
        addr: args.addr,
        workers,
        queue: args.queue.unwrap_or(4 * workers),
        timeout: Duration::from_secs_f64(args.timeout),
        max_body_bytes: args.max_body_bytes,
        limits: RequestLimits { max_query_bytes: args.max_query_bytes, max_k: args.max_k },
        default_prompt,
    };
    config.validate()?;
    let searcher = builder.open()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config.clone(), Arc::new(searcher)).await?;
        eprintln!(
            "serving {} on http://{} ({} workers, queue {}); Ctrl-C to stop",
            server_label(&args.index),
            server.local_addr(),
            config.workers,
            config.queue
        );
        server.run(shutdown_signal()).await?;
        eprintln!("stopped: in-flight searches finished");
        anyhow::Ok(())
    })
}

fn server_label(index: &Option<PathBuf>) -> String {
    index.as_ref().map_or("the bundled sample".to_owned(), |p| p.display().to_string())
}
