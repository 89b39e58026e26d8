//! Each op's derivative as graph-building rules, as JAX's primitives have
//! them: a JVP rule (the result's tangent from the operands' tangents) and a
//! transpose rule (the operands' cotangents from the result's), one arm per
//! op in each. Elementwise ops and reductions take their derivatives from the
//! `graph` forms of their op-table entries; the structural ops' rules are in
//! their op files (`src/ir/structural/`), which the interpreter runs too. A loop's rules are the loop again: the tangent
//! of `map(body, n)` is `map(tangent of body, n)`, and the cotangent of
//! `row(y)` is `map(cotangent, n)`, a stack of the per-row cotangents.

use crate::error::{Error, Result};
use crate::ir::structural::{Emit, Node, Structural};
use crate::ir::{Binary, Op, Reduce};
use crate::transform::builder::Builder;
use egg::{Id, Language};

/// The cotangent contributions of `op` (node `node`) to its children, given
/// the cotangent `g` of its result: `(child, contribution)` pairs, each in
/// the child's shape, only for children that `wanted` says need one.
pub fn transpose_rule(b: &mut Builder, node: Id, op: &Op, g: Id, wanted: &dyn Fn(Id) -> bool) -> Result<Vec<(Id, Id)>> {
    let mut out = vec![];
    let mut give = |child: Id, contribution: Result<Id>| -> Result<()> {
        out.push((child, contribution?));
        Ok(())
    };
    match op {
        Op::Num(_) | Op::Var(_) => {}
        Op::Vmap(_) => return Err(not_executable(op)),
        Op::Unary(u, a) => {
            if wanted(*a) {
                let d = b.instantiate(u.derivative_graph(), &[("?x", *a), ("?y", node)])?;
                if b.constant(d) != Some(0.0) {
                    give(*a, b.mul(g, d))?;
                }
            }
        }
        Op::Binary(k, operands) => {
            for (side, &child) in operands.iter().enumerate() {
                if let Some(term) = binary_term(b, *k, node, *operands, side, g, wanted)? {
                    let target = b.shape(child).clone();
                    give(child, b.sum_to(term, &target))?;
                }
            }
        }
        Op::Reduce(r, a) => {
            if wanted(*a) {
                give(*a, reduce_transpose(b, *r, *a, node, g, None))?;
            }
        }
        Op::ReduceAxis(r, [a, k]) => {
            if wanted(*a) {
                let axis = integer(b, *k);
                give(*a, reduce_transpose(b, *r, *a, node, g, Some(axis)))?;
            }
        }
        Op::MatMul([l, r]) => {
            for (child, contribution) in matmul_transpose(b, *l, *r, g, wanted)? {
                give(child, Ok(contribution))?;
            }
        }
        Op::Structural(s, children) => {
            let ints = integers(b, *s, children);
            let node = Node {
                arrays: &children[..children.len() - ints.len()],
                ints: &ints,
            };
            for (i, contribution) in s.transpose(b, &node, g, &|i| wanted(children[i]))? {
                give(children[i], Ok(contribution))?;
            }
        }
        Op::Map([body, _]) => give(*body, b.add(Op::Row(g)))?,
        Op::Row(y) => {
            let shape = b.shape(*y).clone();
            if b.loop_rows(g).is_none() {
                // Every row's cotangent is the same: no loop needed to stack them.
                give(*y, b.broadcast_to(g, &shape))?;
            } else {
                let rows = b.int(shape.dims()[0]);
                give(*y, b.add(Op::Map([g, rows])))?;
            }
        }
        Op::Chunks([body, _, k]) => give(*body, b.add(Op::Rows([g, *k])))?,
        // Every chunk's result is added in: each gets the whole cotangent.
        Op::Accumulate([body, _, _]) => give(*body, Ok(g))?,
        Op::Rows([y, k]) => {
            let rows = b.shape(*y).dims()[0];
            if b.loop_rows(g).is_none() {
                // Every chunk's cotangent is the same: its rows, chunk after chunk.
                give(*y, chunk_after_chunk(b, g, rows, integer(b, *k)))?;
            } else {
                let rows = b.int(rows);
                give(*y, b.add(Op::Chunks([g, rows, *k])))?;
            }
        }
    }
    Ok(out)
}

/// The tangent of `op`'s result (node `node`) given its children's tangents
/// (`None`: zero); `None` when it is zero.
pub fn jvp_rule(b: &mut Builder, node: Id, op: &Op, tangent: &dyn Fn(Id) -> Option<Id>) -> Result<Option<Id>> {
    let linear = |b: &mut Builder| -> Result<Option<Id>> {
        let Some(t) = tangent(op.children()[0]) else {
            return Ok(None);
        };
        let mut op = op.clone();
        op.children_mut()[0] = t;
        b.add(op).map(Some)
    };
    Ok(match op {
        Op::Num(_) | Op::Var(_) => None,
        Op::Vmap(_) => return Err(not_executable(op)),
        Op::Unary(u, a) => match tangent(*a) {
            None => None,
            Some(t) => {
                let d = b.instantiate(u.derivative_graph(), &[("?x", *a), ("?y", node)])?;
                match b.constant(d) {
                    Some(0.0) => None,
                    _ => Some(b.mul(t, d)?),
                }
            }
        },
        Op::Binary(k, operands) => {
            let mut total = None;
            for (side, &child) in operands.iter().enumerate() {
                let Some(t) = tangent(child) else { continue };
                if let Some(term) = binary_term(b, *k, node, *operands, side, t, &|_| true)? {
                    total = Some(match total {
                        None => term,
                        Some(sum) => b.plus(sum, term)?,
                    });
                }
            }
            let shape = b.shape(node).clone();
            total.map(|t| b.broadcast_to(t, &shape)).transpose()?
        }
        Op::Reduce(r, a) | Op::ReduceAxis(r, [a, _]) => match tangent(*a) {
            None => None,
            // sum and mean are linear: the same reduction of the tangent.
            Some(_) if !r.selects() => linear(b)?,
            Some(t) => {
                let axis = op.children().get(1).map(|&k| integer(b, k));
                let weights = reduce_weights(b, *r, *a, node, axis)?;
                let weighted = b.mul(t, weights)?;
                Some(match axis {
                    Some(k) => b.reduce_axis(Reduce::Sum, weighted, k)?,
                    None => b.add(Op::Reduce(Reduce::Sum, weighted))?,
                })
            }
        },
        Op::MatMul([l, r]) => {
            let left = tangent(*l).map(|t| b.add(Op::MatMul([t, *r]))).transpose()?;
            let right = tangent(*r).map(|t| b.add(Op::MatMul([*l, t]))).transpose()?;
            match (left, right) {
                (Some(x), Some(y)) => Some(b.plus(x, y)?),
                (x, y) => x.or(y),
            }
        }
        Op::Structural(s, children) => {
            let ints = integers(b, *s, children);
            let node = Node {
                arrays: &children[..children.len() - ints.len()],
                ints: &ints,
            };
            s.jvp(b, &node, tangent)?
        }
        Op::Row(_) | Op::Rows(_) => linear(b)?,
        Op::Map([body, _]) | Op::Chunks([body, ..]) | Op::Accumulate([body, ..]) => match tangent(*body) {
            Some(t) if b.loop_rows(t).is_none() => Some(same_every_iteration(b, op, node, t)?),
            _ => linear(b)?,
        },
    })
}

/// The tangent of a loop whose body's tangent `t` does not read the loop's
/// rows (it is the same at every iteration): `t` for every row (`map`), or
/// `t`'s rows repeated chunk after chunk (`chunks`): `t` concatenated once
/// per chunk, cut to the rows.
fn same_every_iteration(b: &mut Builder, op: &Op, node: Id, t: Id) -> Result<Id> {
    let shape = b.shape(node).clone();
    let Op::Chunks([_, _, k]) = op else {
        return b.broadcast_to(t, &shape);
    };
    chunk_after_chunk(b, t, shape.dims()[0], integer(b, *k))
}

/// The `chunk` rows of `t` repeated chunk after chunk over `rows` rows (the
/// last chunk may be cut short): `t` concatenated once per chunk, cut to the rows.
pub(crate) fn chunk_after_chunk(b: &mut Builder, t: Id, rows: usize, chunk: usize) -> Result<Id> {
    let copies = rows.div_ceil(chunk);
    let mut parts = vec![t; copies];
    parts.push(b.int(0));
    let repeated = b.add(Op::Structural(Structural::Concat, parts.into()))?;
    match copies * chunk == rows {
        true => Ok(repeated),
        false => Emit::structural(b, Structural::Slice, &[repeated], &[0, 0, rows]),
    }
}

/// `t * df/d(side)` of the binary op `k` at node `node`, in the result's
/// shape or smaller; `None` if that operand is not wanted or the partial is 0.
fn binary_term(
    b: &mut Builder,
    k: Binary,
    node: Id,
    [l, r]: [Id; 2],
    side: usize,
    t: Id,
    wanted: &dyn Fn(Id) -> bool,
) -> Result<Option<Id>> {
    if !wanted([l, r][side]) {
        return Ok(None);
    }
    // Only a partial that is zero by definition is left out; one that is a
    // zero-valued operand (`x * 0`) is multiplied, so that an infinite `t`
    // gives NaN, as in the interpreter and JAX.
    if k.partial_graph(side) == "0" {
        return Ok(None);
    }
    let d = b.instantiate(k.partial_graph(side), &[("?a", l), ("?b", r), ("?y", node)])?;
    b.mul(t, d).map(Some)
}

/// The weight `dy/dx` of every element `x` of `a` in the reduction `y`
/// (node `node`, over `axis` or everything), from the table's graph form; a
/// selecting reduction's ties share. In `a`'s shape, or a scalar literal.
fn reduce_weights(b: &mut Builder, r: Reduce, a: Id, node: Id, axis: Option<usize>) -> Result<Id> {
    let count = axis.map_or(b.shape(a).elements(), |k| b.shape(a).dims()[k]);
    let y = align_reduced(b, node, axis)?;
    let n = b.int(count);
    let weights = b.instantiate(r.weight_graph(), &[("?x", a), ("?y", y), ("?n", n)])?;
    if !r.selects() {
        return Ok(weights);
    }
    let ties = match axis {
        Some(k) => {
            let summed = b.reduce_axis(Reduce::Sum, weights, k)?;
            align_reduced(b, summed, axis)?
        }
        None => b.add(Op::Reduce(Reduce::Sum, weights))?,
    };
    b.binary(Binary::Div, weights, ties)
}

/// A value of the reduced shape, made to broadcast against the operand:
/// `expand(v, k)`, or `v` itself for the leading axis (numpy aligns from the right).
fn align_reduced(b: &mut Builder, v: Id, axis: Option<usize>) -> Result<Id> {
    match axis {
        Some(k) if k > 0 => b.expand(v, k),
        Some(_) | None => Ok(v),
    }
}

/// The cotangent of the operand `a` of the reduction `node = r(a[, axis])`
/// given the result's cotangent `g`: `g` spread back over the reduced
/// elements, times each element's weight.
fn reduce_transpose(b: &mut Builder, r: Reduce, a: Id, node: Id, g: Id, axis: Option<usize>) -> Result<Id> {
    let weights = reduce_weights(b, r, a, node, axis)?;
    // A scalar weight (sum, mean) scales g before it is spread, not after.
    let scaled = if b.rank(weights) == 0 {
        let scaled = b.mul(g, weights)?;
        align_reduced(b, scaled, axis)?
    } else {
        let spread = align_reduced(b, g, axis)?;
        b.mul(spread, weights)?
    };
    let shape = b.shape(a).clone();
    b.broadcast_to(scaled, &shape)
}

/// The cotangents of `l @ r` (numpy matmul, any ranks) given the result's
/// `g`: vectors are promoted to matrices, `g @ r^T` and `l^T @ g` are summed
/// down to the promoted shapes (numpy broadcasts leading axes), and the
/// promoted axes are dropped again.
fn matmul_transpose(b: &mut Builder, l: Id, r: Id, g: Id, wanted: &dyn Fn(Id) -> bool) -> Result<Vec<(Id, Id)>> {
    if let Some(pairs) = matvec_transpose(b, l, r, g, wanted)? {
        return Ok(pairs);
    }
    let (l_vector, r_vector) = (b.rank(l) == 1, b.rank(r) == 1);
    let l2 = if l_vector { b.expand(l, 0)? } else { l };
    let r2 = if r_vector { b.expand(r, 1)? } else { r };
    let mut g2 = g;
    if r_vector {
        g2 = b.expand(g2, b.rank(g2))?;
    }
    if l_vector {
        g2 = b.expand(g2, b.rank(g2) - 1)?;
    }
    let mut out = vec![];
    if wanted(l) {
        let r2t = b.swap_last_two(r2)?;
        let full = b.add(Op::MatMul([g2, r2t]))?;
        let shape = b.shape(l2).clone();
        let mut gl = b.sum_to(full, &shape)?;
        if l_vector {
            gl = b.reduce_axis(Reduce::Sum, gl, 0)?;
        }
        out.push((l, gl));
    }
    if wanted(r) {
        let l2t = b.swap_last_two(l2)?;
        let full = b.add(Op::MatMul([l2t, g2]))?;
        let shape = b.shape(r2).clone();
        let mut gr = b.sum_to(full, &shape)?;
        if r_vector {
            gr = b.reduce_axis(Reduce::Sum, gr, 1)?;
        }
        out.push((r, gr));
    }
    Ok(out)
}

/// The cotangents of `l @ r` when the ranks are (2, 1), (1, 2) or (1, 1):
/// outer products and matrix-vector products, without promoting vectors.
fn matvec_transpose(
    b: &mut Builder,
    l: Id,
    r: Id,
    g: Id,
    wanted: &dyn Fn(Id) -> bool,
) -> Result<Option<Vec<(Id, Id)>>> {
    let (gl, gr) = match (b.rank(l), b.rank(r)) {
        // y = M @ v: dM = outer(g, v), dv = M^T @ g.
        (2, 1) => (
            wanted(l).then(|| outer(b, g, r)).transpose()?,
            wanted(r)
                .then(|| -> Result<Id> {
                    let lt = b.add(Op::structural(Structural::Transpose, &[l]))?;
                    b.add(Op::MatMul([lt, g]))
                })
                .transpose()?,
        ),
        // y = v @ M: dv = M @ g, dM = outer(v, g).
        (1, 2) => (
            wanted(l).then(|| b.add(Op::MatMul([r, g]))).transpose()?,
            wanted(r).then(|| outer(b, l, g)).transpose()?,
        ),
        // y = u . v: du = g v, dv = g u.
        (1, 1) => (
            wanted(l).then(|| b.mul(g, r)).transpose()?,
            wanted(r).then(|| b.mul(g, l)).transpose()?,
        ),
        _ => return Ok(None),
    };
    Ok(Some(
        [(l, gl), (r, gr)]
            .into_iter()
            .filter_map(|(c, g)| Some((c, g?)))
            .collect(),
    ))
}

/// `u v^T` for vectors `u` and `v`.
fn outer(b: &mut Builder, u: Id, v: Id) -> Result<Id> {
    let column = b.expand(u, 1)?;
    let row = b.expand(v, 0)?;
    b.mul(column, row)
}

/// The integer operands of the structural op `s` with `children`.
fn integers(b: &Builder, s: Structural, children: &[Id]) -> Vec<usize> {
    let arrays = s.arrays_of(children.len()).unwrap_or(children.len());
    children[arrays..].iter().map(|&c| integer(b, c)).collect()
}

/// The integer literal at node `id` (shape inference has checked it).
fn integer(b: &Builder, id: Id) -> usize {
    b.constant(id).map_or(0, |v| v as usize)
}

fn not_executable(op: &Op) -> Error {
    Error::Unsupported(format!("{op}: the batcher's spec node cannot be differentiated"))
}
