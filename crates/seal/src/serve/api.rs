//! The HTTP API's request and response bodies, the validation of a search request into
//! [`SearchSettings`], and the JSON error every failure is answered with.
//!
//! Useful for: knowing exactly what a client may send and what it gets back (the OpenAPI
//! description in `openapi.json` describes these types; a test keeps the two in step).
//! Not for: routing, queueing or running searches (that is [`super`] and [`super::pool`]).

use crate::decode::BeamSettings;
use crate::prompt::PromptStyle;
use crate::score::{Ranking, ScoringSettings};
use crate::searcher::{SearchResponse, SearchSettings};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Largest beam size and n-gram lengths a request may ask for: the library's own limits
/// ([`SearchSettings::check`] is the one validation the CLI and the API share).
pub use crate::searcher::{MAX_BEAM, MAX_NGRAM_TOKENS};

/// `POST /search`: a query and, optionally, the settings of [`SearchSettings`]. Fields not listed
/// here are an error (a misspelt setting must not be silently ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query (required).
    pub query: Option<String>,
    /// Passages to return, `1..=max_k` (default 10).
    pub k: Option<usize>,
    /// Beam size of the constrained beam search, `1..=64` (default 15).
    pub beam: Option<usize>,
    /// Maximum generated tokens of a body n-gram, `1..=32` (default 10).
    pub max_tokens: Option<usize>,
    /// Maximum generated tokens of a title, `1..=32` (default 15).
    pub max_title_tokens: Option<usize>,
    /// Also use title prefixes, not only complete titles (default true; see `--title-prefixes`).
    pub title_prefixes: Option<bool>,
    /// `"intersective"` (default) or `"lm+fm"`.
    pub ranking: Option<String>,
    /// Length normalization of intersective scores, `0..=1` (default 0.25; 0 = SEAL's).
    pub length_norm: Option<f64>,
    /// `"few-shot"` (default) or `"plain"`.
    pub prompt: Option<String>,
    /// Generate title n-grams (default true).
    pub titles: Option<bool>,
    /// Add the query's own 1-3-word spans (default true).
    pub query_ngrams: Option<bool>,
    /// Compute the matched spans of every hit (default true).
    pub evidence: Option<bool>,
    /// Include the list of generated n-grams in the answer (default true).
    pub ngrams: Option<bool>,
}

/// The fields a [`SearchRequest`] accepts, in declaration order (checked against the struct and
/// the OpenAPI description by tests).
pub const SEARCH_REQUEST_FIELDS: [&str; 13] = [
    "query",
    "k",
    "beam",
    "max_tokens",
    "max_title_tokens",
    "title_prefixes",
    "ranking",
    "length_norm",
    "prompt",
    "titles",
    "query_ngrams",
    "evidence",
    "ngrams",
];

/// Limits a server applies to every search request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest query in bytes (at most [`crate::searcher::MAX_QUERY_BYTES`]).
    pub max_query_bytes: usize,
    /// Largest `k`.
    pub max_k: usize,
}

/// A validated search: the query and the library's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSearch {
    /// The query as sent.
    pub query: String,
    /// The settings it maps onto.
    pub settings: SearchSettings,
    /// Whether the answer lists the generated n-grams.
    pub include_ngrams: bool,
}

impl SearchRequest {
    /// Checks every field and maps the request onto [`SearchSettings`] (unset fields keep SEAL's
    /// defaults; an unset `prompt` is `default_prompt`, the style the served model wants).
    ///
    /// # Errors
    /// An [`ApiError`] (400) naming the field and the accepted range.
    pub fn validate(
        self,
        limits: &RequestLimits,
        default_prompt: PromptStyle,
    ) -> Result<ValidSearch, ApiError> {
        let query = self.query.ok_or_else(|| {
            ApiError::bad_request(
                "the request has no \"query\"; send {\"query\": \"your words\"} (and optionally \"k\" and other settings)",
            )
        })?;
        if query.trim().is_empty() {
            return Err(ApiError::bad_request("\"query\" is empty; type some words"));
        }
        if query.len() > limits.max_query_bytes {
            return Err(ApiError::bad_request(format!(
                "\"query\" is {} bytes long; this server accepts at most {} bytes, shorten it",
                query.len(),
                limits.max_query_bytes
            )));
        }
        let defaults = SearchSettings::default();
        // The server's own cap on k; every other range is the library's (`check` below).
        if let Some(k) = self.k.filter(|k| !(1..=limits.max_k).contains(k)) {
            return Err(ApiError::bad_request(format!(
                "\"k\" is {k}; it must be between 1 and {}",
                limits.max_k
            )));
        }
        let ranking = match self.ranking.as_deref() {
            None => defaults.scoring.ranking,
            Some("intersective") => Ranking::Intersective,
            Some("lm+fm") => Ranking::LmFm,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "\"ranking\" is {other:?}; use \"intersective\" or \"lm+fm\""
                )))
            }
        };
        let prompt = match self.prompt.as_deref() {
            None => default_prompt,
            Some(name) => name
                .parse::<PromptStyle>()
                .map_err(|e| ApiError::bad_request(format!("\"prompt\": {e}")))?,
        };
        let settings = SearchSettings {
            k: self.k.unwrap_or(defaults.k),
            beam: BeamSettings {
                beam: self.beam.unwrap_or(defaults.beam.beam),
                max_body_tokens: self.max_tokens.unwrap_or(defaults.beam.max_body_tokens),
                max_title_tokens: self.max_title_tokens.unwrap_or(defaults.beam.max_title_tokens),
                title_prefixes: self.title_prefixes.unwrap_or(defaults.beam.title_prefixes),
            },
            prompt,
            titles: self.titles.unwrap_or(defaults.titles),
            query_ngrams: self.query_ngrams.unwrap_or(defaults.query_ngrams),
            scoring: ScoringSettings {
                ranking,
                length_norm: self.length_norm.unwrap_or(defaults.scoring.length_norm),
                ..defaults.scoring
            },
            evidence: self.evidence.unwrap_or(defaults.evidence),
        };
        settings.check().map_err(|e| ApiError::bad_request(e.for_json()))?;
        Ok(ValidSearch { query, settings, include_ngrams: self.ngrams.unwrap_or(true) })
    }
}

/// Time the server spent on a request, besides the searcher's own stages.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTimings {
    /// Waiting in the queue for a worker.
    pub queue_ms: f64,
    /// From the request's arrival to the answer (queue + search + serialisation setup).
    pub total_ms: f64,
}

/// The answer to `POST /search`: the searcher's response plus the server's timings.
#[derive(Debug, Clone, Serialize)]
pub struct SearchAnswer {
    /// Query, hits with evidence, n-grams and the searcher's timings.
    #[serde(flatten)]
    pub response: SearchResponse,
    /// Queueing and total time in the server.
    pub server: ServerTimings,
}

/// `GET /docs/{id}`: one passage.
#[derive(Debug, Clone, Serialize)]
pub struct DocAnswer {
    /// The corpus's id.
    pub id: String,
    /// Internal document number.
    pub doc: u32,
    /// Title.
    pub title: String,
    /// Text.
    pub text: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthAnswer {
    /// Always `"ok"` while the server answers.
    pub status: &'static str,
}

/// `GET /stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsAnswer {
    /// The index directory.
    pub index_dir: String,
    /// Passages in the index.
    pub documents: usize,
    /// Tokens in the FM-index text.
    pub tokens: usize,
    /// Bytes of the index files (FM-index + passages).
    pub index_bytes: u64,
    /// The model's name and sha256.
    pub model: ModelAnswer,
    /// Worker threads running searches.
    pub workers: usize,
    /// Searches that may wait for a worker.
    pub queue_capacity: usize,
    /// Searches running now.
    pub running: usize,
    /// Searches waiting now.
    pub queued: usize,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Searches answered with hits (200).
    pub queries_served: u64,
    /// Requests rejected as invalid (4xx).
    pub bad_requests: u64,
    /// Searches turned away because the queue was full (503).
    pub rejected_overload: u64,
    /// Searches that ran past the per-request timeout (503).
    pub timed_out: u64,
    /// Searches that failed inside the engine (500).
    pub failed: u64,
    /// Latency of served searches over the most recent window, in milliseconds.
    pub latency_ms: Percentiles,
}

/// The model of the index.
#[derive(Debug, Clone, Serialize)]
pub struct ModelAnswer {
    /// Name or path it was given as at indexing time.
    pub name: String,
    /// sha256 of the GGUF file.
    pub sha256: String,
}

/// Latency percentiles over a window of recent searches (all zero before the first search).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Searches in the window.
    pub window: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// A failed request: its status and a message that says what is wrong and what to do, sent as
/// `{"error": "..."}` (503s also carry `Retry-After`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong and what to do.
    pub message: String,
    /// Seconds after which a retry may succeed (503 only).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// Any status with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after_s: None }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(ErrorBody { error: &self.message })).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// Parses a `POST /search` body, with errors that say where the JSON is wrong.
///
/// # Errors
/// 400 for malformed JSON, a body that is not an object, a field of the wrong type or an
/// unknown field.
pub fn parse_search_request(body: &[u8]) -> Result<SearchRequest, ApiError> {
    serde_json::from_slice::<SearchRequest>(body).map_err(|e| {
        use serde_json::error::Category;
        let message = match e.classify() {
            Category::Syntax | Category::Eof => format!(
                "the body is not valid JSON ({e}); send an object like {{\"query\": \"who wrote hamlet\", \"k\": 5}}"
            ),
            Category::Data => format!(
                "the body does not fit the search request ({e}); accepted fields: {}",
                SEARCH_REQUEST_FIELDS.join(", ")
            ),
            Category::Io => format!("the body could not be read ({e})"),
        };
        ApiError::bad_request(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits { max_query_bytes: 20, max_k: 50 };

    fn validate(json: &str) -> Result<ValidSearch, ApiError> {
        parse_search_request(json.as_bytes())?.validate(&LIMITS, PromptStyle::default())
    }

    fn error(json: &str) -> String {
        let e = validate(json).expect_err(json);
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{json}");
        e.message
    }

    #[test]
    fn every_field_maps_onto_the_settings() {
        let v = validate(
            r#"{"query":"q","k":3,"beam":5,"max_tokens":4,"max_title_tokens":6,"title_prefixes":false,
                "ranking":"lm+fm","length_norm":0.75,
                "prompt":"plain","titles":false,"query_ngrams":false,"evidence":false,"ngrams":false}"#,
        )
        .unwrap();
        let expected = SearchSettings {
            k: 3,
            beam: BeamSettings {
                beam: 5,
                max_body_tokens: 4,
                max_title_tokens: 6,
                title_prefixes: false,
            },
            prompt: PromptStyle::Plain,
            titles: false,
            query_ngrams: false,
            scoring: ScoringSettings {
                ranking: Ranking::LmFm,
                length_norm: 0.75,
                ..ScoringSettings::default()
            },
            evidence: false,
        };
        assert_eq!(v.settings, expected);
        assert_eq!(v.query, "q");
        assert!(!v.include_ngrams);
    }

    #[test]
    fn unset_fields_keep_seal_defaults() {
        let v = validate(r#"{"query":"who wrote hamlet"}"#).unwrap();
        assert_eq!(v.settings, SearchSettings::default());
        assert!(v.include_ngrams);
    }

    #[test]
    fn the_field_list_is_the_struct() {
        // Every listed field is accepted...
        for f in SEARCH_REQUEST_FIELDS {
            let value = match f {
                "query" | "ranking" | "prompt" => "\"x\"",
                "titles" | "title_prefixes" | "query_ngrams" | "evidence" | "ngrams" => "true",
                _ => "1",
            };
            parse_search_request(format!("{{\"{f}\": {value}}}").as_bytes())
                .unwrap_or_else(|e| panic!("{f}: {}", e.message));
        }
        // ...and serde's own list of the struct's fields is the same.
        let msg = error(r#"{"zzz": 1}"#);
        for f in SEARCH_REQUEST_FIELDS {
            assert!(msg.contains(&format!("`{f}`")), "{f} missing from {msg}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(error(r#"{"k": 3}"#).contains("no \"query\""));
        assert!(error(r#"{"query": "  "}"#).contains("empty"));
        assert!(error(r#"{"query": "123456789012345678901"}"#).contains("at most 20 bytes"));
        assert!(
            error(r#"{"query": "q", "k": 0}"#).contains("\"k\" is 0; it must be between 1 and 50")
        );
        assert!(error(r#"{"query": "q", "k": 51}"#).contains("between 1 and 50"));
        assert!(error(r#"{"query": "q", "k": -1}"#).contains("does not fit"));
        assert!(error(r#"{"query": "q", "beam": 65}"#).contains("\"beam\" is 65"));
        assert!(error(r#"{"query": "q", "beam": 0}"#).contains("between 1 and 64"));
        assert!(error(r#"{"query": "q", "max_tokens": 0}"#).contains("\"max_tokens\" is 0"));
        assert!(
            error(r#"{"query": "q", "ranking": "bm25"}"#).contains("\"intersective\" or \"lm+fm\"")
        );
        assert!(error(r#"{"query": "q", "prompt": "zero"}"#).contains("few-shot"));
        assert!(error(r#"{"query": "q", "length_norm": 1.5}"#).contains("\"length_norm\" is 1.5"));
        assert!(
            error(r#"{"query": "q", "temperature": 1}"#).contains("unknown field `temperature`")
        );
        assert!(error(r#"{"query": 5}"#).contains("does not fit"));
        assert!(error(r#"["query"]"#).contains("does not fit"));
        assert!(error(r#"{"query": "q""#).contains("not valid JSON"));
        assert!(error("").contains("not valid JSON"));
    }

    #[test]
    fn errors_serialise_as_an_error_object_with_retry_after() {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy");
        e.retry_after_s = Some(2);
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
