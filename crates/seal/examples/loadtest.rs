//! A bounded load test of `seal serve` on loopback: C clients, each sending `POST /search` one
//! after the other for a fixed time, with the questions of the bundled sample
//! (`data/sample/queries.jsonl`). Reports throughput, latency percentiles and error counts per
//! level, and the server's memory from `/proc/PID/status` when given its pid.
//!
//! ```text
//! seal serve --addr 127.0.0.1:8080 &            # the bundled sample index
//! cargo run --release -p seal --example loadtest -- --addr 127.0.0.1:8080 \
//!     --clients 1,4,16 --seconds 60 --pid $!
//! ```
//!
//! Options: `--clients LIST` (levels, run in order), `--seconds S` (per level; requests started
//! before the end finish), `--pid PID` (server process, for VmRSS/VmHWM), `--backoff-ms MS`
//! (wait after a 503 before the next request; default 100), `--body JSON` (extra request fields,
//! e.g. `'"beam": 5'`). A 503 is counted apart from failures: it is the server turning load away.

#[path = "../tests/integration/common/http.rs"]
mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUERIES: &str = include_str!("../data/sample/queries.jsonl");

struct Options {
    addr: SocketAddr,
    clients: Vec<usize>,
    seconds: f64,
    pid: Option<u32>,
    backoff: Duration,
    extra: String,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        clients: vec![1, 4, 16],
        seconds: 60.0,
        pid: None,
        backoff: Duration::from_millis(100),
        extra: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => o.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--clients" => {
                o.clients = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--clients: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--pid" => o.pid = Some(value()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--backoff-ms" => {
                o.backoff = Duration::from_millis(
                    value()?.parse().map_err(|e| format!("--backoff-ms: {e}"))?,
                )
            }
            "--body" => o.extra = value()?,
            other => return Err(format!("unknown option {other}; see the header of loadtest.rs")),
        }
    }
    Ok(o)
}

/// One request's outcome.
#[derive(Clone, Copy)]
enum Outcome {
    Ok(f64),
    Busy,
    Failed,
}

fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds of process `pid` so far (`/proc/PID/stat`, clock ticks at 100 Hz).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    Some((ticks(14)? + ticks(15)?) / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let queries: Arc<Vec<String>> = Arc::new(
        QUERIES
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_owned))
            .collect(),
    );
    let health = http::request(o.addr, "GET", "/health", &[], b"");
    if !matches!(&health, Ok(r) if r.status == 200) {
        eprintln!(
            "error: no seal server answers on {} ({health:?}); start `seal serve` first",
            o.addr
        );
        std::process::exit(1);
    }
    println!(
        "| clients | seconds | requests | ok | 503 | failed | ok/s | p50 ms | p95 ms | p99 ms | max ms | server CPU s per ok | server RSS after (MiB) | server peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &clients in &o.clients {
        let cpu_before = o.pid.and_then(cpu_seconds);
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(o.seconds);
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (queries, extra, addr, backoff) =
                    (queries.clone(), o.extra.clone(), o.addr, o.backoff);
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut i = c * 37;
                    while Instant::now() < end {
                        let q = &queries[i % queries.len()];
                        i += 1;
                        let mut body = serde_json::json!({ "query": q, "k": 10 }).to_string();
                        if !extra.is_empty() {
                            body.pop();
                            body.push_str(&format!(", {extra}}}"));
                        }
                        let t = Instant::now();
                        let reply = http::request(
                            addr,
                            "POST",
                            "/search",
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        );
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        match reply {
                            Ok(r) if r.status == 200 => outcomes.push(Outcome::Ok(ms)),
                            Ok(r) if r.status == 503 => {
                                outcomes.push(Outcome::Busy);
                                std::thread::sleep(backoff);
                            }
                            Ok(r) => {
                                eprintln!("status {}: {}", r.status, r.text());
                                outcomes.push(Outcome::Failed);
                            }
                            Err(e) => {
                                eprintln!("request failed: {e}");
                                outcomes.push(Outcome::Failed);
                            }
                        }
                    }
                    outcomes
                })
            })
            .collect();
        let outcomes: Vec<Outcome> =
            threads.into_iter().flat_map(|t| t.join().expect("client thread")).collect();
        let wall = started.elapsed().as_secs_f64();
        let mut ok: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| if let Outcome::Ok(ms) = o { Some(*ms) } else { None })
            .collect();
        ok.sort_by(f64::total_cmp);
        let busy = outcomes.iter().filter(|o| matches!(o, Outcome::Busy)).count();
        let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed)).count();
        let memory = o.pid.and_then(memory_kb);
        let cpu = match (cpu_before, o.pid.and_then(cpu_seconds)) {
            (Some(a), Some(b)) if !ok.is_empty() => format!("{:.1}", (b - a) / ok.len() as f64),
            _ => "-".into(),
        };
        let mib = |kb: u64| format!("{:.0}", kb as f64 / 1024.0);
        println!(
            "| {clients} | {wall:.0} | {} | {} | {busy} | {failed} | {:.3} | {:.0} | {:.0} | {:.0} | {:.0} | {cpu} | {} | {} |",
            outcomes.len(),
            ok.len(),
            ok.len() as f64 / wall,
            percentile(&ok, 50.0),
            percentile(&ok, 95.0),
            percentile(&ok, 99.0),
            ok.last().copied().unwrap_or(f64::NAN),
            memory.map_or("-".into(), |m| mib(m.0)),
            memory.map_or("-".into(), |m| mib(m.1)),
        );
    }
    if let Ok(stats) = http::request(o.addr, "GET", "/stats", &[], b"") {
        println!("\nserver /stats: {}", stats.text());
    }
}
