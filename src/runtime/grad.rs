//! Derivative rules: a vector-Jacobian product (reverse mode) and a
//! Jacobian-vector product (forward mode) for every op kind, one short arm
//! each. The elementwise and reduction kinds take their derivatives from the
//! op tables; the structural ops run the rules of their op files on values
//! ([`crate::runtime::emit`]).

use crate::ir::{Binary, Op, Reduce, Scalar, Window};
use crate::runtime::emit::{structural_jvp, structural_vjp};
use crate::runtime::kernels::{
    broadcast_to, matmul, on_one_thread, reshape, sum_to_shape, threads_for, unbroadcast_view, Tensor,
};
use egg::Language;
use ndarray::{ArrayViewD, Axis, IxDyn, Zip};

fn swap_last_two<'a, T>(mut v: ArrayViewD<'a, T>) -> ArrayViewD<'a, T> {
    let n = v.ndim();
    v.swap_axes(n - 1, n - 2);
    v
}

/// Cotangents of `a @ b` for numpy matmul of any ranks the language allows;
/// each only if `wanted` (a product each).
pub fn matmul_vjp<T: Scalar>(
    a: ArrayViewD<T>,
    b: ArrayViewD<T>,
    g: &Tensor<T>,
    wanted: [bool; 2],
) -> (Option<Tensor<T>>, Option<Tensor<T>>) {
    let (ra, rb) = (a.ndim(), b.ndim());
    let a2 = if ra == 1 {
        a.view().insert_axis(Axis(0))
    } else {
        a.view()
    };
    let b2 = if rb == 1 {
        b.view().insert_axis(Axis(1))
    } else {
        b.view()
    };
    let mut g2 = g.view();
    if rb == 1 {
        let n = g2.ndim();
        g2 = g2.insert_axis(Axis(n));
    }
    if ra == 1 {
        let n = g2.ndim();
        g2 = g2.insert_axis(Axis(n - 1));
    }
    // A matrix operand that the other's batch axes broadcast over: its cotangent sums over
    // them, as one product over the flattened batch (never a value of every batch's product).
    let shared = |matrix: &ArrayViewD<T>, other: &ArrayViewD<T>| {
        matrix.ndim() == 2 && g2.ndim() > 2 && other.shape()[..other.ndim() - 2] == g2.shape()[..g2.ndim() - 2]
    };
    let ga = || {
        wanted[0].then(|| {
            let ga = if shared(&a2, &b2) {
                contract_batch(g2.clone(), b2.clone())
            } else {
                sum_to_shape(matmul(&g2, &swap_last_two(b2.clone())), a2.shape())
            };
            reshape(ga, a.shape())
        })
    };
    let gb = || {
        wanted[1].then(|| {
            let gb = if shared(&b2, &a2) {
                contract_batch(swap_last_two(a2.clone()), swap_last_two(g2.clone()))
            } else {
                sum_to_shape(matmul(&swap_last_two(a2.clone()), &g2), b2.shape())
            };
            reshape(gb, b.shape())
        })
    };
    // Two independent products of about the same size: one per thread beats
    // each split between threads (small GEMMs split poorly).
    let each = g2.len().saturating_mul(a2.shape()[a2.ndim() - 1]);
    if wanted == [true, true] && threads_for(each) > 1 {
        return rayon::join(|| on_one_thread(ga), || on_one_thread(gb));
    }
    (ga(), gb())
}

/// The sum over the leading (batch) axes of `x @ y^T`, for `x: [..., p, q]` and
/// `y: [..., r, q]` of the same batch axes: `[p, r]`, as one GEMM of `x` and `y`
/// flattened to `[p, N q]` and `[r, N q]`.
fn contract_batch<T: Scalar>(x: ArrayViewD<T>, y: ArrayViewD<T>) -> Tensor<T> {
    let flatten = |v: ArrayViewD<T>| {
        let n = v.ndim();
        let rows = v.shape()[n - 2];
        let order: Vec<usize> = std::iter::once(n - 2).chain(0..n - 2).chain([n - 1]).collect();
        let moved = v.permuted_axes(IxDyn(&order)).as_standard_layout().into_owned();
        let columns = moved.len() / rows.max(1);
        moved
            .into_shape_with_order(IxDyn(&[rows, columns]))
            .expect("a standard-layout copy reshapes")
    };
    let (x, y) = (flatten(x), flatten(y));
    matmul(&x.view(), &y.view().reversed_axes())
}

/// The cotangent (or tangent) of operand `side` of a binary op, summed down
/// to that operand's shape: `g * df/da` (`side` 0) or `g * df/db` (`side` 1).
/// `+` and `-` have constant partials (1 and +-1): their cotangent is `g`
/// itself, summed down without a pass that multiplies by 1.
fn binary_chain<T: Scalar>(
    op: Binary,
    a: &Tensor<T>,
    b: &Tensor<T>,
    out: &Tensor<T>,
    g: &Tensor<T>,
    side: usize,
) -> Tensor<T> {
    let target = if side == 0 { a.shape() } else { b.shape() };
    if matches!(op, Binary::Add) || (matches!(op, Binary::Sub) && side == 0) {
        return sum_to(g, out.shape(), target);
    }
    if matches!(op, Binary::Sub) {
        return sum_to(g, out.shape(), target).mapv_into(|v| -v);
    }
    if let (Some(&x), Some(&y), Some(&v), Some(&t), 1) = (a.first(), b.first(), out.first(), g.first(), out.len()) {
        // One element (scalars): no broadcasting, no iterators over four arrays.
        let (da, db) = op.partials(x, y, v);
        return Tensor::from_elem(IxDyn(target), t * if side == 0 { da } else { db });
    }
    let shape = out.raw_dim();
    let (a, b) = (a.broadcast(shape.clone()).unwrap(), b.broadcast(shape.clone()).unwrap());
    let g = g.broadcast(shape).unwrap();
    sum_to_shape(chain_at_rank(op, side, [a, b, out.view(), g]), target)
}

/// [`Binary::chain`] over `[a, b, y, g]` (one shape), at a fixed rank when it is
/// 1 to 4 (ndarray walks strided operands of a fixed rank several times faster).
fn chain_at_rank<T: Scalar>(op: Binary, side: usize, views: [ArrayViewD<T>; 4]) -> Tensor<T> {
    use ndarray::{Ix1, Ix2, Ix3, Ix4};
    macro_rules! at {
        ($d:ty) => {{
            let [a, b, y, g] = views.map(|v| v.into_dimensionality::<$d>().expect("the rank matched"));
            op.chain(side, &a, &b, &y, &g).into_dyn()
        }};
    }
    match views[0].ndim() {
        1 => at!(Ix1),
        2 => at!(Ix2),
        3 => at!(Ix3),
        4 => at!(Ix4),
        _ => {
            let [a, b, y, g] = views;
            op.chain(side, &a, &b, &y, &g)
        }
    }
}

/// `g` (broadcast to `out_shape` if it is smaller) summed down to `target`.
fn sum_to<T: Scalar>(g: &Tensor<T>, out_shape: &[usize], target: &[usize]) -> Tensor<T> {
    if g.shape() == target {
        return g.clone();
    }
    if g.shape() == out_shape {
        return unbroadcast_view(g.view(), target);
    }
    sum_to_shape(broadcast_to(g, out_shape), target)
}

/// The cotangent of `a` in `out = r(a)` along `axis`, given `out`'s cotangent `g`:
/// lane by lane along the axis, each element's weight times its lane's `g` (a
/// selecting reduction's ties sharing it). One pass, without materializing the
/// weights and a broadcast `g` as [`reduce_weights`] and [`spread`] would.
fn reduce_axis_vjp<T: Scalar>(r: Reduce, a: &Tensor<T>, out: &Tensor<T>, g: &Tensor<T>, axis: usize) -> Tensor<T> {
    use ndarray::{ArrayView1, ArrayViewMut1};
    let n = a.shape()[axis];
    let weigh = |mut lane: ArrayViewMut1<T>, xs: ArrayView1<T>, y: T, g: T| {
        let mut ties = T::zero();
        for (c, &x) in lane.iter_mut().zip(xs) {
            *c = r.weight(x, y, n);
            ties += *c;
        }
        match r.selects() {
            true => lane.map_inplace(|c| *c = *c / ties * g),
            false => lane.map_inplace(|c| *c = *c * g),
        }
    };
    let mut cotangent = Tensor::<T>::zeros(a.raw_dim());
    let last = axis + 1 == a.ndim() && n > 0;
    if let (true, Some(xs), Some(ys), Some(gs)) = (last, a.as_slice(), out.as_slice(), g.as_slice()) {
        // Rows of a row-major array: slices, not a multi-dimensional iterator per lane.
        let cs = cotangent.as_slice_mut().expect("a fresh array is row-major");
        for (((c, x), &y), &g) in cs.chunks_exact_mut(n).zip(xs.chunks_exact(n)).zip(ys).zip(gs) {
            weigh(ArrayViewMut1::from(c), ArrayView1::from(x), y, g);
        }
        return cotangent;
    }
    Zip::from(cotangent.lanes_mut(Axis(axis)))
        .and(a.lanes(Axis(axis)))
        .and(out)
        .and(g)
        .for_each(|lane, xs, &y, &g| weigh(lane, xs, y, g));
    cotangent
}

/// The weight `dy/dx` of every element of `a` in the reduction `y = out`
/// (along `axis`, or over everything); a selecting reduction's ties share.
fn reduce_weights<T: Scalar>(r: Reduce, a: &Tensor<T>, out: &Tensor<T>, axis: Option<usize>) -> Tensor<T> {
    let n = axis.map_or(a.len(), |k| a.shape()[k]);
    let out = match axis {
        Some(k) => out.view().insert_axis(Axis(k)),
        None => out.view(),
    };
    let out = out.broadcast(a.raw_dim()).expect("the reduced shape broadcasts back");
    let weights = Zip::from(a).and(&out).map_collect(|&x, &y| r.weight(x, y, n));
    if !r.selects() {
        return weights;
    }
    match axis {
        Some(k) => {
            let ties = weights.sum_axis(Axis(k)).insert_axis(Axis(k));
            weights / ties
        }
        None => {
            let ties = weights.sum();
            weights / ties
        }
    }
}

/// `g`, the cotangent of a reduction's result, broadcast back to the operand's shape.
fn spread<T: Scalar>(g: &Tensor<T>, axis: Option<usize>, shape: &[usize]) -> Tensor<T> {
    match axis {
        Some(k) => broadcast_to(&g.view().insert_axis(Axis(k)).to_owned(), shape),
        None => broadcast_to(g, shape),
    }
}

/// The cotangent of each child of `op` given the cotangent `g` of its result
/// `out`; `None` for number-literal operands. `literal(i)` is the value of
/// child `i` if it is a number literal, NaN if it is not.
pub fn op_vjp<T: Scalar>(
    op: &Op,
    args: &[&Tensor<T>],
    out: &Tensor<T>,
    g: &Tensor<T>,
    literal: &dyn Fn(usize) -> f64,
) -> Vec<Option<Tensor<T>>> {
    op_vjp_of(op, args, out, g, literal, &|i| literal(i).is_nan())
}

/// [`op_vjp`], computing the cotangent of child `i` only where `wanted(i)` (a
/// product skipped: the gradient of an input nobody asked for); an op may
/// still return one that is not wanted where it costs nothing extra.
pub fn op_vjp_of<T: Scalar>(
    op: &Op,
    args: &[&Tensor<T>],
    out: &Tensor<T>,
    g: &Tensor<T>,
    literal: &dyn Fn(usize) -> f64,
    wanted: &dyn Fn(usize) -> bool,
) -> Vec<Option<Tensor<T>>> {
    if op.is_leaf() {
        return vec![];
    }
    let a = args[0];
    let shape = |i: usize| args[i].shape();
    let int = |i: usize| literal(i) as usize;
    // A literal operand (NaN means "not a literal") gets no cotangent: skip computing it.
    let wanted = |i: usize| literal(i).is_nan() && wanted(i);
    match op {
        Op::Num(_) | Op::Var(_) | Op::Vmap(_) => vec![],
        Op::Map(_) | Op::Row(_) | Op::Chunks(_) | Op::Rows(_) | Op::Accumulate(_) => {
            unreachable!("the interpreter differentiates loops itself")
        }
        Op::Unary(u, _) => vec![(!u.derivative_is_zero()).then(|| u.chain(a, out, g))],
        Op::Binary(b, _) => (0..2)
            .map(|i| wanted(i).then(|| binary_chain(*b, a, args[1], out, g, i)))
            .collect(),
        Op::Reduce(r, _) => vec![Some(reduce_weights(*r, a, out, None) * &spread(g, None, shape(0)))],
        Op::ReduceAxis(r, _) => vec![Some(reduce_axis_vjp(*r, a, out, g, int(1))), None],
        Op::MatMul(_) => {
            let (ga, gb) = matmul_vjp(a.view(), args[1].view(), g, [wanted(0), wanted(1)]);
            vec![ga, gb]
        }
        Op::Structural(s, _) => structural_vjp(*s, args, g, literal, &wanted),
    }
}

/// Adds `g`, the cotangent of a result that is the `window` of an operand of
/// shape `shape`, into that window of the operand's cotangent `slot` (zeros
/// of `shape` first if it has none yet): the transpose of `index` and `slice`
/// as one pass over `g`, where running their rule would pad `g` with zeros to
/// the operand's shape and then add the padded array to the slot.
pub fn add_into_window<T: Scalar>(slot: &mut Option<Tensor<T>>, shape: &[usize], window: Window, g: &Tensor<T>) {
    let acc = slot.get_or_insert_with(|| Tensor::zeros(IxDyn(shape)));
    let range = ndarray::Slice::from(window.start..window.end);
    let part = acc.slice_axis_mut(Axis(window.axis), range);
    let g = match window.drops_axis {
        true => g.view().insert_axis(Axis(window.axis)),
        false => g.view(),
    };
    crate::runtime::kernels::add_assign(part, g);
}

/// The tangent of `op`'s result `out` given the tangents of its children
/// (`None` = zero); `None` when the result's tangent is zero.
pub fn op_jvp<T: Scalar>(
    op: &Op,
    args: &[&Tensor<T>],
    out: &Tensor<T>,
    t: &[Option<&Tensor<T>>],
    literal: &dyn Fn(usize) -> f64,
) -> Option<Tensor<T>> {
    if op.is_leaf() {
        return None;
    }
    let a = args[0];
    match op {
        Op::Num(_) | Op::Var(_) | Op::Vmap(_) => None,
        Op::Map(_) | Op::Row(_) | Op::Chunks(_) | Op::Rows(_) | Op::Accumulate(_) => {
            unreachable!("the interpreter differentiates loops itself")
        }
        Op::Unary(u, _) => t[0].filter(|_| !u.derivative_is_zero()).map(|ta| u.chain(a, out, ta)),
        Op::Binary(b, _) => sum_terms(
            t[0].map(|ta| binary_tangent(*b, a, args[1], out, ta, 0)),
            t[1].map(|tb| binary_tangent(*b, a, args[1], out, tb, 1)),
            out.shape(),
        ),
        Op::Reduce(r, _) => {
            t[0].map(|ta| crate::runtime::kernels::scalar((reduce_weights(*r, a, out, None) * ta).sum()))
        }
        Op::ReduceAxis(r, _) => {
            let axis = literal(1) as usize;
            t[0].map(|ta| (reduce_weights(*r, a, out, Some(axis)) * ta).sum_axis(Axis(axis)))
        }
        Op::MatMul(_) => sum_terms(
            t[0].map(|ta| matmul(&ta.view(), &args[1].view())),
            t[1].map(|tb| matmul(&a.view(), &tb.view())),
            out.shape(),
        ),
        Op::Structural(s, _) => structural_jvp(*s, args, t, literal),
    }
}

/// The tangent of a binary op's result from the tangent `t` of operand
/// `side` (in that operand's shape): `t * df/d(side)`, in the result's shape.
fn binary_tangent<T: Scalar>(
    op: Binary,
    a: &Tensor<T>,
    b: &Tensor<T>,
    out: &Tensor<T>,
    t: &Tensor<T>,
    side: usize,
) -> Tensor<T> {
    let shape = out.raw_dim();
    let (a, b) = (a.broadcast(shape.clone()).unwrap(), b.broadcast(shape.clone()).unwrap());
    let t = t.broadcast(shape).unwrap();
    chain_at_rank(op, side, [a, b, out.view(), t])
}

fn sum_terms<T: Scalar>(x: Option<Tensor<T>>, y: Option<Tensor<T>>, shape: &[usize]) -> Option<Tensor<T>> {
    let total = match (x, y) {
        (None, None) => return None,
        (Some(x), None) => x,
        (None, Some(y)) => y,
        (Some(x), Some(y)) => x + y,
    };
    Some(if total.shape() == shape {
        total
    } else {
        broadcast_to(&total, shape)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::kernels::GEMM_THREADS_FROM;
    use ndarray::Array2;

    fn filled(m: usize, n: usize, seed: usize) -> Tensor<f64> {
        Array2::from_shape_fn((m, n), |(i, j)| ((i * 7 + j * 3 + seed) % 11) as f64 - 5.0).into_dyn()
    }

    /// A reduction's cotangent along each axis, lane by lane (slices along a last
    /// axis, lanes otherwise, and on a transposed operand), equals the weights
    /// times the spread cotangent; ties included (small integers repeat).
    #[test]
    fn a_reduction_cotangent_lane_by_lane_equals_weights_times_the_spread_cotangent() {
        use crate::runtime::kernels::reduce_axis;
        use ndarray::ShapeBuilder;
        let value = |(i, j, k): (usize, usize, usize)| ((i * 7 + j * 3 + k) % 4) as f64;
        let a = ndarray::Array3::from_shape_fn((3, 4, 5), value).into_dyn();
        let transposed = ndarray::Array3::from_shape_fn((3, 4, 5).f(), value).into_dyn(); // column-major
        assert!(!transposed.is_standard_layout() && transposed == a);
        for &r in Reduce::ALL {
            for axis in 0..3 {
                let out = reduce_axis(r, &a.view(), axis);
                let g = out.mapv(|v| v * 0.5 + 1.0);
                let want = reduce_weights(r, &a, &out, Some(axis)) * &spread(&g, Some(axis), a.shape());
                assert_eq!(reduce_axis_vjp(r, &a, &out, &g, axis), want, "{r:?} along {axis}");
                assert_eq!(
                    reduce_axis_vjp(r, &transposed, &out, &g, axis),
                    want,
                    "{r:?} along {axis}, transposed"
                );
            }
        }
    }

    /// Both cotangents of a large product, computed side by side on two threads,
    /// equal each computed alone (and on one thread).
    #[test]
    fn both_cotangents_side_by_side_equal_each_alone() {
        let (m, k, n) = (1024, 64, 96);
        assert!(m * n * k >= GEMM_THREADS_FROM);
        let (a, b, g) = (filled(m, k, 1), filled(k, n, 2), filled(m, n, 3));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (ga, gb) = pool.install(|| matmul_vjp(a.view(), b.view(), &g, [true, true]));
        let alone_a = matmul_vjp(a.view(), b.view(), &g, [true, false]).0;
        let alone_b = on_one_thread(|| matmul_vjp(a.view(), b.view(), &g, [false, true]).1);
        assert_eq!(ga, alone_a);
        assert_eq!(gb, alone_b);
        assert_eq!(ga.unwrap(), matmul(&g.view(), &b.t()));
        assert_eq!(gb.unwrap(), matmul(&a.t(), &g.view()));
    }
}
