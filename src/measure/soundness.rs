//! Checks a rewrite rule by running it, as Ruler fuzzes rules. The left side
//! is instantiated with random tensors (every rank 0-4, mapped or not) and
//! with every axis 0-4 where the language needs an integer; the rule is
//! applied in an e-graph, exactly as the batcher applies it, so text rules,
//! generated rule classes and Rust appliers are checked alike; then every new
//! implementation of the left side's class is evaluated, with `vmap` expanded
//! by its definition (the stack of the term on each row), and must agree with
//! the left side. An op of any arity (`permute`, `stack`, `broadcast`) whose
//! operands after the first are variables is tried at every arity the
//! checker can instantiate.
//!
//! Each instance is evaluated on several draws of values ([`Draw`]): positive
//! (where log, sqrt and division are defined), signed with zeros, tied
//! (a few small integers, so equal values across elements and operands) and
//! large. A rule must hold on each, elementwise and exactly as IEEE
//! arithmetic goes: where the left side is NaN the right side must be NaN
//! too (a rule must not turn a domain error into a number, as `a / a => 1`
//! would at 0), and infinities must match.

use crate::egraph::{Graph, Rule, ShapeAnalysis};
use crate::ir::structural::Count;
use crate::ir::{Decl, Num, Op, Program, Shape, Structural};
use crate::runtime::{Interpreter, Rng, Tensor, Values};
use egg::{AstSize, ENodeOrVar, Extractor, Id, Language, RecExpr, Symbol, Var};
use std::collections::HashMap;

const BATCH: usize = 3;
const MAX_RANK: usize = 4;
/// The most operands of a `stack` the checker tries.
const MAX_STACKED: usize = 3;

/// The values an instance is evaluated on: a rule must hold on every draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Draw {
    /// In (0.25, 1.75), where log, sqrt, division and powers are defined.
    Positive,
    /// In (-1.75, 1.75), about a quarter of them exactly 0.
    Signed,
    /// Integers in -2..=2: ties across elements and operands.
    Ties,
    /// Integers in -4..=4 times 2^30: large, and exact under + and *, so
    /// sums in another order still agree.
    Large,
}

impl Draw {
    const ALL: [Draw; 4] = [Draw::Positive, Draw::Signed, Draw::Ties, Draw::Large];

    fn value(self, rng: &mut Rng) -> f64 {
        match self {
            Draw::Positive => rng.uniform(0.25, 1.75),
            Draw::Signed if rng.below(4) == 0 => 0.0,
            Draw::Signed => rng.uniform(-1.75, 1.75),
            Draw::Ties => rng.below(5) as f64 - 2.0,
            Draw::Large => (rng.below(9) as f64 - 4.0) * (1u64 << 30) as f64,
        }
    }

    fn tensor(self, shape: &Shape, rng: &mut Rng) -> Tensor<f64> {
        Tensor::from_shape_fn(ndarray::IxDyn(shape.dims()), |_| self.value(rng))
    }
}

/// How one pattern variable is instantiated.
#[derive(Clone, Copy, Debug)]
enum Binding {
    Tensor { mapped: bool, rank: usize },
    Literal(usize),
}

/// Variables that stand where the language needs an integer literal.
fn literal_vars(pattern: &LeftSide) -> Vec<Var> {
    let mut out = vec![];
    for node in pattern.as_ref() {
        if let ENodeOrVar::ENode(op) = node {
            for (position, &child) in op.children().iter().enumerate() {
                if let (true, ENodeOrVar::Var(v)) = (op.integer_operand(position), &pattern[child]) {
                    out.push(*v);
                }
            }
        }
    }
    out
}

fn var_name(v: Var, mapped: bool) -> Symbol {
    let name = v.to_string().trim_start_matches('?').to_string();
    Symbol::from(if mapped { format!("{name}'") } else { name })
}

/// The pattern with variables replaced: tensors by variables (`a'` per
/// example when mapped, `a` otherwise), literals by numbers.
fn instantiate(pattern: &RecExpr<ENodeOrVar<Op>>, bindings: &HashMap<Var, Binding>) -> RecExpr<Op> {
    let nodes: Vec<Op> = pattern
        .as_ref()
        .iter()
        .map(|node| match node {
            ENodeOrVar::ENode(op) => op.clone(),
            ENodeOrVar::Var(v) => match bindings[v] {
                Binding::Literal(x) => Op::Num(Num(x as f64)),
                Binding::Tensor { mapped, .. } => Op::Var(var_name(*v, mapped)),
            },
        })
        .collect();
    RecExpr::from(nodes)
}

/// Expands every `vmap(t)` into `stack(t[x' := index(x, 0)], ...)`.
fn lower(nodes: &[Op], node: usize, row: Option<usize>, out: &mut Vec<Op>) -> Result<Id, String> {
    let push = |op: Op, out: &mut Vec<Op>| {
        out.push(op);
        Id::from(out.len() - 1)
    };
    if let Some(v) = nodes[node].as_var().filter(|v| v.as_str().ends_with('\'')) {
        let r = row.ok_or_else(|| format!("the per-example value {v} is used outside vmap"))?;
        let batched = push(Op::Var(Symbol::from(v.as_str().trim_end_matches('\''))), out);
        let literal = push(Op::Num(Num(r as f64)), out);
        return Ok(push(Op::structural(Structural::Index, &[batched, literal]), out));
    }
    if let Op::Vmap(child) = &nodes[node] {
        if row.is_some() {
            return Err("nested vmap".into());
        }
        let rows = (0..BATCH)
            .map(|r| lower(nodes, usize::from(*child), Some(r), out))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(push(Op::Structural(Structural::Stack, rows.into()), out));
    }
    let mut children = vec![];
    for &c in nodes[node].children() {
        children.push(lower(nodes, usize::from(c), row, out)?);
    }
    let mut k = 0;
    let op = nodes[node].clone().map_children(|_| {
        k += 1;
        children[k - 1]
    });
    Ok(push(op, out))
}

/// The term, `vmap` expanded, as a program over the batched variables.
fn side(term: &RecExpr<Op>, decls: &[Decl]) -> Result<Program, String> {
    let mut out = vec![];
    let root = lower(term.as_ref(), term.as_ref().len() - 1, None, &mut out)?;
    let program = Program::new(
        decls.to_vec(),
        vec![],
        RecExpr::from(out),
        vec![("out".into(), root)],
        vec![],
    );
    program.map_err(|e| e.to_string())
}

/// One instantiation: the variables' declarations (batched shapes), their
/// values (one set per [`Draw`]), and the per-example shapes the e-graph's analysis needs.
struct Instance {
    bindings: HashMap<Var, Binding>,
    decls: Vec<Decl>,
    values: Vec<(Draw, Values<f64>)>,
    analysis: ShapeAnalysis,
}

fn instance(bindings: HashMap<Var, Binding>, dim: usize, rng: &mut Rng) -> Instance {
    let mut decls = vec![];
    let mut values: Vec<(Draw, Values<f64>)> = Draw::ALL.iter().map(|&d| (d, HashMap::new())).collect();
    let mut analysis = ShapeAnalysis {
        batch: BATCH,
        ..Default::default()
    };
    let mut vars: Vec<(&Var, &Binding)> = bindings.iter().collect();
    vars.sort_by_key(|(v, _)| v.to_string());
    for (&v, binding) in vars {
        let Binding::Tensor { mapped, rank } = *binding else {
            continue;
        };
        let example = Shape(vec![dim; rank]);
        let shape = if mapped {
            example.with_leading(BATCH)
        } else {
            example.clone()
        };
        let name = var_name(v, false).to_string();
        for (draw, values) in &mut values {
            values.insert(name.clone(), draw.tensor(&shape, rng));
        }
        if mapped {
            analysis.vars.insert(var_name(v, true), example);
            analysis.over.insert(var_name(v, true));
        }
        analysis.vars.insert(Symbol::from(&name), shape.clone());
        decls.push(Decl { name, shape });
    }
    Instance {
        bindings,
        decls,
        values,
        analysis,
    }
}

/// Every implementation the rule adds to the class of the left side, as terms.
fn alternatives(rule: &Rule, lhs: &RecExpr<Op>, analysis: ShapeAnalysis) -> Result<Vec<RecExpr<Op>>, String> {
    let mut egraph = Graph::new(analysis);
    let root = egraph.add_expr(lhs);
    // egg indexes classes by op when it rebuilds; searching needs the index.
    egraph.rebuild();
    let before: Vec<Op> = egraph[root].nodes.clone();
    let matches = rule.rewrite.search(&egraph);
    rule.rewrite.apply(&mut egraph, &matches);
    egraph.rebuild();
    if let Some(conflict) = egraph.analysis.conflicts.first() {
        return Err(conflict.to_string());
    }
    let root = egraph.find(root);
    let extractor = Extractor::new(&egraph, AstSize);
    let mut terms = vec![];
    for node in &egraph[root].nodes {
        if before
            .iter()
            .any(|b| b.clone().map_children(|c| egraph.find(c)) == *node)
        {
            continue;
        }
        // The new node on top, the smallest term of each child below it.
        let mut nodes: Vec<Op> = vec![];
        let mut children = vec![];
        for &child in node.children() {
            let (_, best) = extractor.find_best(child);
            let offset = nodes.len();
            nodes.extend(
                best.as_ref()
                    .iter()
                    .map(|n| n.clone().map_children(|c| Id::from(usize::from(c) + offset))),
            );
            children.push(Id::from(nodes.len() - 1));
        }
        let mut k = 0;
        nodes.push(node.clone().map_children(|_| {
            k += 1;
            children[k - 1]
        }));
        terms.push(RecExpr::from(nodes));
    }
    Ok(terms)
}

/// Elementwise agreement within rounding (relative to the element or to
/// `scale`, the largest input, whichever is larger: sums in another order
/// differ by rounding of the terms, not of the result): NaN only against NaN,
/// an infinity only against the same infinity.
fn agree(l: &Tensor<f64>, r: &Tensor<f64>, scale: f64) -> bool {
    l.shape() == r.shape()
        && l.iter().zip(r.iter()).all(|(&a, &b)| {
            a == b || (a.is_nan() && b.is_nan()) || (a.is_finite() && (a - b).abs() <= 1e-9 * a.abs().max(scale))
        })
}

/// Checks one instance: `Ok(true)` if the rule applied and every alternative agrees.
fn check_instance(rule: &Rule, pattern: &LeftSide, inst: Instance, dim: usize) -> Result<bool, String> {
    let lhs = instantiate(pattern, &inst.bindings);
    // An instance whose left side is ill-shaped is not a match.
    let Ok(left) = side(&lhs, &inst.decls) else {
        return Ok(false);
    };
    let mut described: Vec<String> = inst.bindings.iter().map(|(v, b)| format!("{v}: {b:?}")).collect();
    described.sort();
    let described = format!("{{{}}} with dimension {dim}", described.join(", "));
    let failure = |what: String| {
        format!(
            "rule {} ({}) is unsound for {described}: {what}",
            rule.name, rule.origin
        )
    };
    let run = |p: &Program, values: &Values<f64>| Interpreter::new(p).evaluate(values).map(|e| e.outputs[0].1.clone());
    let terms = alternatives(rule, &lhs, inst.analysis).map_err(|e| failure(format!("it builds {e}")))?;
    let rights = terms
        .iter()
        .map(|term| side(term, &inst.decls).map_err(|e| failure(format!("right side {term} fails: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    for (draw, values) in &inst.values {
        let scale = values
            .values()
            .flat_map(|v| v.iter())
            .fold(1.0, |m: f64, x| m.max(x.abs()));
        let expected = run(&left, values).map_err(|e| failure(format!("left side fails: {e}")))?;
        for (term, right) in terms.iter().zip(&rights) {
            let got = run(right, values).map_err(|e| failure(format!("right side {term} fails: {e}")))?;
            if !agree(&expected, &got, scale) {
                let mut inputs: Vec<String> = values.iter().map(|(name, v)| format!("{name} = {v}")).collect();
                inputs.sort();
                return Err(failure(format!(
                    "on {draw:?} values ({}) left gives {expected}, right ({term}) gives {got}",
                    inputs.join(", ")
                )));
            }
        }
    }
    Ok(!terms.is_empty())
}

/// A left side, as the checker instantiates it.
type LeftSide = RecExpr<ENodeOrVar<Op>>;

/// For an op of any arity (`permute`, `stack`, `broadcast`, `concat`): how
/// many operands after the first the checker tries (at most [`MAX_STACKED`]
/// children in all for an open number of arrays, [`MAX_RANK`] axes for an open
/// number of integers).
fn variadic(op: &Op) -> Option<(Structural, Vec<usize>)> {
    let Op::Structural(s, _) = op else { return None };
    let (arrays, _) = s.counts();
    let most = match arrays {
        _ if !s.variadic() => return None,
        Count::AtLeast(_) => MAX_STACKED - 1,
        Count::Exactly(_) => MAX_RANK,
    };
    Some((*s, (0..=most).filter(|tail| s.arrays_of(1 + tail).is_some()).collect()))
}

/// The left side at every arity the checker tries: an op of any arity whose
/// operands after the first are all variables stands for that op at every
/// arity (a Rust applier covers them all; a text rule matches only its own,
/// and the other arities are simply not instances of it).
fn arities(pattern: &LeftSide) -> Vec<LeftSide> {
    let nodes = pattern.as_ref();
    let found = nodes.iter().enumerate().find_map(|(i, node)| {
        let ENodeOrVar::ENode(op) = node else { return None };
        let (s, tails) = variadic(op)?;
        let tail_are_vars = op.children()[1..]
            .iter()
            .all(|&c| matches!(pattern[c], ENodeOrVar::Var(_)));
        tail_are_vars.then_some((i, s, tails))
    });
    let Some((at, op, tails)) = found else {
        return vec![pattern.clone()];
    };
    let variant = Variadic { at, op };
    tails
        .into_iter()
        .map(|tail| {
            let mut out = vec![];
            variant.copy(pattern, Id::from(nodes.len() - 1), tail, &mut out);
            RecExpr::from(out)
        })
        .collect()
}

/// The node of a left side that stands for an op of any arity.
struct Variadic {
    at: usize,
    op: Structural,
}

impl Variadic {
    /// Copies the subterm at `id` into `out`, the variadic node with `tail`
    /// fresh variables after its first operand (the variables it had are dropped).
    fn copy(&self, pattern: &LeftSide, id: Id, tail: usize, out: &mut Vec<ENodeOrVar<Op>>) -> Id {
        let node = match &pattern[id] {
            ENodeOrVar::ENode(op) if usize::from(id) == self.at => {
                let mut children = vec![self.copy(pattern, op.children()[0], tail, out)];
                for j in 0..tail {
                    out.push(ENodeOrVar::Var(format!("?arity{j}").parse().expect("a variable")));
                    children.push(Id::from(out.len() - 1));
                }
                ENodeOrVar::ENode(Op::Structural(self.op, children.into()))
            }
            ENodeOrVar::ENode(op) => {
                let children: Vec<Id> = op
                    .children()
                    .iter()
                    .map(|&c| self.copy(pattern, c, tail, out))
                    .collect();
                let mut k = 0;
                ENodeOrVar::ENode(op.clone().map_children(|_| {
                    k += 1;
                    children[k - 1]
                }))
            }
            ENodeOrVar::Var(v) => ENodeOrVar::Var(*v),
        };
        out.push(node);
        Id::from(out.len() - 1)
    }
}

/// The variables of a left side, each once.
fn pattern_vars(pattern: &LeftSide) -> Vec<Var> {
    let mut vars = vec![];
    for node in pattern.as_ref() {
        if let ENodeOrVar::Var(v) = node {
            if !vars.contains(v) {
                vars.push(*v);
            }
        }
    }
    vars
}

/// Checks `rule` on every instantiation of its left side. Returns how many
/// instances it applied to (0 means it was never exercised: unchecked), or a
/// message naming the rule and the failing instance.
pub fn check_rule(rule: &Rule) -> Result<usize, String> {
    let mut checked = 0;
    for pattern in arities(&rule.lhs.ast) {
        checked += check_pattern(rule, &pattern)?;
    }
    Ok(checked)
}

/// [`check_rule`] for one left side.
fn check_pattern(rule: &Rule, pattern: &LeftSide) -> Result<usize, String> {
    let literals = literal_vars(pattern);
    let tensors: Vec<Var> = pattern_vars(pattern)
        .into_iter()
        .filter(|v| !literals.contains(v))
        .collect();
    let tensor_choices: Vec<(bool, usize)> = [false, true]
        .into_iter()
        .flat_map(|m| (0..=MAX_RANK).map(move |r| (m, r)))
        .collect();
    let choices = tensor_choices.len().pow(tensors.len() as u32) * (MAX_RANK + 1).pow(literals.len() as u32);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for dim in [2usize, 3] {
        for combination in 0..choices {
            let mut k = combination;
            let mut bindings = HashMap::new();
            for &v in &tensors {
                let (mapped, rank) = tensor_choices[k % tensor_choices.len()];
                k /= tensor_choices.len();
                bindings.insert(v, Binding::Tensor { mapped, rank });
            }
            for &v in &literals {
                bindings.insert(v, Binding::Literal(k % (MAX_RANK + 1)));
                k /= MAX_RANK + 1;
            }
            if check_instance(rule, pattern, instance(bindings, dim, &mut rng), dim)? {
                checked += 1;
            }
        }
    }
    Ok(checked)
}
