//! The memory model: the peak bytes of values the interpreter will hold when
//! it runs a program, predicted from shapes alone, by replaying the
//! interpreter's own policy (here, below the runtime, so that the batcher can
//! price a plan's memory without running it). Forward only (`Run::Eval`): a value lives from
//! where it is computed to its last use. Forward and backward (`Run::Grad`):
//! every value outside loops is kept for the backward sweep, and cotangents
//! come and go as the sweep walks back. A loop holds one row's (or chunk's)
//! intermediates at a time, in both sweeps: that is what micro-batches buy.
//! The values inside a fused chain of elementwise ops are never held
//! ([`Schedule`]), and the backward sweep frees each value once every reader
//! of it has been swept back.

use crate::ir::schedule::Schedule;
use crate::ir::{early_loop, main_uses, LoopBody, Op, Program, Run, Shape};
use egg::Language;

fn size(shape: &Shape, element: usize) -> usize {
    shape.elements().saturating_mul(element)
}

/// The shape a body node has in the largest iteration (a loop's first).
fn row_shape(program: &Program, n: usize) -> &Shape {
    program.shape(n.into())
}

/// Bytes one row of a loop holds at most running forward: each body value
/// from when it is computed to its last read in the body (a loop carrying
/// many sums has many values, few of them live at once).
fn body_forward_bytes(program: &Program, body: &LoopBody, element: usize) -> usize {
    let (mut held, mut peak) = (0usize, 0usize);
    for (&n, frees) in body.nodes.iter().zip(body.last_reads(program.expr.as_ref())) {
        held += size(row_shape(program, n), element);
        peak = peak.max(held);
        for c in frees {
            held -= size(row_shape(program, c), element);
        }
    }
    peak
}

/// Bytes of every body value at once (what a row holds before its backward sweep).
fn body_all_bytes(program: &Program, body: &LoopBody, element: usize) -> usize {
    body.nodes.iter().map(|&n| size(row_shape(program, n), element)).sum()
}

/// Bytes one row of a loop holds running backward: its values and every cotangent made in it.
fn body_backward_bytes(program: &Program, body: &LoopBody, element: usize) -> usize {
    let expr = program.expr.as_ref();
    let in_body = |n: usize| body.nodes.binary_search(&n).is_ok();
    let mut wanted = vec![false; expr.len()];
    let root = *body.nodes.last().expect("a body has a root");
    wanted[root] = true;
    let mut held = body_all_bytes(program, body, element);
    for &n in body.nodes.iter().rev() {
        if !wanted[n] || matches!(expr[n], Op::Row(_) | Op::Rows(_)) {
            continue;
        }
        for &c in expr[n].children() {
            let c = usize::from(c);
            if expr[c].as_num().is_some() {
                continue;
            }
            // A cotangent has its value's shape: a row's for a body value, the whole value's for an outer one.
            held += size(program.shape(c.into()), element);
            if in_body(c) {
                wanted[c] = true;
            }
        }
    }
    held
}

/// The predicted peak bytes of running `program` (`element` bytes per number: 8 for f64).
pub fn predict_peak_bytes(program: &Program, run: Run, element: usize) -> usize {
    let expr = program.expr.as_ref();
    let loops = program.loops();
    let bytes = |i: usize| size(program.shape(i.into()), element);
    let mut remaining = main_uses(program);
    let schedule = Schedule::new(program, true);
    let early = match run {
        Run::Grad => early_loop(program, &remaining),
        Run::Eval => None,
    };
    let (mut live, mut peak) = (0usize, 0usize);
    for i in (0..expr.len()).filter(|&i| !loops.per_row[i] && !schedule.is_interior(i)) {
        if let Some(body) = &loops.bodies[i] {
            let row = if early.is_some_and(|(l, _, _)| l == i) {
                // The cotangents of the outer values it reads are made, and
                // kept for the backward sweep, as its rows are swept back.
                live += early_outer_grads(program, body).map(bytes).sum::<usize>();
                body_backward_bytes(program, body, element)
            } else {
                body_forward_bytes(program, body, element)
            };
            peak = peak.max(live + row + bytes(i));
        }
        live += bytes(i);
        peak = peak.max(live);
        if run == Run::Eval {
            for &c in schedule.children(i) {
                remaining[c] -= 1;
                if remaining[c] == 0 {
                    live -= bytes(c);
                }
            }
        }
    }
    if run == Run::Eval {
        return peak;
    }
    backward_peak(program, &schedule, element, early.map(|(l, root, _)| (l, root))).max(peak)
}

/// The outer values that the early loop's row-by-row backward sweep gives a
/// cotangent, before the backward sweep of the rest begins.
fn early_outer_grads<'a>(program: &'a Program, body: &'a LoopBody) -> impl Iterator<Item = usize> + 'a {
    let expr = program.expr.as_ref();
    body.outer
        .iter()
        .copied()
        .filter(move |&c| expr[c].as_num().is_none() && reaches_outer(program, body, c))
}

/// The backward sweep's peak, replaying `Interpreter::gradient`.
fn backward_peak(program: &Program, schedule: &Schedule, element: usize, early: Option<(usize, usize)>) -> usize {
    let expr = program.expr.as_ref();
    let loops = program.loops();
    let bytes = |i: usize| size(program.shape(i.into()), element);
    let Some((_, root)) = program.outputs.first() else {
        return 0;
    };
    let held = |i: usize| !loops.per_row[i] && !schedule.is_interior(i);
    let mut live: usize = (0..expr.len()).filter(|&i| held(i)).map(bytes).sum();
    let mut peak = live;
    let mut has_grad = vec![false; expr.len()];
    has_grad[usize::from(*root)] = true;
    // The output's own cotangent, the seed.
    live += bytes(usize::from(*root));
    // The early loop's cotangents of outer values: held from the start, and
    // swept back from there like any other.
    if let Some(body) = early.and_then(|(l, _)| loops.bodies[l].as_ref()) {
        for c in early_outer_grads(program, body) {
            has_grad[c] = true;
            live += bytes(c);
        }
    }
    peak = peak.max(live);
    let early_root = early.map(|(_, root)| root);
    for i in (0..expr.len()).rev() {
        if expr[i].as_var().is_some() || !held(i) || !has_grad[i] {
            continue;
        }
        if early_root == Some(i) {
            // The loop under it swept itself backwards during the forward pass.
            live = live.saturating_sub(bytes(i));
            continue;
        }
        if let Some(body) = &loops.bodies[i] {
            peak = peak.max(live + body_backward_bytes(program, body, element));
            for &c in &body.outer {
                if expr[c].as_num().is_none() && !has_grad[c] && reaches_outer(program, body, c) {
                    has_grad[c] = true;
                    live += bytes(c);
                }
            }
        } else {
            for &c in schedule.children(i) {
                if expr[c].as_num().is_none() && !has_grad[c] {
                    has_grad[c] = true;
                    live += bytes(c);
                }
            }
            // The value itself is freed once its cotangent has been swept back.
            peak = peak.max(live);
            live = live.saturating_sub(bytes(i));
        }
        peak = peak.max(live);
        live = live.saturating_sub(bytes(i));
    }
    peak
}

/// Whether the loop's backward sweep gives outer value `c` a cotangent: some
/// body node that gets one reads it.
fn reaches_outer(program: &Program, body: &LoopBody, c: usize) -> bool {
    let expr = program.expr.as_ref();
    body.nodes
        .iter()
        .any(|&n| expr[n].children().iter().any(|&k| usize::from(k) == c))
}
