//! The symbolic batch axis of `--dynamic-batch`, and the check that the
//! program is valid for every batch size.
//!
//! A batched program does not say which of its axes is the batch; the caller
//! does ([`DynamicBatch::inputs`]: their leading axis is `B`). From there every
//! node's shape is inferred again with `B` kept as a symbol ([`Dim::Batch`]).
//! The program is refused, naming the op, wherever a result would depend on
//! the value of `B` rather than carry it:
//!
//! - `index` into an axis that is `B` (a row of the batch: the duplicated plan);
//! - `stack`, broadcasting or a matmul contraction that meets `B` with a fixed
//!   size other than 1 (a fixed size that only matches `B` by coincidence);
//! - an output that should carry `B` and does not (with `--reduce none`, an
//!   output that does not depend on the batched inputs is `repeat(y, B)`), or
//!   that carries it and should not (`--reduce mean|sum`);
//! - with `--reduce sum`, an output that does not depend on the batched inputs
//!   (the batcher writes it as `y * B`, a literal).
//!
//! As an independent cross-check, the shapes are also inferred concretely
//! (the ordinary shape rules) at two other batch sizes and must agree with
//! the symbolic ones there.

use super::DynamicBatch;
use crate::error::{Error, Result};
use crate::ir::structural::{Extent, Problem};
use crate::ir::{infer_shapes, BatchReduce, Num, Op, Program, Shape, Structural};
use egg::{Id, Language, RecExpr, Symbol};

/// One dimension of an exported shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// The symbolic batch size `B`.
    Batch,
}

impl Extent for Dim {
    fn fixed(n: usize) -> Dim {
        Dim::Fixed(n)
    }
    fn size(self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(n),
            Dim::Batch => None,
        }
    }
}

/// `shape` with its leading axis the batch axis.
pub fn leading_b(shape: &Shape) -> Vec<Dim> {
    let mut dims: Vec<Dim> = shape.dims().iter().map(|&d| Dim::Fixed(d)).collect();
    if let Some(first) = dims.first_mut() {
        *first = Dim::Batch;
    }
    dims
}

/// The refusal of `op` (or output) for a symbolic batch axis.
fn refuse(op: impl ToString, message: String) -> Error {
    Error::ExportUnsupported {
        op: op.to_string(),
        dtype: None,
        reason: format!(
            "--dynamic-batch: {message}; the program depends on the batch size, so export it without --dynamic-batch (one file per batch size)"
        ),
    }
}

/// The symbolic dimensions of every node, or an error naming what depends on `B`.
pub fn batch_dims(program: &Program, dynamic: &DynamicBatch) -> Result<Vec<Vec<Dim>>> {
    let size = batch_size(program, dynamic)?;
    let mut dims: Vec<Vec<Dim>> = Vec::with_capacity(program.expr.len());
    for (i, node) in program.expr.as_ref().iter().enumerate() {
        let d = node_dims(program, dynamic, node, &dims, size).map_err(|e| name_the_copied_op(program, i, e))?;
        dims.push(d);
    }
    for other in [size + 1, size + 2] {
        cross_check(program, dynamic, &dims, other)?;
    }
    check_outputs(program, dynamic, &dims)?;
    Ok(dims)
}

/// The batch size the program was batched at: the common leading size of the batched inputs.
fn batch_size(program: &Program, dynamic: &DynamicBatch) -> Result<usize> {
    let mut size = None;
    if dynamic.inputs.is_empty() {
        return Err(Error::Unsupported(
            "--dynamic-batch: no input is batched (the program has no `input`), so there is no batch axis".into(),
        ));
    }
    for name in &dynamic.inputs {
        let decl =
            program.inputs.iter().find(|d| &d.name == name).ok_or_else(|| {
                Error::Unsupported(format!("--dynamic-batch: `{name}` is not an input of the program"))
            })?;
        let Some(&lead) = decl.shape.dims().first() else {
            return Err(Error::Unsupported(format!(
                "--dynamic-batch: input `{name}` is a scalar, so it has no batch axis (the program is not batched)"
            )));
        };
        match size {
            Some(b) if b != lead => {
                return Err(Error::Unsupported(format!(
                    "--dynamic-batch: the batched inputs disagree on the batch size ({b} and {lead} for `{name}`)"
                )))
            }
            _ => size = Some(lead),
        }
    }
    Ok(size.expect("at least one batched input"))
}

fn literal(program: &Program, id: Id) -> usize {
    program.literal(id).expect("shape inference checked integer operands") as usize
}

/// The dims of one node from its children's (`dims`); `size` is the concrete B.
fn node_dims(program: &Program, dynamic: &DynamicBatch, node: &Op, dims: &[Vec<Dim>], size: usize) -> Result<Vec<Dim>> {
    let child = |k: usize| dims[usize::from(node.children()[k])].clone();
    let int = |k: usize| literal(program, node.children()[k]);
    Ok(match node {
        Op::Var(v) => var_dims(program, dynamic, *v),
        Op::Num(_) | Op::Reduce(..) => vec![],
        Op::Unary(..) => child(0),
        Op::Binary(..) => broadcast(node, &child(0), &child(1), size)?,
        Op::ReduceAxis(..) => {
            let mut d = child(0);
            d.remove(int(1));
            d
        }
        Op::MatMul(_) => matmul(node, child(0), child(1), size)?,
        Op::Structural(s, children) => {
            let arrays = s.arrays_of(children.len()).expect("shape inference checked the arity");
            let ints: Vec<usize> = (arrays..children.len()).map(int).collect();
            let operands: Vec<Vec<Dim>> = (0..arrays).map(child).collect();
            let views: Vec<&[Dim]> = operands.iter().map(Vec::as_slice).collect();
            s.shape(&ints, &views)
                .map_err(|problem| refuse_structural(*s, &ints, &operands, problem))?
        }
        Op::Vmap(_) => return Err(super::ops::vmap_refused()),
        Op::Row(_) => child(0)[1..].to_vec(),
        Op::Map([body, _]) => {
            // As many rows as the value its body takes rows of (the ONNX Loop reads that count).
            let mut d = vec![dims[usize::from(map_rows_of(program, node))][0]];
            d.extend(dims[usize::from(*body)].iter().copied());
            d
        }
        Op::Chunks(_) | Op::Rows(_) | Op::Accumulate(_) => return Err(super::ops::loop_refused(node)),
    })
}

/// Why a structural op's result depends on the value of `B`: its shape rule
/// needed the size of the batch axis, or met it with a fixed size.
fn refuse_structural(s: Structural, ints: &[usize], operands: &[Vec<Dim>], problem: Problem) -> Error {
    let call = format!("{s}(_{})", ints.iter().map(|k| format!(", {k}")).collect::<String>());
    refuse(
        s,
        match problem {
            Problem::Symbolic { .. } if s == Structural::Index => format!("`{call}` takes one row of the batch axis"),
            Problem::Symbolic { axis } => format!("`{call}` needs the size of axis {axis}, which is the batch axis B"),
            Problem::Differ { operand, .. } => format!(
                "`{s}` of {} operands meets the batch axis B with a fixed size ({} and {})",
                operands.len(),
                show(&operands[0]),
                show(&operands[operand])
            ),
            other => format!("`{call}` does not fit its operands ({other:?})"),
        },
    )
}

/// Adds to the refusal of an `index` at node `i` the op that reads that row:
/// the op the batcher copied once per example (the plan chose a loop for it).
fn name_the_copied_op(program: &Program, i: usize, error: Error) -> Error {
    let nodes = program.expr.as_ref();
    let reader = nodes.iter().find(|n| n.children().contains(&Id::from(i)));
    match (&nodes[i], reader, error) {
        (Op::Structural(Structural::Index, _), Some(reader), Error::ExportUnsupported { op, dtype, reason }) => {
            let (before, after) = reason.split_once("; ").unwrap_or((&reason, ""));
            Error::ExportUnsupported {
                op,
                dtype,
                reason: format!(
                    "{before} for `{reader}`, which the batcher copied once per example (a loop in the plan); {after}"
                ),
            }
        }
        (_, _, error) => error,
    }
}

/// The value whose rows a `map`'s body reads (`y` of its `row(y)`).
fn map_rows_of(program: &Program, map: &Op) -> Id {
    let index = program
        .expr
        .as_ref()
        .iter()
        .position(|n| n == map)
        .expect("the map is a node");
    let body = program.loops().bodies[index].as_ref().expect("a map has a body");
    let rows_of = body.nodes.iter().find_map(|&n| match program.expr[Id::from(n)] {
        Op::Row(y) => Some(y),
        _ => None,
    });
    rows_of.expect("a map's body reads a row")
}

/// The program's nodes with the row count of every `map` over the batch axis set to `other`.
fn with_map_counts(program: &Program, dims: &[Vec<Dim>], other: usize) -> (RecExpr<Op>, Vec<Id>) {
    let (mut expr, mut new_id) = (RecExpr::default(), Vec::with_capacity(program.expr.len()));
    for (i, node) in program.expr.as_ref().iter().enumerate() {
        let mut node = node.clone().map_children(|c| new_id[usize::from(c)]);
        if let Op::Map([body, _]) = node {
            if dims[i][0] == Dim::Batch {
                node = Op::Map([body, expr.add(Op::Num(Num(other as f64)))]);
            }
        }
        new_id.push(expr.add(node));
    }
    (expr, new_id)
}

fn var_dims(program: &Program, dynamic: &DynamicBatch, v: Symbol) -> Vec<Dim> {
    let shape = &program.var_shapes()[&v];
    if dynamic.inputs.iter().any(|i| i.as_str() == v.as_str()) {
        leading_b(shape)
    } else {
        shape.dims().iter().map(|&d| Dim::Fixed(d)).collect()
    }
}

/// Two dims that must be one: equal, or (when `broadcasting`) one of them a fixed 1.
fn unify(node: &Op, a: Dim, b: Dim, broadcasting: bool, size: usize) -> Result<Dim> {
    match (a, b) {
        _ if a == b => Ok(a),
        (Dim::Fixed(1), other) | (other, Dim::Fixed(1)) if broadcasting => Ok(other),
        (Dim::Batch, Dim::Fixed(n)) | (Dim::Fixed(n), Dim::Batch) => Err(refuse(
            node,
            format!(
                "`{node}` meets the batch axis B with a fixed size {n}{}",
                if n == size {
                    " (equal to B only at this batch size)"
                } else {
                    ""
                }
            ),
        )),
        (Dim::Fixed(x), Dim::Fixed(y)) => Err(Error::Internal(format!(
            "--dynamic-batch: `{node}`: sizes {x} and {y} do not match in a program whose shapes were checked"
        ))),
        (Dim::Batch, Dim::Batch) => unreachable!("equal dims are handled first"),
    }
}

/// numpy broadcasting of two symbolic shapes.
fn broadcast(node: &Op, a: &[Dim], b: &[Dim], size: usize) -> Result<Vec<Dim>> {
    let rank = a.len().max(b.len());
    let at = |d: &[Dim], i: usize| (i + d.len()).checked_sub(rank).map_or(Dim::Fixed(1), |k| d[k]);
    (0..rank).map(|i| unify(node, at(a, i), at(b, i), true, size)).collect()
}

/// numpy matmul of two symbolic shapes (vectors promoted, leading axes broadcast).
fn matmul(node: &Op, a: Vec<Dim>, b: Vec<Dim>, size: usize) -> Result<Vec<Dim>> {
    let (a_vector, b_vector) = (a.len() == 1, b.len() == 1);
    let a = if a_vector { vec![Dim::Fixed(1), a[0]] } else { a };
    let b = if b_vector { vec![b[0], Dim::Fixed(1)] } else { b };
    let (ra, rb) = (a.len(), b.len());
    unify(node, a[ra - 1], b[rb - 2], false, size)?;
    let mut out = broadcast(node, &a[..ra - 2], &b[..rb - 2], size)?;
    if !a_vector {
        out.push(a[ra - 2]);
    }
    if !b_vector {
        out.push(b[rb - 1]);
    }
    Ok(out)
}

fn show(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Batch => "B".into(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The ordinary shape rules at batch size `other` must give the symbolic shapes at `other`.
fn cross_check(program: &Program, dynamic: &DynamicBatch, dims: &[Vec<Dim>], other: usize) -> Result<()> {
    let mut vars = program.var_shapes();
    for name in &dynamic.inputs {
        let shape = vars.get_mut(&Symbol::from(name)).expect("checked to be an input");
        shape.0[0] = other;
    }
    let (expr, new_id) = with_map_counts(program, dims, other);
    let shapes =
        infer_shapes(&expr, &vars).map_err(|e| refuse("--dynamic-batch", format!("at batch size {other}: {e}")))?;
    for (i, d) in dims.iter().enumerate() {
        let shape = &shapes[usize::from(new_id[i])];
        let expected: Vec<usize> = d
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Batch => other,
            })
            .collect();
        if shape.dims() != expected {
            return Err(refuse(
                &program.expr[Id::from(i)],
                format!(
                    "`{}` has shape {shape} at batch size {other}, not {}",
                    program.expr[Id::from(i)],
                    show(d)
                ),
            ));
        }
    }
    Ok(())
}

/// Outputs carry `B` exactly when the batch is not reduced, and `--reduce sum`
/// has no output that the batcher multiplied by the literal `B`.
fn check_outputs(program: &Program, dynamic: &DynamicBatch, dims: &[Vec<Dim>]) -> Result<()> {
    let depends = depends_on_batch(program, dynamic);
    for (name, id) in &program.outputs {
        let d = &dims[usize::from(*id)];
        let stacked = dynamic.reduce == BatchReduce::None;
        if stacked && d.first() != Some(&Dim::Batch) {
            return Err(refuse(format!("output {name}"), format!(
                "output `{name}` has shape {} but with --reduce none its leading axis must be B (an output that does not depend on the batched inputs is repeated B times)",
                show(d)
            )));
        }
        if !stacked && d.contains(&Dim::Batch) {
            return Err(refuse(
                format!("output {name}"),
                format!("output `{name}` has shape {} although the batch is reduced", show(d)),
            ));
        }
        if dynamic.reduce == BatchReduce::Sum && !depends[usize::from(*id)] {
            return Err(refuse(format!("output {name}"), format!(
                "output `{name}` does not depend on the batched inputs, so its sum over the batch is written as a multiple of the literal B"
            )));
        }
    }
    Ok(())
}

/// Which nodes read a batched input.
fn depends_on_batch(program: &Program, dynamic: &DynamicBatch) -> Vec<bool> {
    let mut depends: Vec<bool> = Vec::with_capacity(program.expr.len());
    for node in program.expr.as_ref() {
        let own = node
            .as_var()
            .is_some_and(|v| dynamic.inputs.iter().any(|i| i.as_str() == v.as_str()));
        let d = own || node.children().iter().any(|&c| depends[usize::from(c)]);
        depends.push(d);
    }
    depends
}
