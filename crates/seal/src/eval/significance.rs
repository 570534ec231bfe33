//! Paired significance tests and intervals for two systems measured on the same queries:
//! Fisher's randomization test (sign flips of the per-query differences), a bootstrap test,
//! percentile-bootstrap intervals of the mean difference, and Holm's correction for comparing
//! several systems with one baseline.
//!
//! Useful for: "is system B better than A on this query set, by how much, and how sure are we"
//! (`seal eval compare`). Not for: unpaired comparisons (different query sets), or deciding what
//! to tune on (compare on dev queries, report on test).
//!
//! # Reproducibility
//!
//! Every random draw comes from [`SplitMix64`] seeded by the caller, so a seed gives the same
//! p-value and interval on every machine and version. `testdata/eval/significance/make_golden.py`
//! ports the generator and both procedures to plain Python and writes the golden file the
//! integration tests compare against, together with exact values (complete enumeration of sign
//! flips, the exact bootstrap distribution) that do not depend on the generator.
//!
//! # Definitions
//!
//! - Differences `d_i = system_i − baseline_i`; their mean is the effect; a query with
//!   `|d_i| ≤ 1e-12` is a tie, otherwise a win (`d_i > 0`) or a loss.
//! - Randomization (Fisher; Smucker, Allan & Carterette 2007): each trial flips the sign of each
//!   `d_i` with probability ½ (bit `i mod 64` of a fresh 64-bit draw every 64 queries); the
//!   two-sided p-value is `(1 + #{trials with |mean| ≥ |observed mean| − 1e-12}) / (1 + trials)`.
//! - Bootstrap test (Efron & Tibshirani 1993, §16.4): resample the centred differences
//!   `d_i − mean` with replacement (index = draw mod n); same p-value formula.
//! - Interval: the percentile bootstrap of the mean difference (resample `d` with replacement,
//!   `resamples` times), quantiles by linear interpolation between order statistics (numpy's
//!   default, "type 7"). The test uses the seed, the interval `seed + 1`.
//! - Holm (1979): with `m` p-values sorted ascending, the k-th (0-based) becomes
//!   `max over j ≤ k of min(1, (m − j) · p_(j))`.

use crate::{Error, ErrorKind, Result};

/// Differences within this distance of a tie are ties (metric values are in [0, 1]; float sums
/// of the same values in another order differ by far less).
pub const TIE_TOLERANCE: f64 = 1e-12;

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny generator with a fixed stream for a seed.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index in `0..n` (draw mod n; the bias is below n / 2^64). `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A uniform number in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Which paired test gives the p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairedTest {
    /// Fisher's randomization (permutation) test: sign flips of the differences.
    Randomization,
    /// The bootstrap test on centred differences.
    Bootstrap,
}

impl PairedTest {
    /// The name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            PairedTest::Randomization => "randomization",
            PairedTest::Bootstrap => "bootstrap",
        }
    }
}

/// How to test and bound a difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestSettings {
    /// The test that gives the p-value.
    pub test: PairedTest,
    /// Trials of the test, and resamples of the interval (10,000 is the usual choice).
    pub trials: usize,
    /// The seed of the test (the interval uses `seed + 1`).
    pub seed: u64,
    /// The interval's coverage, e.g. 0.95.
    pub confidence: f64,
}

impl Default for TestSettings {
    fn default() -> Self {
        TestSettings { test: PairedTest::Randomization, trials: 10_000, seed: 1, confidence: 0.95 }
    }
}

/// One system against the baseline on the same queries.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedOutcome {
    /// Queries compared.
    pub queries: usize,
    /// The baseline's mean.
    pub baseline_mean: f64,
    /// The system's mean.
    pub system_mean: f64,
    /// The mean of `system − baseline`.
    pub difference: f64,
    /// The interval of the mean difference at [`TestSettings::confidence`].
    pub interval: (f64, f64),
    /// The two-sided p-value of the test.
    pub p_value: f64,
    /// Queries where the system is better, equal, worse.
    pub wins: usize,
    /// See [`Self::wins`].
    pub ties: usize,
    /// See [`Self::wins`].
    pub losses: usize,
}

fn mean(values: &[f64]) -> f64 {
    let mut sum = 0.0;
    for v in values {
        sum += v;
    }
    sum / values.len() as f64
}

/// Compares `system` with `baseline`, query by query (same order, same length).
///
/// # Errors
///
/// Lengths that differ, no query, a value that is not finite, no trial, or a confidence outside
/// (0, 1).
pub fn compare_paired(
    baseline: &[f64],
    system: &[f64],
    settings: &TestSettings,
) -> Result<PairedOutcome> {
    let invalid = |message: String| Err(Error::new(ErrorKind::InvalidInput, message));
    if baseline.len() != system.len() {
        return invalid(format!(
            "a paired comparison needs the same queries: {} baseline values, {} system values",
            baseline.len(),
            system.len()
        ));
    }
    if baseline.is_empty() {
        return invalid("no query to compare".into());
    }
    if baseline.iter().chain(system).any(|v| !v.is_finite()) {
        return invalid("a per-query value is not finite".into());
    }
    if settings.trials == 0 {
        return invalid("--trials must be at least 1 (10000 is usual)".into());
    }
    if !(settings.confidence > 0.0 && settings.confidence < 1.0) {
        return invalid(format!(
            "the confidence must be in (0, 1), e.g. 0.95; got {}",
            settings.confidence
        ));
    }
    let differences: Vec<f64> = system.iter().zip(baseline).map(|(s, b)| s - b).collect();
    let p_value = match settings.test {
        PairedTest::Randomization => {
            randomization_p_value(&differences, settings.trials, settings.seed)
        }
        PairedTest::Bootstrap => bootstrap_p_value(&differences, settings.trials, settings.seed),
    };
    let interval = bootstrap_interval(
        &differences,
        settings.trials,
        settings.confidence,
        settings.seed.wrapping_add(1),
    );
    Ok(PairedOutcome {
        queries: differences.len(),
        baseline_mean: mean(baseline),
        system_mean: mean(system),
        difference: mean(&differences),
        interval,
        p_value,
        wins: differences.iter().filter(|&&d| d > TIE_TOLERANCE).count(),
        ties: differences.iter().filter(|d| d.abs() <= TIE_TOLERANCE).count(),
        losses: differences.iter().filter(|&&d| d < -TIE_TOLERANCE).count(),
    })
}

/// The two-sided p-value of Fisher's randomization test (see the module docs).
pub fn randomization_p_value(differences: &[f64], trials: usize, seed: u64) -> f64 {
    let n = differences.len();
    let observed = mean(differences).abs();
    let mut rng = SplitMix64::new(seed);
    let mut extreme = 0usize;
    for _ in 0..trials {
        let mut sum = 0.0;
        let mut bits = 0u64;
        for (i, d) in differences.iter().enumerate() {
            if i % 64 == 0 {
                bits = rng.next_u64();
            }
            sum += if (bits >> (i % 64)) & 1 == 1 { -d } else { *d };
        }
        if (sum / n as f64).abs() >= observed - TIE_TOLERANCE {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (trials + 1) as f64
}

/// The two-sided p-value of the bootstrap test on centred differences (see the module docs).
pub fn bootstrap_p_value(differences: &[f64], trials: usize, seed: u64) -> f64 {
    let n = differences.len();
    let observed = mean(differences);
    let centred: Vec<f64> = differences.iter().map(|d| d - observed).collect();
    let mut rng = SplitMix64::new(seed);
    let mut extreme = 0usize;
    for _ in 0..trials {
        let mut sum = 0.0;
        for _ in 0..n {
            sum += centred[rng.below(n)];
        }
        if (sum / n as f64).abs() >= observed.abs() - TIE_TOLERANCE {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (trials + 1) as f64
}

/// The percentile-bootstrap interval of the mean of `differences` (see the module docs).
pub fn bootstrap_interval(
    differences: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> (f64, f64) {
    let n = differences.len();
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let mut sum = 0.0;
            for _ in 0..n {
                sum += differences[rng.below(n)];
            }
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    (quantile(&means, tail), quantile(&means, 1.0 - tail))
}

/// The `q`-quantile of sorted values by linear interpolation between order statistics
/// (numpy's default). `sorted` must not be empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (position - below as f64) * (sorted[above] - sorted[below])
}

/// Holm's step-down adjustment of `p_values` (same order out as in).
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (k, &index) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p_values[index]).min(1.0));
        adjusted[index] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference values of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
    #[test]
    fn splitmix64_matches_the_reference_stream() {
        let mut rng = SplitMix64::new(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423]
        );
    }

    #[test]
    fn identical_systems_differ_by_zero_with_p_one() {
        let scores = [0.1, 0.5, 0.5, 1.0, 0.0, 0.25];
        for test in [PairedTest::Randomization, PairedTest::Bootstrap] {
            let settings = TestSettings { test, trials: 999, ..TestSettings::default() };
            let outcome = compare_paired(&scores, &scores, &settings).unwrap();
            assert_eq!(outcome.difference, 0.0);
            assert_eq!(outcome.p_value, 1.0, "{test:?}");
            assert_eq!(outcome.interval, (0.0, 0.0));
            assert_eq!((outcome.wins, outcome.ties, outcome.losses), (0, 6, 0));
        }
    }

    /// Holm by hand: p = (0.01, 0.04, 0.03) → sorted 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04
    /// raised to the running maximum 0.06.
    #[test]
    fn holm_by_hand() {
        let adjusted = holm_adjust(&[0.01, 0.04, 0.03]);
        let want = [0.03, 0.06, 0.06];
        for (got, want) in adjusted.iter().zip(want) {
            assert!((got - want).abs() < 1e-15, "{adjusted:?}");
        }
        assert_eq!(holm_adjust(&[0.6, 0.9]), [1.0, 1.0]);
        assert!(holm_adjust(&[]).is_empty());
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let sorted = [1.0, 2.0, 4.0, 8.0];
        // numpy.quantile([1, 2, 4, 8], [0, 0.25, 0.5, 0.9, 1]) = 1, 1.75, 3, 6.8, 8
        for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 3.0), (0.9, 6.8), (1.0, 8.0)] {
            assert!((quantile(&sorted, q) - want).abs() < 1e-12, "q = {q}");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let settings = TestSettings::default();
        assert!(compare_paired(&[0.1], &[0.1, 0.2], &settings).is_err());
        assert!(compare_paired(&[], &[], &settings).is_err());
        assert!(compare_paired(&[f64::NAN], &[0.1], &settings).is_err());
        let none = TestSettings { trials: 0, ..settings };
        assert!(compare_paired(&[0.1], &[0.2], &none).is_err());
        let wide = TestSettings { confidence: 1.0, ..settings };
        assert!(compare_paired(&[0.1], &[0.2], &wide).is_err());
    }

    fn normal(rng: &mut SplitMix64) -> f64 {
        let u1 = 1.0 - rng.unit();
        let u2 = rng.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// 300 seeded synthetic query sets of 50 queries, per-query differences N(shift, 1):
    /// with shift 0 the tests reject at about their level (5 %); with shift 0.4 (effect size
    /// 0.4, a paired t-test's power is 0.79 there) they reject about 79 % of the time; the
    /// interval covers the true shift about 95 % of the time. Bounds are ±3 binomial standard
    /// deviations (plus the percentile bootstrap's known slight under-coverage at n = 50).
    #[test]
    fn tests_reject_at_their_level_and_find_a_known_shift_at_the_expected_rate() {
        let sets = 300;
        for test in [PairedTest::Randomization, PairedTest::Bootstrap] {
            for (shift, low, high) in [(0.0, 0.012, 0.09), (0.4, 0.72, 0.86)] {
                let mut rng = SplitMix64::new(2024);
                let (mut rejected, mut covered) = (0, 0);
                for set in 0..sets {
                    let baseline: Vec<f64> = (0..50).map(|_| rng.unit()).collect();
                    let system: Vec<f64> =
                        baseline.iter().map(|b| b + shift + normal(&mut rng)).collect();
                    let settings = TestSettings { test, trials: 1000, seed: set, confidence: 0.95 };
                    let outcome = compare_paired(&baseline, &system, &settings).unwrap();
                    rejected += usize::from(outcome.p_value < 0.05);
                    covered +=
                        usize::from(outcome.interval.0 <= shift && shift <= outcome.interval.1);
                }
                let rate = rejected as f64 / sets as f64;
                assert!((low..=high).contains(&rate), "{test:?}, shift {shift}: rejected {rate}");
                let coverage = covered as f64 / sets as f64;
                assert!((0.90..=0.985).contains(&coverage), "shift {shift}: coverage {coverage}");
            }
        }
    }
}
