//! A program with `map` loops made loop-free, so that a batched program of
//! any plan can be batched again. `map(body, n)` is by definition the stack
//! over the n rows of `body` run with `row(y)` reading row i of `y`: the batch
//! of `body` over its rows, which is what the batcher computes when each
//! `row(y)` is a per-example input whose batched value is `y`. So each body
//! becomes a program of its own (its `row(y)` inputs, the outer values it
//! reads as params), is batched with the fused rules over its n rows, and
//! the result takes the loop's place.

use crate::egraph::batch::{Batcher, Strategy};
use crate::egraph::rules::RuleSet;
use crate::error::{Error, Result};
use crate::ir::{BatchReduce, Decl, LoopBody, Op, Program};
use egg::{Id, Language, RecExpr, Symbol};
use std::collections::HashMap;

/// `program` with every `map` loop replaced by its body batched with the fused rules.
pub fn fuse_loops(program: &Program, rules: &RuleSet) -> Result<Program> {
    let loops = program.loops();
    let mut out: Vec<Op> = vec![];
    let mut placed: Vec<Option<Id>> = vec![None; program.node_count()];
    for (i, node) in program.expr.as_ref().iter().enumerate() {
        if loops.per_row[i] {
            continue;
        }
        placed[i] = Some(match &loops.bodies[i] {
            Some(body) => {
                let fused = fused_body(program, body, rules)?;
                splice(&fused, &placed, &mut out)
            }
            None => push(
                node.clone().map_children(|c| placed[usize::from(c)].expect("placed")),
                &mut out,
            ),
        });
    }
    let outputs = program
        .outputs
        .iter()
        .map(|(name, id)| (name.clone(), placed[usize::from(*id)].expect("outputs are not per row")))
        .collect();
    Ok(Program::new(
        program.inputs.clone(),
        program.params.clone(),
        RecExpr::from(out),
        outputs,
        vec![],
    )?)
}

fn push(op: Op, out: &mut Vec<Op>) -> Id {
    out.push(op);
    Id::from(out.len() - 1)
}

/// The name, in a body's own program, of the row of outer node `y` (an input) or of outer node `c` (a param).
fn row_name(y: usize) -> String {
    format!("row{y}")
}
fn outer_name(c: usize) -> String {
    format!("outer{c}")
}

/// The loop's body as a program of its own, batched over its rows with the fused rules.
fn fused_body(program: &Program, body: &LoopBody, rules: &RuleSet) -> Result<Program> {
    if body.chunk.is_some() {
        return Err(Error::Unsupported(
            "batching a program with a `chunks` or `accumulate` loop is not supported: batch the program before chunking it".into(),
        ));
    }
    let expr = program.expr.as_ref();
    let (mut inputs, mut params) = (vec![], vec![]);
    let mut nodes: Vec<Op> = vec![];
    let mut local: HashMap<usize, Id> = HashMap::new();
    for &c in &body.outer {
        // Literals stay literals: axes and counts must be.
        let node = match &expr[c] {
            Op::Num(n) => Op::Num(*n),
            _ => {
                params.push(Decl {
                    name: outer_name(c),
                    shape: program.shape(c.into()).clone(),
                });
                Op::Var(Symbol::from(outer_name(c)))
            }
        };
        local.insert(c, push(node, &mut nodes));
    }
    for &n in &body.nodes {
        let node = match &expr[n] {
            Op::Row(y) => {
                let y = usize::from(*y);
                let name = row_name(y);
                if !inputs.iter().any(|d: &Decl| d.name == name) {
                    let dims = program.shape(y.into()).dims()[1..].to_vec();
                    inputs.push(Decl {
                        name: name.clone(),
                        shape: dims.into(),
                    });
                }
                Op::Var(Symbol::from(name))
            }
            other => other.clone().map_children(|c| local[&usize::from(c)]),
        };
        local.insert(n, push(node, &mut nodes));
    }
    let root = local[body.nodes.last().expect("a body has a root")];
    let over: Vec<String> = inputs.iter().map(|d| d.name.clone()).collect();
    let standalone = Program::new(
        inputs,
        params,
        RecExpr::from(nodes),
        vec![("body".into(), root)],
        vec![],
    )?;
    let batched = Batcher::new(&standalone)
        .over(over)
        .size(body.rows)
        .strategy(Strategy::Fuse)
        .reduce(BatchReduce::None)
        .rules(rules.clone())
        .run()?;
    if let Some(op) = batched.report.unfused_ops.first() {
        return Err(Error::Unsupported(format!(
            "a loop's body has `{op}`, which no rule fuses: its loop cannot be batched again"
        )));
    }
    Ok(batched.program)
}

/// Adds the fused body's nodes to `out`, reading the outer values where they
/// were placed (`row{y}` is `y` itself: the batch of its rows); returns its output.
fn splice(fused: &Program, placed: &[Option<Id>], out: &mut Vec<Op>) -> Id {
    let outer = |name: &str, prefix: &str| name.strip_prefix(prefix).and_then(|i| i.parse::<usize>().ok());
    let mut here: Vec<Id> = Vec::with_capacity(fused.node_count());
    for node in fused.expr.as_ref() {
        let id = match node.as_var() {
            Some(v) => {
                let name = v.as_str();
                let c = outer(name, "row")
                    .or_else(|| outer(name, "outer"))
                    .expect("a body's own variable");
                placed[c].expect("outer values come first")
            }
            None => push(node.clone().map_children(|c| here[usize::from(c)]), out),
        };
        here.push(id);
    }
    here[usize::from(fused.outputs[0].1)]
}
