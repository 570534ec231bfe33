//! Matrix products for the trainer: a row-major destination, operands as strided views (so a
//! transpose is free), computed by the `gemm` crate on all threads of the rayon pool.
//!
//! Shapes are checked before every product (a wrong shape is a bug, so it panics); the only
//! `unsafe` is the call into `gemm`, whose pointer arithmetic those checks make sound.

use super::real::Real;

/// A read-only strided matrix over a slice: element `(r, c)` is `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T: Real> View<'a, T> {
    /// A row-major `rows × cols` matrix.
    ///
    /// # Panics
    /// `data` is shorter than `rows · cols`.
    pub fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "view of {rows}x{cols} over {} values", data.len());
        View { data, rows, cols, rs: cols, cs: 1 }
    }

    /// A row-major matrix whose rows are `stride` apart (a column block of a wider matrix
    /// starts at `&data[first_col..]`).
    ///
    /// # Panics
    /// `data` does not reach the last element.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(cols <= stride || rows <= 1);
        assert!(rows == 0 || cols == 0 || data.len() > (rows - 1) * stride + cols - 1);
        View { data, rows, cols, rs: stride, cs: 1 }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        View { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
}

/// `dst (m × n, row stride dst_stride) = [dst +] a · b`. Uses the rayon pool when `parallel`
/// and the product is large enough to be worth splitting.
///
/// # Panics
/// Inconsistent shapes, or a destination too short.
pub fn matmul_into<T: Real>(
    dst: &mut [T],
    dst_stride: usize,
    a: View<'_, T>,
    b: View<'_, T>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions {k} and {}", b.rows);
    assert!(n <= dst_stride || m <= 1);
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_stride + n - 1, "destination too short");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_stride..r * dst_stride + n].fill(T::ZERO);
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 && m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element `gemm` reads is `a.data[r·a.rs + c·a.cs]` for r < m, c < k (and
    // likewise for b with r < k, c < n); the views were built with their last element in bounds
    // (View::rows / View::strided), and the transpose only swaps the strides. Every element it
    // writes is `dst[r·dst_stride + c]`, r < m, c < n, which the assert above bounds. The
    // destination does not alias the operands (it is a `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A fresh row-major `a · b`.
pub fn matmul<T: Real>(a: View<'_, T>, b: View<'_, T>, parallel: bool) -> Vec<T> {
    let mut out = vec![T::ZERO; a.rows * b.cols];
    matmul_into(&mut out, b.cols, a, b, false, parallel);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn products_and_transposes_match_a_naive_product() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let got = matmul(View::rows(&a, m, k), View::rows(&b, k, n), false);
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // (bᵀ)ᵀ through a transposed view of a transposed copy.
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let got = matmul(View::rows(&a, m, k), View::rows(&bt, n, k).t(), true);
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // Accumulate into a strided destination.
        let mut dst = vec![1.0; m * (n + 2)];
        matmul_into(&mut dst, n + 2, View::rows(&a, m, k), View::rows(&b, k, n), true, false);
        for i in 0..m {
            for j in 0..n + 2 {
                let want = if j < n { want[i * n + j] + 1.0 } else { 1.0 };
                assert!((dst[i * (n + 2) + j] - want).abs() < 1e-12);
            }
        }
    }
}
