//! `seal serve`: an HTTP API over one [`Searcher`] and a search page that shows the evidence.
//!
//! Useful for: putting an index behind a service (RAG pipelines call `POST /search`) and letting
//! people see why a passage matched (the page at `/`). Not for: anything a reverse proxy does
//! better (TLS, authentication, HTTP/2, rate limits per client); the server binds loopback by
//! default for that reason.
//!
//! # Endpoints
//!
//! | | |
//! |---|---|
//! | `POST /search` | [`api::SearchRequest`] → [`api::SearchAnswer`] (hits with evidence spans, n-grams, timings) |
//! | `GET /docs/{id}` | one passage by the corpus's id |
//! | `GET /health` | `{"status": "ok"}` |
//! | `GET /stats` | index, model, counters, latency percentiles |
//! | `GET /openapi.json` | the OpenAPI 3.0 description of all of this |
//! | `GET /` | the search page (`page.html`, `page.js`, `page.css`, embedded in the binary) |
//!
//! Every failure is a JSON `{"error": "..."}` that says what is wrong and what to do.
//!
//! # Load
//!
//! A search is CPU-bound (the model). Searches run on tokio's blocking threads through a
//! [`pool::WorkerPool`]: at most `workers` at once, at most `queue` waiting; beyond that the
//! answer is 503 with `Retry-After` at once, so excess load costs the server nothing. A search
//! that has not finished within the timeout is answered with 503 too (a queued one is then never
//! started; a running one finishes in the background and keeps its worker). On shutdown the
//! listener stops accepting and in-flight requests finish.
//!
//! Batching the model steps of concurrent queries into one step is not done: on CPU a step's
//! cost grows about linearly with its rows beyond a few beams (the model benchmark in
//! BENCHMARKS.md), so it would save little; running several searches at once, one thread each,
//! did much better (BENCHMARKS.md, "`seal serve`").
//!
//! **Architecture Invariant**: only `src/serve/` knows HTTP; nothing a client sends can panic the
//! server or take a worker for longer than one search.

pub mod api;
pub mod pool;
pub mod stats;

use crate::prompt::PromptStyle;
use crate::searcher::{Searcher, MAX_QUERY_BYTES};
use crate::{DocId, Error, ErrorKind, Result};
use api::{
    ApiError, DocAnswer, HealthAnswer, ModelAnswer, RequestLimits, SearchAnswer, ServerTimings,
    StatsAnswer,
};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pool::{PoolError, WorkerPool};
use stats::Stats;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");
const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The searcher is shared by every worker thread.
const _: () = {
    const fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<Searcher>();
};

/// How a server listens, how much work it takes on, and what it accepts.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen (default 127.0.0.1:8080, loopback only).
    pub addr: SocketAddr,
    /// Searches running at once (default: the number of CPUs).
    pub workers: usize,
    /// Searches waiting for a worker before new ones get 503 (default: 4 per worker).
    pub queue: usize,
    /// Longest a search may take, waiting included, before it is answered with 503.
    pub timeout: Duration,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest query and largest `k`.
    pub limits: RequestLimits,
    /// The prompt of a request that names none: few-shot for a base model, the trained style
    /// for a model with an adapter (`seal serve --adapter`).
    pub default_prompt: PromptStyle,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers,
            queue: 4 * workers,
            timeout: Duration::from_secs(60),
            max_body_bytes: 16 * 1024,
            limits: RequestLimits { max_query_bytes: MAX_QUERY_BYTES, max_k: 100 },
            default_prompt: PromptStyle::default(),
        }
    }
}

impl ServeConfig {
    /// Checks that the settings make sense.
    ///
    /// # Errors
    /// A limit of zero, or a query limit above what the searcher accepts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(ErrorKind::InvalidInput, m));
        if self.workers == 0 {
            return bad("--workers must be at least 1".into());
        }
        if self.limits.max_query_bytes == 0 || self.limits.max_query_bytes > MAX_QUERY_BYTES {
            return bad(format!(
                "--max-query-bytes must be between 1 and {MAX_QUERY_BYTES} (the searcher's own limit)"
            ));
        }
        if self.limits.max_k == 0 {
            return bad("--max-k must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be more than 0 seconds".into());
        }
        if self.max_body_bytes < self.limits.max_query_bytes {
            return bad(format!(
                "--max-body-bytes ({}) must be at least --max-query-bytes ({})",
                self.max_body_bytes, self.limits.max_query_bytes
            ));
        }
        Ok(())
    }
}

/// What every handler shares.
struct App {
    searcher: Arc<Searcher>,
    config: ServeConfig,
    pool: WorkerPool,
    stats: Stats,
    /// The corpus's passage ids, for `GET /docs/{id}`.
    doc_ids: HashMap<String, DocId>,
    started: Instant,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds `config.addr` and prepares the routes over `searcher`. Must be called inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// Invalid settings, or the address cannot be bound.
    pub async fn bind(config: ServeConfig, searcher: Arc<Searcher>) -> Result<Server> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.addr).await.map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "cannot listen on {}: {e}; choose another --addr (port 0 picks a free one)",
                    config.addr
                ),
            )
        })?;
        let local_addr = listener.local_addr().map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot read the bound address: {e}"))
        })?;
        let router = router(searcher, config);
        Ok(Server { listener, router, local_addr })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for in-flight requests
    /// to finish.
    ///
    /// # Errors
    /// When accepting connections fails for good.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("the server stopped: {e}")))
    }
}

/// Completes on Ctrl-C, or on SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, wait forever rather than shutting down at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// The routes over `searcher` (without binding; [`Server::bind`] uses it).
pub fn router(searcher: Arc<Searcher>, config: ServeConfig) -> Router {
    let docs = searcher.docs();
    let doc_ids = (0..docs.len() as DocId)
        .filter_map(|d| docs.get(d).map(|doc| (doc.id.to_owned(), d)))
        .collect();
    let app = Arc::new(App {
        pool: WorkerPool::new(config.workers, config.queue),
        searcher,
        config,
        stats: Stats::default(),
        doc_ids,
        started: Instant::now(),
    });
    Router::new()
        .route("/", get(page))
        .route(
            "/page.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], PAGE_JS) }),
        )
        .route(
            "/page.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], PAGE_CSS) }),
        )
        .route("/search", post(search))
        .route("/docs/{id}", get(doc))
        .route("/health", get(|| async { Json(HealthAnswer { status: "ok" }) }))
        .route("/stats", get(stats))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .with_state(app)
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE_HTML)
}

async fn search(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    match run_search(&app, &headers, body, arrived).await {
        Ok(answer) => {
            Stats::bump(&app.stats.served);
            app.stats.record_latency(answer.server.total_ms);
            Json(answer).into_response()
        }
        Err(e) => {
            if e.status.is_client_error() {
                Stats::bump(&app.stats.bad_requests);
            } else if e.status == StatusCode::INTERNAL_SERVER_ERROR {
                Stats::bump(&app.stats.failed);
            }
            e.into_response()
        }
    }
}

async fn run_search(
    app: &App,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
    arrived: Instant,
) -> std::result::Result<SearchAnswer, ApiError> {
    check_json_content_type(headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than this server's limit of {} bytes; send a shorter query",
                    app.config.max_body_bytes
                ),
            )
        } else {
            ApiError::new(rejection.status(), format!("the body could not be read: {rejection}"))
        }
    })?;
    let request = api::parse_search_request(&body)?
        .validate(&app.config.limits, app.config.default_prompt)?;
    let deadline = arrived + app.config.timeout;
    let searcher = Arc::clone(&app.searcher);
    let (query, settings) = (request.query, request.settings);
    let outcome = app.pool.run(deadline, move || searcher.search(&query, &settings)).await;
    let (result, times) = match outcome {
        Ok(done) => done,
        Err(PoolError::Full) => {
            Stats::bump(&app.stats.rejected_overload);
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server is busy ({} searches running, {} waiting); retry after the time in Retry-After",
                    app.pool.workers(),
                    app.pool.queue_capacity()
                ),
            );
            e.retry_after_s = Some(retry_after_s(app));
            return Err(e);
        }
        Err(PoolError::TimedOut) => {
            Stats::bump(&app.stats.timed_out);
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the search did not finish within this server's limit of {:.1} s (waiting \
                     included); retry later, or ask for less work (smaller \"beam\", \"titles\": false)",
                    app.config.timeout.as_secs_f64()
                ),
            );
            e.retry_after_s = Some(retry_after_s(app));
            return Err(e);
        }
        Err(PoolError::Panicked) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the search failed inside the engine (a bug: please report the query); other searches are not affected",
            ))
        }
    };
    let mut response = result.map_err(|e| match e.kind() {
        ErrorKind::InvalidInput => ApiError::bad_request(e.to_string()),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the search failed: {e}")),
    })?;
    if !request.include_ngrams {
        response.ngrams.clear();
    }
    Ok(SearchAnswer {
        response,
        server: ServerTimings {
            queue_ms: times.queued.as_secs_f64() * 1e3,
            total_ms: arrived.elapsed().as_secs_f64() * 1e3,
        },
    })
}

/// `POST /search` takes `application/json` (parameters such as `charset=utf-8` allowed).
fn check_json_content_type(headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?"));
    let essence =
        content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if essence.as_deref() == Some("application/json") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "the body must be JSON with the header Content-Type: application/json (got {}); \
             e.g. curl -H 'Content-Type: application/json' -d '{{\"query\": \"...\"}}'",
            content_type.map_or("no Content-Type".to_owned(), |c| format!("{c:?}"))
        ),
    ))
}

/// Seconds a turned-away client should wait: about one recent search per queued search per
/// worker, at least 1. Cheap (no sorting): under overload it runs for every rejected request.
fn retry_after_s(app: &App) -> u64 {
    let typical_s = app.stats.recent_latency_ms() / 1e3;
    let waiting = (app.pool.queued() + 1) as f64 / app.pool.workers() as f64;
    (typical_s * waiting).ceil().clamp(1.0, 3600.0) as u64
}

async fn doc(
    State(app): State<Arc<App>>,
    id: std::result::Result<Path<String>, PathRejection>,
) -> std::result::Result<Json<DocAnswer>, ApiError> {
    let result = (|| {
        let Path(id) = id.map_err(|e| ApiError::bad_request(format!("bad passage id: {e}")))?;
        let found =
            app.doc_ids.get(&id).and_then(|&d| app.searcher.docs().get(d).map(|doc| (d, doc)));
        let Some((d, doc)) = found else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no passage has id {id:?}; ids are the corpus's own (the \"id\" of a search hit)"
                ),
            ));
        };
        Ok(Json(DocAnswer {
            id: doc.id.to_owned(),
            doc: d,
            title: doc.title.to_owned(),
            text: doc.text.to_owned(),
        }))
    })();
    if result.is_err() {
        Stats::bump(&app.stats.bad_requests);
    }
    result
}

async fn stats(State(app): State<Arc<App>>) -> Json<StatsAnswer> {
    let manifest = app.searcher.manifest();
    let s = &app.stats;
    Json(StatsAnswer {
        index_dir: app.searcher.dir().display().to_string(),
        documents: manifest.num_docs,
        tokens: manifest.num_tokens,
        index_bytes: manifest.sizes.fm_index + manifest.sizes.docs,
        model: ModelAnswer {
            name: manifest.model.name.clone(),
            sha256: manifest.model.fingerprint.clone(),
        },
        workers: app.pool.workers(),
        queue_capacity: app.pool.queue_capacity(),
        running: app.pool.running(),
        queued: app.pool.queued(),
        uptime_s: app.started.elapsed().as_secs_f64(),
        queries_served: Stats::get(&s.served),
        bad_requests: Stats::get(&s.bad_requests),
        rejected_overload: Stats::get(&s.rejected_overload),
        timed_out: Stats::get(&s.timed_out),
        failed: Stats::get(&s.failed),
        latency_ms: s.percentiles(),
    })
}

const ENDPOINTS: &str =
    "POST /search, GET /docs/{id}, GET /health, GET /stats, GET /openapi.json, GET /";

async fn not_found(State(app): State<Arc<App>>, method: Method, uri: Uri) -> ApiError {
    Stats::bump(&app.stats.bad_requests);
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("there is no {method} {}; this server has {ENDPOINTS}", uri.path()),
    )
}

async fn method_not_allowed(State(app): State<Arc<App>>, method: Method, uri: Uri) -> ApiError {
    Stats::bump(&app.stats.bad_requests);
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}; this server has {ENDPOINTS}", uri.path()),
    )
}
