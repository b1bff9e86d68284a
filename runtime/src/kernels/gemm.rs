//! Bounds checks for the strided matrix products of matrixmultiply: the only unsafe calls of
//! the runtime go through [`crate::Float::gemm`], which checks with [`checked`] first.

/// The largest index a strided `rows × cols` matrix touches, plus one.
fn extent(rows: usize, cols: usize, rs: isize, cs: isize) -> usize {
    if rows == 0 || cols == 0 {
        return 0;
    }
    assert!(rs >= 0 && cs >= 0, "negative strides are not used by the runtime");
    (rows - 1) * rs as usize + (cols - 1) * cs as usize + 1
}

/// Panics (a bug in the plan, never in user input) unless the product fits its slices.
#[allow(clippy::too_many_arguments)]
pub fn checked(
    m: usize,
    k: usize,
    n: usize,
    a_len: usize,
    rsa: isize,
    csa: isize,
    b_len: usize,
    rsb: isize,
    csb: isize,
    c_len: usize,
    rsc: isize,
    csc: isize,
) {
    assert!(extent(m, k, rsa, csa) <= a_len, "gemm: A out of bounds");
    assert!(extent(k, n, rsb, csb) <= b_len, "gemm: B out of bounds");
    assert!(extent(m, n, rsc, csc) <= c_len, "gemm: C out of bounds");
}
