//! The model golden fixtures (`testdata/<family>/golden.json`, made by that folder's
//! `make_golden.py` from llama.cpp and a float64 forward pass over the same GGUF): loading them,
//! and the top-k of a log-prob row.

#![allow(dead_code)]

/// One prompt of a fixture.
pub struct Case {
    pub tokens: Vec<u32>,
    /// Per position: llama.cpp's 20 most likely next tokens (id, log-prob), most likely first.
    pub top: Vec<Vec<(u32, f64)>>,
    /// Per position: the exact (float64, dequantized weights) log-probs of the same 20 ids.
    pub exact: Vec<Vec<f64>>,
}

/// The cases of `testdata/<family>/golden.json`.
pub fn golden(family: &str) -> Vec<Case> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(family)
        .join("golden.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let pair = |p: &serde_json::Value| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap());
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            tokens: c["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect(),
            top: c["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pos| pos.as_array().unwrap().iter().map(pair).collect())
                .collect(),
            exact: c["exact"].as_array().unwrap().iter().map(floats).collect(),
        })
        .collect()
}

/// The ids of the `k` largest values of `row`, largest first.
pub fn top_ids(row: &[f32], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..row.len() as u32).collect();
    ids.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    ids.truncate(k);
    ids
}

/// The int8 arithmetic (llama.cpp's) of `model` against both references of `family`'s fixture:
/// on average as far from the exact model as llama.cpp itself is (within 25 %), the maximum
/// loosely bounded (8-bit rounding noise on rare tokens), and the most likely token the exact
/// model's at 95 % of the positions. Prints what it measured.
pub fn int8_stays_near_both_references(model: &seal::model::LanguageModel, family: &str) {
    let (mut worst_exact, mut worst_cpp, mut top1_vs_exact, mut positions) = (0f64, 0f64, 0, 0);
    let (mut sum_exact, mut sum_cpp, mut sum_cpp_exact, mut values) = (0f64, 0f64, 0f64, 0usize);
    for case in golden(family) {
        let rows = model.prompt_log_probs(&case.tokens).unwrap();
        for (p, row) in rows.iter().enumerate() {
            for (&(id, lp), &exact) in case.top[p].iter().zip(&case.exact[p]) {
                let ours = row[id as usize] as f64;
                worst_exact = worst_exact.max((ours - exact).abs());
                worst_cpp = worst_cpp.max((ours - lp).abs());
                sum_exact += (ours - exact).abs();
                sum_cpp += (ours - lp).abs();
                sum_cpp_exact += (lp - exact).abs();
                values += 1;
            }
            let best_exact = case.top[p]
                .iter()
                .zip(&case.exact[p])
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(&(id, _), _)| id)
                .unwrap();
            top1_vs_exact += usize::from(top_ids(row, 1)[0] != best_exact);
            positions += 1;
        }
    }
    let n = values as f64;
    let (mean_exact, mean_cpp, cpp_from_exact) = (sum_exact / n, sum_cpp / n, sum_cpp_exact / n);
    eprintln!("{family} int8 activations: max |Δ| vs exact {worst_exact:.4}, vs llama.cpp {worst_cpp:.4}; mean |Δ| vs exact {mean_exact:.4} (llama.cpp's own {cpp_from_exact:.4}), vs llama.cpp {mean_cpp:.4}; top-1 differs from exact at {top1_vs_exact}/{positions}");
    assert!(
        mean_exact <= 1.25 * cpp_from_exact && mean_cpp <= 1.25 * cpp_from_exact,
        "int8: mean {mean_exact} vs exact, {mean_cpp} vs llama.cpp (llama.cpp from exact: {cpp_from_exact})"
    );
    assert!(
        worst_exact <= 2.0 && worst_cpp <= 2.0,
        "int8: {worst_exact} vs exact, {worst_cpp} vs llama.cpp"
    );
    assert!(
        top1_vs_exact * 20 <= positions,
        "int8 changes the top token at {top1_vs_exact} of {positions} positions"
    );
}
