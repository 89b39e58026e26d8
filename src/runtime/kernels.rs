//! Forward kernels: one arm per op kind, whole-array ndarray operations. A matmul
//! with leading (batch) axes on its left operand is one matrix-matrix product
//! over the flattened rows (BLAS-3 shaped), never a loop over examples.

use crate::ir::schedule::{FEW_ROWS_MIN_DEPTH, FEW_ROWS_UP_TO, GEMV_ROWS_UP_TO};
use crate::ir::{broadcast, Binary, Lane, Moved, Op, Reduce, Scalar, Shape, ShapeError};
use crate::runtime::vector::UnaryMap;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Ix1, Ix2, Ix3, Ix4, IxDyn};

/// A value: an n-dimensional array.
pub type Tensor<T> = ArrayD<T>;

/// A 0-dimensional array holding `v`.
pub fn scalar<T: Scalar>(v: T) -> Tensor<T> {
    ArrayD::from_elem(IxDyn(&[]), v)
}

/// `t` with new dimensions (same elements in row-major order); copies only
/// when `t` is not already in row-major layout.
pub fn reshape<T: Scalar>(t: Tensor<T>, dims: &[usize]) -> Tensor<T> {
    let t = if t.is_standard_layout() {
        t
    } else {
        t.as_standard_layout().into_owned()
    };
    t.into_shape_with_order(IxDyn(dims)).expect("same number of elements")
}

/// A row-major copy of `v`, walked at a fixed rank when it has 1 to 4 axes:
/// ndarray walks a strided view of dynamic rank element by element, several
/// times slower, and row-major results keep the kernels after them on their
/// slice paths.
pub fn row_major_copy<T: Scalar>(v: ArrayViewD<'_, T>) -> Tensor<T> {
    if let Some(slice) = v.as_slice() {
        return Tensor::from_shape_vec(v.raw_dim(), slice.to_vec()).expect("one element per element");
    }
    macro_rules! at {
        ($d:ty) => {
            v.into_dimensionality::<$d>()
                .expect("the rank matched")
                .as_standard_layout()
                .into_owned()
                .into_dyn()
        };
    }
    match v.ndim() {
        1 => at!(Ix1),
        // A block of columns of a matrix (a slice of a batched cell's stacked
        // gates): each row is a run of memory, copied as one, where ndarray's
        // copy of a strided view goes element by element.
        2 if v.strides()[1] == 1 => {
            let mut data = Vec::with_capacity(v.len());
            for row in v.rows() {
                data.extend_from_slice(row.to_slice().expect("unit column stride"));
            }
            Tensor::from_shape_vec(v.raw_dim(), data).expect("one element per element")
        }
        2 => at!(Ix2),
        3 => at!(Ix3),
        4 => at!(Ix4),
        _ => v.as_standard_layout().into_owned(),
    }
}

/// `dst += src` for views of one shape. A matrix whose rows are runs of
/// memory (a window of columns, a block of rows) is added row by row as
/// slices; ndarray's general add walks such a strided view element by element.
pub fn add_assign<T: Scalar>(mut dst: ndarray::ArrayViewMutD<'_, T>, src: ArrayViewD<'_, T>) {
    debug_assert_eq!(dst.shape(), src.shape(), "add_assign: one shape");
    if let (Some(d), Some(s)) = (dst.as_slice_mut(), src.as_slice()) {
        d.iter_mut().zip(s).for_each(|(d, s)| *d += *s);
        return;
    }
    if dst.ndim() == 2 && dst.strides()[1] == 1 && src.strides()[1] == 1 {
        for (mut d, s) in dst.rows_mut().into_iter().zip(src.rows()) {
            let (d, s) = (
                d.as_slice_mut().expect("unit stride"),
                s.to_slice().expect("unit stride"),
            );
            d.iter_mut().zip(s).for_each(|(d, s)| *d += *s);
        }
        return;
    }
    dst += &src;
}

/// numpy's `matmul`: 1-D operands are promoted and the promoted axis removed;
/// leading axes broadcast.
pub fn matmul<T: Scalar>(a: &ArrayViewD<T>, b: &ArrayViewD<T>) -> Tensor<T> {
    let (ra, rb) = (a.ndim(), b.ndim());
    if ra <= 2 && rb <= 2 {
        return match (ra, rb) {
            (1, 1) => scalar(
                a.view()
                    .into_dimensionality::<Ix1>()
                    .unwrap()
                    .dot(&b.view().into_dimensionality::<Ix1>().unwrap()),
            ),
            (1, 2) => a
                .view()
                .into_dimensionality::<Ix1>()
                .unwrap()
                .dot(&b.view().into_dimensionality::<Ix2>().unwrap())
                .into_dyn(),
            (2, 1) => {
                let column = b.view().into_dimensionality::<Ix1>().unwrap().insert_axis(Axis(1));
                let product = mat_mat(a.view().into_dimensionality::<Ix2>().unwrap(), column);
                product.index_axis_move(Axis(1), 0).into_dyn()
            }
            _ => mat_mat(
                a.view().into_dimensionality::<Ix2>().unwrap(),
                b.view().into_dimensionality::<Ix2>().unwrap(),
            )
            .into_dyn(),
        };
    }
    if rb <= 2 {
        // [..., m, k] @ [k, n]: one GEMM over all leading rows.
        let k = a.shape()[ra - 1];
        let rows = a.len() / k;
        let a2 = a.to_shape((rows, k)).expect("same number of elements");
        let b2 = if rb == 1 {
            b.view().insert_axis(Axis(1))
        } else {
            b.view()
        };
        let b2 = b2.into_dimensionality::<Ix2>().unwrap();
        let product = mat_mat(a2.view(), b2);
        let mut dims = a.shape()[..ra - 1].to_vec();
        if rb == 2 {
            dims.push(b.shape()[1]);
        }
        return reshape(product.into_dyn(), &dims);
    }
    if ra <= 2 {
        // [m, k] @ [..., k, n] = ([..., n, k] @ [k, m]) with the last two axes swapped.
        let mut bt = b.view();
        bt.swap_axes(rb - 1, rb - 2);
        let at = if ra == 1 {
            a.view().insert_axis(Axis(1))
        } else {
            a.view().reversed_axes()
        };
        let mut product = matmul(&bt, &at);
        let n = product.ndim();
        product.swap_axes(n - 1, n - 2);
        if ra == 1 {
            product = product.index_axis_move(Axis(n - 2), 0);
        }
        return product;
    }
    // Both operands have leading axes: one GEMM per broadcast batch element,
    // each written straight into its slot of the result.
    let batch_a = &a.shape()[..ra - 2];
    let batch_b = &b.shape()[..rb - 2];
    let batch = broadcast(&batch_a.to_vec().into(), &batch_b.to_vec().into()).expect("checked shapes");
    let (m, n) = (a.shape()[ra - 2], b.shape()[rb - 1]);
    let mut a_dims = batch.0.clone();
    a_dims.extend_from_slice(&a.shape()[ra - 2..]);
    let mut b_dims = batch.0.clone();
    b_dims.extend_from_slice(&b.shape()[rb - 2..]);
    let a_full = a.broadcast(IxDyn(&a_dims)).unwrap();
    let b_full = b.broadcast(IxDyn(&b_dims)).unwrap();
    let count = batch.elements();
    let a3 = a_full
        .to_shape((count, m, a.shape()[ra - 1]))
        .expect("same number of elements");
    let b3 = b_full
        .to_shape((count, b.shape()[rb - 2], n))
        .expect("same number of elements");
    let mut out = ndarray::Array3::<T>::uninit((count, m, n));
    batched_gemm(
        &a3.view(),
        &b3.view(),
        out.as_slice_mut().expect("a fresh array is row-major"),
    );
    // SAFETY: `batched_gemm` wrote every element of every slot.
    let out = unsafe { out.assume_init() };
    let mut dims = batch.0;
    dims.extend([m, n]);
    reshape(out.into_dyn(), &dims)
}

/// `a @ b` for matrices, by the `gemm` crate, which sends a product with one
/// column or row to its vectorized matrix-vector path and one through an inner
/// dimension of 1 or 2 to its outer-product path (no packing for those).
fn mat_mat<T: Scalar>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    let (m, n) = (a.nrows(), b.ncols());
    let k = a.ncols();
    if m <= FEW_ROWS_UP_TO && k >= FEW_ROWS_MIN_DEPTH && b.strides() == [1, k as isize] {
        return dot_rows(a, b);
    }
    if m * n <= SPLIT_K_RESULTS && k >= 2 * SPLIT_K_MIN_DEPTH && threads_for(m * n * k) > 1 {
        return split_k(a, b);
    }
    gemm_product(a, b)
}

/// `a @ b` by one call of the GEMM, whatever the shapes.
fn gemm_product<T: Scalar>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    let mut out = Array2::<T>::uninit((a.nrows(), b.ncols()));
    // SAFETY: `gemm_into` writes every element of `out` (it never reads it).
    unsafe {
        gemm_into(a, b, out.as_mut_ptr().cast::<T>(), out.strides());
        out.assume_init()
    }
}

/// A few rows times a transposed row-major matrix (`x @ transpose(W)`, a
/// batch of stacked vectors against W), as `(W @ transpose(x))` transposed
/// back: the GEMM then packs the few rows, not all of W, and streams W once.
fn dot_rows<T: Scalar>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    let w = b.reversed_axes();
    if a.nrows() <= GEMV_ROWS_UP_TO {
        // One matrix-vector product per row: the GEMM's own vector path.
        let mut out = Array2::<T>::zeros((a.nrows(), w.nrows()));
        for (x, mut row) in a.rows().into_iter().zip(out.rows_mut()) {
            row.assign(&mat_mat(w, x.insert_axis(Axis(1))).index_axis_move(Axis(1), 0));
        }
        return out;
    }
    // The GEMM itself, not `mat_mat`: with W of few rows too, the flipped
    // product is again a few rows times a transposed matrix, and would flip back.
    let flipped = gemm_product(w, a.reversed_axes());
    flipped.reversed_axes().as_standard_layout().into_owned()
}

/// `out[i] = a[i] @ b[i]` for every batch element `i` (`out` row-major, `count x m x n`,
/// uninitialized): one single-threaded GEMM per element, the elements split over
/// rayon's threads when the whole product is large (one GEMM each is too small to
/// thread inside).
fn batched_gemm<T: Scalar>(
    a: &ndarray::ArrayView3<T>,
    b: &ndarray::ArrayView3<T>,
    out: &mut [std::mem::MaybeUninit<T>],
) {
    use rayon::prelude::*;
    let (count, m, k) = a.dim();
    let n = b.dim().2;
    if count == 0 || m * n == 0 {
        return;
    }
    let slot = |(i, chunk): (usize, &mut [std::mem::MaybeUninit<T>])| {
        // SAFETY: `chunk` is the row-major m x n slot of element i, written whole.
        unsafe {
            gemm_into(
                a.index_axis(Axis(0), i),
                b.index_axis(Axis(0), i),
                chunk.as_mut_ptr().cast::<T>(),
                &[n as isize, 1],
            )
        }
    };
    if count > 1 && count.saturating_mul(m * n).saturating_mul(k) >= GEMM_THREADS_FROM {
        out.par_chunks_mut(m * n).enumerate().for_each(slot);
    } else {
        out.chunks_mut(m * n).enumerate().for_each(slot);
    }
}

/// A small result over a long sum (a weight gradient `[64, B] @ [B, 16]`): a GEMM
/// library splits the result between threads, and there is little to split. Each
/// thread takes a slice of the sum instead, and the partial results are added.
fn split_k<T: Scalar>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    use ndarray::s;
    use rayon::prelude::*;
    let k = a.ncols();
    let parts = rayon::current_num_threads().min(k / SPLIT_K_MIN_DEPTH).max(1);
    let step = k.div_ceil(parts);
    (0..parts)
        .into_par_iter()
        .map(|p| {
            let range = p * step..((p + 1) * step).min(k);
            on_one_thread(|| mat_mat(a.slice(s![.., range.clone()]), b.slice(s![range, ..])))
        })
        .reduce_with(|x, y| x + y)
        .expect("at least one part")
}

/// Results of at most this many elements split a long sum between threads.
const SPLIT_K_RESULTS: usize = 64 * 64;

/// The shortest slice of a sum that a thread takes.
const SPLIT_K_MIN_DEPTH: usize = 256;

thread_local! {
    /// Set while a task that rayon already split runs: its products stay on its thread.
    static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every matrix product in it on the calling thread: for a task
/// that already runs beside others (one of two independent products).
pub fn on_one_thread<R>(f: impl FnOnce() -> R) -> R {
    let before = ONE_THREAD.replace(true);
    let result = f();
    ONE_THREAD.set(before);
    result
}

/// Whether the calling thread is inside [`on_one_thread`].
pub fn on_one_thread_now() -> bool {
    ONE_THREAD.get()
}

/// How many threads a product of `macs` multiply-adds may use: all of rayon's
/// when it is large and not inside [`on_one_thread`], else one.
pub fn threads_for(macs: usize) -> usize {
    match macs >= GEMM_THREADS_FROM && !ONE_THREAD.get() {
        true => rayon::current_num_threads(),
        false => 1,
    }
}

/// Products of at least this many multiply-adds run on every core (rayon).
pub use crate::ir::GEMM_THREADS_FROM;

/// `out = a @ b` by the `gemm` crate, for operands of any strides; `out` points
/// at an `m x n` result with `out_strides` (row, column), which is written, never read.
///
/// # Safety
/// `out` must be valid for writes at every element the strides reach, and
/// alias neither operand.
unsafe fn gemm_into<T: Scalar>(a: ArrayView2<T>, b: ArrayView2<T>, out: *mut T, out_strides: &[isize]) {
    let ((m, k), n) = (a.dim(), b.ncols());
    assert!(b.nrows() == k, "matmul shapes checked before");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for (i, j) in (0..m).flat_map(|i| (0..n).map(move |j| (i, j))) {
            // SAFETY: (i, j) is inside the m x n result the caller vouches for.
            unsafe {
                out.offset(i as isize * out_strides[0] + j as isize * out_strides[1])
                    .write(T::zero())
            };
        }
        return;
    }
    let parallelism = match threads_for(m.saturating_mul(n).saturating_mul(k)) {
        1 => gemm::Parallelism::None,
        _ => gemm::Parallelism::Rayon(0),
    };
    let (as_, bs) = (a.strides(), b.strides());
    // SAFETY: the pointers and strides describe live views of the stated
    // shapes (views may have zero or negative strides, which `gemm` takes);
    // the caller vouches for `out`; T is f32 or f64, both of which `gemm`
    // implements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            out_strides[1],
            out_strides[0],
            false,
            a.as_ptr(),
            as_[1],
            as_[0],
            b.as_ptr(),
            bs[1],
            bs[0],
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The reduction `r` along `axis`.
pub fn reduce_axis<T: Scalar>(r: Reduce, a: &ArrayViewD<T>, axis: usize) -> Tensor<T> {
    let n = a.shape()[axis];
    if let (Some(data), true) = (a.as_slice(), n > 0 && !a.is_empty()) {
        // Row-major (every value the interpreter stores): the array is
        // [outer, n, inner] blocks, and each block folds its n rows of `inner`
        // contiguous values, with no per-lane iterator to set up.
        let inner: usize = a.shape()[axis + 1..].iter().product();
        let mut shape = a.shape().to_vec();
        shape.remove(axis);
        let totals = reduce_blocks(r, data, n, inner);
        return Tensor::from_shape_vec(shape, totals).expect("one total per block and column");
    }
    let results = a.len().checked_div(n).unwrap_or(0);
    // A strided view: folding whole sub-arrays into the result, one per index
    // along `axis`, runs contiguous rows but costs a pass per index: with few
    // results (the mean of a batch vector), or long contiguous lanes, one lane
    // per result is the short loop.
    let lanes = results < LANES_BELOW || (axis + 1 == a.ndim() && n >= LANES_BELOW);
    let totals = if lanes {
        a.map_axis(Axis(axis), |lane| lane.fold(r.start(), |acc, &v| r.combine(acc, v)))
    } else {
        a.fold_axis(Axis(axis), r.start(), |&acc, &v| r.combine(acc, v))
    };
    totals.mapv_into(|total| r.finish(total, n))
}

/// `r` over row-major `data` seen as [outer, n, inner], giving [outer, inner].
fn reduce_blocks<T: Scalar>(r: Reduce, data: &[T], n: usize, inner: usize) -> Vec<T> {
    let mut totals = Vec::with_capacity(data.len() / n);
    if inner == 1 {
        let fold = |lane: &[T]| r.finish(lane.iter().fold(r.start(), |acc, &v| r.combine(acc, v)), n);
        totals.extend(data.chunks_exact(n).map(fold));
        return totals;
    }
    for block in data.chunks_exact(n * inner) {
        let start = totals.len();
        totals.extend(block[..inner].iter().map(|&v| r.combine(r.start(), v)));
        for row in block[inner..].chunks_exact(inner) {
            for (total, &v) in totals[start..].iter_mut().zip(row) {
                *total = r.combine(*total, v);
            }
        }
        for total in &mut totals[start..] {
            *total = r.finish(*total, n);
        }
    }
    totals
}

/// Strided reductions with fewer results than this, or along a last axis at
/// least this long, fold one lane per result.
const LANES_BELOW: usize = 16;

/// The reduction `r` over every element.
pub fn reduce_all<T: Scalar>(r: Reduce, a: &Tensor<T>) -> T {
    r.finish(a.iter().fold(r.start(), |acc, &v| r.combine(acc, v)), a.len())
}

/// The binary op `op` with numpy broadcasting.
pub fn binary<T: Scalar>(op: Binary, a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
        // Row-major operands, one shape a trailing part of the other: one loop.
        let suffix = |long: &[usize], short: &[usize]| long.len() >= short.len() && long.ends_with(short);
        if suffix(a.shape(), b.shape()) {
            let out = op.map_repeated(x, y, false);
            return Tensor::from_shape_vec(a.raw_dim(), out).expect("one element per element of a");
        }
        if suffix(b.shape(), a.shape()) {
            let out = op.map_repeated(y, x, true);
            return Tensor::from_shape_vec(b.raw_dim(), out).expect("one element per element of b");
        }
    }
    if a.shape() == b.shape() {
        return op.map(&a.view(), &b.view());
    }
    if let Some(out) = one_per_row(op, a, b) {
        return out;
    }
    let shape = broadcast(&Shape(a.shape().to_vec()), &Shape(b.shape().to_vec())).expect("checked shapes");
    let (a, b) = (a.broadcast(IxDyn(shape.dims())), b.broadcast(IxDyn(shape.dims())));
    let (a, b) = (a.expect("broadcastable"), b.expect("broadcastable"));
    let lanes_work = |v: &ArrayViewD<T>| matches!(v.strides().last(), Some(0 | 1));
    if !lanes_work(&a) || !lanes_work(&b) {
        return op.map(&a, &b);
    }
    // Lane by lane along the last axis, each operand's lane a slice or one repeated value
    // (an outer product `expand(u, 1) * expand(v, 0)` is rows of `u[i] * v`).
    let mut out = Vec::with_capacity(shape.elements());
    match a.ndim() {
        2 => map_lanes(op, fixed::<T, Ix2>(a), fixed(b), &mut out),
        3 => map_lanes(op, fixed::<T, Ix3>(a), fixed(b), &mut out),
        4 => map_lanes(op, fixed::<T, Ix4>(a), fixed(b), &mut out),
        _ => map_lanes(op, a, b, &mut out),
    }
    Tensor::from_shape_vec(IxDyn(shape.dims()), out).expect("one element per element of the result")
}

/// `op` over two same-shaped (broadcast) views, lane by lane along the last axis.
/// Generic over the dimension type: a fixed rank walks its lanes several times
/// faster than a dynamic one, which matters when lanes are short.
fn map_lanes<T: Scalar, D: ndarray::Dimension>(
    op: Binary,
    a: ndarray::ArrayView<T, D>,
    b: ndarray::ArrayView<T, D>,
    out: &mut Vec<T>,
) {
    for (x, y) in a.rows().into_iter().zip(b.rows()) {
        op.map_lane(lane(&x), lane(&y), out);
    }
}

/// `v` with its rank fixed in the type (the caller checked the rank).
fn fixed<T, D: ndarray::Dimension>(v: ArrayViewD<'_, T>) -> ndarray::ArrayView<'_, T, D> {
    v.into_dimensionality::<D>().expect("the rank matched")
}

/// `a op b` when one operand has one value per row of the other (`t - expand(max(t, 1), 1)`:
/// shapes equal but for a last axis of 1), both row-major: one loop over the rows'
/// slices, without a multi-dimensional iterator per row. None for other shapes.
fn one_per_row<T: Scalar>(op: Binary, a: &Tensor<T>, b: &Tensor<T>) -> Option<Tensor<T>> {
    let (x, y) = (a.as_slice()?, b.as_slice()?);
    let (sa, sb) = (a.shape(), b.shape());
    let (rows_a, rows_b) = (sa.split_last()?.1, sb.split_last()?.1);
    if rows_a != rows_b {
        return None;
    }
    let (wide, n, wide_is_a) = match (sa.last(), sb.last()) {
        (Some(&n), Some(1)) if n > 0 => (a, n, true),
        (Some(1), Some(&n)) if n > 0 => (b, n, false),
        _ => return None,
    };
    let (long, short) = if wide_is_a { (x, y) } else { (y, x) };
    let mut out = Vec::with_capacity(long.len());
    for (row, &v) in long.chunks_exact(n).zip(short) {
        match wide_is_a {
            true => op.map_lane(Lane::Slice(row), Lane::Repeat(v, n), &mut out),
            false => op.map_lane(Lane::Repeat(v, n), Lane::Slice(row), &mut out),
        }
    }
    Some(Tensor::from_shape_vec(wide.raw_dim(), out).expect("one element per element of the wider operand"))
}

/// One lane of a broadcast operand whose last axis has stride 1 or 0: contiguous, or one value repeated.
fn lane<'a, T: Scalar>(row: &ndarray::ArrayView1<'a, T>) -> Lane<'a, T> {
    match row.to_slice() {
        Some(slice) => Lane::Slice(slice),
        None => Lane::Repeat(row[0], row.len()),
    }
}

/// Evaluates one op. `args` are the children's values; `literal(i)` is the
/// value of child `i` when it is a number literal (axes, counts).
pub fn run_op<T: Scalar>(op: &Op, args: &[&Tensor<T>], literal: &dyn Fn(usize) -> f64) -> Tensor<T> {
    let a = || args[0];
    let int = |i: usize| literal(i) as usize;
    match op {
        Op::Num(n) => scalar(T::of(n.0)),
        Op::Var(_) | Op::Vmap(_) => unreachable!("variables are bound, vmap is never executed"),
        Op::Map(_) | Op::Row(_) | Op::Chunks(_) | Op::Rows(_) | Op::Accumulate(_) => {
            unreachable!("the interpreter runs loops itself")
        }
        Op::Unary(u, _) => u.map(a()),
        Op::Binary(b, _) => binary(*b, args[0], args[1]),
        Op::Reduce(r, _) => scalar(reduce_all(*r, a())),
        Op::ReduceAxis(r, _) => reduce_axis(*r, &a().view(), int(1)),
        Op::MatMul(_) => matmul(&args[0].view(), &args[1].view()),
        Op::Structural(s, children) => {
            let arrays = s.arrays_of(children.len()).expect("shape inference checked the arity");
            let ints: Vec<usize> = (arrays..children.len()).map(int).collect();
            let views: Vec<ArrayViewD<T>> = args[..arrays].iter().map(|t| t.view()).collect();
            match s.kernel(&ints, &views) {
                Moved::View(view) => row_major_copy(view),
                Moved::Owned(owned) => owned,
            }
        }
    }
}

/// Sums `g` down to `shape`: the adjoint of numpy broadcasting. An error if
/// `g`'s shape is not `shape` broadcast (the runtime's own calls, whose shapes
/// shape inference checked, use [`sum_to_shape`]).
pub fn unbroadcast<T: Scalar>(g: Tensor<T>, shape: &[usize]) -> Result<Tensor<T>, ShapeError> {
    let fits = shape.len() <= g.ndim()
        && shape
            .iter()
            .rev()
            .zip(g.shape().iter().rev())
            .all(|(&want, &have)| want == have || want == 1);
    match fits {
        true => Ok(sum_to_shape(g, shape)),
        false => Err(ShapeError::Broadcast {
            op: "unbroadcast".into(),
            left: Shape(g.shape().to_vec()),
            right: Shape(shape.to_vec()),
        }),
    }
}

/// Sums `g` down to `shape`, which it is a broadcast of (checked by the caller).
pub(crate) fn sum_to_shape<T: Scalar>(g: Tensor<T>, shape: &[usize]) -> Tensor<T> {
    if g.shape() == shape {
        return g;
    }
    unbroadcast_view(g.view(), shape)
}

/// Sums the row-major `g` (of `dims`) down to `full` (the target shape with
/// leading 1s to the same rank): one pass, lane by lane along the last axes. Trailing
/// axes that are all kept (or all summed) form one lane, so that a `[B, 2, 3]`
/// cotangent summed to `[2, 3]` is B lanes of 6, not an array operation per index.
fn sum_down<T: Scalar>(g: &[T], dims: &[usize], full: &[usize]) -> Vec<T> {
    let mut out = vec![T::zero(); full.iter().product()];
    if g.is_empty() {
        return out;
    }
    let summed = |k: usize| full[k] == 1 && dims[k] != 1;
    // The lane: the trailing axes of the same kind as the last one.
    let n = dims.len();
    let lane_summed = summed(n - 1);
    let lane_axes = (0..n)
        .rev()
        .take_while(|&k| summed(k) == lane_summed || dims[k] == 1)
        .count();
    let outer = n - lane_axes;
    let lane: usize = dims[outer..].iter().product();
    // Where each outer index moves in `out` (0 along a summed axis).
    let mut steps = vec![0; outer];
    let mut stride = full[outer..].iter().product::<usize>();
    for k in (0..outer).rev() {
        steps[k] = if summed(k) { 0 } else { stride };
        stride *= full[k];
    }
    let mut index = vec![0; outer];
    let mut base = 0;
    for values in g.chunks_exact(lane) {
        if lane_summed {
            out[base] += values.iter().fold(T::zero(), |acc, &v| acc + v);
        } else {
            out[base..base + lane]
                .iter_mut()
                .zip(values)
                .for_each(|(o, &v)| *o += v);
        }
        for k in (0..outer).rev() {
            index[k] += 1;
            base += steps[k];
            if index[k] < dims[k] {
                break;
            }
            base -= steps[k] * dims[k];
            index[k] = 0;
        }
    }
    out
}

/// Sums the view `g` down to `shape` (`unbroadcast` without taking `g`); a
/// copy when the shapes already match.
pub fn unbroadcast_view<T: Scalar>(g: ArrayViewD<T>, shape: &[usize]) -> Tensor<T> {
    if g.shape() == shape {
        return g.to_owned();
    }
    let mut full = vec![1; g.ndim() - shape.len()];
    full.extend_from_slice(shape);
    let g = g.as_standard_layout();
    let total = sum_down(g.as_slice().expect("row-major"), g.shape(), &full);
    Tensor::from_shape_vec(IxDyn(shape), total).expect("one element per element of the shape")
}

/// `g` broadcast up to `shape` (a copy).
pub fn broadcast_to<T: Scalar>(g: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    row_major_copy(g.broadcast(IxDyn(shape)).expect("broadcastable"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// The row-major block fold against the strided fold of the same values
    /// (a reversed-axes view takes the other path), every reduction and axis.
    #[test]
    fn reductions_fold_blocks_as_the_strided_path_does() {
        for dims in [vec![4, 3], vec![2, 3, 4], vec![3, 2, 5], vec![17, 2]] {
            let len: usize = dims.iter().product();
            let values: Vec<f64> = (0..len).map(|i| ((i * 37) % 13) as f64 - 6.5).collect();
            let a = Tensor::from_shape_vec(dims.clone(), values).unwrap();
            let reversed = a.view().reversed_axes();
            let flipped = reversed.as_standard_layout().into_owned().reversed_axes();
            assert!(flipped.as_slice().is_none(), "the copy must be strided for {dims:?}");
            for &r in Reduce::ALL {
                for axis in 0..dims.len() {
                    let blocks = reduce_axis(r, &a.view(), axis);
                    let strided = reduce_axis(r, &flipped.view(), axis);
                    assert_eq!(blocks, strided, "{r:?} along {axis} of {dims:?}");
                }
            }
        }
    }

    fn naive(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|k| a[[i, k]] * b[[k, j]]).sum()
        })
    }

    fn filled(m: usize, n: usize, seed: usize) -> Array2<f64> {
        Array2::from_shape_fn((m, n), |(i, j)| ((i * 7 + j * 3 + seed) % 11) as f64 - 5.0)
    }

    /// A few rows times a transposed matrix of few rows (`x @ transpose(W)`,
    /// x 8 x 128, W 5 x 128: a batch of vectors against a small output layer):
    /// flipped it is again a few rows times a transposed matrix, which flipped
    /// back recursed until the stack overflowed.
    #[test]
    fn few_rows_times_a_transposed_matrix_of_few_rows() {
        for (m, n) in [(8, 5), (3, 2), (8, 8), (1, 5)] {
            let (a, w) = (filled(m, 128, 1), filled(n, 128, 2));
            let b = w.t();
            assert_eq!(
                mat_mat(a.view(), b),
                naive(&a, &b.to_owned()),
                "{m} x 128 @ (128 x {n})"
            );
        }
    }

    /// The matrix-vector shortcuts (one row, one column, a transposed operand)
    /// and the batched path give the plain product.
    #[test]
    fn every_matmul_path_gives_the_product() {
        let few_rows = [(1, 64, 3), (2, 100, 70), (4, 64, 5), (5, 64, 9), (8, 80, 3), (9, 64, 4)];
        for (m, k, n) in [(1, 5, 4), (4, 5, 1), (1, 5, 1), (3, 1, 4), (3, 5, 4)]
            .into_iter()
            .chain(few_rows)
        {
            let (a, b) = (filled(m, k, 1), filled(k, n, 2));
            let want = naive(&a, &b);
            let column = b.column(0).to_owned().into_dyn(); // a matrix times a vector
            assert_eq!(
                matmul(&a.view().into_dyn(), &column.view()),
                want.column(0).to_owned().into_dyn()
            );
            let at = filled(k, m, 3).reversed_axes(); // a transposed operand
            let bt = filled(n, k, 4).reversed_axes();
            assert_eq!(
                matmul(&a.view().into_dyn(), &b.view().into_dyn()),
                want.clone().into_dyn()
            );
            assert_eq!(
                matmul(&at.view().into_dyn(), &b.view().into_dyn()),
                naive(&at.to_owned(), &b).into_dyn()
            );
            assert_eq!(
                matmul(&a.view().into_dyn(), &bt.view().into_dyn()),
                naive(&a, &bt.to_owned()).into_dyn()
            );
            let stack = |x: &Array2<f64>| ndarray::stack(Axis(0), &[x.view(), x.view()]).unwrap().into_dyn();
            let batched = matmul(&stack(&a).view(), &stack(&b).view());
            assert_eq!(batched, stack(&want));
        }
    }

    /// A small result over a long sum, large enough to split the sum between
    /// threads (when there are several): the product, whether split or not.
    #[test]
    fn a_product_split_along_its_sum_gives_the_product() {
        let (m, k, n) = (64, 4096 + 37, 16);
        assert!(m * n <= SPLIT_K_RESULTS && m * k * n >= GEMM_THREADS_FROM);
        let (a, b) = (filled(m, k, 1), filled(k, n, 2));
        let want = naive(&a, &b).into_dyn();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let split = pool.install(|| matmul(&a.view().into_dyn(), &b.view().into_dyn()));
        assert_eq!(split, want);
        assert_eq!(split_k(a.view(), b.view()).into_dyn(), want);
        let alone = on_one_thread(|| matmul(&a.view().into_dyn(), &b.view().into_dyn()));
        assert_eq!(alone, want);
    }

    /// A row-major copy of a permuted, broadcast or sliced view, at every rank
    /// from 1 to 5 (fixed-rank paths and the dynamic one): the same elements, row-major.
    #[test]
    fn a_row_major_copy_has_the_views_elements_in_row_major_order() {
        use ndarray::Dimension;
        for rank in 1..=5usize {
            let dims: Vec<usize> = (0..rank).map(|k| k + 2).collect();
            let a = ndarray::Array::from_shape_fn(IxDyn(&dims), |i| {
                i.slice().iter().fold(0.0, |acc, &v| acc * 7.0 + v as f64)
            });
            let reversed = a.view().reversed_axes();
            let mut wide = dims.clone();
            wide.insert(0, 3);
            let broadcast = a.broadcast(IxDyn(&wide)).unwrap();
            // A window of the last axis: at rank 2, rows that are runs of memory with gaps between them.
            let window = a.slice_axis(Axis(rank - 1), ndarray::Slice::from(1..dims[rank - 1]));
            for view in [reversed, broadcast, a.index_axis(Axis(0), 1), a.view(), window] {
                let copy = row_major_copy(view.clone());
                assert!(copy.is_standard_layout(), "rank {rank}");
                assert_eq!(copy, view, "rank {rank}");
            }
        }
    }

    /// `add_assign` into a window of columns, a block of rows, a transposed
    /// view and a whole array equals ndarray's `+=`.
    #[test]
    fn add_assign_equals_ndarrays_add_on_every_layout() {
        let a = ndarray::Array::from_shape_fn(IxDyn(&[5, 7]), |i| (i[0] * 7 + i[1]) as f64);
        let b = ndarray::Array::from_shape_fn(IxDyn(&[5, 7]), |i| (i[0] * 3 + i[1] * 11) as f64 * 0.5);
        let cases: [(ndarray::SliceInfoElem, ndarray::SliceInfoElem); 3] = [
            ((..).into(), (2..5).into()),
            ((1..4).into(), (..).into()),
            ((..).into(), (..).into()),
        ];
        for (rows, cols) in cases {
            let info = ndarray::SliceInfo::<_, IxDyn, IxDyn>::try_from([rows, cols]).unwrap();
            let mut want = a.clone();
            let mut part = want.slice_mut(info);
            part += &b.slice(info);
            let mut got = a.clone();
            add_assign(got.slice_mut(info), b.slice(info));
            assert_eq!(got, want);
        }
        let mut want = a.t().to_owned();
        want += &b.t();
        let mut got = a.t().to_owned();
        add_assign(got.view_mut(), b.t());
        assert_eq!(got, want);
    }

    /// Summing a cotangent down to every shape it can have been broadcast from
    /// (each axis kept or 1, leading axes dropped) equals summing axis by axis.
    #[test]
    fn summing_down_to_every_broadcast_source_equals_summing_axis_by_axis() {
        let dims = [3, 1, 4, 2];
        let g = ndarray::Array::from_shape_fn(IxDyn(&dims), |i| (i[0] * 13 + i[2] * 5 + i[3] * 3) as f64 % 7.0);
        for mask in 0..16u32 {
            let full: Vec<usize> = (0..4).map(|k| if mask >> k & 1 == 1 { 1 } else { dims[k] }).collect();
            let mut want = g.clone();
            for (k, &d) in full.iter().enumerate() {
                if d == 1 {
                    want = want.sum_axis(Axis(k)).insert_axis(Axis(k));
                }
            }
            for lead in 0..=4 {
                if full[..lead].iter().any(|&d| d != 1) {
                    continue;
                }
                let shape = &full[lead..];
                let want = want.clone().into_shape_with_order(IxDyn(shape)).unwrap();
                assert_eq!(unbroadcast(g.clone(), shape).unwrap(), want, "{shape:?}");
                let transposed = g.t().as_standard_layout().t().to_owned(); // column-major
                assert_eq!(
                    unbroadcast_view(transposed.view(), shape),
                    want,
                    "{shape:?}, column-major"
                );
            }
        }
    }

    /// Both operands batched, large enough for the batch to be split over
    /// threads: each slot is the product of its two matrices.
    #[test]
    fn a_threaded_batched_product_gives_each_product() {
        let (count, m, k, n) = (40, 33, 50, 70);
        assert!(count * m * k * n >= GEMM_THREADS_FROM);
        let a = ndarray::Array3::from_shape_fn((count, m, k), |(b, i, j)| ((b * 5 + i * 7 + j * 3) % 11) as f64 - 5.0);
        let b = ndarray::Array3::from_shape_fn((count, k, n), |(b, i, j)| ((b * 3 + i * 2 + j * 5) % 13) as f64 - 6.0);
        let product = matmul(&a.view().into_dyn(), &b.view().into_dyn());
        for slot in 0..count {
            let want = naive(
                &a.index_axis(Axis(0), slot).to_owned(),
                &b.index_axis(Axis(0), slot).to_owned(),
            );
            assert_eq!(product.index_axis(Axis(0), slot), want.into_dyn());
        }
    }
}
