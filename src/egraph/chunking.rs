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
//!
//! Gradient accumulation: a sum over the rows of per-row values (`sum(v, t)`
//! along their row axis `t`, `sum(v)`, their means, and the contraction
//! `a @ b` of a value with rows along its columns by one with rows along its
//! rows) is the sum over the chunks of the same op on each chunk, so it runs
//! as `accumulate(op(chunk), n, k)` (divided by the count, for a mean): one
//! accumulator of the result's shape, and no concatenated rows, so the values
//! held do not grow with `n / k` (the last chunk may be shorter). The sums
//! that do not read each other then run in one loop ([`one_loop`]): each
//! chunk's values are computed once and every sum (the loss, each parameter's
//! gradient) is added into its part of one accumulator.

use crate::error::{Error, Result};
use crate::ir::{one_loop, Binary, Num, Op, Program, Reduce, Structural};
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
    if !(0..expr.len()).any(|i| (kinds.looped(i) || kinds.summed[i]) && outside[i]) {
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
                // A mean over the rows is summed per chunk, divided once at the end
                // (a mean along another axis stays one).
                None if kinds.summed[i] => as_sum(node).map_children(|c| {
                    let c = usize::from(c);
                    if kinds.depends[c] { chunked[c] } else { whole[c] }.expect("placed")
                }),
                None => node.clone().map_children(|c| {
                    let c = usize::from(c);
                    if kinds.depends[c] { chunked[c] } else { whole[c] }.expect("placed")
                }),
            };
            chunked[i] = Some(push(op, &mut out));
        }
        if outside[i] && kinds.depends[i] && node.as_var().is_none() {
            whole[i] = Some(if kinds.looped(i) {
                push(
                    Op::Chunks([chunked[i].expect("placed"), rows_literal, k_literal]),
                    &mut out,
                )
            } else if kinds.summed[i] {
                let sum = push(
                    Op::Accumulate([chunked[i].expect("placed"), rows_literal, k_literal]),
                    &mut out,
                );
                match mean_count(fused, node) {
                    Some(count) => {
                        let count = push(Op::Num(Num(count as f64)), &mut out);
                        push(Op::Binary(Binary::Div, [sum, count]), &mut out)
                    }
                    None => sum,
                }
            } else {
                push(
                    node.clone().map_children(|c| whole[usize::from(c)].expect("placed")),
                    &mut out,
                )
            });
        }
    }
    let outputs = fused
        .outputs
        .iter()
        .map(|(name, root)| (name.clone(), whole[usize::from(*root)].expect("placed")))
        .collect();
    let chunked = Program::new(
        fused.inputs.clone(),
        fused.params.clone(),
        RecExpr::from(out),
        outputs,
        vec![],
    )?;
    // Every sum over the same chunks in one loop: a chunk's values computed once.
    Ok(one_loop(&chunked)?)
}

/// The op with a mean over the rows made a sum (the mean divides after accumulating).
fn as_sum(node: &Op) -> Op {
    match node {
        Op::Reduce(Reduce::Mean, a) => Op::Reduce(Reduce::Sum, *a),
        Op::ReduceAxis(Reduce::Mean, children) => Op::ReduceAxis(Reduce::Sum, *children),
        other => other.clone(),
    }
}

/// How many elements a mean averages (`None` for any other op).
fn mean_count(program: &Program, node: &Op) -> Option<usize> {
    match node {
        Op::Reduce(Reduce::Mean, a) => Some(program.shape(*a).elements()),
        Op::ReduceAxis(Reduce::Mean, [a, k]) => {
            let axis = program.literal(*k)? as usize;
            Some(program.shape(*a).dims()[axis])
        }
        _ => None,
    }
}

/// Whether `node` (not per-row itself) sums its per-row operands over their
/// rows, so that it is the sum over the chunks of itself on each chunk: a sum
/// or mean over the row axis (or over everything), or the contraction of a
/// matrix with rows along its columns by one with rows along its rows.
fn sums_rows(program: &Program, node: &Op, depends: &[bool], axis: &[Option<usize>]) -> bool {
    let at = |c: &Id| axis[usize::from(*c)].filter(|_| depends[usize::from(*c)]);
    let linear = |r: &Reduce| matches!(r, Reduce::Sum | Reduce::Mean);
    match node {
        Op::Reduce(r, a) => linear(r) && at(a).is_some(),
        Op::ReduceAxis(r, [a, k]) => linear(r) && at(a).is_some() && at(a) == program.literal(*k).map(|x| x as usize),
        Op::MatMul([a, b]) => {
            let rank2 = program.shape(*a).rank() == 2 && program.shape(*b).rank() == 2;
            rank2 && at(a) == Some(1) && at(b) == Some(0)
        }
        _ => false,
    }
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
    /// Not per-row: a sum over the rows of per-row values, accumulated over the chunks.
    summed: Vec<bool>,
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
            let summed: Vec<bool> = expr
                .iter()
                .enumerate()
                .map(|(i, node)| depends[i] && axis[i].is_none() && sums_rows(fused, node, &depends, &axis))
                .collect();
            let mut frontier = vec![false; expr.len()];
            for (i, node) in expr.iter().enumerate() {
                // An accumulated sum reads its operands chunk by chunk: they need not be concatenated.
                if depends[i] && axis[i].is_none() && !summed[i] {
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
                return Kinds::from_frontier(expr, depends, &per_row, frontier, summed);
            }
            for i in misplaced {
                outside_only[i] = true;
            }
        }
    }

    fn from_frontier(
        expr: &[Op],
        depends: Vec<bool>,
        per_row: &[bool],
        frontier: Vec<bool>,
        summed: Vec<bool>,
    ) -> Kinds {
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
            summed,
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
            if outside[i] && (self.looped(i) || self.summed[i]) {
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
        Op::Reduce(..)
        | Op::Map(_)
        | Op::Row(_)
        | Op::Chunks(_)
        | Op::Rows(_)
        | Op::Accumulate(_)
        | Op::Vmap(_)
        | Op::Num(_) => None,
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
