//! Checks a rewrite rule by running it, as Ruler fuzzes rules: both sides are
//! instantiated with random tensors of several shapes (every rank 0-2, mapped
//! or not, as the rule's conditions admit), `vmap` is expanded by its
//! definition (the stack of the term on each row), and the two sides must
//! agree.

use crate::interp::Interpreter;
use crate::kernels::Tensor;
use crate::language::{Num, Op};
use crate::program::{Decl, Program};
use crate::rules::TextRule;
use crate::shape::Shape;
use egg::{ENodeOrVar, Id, Language, RecExpr, Symbol, Var};
use std::collections::HashMap;

const BATCH: usize = 3;

/// How one pattern variable is instantiated.
#[derive(Clone, Copy, Debug)]
enum Binding {
    Tensor { mapped: bool, rank: usize },
    Literal(f64),
}

/// Variables that stand where the language needs a number literal.
fn literal_vars(pattern: &RecExpr<ENodeOrVar<Op>>) -> Vec<Var> {
    let mut out = vec![];
    for node in pattern.as_ref() {
        if let ENodeOrVar::ENode(op) = node {
            for (position, &child) in op.children().iter().enumerate() {
                let literal = op.is_integer_operand(position) || matches!(op, Op::Pow(_)) && position == 1;
                if let (true, ENodeOrVar::Var(v)) = (literal, &pattern[child]) {
                    out.push(*v);
                }
            }
        }
    }
    out
}

/// The pattern with variables replaced: tensors by variables (`a'` per
/// example when mapped, `a` otherwise), literals by numbers.
fn instantiate(pattern: &RecExpr<ENodeOrVar<Op>>, bindings: &HashMap<Var, Binding>) -> Vec<Op> {
    let mut out: Vec<Op> = vec![];
    for node in pattern.as_ref() {
        out.push(match node {
            ENodeOrVar::ENode(op) => op.clone(),
            ENodeOrVar::Var(v) => match bindings[v] {
                Binding::Literal(x) => Op::Num(Num(x)),
                Binding::Tensor { mapped, .. } => {
                    let name = v.to_string().trim_start_matches('?').to_string();
                    Op::Var(Symbol::from(if mapped { format!("{name}'") } else { name }))
                }
            },
        });
    }
    out
}

/// Expands every `vmap(t)` into `stack(t[x' := index(x, 0)], ...)`.
fn lower(nodes: &[Op], node: usize, row: Option<usize>, out: &mut Vec<Op>) -> Result<Id, String> {
    let push = |op: Op, out: &mut Vec<Op>| {
        out.push(op);
        Id::from(out.len() - 1)
    };
    match &nodes[node] {
        Op::Var(v) if v.as_str().ends_with('\'') => {
            let r = row.ok_or_else(|| format!("the per-example value {v} is used outside vmap"))?;
            let batched = push(Op::Var(Symbol::from(v.as_str().trim_end_matches('\''))), out);
            let literal = push(Op::Num(Num(r as f64)), out);
            Ok(push(Op::Index([batched, literal]), out))
        }
        Op::Vmap(child) => {
            if row.is_some() {
                return Err("nested vmap".into());
            }
            let rows = (0..BATCH)
                .map(|r| lower(nodes, usize::from(*child), Some(r), out))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(push(Op::Stack(rows.into()), out))
        }
        other => {
            let mut children = vec![];
            for &c in other.children() {
                children.push(lower(nodes, usize::from(c), row, out)?);
            }
            let mut k = 0;
            let op = other.clone().map_children(|_| {
                k += 1;
                children[k - 1]
            });
            Ok(push(op, out))
        }
    }
}

fn side(nodes: &[Op], decls: &[Decl]) -> Result<Program, String> {
    let mut out = vec![];
    let root = lower(nodes, nodes.len() - 1, None, &mut out)?;
    Program::new(
        decls.to_vec(),
        vec![],
        RecExpr::from(out),
        vec![("out".into(), root)],
        vec![],
    )
    .map_err(|e| e.to_string())
}

fn random_tensor(shape: &[usize], seed: &mut u64) -> Tensor<f64> {
    Tensor::from_shape_fn(ndarray::IxDyn(shape), |_| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        // In (0.25, 1.75) so that log, sqrt and division are defined.
        0.25 + 1.5 * ((*seed >> 11) as f64 / (1u64 << 53) as f64)
    })
}

/// Checks `rule` on every admitted instantiation. Returns how many instances
/// were checked, or a message naming the rule and the failing instance.
pub fn check_rule(rule: &TextRule) -> Result<usize, String> {
    let lhs = rule.lhs.ast.clone();
    let rhs = rule.rhs.ast.clone();
    let literals = literal_vars(&lhs);
    let tensors: Vec<Var> = rule.lhs.vars().into_iter().filter(|v| !literals.contains(v)).collect();
    let mut checked = 0;
    let mut seed = 0x9e3779b97f4a7c15u64;
    let choices: Vec<(bool, usize)> = [false, true]
        .iter()
        .flat_map(|&m| (0..3).map(move |r| (m, r)))
        .collect();
    let combinations = choices.len().pow(tensors.len() as u32);
    for dim in [2usize, 3] {
        for exponent in [2.0, 3.0] {
            for combination in 0..combinations {
                let mut bindings: HashMap<Var, Binding> =
                    literals.iter().map(|&v| (v, Binding::Literal(exponent))).collect();
                let mut k = combination;
                for &v in &tensors {
                    let (mapped, rank) = choices[k % choices.len()];
                    k /= choices.len();
                    bindings.insert(v, Binding::Tensor { mapped, rank });
                }
                let admitted = rule.admits(&|v| match bindings[&v] {
                    Binding::Tensor { mapped, rank } => (mapped, rank),
                    Binding::Literal(_) => (false, 0),
                });
                if !admitted {
                    continue;
                }
                let mut decls = vec![];
                let mut values = HashMap::new();
                for (&v, binding) in &bindings {
                    if let Binding::Tensor { mapped, rank } = *binding {
                        let mut shape = Shape(vec![dim; rank]);
                        if mapped {
                            shape = shape.with_leading(BATCH);
                        }
                        let name = v.to_string().trim_start_matches('?').to_string();
                        values.insert(name.clone(), random_tensor(shape.dims(), &mut seed));
                        decls.push(Decl { name, shape });
                    }
                }
                // An instance whose left side is ill-shaped is not a match.
                let Ok(left) = side(&instantiate(&lhs, &bindings), &decls) else {
                    continue;
                };
                let instance = format!("{bindings:?} with dimension {dim}");
                let right = side(&instantiate(&rhs, &bindings), &decls).map_err(|e| {
                    format!(
                        "rule {} ({}): right side fails for {instance}: {e}",
                        rule.name, rule.origin
                    )
                })?;
                let run = |p: &Program| Interpreter::new(p).evaluate(&values).map(|e| e.outputs[0].1.clone());
                let (l, r) = (
                    run(&left).map_err(|e| e.to_string())?,
                    run(&right).map_err(|e| e.to_string())?,
                );
                let agree = l.shape() == r.shape()
                    && l.iter()
                        .zip(r.iter())
                        .all(|(a, b)| (a - b).abs() <= 1e-9 * a.abs().max(1.0) || (a.is_nan() && b.is_nan()));
                if !agree {
                    return Err(format!(
                        "rule {} ({}) is unsound for {instance}: left gives {l}, right gives {r}",
                        rule.name, rule.origin
                    ));
                }
                checked += 1;
            }
        }
    }
    Ok(checked)
}
