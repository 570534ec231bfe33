//! Counters and a latency window for `GET /stats`: cheap to update from every request, read
//! rarely.
//!
//! Useful for: operators and the load test. Not for: long-term monitoring (the window holds the
//! most recent searches only, and counters reset when the server restarts).

use super::api::Percentiles;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Searches kept in the latency window.
pub const LATENCY_WINDOW: usize = 10_000;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Searches answered with 200.
    pub served: AtomicU64,
    /// Requests answered with 4xx.
    pub bad_requests: AtomicU64,
    /// Searches answered with 503 because the queue was full.
    pub rejected_overload: AtomicU64,
    /// Searches answered with 503 because they ran past the timeout.
    pub timed_out: AtomicU64,
    /// Searches answered with 500.
    pub failed: AtomicU64,
    latencies_ms: Mutex<VecDeque<f64>>,
    /// Exponentially weighted mean latency (f64 bits): cheap to read on every 503.
    recent_ms: AtomicU64,
}

impl Stats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records the latency of a served search.
    pub fn record_latency(&self, ms: f64) {
        let mut window = self.latencies_ms.lock().unwrap_or_else(|e| e.into_inner());
        if window.len() == LATENCY_WINDOW {
            window.pop_front();
        }
        window.push_back(ms);
        let old = f64::from_bits(self.recent_ms.load(Ordering::Relaxed));
        let new = if window.len() == 1 { ms } else { 0.8 * old + 0.2 * ms };
        self.recent_ms.store(new.to_bits(), Ordering::Relaxed);
    }

    /// A recent typical latency (exponentially weighted mean, 0 before the first search), without
    /// sorting the window.
    pub fn recent_latency_ms(&self) -> f64 {
        f64::from_bits(self.recent_ms.load(Ordering::Relaxed))
    }

    /// Percentiles of the window (nearest rank).
    pub fn percentiles(&self) -> Percentiles {
        let mut sorted: Vec<f64> =
            self.latencies_ms.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
        percentiles(&mut sorted)
    }
}

/// Nearest-rank percentiles of `values` (sorted in place); all zero when empty.
pub fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    // Nearest rank: the smallest value with at least p% of the values at or below it.
    let at = |p: f64| values[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
    Percentiles {
        window: n,
        p50: at(50.0),
        p90: at(90.0),
        p95: at(95.0),
        p99: at(99.0),
        max: values[n - 1],
        mean: values.iter().sum::<f64>() / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_match_a_naive_count() {
        let mut v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!(
            (p.window, p.p50, p.p90, p.p95, p.p99, p.max),
            (200, 100.0, 180.0, 190.0, 198.0, 200.0)
        );
        assert_eq!(p.mean, 100.5);
        // Naive definition: the smallest x with count(v <= x) >= p·n.
        for n in [1usize, 2, 3, 7, 10, 101] {
            let mut w: Vec<f64> = (0..n).map(|i| ((i * 37) % n) as f64).collect();
            let p = percentiles(&mut w);
            for (q, got) in [(50.0, p.p50), (90.0, p.p90), (95.0, p.p95), (99.0, p.p99)] {
                let naive = w
                    .iter()
                    .copied()
                    .find(|&x| w.iter().filter(|&&y| y <= x).count() as f64 >= q / 100.0 * n as f64)
                    .unwrap();
                assert_eq!(got, naive, "p{q} of {n} values");
            }
        }
        let mut one = vec![7.0];
        assert_eq!(percentiles(&mut one).p99, 7.0);
        assert_eq!(percentiles(&mut []), Percentiles::default());
    }

    #[test]
    fn the_window_keeps_the_most_recent_latencies() {
        let stats = Stats::default();
        for i in 0..LATENCY_WINDOW + 10 {
            stats.record_latency(i as f64);
        }
        let p = stats.percentiles();
        assert_eq!(p.window, LATENCY_WINDOW);
        assert_eq!(p.max, (LATENCY_WINDOW + 9) as f64);
        assert_eq!(p.p50, (LATENCY_WINDOW / 2 + 9) as f64);
        let recent = stats.recent_latency_ms();
        assert!(
            recent > (LATENCY_WINDOW as f64) && recent < (LATENCY_WINDOW + 9) as f64,
            "{recent}"
        );
        assert_eq!(Stats::default().recent_latency_ms(), 0.0);
    }
}
