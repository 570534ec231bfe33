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
