//! Tests of the kernels: every SIMD kernel against its scalar reference, batch invariance, the
//! packed layout, the quantizers' error bounds.

use super::dispatch::GEMM_MIN_INPUTS;
use super::q4_1::{dot_q4_1_scalar, int16_q4_1_scalar, int8_q4_1_scalar};
use super::q8_0::{dot_q8_0_scalar, int16_q8_0_scalar, int8_q8_0_scalar};
use super::quantize::{quantize_row16, quantize_row8, quantize_row_scalar, Act16Block, Act8Block};
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::*;
use candle_core::quantized::{GgmlDType, QTensor};

#[test]
fn f16_conversion_matches_known_values() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
}

#[test]
fn exact_kernels_equal_the_dequantized_f32_product() {
    let (rows, cols) = (6, 3 * 2 * BLOCK);
    let w = candle_core::Tensor::randn(0f32, 0.1, (rows, cols), &candle_core::Device::Cpu).unwrap();
    let x: Vec<f32> = (0..5 * cols).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let q = QTensor::quantize(&w, dtype).unwrap();
        let m = Matrix::from_qtensor(&q, false).unwrap();
        let dense = q.dequantize(&candle_core::Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        // Batched products (tiles of 4 + a remainder) must equal one-at-a-time products bit
        // for bit, and the dequantized f32 product up to rounding.
        let mut batched = vec![0f32; 5 * rows];
        m.matmul_rows(&[], &x, 5, 0..rows, &mut batched, rows);
        for i in 0..5 {
            let xi = &x[i * cols..(i + 1) * cols];
            let mut single = vec![0f32; rows];
            m.matmul_rows(&[], xi, 1, 0..rows, &mut single, rows);
            let mut by_id = vec![0f32; 2];
            m.matmul_ids(&[], &x, i, &[4, 1], &mut by_id);
            assert_eq!(by_id, [single[4], single[1]]);
            for r in 0..rows {
                assert_eq!(batched[i * rows + r], single[r], "{dtype:?} input {i} row {r}");
                let oracle: f64 = dense[r].iter().zip(xi).map(|(&a, &b)| a as f64 * b as f64).sum();
                assert!(
                    (single[r] as f64 - oracle).abs() < 1e-4,
                    "{dtype:?}: {} vs {oracle}",
                    single[r]
                );
            }
        }
    }
}

#[test]
fn every_batch_size_gives_each_input_the_numbers_it_gets_alone() {
    // Tile shapes change with the batch (1 input, 2-12, chunks of up to 12) and with the
    // rows left (odd counts); a row's products must not.
    let (rows, cols) = (7, 2 * BLOCK * 3);
    let w = candle_core::Tensor::randn(0f32, 0.1, (rows, cols), &candle_core::Device::Cpu).unwrap();
    let x: Vec<f32> = (0..48 * cols).map(|i| ((i * 53 % 211) as f32 / 100.0) - 1.0).collect();
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let m = Matrix::from_qtensor(&QTensor::quantize(&w, dtype).unwrap(), false).unwrap();
        let alone: Vec<Vec<f32>> = (0..48)
            .map(|i| {
                let mut out = vec![0f32; rows];
                m.matmul_rows(&[], &x[i * cols..(i + 1) * cols], 1, 0..rows, &mut out, rows);
                out
            })
            .collect();
        for n in [2usize, 3, 7, 8, 12, 13, 15, 16, 25, 31, 48] {
            if n >= GEMM_MIN_INPUTS && !Kernel::detect().batch_invariant(&m.weights) {
                continue;
            }
            let mut out = vec![0f32; n * rows];
            m.matmul_rows(&[], &x[..n * cols], n, 0..rows, &mut out, rows);
            for i in 0..n {
                assert_eq!(&out[i * rows..(i + 1) * rows], &alone[i][..], "{dtype:?} n={n} i={i}");
            }
        }
    }
}

#[test]
fn simd_dots_equal_scalar_dots() {
    let kb = 18;
    let mut seed = 1u64;
    let mut rnd = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    let x: Vec<f32> = (0..kb * BLOCK).map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0).collect();
    let mut xq = vec![ActBlock::default(); kb];
    quantize_row(&x, &mut xq);
    let scales: Vec<[f32; 2]> =
        (0..kb).map(|_| [(rnd() % 100) as f32 / 1000.0, -((rnd() % 100) as f32) / 100.0]).collect();
    let qs: Vec<[u8; 16]> = (0..kb).map(|_| std::array::from_fn(|_| rnd() as u8)).collect();
    let d8: Vec<f32> = (0..kb).map(|_| (rnd() % 100) as f32 / 1000.0).collect();
    let q8: Vec<[i8; BLOCK]> = (0..kb).map(|_| std::array::from_fn(|_| rnd() as i8)).collect();
    let s41 = dot_q4_1_scalar(&scales, &qs, &xq);
    let s80 = dot_q8_0_scalar(&d8, &q8, &xq);
    // The dequantized f32 dot product is the oracle for the scalar integer path.
    let w41 =
        Matrix::new(1, kb * BLOCK, Weights::Q4_1 { scales: scales.clone(), qs: qs.clone() }, true);
    let mut row = vec![0f32; kb * BLOCK];
    w41.dequantize_row(0, &mut row);
    let xd: Vec<f32> = xq.iter().flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d)).collect();
    assert!((dot_f32(&row, &xd) - s41).abs() < 1e-3 * (1.0 + s41.abs()));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected just above; every slice holds `kb` blocks.
        let v41 = unsafe { x86::dot_q4_1_avx2(&scales, &qs, &xq) };
        // SAFETY: as above.
        let v80 = unsafe { x86::dot_q8_0_avx2(&d8, &q8, &xq) };
        assert!((v41 - s41).abs() <= 1e-4 * (1.0 + s41.abs()), "{v41} vs {s41}");
        assert!((v80 - s80).abs() <= 1e-4 * (1.0 + s80.abs()), "{v80} vs {s80}");
        let x4: Vec<ActBlock> = (0..4).flat_map(|_| xq.iter().copied()).collect();
        // SAFETY: as above; `x4` holds four rows of `kb` blocks.
        let v4 = unsafe { x86::dot4_q4_1_avx2(&scales, &qs, &x4, kb) };
        assert_eq!(v4, [v41; 4]);
    }
}

/// Random `Q4_1` and `Q8_0` matrices (`rows` not a multiple of 16, so the last group is
/// padded) and `n` input rows whose blocks include the extremes: one huge value among tiny
/// ones, all zeros, a negative maximum, a single nonzero value, and plain random values.
/// Row `r` of a quantized `m` times one int16-quantized input, by the scalar reference.
fn int16_row_scalar(m: &Matrix, r: usize, x: &[Act16Block]) -> f32 {
    let kb = m.cols / BLOCK;
    match &m.weights {
        Weights::Q4_1 { scales, qs } => {
            int16_q4_1_scalar(&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb], x)
        }
        Weights::Q8_0 { d, qs } => {
            int16_q8_0_scalar(&d[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb], x)
        }
        Weights::F32(_) | Weights::Packed(_) => {
            unreachable!("quantized, unpacked test weights")
        }
    }
}

fn int16_case(rows: usize, kb: usize, n: usize) -> (Matrix, Matrix, Vec<f32>) {
    let mut seed = 7u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    let mut unit = move || (rnd() % 2_000_001) as f32 / 1_000_000.0 - 1.0;
    let cols = kb * BLOCK;
    let scales: Vec<[f32; 2]> =
        (0..rows * kb).map(|_| [unit().abs() * 0.05 + 1e-4, unit() * 0.4]).collect();
    let qs: Vec<[u8; 16]> =
        (0..rows * kb).map(|_| std::array::from_fn(|_| (unit().abs() * 255.0) as u8)).collect();
    let d8: Vec<f32> = (0..rows * kb).map(|_| unit().abs() * 0.02 + 1e-4).collect();
    let q8: Vec<[i8; BLOCK]> =
        (0..rows * kb).map(|_| std::array::from_fn(|_| (unit() * 127.9) as i8)).collect();
    let mut x: Vec<f32> = (0..n * cols).map(|_| unit() * 3.0).collect();
    for i in 0..n {
        let row = &mut x[i * cols..(i + 1) * cols];
        let block = |b: usize| b % kb * BLOCK;
        // One huge value, the others tiny: they round to 0 or ±1 step.
        let o = block(i);
        for v in &mut row[o..o + BLOCK] {
            *v *= 1e-6;
        }
        row[o + 5] = 3.0e4;
        // All zeros.
        let o = block(i + 1);
        row[o..o + BLOCK].iter_mut().for_each(|v| *v = 0.0);
        // The largest magnitude negative.
        let o = block(i + 2);
        row[o + 31] = -50.0;
        // A single nonzero value (exactly representable: no rounding at all).
        let o = block(i + 3);
        row[o..o + BLOCK].iter_mut().for_each(|v| *v = 0.0);
        row[o + 17] = -0.125;
    }
    (
        Matrix::new(rows, cols, Weights::Q4_1 { scales, qs }, false),
        Matrix::new(rows, cols, Weights::Q8_0 { d: d8, qs: q8 }, false),
        x,
    )
}

#[test]
fn int16_quantization_error_is_at_most_half_a_step() {
    let (_, _, x) = int16_case(1, 6, 4);
    let mut q = vec![Act16Block::default(); x.len() / BLOCK];
    quantize_row16(&x, &mut q);
    for (b, block) in q.iter().enumerate() {
        let chunk = &x[b * BLOCK..(b + 1) * BLOCK];
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(block.d, amax / 32767.0);
        let mut sum = 0i64;
        for (e, &v) in chunk.iter().enumerate() {
            let xi = block.value(e);
            assert!(xi.abs() <= 32767);
            sum += xi as i64;
            // round(v / d) with v / d correct to 2^-24 relative: ≤ 0.5 + 32767·2^-24 steps.
            let err = (block.d as f64 * xi as f64 - v as f64).abs();
            assert!(
                err <= 0.502 * block.d as f64,
                "block {b} element {e}: {err} vs step {}",
                block.d
            );
        }
        assert_eq!(block.sx, block.d * sum as f32);
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        let mut simd = vec![Act16Block::default(); q.len()];
        // SAFETY: AVX-512F detected; simd holds the row's blocks.
        unsafe { x86::quantize_row16_512(&x, &mut simd) };
        for (a, b) in simd.iter().zip(&q) {
            assert_eq!(
                (a.hi, a.lo, a.d.to_bits(), a.sx.to_bits()),
                (b.hi, b.lo, b.d.to_bits(), b.sx.to_bits())
            );
        }
    }
    // Non-finite input poisons its block's scale (the products become NaN, as in f32).
    let mut bad = vec![0f32; BLOCK];
    bad[3] = f32::INFINITY;
    quantize_row16(&bad, &mut q[..1]);
    assert!(q[0].d.is_nan());
}

/// The int16 products against the exact f32 products (computed in float64 from the
/// dequantized weights). Bound: each activation moves by at most 0.502 steps `d_x` of its
/// block (see above), so a product moves by at most `Σ_b 0.502·d_x,b · Σ_e |w_e|`; the f32
/// scaling and accumulation add at most ~(3·kb)·2⁻²⁴ relative of `Σ |w·x|`.
#[test]
fn int16_products_stay_within_the_rounding_bound_of_the_exact_product() {
    let (rows, kb, n) = (37, 18, 8);
    let (m41, m80, x) = int16_case(rows, kb, n);
    let cols = kb * BLOCK;
    let mut xs = vec![Act16Block::default(); n * kb];
    quantize_row16(&x, &mut xs);
    let mut w = vec![0f32; cols];
    for m in [&m41, &m80] {
        for r in 0..rows {
            m.dequantize_row(r, &mut w);
            for i in 0..n {
                let (xi, qi) = (&x[i * cols..(i + 1) * cols], &xs[i * kb..(i + 1) * kb]);
                let ours = int16_row_scalar(m, r, qi);
                let exact: f64 = w.iter().zip(xi).map(|(&a, &b)| a as f64 * b as f64).sum();
                let magnitude: f64 =
                    w.iter().zip(xi).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                let rounding: f64 = (0..kb)
                    .map(|b| {
                        let wsum: f64 =
                            w[b * BLOCK..(b + 1) * BLOCK].iter().map(|v| v.abs() as f64).sum();
                        0.502 * qi[b].d as f64 * wsum
                    })
                    .sum();
                let bound = rounding + 3.0 * kb as f64 * magnitude / (1u64 << 24) as f64 + 1e-30;
                let err = (ours as f64 - exact).abs();
                assert!(err <= bound, "row {r} input {i}: {ours} vs {exact}: {err} > {bound}");
            }
        }
    }
}

/// The packed VNNI kernel over the first `batch` inputs of `xs` and a row range, for several
/// batch sizes (tile shapes) and ranges (groups cut at both ends), equals `reference[row][input]`
/// bit for bit and reports every asked row once.
#[cfg(target_arch = "x86_64")]
fn packed_kernel_matches<A: x86::PackedActivation>(
    p: &Packed16,
    xs: &[A],
    reference: &[Vec<f32>],
    kb: usize,
) {
    let rows = reference.len();
    for (batch, range) in
        [(1, 0..rows), (2, 3..20), (5, 0..16), (13, 17..37), (15, 0..rows), (26, 1..36)]
    {
        let mut seen = vec![false; rows * batch];
        let mut write = |first: usize, i: usize, values: &[f32]| {
            for (k, v) in values.iter().enumerate() {
                let r = first + k;
                assert_eq!(
                    v.to_bits(),
                    reference[r][i].to_bits(),
                    "batch {batch} row {r} input {i}"
                );
                seen[r * batch + i] = true;
            }
        };
        // SAFETY: the caller checked the features; xs holds at least `batch` rows of kb blocks.
        unsafe { x86::packed_range_512(p, &xs[..batch * kb], batch, range.clone(), &mut write) };
        for r in 0..rows {
            for i in 0..batch {
                assert_eq!(seen[r * batch + i], range.contains(&r), "row {r} input {i}");
            }
        }
    }
}

/// The AVX-512 VNNI kernel equals the scalar reference bit for bit, for every batch size
/// (tile shapes) and row range (groups cut at both ends), so a row's numbers never depend
/// on its batch.
#[test]
#[cfg(target_arch = "x86_64")]
fn int16_kernel_equals_its_scalar_reference_at_every_batch_size() {
    if !(is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni"))
    {
        eprintln!("no AVX-512 VNNI: int16 kernel not tested");
        return;
    }
    let (rows, kb, n) = (37, 18, 26);
    let (m41, m80, x) = int16_case(rows, kb, n);
    let mut xs = vec![Act16Block::default(); n * kb];
    quantize_row16(&x, &mut xs);
    for m in [&m41, &m80] {
        let p = m.packed16().unwrap();
        let reference: Vec<Vec<f32>> = (0..rows)
            .map(|r| (0..n).map(|i| int16_row_scalar(m, r, &xs[i * kb..(i + 1) * kb])).collect())
            .collect();
        packed_kernel_matches(p, &xs, &reference, kb);
    }
}

/// The packed int8 VNNI kernel equals its scalar reference bit for bit at every batch size
/// and row range, through `matmul_rows` and `matmul_ids` too, and its integer sums are
/// ggml's (the scalar reference against ggml's float order, up to rounding).
#[test]
#[cfg(target_arch = "x86_64")]
fn int8_kernel_equals_its_scalar_reference_at_every_batch_size() {
    let (rows, kb, n) = (37, 18, 26);
    let (m41, m80, x) = int16_case(rows, kb, n);
    let mut xq = vec![ActBlock::default(); n * kb];
    quantize_row(&x, &mut xq);
    let as_int8 = |m: Matrix| {
        let Matrix { rows, cols, weights, .. } = m;
        Matrix::new(rows, cols, weights, true)
    };
    for m in [as_int8(m41), as_int8(m80)] {
        let reference: Vec<Vec<f32>> = (0..rows)
            .map(|r| {
                (0..n)
                    .map(|i| {
                        let xi = &xq[i * kb..(i + 1) * kb];
                        let (ours, ggml) = match &m.weights {
                            Weights::Q4_1 { scales, qs } => {
                                let (s, q) =
                                    (&scales[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                                (int8_q4_1_scalar(s, q, xi), dot_q4_1_scalar(s, q, xi))
                            }
                            Weights::Q8_0 { d, qs } => {
                                let (s, q) = (&d[r * kb..(r + 1) * kb], &qs[r * kb..(r + 1) * kb]);
                                (int8_q8_0_scalar(s, q, xi), dot_q8_0_scalar(s, q, xi))
                            }
                            Weights::F32(_) | Weights::Packed(_) => {
                                unreachable!("quantized cases")
                            }
                        };
                        let magnitude = 1.0 + ggml.abs().max(ours.abs());
                        assert!(
                            (ours - ggml).abs() <= 1e-4 * magnitude,
                            "row {r}: {ours} vs {ggml}"
                        );
                        ours
                    })
                    .collect()
            })
            .collect();
        if !(is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni"))
        {
            eprintln!("no AVX-512 VNNI: int8 VNNI kernel not tested");
            return;
        }
        let p = m.packed16().unwrap();
        let xs: Vec<Act8Block> = xq.iter().map(Act8Block::from).collect();
        packed_kernel_matches(p, &xs, &reference, kb);
        if Kernel::detect() == Kernel::Avx512Int16 {
            let mut out = vec![0f32; n * rows];
            // The packed kernel quantizes the f32 rows itself, to the same blocks.
            assert!(!m.wants_quantized_input());
            m.matmul_rows(&[], &x, n, 0..rows, &mut out, rows);
            let mut by_id = vec![0f32; 2];
            m.matmul_ids(&[], &x, 3, &[30, 2], &mut by_id);
            assert_eq!(by_id, [reference[30][3], reference[2][3]]);
            for r in 0..rows {
                for i in 0..n {
                    assert_eq!(out[i * rows + r].to_bits(), reference[r][i].to_bits());
                }
            }
        }
    }
}

/// The AVX-512 8-bit quantizer gives the scalar one's bytes and scales, also for blocks of
/// zeros, ties, huge and non-finite values.
#[test]
fn int8_quantizer_simd_equals_scalar() {
    let (_, _, mut x) = int16_case(1, 12, 3);
    // Exact ties after scaling (max 127 → scale 1): 0.5, 1.5, -2.5 round to even.
    x[..BLOCK].iter_mut().enumerate().for_each(|(e, v)| *v = e as f32 - 15.5);
    x[0] = 127.0;
    x[BLOCK + 7] = f32::NAN;
    x[2 * BLOCK + 3] = f32::NEG_INFINITY;
    let mut scalar = vec![ActBlock::default(); x.len() / BLOCK];
    quantize_row_scalar(&x, &mut scalar);
    assert_eq!(&scalar[0].qs[14..18], &[-2, 0, 0, 2]);
    let mut fast = vec![ActBlock::default(); scalar.len()];
    quantize_row(&x, &mut fast);
    for (a, b) in fast.iter().zip(&scalar) {
        assert_eq!((a.qs, a.d.to_bits(), a.s.to_bits()), (b.qs, b.d.to_bits(), b.s.to_bits()));
    }
    // Straight into the packed layout: the same blocks, reordered.
    let mut packed = vec![Act8Block::default(); scalar.len()];
    quantize_row8(&x, &mut packed);
    for (a, b) in packed.iter().zip(&scalar) {
        let b = Act8Block::from(b);
        assert_eq!((a.u, a.d.to_bits(), a.s.to_bits()), (b.u, b.d.to_bits(), b.s.to_bits()));
    }
}
/// Packed weights read back to the original rows bit for bit, and a matrix packed in place
/// (original blocks dropped) gives the products and rows it gave before.
#[test]
fn packed_weights_replace_the_original_blocks_exactly() {
    let (rows, kb, n) = (37, 6, 5);
    let (m41, m80, x) = int16_case(rows, kb, n);
    let cols = kb * BLOCK;
    for mut m in [m41, m80] {
        let p = Packed16::new(&m).unwrap();
        let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
        for r in 0..rows {
            m.dequantize_row(r, &mut a);
            p.dequantize_row(r, &mut b);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "row {r}"
            );
        }
        let mut before = vec![0f32; n * rows];
        m.matmul_rows(&[], &x, n, 0..rows, &mut before, rows);
        m.pack();
        if Kernel::detect() != Kernel::Avx512Int16 {
            assert!(!matches!(m.weights, Weights::Packed(_)), "packed only for the VNNI kernel");
            continue;
        }
        assert!(matches!(m.weights, Weights::Packed(_)));
        let mut after = vec![0f32; n * rows];
        m.matmul_rows(&[], &x, n, 0..rows, &mut after, rows);
        assert_eq!(before, after);
        let mut by_id = vec![0f32; 2];
        m.matmul_ids(&[], &x, 2, &[36, 0], &mut by_id);
        assert_eq!(by_id, [after[2 * rows + 36], after[2 * rows]]);
        for r in [0, 17, 36] {
            m.dequantize_row(r, &mut b);
            m.dequantize_row_fast(r, &mut a);
            assert_eq!(a, b);
        }
    }
}
