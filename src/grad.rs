//! Derivative rules: a vector-Jacobian product (reverse mode) and a
//! Jacobian-vector product (forward mode) for every op, one short arm each.
//! Linear ops reuse their forward kernel for the tangent.

use crate::kernels::{broadcast_to, forward, matmul, reshape, scalar, sigmoid, unbroadcast, Scalar, Tensor};
use crate::language::Op;
use egg::Language;
use ndarray::{ArrayViewD, Axis, IxDyn};

fn swap_last_two<'a, T>(mut v: ArrayViewD<'a, T>) -> ArrayViewD<'a, T> {
    let n = v.ndim();
    v.swap_axes(n - 1, n - 2);
    v
}

/// Cotangents of `a @ b` for numpy matmul of any ranks the language allows.
fn matmul_vjp<T: Scalar>(a: &Tensor<T>, b: &Tensor<T>, g: &Tensor<T>) -> (Tensor<T>, Tensor<T>) {
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
    let ga = matmul(&g2, &swap_last_two(b2.clone()));
    let gb = matmul(&swap_last_two(a2.clone()), &g2);
    (
        reshape(unbroadcast(ga, a2.shape()), a.shape()),
        reshape(unbroadcast(gb, b2.shape()), b.shape()),
    )
}

/// The mask of the elements of `a` that equal their axis's maximum, divided by
/// how many do (ties share the gradient equally, as in JAX).
fn max_weights<T: Scalar>(a: &Tensor<T>, max: &Tensor<T>, axis: usize) -> Tensor<T> {
    let max = max.view().insert_axis(Axis(axis));
    let mut mask = a.clone();
    ndarray::Zip::from(&mut mask)
        .and_broadcast(&max)
        .for_each(|m, &x| *m = if *m == x { T::one() } else { T::zero() });
    let counts = mask.sum_axis(Axis(axis)).insert_axis(Axis(axis));
    mask / counts
}

/// The cotangent of each child of `op` given the cotangent `g` of its result
/// `out`; `None` for number-literal operands. `literal(i)` is the value of
/// child `i` if it is a number literal, NaN if it is not.
pub fn vjp<T: Scalar>(
    op: &Op,
    args: &[&Tensor<T>],
    out: &Tensor<T>,
    g: &Tensor<T>,
    literal: &dyn Fn(usize) -> f64,
) -> Vec<Option<Tensor<T>>> {
    if op.is_leaf() {
        return vec![];
    }
    let a = args[0];
    let shape = |i: usize| args[i].shape();
    let one = T::one();
    let int = |i: usize| literal(i) as usize;
    // A literal operand (NaN means "not a literal") gets no cotangent: skip computing it.
    let wanted = |i: usize| literal(i).is_nan();
    match op {
        Op::Num(_) | Op::Var(_) | Op::Vmap(_) => vec![],
        Op::Add(_) => vec![
            wanted(0).then(|| unbroadcast(g.clone(), shape(0))),
            wanted(1).then(|| unbroadcast(g.clone(), shape(1))),
        ],
        Op::Sub(_) => vec![
            wanted(0).then(|| unbroadcast(g.clone(), shape(0))),
            wanted(1).then(|| unbroadcast(g.mapv(|v| -v), shape(1))),
        ],
        Op::Mul(_) => vec![
            wanted(0).then(|| unbroadcast(g * args[1], shape(0))),
            wanted(1).then(|| unbroadcast(g * a, shape(1))),
        ],
        Op::Div(_) => vec![
            wanted(0).then(|| unbroadcast(g / args[1], shape(0))),
            wanted(1).then(|| unbroadcast(-(g * out) / args[1], shape(1))),
        ],
        Op::MatMul(_) => {
            let (ga, gb) = matmul_vjp(a, args[1], g);
            vec![Some(ga), Some(gb)]
        }
        Op::Pow(_) => {
            let p = literal(1);
            let dp = forward(op, &[a, &scalar(T::of(p - 1.0))], &|_| p - 1.0);
            vec![Some(g * &dp * T::of(p)), None]
        }
        Op::Neg(_) => vec![Some(g.mapv(|v| -v))],
        Op::Exp(_) => vec![Some(g * out)],
        Op::Log(_) => vec![Some(g / a)],
        Op::Tanh(_) => vec![Some(g * &out.mapv(|y| one - y * y))],
        Op::Sigmoid(_) => vec![Some(g * &out.mapv(|y| y * (one - y)))],
        Op::Relu(_) => vec![Some(g * &a.mapv(|x| if x > T::zero() { one } else { T::zero() }))],
        Op::Sqrt(_) => vec![Some(g * &out.mapv(|y| T::of(0.5) / y))],
        Op::Sin(_) => vec![Some(g * &a.mapv(|x| x.cos()))],
        Op::Cos(_) => vec![Some(g * &a.mapv(|x| -x.sin()))],
        Op::Abs(_) => vec![Some(g * &a.mapv(|x| if x == T::zero() { x } else { x.signum() }))],
        Op::Sum(_) => vec![Some(broadcast_to(g, shape(0)))],
        Op::Mean(_) => vec![Some(broadcast_to(&(g / T::of(a.len() as f64)), shape(0)))],
        Op::SumAxis(_) => vec![Some(broadcast_to(&g.clone().insert_axis(Axis(int(1))), shape(0))), None],
        Op::MeanAxis(_) => {
            let n = T::of(shape(0)[int(1)] as f64);
            vec![Some(broadcast_to(&(g / n).insert_axis(Axis(int(1))), shape(0))), None]
        }
        Op::MaxAxis(_) => {
            let axis = int(1);
            vec![
                Some(max_weights(a, out, axis) * &g.view().insert_axis(Axis(axis))),
                None,
            ]
        }
        Op::Transpose(_) => vec![Some(g.view().reversed_axes().to_owned())],
        Op::Permute(children) => {
            let axes: Vec<usize> = (1..children.len()).map(int).collect();
            let mut inverse = vec![0; axes.len()];
            for (i, &p) in axes.iter().enumerate() {
                inverse[p] = i;
            }
            let mut cotangents = vec![Some(g.view().permuted_axes(IxDyn(&inverse)).to_owned())];
            cotangents.resize(children.len(), None);
            cotangents
        }
        Op::Expand(_) => vec![Some(g.index_axis(Axis(int(1)), 0).to_owned()), None],
        Op::Index(_) => {
            let mut full = Tensor::<T>::zeros(IxDyn(shape(0)));
            full.index_axis_mut(Axis(0), int(1)).assign(g);
            vec![Some(full), None]
        }
        Op::Stack(children) => (0..children.len())
            .map(|i| Some(g.index_axis(Axis(0), i).to_owned()))
            .collect(),
        Op::Repeat(_) => vec![Some(g.sum_axis(Axis(0))), None],
    }
}

/// The tangent of `op`'s result `out` given the tangents of its children
/// (`None` = zero); `None` when the result's tangent is zero.
pub fn jvp<T: Scalar>(
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
    let one = T::one();
    // d(op)(a)/da ⊙ ta, for elementwise unary ops.
    let chain = |derivative: Tensor<T>| t[0].map(|ta| ta * &derivative);
    let zero_if_none = |i: usize| t[i].cloned().unwrap_or_else(|| Tensor::zeros(args[i].raw_dim()));
    match op {
        Op::Num(_) | Op::Var(_) | Op::Vmap(_) => None,
        Op::Add(_) | Op::Sub(_) => match (t[0], t[1]) {
            (None, None) => None,
            _ => Some(broadcast_to(
                &forward(op, &[&zero_if_none(0), &zero_if_none(1)], literal),
                out.shape(),
            )),
        },
        Op::Mul(_) => sum_terms(t[0].map(|ta| ta * args[1]), t[1].map(|tb| a * tb), out.shape()),
        Op::Div(_) => sum_terms(
            t[0].map(|ta| ta / args[1]),
            t[1].map(|tb| -(out * tb) / args[1]),
            out.shape(),
        ),
        Op::MatMul(_) => sum_terms(
            t[0].map(|ta| matmul(&ta.view(), &args[1].view())),
            t[1].map(|tb| matmul(&a.view(), &tb.view())),
            out.shape(),
        ),
        Op::Pow(_) => {
            let p = literal(1);
            chain(forward(op, &[a, &scalar(T::of(p - 1.0))], &|_| p - 1.0) * T::of(p))
        }
        Op::Exp(_) => chain(out.clone()),
        Op::Log(_) => chain(a.mapv(|x| one / x)),
        Op::Tanh(_) => chain(out.mapv(|y| one - y * y)),
        Op::Sigmoid(_) => chain(a.mapv(|x| sigmoid(x) * (one - sigmoid(x)))),
        Op::Relu(_) => chain(a.mapv(|x| if x > T::zero() { one } else { T::zero() })),
        Op::Sqrt(_) => chain(out.mapv(|y| T::of(0.5) / y)),
        Op::Sin(_) => chain(a.mapv(|x| x.cos())),
        Op::Cos(_) => chain(a.mapv(|x| -x.sin())),
        Op::Abs(_) => chain(a.mapv(|x| if x == T::zero() { x } else { x.signum() })),
        Op::MaxAxis(_) => {
            let axis = literal(1) as usize;
            t[0].map(|ta| (max_weights(a, out, axis) * ta).sum_axis(Axis(axis)))
        }
        // Linear ops: the tangent goes through the op itself.
        Op::Neg(_)
        | Op::Sum(_)
        | Op::Mean(_)
        | Op::SumAxis(_)
        | Op::MeanAxis(_)
        | Op::Transpose(_)
        | Op::Permute(_)
        | Op::Expand(_)
        | Op::Index(_)
        | Op::Repeat(_) => t[0].map(|ta| {
            let mut operands: Vec<&Tensor<T>> = args.to_vec();
            operands[0] = ta;
            forward(op, &operands, literal)
        }),
        Op::Stack(_) => {
            if t.iter().all(Option::is_none) {
                return None;
            }
            let filled: Vec<Tensor<T>> = (0..args.len()).map(zero_if_none).collect();
            let operands: Vec<&Tensor<T>> = filled.iter().collect();
            Some(forward(op, &operands, literal))
        }
    }
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
