//! The bespoke batching rules of the structural ops, as JAX writes one per op
//! (`transpose`, `permute`, `index`, `stack`, `repeat`, `broadcast`, matmul),
//! at every rank and for mapped and unmapped operands alike. Each builds, from
//! the per-example node under a `(vmap t)` spec, one batched implementation
//! whose batch axis is axis 0, and merges it into the spec's class.
//!
//! `permute`, `stack` and `broadcast` take any number of operands, which an
//! egg pattern cannot say, so every rule here searches `(vmap ?t)` and looks
//! for its op among the nodes of `?t`'s class. Its `lhs` (what the soundness
//! checker instantiates) is the op at one arity; the checker tries the others.
//!
//! No rule writes the batch size as a literal: a fused program is the same
//! text at every B, so it chunks into micro-batches and exports to ONNX with
//! a symbolic batch axis.

use crate::egraph::analysis::{Graph, ShapeAnalysis};
use crate::egraph::appliers::{literal, rule, union_id, var};
use crate::egraph::rules::Rule;
use crate::ir::{Binary, Op, Reduce, Unary};
use egg::{Applier, Id, PatternAst, Subst, Symbol};

const ORIGIN: &str = "a Rust applier (src/egraph/structural.rs)";

/// Builds the batched implementation of one per-example node, or `None` if
/// the node is not of the rule's op or the rule does not cover it.
type Build = fn(&mut Graph, &Op) -> Option<Id>;

/// Every structural rule.
pub fn rules() -> Vec<Rule> {
    let table: [(&str, &str, &str, Build); 7] = [
        (
            "move-axes/transpose",
            "transpose(A[b]) = permute(A, 0, r, r - 1, ..., 1)[b] for A[b] of rank r >= 3",
            "(vmap (transpose ?a))",
            transpose,
        ),
        (
            "move-axes/permute",
            "permute(A[b], k0, k1, ...) = permute(A, 0, k0 + 1, k1 + 1, ...)[b]",
            "(vmap (permute ?a ?k0 ?k1))",
            permute,
        ),
        (
            "index/second-axis",
            "index(A[b], i) = index(permute(A, 1, 0, 2, ...), i)[b]",
            "(vmap (index ?a ?i))",
            index,
        ),
        (
            "stack/second-axis",
            "stack(A0[b], p, ...) = permute(stack(A0, P, ...), 1, 0, 2, ...)[b], P the batch of p * (step(A0) * 0 + 1) for p unmapped",
            "(vmap (stack ?a ?b))",
            stack,
        ),
        (
            "repeat/second-axis",
            "repeat(A[b], n) = permute(repeat(A, n), 1, 0, 2, ...)[b]",
            "(vmap (repeat ?a ?n))",
            repeat,
        ),
        (
            "broadcast/times-ones",
            "broadcast(A[b], d...) = (A[b] * broadcast(1, d...)), batched by the broadcasting rules",
            "(vmap (broadcast ?a ?d0 ?d1))",
            broadcast,
        ),
        (
            "matmul/batched-gemm",
            "A[b] @ C[b] = squeeze(promote(A) @ promote(C))[b]: vectors made matrices, mapped ranks aligned after the batch axis, one @",
            "(vmap (@ ?a ?b))",
            matmul,
        ),
    ];
    table
        .into_iter()
        .map(|(name, comment, lhs, build)| {
            let mut rule = rule(name.into(), comment.into(), "(vmap ?t)", UnderVmap(build));
            rule.lhs = lhs.parse().expect("structural patterns parse");
            rule.origin = ORIGIN.into();
            rule
        })
        .collect()
}

/// Runs a [`Build`] on every node of the class under a `vmap` spec.
struct UnderVmap(Build);

impl Applier<Op, ShapeAnalysis> for UnderVmap {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        _: Symbol,
    ) -> Vec<Id> {
        let nodes = egraph[subst[var("?t")]].nodes.clone();
        let mut changed = vec![];
        for node in &nodes {
            if let Some(id) = (self.0)(egraph, node) {
                changed.extend(union_id(egraph, eclass, id));
            }
        }
        changed
    }
}

fn mapped(egraph: &Graph, c: Id) -> bool {
    egraph[c].data.mapped
}

fn rank(egraph: &Graph, c: Id) -> usize {
    egraph[c].data.shape.rank()
}

/// The integer literals of `ids`, or `None` if one is not a literal.
fn integers(egraph: &Graph, ids: &[Id]) -> Option<Vec<usize>> {
    ids.iter()
        .map(|&c| egraph[c].data.constant.map(|v| v as usize))
        .collect()
}

fn vmap(egraph: &mut Graph, c: Id) -> Id {
    egraph.add(Op::Vmap(c))
}

fn expand(egraph: &mut Graph, value: Id, axis: usize) -> Id {
    let axis = literal(egraph, axis);
    egraph.add(Op::Expand([value, axis]))
}

/// Sums away an axis of size 1 (a squeeze).
fn squeeze(egraph: &mut Graph, value: Id, axis: usize) -> Id {
    let axis = literal(egraph, axis);
    egraph.add(Op::ReduceAxis(Reduce::Sum, [value, axis]))
}

/// `op(value, n0, n1, ...)` for `permute` and `broadcast`, whose operands after the first are literals.
fn with_literals(
    egraph: &mut Graph,
    value: Id,
    numbers: impl IntoIterator<Item = usize>,
    op: fn(Box<[Id]>) -> Op,
) -> Id {
    let mut children = vec![value];
    children.extend(numbers.into_iter().map(|n| literal(egraph, n)));
    egraph.add(op(children.into()))
}

/// `permute(value, 1, 0, 2, ..., rank - 1)`: swaps the two leading axes of a value of `rank`.
fn swap_leading(egraph: &mut Graph, value: Id, rank: usize) -> Id {
    with_literals(egraph, value, [1, 0].into_iter().chain(2..rank), Op::Permute)
}

fn transpose(egraph: &mut Graph, node: &Op) -> Option<Id> {
    let Op::Transpose(a) = *node else { return None };
    let r = rank(egraph, a);
    // Ranks 0-2 have text rules (rules/batching.rules).
    if !mapped(egraph, a) || r < 3 {
        return None;
    }
    let batched = vmap(egraph, a);
    Some(with_literals(
        egraph,
        batched,
        std::iter::once(0).chain((1..=r).rev()),
        Op::Permute,
    ))
}

fn permute(egraph: &mut Graph, node: &Op) -> Option<Id> {
    let Op::Permute(children) = node else { return None };
    let (a, axes) = children.split_first()?;
    let axes = integers(egraph, axes)?;
    if !mapped(egraph, *a) {
        return None;
    }
    let batched = vmap(egraph, *a);
    let shifted = std::iter::once(0).chain(axes.into_iter().map(|k| k + 1));
    Some(with_literals(egraph, batched, shifted, Op::Permute))
}

fn index(egraph: &mut Graph, node: &Op) -> Option<Id> {
    let Op::Index([a, i]) = *node else { return None };
    if !mapped(egraph, a) || rank(egraph, a) == 0 {
        return None;
    }
    // The rows indexed are axis 1 of the batched value: bring them to the front.
    let batched = vmap(egraph, a);
    let rows_first = swap_leading(egraph, batched, rank(egraph, a) + 1);
    Some(egraph.add(Op::Index([rows_first, i])))
}

fn stack(egraph: &mut Graph, node: &Op) -> Option<Id> {
    let Op::Stack(operands) = node else { return None };
    let &some_mapped = operands.iter().find(|&&c| mapped(egraph, c))?;
    let rank = rank(egraph, operands[0]);
    let rows: Vec<Id> = operands
        .iter()
        .map(|&c| {
            let c = if mapped(egraph, c) {
                c
            } else {
                along(egraph, c, some_mapped)
            };
            vmap(egraph, c)
        })
        .collect();
    // stack gives [n, B, ...]; the batch axis goes first.
    let stacked = egraph.add(Op::Stack(rows.into()));
    Some(swap_leading(egraph, stacked, rank + 2))
}

/// `p * (step(x) * 0 + 1)`: the unmapped `p` as a mapped value (the factor is
/// exactly 1, its derivative 0), so that its batched value needs no literal B
/// (a batched program that does not depend on B chunks and exports with a symbolic B).
fn along(egraph: &mut Graph, p: Id, x: Id) -> Id {
    let (zero, one) = (literal(egraph, 0), literal(egraph, 1));
    let step = egraph.add(Op::Unary(Unary::Step, x));
    let zeros = egraph.add(Op::Binary(Binary::Mul, [step, zero]));
    let ones = egraph.add(Op::Binary(Binary::Add, [zeros, one]));
    egraph.add(Op::Binary(Binary::Mul, [p, ones]))
}

fn repeat(egraph: &mut Graph, node: &Op) -> Option<Id> {
    let Op::Repeat([a, n]) = *node else { return None };
    if !mapped(egraph, a) {
        return None;
    }
    // repeat gives [n, B, ...]; the batch axis goes first.
    let batched = vmap(egraph, a);
    let repeated = egraph.add(Op::Repeat([batched, n]));
    Some(swap_leading(egraph, repeated, rank(egraph, a) + 2))
}

/// `broadcast(A, d...) = A * broadcast(1, d...)` exactly, and the product
/// batches by the broadcasting rules without a literal B.
fn broadcast(egraph: &mut Graph, node: &Op) -> Option<Id> {
    let Op::Broadcast(children) = node else { return None };
    let (a, dims) = children.split_first()?;
    if !mapped(egraph, *a) {
        return None;
    }
    let mut ones = vec![literal(egraph, 1)];
    ones.extend(dims);
    let ones = egraph.add(Op::Broadcast(ones.into()));
    let product = egraph.add(Op::Binary(Binary::Mul, [*a, ones]));
    Some(vmap(egraph, product))
}

/// numpy matmul batched: a vector operand becomes a matrix (`[k]` as `[1, k]`
/// on the left, `[k, 1]` on the right), a mapped operand of lower rank gets
/// size-1 axes after the batch axis so that the batch axis leads the product's
/// batch axes, one `@` (a batched GEMM when both are mapped), and the promoted
/// axes are summed away.
fn matmul(egraph: &mut Graph, node: &Op) -> Option<Id> {
    let Op::MatMul([a, b]) = *node else { return None };
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
