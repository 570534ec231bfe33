//! The model-level ops of [`super`] in 16 AVX-512 lanes.

use std::arch::x86_64::*;

/// e^x in 16 lanes (Cephes `expf`: x = n·ln2 + r, degree-6 polynomial of r, scaled by
/// 2^n; +∞ past 88.7). Inputs below −103 count as e^−103 ≈ 1e−45: nothing next to the sum's
/// largest term in a log-sum-exp, which is 1, nor next to the 1 of a sigmoid.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn exp_512(x: __m512) -> __m512 {
    let x = _mm512_max_ps(x, _mm512_set1_ps(-103.0));
    let n = _mm512_roundscale_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let r2 = _mm512_mul_ps(r, r);
    let e = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(e, n)
}

/// [`crate::layers::gated_row`] in 16 lanes (`g.len()` a multiple of 16): `g · σ(z) · u` with the
/// sigmoid's exponential from [`exp_512`] and an IEEE division.
///
/// # Safety
/// The CPU has AVX-512F; `u` and `out` are at least as long as `g`.
#[target_feature(enable = "avx512f")]
pub unsafe fn gated_row_512(act: crate::layers::Gate, g: &[f32], u: &[f32], out: &mut [f32]) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        assert!(g.len().is_multiple_of(16) && u.len() >= g.len() && out.len() >= g.len());
        let one = _mm512_set1_ps(1.0);
        for i in (0..g.len()).step_by(16) {
            let gv = _mm512_loadu_ps(g.as_ptr().add(i));
            let z = match act {
                crate::layers::Gate::Silu => gv,
                crate::layers::Gate::GeluTanh => {
                    // 2·√(2/π)·(g + 0.044715·g³): tanh(y) = 2σ(2y) − 1.
                    let g2 = _mm512_mul_ps(gv, gv);
                    let inner = _mm512_fmadd_ps(_mm512_set1_ps(0.044_715), g2, one);
                    _mm512_mul_ps(_mm512_mul_ps(gv, inner), _mm512_set1_ps(2.0 * 0.797_884_6))
                }
            };
            let e = exp_512(_mm512_sub_ps(_mm512_setzero_ps(), z));
            let h = _mm512_div_ps(gv, _mm512_add_ps(one, e));
            let v = _mm512_mul_ps(h, _mm512_loadu_ps(u.as_ptr().add(i)));
            _mm512_storeu_ps(out.as_mut_ptr().add(i), v);
        }
    }
}

/// [`crate::layers::logsumexp_row`] in 16 lanes.
#[target_feature(enable = "avx512f")]
pub unsafe fn logsumexp_512(x: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let chunks = x.len() / 16;
        let p = x.as_ptr();
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in 0..chunks {
            m = _mm512_max_ps(m, _mm512_loadu_ps(p.add(i * 16)));
        }
        let mut max = _mm512_reduce_max_ps(m);
        for &v in &x[chunks * 16..] {
            max = max.max(v);
        }
        if !max.is_finite() {
            // Empty, all −∞, or a NaN/∞ logit: the plain formula gives the IEEE answer.
            let sum: f32 = x.iter().map(|&v| (v - max).exp()).sum();
            return max + sum.ln();
        }
        let mv = _mm512_set1_ps(max);
        let mut acc = _mm512_setzero_ps();
        for i in 0..chunks {
            acc = _mm512_add_ps(acc, exp_512(_mm512_sub_ps(_mm512_loadu_ps(p.add(i * 16)), mv)));
        }
        let mut sum = _mm512_reduce_add_ps(acc);
        for &v in &x[chunks * 16..] {
            sum += (v - max).exp();
        }
        max + sum.ln()
    }
}

/// [`crate::layers::attend_head`] in 16 lanes (`qh.len()` a multiple of 16, at most 256).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub unsafe fn attend_head_512(
    qh: &[f32],
    keys: &[f32],
    values: &[f32],
    kv_dim: usize,
    offset: usize,
    entry: &dyn Fn(usize) -> usize,
    len: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    // SAFETY: the caller upholds this function's contract (its `# Safety` section or, for a
    // kernel, the CPU features of its `target_feature` and in-bounds rows and blocks).
    unsafe {
        let chunks = qh.len() / 16;
        let mut q = [_mm512_setzero_ps(); 16];
        for c in 0..chunks {
            q[c] = _mm512_loadu_ps(qh.as_ptr().add(c * 16));
        }
        scores.clear();
        scores.resize(len.next_multiple_of(16), f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        for i in 0..len {
            let k = &keys[entry(i) * kv_dim + offset..][..chunks * 16];
            let mut acc = _mm512_mul_ps(q[0], _mm512_loadu_ps(k.as_ptr()));
            for c in 1..chunks {
                acc = _mm512_fmadd_ps(q[c], _mm512_loadu_ps(k.as_ptr().add(c * 16)), acc);
            }
            let s = _mm512_reduce_add_ps(acc) * scale;
            max = max.max(s);
            *scores.get_unchecked_mut(i) = s;
        }
        let mv = _mm512_set1_ps(max);
        let mut sum = _mm512_setzero_ps();
        for c in 0..scores.len() / 16 {
            let p = scores.as_mut_ptr().add(c * 16);
            // Padding lanes (past `len`) must add nothing.
            let valid = len - c * 16;
            let mask: __mmask16 = if valid >= 16 { 0xffff } else { (1u16 << valid) - 1 };
            let e = _mm512_maskz_mov_ps(mask, exp_512(_mm512_sub_ps(_mm512_loadu_ps(p), mv)));
            _mm512_storeu_ps(p, e);
            sum = _mm512_add_ps(sum, e);
        }
        let inv = 1.0 / _mm512_reduce_add_ps(sum);
        let mut acc = [_mm512_setzero_ps(); 16];
        for i in 0..len {
            let w = _mm512_set1_ps(*scores.get_unchecked(i));
            let v = &values[entry(i) * kv_dim + offset..][..chunks * 16];
            for c in 0..chunks {
                acc[c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(v.as_ptr().add(c * 16)), acc[c]);
            }
        }
        let iv = _mm512_set1_ps(inv);
        for c in 0..chunks {
            _mm512_storeu_ps(out.as_mut_ptr().add(c * 16), _mm512_mul_ps(acc[c], iv));
        }
    }
}
