//! The llama-family model against an independent reference (llama.cpp, through the committed
//! fixture `testdata/llama/golden.json` made by `testdata/llama/make_golden.py`), and the beam
//! search paths (batched, forked, reordered, subset, teacher-forced) against running each beam
//! alone on the full vocabulary.
#![allow(clippy::needless_range_loop)]

use crate::common;
use crate::common::beam_paths;
use crate::common::golden;

use std::collections::HashSet;
use std::sync::OnceLock;

use seal::model::LanguageModel;

fn model() -> &'static LanguageModel {
    static MODEL: OnceLock<LanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| seal::model::load(&common::smollm2_path()).expect("load SmolLM2"))
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
/// kernel: mean |Δ| 0.120 nats over the top-20, llama.cpp's own 0.120), with the same most likely
/// token almost everywhere. The maximum is reported and only loosely bounded: it is 8-bit
/// rounding noise on rare tokens (reached: 0.87 vs exact, 1.07 vs llama.cpp; llama.cpp's own 0.90).
#[test]
fn int8_activations_stay_near_both_references() {
    let model = seal::model::load_with_precision(
        &common::smollm2_path(),
        seal::model::Precision::Int8Activations,
    )
    .expect("load SmolLM2");
    golden::int8_stays_near_both_references(&model, "llama");
}

const FIXTURE: beam_paths::Fixture = beam_paths::Fixture {
    prompt: &[504, 3575, 282, 4649, 314, 7042, 30, 378],
    step1: [28, 260, 1345],
    step2: [30, 11, 445, 30],
    subset: [0, 5, 49151, 28, 28],
};

#[test]
fn batched_forked_and_reordered_steps_equal_each_beam_alone() {
    beam_paths::batched_forked_and_reordered_steps_equal_each_beam_alone(model(), &FIXTURE);
}

#[test]
fn score_continuations_equals_step_by_step_scoring() {
    beam_paths::score_continuations_equals_step_by_step_scoring(model(), &FIXTURE);
}

#[test]
fn bad_requests_are_errors_not_panics() {
    beam_paths::bad_requests_are_errors_not_panics(model(), &FIXTURE);
}

#[test]
fn prefill_continue_equals_prefilling_the_whole_prompt() {
    beam_paths::prefill_continue_equals_prefilling_the_whole_prompt(model(), &FIXTURE);
}
