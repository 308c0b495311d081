//! f32 matrix products on strided views of plain slices, through the gemm
//! crate that candle itself uses.
//!
//! candle's matmul allocates its output and always spreads one product over
//! the thread pool. The fused ops need two things it cannot give: many small
//! products run side by side in our own parallel loops (each on one
//! thread), and products added into an existing buffer (dst += a·b) instead
//! of a fresh one followed by an add pass.

use gemm::Parallelism;

/// A read-only `rows × cols` f32 matrix in a slice: element (i, j) is
/// `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows × cols` starting at `data[offset]`, rows `row_stride`
    /// apart. Panics if the view does not fit in `data` (a caller bug).
    pub fn new(
        data: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Self {
        let view = Self {
            data: &data[offset.min(data.len())..],
            rows,
            cols,
            row_stride,
            col_stride: 1,
        };
        view.assert_fits(view.data.len());
        view
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `start..start + len` (no copy).
    pub fn rows(self, start: usize, len: usize) -> Self {
        assert!(
            start + len <= self.rows,
            "rows {start}+{len} of {}",
            self.rows
        );
        Self {
            data: &self.data[(start * self.row_stride).min(self.data.len())..],
            rows: len,
            ..self
        }
    }

    fn assert_fits(&self, len: usize) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(
                last < len,
                "a {}×{} view does not fit",
                self.rows,
                self.cols
            );
        }
    }
}

/// A writable row-major `rows × cols` f32 matrix in a slice.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// Row-major `rows × cols` starting at `data[offset]`, rows `row_stride`
    /// apart. Panics if the view does not fit in `data` (a caller bug).
    pub fn new(
        data: &'a mut [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Self {
        let start = offset.min(data.len());
        let view = Self {
            data: &mut data[start..],
            rows,
            cols,
            row_stride,
        };
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + cols - 1;
            assert!(last < view.data.len(), "a {rows}×{cols} view does not fit");
        }
        view
    }
}

/// How one product uses the machine.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// On the calling thread: for products inside a parallel loop.
    One,
    /// Over the current rayon pool.
    Pool,
}

/// dst = scale · lhs · rhs, or dst += scale · lhs · rhs when `accumulate`.
/// Panics if the shapes do not chain (a caller bug).
pub(crate) fn matmul_into(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    scale: f32,
    accumulate: bool,
    threads: Threads,
) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "matmul_into: ({m}×{n}) = ({}×{}) · ({}×{})",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst.data[i * dst.row_stride..i * dst.row_stride + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = match threads {
        Threads::Pool if rayon::current_num_threads() > 1 => {
            Parallelism::Rayon(rayon::current_num_threads())
        }
        _ => Parallelism::None,
    };
    let signed = |s: usize| s as isize;
    // SAFETY: the constructors checked that every element of the three
    // views lies inside its slice, the shapes chain (asserted above), and
    // `dst` borrows its slice mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            signed(dst.row_stride),
            accumulate,
            lhs.data.as_ptr(),
            signed(lhs.col_stride),
            signed(lhs.row_stride),
            rhs.data.as_ptr(),
            signed(rhs.col_stride),
            signed(rhs.row_stride),
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A fresh row-major scale · lhs · rhs, over the current rayon pool.
pub(crate) fn product(lhs: MatRef<'_>, rhs: MatRef<'_>, scale: f32) -> Vec<f32> {
    let (m, n) = (lhs.rows, rhs.cols);
    let mut out = vec![0f32; m * n];
    matmul_into(
        MatMut::new(&mut out, 0, m, n, n),
        lhs,
        rhs,
        scale,
        false,
        Threads::Pool,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive reference: (m×k)·(k×n), both row-major and packed.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32 * 2654435761) ^ seed) % 97) as f32 / 48.0 - 1.0)
            .collect()
    }

    #[test]
    fn strided_transposed_and_accumulated_products_match_the_naive_one() {
        let (m, k, n) = (5, 7, 3);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let want = naive(&a, &b, m, k, n);
        for threads in [Threads::One, Threads::Pool] {
            // Plain, into the middle of a wider buffer (row stride 4).
            let mut out = vec![9f32; 1 + m * 4];
            let dst = MatMut::new(&mut out, 1, m, n, 4);
            matmul_into(
                dst,
                MatRef::new(&a, 0, m, k, k),
                MatRef::new(&b, 0, k, n, n),
                1.0,
                false,
                threads,
            );
            for i in 0..m {
                for j in 0..n {
                    assert!((out[1 + i * 4 + j] - want[i * n + j]).abs() < 1e-5);
                }
                // The column outside the view is untouched.
                if i + 1 < m {
                    assert_eq!(out[1 + i * 4 + 3], 9.0);
                }
            }
            // bᵀ stored as (n × k), read transposed; scaled and accumulated.
            let mut bt = vec![0f32; n * k];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            let mut acc = vec![1f32; m * n];
            let dst = MatMut::new(&mut acc, 0, m, n, n);
            let rhs = MatRef::new(&bt, 0, n, k, k).t();
            matmul_into(dst, MatRef::new(&a, 0, m, k, k), rhs, 0.5, true, threads);
            for (got, w) in acc.iter().zip(&want) {
                assert!((got - (1.0 + 0.5 * w)).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn an_empty_inner_dimension_zeroes_or_keeps_the_destination() {
        for (accumulate, want) in [(true, 3.0), (false, 0.0)] {
            let mut out = vec![3f32; 4];
            let dst = MatMut::new(&mut out, 0, 2, 2, 2);
            let (lhs, rhs) = (MatRef::new(&[], 0, 2, 0, 0), MatRef::new(&[], 0, 0, 2, 2));
            matmul_into(dst, lhs, rhs, 1.0, accumulate, Threads::One);
            assert_eq!(out, [want; 4]);
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_view_past_the_end_of_its_slice_is_refused() {
        let data = [0f32; 6];
        let _ = MatRef::new(&data, 1, 2, 3, 3);
    }
}
