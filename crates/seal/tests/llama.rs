//! The llama-family model against an independent reference (llama.cpp, through the committed
//! fixture `testdata/llama/golden.json` made by `testdata/llama/make_golden.py`), and the beam
//! search paths (batched, forked, reordered, subset, teacher-forced) against running each beam
//! alone on the full vocabulary.
#![allow(clippy::needless_range_loop)]

mod common;
#[path = "common/golden.rs"]
mod golden;

use std::collections::HashSet;
use std::sync::OnceLock;

use seal::model::llama::LlamaModel;

fn model() -> &'static LlamaModel {
    static MODEL: OnceLock<LlamaModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        LlamaModel::load(&common::smollm2_path(), &candle_core::Device::Cpu).expect("load SmolLM2")
    })
}

/// Largest |Δ log-prob| over the fixture's top-20 ids against the exact float64 model
/// (reached: 0.0003 nats).
const EXACT_TOLERANCE: f64 = 0.005;
/// Largest |Δ log-prob| over the top-20 against llama.cpp (reached: 0.896 nats). llama.cpp
/// quantizes activations to 8 bits and keeps an f16 cache, so it is itself 0.896 nats from the
/// exact model at worst on this fixture (the same token as ours): the 0.05 cannot be met
/// against it by any exact implementation, so the exact reference carries the tight bound.
const LLAMA_CPP_TOLERANCE: f64 = 1.0;

#[test]
fn log_probs_match_references_at_every_position() {
    let model = model();
    let (mut worst_exact, mut worst_cpp) = ((0f64, String::new()), (0f64, String::new()));
    let (mut positions, mut top1_mismatches, mut top5_mismatches) = (0, 0, 0);
    for (c, case) in golden::golden("llama").iter().enumerate() {
        let rows = model.prompt_log_probs(&case.tokens).unwrap();
        assert_eq!(rows.len(), case.top.len());
        for (p, (row, reference)) in rows.iter().zip(&case.top).enumerate() {
            let ours: HashSet<u32> = golden::top_ids(row, 5).into_iter().collect();
            let theirs: HashSet<u32> = reference[..5].iter().map(|&(id, _)| id).collect();
            // Not asserted: llama.cpp's own 8-bit error reorders near-ties (the exact model
            // disagrees with it at the same positions); reported for the record.
            top5_mismatches += usize::from(ours != theirs);
            top1_mismatches += usize::from(golden::top_ids(row, 1)[0] != reference[0].0);
            for (&(id, lp), &exact) in reference.iter().zip(&case.exact[p]) {
                let ours = row[id as usize] as f64;
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
    eprintln!("{positions} positions; max |Δ| over the top-20: vs exact {:.5} ({}), vs llama.cpp {:.5} ({}); top-1 mismatches with llama.cpp {top1_mismatches}, top-5 set mismatches {top5_mismatches}",
        worst_exact.0, worst_exact.1, worst_cpp.0, worst_cpp.1);
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

/// The opt-in llama.cpp arithmetic (8-bit activations) against both references: on average it
/// should be about as far from the exact model as llama.cpp itself is (reached with the VNNI
/// kernel: mean |Δ| 0.117 nats over the top-20, llama.cpp's own 0.120), with the same most likely
/// token almost everywhere. The maximum is reported and only loosely bounded: it is 8-bit
/// rounding noise on rare tokens (reached: 1.10 vs exact, 0.93 vs llama.cpp; llama.cpp's own 0.90).
#[test]
fn int8_activations_stay_near_both_references() {
    use seal::model::llama::Precision;
    let model = LlamaModel::load_with_precision(
        &common::smollm2_path(),
        &candle_core::Device::Cpu,
        Precision::Int8Activations,
    )
    .expect("load SmolLM2");
    let (mut worst_exact, mut worst_cpp, mut top1_vs_exact, mut positions) = (0f64, 0f64, 0, 0);
    let (mut sum_exact, mut sum_cpp, mut sum_cpp_exact, mut values) = (0f64, 0f64, 0f64, 0usize);
    for case in golden::golden("llama") {
        let rows = model.prompt_log_probs(&case.tokens).unwrap();
        for (p, row) in rows.iter().enumerate() {
            for (&(id, lp), &exact) in case.top[p].iter().zip(&case.exact[p]) {
                worst_exact = worst_exact.max((row[id as usize] as f64 - exact).abs());
                worst_cpp = worst_cpp.max((row[id as usize] as f64 - lp).abs());
                sum_exact += (row[id as usize] as f64 - exact).abs();
                sum_cpp += (row[id as usize] as f64 - lp).abs();
                sum_cpp_exact += (lp - exact).abs();
                values += 1;
            }
            let best_exact = case.top[p]
                .iter()
                .zip(&case.exact[p])
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
                 .0;
            top1_vs_exact += usize::from(golden::top_ids(row, 1)[0] != best_exact);
            positions += 1;
        }
    }
    let n = values as f64;
    let (mean_exact, mean_cpp, cpp_from_exact) = (sum_exact / n, sum_cpp / n, sum_cpp_exact / n);
    eprintln!("int8 activations: max |Δ| vs exact {worst_exact:.4}, vs llama.cpp {worst_cpp:.4}; mean |Δ| vs exact {mean_exact:.4} (llama.cpp's own {cpp_from_exact:.4}), vs llama.cpp {mean_cpp:.4}; top-1 differs from exact at {top1_vs_exact}/{positions}");
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

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{what}: max difference {worst}");
}

/// A beam run alone: prefill, then one single-beam step per token.
fn alone(model: &LlamaModel, prompt: &[u32], tokens: &[u32]) -> Vec<f32> {
    let (mut state, mut last) = model.prefill(prompt).unwrap();
    for &t in tokens {
        last = model.step(&mut state, &[0], &[t]).unwrap().row(0).to_vec();
    }
    last
}

const PROMPT: [u32; 8] = [504, 3575, 282, 4649, 314, 7042, 30, 378];

#[test]
fn batched_forked_and_reordered_steps_equal_each_beam_alone() {
    let model = model();
    let (mut state, first) = model.prefill(&PROMPT).unwrap();
    // The one-batch prefill of a longer prompt predicts the same as prefill + step.
    let prefix_path = model.prefill(&[&PROMPT[..], &[28]].concat()).unwrap().1;
    assert_close(&prefix_path, &alone(model, &PROMPT, &[28]), "prefill vs prefill + step");
    assert_close(&first, &alone(model, &PROMPT, &[]), "prefill");

    // Step 1: three beams forked from the prompt.
    let t1 = [28u32, 260, 1345];
    let out1 = model.step(&mut state, &[0, 0, 0], &t1).unwrap();
    assert_eq!(out1.num_rows(), 3);
    for b in 0..3 {
        assert_close(out1.row(b), &alone(model, &PROMPT, &[t1[b]]), "step 1");
    }
    // Step 2: reordered, one parent forked twice, one dropped.
    let parents2 = [2usize, 0, 2, 1];
    let t2 = [30u32, 11, 445, 30];
    let out2 = model.step(&mut state, &parents2, &t2).unwrap();
    let mut histories: Vec<Vec<u32>> = Vec::new();
    for b in 0..4 {
        let history = vec![t1[parents2[b]], t2[b]];
        assert_close(out2.row(b), &alone(model, &PROMPT, &history), "step 2");
        histories.push(history);
    }
    // Step 3 through the subset head: exact same numbers as the full path for those ids.
    let parents3 = [3usize, 1];
    let t3 = [7u32, 9];
    let subsets: [&[u32]; 2] = [&[0, 5, 49151, 28, 28], &[1000, 2]];
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

/// A state with the given beams, built by replaying them in one batch per step.
fn clone_by_replay(model: &LlamaModel, histories: &[Vec<u32>]) -> seal::model::llama::DecodeState {
    let (mut state, _) = model.prefill(&PROMPT).unwrap();
    let len = histories[0].len();
    for step in 0..len {
        let parents: Vec<usize> =
            if step == 0 { vec![0; histories.len()] } else { (0..histories.len()).collect() };
        let tokens: Vec<u32> = histories.iter().map(|h| h[step]).collect();
        model.step(&mut state, &parents, &tokens).unwrap();
    }
    state
}

#[test]
fn score_continuations_equals_step_by_step_scoring() {
    let model = model();
    let continuations = vec![vec![28u32, 260, 30], vec![1345], vec![], vec![28, 11]];
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
    assert!(
        model.step(&mut state, &[1], &[5]).is_err(),
        "parent 1 does not exist after the prefill"
    );
    assert!(model.step(&mut state, &[0, 0], &[5]).is_err(), "lengths differ");
    assert!(model.step_subset(&mut state, &[0], &[5], &[&[u32::MAX]]).is_err());
    // The state is still usable after rejected requests.
    let out = model.step(&mut state, &[0], &[28]).unwrap();
    assert_close(out.row(0), &alone(model, &PROMPT, &[28]), "after errors");
}

/// A prompt prefilled in two parts (a shared prefix, then the rest) gives the log-probs of the
/// prompt prefilled at once, whatever the split (prefixes long enough for the prompt-sized
/// kernels included), and the continued state decodes like the one-batch state. Bit for bit where
/// the kernels are batch-invariant at every size (AVX-512); within 1e-4 where prompts take the
/// gemm (its summation order differs from the decoding kernels').
#[test]
fn prefill_continue_equals_prefilling_the_whole_prompt() {
    let model = model();
    #[cfg(target_arch = "x86_64")]
    let bit_exact = seal::model::ops::Kernel::detect().avx512();
    #[cfg(not(target_arch = "x86_64"))]
    let bit_exact = false;
    let assert_close = |a: &[f32], b: &[f32], what: &str| {
        if bit_exact {
            assert!(a == b, "{what}: not bit-identical with batch-invariant kernels");
        } else {
            assert_close(a, b, what);
        }
    };
    let whole: Vec<u32> = (0..70u32).map(|i| 200 + (i * 7919) % 20000).collect();
    let (mut whole_state, whole_first) = model.prefill(&whole).unwrap();
    let whole_step = model.step(&mut whole_state, &[0, 0], &[28, 260]).unwrap();
    for split in [1usize, 8, 40, 69] {
        let (prefix, _) = model.prefill(&whole[..split]).unwrap();
        let (mut state, first) = model.prefill_continue(&prefix, &whole[split..]).unwrap();
        assert_eq!(state.prompt_len(), whole.len());
        assert_close(&first, &whole_first, &format!("split at {split}: first"));
        let step = model.step(&mut state, &[0, 0], &[28, 260]).unwrap();
        for b in 0..2 {
            assert_close(step.row(b), whole_step.row(b), &format!("split at {split}: step"));
        }
        // Continuing in two further pieces gives the same again; the prefix is reusable.
        let (mid, _) = model.prefill_continue(&prefix, &whole[split..split + 1]).unwrap();
        if split + 1 < whole.len() {
            let (_, again) = model.prefill_continue(&mid, &whole[split + 1..]).unwrap();
            assert_close(&again, &whole_first, &format!("split at {split}: three parts"));
        }
    }
    let (prefix, _) = model.prefill(&whole[..8]).unwrap();
    assert!(model.prefill_continue(&prefix, &[]).is_err(), "nothing to continue with");
    assert!(model.prefill_continue(&prefix, &[model.vocab_size() as u32]).is_err());
    // The beams a prefix has grown are ignored: only its prompt is continued.
    let mut stepped = prefix.clone();
    model.step(&mut stepped, &[0], &[28]).unwrap();
    let (_, from_stepped) = model.prefill_continue(&stepped, &[5]).unwrap();
    let (_, from_fresh) = model.prefill_continue(&prefix, &[5]).unwrap();
    assert_eq!(from_stepped, from_fresh, "beams of the prefix are ignored");
}
