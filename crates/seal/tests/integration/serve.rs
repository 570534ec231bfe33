//! End-to-end tests of `seal serve` over HTTP: the server runs in-process on 127.0.0.1:0 over the
//! tiny committed corpus (`testdata/tiny`) with the real default model. Real-model searches are
//! few (CI has 2 cores): every error case is rejected before the model runs.

use crate::common;
use crate::common::http;

use http::{get, post_json, request};
use seal::corpus::{CorpusFormat, CorpusReader, ReadOptions};
use seal::indexer::{build_index, ModelRef};
use seal::model::{hub, tokenizer::Tokenizer};
use seal::searcher::Searcher;
use seal::serve::api::{RequestLimits, SEARCH_REQUEST_FIELDS};
use seal::serve::{ServeConfig, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tiny corpus indexed once with the default model and opened once, shared by every server.
fn searcher() -> Arc<Searcher> {
    static SEARCHER: OnceLock<Arc<Searcher>> = OnceLock::new();
    SEARCHER
        .get_or_init(|| {
            let model = common::smollm2_path();
            let dir = std::env::temp_dir().join(format!("seal-serve-tiny-{}", std::process::id()));
            let corpus = std::fs::read_to_string(repo_root().join("testdata/tiny/corpus.jsonl"))
                .expect("testdata/tiny/corpus.jsonl");
            let passages =
                CorpusReader::from_str(&corpus, CorpusFormat::BeirJsonl, ReadOptions::default())
                    .collect::<seal::Result<Vec<_>>>()
                    .unwrap();
            let tokenizer = Tokenizer::from_gguf(&model).unwrap();
            let fingerprint = hub::fingerprint(&model).unwrap();
            build_index(
                passages,
                &tokenizer,
                ModelRef { name: "smollm2-135m".into(), fingerprint },
                &dir,
                &|_, _, _| {},
            )
            .unwrap();
            Arc::new(Searcher::open(&dir, &model).unwrap())
        })
        .clone()
}

/// A server on its own runtime and thread; dropped servers are shut down.
struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<seal::Result<()>>>,
}

impl TestServer {
    fn start(config: ServeConfig) -> TestServer {
        let searcher = searcher();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = Server::bind(config, searcher).await?;
                addr_tx.send(server.local_addr()).unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        let addr = addr_rx.recv().expect("the server binds");
        TestServer { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// Asks for a graceful shutdown and waits until the server has stopped.
    fn shut_down(&mut self) -> seal::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().map_or(Ok(()), |t| t.join().expect("the server thread does not panic"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// Loopback, a free port, and a timeout long enough for a loaded 2-core CI machine.
fn config() -> ServeConfig {
    ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        timeout: Duration::from_secs(600),
        ..ServeConfig::default()
    }
}

fn chars(s: &str, start: u64, end: u64) -> String {
    s.chars().skip(start as usize).take((end - start) as usize).collect()
}

#[test]
fn a_search_returns_ranked_hits_whose_evidence_spans_point_at_their_ngrams() {
    let server = TestServer::start(config());
    let r = post_json(
        server.addr,
        "/search",
        r#"{"query": "who won the first nobel prize in physics", "k": 5}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = r.json();
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0]["id"], "nqg0000", "the Nobel laureates passage ranks first: {r:#}");
    assert_eq!(hits[0]["title"], "List of Nobel laureates in Physics");
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // Spans count characters: the Nobel passage has "Röntgen" (ö is 2 bytes) before later
    // matches, so byte offsets would point elsewhere.
    let mut after_non_ascii = 0;
    for hit in hits {
        for e in hit["evidence"].as_array().unwrap() {
            let ngram = e["ngram"].as_str().unwrap();
            for span in e["spans"].as_array().unwrap() {
                let field = span["field"].as_str().unwrap();
                let content = hit[field].as_str().unwrap();
                let (start, end) = (span["start"].as_u64().unwrap(), span["end"].as_u64().unwrap());
                let got = chars(content, start, end);
                let bytes = &content[span["byte_start"].as_u64().unwrap() as usize
                    ..span["byte_end"].as_u64().unwrap() as usize];
                assert_eq!(got, bytes, "char and byte spans agree");
                if e["source"] == "title" {
                    assert_eq!(got, content);
                } else {
                    assert_eq!(got.trim(), ngram.trim(), "span of {ngram:?} in {}", hit["id"]);
                }
                if content.chars().take(start as usize).any(|c| !c.is_ascii()) {
                    after_non_ascii += 1;
                }
            }
        }
    }
    assert!(after_non_ascii > 0, "some span lies after a non-ASCII character: {r:#}");
    assert!(r["ngrams"].as_array().unwrap().len() > 30);
    for key in ["body_ms", "query_ngrams_ms", "titles_ms", "scoring_ms", "total_ms"] {
        assert!(r["timings"][key].as_f64().unwrap() >= 0.0, "{key}");
    }
    let server_ms = r["server"]["total_ms"].as_f64().unwrap();
    assert!(server_ms >= r["timings"]["total_ms"].as_f64().unwrap());

    // The passage by id is the hit's passage.
    let doc = get(server.addr, "/docs/nqg0000");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(doc["title"], hits[0]["title"]);
    assert_eq!(doc["text"], hits[0]["text"]);
    assert_eq!(doc["doc"], hits[0]["doc"]);

    // The search is counted and timed.
    let stats = get(server.addr, "/stats").json();
    assert_eq!(stats["queries_served"], 1, "{stats:#}");
    assert_eq!(stats["documents"], 25);
    assert_eq!(stats["latency_ms"]["window"], 1);
    let p50 = stats["latency_ms"]["p50"].as_f64().unwrap();
    assert!(
        (p50 - server_ms).abs() < 1e-6,
        "the one latency is the answer's: {p50} vs {server_ms}"
    );
    assert_eq!(stats["model"]["name"], "smollm2-135m");
    assert!(stats["tokens"].as_u64().unwrap() > 25 * 50);
    assert!(stats["index_bytes"].as_u64().unwrap() > 1000);
}

#[test]
fn request_settings_reach_the_searcher() {
    let server = TestServer::start(config());
    let r = post_json(
        server.addr,
        "/search",
        r#"{"query": "where is the gallbladder", "k": 2, "beam": 5, "titles": false, "ngrams": false}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = r.json();
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "k");
    assert_eq!(hits[0]["id"], "nqg0011", "Gallbladder first: {r:#}");
    assert_eq!(r["ngrams"].as_array().unwrap().len(), 0, "ngrams: false");
    // The title beam takes seconds; skipped, it takes nothing.
    let titles_ms = r["timings"]["titles_ms"].as_f64().unwrap();
    assert!(titles_ms < 1.0, "titles: false skips the title beam ({titles_ms} ms)");
    for hit in hits {
        for e in hit["evidence"].as_array().unwrap() {
            assert_ne!(e["source"], "title", "titles: false");
        }
    }
}

/// Status, and a substring of the JSON error message.
fn expect_error(reply: &http::Reply, status: u16, says: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"), "{}", reply.text());
    let body = reply.json();
    let message = body["error"].as_str().unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(message.contains(says), "{message:?} should say {says:?}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}

#[test]
fn every_bad_request_is_a_4xx_json_error_that_says_what_is_wrong() {
    let server = TestServer::start(ServeConfig {
        limits: RequestLimits { max_query_bytes: 64, max_k: 20 },
        max_body_bytes: 1024,
        ..config()
    });
    let a = server.addr;
    let search = |body: &str| post_json(a, "/search", body);
    let cases: Vec<(http::Reply, u16, &str)> = vec![
        (search(r#"{"query": ""}"#), 400, "empty"),
        (search(r#"{"query": " \n\t "}"#), 400, "empty"),
        (search(r#"{"k": 3}"#), 400, "no \"query\""),
        (search(&format!(r#"{{"query": "{}"}}"#, "a".repeat(65))), 400, "at most 64 bytes"),
        (search(r#"{"query": "q", "temperature": 0.5}"#), 400, "unknown field `temperature`"),
        (search(r#"{"query": "q", "k": 0}"#), 400, "\"k\" is 0; it must be between 1 and 20"),
        (search(r#"{"query": "q", "k": 21}"#), 400, "between 1 and 20"),
        (search(r#"{"query": "q", "k": "five"}"#), 400, "does not fit"),
        (search(r#"{"query": "q", "beam": 1000}"#), 400, "\"beam\" is 1000"),
        (search(r#"{"query": "q", "ranking": "bm25"}"#), 400, "\"intersective\" or \"lm+fm\""),
        (search(r#"{"query": "q", "prompt": "zero-shot"}"#), 400, "few-shot"),
        (search(r#"{"query": "q", "#), 400, "not valid JSON"),
        (search("query=hamlet"), 400, "not valid JSON"),
        (search(r#"["who wrote hamlet"]"#), 400, "does not fit"),
        (
            request(a, "POST", "/search", &[("Content-Type", "text/plain")], br#"{"query": "q"}"#)
                .unwrap(),
            415,
            "Content-Type: application/json",
        ),
        (request(a, "POST", "/search", &[], br#"{"query": "q"}"#).unwrap(), 415, "no Content-Type"),
        (
            search(&format!(r#"{{"query": "q", "pad": "{}"}}"#, "x".repeat(2000))),
            413,
            "limit of 1024 bytes",
        ),
        (get(a, "/search"), 405, "does not take GET"),
        (get(a, "/nowhere"), 404, "POST /search"),
        (get(a, "/docs/no-such-id"), 404, "no passage has id \"no-such-id\""),
    ];
    let n = cases.len();
    for (reply, status, says) in &cases {
        expect_error(reply, *status, says);
    }
    // A charset parameter is fine: this one fails validation, not the content-type check.
    let r = request(
        a,
        "POST",
        "/search",
        &[("Content-Type", "application/json; charset=utf-8")],
        br#"{"query": ""}"#,
    )
    .unwrap();
    expect_error(&r, 400, "empty");
    // Invalid UTF-8 inside the JSON.
    let r = request(
        a,
        "POST",
        "/search",
        &[("Content-Type", "application/json")],
        b"{\"query\": \"\xff\xfe\"}",
    )
    .unwrap();
    expect_error(&r, 400, "not valid JSON");

    // Nothing of that reached the model or hurt the server.
    assert_eq!(get(a, "/health").json(), serde_json::json!({"status": "ok"}));
    let stats = get(a, "/stats").json();
    assert_eq!(stats["bad_requests"], n as u64 + 2, "{stats:#}");
    assert_eq!(stats["queries_served"], 0);
    assert_eq!(stats["failed"], 0);
}

#[test]
fn overload_is_a_503_with_retry_after_and_shutdown_finishes_the_search_in_flight() {
    let mut server = TestServer::start(ServeConfig { workers: 1, queue: 0, ..config() });
    let addr = server.addr;
    let in_flight = std::thread::spawn(move || {
        post_json(addr, "/search", r#"{"query": "what is lithium used for", "k": 3}"#)
    });
    // Wait until it runs.
    let started = Instant::now();
    while get(addr, "/stats").json()["running"] != 1 {
        assert!(started.elapsed() < Duration::from_secs(60), "the search never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The one worker is busy and nothing may wait: turned away at once, with Retry-After.
    let t = Instant::now();
    let busy = post_json(addr, "/search", r#"{"query": "who wrote hamlet"}"#);
    expect_error(&busy, 503, "busy");
    let retry: u64 = busy.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1);
    assert!(t.elapsed() < Duration::from_secs(1), "rejection does not wait for the model");
    // The rest of the API stays responsive.
    assert_eq!(get(addr, "/health").status, 200);
    let stats = get(addr, "/stats").json();
    assert_eq!(
        (stats["running"].as_u64(), stats["rejected_overload"].as_u64()),
        (Some(1), Some(1))
    );

    // Shut down while the search runs: it still gets its answer, then the server stops.
    server.shut_down().expect("clean shutdown");
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["hits"][0]["id"], "nqg0013", "Lithium first");
    assert!(request(addr, "GET", "/health", &[], b"").is_err(), "the listener is closed");
}

#[test]
fn a_search_past_the_timeout_is_a_503_and_the_server_carries_on() {
    let server = TestServer::start(ServeConfig {
        workers: 1,
        queue: 1,
        timeout: Duration::from_millis(30),
        ..config()
    });
    let r = post_json(
        server.addr,
        "/search",
        r#"{"query": "who wrote hamlet", "k": 1, "titles": false}"#,
    );
    expect_error(&r, 503, "did not finish within");
    assert!(r.header("retry-after").is_some());
    let stats = get(server.addr, "/stats").json();
    assert_eq!(stats["timed_out"], 1, "{stats:#}");
    assert_eq!(get(server.addr, "/health").status, 200);
}

#[test]
fn openapi_describes_every_route_and_exactly_the_request_fields() {
    let server = TestServer::start(config());
    let r = get(server.addr, "/openapi.json");
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/search", "/docs/{id}", "/health", "/stats", "/openapi.json", "/"] {
        assert!(doc["paths"].get(path).is_some(), "{path} is described");
    }
    let schema = &doc["components"]["schemas"]["SearchRequest"];
    assert_eq!(schema["additionalProperties"], false);
    let mut described: Vec<&str> =
        schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut accepted = SEARCH_REQUEST_FIELDS.to_vec();
    described.sort();
    accepted.sort();
    assert_eq!(described, accepted);
    // The /stats schema names every field /stats sends.
    let stats = get(server.addr, "/stats").json();
    let stats_schema = &doc["components"]["schemas"]["Stats"]["properties"];
    for key in stats.as_object().unwrap().keys() {
        assert!(stats_schema.get(key).is_some(), "/stats field {key} is described");
    }
}

#[test]
fn the_page_and_its_assets_are_served_without_external_references() {
    let server = TestServer::start(config());
    let page = get(server.addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains(r#"<script src="/page.js">"#));
    let js = get(server.addr, "/page.js");
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    let css = get(server.addr, "/page.css");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    for (name, body) in [("page", page.text()), ("js", js.text()), ("css", css.text())] {
        assert!(!body.contains("://"), "{name} works offline: no external URL");
    }
}

/// The Chromium binary, or `None` with a loud message.
fn chromium() -> Option<PathBuf> {
    let path =
        std::env::var_os("SEAL_CHROMIUM").map_or(PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    // Straight to the process's stderr: `eprintln!` would be captured by the test harness and
    // never shown for a passing test.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED the browser test: no Chromium at {} (install Debian's `chromium`, or set \
         SEAL_CHROMIUM to a Chromium binary) ***\n",
        path.display()
    );
    None
}

fn run_chromium(chromium: &Path, profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=120000")
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The text of an HTML fragment (tags dropped; none of ours has `<` or `>` in attributes).
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    unescape_html(&out)
}

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[test]
fn the_page_searches_and_highlights_the_matches_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let server = TestServer::start(config());
    let profile = std::env::temp_dir().join(format!("seal-serve-chromium-{}", std::process::id()));
    let url = format!("http://{}/?q=who+won+the+first+nobel+prize+in+physics&k=3", server.addr);
    let out = run_chromium(&chromium, &profile, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"data-state="done""#),
        "the page finished its search: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first_title = dom
        .split(r#"<h2 class="title">"#)
        .nth(1)
        .and_then(|s| s.split("</h2>").next())
        .expect("a hit's title");
    assert_eq!(strip_tags(first_title), "List of Nobel laureates in Physics", "{dom}");
    assert!(dom.contains("passages in"), "the time taken is shown: {dom}");
    // Every highlight is a piece of the n-gram it shows; the Nobel passage has "Röntgen" before
    // later matches, so highlights placed by byte or UTF-16 offsets would be shifted.
    let mut marks = 0;
    for piece in dom.split("<mark").skip(1) {
        let ngram = piece.split("data-ngram=\"").nth(1).and_then(|s| s.split('"').next()).unwrap();
        let text = piece.split('>').nth(1).and_then(|s| s.split("</mark").next()).unwrap();
        let (ngram, text) = (unescape_html(ngram), unescape_html(text));
        assert!(!text.trim().is_empty());
        assert!(ngram.contains(text.trim()), "highlight {text:?} is part of its n-gram {ngram:?}");
        marks += 1;
    }
    assert!(marks >= 3, "matches are highlighted: {dom}");
    assert!(dom.contains("--a: "), "highlights carry an intensity");
    assert!(dom.contains(r#"<ol id="ngrams"><li>"#), "the generated n-grams are listed");

    // The screenshot is kept as an artifact.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = run_chromium(
        &chromium,
        &profile,
        &[&format!("--screenshot={}", shot.display()), "--window-size=1280,1400"],
        &url,
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot written ({size} bytes): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("screenshot of the search page: {}", shot.display());
    let _ = std::fs::remove_dir_all(&profile);
}

/// `seal serve --adapter`: the adapter is loaded, and a request that names no prompt gets the
/// prompt the adapter was trained with (plain), not the base model's few-shot one. The adapter
/// is a fresh LoRA (its `B` is zero, so the weights equal the base model's): what is tested is
/// the wiring, through the real binary.
#[test]
fn serve_with_an_adapter_defaults_to_its_trained_prompt() {
    use seal::model::adapter::BaseModel;
    use seal::train::net::{load_gguf_weights, LoraSettings, TrainMode, TrainNet};
    use seal::train::trainer::save_adapter;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let model = common::smollm2_path();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-adapter");
    let _ = std::fs::remove_dir_all(&work);
    let (index, adapter) = (work.join("index"), work.join("adapter"));
    let seal = env!("CARGO_BIN_EXE_seal");
    let built = Command::new(seal)
        .args(["index", "--json", "--corpus"])
        .arg(repo_root().join("testdata/tiny/corpus.jsonl"))
        .arg("--out")
        .arg(&index)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

    let mode = TrainMode::Lora(LoraSettings::default());
    let (config, weights) =
        load_gguf_weights(&model, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let net = TrainNet::new(config, weights, &mode, 0).unwrap();
    let base =
        BaseModel { name: "smollm2-135m".into(), fingerprint: hub::fingerprint(&model).unwrap() };
    save_adapter(&adapter, &net, &mode, base, seal::prompt::PromptStyle::Plain, Default::default())
        .unwrap();
    drop(net);

    let mut child = Command::new(seal)
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "1", "--index"])
        .arg(&index)
        .arg("--model")
        .arg(&model)
        .arg("--adapter")
        .arg(&adapter)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "seal serve exited before listening");
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let ngrams = |prompt: &str| -> Vec<(String, String)> {
        let body = format!(
            r#"{{"query": "where is the gallbladder", "k": 2, "beam": 3, "titles": false{prompt}}}"#
        );
        let r = post_json(addr, "/search", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = r.json();
        r["ngrams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["text"].to_string(), n["weight"].to_string()))
            .collect()
    };
    let (default, plain, few_shot) =
        (ngrams(""), ngrams(r#", "prompt": "plain""#), ngrams(r#", "prompt": "few-shot""#));
    let _ = child.kill();
    let _ = child.wait();
    assert!(!default.is_empty());
    assert_eq!(default, plain, "no prompt named = the adapter's trained prompt");
    assert_ne!(default, few_shot, "the few-shot prompt generates other n-grams");
}
