//! The duplicated plan, written directly: every output's per-example value
//! computed in a loop over the rows (`map(t, B)`), each batched input read a
//! row at a time (`row(x)`), then reduced over the batch as asked.
//!
//! This is what greedy extraction returns from the e-graph of the loop plan
//! (the per-example program with a spec and a loop for every mapped subterm,
//! no rewriting): no class there offers a choice but a batched input, which
//! is read whole. Building and extracting that e-graph was a seventh of
//! batching a long program, for a result known up front.
//! `tests/batching.rs::the_loop_plan_is_the_loop_plans_extraction` checks
//! the two agree.

use crate::ir::{extract_dag, BatchReduce, Binary, Num, Op, Program, Reduce, Structural};
use egg::{Id, Language, RecExpr};
use rustc_hash::FxHashMap;
use std::collections::HashSet;

/// The loop plan of `program` over the inputs `batched` at batch size
/// `size`: its nodes, and each output's node (in the program's order of
/// outputs). Nodes are shared as the e-graph would share them.
pub(crate) fn loop_plan(
    program: &Program,
    batched: &HashSet<&str>,
    size: usize,
    reduce: BatchReduce,
) -> (RecExpr<Op>, Vec<Id>) {
    let mut nodes = Nodes::default();
    let expr = program.expr.as_ref();
    // Per node of the per-example program: its node here, and whether it
    // depends on a batched input (then its batch is a loop over it; a
    // batched input's batch is the input itself).
    let mut example: Vec<Id> = Vec::with_capacity(expr.len());
    let mut inputs: Vec<Option<Id>> = Vec::with_capacity(expr.len());
    let mut mapped: Vec<bool> = Vec::with_capacity(expr.len());
    for node in expr {
        let input = node.as_var().is_some_and(|v| batched.contains(v.as_str()));
        mapped.push(input || node.children().iter().any(|&c| mapped[usize::from(c)]));
        if input {
            let whole = nodes.add(node.clone());
            example.push(nodes.add(Op::Row(whole)));
            inputs.push(Some(whole));
        } else {
            example.push(nodes.add(node.clone().map_children(|c| example[usize::from(c)])));
            inputs.push(None);
        }
    }
    let rows = nodes.add(Op::Num(Num(size as f64)));
    let zero = nodes.add(Op::Num(Num(0.0)));
    let roots: Vec<Id> = program
        .outputs
        .iter()
        .map(|(_, id)| {
            let i = usize::from(*id);
            let batch = |nodes: &mut Nodes| inputs[i].unwrap_or_else(|| nodes.add(Op::Map([example[i], rows])));
            match (mapped[i], reduce) {
                (true, BatchReduce::Mean) => {
                    let s = batch(&mut nodes);
                    nodes.add(Op::ReduceAxis(Reduce::Mean, [s, zero]))
                }
                (true, BatchReduce::Sum) => {
                    let s = batch(&mut nodes);
                    nodes.add(Op::ReduceAxis(Reduce::Sum, [s, zero]))
                }
                (true, BatchReduce::None) => batch(&mut nodes),
                (false, BatchReduce::Mean) => example[i],
                (false, BatchReduce::Sum) => nodes.add(Op::Binary(Binary::Mul, [example[i], rows])),
                (false, BatchReduce::None) => nodes.add(Op::structural(Structural::Repeat, &[example[i], rows])),
            }
        })
        .collect();
    // Placed as extraction places them: depth first from the roots, only what they read.
    let (expr, placed) = extract_dag(&roots, |c| nodes.nodes[usize::from(c)].clone(), |c| c);
    (expr, roots.iter().map(|r| placed[r]).collect())
}

/// Nodes added once each (hash-consed), children before parents.
#[derive(Default)]
struct Nodes {
    nodes: Vec<Op>,
    seen: FxHashMap<Op, Id>,
}

impl Nodes {
    fn add(&mut self, node: Op) -> Id {
        if let Some(&id) = self.seen.get(&node) {
            return id;
        }
        let id = Id::from(self.nodes.len());
        self.nodes.push(node.clone());
        self.seen.insert(node, id);
        id
    }
}
