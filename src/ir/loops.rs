//! Loops in a program: which nodes run once per row (or chunk of rows) of a
//! loop, and which run once. A node is per-row if it depends on a `row(y)`
//! or `rows(y, k)`; the body of `map(body, n)` or `chunks(body, n, k)` is
//! every per-row node reachable from `body`, in topological order; the values
//! it reads from outside are computed once, before the loop. The checks here
//! make a loop well formed: every `row` is inside a `map` (every `rows`
//! inside a `chunks` of the same chunk size) over as many rows, a body uses
//! its rows, loops do not nest.

use crate::ir::op::{Num, Op};
use crate::ir::program::Program;
use crate::ir::reduce::Reduce;
use crate::ir::shape::{ChildInfo, Shape, ShapeError};
use crate::ir::structural::Structural;
use egg::{Id, Language, RecExpr};
use std::collections::HashMap;

/// One `map` node: its body and what the body reads from outside.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopBody {
    /// The per-row nodes of the body, children before parents; the last is the body's root.
    pub nodes: Vec<usize>,
    /// The nodes outside the loop that the body reads (each once).
    pub outer: Vec<usize>,
    /// How many rows the loop covers.
    pub rows: usize,
    /// `None` for `map` (one row at a time), `Some(k)` for `chunks` or `accumulate` of `k` rows.
    pub chunk: Option<usize>,
    /// Whether the iterations' results are summed into one (`accumulate`), not stacked.
    pub sums: bool,
}

impl LoopBody {
    /// How many times the body runs.
    pub fn iterations(&self) -> usize {
        match self.chunk {
            None => self.rows,
            Some(k) => self.rows.div_ceil(k),
        }
    }

    /// For each position of [`LoopBody::nodes`], the body values last read
    /// there (each once; the root is read by the loop, never freed): what a
    /// run that holds only the live values frees after computing that node.
    pub fn last_reads(&self, expr: &[Op]) -> Vec<Vec<usize>> {
        let mut last = std::collections::HashMap::new();
        for (j, &n) in self.nodes.iter().enumerate() {
            for &c in expr[n].children() {
                let c = usize::from(c);
                if self.nodes.binary_search(&c).is_ok() {
                    last.insert(c, j);
                }
            }
        }
        let mut frees = vec![vec![]; self.nodes.len()];
        for (c, j) in last {
            frees[j].push(c);
        }
        for f in &mut frees {
            f.sort_unstable();
        }
        frees
    }

    /// The rows that iteration `i` covers.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        match self.chunk {
            None => i..i + 1,
            Some(k) => i * k..((i + 1) * k).min(self.rows),
        }
    }
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
                runs[n] = runs[n].saturating_add(body.iterations());
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
    find_loops_located(expr, shapes).map_err(|(_, e)| e)
}

/// [`find_loops`], an error with the index of the node it is about (the
/// loop, or the `row` read outside one), so the parser can point at it.
pub fn find_loops_located(expr: &[Op], shapes: &[Shape]) -> Result<Loops, (usize, ShapeError)> {
    let mut per_row = vec![false; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        if let Op::Row(y) | Op::Rows([y, _]) = node {
            if per_row[usize::from(*y)] {
                return Err((
                    i,
                    loop_error(format!("{node}: loops do not nest (rows of a value computed per row)")),
                ));
            }
        }
        if let Some(body) = node.loop_body() {
            if !per_row[usize::from(body)] {
                return Err((
                    i,
                    loop_error(format!(
                        "{node}: the body does not read row(...) or rows(...), so every row would be the same"
                    )),
                ));
            }
        }
        per_row[i] = node.is_per_row(|c| per_row[usize::from(c)]);
    }
    let mut bodies = vec![None; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        let Some(body) = node.loop_body().map(usize::from) else {
            continue;
        };
        let (chunk, rows, sums) = match node {
            Op::Accumulate([_, n, k]) => {
                let literal = |c: &Id| expr[usize::from(*c)].as_num().map_or(0, |x| x as usize);
                (Some(literal(k)), literal(n), true)
            }
            Op::Chunks(_) => (Some(shapes[body].dims()[0]), shapes[i].dims()[0], false),
            _ => (None, shapes[i].dims()[0], false),
        };
        let mut found = loop_body(expr, shapes, &per_row, body, rows, chunk).map_err(|e| (i, e))?;
        found.sums = sums;
        check_last_chunk(expr, shapes, &found, &expr[i]).map_err(|e| (i, e))?;
        bodies[i] = Some(found);
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
    chunk: Option<usize>,
) -> Result<LoopBody, ShapeError> {
    let mut seen = vec![false; root + 1];
    let mut outer_seen = vec![false; root + 1];
    let mut stack = vec![root];
    seen[root] = true;
    let (mut nodes, mut outer) = (vec![], vec![]);
    while let Some(n) = stack.pop() {
        nodes.push(n);
        let read = match (&expr[n], chunk) {
            (Op::Row(y), None) => Some(y),
            (Op::Rows([y, _]), Some(k)) if shapes[n].dims().first() == Some(&k) => Some(y),
            (Op::Row(_) | Op::Rows(_), _) => {
                let what = chunk.map_or("a map".to_string(), |k| format!("chunks of {k}"));
                return Err(loop_error(format!("{}: does not belong in {what}", expr[n])));
            }
            // Every other op reads no rows itself (a match for two ops, not a dispatch over all).
            _ => None,
        };
        if let Some(y) = read.map(|&y| usize::from(y)) {
            if shapes[y].dims().first() != Some(&rows) {
                return Err(loop_error(format!(
                    "{}: a loop over {rows} rows reads a value of shape {}",
                    expr[n], shapes[y]
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
    Ok(LoopBody {
        nodes,
        outer,
        rows,
        chunk,
        sums: false,
    })
}

/// A chunk body is checked at `k` rows; the last chunk may be smaller, so
/// its shapes are inferred again at that size: a body that only works at `k`
/// rows (an outer value of `k` rows broadcast against the chunk, the chunk
/// axis moved) is an error here, not a failure at run time.
fn check_last_chunk(expr: &[Op], shapes: &[Shape], body: &LoopBody, node: &Op) -> Result<(), ShapeError> {
    let Some((last, last_shapes)) = shapes_in_last_chunk(expr, shapes, body, node)? else {
        return Ok(());
    };
    let root = body.nodes.last().expect("a body has its root");
    if body.sums {
        // Every chunk's result is added into one accumulator: all must have its shape.
        if last_shapes[root] != shapes[*root] {
            return Err(loop_error(format!(
                "{node}: the body's result has shape {} for the last chunk, of {last} rows, and {} for the others: \
                 accumulate adds them, so they must be equal",
                last_shapes[root], shapes[*root]
            )));
        }
        return Ok(());
    }
    if last_shapes[root].dims().first() != Some(&last) {
        return Err(loop_error(format!(
            "{node}: the body's result has shape {} for the last chunk, of {last} rows: its leading axis must be the chunk's rows",
            last_shapes[root]
        )));
    }
    Ok(())
}

/// The rows of a loop's shorter last chunk and the shape of each body node there.
type LastChunk = (usize, HashMap<usize, Shape>);

/// The shape of each body node in the last chunk of `body`'s loop (`node`),
/// with its number of rows; `None` when every chunk has `k` rows.
fn shapes_in_last_chunk(
    expr: &[Op],
    shapes: &[Shape],
    body: &LoopBody,
    node: &Op,
) -> Result<Option<LastChunk>, ShapeError> {
    let Some(k) = body.chunk else { return Ok(None) };
    let last = body.rows - k * (body.iterations() - 1);
    if last == k {
        return Ok(None);
    }
    let mut last_shapes: HashMap<usize, Shape> = Default::default();
    for &n in &body.nodes {
        let shape = if let Op::Rows([y, _]) = &expr[n] {
            Ok(Shape(shapes[usize::from(*y)].dims()[1..].to_vec()).with_leading(last))
        } else {
            expr[n].infer_shape_from(|c| ChildInfo {
                shape: last_shapes.get(&usize::from(c)).unwrap_or(&shapes[usize::from(c)]),
                constant: expr[usize::from(c)].as_num(),
            })
        };
        let shape = shape.map_err(|e| {
            loop_error(format!(
                "{node}: the body does not fit the last chunk, of {last} rows: {e}"
            ))
        })?;
        last_shapes.insert(n, shape);
    }
    Ok(Some((last, last_shapes)))
}

/// For each node of a loop over chunks whose last chunk is shorter, its shape
/// in that chunk when it differs from its shape in the others (`None` for
/// every other node): a value the same for every chunk (a cotangent
/// broadcast from outside the loop) must be cut to it there.
pub fn last_chunk_shapes(program: &Program) -> Vec<Option<Shape>> {
    let (expr, shapes) = (program.expr.as_ref(), program.shapes());
    let mut out = vec![None; expr.len()];
    for (i, body) in program.loops().bodies.iter().enumerate() {
        let Some(body) = body else { continue };
        if let Ok(Some((_, last))) = shapes_in_last_chunk(expr, shapes, body, &expr[i]) {
            for (n, shape) in last {
                if shape != shapes[n] {
                    out[n] = Some(shape);
                }
            }
        }
    }
    out
}

/// No value outside a loop may read a per-row value, except through `map`.
fn check_rows_inside_maps(expr: &[Op], per_row: &[bool]) -> Result<(), (usize, ShapeError)> {
    for (i, node) in expr.iter().enumerate() {
        if per_row[i] || node.loop_body().is_some() {
            continue;
        }
        if node.children().iter().any(|&c| per_row[usize::from(c)]) {
            return Err((i, loop_error(format!("{node}: reads a row(...) outside of map"))));
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
        if body.chunk.is_some() {
            return Err(loop_error("chunks: only map loops are written out".into()));
        }
        let mut rows = Vec::with_capacity(body.rows);
        for b in 0..body.rows {
            let row = push(Op::Num(Num(b as f64)), &mut out);
            for &n in &body.nodes {
                let copy = match &expr[n] {
                    Op::Row(y) => Op::structural(Structural::Index, &[placed[usize::from(*y)].expect("placed"), row]),
                    other => other.clone().map_children(|c| {
                        let c = usize::from(c);
                        if loops.per_row[c] { local[c] } else { placed[c] }.expect("placed")
                    }),
                };
                local[n] = Some(push(copy, &mut out));
            }
            rows.push(local[*body.nodes.last().expect("a body has a root")].expect("placed"));
        }
        placed[i] = Some(push(Op::Structural(Structural::Stack, rows.into()), &mut out));
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

/// What the main sweep (outside loops) computes before node `i`: for a loop,
/// the outer values its body reads; for a per-row node, nothing (it runs
/// inside its loop); for any other node, its children.
pub fn main_children(program: &Program, i: usize) -> Vec<usize> {
    let loops = program.loops();
    if loops.per_row[i] {
        return vec![];
    }
    match &loops.bodies[i] {
        Some(body) => body.outer.clone(),
        None => program.expr[i.into()]
            .children()
            .iter()
            .map(|&c| usize::from(c))
            .collect(),
    }
}

/// How many times the main sweep reads each node; an output counts once more.
pub fn main_uses(program: &Program) -> Vec<usize> {
    let mut uses = vec![0; program.node_count()];
    for i in 0..program.node_count() {
        for c in main_children(program, i) {
            uses[c] += 1;
        }
    }
    for (_, id) in &program.outputs {
        uses[usize::from(*id)] += 1;
    }
    uses
}

/// A loop whose cotangent is known before it runs, so that a gradient can
/// run its forward and backward sweeps together, row by row: the program's
/// one output is the mean or sum over axis 0 of the loop's rows, and nothing
/// else reads them (`uses`: how many times the main sweep reads each node).
/// Returns the loop, the output node and the weight of each row (1/n or 1).
pub fn early_loop(program: &Program, uses: &[usize]) -> Option<(usize, usize, f64)> {
    let [(_, root)] = program.outputs.as_slice() else {
        return None;
    };
    let root = usize::from(*root);
    let Op::ReduceAxis(reduce, [looped, axis]) = &program.expr[root.into()] else {
        return None;
    };
    let looped = usize::from(*looped);
    let weight = match reduce {
        Reduce::Mean => 1.0 / program.shape(looped.into()).dims()[0] as f64,
        Reduce::Sum => 1.0,
        Reduce::Max | Reduce::Min => return None,
    };
    let is_loop = program.loops().bodies[looped].is_some();
    (program.literal(*axis) == Some(0.0) && is_loop && uses[looped] == 1).then_some((looped, root, weight))
}
