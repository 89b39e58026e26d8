//! Running loops: `map(body, n)` evaluates its body once per row, with
//! `row(y)` the current row of `y`, and stacks the results; `chunks(body, n,
//! k)` does the same per chunk of `k` rows (`rows(y, k)`), concatenating. Forward mode
//! carries tangents row by row. Reverse mode recomputes one row's body at a
//! time and sweeps it backwards: the cotangent of `row(y)` is written into
//! row `b` of `y`'s cotangent, and the cotangents of the values the body reads
//! from outside (shared params) are summed over the rows — gradient
//! accumulation, compiled. Only one row's intermediates are alive at once.
//! `accumulate(body, n, k)` runs its chunks as `chunks` does and adds their
//! results into one accumulator; every chunk's cotangent is the loop's.

use crate::error::{Error, Result};
use crate::ir::{LoopBody, Op, Program, Scalar, Shape};
use crate::runtime::grad::{op_jvp, op_vjp};
use crate::runtime::kernels::{run_op, Tensor};
use egg::Language;
use ndarray::{Axis, IxDyn, Slice};
use std::borrow::Cow;

/// The values (and tangents) computed outside the loop, by node.
pub(crate) struct Outer<'l, 'v, T: Clone> {
    pub values: &'l [Option<Cow<'v, Tensor<T>>>],
    pub tangents: Option<&'l [Option<Tensor<T>>]>,
}

impl<T: Clone> Clone for Outer<'_, '_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Clone> Copy for Outer<'_, '_, T> {}

impl<'l, T: Clone> Outer<'l, '_, T> {
    fn value(&self, c: usize) -> &'l Tensor<T> {
        self.values[c].as_deref().expect("computed before the loop")
    }
    fn tangent(&self, c: usize) -> Option<&'l Tensor<T>> {
        self.tangents.and_then(|t| t[c].as_ref())
    }
}

fn bytes<T>(t: &Tensor<T>) -> usize {
    t.len() * std::mem::size_of::<T>()
}

/// The value of child `c` of a body node: this row's, or the outer one.
fn arg<'l, T: Clone>(
    local: &'l [Option<Tensor<T>>],
    per_row: &[bool],
    outer: Outer<'l, '_, T>,
    c: usize,
) -> &'l Tensor<T> {
    if per_row[c] {
        local[c].as_ref().expect("computed earlier in this row")
    } else {
        outer.value(c)
    }
}

/// The value of the literal child at `position`, NaN if it is not one.
fn literal<'a>(program: &'a Program, node: &'a Op) -> impl Fn(usize) -> f64 + 'a {
    move |position| program.literal(node.children()[position]).unwrap_or(f64::NAN)
}

pub(crate) fn not_finite<T: Scalar>(node: &Op, value: &Tensor<T>) -> Result<()> {
    finite_or(value, || node.to_string())
}

/// An error naming `what` (an op, or a derivative through one) if `value`
/// holds a NaN or an infinity: inside a loop as outside.
fn finite_or<T: Scalar>(value: &Tensor<T>, what: impl FnOnce() -> String) -> Result<()> {
    match value.iter().find(|v| !v.is_finite()) {
        Some(bad) => Err(Error::NotFinite {
            op: what(),
            value: bad.to_f64().unwrap_or(f64::NAN),
            shape: Shape(value.shape().to_vec()).to_string(),
        }),
        None => Ok(()),
    }
}

/// Evaluates the body for row `b` into `local` (and its tangents into
/// `local_tangents` when given); returns the most bytes it holds at once.
/// With `release`, each value is dropped after its last read in the body
/// (a run forward only); without, every value is kept (for a backward sweep).
#[allow(clippy::too_many_arguments)]
fn body_row<T: Scalar>(
    program: &Program,
    body: &LoopBody,
    b: usize,
    outer: Outer<'_, '_, T>,
    local: &mut [Option<Tensor<T>>],
    local_tangents: &mut [Option<Tensor<T>>],
    check_finite: bool,
    release: bool,
) -> Result<usize> {
    let per_row = &program.loops().per_row;
    let expr = program.expr.as_ref();
    let (mut held, mut peak) = (0, 0);
    let last_reads = match release {
        true => body.last_reads(expr),
        false => vec![vec![]; body.nodes.len()],
    };
    for (&n, frees) in body.nodes.iter().zip(&last_reads) {
        let node = &expr[n];
        let (value, tangent) = if let Op::Row(y) | Op::Rows([y, _]) = node {
            let y = usize::from(*y);
            let tangent = outer.tangent(y).map(|t| take(t, body, b));
            (take(outer.value(y), body, b), tangent)
        } else {
            let args: Vec<&Tensor<T>> = node
                .children()
                .iter()
                .map(|&c| arg(local, per_row, outer, usize::from(c)))
                .collect();
            let value = run_op(node, &args, &literal(program, node));
            let tangent = outer.tangents.and_then(|_| {
                let ts: Vec<Option<&Tensor<T>>> = node
                    .children()
                    .iter()
                    .map(|&c| {
                        let c = usize::from(c);
                        if per_row[c] {
                            local_tangents[c].as_ref()
                        } else {
                            outer.tangent(c)
                        }
                    })
                    .collect();
                op_jvp(node, &args, &value, &ts, &literal(program, node))
            });
            (value, tangent)
        };
        if check_finite {
            not_finite(node, &value)?;
            if let Some(t) = &tangent {
                finite_or(t, || format!("the tangent of {node}"))?;
            }
        }
        held += bytes(&value) + tangent.as_ref().map_or(0, bytes);
        peak = peak.max(held);
        local[n] = Some(value);
        local_tangents[n] = tangent;
        for &c in frees {
            held -= local[c].take().map_or(0, |v| bytes(&v)) + local_tangents[c].take().map_or(0, |t| bytes(&t));
        }
    }
    Ok(peak)
}

/// Iteration `i`'s rows of `y`: one row (the axis dropped) for `map`, a chunk for `chunks`.
fn take<T: Scalar>(y: &Tensor<T>, body: &LoopBody, i: usize) -> Tensor<T> {
    match body.chunk {
        None => y.index_axis(Axis(0), i).to_owned(),
        Some(_) => y.slice_axis(Axis(0), Slice::from(body.range(i))).to_owned(),
    }
}

/// Writes iteration `i`'s result into its rows of `full` (adds it, for `accumulate`).
fn put<T: Scalar>(full: &mut Tensor<T>, body: &LoopBody, i: usize, value: &Tensor<T>) {
    match body.chunk {
        _ if body.sums => *full += value,
        None => full.index_axis_mut(Axis(0), i).assign(value),
        Some(_) => full.slice_axis_mut(Axis(0), Slice::from(body.range(i))).assign(value),
    }
}

/// Iteration `i`'s part of the loop's cotangent `g`: its rows, or all of it for `accumulate`.
fn part_of<T: Scalar>(g: &Tensor<T>, body: &LoopBody, i: usize) -> Tensor<T> {
    match body.sums {
        true => g.clone(),
        false => take(g, body, i),
    }
}

/// Adds `g` into iteration `i`'s rows of `full`.
fn add_into<T: Scalar>(full: &mut Tensor<T>, body: &LoopBody, i: usize, g: &Tensor<T>) {
    match body.chunk {
        None => {
            let mut row = full.index_axis_mut(Axis(0), i);
            row += g;
        }
        Some(_) => {
            let mut rows = full.slice_axis_mut(Axis(0), Slice::from(body.range(i)));
            rows += g;
        }
    }
}

/// What a forward run of one loop gives.
pub(crate) struct LoopValue<T> {
    pub value: Tensor<T>,
    pub tangent: Option<Tensor<T>>,
    /// The most bytes one row's intermediates held.
    pub row_bytes: usize,
}

/// Runs loop `m` forward (with tangents when `outer_tangent` is given).
pub(crate) fn map_forward<T: Scalar>(
    program: &Program,
    m: usize,
    body: &LoopBody,
    outer: Outer<'_, '_, T>,
    check_finite: bool,
) -> Result<LoopValue<T>> {
    let n = program.node_count();
    let root = *body.nodes.last().expect("a body has a root");
    let mut value = Tensor::<T>::zeros(IxDyn(program.shape(m.into()).dims()));
    let mut tangent: Option<Tensor<T>> = None;
    let (mut local, mut local_tangents) = (vec![None; n], vec![None; n]);
    let mut row_bytes = 0;
    for b in 0..body.iterations() {
        row_bytes = row_bytes.max(body_row(
            program,
            body,
            b,
            outer,
            &mut local,
            &mut local_tangents,
            check_finite,
            outer.tangents.is_none(),
        )?);
        put(
            &mut value,
            body,
            b,
            local[root].as_ref().expect("the root was computed"),
        );
        if let Some(t) = &local_tangents[root] {
            let full = tangent.get_or_insert_with(|| Tensor::zeros(value.raw_dim()));
            put(full, body, b, t);
        }
        for &i in &body.nodes {
            local[i] = None;
            local_tangents[i] = None;
        }
    }
    Ok(LoopValue {
        value,
        tangent,
        row_bytes,
    })
}

/// Adds `cotangent` into `slot` (or puts it there).
pub(crate) fn accumulate<T: Scalar>(slot: &mut Option<Tensor<T>>, cotangent: Tensor<T>) {
    match slot {
        Some(acc) => *acc += &cotangent,
        None => *slot = Some(cotangent),
    }
}

/// One row's backward sweep through the body (its values in `local`), from
/// `g_row` at the body's root; returns the bytes of the cotangents it made.
/// With `check_finite`, a cotangent that is not finite is an error naming
/// the op it went through, as the run without loops names it.
#[allow(clippy::too_many_arguments)]
fn row_backward<T: Scalar>(
    program: &Program,
    body: &LoopBody,
    b: usize,
    outer: Outer<'_, '_, T>,
    local: &[Option<Tensor<T>>],
    g_row: Tensor<T>,
    grads: &mut [Option<Tensor<T>>],
    check_finite: bool,
) -> Result<usize> {
    let per_row = &program.loops().per_row;
    let expr = program.expr.as_ref();
    let mut local_grads: Vec<Option<Tensor<T>>> = vec![None; program.node_count()];
    local_grads[*body.nodes.last().expect("a body has a root")] = Some(g_row);
    let mut held = 0;
    for &i in body.nodes.iter().rev() {
        let Some(gi) = local_grads[i].take() else { continue };
        let node = &expr[i];
        if let Op::Row(y) | Op::Rows([y, _]) = node {
            let y = usize::from(*y);
            let full = grads[y].get_or_insert_with(|| Tensor::zeros(IxDyn(program.shape(y.into()).dims())));
            add_into(full, body, b, &gi);
            continue;
        }
        let args: Vec<&Tensor<T>> = node
            .children()
            .iter()
            .map(|&c| arg(local, per_row, outer, usize::from(c)))
            .collect();
        let out = local[i].as_ref().expect("computed in this row");
        for (position, cotangent) in op_vjp(node, &args, out, &gi, &literal(program, node))
            .into_iter()
            .enumerate()
        {
            let child = usize::from(node.children()[position]);
            let Some(cotangent) = cotangent else { continue };
            if expr[child].as_num().is_some() {
                continue;
            }
            if check_finite {
                finite_or(&cotangent, || {
                    format!("the gradient through {node} (operand {})", position + 1)
                })?;
            }
            held += bytes(&cotangent);
            if per_row[child] {
                accumulate(&mut local_grads[child], cotangent);
            } else {
                accumulate(&mut grads[child], cotangent);
            }
        }
    }
    Ok(held)
}

/// Sweeps loop `m` backwards given its cotangent `g`, adding the cotangents
/// of the outer values it reads into `grads`: each row's body is computed
/// again, then swept back. Returns the most bytes one row held.
pub(crate) fn map_backward<T: Scalar>(
    program: &Program,
    body: &LoopBody,
    outer: Outer<'_, '_, T>,
    g: &Tensor<T>,
    grads: &mut [Option<Tensor<T>>],
    check_finite: bool,
) -> Result<usize> {
    let n = program.node_count();
    let (mut local, mut unused) = (vec![None; n], vec![None; n]);
    let mut peak = 0;
    for b in 0..body.iterations() {
        let held = body_row(program, body, b, outer, &mut local, &mut unused, false, false)?;
        let g_row = part_of(g, body, b);
        peak = peak.max(held + row_backward(program, body, b, outer, &local, g_row, grads, check_finite)?);
        for &i in &body.nodes {
            local[i] = None;
        }
    }
    Ok(peak)
}

/// Runs loop `m` forward and, row by row, backward at once, when its
/// cotangent `g` is known before its value (the loop feeds only the mean or
/// sum of the loss): no row is computed twice. Gradient accumulation.
pub(crate) fn map_forward_backward<T: Scalar>(
    program: &Program,
    m: usize,
    body: &LoopBody,
    outer: Outer<'_, '_, T>,
    g: &Tensor<T>,
    grads: &mut [Option<Tensor<T>>],
    check_finite: bool,
) -> Result<LoopValue<T>> {
    let n = program.node_count();
    let root = *body.nodes.last().expect("a body has a root");
    let mut value = Tensor::<T>::zeros(IxDyn(program.shape(m.into()).dims()));
    let (mut local, mut unused) = (vec![None; n], vec![None; n]);
    let mut row_bytes = 0;
    for b in 0..body.iterations() {
        let held = body_row(program, body, b, outer, &mut local, &mut unused, check_finite, false)?;
        put(
            &mut value,
            body,
            b,
            local[root].as_ref().expect("the root was computed"),
        );
        let g_row = part_of(g, body, b);
        row_bytes = row_bytes.max(held + row_backward(program, body, b, outer, &local, g_row, grads, check_finite)?);
        for &i in &body.nodes {
            local[i] = None;
        }
    }
    Ok(LoopValue {
        value,
        tangent: None,
        row_bytes,
    })
}
