//! Loops in a program: which nodes run once per row of a `map` (its body)
//! and which run once. A node is per-row if it depends on a `row(y)`; the
//! body of `map(body, n)` is every per-row node reachable from `body`, in
//! topological order; the values it reads from outside are computed once,
//! before the loop. The checks here make a loop well formed: every `row` is
//! inside a `map` of as many rows, a body uses a row, loops do not nest.

use crate::ir::op::{Num, Op};
use crate::ir::program::Program;
use crate::ir::shape::{Shape, ShapeError};
use egg::{Id, Language, RecExpr};

/// One `map` node: its body and what the body reads from outside.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopBody {
    /// The per-row nodes of the body, children before parents; the last is the body's root.
    pub nodes: Vec<usize>,
    /// The nodes outside the loop that the body reads (each once).
    pub outer: Vec<usize>,
    /// How many rows (iterations).
    pub rows: usize,
}

/// The loops of a program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loops {
    /// Whether each node runs once per row of its loop.
    pub per_row: Vec<bool>,
    /// The body of each `map` node, by node index (empty for other nodes).
    pub bodies: Vec<Option<LoopBody>>,
}

impl Loops {
    /// How many times each node runs: once, or once per row of each loop whose body holds it.
    pub fn runs(&self) -> Vec<usize> {
        let mut runs: Vec<usize> = self.per_row.iter().map(|&p| usize::from(!p)).collect();
        for body in self.bodies.iter().flatten() {
            for &n in &body.nodes {
                runs[n] = runs[n].saturating_add(body.rows);
            }
        }
        runs
    }

    /// Whether the program has any loop.
    pub fn any(&self) -> bool {
        self.bodies.iter().any(Option::is_some)
    }
}

fn loop_error(reason: String) -> ShapeError {
    ShapeError::Loop { reason }
}

/// Finds and checks the loops of `expr` (whose node shapes are `shapes`).
pub fn find_loops(expr: &[Op], shapes: &[Shape]) -> Result<Loops, ShapeError> {
    let mut per_row = vec![false; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        per_row[i] = match node {
            Op::Row(y) => {
                if per_row[usize::from(*y)] {
                    return Err(loop_error(
                        "row: loops do not nest (row of a value computed per row)".into(),
                    ));
                }
                true
            }
            Op::Map([body, _]) => {
                if !per_row[usize::from(*body)] {
                    return Err(loop_error(
                        "map: the body does not use row(...), so every row would be the same".into(),
                    ));
                }
                false
            }
            Op::Unary(..)
            | Op::Binary(..)
            | Op::Reduce(..)
            | Op::ReduceAxis(..)
            | Op::MatMul(_)
            | Op::Transpose(_)
            | Op::Permute(_)
            | Op::Expand(_)
            | Op::Index(_)
            | Op::Stack(_)
            | Op::Repeat(_)
            | Op::Vmap(_)
            | Op::Num(_)
            | Op::Var(_) => node.children().iter().any(|&c| per_row[usize::from(c)]),
        };
    }
    let mut bodies = vec![None; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        if let Op::Map([body, _]) = node {
            bodies[i] = Some(loop_body(
                expr,
                shapes,
                &per_row,
                usize::from(*body),
                shapes[i].dims()[0],
            )?);
        }
    }
    check_rows_inside_maps(expr, &per_row)?;
    Ok(Loops { per_row, bodies })
}

/// The per-row nodes reachable from `root` (children first) and the outer values they read.
fn loop_body(
    expr: &[Op],
    shapes: &[Shape],
    per_row: &[bool],
    root: usize,
    rows: usize,
) -> Result<LoopBody, ShapeError> {
    let mut seen = vec![false; root + 1];
    let mut outer_seen = vec![false; root + 1];
    let mut stack = vec![root];
    seen[root] = true;
    let (mut nodes, mut outer) = (vec![], vec![]);
    while let Some(n) = stack.pop() {
        nodes.push(n);
        if let Op::Row(y) = &expr[n] {
            let y = usize::from(*y);
            if shapes[y].dims().first() != Some(&rows) {
                return Err(loop_error(format!(
                    "row: a map of {rows} rows reads a row of a value of shape {}",
                    shapes[y]
                )));
            }
        }
        for &c in expr[n].children() {
            let c = usize::from(c);
            if per_row[c] && !seen[c] {
                seen[c] = true;
                stack.push(c);
            } else if !per_row[c] && !outer_seen[c] {
                outer_seen[c] = true;
                outer.push(c);
            }
        }
    }
    nodes.sort_unstable();
    outer.sort_unstable();
    Ok(LoopBody { nodes, outer, rows })
}

/// No value outside a loop may read a per-row value, except through `map`.
fn check_rows_inside_maps(expr: &[Op], per_row: &[bool]) -> Result<(), ShapeError> {
    for (i, node) in expr.iter().enumerate() {
        if per_row[i] || matches!(node, Op::Map(_)) {
            continue;
        }
        if node.children().iter().any(|&c| per_row[usize::from(c)]) {
            return Err(loop_error(format!("{node}: reads a row(...) outside of map")));
        }
    }
    Ok(())
}

/// The program with every loop written out: `map(body, n)` becomes
/// `stack(body_0, ..., body_{n-1})`, where copy `body_b` reads `index(y, b)`
/// for `row(y)`. The pictures of the duplicated plan are drawn from this
/// form. Refused when the copies would pass `max_nodes`.
pub fn expand_loops(program: &Program, max_nodes: usize) -> Result<Program, ShapeError> {
    let (loops, expr) = (program.loops(), program.expr.as_ref());
    let copies = loops.bodies.iter().flatten().fold(expr.len(), |total, body| {
        total.saturating_add(body.nodes.len().saturating_mul(body.rows))
    });
    if copies > max_nodes {
        return Err(ShapeError::TooLarge {
            op: "map".into(),
            reason: format!("writing the loops out would take {copies} nodes, more than {max_nodes}"),
        });
    }
    let mut out: Vec<Op> = Vec::with_capacity(copies);
    let push = |op: Op, out: &mut Vec<Op>| {
        out.push(op);
        Id::from(out.len() - 1)
    };
    let mut placed: Vec<Option<Id>> = vec![None; expr.len()];
    let mut local: Vec<Option<Id>> = vec![None; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        if loops.per_row[i] {
            continue;
        }
        let Some(body) = &loops.bodies[i] else {
            placed[i] = Some(push(
                node.clone().map_children(|c| placed[usize::from(c)].expect("placed")),
                &mut out,
            ));
            continue;
        };
        let mut rows = Vec::with_capacity(body.rows);
        for b in 0..body.rows {
            let row = push(Op::Num(Num(b as f64)), &mut out);
            for &n in &body.nodes {
                let copy = match &expr[n] {
                    Op::Row(y) => Op::Index([placed[usize::from(*y)].expect("placed"), row]),
                    other => other.clone().map_children(|c| {
                        let c = usize::from(c);
                        if loops.per_row[c] { local[c] } else { placed[c] }.expect("placed")
                    }),
                };
                local[n] = Some(push(copy, &mut out));
            }
            rows.push(local[*body.nodes.last().expect("a body has a root")].expect("placed"));
        }
        placed[i] = Some(push(Op::Stack(rows.into()), &mut out));
    }
    let outputs = program
        .outputs
        .iter()
        .map(|(name, id)| (name.clone(), placed[usize::from(*id)].expect("outputs are not per row")))
        .collect();
    Program::new(
        program.inputs.clone(),
        program.params.clone(),
        RecExpr::from(out),
        outputs,
        vec![],
    )
}
