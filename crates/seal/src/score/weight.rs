//! The numbers behind SEAL's scoring: the n-gram log-odds weight (paper Eqs. 1-2) and the
//! coverage factor of the intersective ranking (paper Eq. 4).
//!
//! Pure functions of numbers; they know nothing about documents or the index. Not for: finding
//! n-grams in documents (see the parent module).

/// The largest log-probability the weight formula uses: `P(n|q)` is capped at `1 − 1e-10`.
///
/// `P(n|q) = 1` (log-probability exactly 0, which a model that is very sure of a short n-gram can
/// produce in `f32`) would make the odds `P(n|q) / (1 − P(n|q))` infinite and the weight `inf`.
/// The reference code subtracts `1e-10` from every n-gram score before the formula; capping at
/// the same point gives the same weight at `0` and leaves every other score untouched. Positive
/// log-probabilities (invalid, but cheap to survive) are capped the same way.
pub const MAX_LOGPROB: f64 = -1e-10;

/// The log-odds ratio of Eq. 1, `log[P(n|q)·(1 − P(n))] − log[P(n)·(1 − P(n|q))]`, with
/// `P(n|q) = exp(logprob)` and the smoothed corpus prior `P(n) = (F + smoothing) / (N + smoothing)`
/// (`F = count`, `N = num_tokens`).
///
/// Returns `-inf` where the ratio is undefined or says "no evidence": `count == 0` (the n-gram is
/// not in the corpus), `count >= num_tokens` (`P(n) ≥ 1`), a `NaN` or `-inf` log-probability.
///
/// Numerics: the prior odds are computed exactly as `(F + s) / (N − F)` (the `N + s` cancels), so a
/// prior close to 1 loses nothing; the model odds as `logprob − ln(−expm1(logprob))`, accurate
/// for log-probabilities near 0 where `1 − exp(logprob)` would cancel. See [`MAX_LOGPROB`].
pub fn log_odds(logprob: f64, count: u64, num_tokens: u64, smoothing: f64) -> f64 {
    if count == 0 || count >= num_tokens || logprob.is_nan() {
        return f64::NEG_INFINITY;
    }
    let logprob = logprob.min(MAX_LOGPROB);
    // ln(P / (1 − P)) for P = exp(logprob); -expm1(x) = 1 − e^x without cancellation.
    let model_log_odds = logprob - (-logprob.exp_m1()).ln();
    // ln(P(n) / (1 − P(n))) = ln((F + s) / (N − F)); `num_tokens - count` is exact in u64.
    let prior_log_odds = (count as f64 + smoothing).ln() - ((num_tokens - count) as f64).ln();
    model_log_odds - prior_log_odds
}

/// SEAL's n-gram weight (Eq. 2): `w(n) = max(0, log_odds)^α` (see [`log_odds`] for Eq. 1).
///
/// `w = 0` whenever the log-odds are not positive (including `F = 0`), for every `α` (so `α = 0`
/// does not turn `0^0` into 1). The result is finite and `≥ 0` for finite `α ≥ 0`: the log-odds
/// are bounded by the [`MAX_LOGPROB`] cap (about `23 + ln N`).
pub fn ngram_weight(logprob: f64, count: u64, num_tokens: u64, alpha: f64, smoothing: f64) -> f64 {
    let odds = log_odds(logprob, count, num_tokens, smoothing);
    if odds > 0.0 {
        odds.powf(alpha)
    } else {
        0.0
    }
}

/// The coverage factor of Eq. 4, `cover(n, C) = 1 − β + β·|types(n) \ C| / |types(n)|`.
///
/// `types` are the distinct token types of the n-gram (duplicates would be counted twice: the
/// caller dedups); `is_covered` says whether a type is already in `C`. An empty `types` gives 1.
pub fn coverage_factor(types: &[u32], is_covered: impl Fn(u32) -> bool, beta: f64) -> f64 {
    if types.is_empty() {
        return 1.0;
    }
    let new = types.iter().filter(|&&t| !is_covered(t)).count();
    1.0 - beta + beta * new as f64 / types.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn weight_even_model_odds_against_prior_one_in_a_hundred() {
        // P(n|q) = 0.5 → model odds 0.5 / 0.5 = 1, ln 1 = 0.
        // F = 5, s = 5, N = 1005 → P(n) = 10 / 1010, 1 − P(n) = 1000 / 1010 → prior odds 10/1000.
        // log-odds = 0 − ln(0.01) = ln 100 = 4.605170185988091; w = (ln 100)² = 21.207592...
        let w = ngram_weight(0.5f64.ln(), 5, 1005, 2.0, 5.0);
        assert!(close(w, 100f64.ln().powi(2)), "{w}");
        assert!((w - 21.207592).abs() < 1e-6);
    }

    #[test]
    fn weight_nine_to_one_against_one_to_ten() {
        // P(n|q) = 0.9 → model odds 9. F = 45, s = 5, N = 545 → prior odds (45+5)/(545−45) = 0.1.
        // log-odds = ln 9 − ln 0.1 = ln 90 = 4.49980967...; α = 2 → 20.2482...; α = 1 → ln 90.
        let w2 = ngram_weight(0.9f64.ln(), 45, 545, 2.0, 5.0);
        assert!(close(w2, 90f64.ln().powi(2)), "{w2}");
        let w1 = ngram_weight(0.9f64.ln(), 45, 545, 1.0, 5.0);
        assert!(close(w1, 90f64.ln()), "{w1}");
        assert!(close(log_odds(0.9f64.ln(), 45, 545, 5.0), 90f64.ln()));
    }

    #[test]
    fn weight_is_zero_when_the_model_is_less_sure_than_the_corpus() {
        // P(n|q) = 0.001 → odds 1/999 ≈ 0.001; F = 95, s = 5, N = 1000 → prior odds 100/905 ≈ 0.11.
        // log-odds = ln(0.001001) − ln(0.1105) < 0 → w = 0 (also with α = 0: no 0^0 = 1).
        assert_eq!(ngram_weight(0.001f64.ln(), 95, 1000, 2.0, 5.0), 0.0);
        assert_eq!(ngram_weight(0.001f64.ln(), 95, 1000, 0.0, 5.0), 0.0);
        assert!(log_odds(0.001f64.ln(), 95, 1000, 5.0) < 0.0);
    }

    #[test]
    fn weight_is_zero_for_absent_or_all_covering_ngrams_and_bad_scores() {
        assert_eq!(ngram_weight(-0.1, 0, 1000, 2.0, 5.0), 0.0); // F = 0
        assert_eq!(ngram_weight(-0.1, 1000, 1000, 2.0, 5.0), 0.0); // F = N: P(n) = 1
        assert_eq!(ngram_weight(-0.1, 2000, 1000, 2.0, 5.0), 0.0); // F > N: nonsense, no panic
        assert_eq!(ngram_weight(f64::NAN, 3, 1000, 2.0, 5.0), 0.0);
        assert_eq!(ngram_weight(f64::NEG_INFINITY, 3, 1000, 2.0, 5.0), 0.0);
    }

    #[test]
    fn logprob_zero_is_capped_like_the_reference() {
        // logprob 0 → capped at −1e-10: model odds = (1 − 1e-10)/1e-10 → ln ≈ −ln(1e-10) = 23.02585093.
        // F = 5, s = 5, N = 1005 → prior log-odds ln(0.01) = −4.60517019.
        // log-odds ≈ 23.02585093 + 4.60517019 = 27.63102112 → w ≈ 763.4733...
        let expected = (-(1e-10f64.ln()) + 100f64.ln()).powi(2);
        for lp in [0.0, -0.0, 1e-20, 3.0] {
            let w = ngram_weight(lp, 5, 1005, 2.0, 5.0);
            assert!(w.is_finite());
            assert!((w - expected).abs() < 1e-6, "{lp}: {w} vs {expected}");
        }
        // Just below the cap, expm1 keeps the model odds accurate: P = exp(−1e-6) → odds ≈ 1e6.
        let odds = log_odds(-1e-6, 5, 1005, 5.0) - 100f64.ln();
        assert!((odds - (1e6f64 - 0.5).ln()).abs() < 1e-6, "{odds}");
    }

    #[test]
    fn coverage_factor_by_hand() {
        // β = 0.8, types {1,2,3,4}, C = {1}: 3 of 4 new → 1 − 0.8 + 0.8 · 3/4 = 0.2 + 0.6 = 0.8.
        assert!(close(coverage_factor(&[1, 2, 3, 4], |t| t == 1, 0.8), 0.8));
        // All covered → 1 − β = 0.2; none covered → 1.
        assert!(close(coverage_factor(&[1, 2], |_| true, 0.8), 0.2));
        assert!(close(coverage_factor(&[1, 2], |_| false, 0.8), 1.0));
        // β = 0.5, 1 of 3 new → 0.5 + 0.5/3 = 0.6666...
        assert!(close(coverage_factor(&[7, 8, 9], |t| t != 9, 0.5), 0.5 + 0.5 / 3.0));
        assert_eq!(coverage_factor(&[], |_| true, 0.8), 1.0);
    }

    proptest! {
        #[test]
        fn weight_grows_with_model_probability_and_shrinks_with_count(
            lp1 in -30.0f64..0.0, lp2 in -30.0f64..0.0,
            f1 in 1u64..10_000, f2 in 1u64..10_000, n in 20_000u64..1_000_000,
        ) {
            let (lo, hi) = if lp1 <= lp2 { (lp1, lp2) } else { (lp2, lp1) };
            prop_assert!(ngram_weight(lo, f1, n, 2.0, 5.0) <= ngram_weight(hi, f1, n, 2.0, 5.0));
            let (rare, common) = if f1 <= f2 { (f1, f2) } else { (f2, f1) };
            prop_assert!(ngram_weight(lo, common, n, 2.0, 5.0) <= ngram_weight(lo, rare, n, 2.0, 5.0));
            let w = ngram_weight(lo, f1, n, 2.0, 5.0);
            prop_assert!(w.is_finite() && w >= 0.0);
        }

        #[test]
        fn log_odds_match_the_textbook_formula_away_from_the_edges(
            p in 0.001f64..0.999, f in 1u64..1000, n in 2000u64..100_000,
        ) {
            let prior = (f as f64 + 5.0) / (n as f64 + 5.0);
            let textbook = (p * (1.0 - prior)).ln() - (prior * (1.0 - p)).ln();
            prop_assert!((log_odds(p.ln(), f, n, 5.0) - textbook).abs() < 1e-9);
        }
    }
}
