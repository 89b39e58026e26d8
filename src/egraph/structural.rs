//! The batching rules of the structural ops, as JAX writes one per op: each
//! op's rule is in its op file (`src/ir/structural/`, `StructuralOp::batch`);
//! here the e-graph runs them. Each builds, from the per-example node under a
//! `(vmap t)` spec, one batched implementation whose batch axis is axis 0,
//! and merges it into the spec's class. Matmul's rule is here too (it is not
//! a structural op: it contracts).
//!
//! `permute`, `stack`, `broadcast` and `concat` take any number of operands,
//! which an egg pattern cannot say, so every rule here searches `(vmap ?t)`
//! and looks for its op among the nodes of `?t`'s class. Its `lhs` (what the
//! soundness checker instantiates) is the op at one arity; the checker tries
//! the others.
//!
//! No rule writes the batch size as a literal: a fused program is the same
//! text at every B, so it chunks into micro-batches and exports to ONNX with
//! a symbolic batch axis.

use crate::egraph::analysis::Graph;
use crate::egraph::appliers::{literal, union_id, var};
use crate::egraph::rule_search::RuleSearcher;
use crate::egraph::rules::Rule;
use crate::error::Result;
use crate::ir::structural::{BatchEmit, Emit, Node, Structural};
use crate::ir::{Op, Reduce, Shape};
use egg::{Applier, Id, PatternAst, Rewrite, Subst, Symbol};

const ORIGIN: &str = "a Rust applier (src/egraph/structural.rs, the op's rule in src/ir/structural/)";

/// Every structural op's rule, and matmul's.
pub fn rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = Structural::ALL
        .iter()
        .map(|&s| {
            let spec = s.batch_rule();
            under_vmap_rule(
                spec.name.into(),
                spec.identity.into(),
                spec.lhs,
                &Op::Structural(s, Box::new([])),
                Batch::Op(s),
            )
        })
        .collect();
    rules.push(under_vmap_rule(
        "matmul/batched-gemm".into(),
        "A[b] @ C[b] = squeeze(promote(A) @ promote(C))[b]: vectors made matrices, mapped ranks aligned after the batch axis, one @".into(),
        "(vmap (@ ?a ?b))",
        &Op::MatMul([Id::from(0); 2]),
        Batch::MatMul,
    ));
    rules
}

/// A rule that matches `(vmap ?t)` where `?t`'s class holds an `op` node and
/// runs `batch` on it; `lhs` is the pattern it is shown (and checked) as.
fn under_vmap_rule(name: String, comment: String, lhs: &str, op: &Op, batch: Batch) -> Rule {
    let rewrite = Rewrite::new(name.as_str(), RuleSearcher::under_vmap(op), UnderVmap(batch)).expect("a valid rewrite");
    Rule {
        name,
        comment,
        origin: ORIGIN.into(),
        lhs: lhs.parse().expect("structural patterns parse"),
        rhs: None,
        rewrite,
    }
}

/// Which rule an applier runs.
#[derive(Clone, Copy)]
enum Batch {
    Op(Structural),
    MatMul,
}

/// Runs a rule on every node of the class under a `vmap` spec.
struct UnderVmap(Batch);

impl Applier<Op, crate::egraph::ShapeAnalysis> for UnderVmap {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let nodes = egraph[subst[var("?t")]].nodes.clone();
        let mut changed = vec![];
        for node in &nodes {
            let built = match (self.0, node) {
                (Batch::Op(s), Op::Structural(op, children)) if *op == s => batch_structural(egraph, s, children),
                (Batch::MatMul, Op::MatMul([a, b])) => matmul(egraph, *a, *b),
                _ => None,
            };
            if let Some(id) = built {
                changed.extend(union_id(egraph, eclass, id, rule));
            }
        }
        changed
    }
}

/// The op file's batching rule of one node, on the e-graph.
fn batch_structural(egraph: &mut Graph, s: Structural, children: &[Id]) -> Option<Id> {
    let arrays = s.arrays_of(children.len())?;
    let ints = children[arrays..]
        .iter()
        .map(|&c| egraph[c].data.constant.map(|v| v as usize))
        .collect::<Option<Vec<_>>>()?;
    let node = Node {
        arrays: &children[..arrays],
        ints: &ints,
    };
    // Adding to an e-graph does not fail.
    s.batch(egraph, &node).ok().flatten()
}

/// The e-graph builds the op files' batched nodes.
impl Emit for Graph {
    fn add(&mut self, op: Op) -> Result<Id> {
        Ok(egg::EGraph::add(self, op))
    }
    fn shape(&self, id: Id) -> Shape {
        self[id].data.shape.clone()
    }
}

impl BatchEmit for Graph {
    fn mapped(&self, id: Id) -> bool {
        self[id].data.mapped
    }
}

fn mapped(egraph: &Graph, c: Id) -> bool {
    egraph[c].data.mapped
}

fn rank(egraph: &Graph, c: Id) -> usize {
    egraph[c].data.shape.rank()
}

fn vmap(egraph: &mut Graph, c: Id) -> Id {
    egraph.add(Op::Vmap(c))
}

fn expand(egraph: &mut Graph, value: Id, axis: usize) -> Id {
    let axis = literal(egraph, axis);
    egraph.add(Op::structural(Structural::Expand, &[value, axis]))
}

/// Sums away an axis of size 1 (a squeeze).
fn squeeze(egraph: &mut Graph, value: Id, axis: usize) -> Id {
    let axis = literal(egraph, axis);
    egraph.add(Op::ReduceAxis(Reduce::Sum, [value, axis]))
}

/// numpy matmul batched: a vector operand becomes a matrix (`[k]` as `[1, k]`
/// on the left, `[k, 1]` on the right), a mapped operand of lower rank gets
/// size-1 axes after the batch axis so that the batch axis leads the product's
/// batch axes, one `@` (a batched GEMM when both are mapped), and the promoted
/// axes are summed away.
fn matmul(egraph: &mut Graph, a: Id, b: Id) -> Option<Id> {
    let (ma, mb) = (mapped(egraph, a), mapped(egraph, b));
    let (ra, rb) = (rank(egraph, a), rank(egraph, b));
    // One mapped operand of rank <= 2 with the other of rank <= 2 has text rules (rules/batching.rules).
    let covered = ra <= 2 && rb <= 2 && ma != mb;
    if !(ma || mb) || covered || ra == 0 || rb == 0 {
        return None;
    }
    let mut left = if ma { vmap(egraph, a) } else { a };
    let mut right = if mb { vmap(egraph, b) } else { b };
    if ra == 1 {
        left = expand(egraph, left, usize::from(ma));
    }
    if rb == 1 {
        right = expand(egraph, right, 1 + usize::from(mb));
    }
    let (pa, pb) = (ra.max(2), rb.max(2));
    let r = pa.max(pb);
    for _ in pa..r {
        left = if ma { expand(egraph, left, 1) } else { left };
    }
    for _ in pb..r {
        right = if mb { expand(egraph, right, 1) } else { right };
    }
    // The product has rank r + 1: the batch axis, r - 2 more, then m and n.
    let mut product = egraph.add(Op::MatMul([left, right]));
    if rb == 1 {
        product = squeeze(egraph, product, r);
    }
    if ra == 1 {
        product = squeeze(egraph, product, r - 1);
    }
    Some(product)
}
