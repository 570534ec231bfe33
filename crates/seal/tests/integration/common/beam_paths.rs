//! The beam-search paths of any model family checked against running each beam alone on the full
//! vocabulary: batched, forked and reordered steps, the subset head, teacher-forced scoring, the
//! continued prefill, and bad requests. Each family's test file calls these with its model and
//! a [`Fixture`] of token ids valid in its vocabulary.
#![allow(dead_code, clippy::needless_range_loop)]

use seal::model::llama::DecodeState;
use seal::model::LanguageModel;

/// Token ids for one family's checks.
pub struct Fixture {
    /// A short prompt (the family's own tokens of a real sentence).
    pub prompt: &'static [u32],
    /// Three first tokens of three beams (the first is also "the next token").
    pub step1: [u32; 3],
    /// Tokens of the second step's four beams.
    pub step2: [u32; 4],
    /// Token ids for the subset head, the last vocabulary id and a repeated id included.
    pub subset: [u32; 5],
}

pub fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{what}: max difference {worst}");
}

/// A beam run alone: prefill, then one single-beam step per token.
pub fn alone(model: &LanguageModel, prompt: &[u32], tokens: &[u32]) -> Vec<f32> {
    let (mut state, mut last) = model.prefill(prompt).unwrap();
    for &t in tokens {
        last = model.step(&mut state, &[0], &[t]).unwrap().row(0).to_vec();
    }
    last
}

/// A state with the given beams, built by replaying them in one batch per step.
fn replay(model: &LanguageModel, prompt: &[u32], histories: &[Vec<u32>]) -> DecodeState {
    let (mut state, _) = model.prefill(prompt).unwrap();
    for step in 0..histories[0].len() {
        let parents: Vec<usize> =
            if step == 0 { vec![0; histories.len()] } else { (0..histories.len()).collect() };
        let tokens: Vec<u32> = histories.iter().map(|h| h[step]).collect();
        model.step(&mut state, &parents, &tokens).unwrap();
    }
    state
}

pub fn batched_forked_and_reordered_steps_equal_each_beam_alone(
    model: &LanguageModel,
    f: &Fixture,
) {
    let prompt = f.prompt;
    let (mut state, first) = model.prefill(prompt).unwrap();
    // The one-batch prefill of a longer prompt predicts the same as prefill + step.
    let next = f.step1[0];
    let prefix_path = model.prefill(&[prompt, &[next]].concat()).unwrap().1;
    assert_close(&prefix_path, &alone(model, prompt, &[next]), "prefill vs prefill + step");
    assert_close(&first, &alone(model, prompt, &[]), "prefill");

    // Step 1: three beams forked from the prompt.
    let t1 = f.step1;
    let out1 = model.step(&mut state, &[0, 0, 0], &t1).unwrap();
    assert_eq!(out1.num_rows(), 3);
    for b in 0..3 {
        assert_close(out1.row(b), &alone(model, prompt, &[t1[b]]), "step 1");
    }
    // Step 2: reordered, one parent forked twice, one dropped.
    let parents2 = [2usize, 0, 2, 1];
    let t2 = f.step2;
    let out2 = model.step(&mut state, &parents2, &t2).unwrap();
    let mut histories: Vec<Vec<u32>> = Vec::new();
    for b in 0..4 {
        let history = vec![t1[parents2[b]], t2[b]];
        assert_close(out2.row(b), &alone(model, prompt, &history), "step 2");
        histories.push(history);
    }
    // Step 3 through the subset head: exact same numbers as the full path for those ids.
    let parents3 = [3usize, 1];
    let t3 = [7u32, 9];
    let subsets: [&[u32]; 2] = [&f.subset, &[1000, 2]];
    let mut forked = replay(model, prompt, &histories);
    let full = model.step(&mut forked, &parents3, &t3).unwrap();
    let sub = model.step_subset(&mut state, &parents3, &t3, &subsets).unwrap();
    for b in 0..2 {
        let mut history = histories[parents3[b]].clone();
        history.push(t3[b]);
        let reference = alone(model, prompt, &history);
        assert_close(full.row(b), &reference, "step 3 full");
        let expected: Vec<f32> = subsets[b].iter().map(|&id| reference[id as usize]).collect();
        assert_close(&sub[b], &expected, "step 3 subset");
    }
}

pub fn score_continuations_equals_step_by_step_scoring(model: &LanguageModel, f: &Fixture) {
    let [a, b, c] = f.step1;
    let continuations = vec![vec![a, b, f.step2[0]], vec![c], vec![], vec![a, 11]];
    let scores = model.score_continuations(f.prompt, &continuations).unwrap();
    assert_eq!(scores.len(), continuations.len());
    for (c, s) in continuations.iter().zip(&scores) {
        assert_eq!(s.len(), c.len());
        for j in 0..c.len() {
            let dist = alone(model, f.prompt, &c[..j]);
            assert!(
                (s[j] - dist[c[j] as usize]).abs() <= 1e-4,
                "continuation {c:?} token {j}: {} vs {}",
                s[j],
                dist[c[j] as usize]
            );
        }
    }
}

pub fn bad_requests_are_errors_not_panics(model: &LanguageModel, f: &Fixture) {
    assert!(model.prefill(&[]).is_err());
    assert!(model.prefill(&[model.vocab_size() as u32]).is_err());
    let (mut state, _) = model.prefill(f.prompt).unwrap();
    assert!(
        model.step(&mut state, &[1], &[5]).is_err(),
        "parent 1 does not exist after the prefill"
    );
    assert!(model.step(&mut state, &[0, 0], &[5]).is_err(), "lengths differ");
    assert!(model.step_subset(&mut state, &[0], &[5], &[&[u32::MAX]]).is_err());
    // The state is still usable after rejected requests.
    let out = model.step(&mut state, &[0], &[f.step1[0]]).unwrap();
    assert_close(out.row(0), &alone(model, f.prompt, &[f.step1[0]]), "after errors");
}

/// A prompt prefilled in two parts (a shared prefix, then the rest) gives the log-probs of the
/// prompt prefilled at once, whatever the split (prefixes long enough for the prompt-sized
/// kernels included), and the continued state decodes like the one-batch state. Bit for bit where
/// the kernels are batch-invariant at every size (AVX-512); within 1e-4 where prompts take the
/// gemm (its summation order differs from the decoding kernels').
pub fn prefill_continue_equals_prefilling_the_whole_prompt(model: &LanguageModel, f: &Fixture) {
    #[cfg(target_arch = "x86_64")]
    let bit_exact = seal::model::kernels::Kernel::detect().avx512();
    #[cfg(not(target_arch = "x86_64"))]
    let bit_exact = false;
    let assert_close = |a: &[f32], b: &[f32], what: &str| {
        if bit_exact {
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(
                a == b,
                "{what}: not bit-identical with batch-invariant kernels (max difference {worst})"
            );
        } else {
            assert_close(a, b, what);
        }
    };
    let [a, b, _] = f.step1;
    let whole: Vec<u32> = (0..70u32).map(|i| 200 + (i * 7919) % 20000).collect();
    let (mut whole_state, whole_first) = model.prefill(&whole).unwrap();
    let whole_step = model.step(&mut whole_state, &[0, 0], &[a, b]).unwrap();
    for split in [1usize, 8, 40, 69] {
        let (prefix, _) = model.prefill(&whole[..split]).unwrap();
        let (mut state, first) = model.prefill_continue(&prefix, &whole[split..]).unwrap();
        assert_eq!(state.prompt_len(), whole.len());
        assert_close(&first, &whole_first, &format!("split at {split}: first"));
        let step = model.step(&mut state, &[0, 0], &[a, b]).unwrap();
        for r in 0..2 {
            assert_close(step.row(r), whole_step.row(r), &format!("split at {split}: step"));
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
    model.step(&mut stepped, &[0], &[a]).unwrap();
    let (_, from_stepped) = model.prefill_continue(&stepped, &[5]).unwrap();
    let (_, from_fresh) = model.prefill_continue(&prefix, &[5]).unwrap();
    assert_eq!(from_stepped, from_fresh, "beams of the prefix are ignored");
}
