//! The Gemma 3 model against two independent references on the same GGUF (llama.cpp and a
//! float64 numpy forward pass, through the committed fixture `testdata/gemma/golden.json` made
//! by `testdata/gemma/make_golden.py`), and the beam search paths (batched, forked, reordered,
//! subset, teacher-forced, continued prefill) against running each beam alone on the full
//! vocabulary. Also [`seal::model::load`] dispatching on the architecture.
#![allow(clippy::needless_range_loop)]

mod common;
#[path = "common/golden.rs"]
mod golden;

use std::collections::HashSet;
use std::sync::OnceLock;

use seal::model::gemma::GemmaModel;
use seal::model::llama::DecodeState;

fn model() -> &'static GemmaModel {
    static MODEL: OnceLock<GemmaModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        GemmaModel::load(&common::gemma3_path(), &candle_core::Device::Cpu).expect("load Gemma 3")
    })
}

/// Largest |Δ log-prob| over the fixture's top-20 ids against the exact float64 model
/// (reached: 0.00103 nats, 117 positions).
const EXACT_TOLERANCE: f64 = 0.005;
/// Largest |Δ log-prob| over the top-20 against llama.cpp (reached: 1.042 nats). llama.cpp
/// quantizes activations to 8 bits, keeps an f16 cache and takes GELU from an f16 table: on this
/// fixture it is itself 1.042 nats from the exact model at the same token, and its top-5 set
/// differs from the exact model's at 22 of 117 positions (top-1 at 5), exactly where ours
/// differs from it. So the exact reference carries the tight bound and the top-5 assertion.
const LLAMA_CPP_TOLERANCE: f64 = 1.1;

#[test]
fn log_probs_match_references_at_every_position() {
    let model = model();
    let (mut worst_exact, mut worst_cpp) = ((0f64, String::new()), (0f64, String::new()));
    let (mut positions, mut top1_mismatches, mut top5_mismatches, mut top5_vs_exact) = (0, 0, 0, 0);
    let mut cpp_vs_exact = 0f64;
    for (c, case) in golden::golden("gemma").iter().enumerate() {
        let rows = model.prompt_log_probs(&case.tokens).unwrap();
        assert_eq!(rows.len(), case.top.len());
        for (p, (row, reference)) in rows.iter().zip(&case.top).enumerate() {
            let ours: HashSet<u32> = golden::top_ids(row, 5).into_iter().collect();
            let theirs: HashSet<u32> = reference[..5].iter().map(|&(id, _)| id).collect();
            top5_mismatches += usize::from(ours != theirs);
            top1_mismatches += usize::from(golden::top_ids(row, 1)[0] != reference[0].0);
            // The exact model's own top-5 among llama.cpp's top-20.
            let mut by_exact: Vec<(u32, f64)> =
                reference.iter().zip(&case.exact[p]).map(|(&(id, _), &e)| (id, e)).collect();
            by_exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let exact5: HashSet<u32> = by_exact[..5].iter().map(|&(id, _)| id).collect();
            let ours_among: Vec<u32> = {
                let mut v: Vec<(u32, f32)> =
                    reference.iter().map(|&(id, _)| (id, row[id as usize])).collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                v[..5].iter().map(|&(id, _)| id).collect()
            };
            top5_vs_exact += usize::from(ours_among.into_iter().collect::<HashSet<_>>() != exact5);
            for (&(id, lp), &exact) in reference.iter().zip(&case.exact[p]) {
                let ours = row[id as usize] as f64;
                cpp_vs_exact = cpp_vs_exact.max((lp - exact).abs());
                let where_ = format!("prompt {c}, position {p}, token {id}: ours {ours}, llama.cpp {lp}, exact {exact}");
                if (ours - lp).abs() > worst_cpp.0 {
                    worst_cpp = ((ours - lp).abs(), where_.clone());
                }
                if (ours - exact).abs() > worst_exact.0 {
                    worst_exact = ((ours - exact).abs(), where_);
                }
            }
            positions += 1;
        }
    }
    eprintln!("{positions} positions; max |Δ| over the top-20: vs exact {:.5} ({}), vs llama.cpp {:.5} ({}); llama.cpp vs exact {cpp_vs_exact:.5}; top-1 mismatches with llama.cpp {top1_mismatches}, top-5 set mismatches {top5_mismatches}, with exact {top5_vs_exact}",
        worst_exact.0, worst_exact.1, worst_cpp.0, worst_cpp.1);
    assert_eq!(top5_vs_exact, 0, "top-5 sets differ from the exact model's");
    assert!(
        worst_exact.0 <= EXACT_TOLERANCE,
        "vs exact: {:.5} at {}",
        worst_exact.0,
        worst_exact.1
    );
    assert!(
        worst_cpp.0 <= LLAMA_CPP_TOLERANCE,
        "vs llama.cpp: {:.5} at {}",
        worst_cpp.0,
        worst_cpp.1
    );
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{what}: max difference {worst}");
}

/// A beam run alone: prefill, then one single-beam step per token.
fn alone(model: &GemmaModel, prompt: &[u32], tokens: &[u32]) -> Vec<f32> {
    let (mut state, mut last) = model.prefill(prompt).unwrap();
    for &t in tokens {
        last = model.step(&mut state, &[0], &[t]).unwrap().row(0).to_vec();
    }
    last
}

/// `<bos>The capital of France is Paris. The capital of Germany is` (llama.cpp's ids).
const PROMPT: [u32; 13] = [2, 818, 5279, 529, 7001, 563, 9079, 236761, 669, 5279, 529, 9405, 563];

#[test]
fn batched_forked_and_reordered_steps_equal_each_beam_alone() {
    let model = model();
    let (mut state, first) = model.prefill(&PROMPT).unwrap();
    let prefix_path = model.prefill(&[&PROMPT[..], &[9079]].concat()).unwrap().1;
    assert_close(&prefix_path, &alone(model, &PROMPT, &[9079]), "prefill vs prefill + step");
    assert_close(&first, &alone(model, &PROMPT, &[]), "prefill");

    let t1 = [12345u32, 9079, 236761];
    let out1 = model.step(&mut state, &[0, 0, 0], &t1).unwrap();
    assert_eq!(out1.num_rows(), 3);
    for b in 0..3 {
        assert_close(out1.row(b), &alone(model, &PROMPT, &[t1[b]]), "step 1");
    }
    let parents2 = [2usize, 0, 2, 1];
    let t2 = [669u32, 11, 445, 236761];
    let out2 = model.step(&mut state, &parents2, &t2).unwrap();
    let mut histories: Vec<Vec<u32>> = Vec::new();
    for b in 0..4 {
        let history = vec![t1[parents2[b]], t2[b]];
        assert_close(out2.row(b), &alone(model, &PROMPT, &history), "step 2");
        histories.push(history);
    }
    let parents3 = [3usize, 1];
    let t3 = [7u32, 9];
    let subsets: [&[u32]; 2] = [&[0, 5, 262_143, 9079, 9079], &[1000, 2]];
    let mut forked = clone_by_replay(model, &histories);
    let full = model.step(&mut forked, &parents3, &t3).unwrap();
    let sub = model.step_subset(&mut state, &parents3, &t3, &subsets).unwrap();
    for b in 0..2 {
        let mut history = histories[parents3[b]].clone();
        history.push(t3[b]);
        let reference = alone(model, &PROMPT, &history);
        assert_close(full.row(b), &reference, "step 3 full");
        let expected: Vec<f32> = subsets[b].iter().map(|&id| reference[id as usize]).collect();
        assert_close(&sub[b], &expected, "step 3 subset");
    }
}

fn clone_by_replay(model: &GemmaModel, histories: &[Vec<u32>]) -> DecodeState {
    let (mut state, _) = model.prefill(&PROMPT).unwrap();
    for step in 0..histories[0].len() {
        let parents: Vec<usize> =
            if step == 0 { vec![0; histories.len()] } else { (0..histories.len()).collect() };
        let tokens: Vec<u32> = histories.iter().map(|h| h[step]).collect();
        model.step(&mut state, &parents, &tokens).unwrap();
    }
    state
}

#[test]
fn continued_prefill_equals_one_prefill_of_the_whole_prompt() {
    let model = model();
    let (whole_state, whole) = model.prefill(&PROMPT).unwrap();
    let (prefix, _) = model.prefill(&PROMPT[..5]).unwrap();
    let (mut state, continued) = model.prefill_continue(&prefix, &PROMPT[5..]).unwrap();
    assert_close(&continued, &whole, "continued prefill");
    assert_eq!(state.prompt_len(), PROMPT.len());
    // In two pieces, and after the prefix has decoded beams of its own (they are ignored).
    let (mut beams, _) = model.prefill(&PROMPT[..5]).unwrap();
    model.step(&mut beams, &[0, 0], &[11, 12]).unwrap();
    let (mid, _) = model.prefill_continue(&beams, &PROMPT[5..9]).unwrap();
    let (_, twice) = model.prefill_continue(&mid, &PROMPT[9..]).unwrap();
    assert_close(&twice, &whole, "two continued prefills");
    // Decoding from the continued state equals decoding from the whole prompt.
    let mut whole_state = whole_state;
    let a = model.step(&mut state, &[0, 0], &[9079, 11]).unwrap();
    let b = model.step(&mut whole_state, &[0, 0], &[9079, 11]).unwrap();
    for r in 0..2 {
        assert_close(a.row(r), b.row(r), "step after continued prefill");
    }
    assert!(model.prefill_continue(&prefix, &[]).is_err());
}

#[test]
fn score_continuations_equals_step_by_step_scoring() {
    let model = model();
    let continuations = vec![vec![9079u32, 236761, 669], vec![12345], vec![], vec![9079, 11]];
    let scores = model.score_continuations(&PROMPT, &continuations).unwrap();
    assert_eq!(scores.len(), continuations.len());
    for (c, s) in continuations.iter().zip(&scores) {
        assert_eq!(s.len(), c.len());
        for j in 0..c.len() {
            let dist = alone(model, &PROMPT, &c[..j]);
            assert!(
                (s[j] - dist[c[j] as usize]).abs() <= 1e-4,
                "continuation {c:?} token {j}: {} vs {}",
                s[j],
                dist[c[j] as usize]
            );
        }
    }
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let model = model();
    assert!(model.prefill(&[]).is_err());
    assert!(model.prefill(&[model.vocab_size() as u32]).is_err());
    let (mut state, _) = model.prefill(&PROMPT).unwrap();
    assert!(model.step(&mut state, &[1], &[5]).is_err());
    assert!(model.step(&mut state, &[0, 0], &[5]).is_err());
    assert!(model.step_subset(&mut state, &[0], &[5], &[&[u32::MAX]]).is_err());
    let out = model.step(&mut state, &[0], &[9079]).unwrap();
    assert_close(out.row(0), &alone(model, &PROMPT, &[9079]), "after errors");
}

#[test]
fn load_dispatches_on_the_architecture() {
    let m = seal::model::load(&common::gemma3_path()).unwrap();
    assert_eq!(m.architecture(), "gemma3");
    assert_eq!(m.vocab_size(), 262_144);
    let (_, row) = m.prefill(&PROMPT).unwrap();
    assert_close(&row, &model().prefill(&PROMPT).unwrap().1, "through LanguageModel");
}
