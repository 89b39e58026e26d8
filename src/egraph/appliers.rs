//! The batching rules that a pattern cannot express, because they compute
//! with ranks or axes. Each is an egg [`Applier`] registered once per op of
//! its table, named `family/op`, and soundness-checked like a text rule.
//!
//! - `broadcast-align`: `vmap` of a binary op whose mapped operand has a lower
//!   rank than the result: its batched value gets size-1 axes after the batch
//!   axis, so that numpy broadcasting lines its axes up as before.
//! - `axis-shift`: `vmap` of `r(e, k)` for a reduction `r`: the same op on
//!   axis `k + 1` (the batch axis comes first).
//! - `reduce-all`: `vmap` of `r(e)` over all elements, at any rank: `r` along
//!   axis 1 of the batched value with every axis but the batch axis reshaped
//!   into one (one reduction, so ties share the gradient as they do per example).
//! - `contract-outer`: the sum (or mean) over axis 0 of a stack of outer
//!   products, `sum(expand(a, 2) * expand(b, 1), 0)`, is the matmul
//!   `transpose(a) @ b`: a batched weight gradient without its `[B, m, n]` stack.

use crate::egraph::analysis::{Graph, ShapeAnalysis};
use crate::egraph::rule_search::RuleSearcher;
use crate::egraph::rules::Rule;
use crate::egraph::structural;
use crate::ir::{Binary, Num, Op, Reduce, Structural};
use egg::{Applier, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};

pub(crate) const ORIGIN: &str = "a Rust applier (src/egraph/appliers.rs)";

/// Every applier, once per op it covers.
pub fn rules() -> Vec<Rule> {
    let mut rules = vec![];
    for &op in Binary::ALL {
        let symbol = op.symbol();
        rules.push(rule(
            format!("broadcast-align/{}", op.ident().to_lowercase()),
            format!("A[b] {symbol} B[b] with A of lower rank: expand A's batched value after the batch axis"),
            &format!("(vmap ({symbol} ?a ?b))"),
            BroadcastAlign(op),
        ));
    }
    for &op in Reduce::ALL {
        let name = op.name();
        rules.push(rule(
            format!("axis-shift/{name}"),
            format!("{name}(A[b], k) = {name}(A, k + 1)[b]"),
            &format!("(vmap ({name} ?a ?k))"),
            AxisShift(op),
        ));
        rules.push(rule(
            format!("reduce-all/{name}"),
            format!("{name}(A[b]) = {name}(reshape(A, 1, n), 1)[b] for A[b] of n elements"),
            &format!("(vmap ({name} ?a))"),
            ReduceAll(op),
        ));
    }
    for &op in Reduce::ALL {
        let name = op.name();
        if !contracts(op) {
            continue;
        }
        for swapped in [false, true] {
            let (suffix, product) = match swapped {
                false => ("", "(* (expand ?a 2) (expand ?b 1))"),
                true => ("-swapped", "(* (expand ?b 1) (expand ?a 2))"),
            };
            rules.push(rule(
                format!("contract-outer/{name}{suffix}"),
                format!("{name} over rows i of the outer products a_i b_i^T = transpose(a) @ b{} for matrices a, b of equal rows", match op {
                    Reduce::Mean => " / rows",
                    Reduce::Sum | Reduce::Max | Reduce::Min => "",
                }),
                &format!("({name} {product} 0)"),
                ContractOuter(op),
            ));
        }
    }
    rules.extend(structural::rules());
    rules
}

/// Whether a reduction over the rows of a stack of outer products is a contraction (it is linear).
fn contracts(op: Reduce) -> bool {
    match op {
        Reduce::Sum | Reduce::Mean => true,
        Reduce::Max | Reduce::Min => false,
    }
}

pub(crate) fn rule(
    name: String,
    comment: String,
    lhs: &str,
    applier: impl Applier<Op, ShapeAnalysis> + Send + Sync + 'static,
) -> Rule {
    let lhs: Pattern<Op> = lhs.parse().expect("applier patterns parse");
    Rule {
        rewrite: Rewrite::new(name.as_str(), RuleSearcher::new(lhs.clone()), applier).expect("a valid rewrite"),
        name,
        comment,
        origin: ORIGIN.into(),
        lhs,
        rhs: None,
    }
}

pub(crate) fn var(name: &str) -> Var {
    name.parse().expect("a pattern variable")
}

/// Adds `node` and merges it into `eclass` by `rule`; returns it if that changed anything.
pub(crate) fn union_with(egraph: &mut Graph, eclass: Id, node: Op, rule: Symbol) -> Vec<Id> {
    let id = egraph.add(node);
    union_id(egraph, eclass, id, rule)
}

/// Merges class `id` into `eclass` by `rule` (named in explanations, when the
/// e-graph records them); returns it if that changed anything.
pub(crate) fn union_id(egraph: &mut Graph, eclass: Id, id: Id, rule: Symbol) -> Vec<Id> {
    let changed = match egraph.are_explanations_enabled() {
        true => egraph.union_trusted(eclass, id, rule),
        false => egraph.union(eclass, id),
    };
    if changed {
        vec![id]
    } else {
        vec![]
    }
}

pub(crate) fn literal(egraph: &mut Graph, value: usize) -> Id {
    egraph.add(Op::Num(Num(value as f64)))
}

struct BroadcastAlign(Binary);

impl Applier<Op, ShapeAnalysis> for BroadcastAlign {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let operands = [subst[var("?a")], subst[var("?b")]];
        let rank = operands.iter().map(|&c| egraph[c].data.shape.rank()).max().unwrap_or(0);
        let misaligned = operands
            .iter()
            .any(|&c| egraph[c].data.mapped && egraph[c].data.shape.rank() < rank);
        if !misaligned {
            return vec![];
        }
        let mut batched = operands;
        for (slot, &c) in batched.iter_mut().zip(&operands) {
            if egraph[c].data.mapped {
                let mut v = egraph.add(Op::Vmap(c));
                for _ in egraph[c].data.shape.rank()..rank {
                    let one = literal(egraph, 1);
                    v = egraph.add(Op::structural(Structural::Expand, &[v, one]));
                }
                *slot = v;
            }
        }
        union_with(egraph, eclass, Op::Binary(self.0, batched), rule)
    }
}

/// The reduction over an axis.
struct AxisShift(Reduce);

impl Applier<Op, ShapeAnalysis> for AxisShift {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let (a, k) = (subst[var("?a")], subst[var("?k")]);
        let Some(axis) = egraph[k].data.constant else {
            return vec![];
        };
        let batched = egraph.add(Op::Vmap(a));
        let shifted = egraph.add(Op::Num(Num(axis + 1.0)));
        union_with(egraph, eclass, Op::ReduceAxis(self.0, [batched, shifted]), rule)
    }
}

/// The reduction over every element of an example: one reduction over the
/// example's axes laid out as one (`reshape`), not one reduction per axis,
/// which would split a tie's gradient per row before across rows.
struct ReduceAll(Reduce);

impl Applier<Op, ShapeAnalysis> for ReduceAll {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let a = subst[var("?a")];
        let shape = &egraph[a].data.shape;
        let (rank, elements) = (shape.rank(), shape.elements());
        let mut value = egraph.add(Op::Vmap(a));
        if rank == 0 {
            return union_id(egraph, eclass, value, rule);
        }
        if elements == 0 {
            // `reshape` refuses a zero-size dimension, and an empty example has
            // no tie to share: one reduction per axis, last axis first.
            for axis in (1..=rank).rev() {
                let axis = literal(egraph, axis);
                value = egraph.add(Op::ReduceAxis(self.0, [value, axis]));
            }
            return union_id(egraph, eclass, value, rule);
        }
        if rank > 1 {
            let (one, n) = (literal(egraph, 1), literal(egraph, elements));
            value = egraph.add(Op::structural(Structural::Reshape, &[value, one, n]));
        }
        let axis = literal(egraph, 1);
        value = egraph.add(Op::ReduceAxis(self.0, [value, axis]));
        union_id(egraph, eclass, value, rule)
    }
}

/// `sum(expand(a, 2) * expand(b, 1), 0) = transpose(a) @ b` for `a: [r, m]`,
/// `b: [r, n]`; the mean divides by `r`, counted from `a` itself
/// (`sum(step(a) * 0 + 1, 0)`, exactly `r` whatever `a` holds) so that no
/// rule writes the batch size as a literal (a fused program is the same text
/// at every B: it chunks and exports with a symbolic batch axis).
struct ContractOuter(Reduce);

impl Applier<Op, ShapeAnalysis> for ContractOuter {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Op>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let (a, b) = (subst[var("?a")], subst[var("?b")]);
        let (sa, sb) = (egraph[a].data.shape.dims(), egraph[b].data.shape.dims());
        if sa.len() != 2 || sb.len() != 2 || sa[0] != sb[0] {
            return vec![];
        }
        let transposed = egraph.add(Op::structural(Structural::Transpose, &[a]));
        let product = egraph.add(Op::MatMul([transposed, b]));
        let value = match self.0 {
            Reduce::Sum => product,
            Reduce::Mean => {
                let (zero, one) = (literal(egraph, 0), literal(egraph, 1));
                let step = egraph.add(Op::Unary(crate::ir::Unary::Step, a));
                let nothing = egraph.add(Op::Binary(Binary::Mul, [step, zero]));
                let ones = egraph.add(Op::Binary(Binary::Add, [nothing, one]));
                let rows = egraph.add(Op::ReduceAxis(Reduce::Sum, [ones, zero]));
                let rows = egraph.add(Op::structural(Structural::Expand, &[rows, one]));
                egraph.add(Op::Binary(Binary::Div, [product, rows]))
            }
            Reduce::Max | Reduce::Min => return vec![],
        };
        union_id(egraph, eclass, value, rule)
    }
}
