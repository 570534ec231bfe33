//! The statistics of `seal eval compare` against `testdata/eval/significance/golden.json`,
//! written by the plain-Python `make_golden.py` beside it: the same procedures with the same
//! generator must agree to 1e-12, and the Monte-Carlo values must come within their sampling
//! error of the exact ones (every sign pattern enumerated; the exact bootstrap distribution).

use super::{assert_close, testdata};
use seal::eval::significance::{compare_paired, PairedTest, TestSettings};

fn golden() -> serde_json::Value {
    let path = testdata().join("significance/golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(value: &serde_json::Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

#[test]
fn tests_and_intervals_equal_the_python_reference() {
    let golden = golden();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (baseline, system) = (floats(&case["baseline"]), floats(&case["system"]));
        let settings = TestSettings {
            test: PairedTest::Randomization,
            trials: case["trials"].as_u64().unwrap() as usize,
            seed: case["seed"].as_u64().unwrap(),
            confidence: case["confidence"].as_f64().unwrap(),
        };
        let same = &case["same_generator"];
        let exact = &case["exact"];
        let outcome = compare_paired(&baseline, &system, &settings).unwrap();
        let bootstrap = TestSettings { test: PairedTest::Bootstrap, ..settings };
        let bootstrap_outcome = compare_paired(&baseline, &system, &bootstrap).unwrap();
        let what = |s: &str| format!("{name}: {s}");
        assert_close(outcome.p_value, same["randomization_p"].as_f64().unwrap(), &what("p"));
        assert_close(
            bootstrap_outcome.p_value,
            same["bootstrap_p"].as_f64().unwrap(),
            &what("bootstrap p"),
        );
        let interval = floats(&same["interval"]);
        assert_close(outcome.interval.0, interval[0], &what("interval low"));
        assert_close(outcome.interval.1, interval[1], &what("interval high"));
        assert_eq!(bootstrap_outcome.interval, outcome.interval, "the interval ignores the test");
        assert_close(outcome.difference, exact["mean_difference"].as_f64().unwrap(), &what("Δ"));
        let counts = (outcome.wins, outcome.ties, outcome.losses);
        let want = |k: &str| case[k].as_u64().unwrap() as usize;
        assert_eq!(counts, (want("wins"), want("ties"), want("losses")), "{name}");

        // Against generator-free values, with 200,000 trials: p within 4.5 standard errors
        // (≤ 0.005), the interval within one grid step plus 0.002 of the exact quantiles.
        let many = TestSettings { trials: 200_000, seed: 7, ..settings };
        let precise = compare_paired(&baseline, &system, &many).unwrap();
        let exact_p = exact["randomization_p"].as_f64().unwrap();
        assert!(
            (precise.p_value - exact_p).abs() < 0.005,
            "{name}: {} vs {exact_p}",
            precise.p_value
        );
        let quantiles = floats(&exact["bootstrap_quantiles"]);
        let slack = exact["grid_step"].as_f64().unwrap() + 0.002;
        assert!((precise.interval.0 - quantiles[0]).abs() <= slack, "{name}: {precise:?}");
        assert!((precise.interval.1 - quantiles[1]).abs() <= slack, "{name}: {precise:?}");
    }
}
