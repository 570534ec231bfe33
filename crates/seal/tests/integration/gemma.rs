//! The Gemma 3 model against two independent references on the same GGUF (llama.cpp and a
//! float64 numpy forward pass, through the committed fixture `testdata/gemma/golden.json` made
//! by `testdata/gemma/make_golden.py`), and the beam search paths (batched, forked, reordered,
//! subset, teacher-forced, continued prefill) against running each beam alone on the full
//! vocabulary. Also [`seal::model::load`] dispatching on the architecture.
#![allow(clippy::needless_range_loop)]

use crate::common;
use crate::common::beam_paths;
use crate::common::golden;

use std::collections::HashSet;
use std::sync::OnceLock;

use seal::model::gemma::GemmaModel;
use seal::model::LanguageModel;

fn model() -> &'static LanguageModel {
    static MODEL: OnceLock<LanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| seal::model::load(&common::gemma3_path()).expect("load Gemma 3"))
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

/// `<bos>The capital of France is Paris. The capital of Germany is` (llama.cpp's ids).
const FIXTURE: beam_paths::Fixture = beam_paths::Fixture {
    prompt: &[2, 818, 5279, 529, 7001, 563, 9079, 236761, 669, 5279, 529, 9405, 563],
    step1: [9079, 12345, 236761],
    step2: [669, 11, 445, 236761],
    subset: [0, 5, 262_143, 9079, 9079],
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

/// The opt-in int8 arithmetic on Gemma: as far from the exact model as llama.cpp is, on
/// average (see `golden::int8_stays_near_both_references`).
#[test]
fn int8_activations_stay_near_both_references() {
    let model = seal::model::load_with_precision(
        &common::gemma3_path(),
        seal::model::Precision::Int8Activations,
    )
    .expect("load Gemma 3");
    golden::int8_stays_near_both_references(&model, "gemma");
}

#[test]
fn load_dispatches_on_the_architecture() {
    let m = model();
    assert_eq!(m.architecture(), "gemma3");
    assert_eq!(m.vocab_size(), 262_144);
    let direct = LanguageModel::from(
        GemmaModel::load(&common::gemma3_path(), &candle_core::Device::Cpu).unwrap(),
    );
    let (_, row) = m.prefill(FIXTURE.prompt).unwrap();
    beam_paths::assert_close(
        &row,
        &direct.prefill(FIXTURE.prompt).unwrap().1,
        "dispatched by `load` and loaded by the family directly",
    );
}
