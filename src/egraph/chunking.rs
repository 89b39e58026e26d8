//! Micro-batches: the fused plan run over chunks of `k` rows at a time
//! (JAX's `lax.map(f, xs, batch_size=k)`, torch.func's `vmap(chunk_size=k)`).
//! Built from the extracted fused program, not in the e-graph, so that its
//! size does not depend on B or k.
//!
//! A value of the fused program is *per-row* when row `i` of it depends only
//! on row `i` of the batched inputs (elementwise ops, a matmul with a shared
//! matrix, a reduction or `expand` past the batch axis, ...; decided
//! conservatively, op by op): those run inside `chunks(body, n, k)`, which
//! reads `rows(x, k)`. What reads across the rows (the mean over the batch,
//! the contraction `transpose(d) @ x` of a weight gradient) runs outside, on
//! the per-row values the loops concatenate. A per-row value computed only
//! from such concatenated values (and no batched input) runs outside too,
//! rather than in a loop of its own.

use crate::error::{Error, Result};
use crate::ir::{Num, Op, Program, Structural};
use egg::{Id, Language, RecExpr};
use std::collections::HashSet;

/// The fused program `fused` (over a batch of `rows`) with its per-row values computed in chunks of `k` rows.
pub fn chunk_plan(fused: &Program, batched: &HashSet<&str>, k: usize) -> Result<Program> {
    let expr = fused.expr.as_ref();
    let refuse = |why: &str| Error::Unsupported(format!("chunks of {k}: {why}"));
    if fused.loops().any() {
        return Err(refuse("the fused plan already loops (an op without a fusing rule)"));
    }
    let rows = fused
        .inputs
        .iter()
        .find(|d| batched.contains(d.name.as_str()))
        .map(|d| d.shape.dims().first().copied());
    let rows = rows.ok_or_else(|| refuse("no batched input"))?;
    let rows = rows.ok_or_else(|| refuse("a batched input is a scalar: it has no rows"))?;
    if k == 0 || k >= rows {
        return Err(refuse(&format!(
            "a chunk must have between 1 and {} rows",
            rows.saturating_sub(1)
        )));
    }
    let kinds = Kinds::of(fused, batched);
    let (inside, outside) = kinds.needed(fused);
    if !(0..expr.len()).any(|i| kinds.looped(i) && outside[i]) {
        return Err(refuse("no per-row value to compute in chunks"));
    }
    let mut out: Vec<Op> = Vec::with_capacity(expr.len() * 2);
    let push = |op: Op, out: &mut Vec<Op>| {
        out.push(op);
        Id::from(out.len() - 1)
    };
    let k_literal = push(Op::Num(Num(k as f64)), &mut out);
    let rows_literal = push(Op::Num(Num(rows as f64)), &mut out);
    // Each node's value outside the loops, and its value per chunk.
    let mut whole: Vec<Option<Id>> = vec![None; expr.len()];
    let mut chunked: Vec<Option<Id>> = vec![None; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        if !kinds.depends[i] || (node.as_var().is_some() && (outside[i] || inside[i])) {
            whole[i] = Some(push(
                node.clone().map_children(|c| whole[usize::from(c)].expect("placed")),
                &mut out,
            ));
        }
        if inside[i] {
            let op = match node.as_var() {
                Some(_) => Op::Rows([whole[i].expect("placed"), k_literal]),
                None => node.clone().map_children(|c| {
                    let c = usize::from(c);
                    if kinds.depends[c] { chunked[c] } else { whole[c] }.expect("placed")
                }),
            };
            chunked[i] = Some(push(op, &mut out));
        }
        if outside[i] && kinds.depends[i] && node.as_var().is_none() {
            let op = match kinds.looped(i) {
                true => Op::Chunks([chunked[i].expect("placed"), rows_literal, k_literal]),
                false => node.clone().map_children(|c| whole[usize::from(c)].expect("placed")),
            };
            whole[i] = Some(push(op, &mut out));
        }
    }
    let outputs = fused
        .outputs
        .iter()
        .map(|(name, root)| (name.clone(), whole[usize::from(*root)].expect("placed")))
        .collect();
    Ok(Program::new(
        fused.inputs.clone(),
        fused.params.clone(),
        RecExpr::from(out),
        outputs,
        vec![],
    )?)
}

/// What each node of the fused program is, for chunking.
struct Kinds {
    /// It depends on a batched input.
    depends: Vec<bool>,
    /// Per-row, and read by something that is not (or an output): its rows are concatenated.
    frontier: Vec<bool>,
    /// Per-row, and computed from a batched input through per-row values that are not on the frontier.
    reads_input: Vec<bool>,
    /// A batched input.
    input: Vec<bool>,
}

impl Kinds {
    fn of(fused: &Program, batched: &HashSet<&str>) -> Kinds {
        let expr = fused.expr.as_ref();
        let mut depends = vec![false; expr.len()];
        for (i, node) in expr.iter().enumerate() {
            depends[i] = node.as_var().is_some_and(|v| batched.contains(v.as_str()))
                || node.children().iter().any(|&c| depends[usize::from(c)]);
        }
        // A per-row value read across its rows is concatenated by a loop,
        // which stacks chunks along axis 0: one whose rows lie along another
        // axis is computed outside instead (with what it reads), until none is.
        let mut outside_only = vec![false; expr.len()];
        loop {
            let mut axis: Vec<Option<usize>> = vec![None; expr.len()];
            for (i, node) in expr.iter().enumerate() {
                if depends[i] && !outside_only[i] {
                    axis[i] = rows_axis(fused, node, &depends, &axis);
                }
            }
            let mut frontier = vec![false; expr.len()];
            for (i, node) in expr.iter().enumerate() {
                if depends[i] && axis[i].is_none() {
                    for &c in node.children() {
                        frontier[usize::from(c)] |= axis[usize::from(c)].is_some();
                    }
                }
            }
            for (_, root) in &fused.outputs {
                frontier[usize::from(*root)] |= axis[usize::from(*root)].is_some();
            }
            let misplaced: Vec<usize> = (0..expr.len()).filter(|&i| frontier[i] && axis[i] != Some(0)).collect();
            if misplaced.is_empty() {
                let per_row: Vec<bool> = axis.iter().map(Option::is_some).collect();
                return Kinds::from_frontier(expr, depends, &per_row, frontier);
            }
            for i in misplaced {
                outside_only[i] = true;
            }
        }
    }

    fn from_frontier(expr: &[Op], depends: Vec<bool>, per_row: &[bool], frontier: Vec<bool>) -> Kinds {
        let mut reads_input = vec![false; expr.len()];
        for (i, node) in expr.iter().enumerate() {
            reads_input[i] = per_row[i]
                && (node.as_var().is_some()
                    || node.children().iter().any(|&c| {
                        let c = usize::from(c);
                        reads_input[c] && (!frontier[c] || expr[c].as_var().is_some())
                    }));
        }
        let input = expr.iter().map(|n| n.as_var().is_some()).collect();
        Kinds {
            input,
            depends,
            frontier,
            reads_input,
        }
    }

    /// Whether node `i` is computed in a `chunks` loop whose rows are concatenated
    /// (a batched input is read as it is).
    fn looped(&self, i: usize) -> bool {
        self.frontier[i] && self.reads_input[i] && !self.input[i]
    }

    /// Which nodes are needed per chunk (inside a loop), and which whole (outside).
    fn needed(&self, fused: &Program) -> (Vec<bool>, Vec<bool>) {
        let expr = fused.expr.as_ref();
        let mut inside = vec![false; expr.len()];
        let mut outside = vec![false; expr.len()];
        for (_, root) in &fused.outputs {
            outside[usize::from(*root)] = true;
        }
        for i in (0..expr.len()).rev() {
            if outside[i] && self.looped(i) {
                inside[i] = true;
            } else if outside[i] {
                for &c in expr[i].children() {
                    outside[usize::from(c)] = true;
                }
            }
            if inside[i] {
                for &c in expr[i].children() {
                    let c = usize::from(c);
                    match self.depends[c] {
                        true => inside[c] = true,
                        false => outside[c] = true,
                    }
                }
            }
        }
        (inside, outside)
    }
}

/// The axis of `node`'s value along which the rows of the batch lie, when
/// row `i` of the batch there depends only on row `i` of the batched inputs
/// (`None`: it reads across the rows, or it is not known to keep them apart).
/// `axis` holds the same for the nodes before it.
fn rows_axis(program: &Program, node: &Op, depends: &[bool], axis: &[Option<usize>]) -> Option<usize> {
    let rank = |c: Id| program.shape(c).rank();
    let at = |c: Id| axis[usize::from(c)];
    let shared = |c: Id| !depends[usize::from(c)];
    let int = |c: Id| program.literal(c).map(|x| x as usize);
    match node {
        Op::Var(_) => Some(0),
        Op::Unary(_, a) => at(*a),
        Op::Binary(_, [a, b]) => {
            let r = rank(*a).max(rank(*b));
            let mut found = None;
            for &c in [a, b] {
                if !shared(c) {
                    let t = at(c)? + (r - rank(c));
                    if found.is_some_and(|f| f != t) {
                        return None;
                    }
                    found = Some(t);
                }
            }
            let t = found?;
            // A shared operand broadcasts along the rows (size 1 there, or no such axis).
            let broadcasts = |c: Id| match (t + rank(c)).checked_sub(r) {
                Some(p) => program.shape(c).dims()[p] == 1,
                None => true,
            };
            [*a, *b].iter().all(|&c| !shared(c) || broadcasts(c)).then_some(t)
        }
        Op::ReduceAxis(_, [a, k]) => {
            let (t, k) = (at(*a)?, int(*k)?);
            match k.cmp(&t) {
                std::cmp::Ordering::Equal => None,
                std::cmp::Ordering::Less => Some(t - 1),
                std::cmp::Ordering::Greater => Some(t),
            }
        }
        Op::MatMul([a, b]) => {
            let (ra, rb) = (rank(*a), rank(*b));
            match (shared(*a), shared(*b)) {
                // The rows of the left operand: its row axis, or a batch axis against a shared matrix.
                (false, true) if ra >= 2 && at(*a)? == ra - 2 => Some(if rb == 1 { ra - 2 } else { ra.max(rb) - 2 }),
                (false, true) if ra >= 2 && at(*a)? < ra - 2 && rb <= 2 => at(*a),
                // The columns of the right operand, or a batch axis against a shared matrix.
                (true, false) if rb >= 2 && at(*b)? == rb - 1 => Some(if ra == 1 { rb - 2 } else { ra.max(rb) - 1 }),
                (true, false) if rb >= 2 && at(*b)? < rb - 2 && ra <= 2 => at(*b),
                (false, false) if ra >= 3 && ra == rb && at(*a)? == at(*b)? && at(*a)? < ra - 2 => at(*a),
                _ => None,
            }
        }
        Op::Structural(s, children) => structural_rows_axis(program, *s, children, depends, axis),
        Op::Reduce(..) | Op::Map(_) | Op::Row(_) | Op::Chunks(_) | Op::Rows(_) | Op::Vmap(_) | Op::Num(_) => None,
    }
}

/// [`rows_axis`] for a structural op.
fn structural_rows_axis(
    program: &Program,
    op: Structural,
    children: &[Id],
    depends: &[bool],
    axis: &[Option<usize>],
) -> Option<usize> {
    let int = |c: Id| program.literal(c).map(|x| x as usize);
    let node = Op::Structural(op, children.into());
    let operands = |integer: bool| -> Vec<Id> {
        (0..children.len())
            .filter(|&p| node.integer_operand(p) == integer)
            .map(|p| children[p])
            .collect()
    };
    let (ints, arrays) = (operands(true), operands(false));
    // Every array operand per-row along the same axis (a shared one would have to have the batch's rows).
    let common = || {
        let axes: Vec<Option<usize>> = arrays
            .iter()
            .map(|&c| axis[usize::from(c)].filter(|_| depends[usize::from(c)]))
            .collect();
        let first = axes.first().copied().flatten()?;
        axes.iter().all(|&a| a == Some(first)).then_some(first)
    };
    let t = common()?;
    match op {
        Structural::Transpose => Some(program.shape(arrays[0]).rank() - 1 - t),
        Structural::Permute => ints.iter().position(|&c| int(c) == Some(t)),
        Structural::Expand => Some(if int(ints[0])? <= t { t + 1 } else { t }),
        Structural::Index => t.checked_sub(1),
        Structural::Stack | Structural::Repeat => Some(t + 1),
        Structural::Slice | Structural::Pad | Structural::Concat => (int(ints[0])? != t).then_some(t),
        // The axes before the first reshaped one stay as they are.
        Structural::Reshape => (t < int(ints[0])?).then_some(t),
        // Broadcasting to a shape fixed in the program fixes the number of rows.
        Structural::Broadcast => None,
    }
}

/// The chunk sizes worth trying for a batch of `rows`: powers of two and the divisors of `rows`, below it.
pub fn chunk_sizes(rows: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..usize::BITS)
        .map(|p| 1usize << p)
        .take_while(|&k| k < rows)
        .collect();
    let mut d = 1;
    while d * d <= rows && sizes.len() < 128 {
        if rows.is_multiple_of(d) {
            sizes.extend([d, rows / d].into_iter().filter(|&k| k < rows));
        }
        d += 1;
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}
