//! The algebra rules (`rules/algebra.rules`) applied to a derived program in
//! an e-graph, and the smallest equivalent program extracted: the derivative
//! graph gets the same rewriting as the forward program.
//!
//! Each algebra rule removes an op, so the extraction needs no cost model:
//! each class takes the node with the fewest ops on its longest path (a cost
//! that, unlike a tree's size, stays linear in the depth of a DAG), found in
//! one depth-first pass (egg's `Extractor` iterates to a fixpoint, quadratic
//! on a deep chain).

use crate::egraph::{extract_dag, Graph, RuleSet, ShapeAnalysis};
use crate::error::{Error, Result};
use crate::ir::{Op, Program};
use egg::{Id, Language, Runner};
use std::collections::HashMap;

/// The rule file whose rules simplify derived programs.
const ALGEBRA: &str = "rules/algebra.rules";

/// For every class reachable from `roots`: the ops on its longest path and
/// the node that achieves it, among the nodes whose children are chosen
/// first (a node that would close a cycle is never one of them).
fn fewest_ops(egraph: &Graph, roots: &[Id]) -> Result<HashMap<Id, (usize, Op)>> {
    let mut best: HashMap<Id, (usize, Op)> = HashMap::new();
    let mut entered: std::collections::HashSet<Id> = Default::default();
    let mut stack: Vec<(Id, bool)> = roots.iter().map(|&r| (egraph.find(r), false)).collect();
    while let Some((class, children_done)) = stack.pop() {
        if best.contains_key(&class) {
            continue;
        }
        if !children_done {
            if !entered.insert(class) {
                continue;
            }
            stack.push((class, true));
            for node in &egraph[class].nodes {
                for &c in node.children() {
                    let c = egraph.find(c);
                    if !entered.contains(&c) {
                        stack.push((c, false));
                    }
                }
            }
            continue;
        }
        let cost = |node: &Op| -> Option<usize> {
            let own = usize::from(!node.is_leaf());
            node.children().iter().try_fold(own, |longest, &c| {
                best.get(&egraph.find(c)).map(|(cost, _)| longest.max(own + cost))
            })
        };
        let chosen = egraph[class]
            .nodes
            .iter()
            .filter_map(|n| cost(n).map(|c| (c, n)))
            .min_by_key(|(c, _)| *c)
            .map(|(c, n)| (c, n.clone()));
        match chosen {
            Some(chosen) => {
                best.insert(class, chosen);
            }
            // Every node of it reads a class still on the path (`transpose(a)` while `a`,
            // merged with `transpose(transpose(a))`, is being chosen): another path may reach it later.
            None => {
                entered.remove(&class);
            }
        }
    }
    if let Some(root) = roots.iter().find(|&&r| !best.contains_key(&egraph.find(r))) {
        return Err(Error::Internal(format!(
            "no acyclic program for output class {root} after simplifying"
        )));
    }
    Ok(best)
}

/// `program` rewritten by the algebra rules, the fewest ops extracted.
pub fn simplify(program: Program) -> Result<Program> {
    let mut egraph = Graph::new(ShapeAnalysis::new(program.var_shapes()));
    let mut class_of: Vec<Id> = Vec::with_capacity(program.node_count());
    for node in program.expr.as_ref() {
        let node = node.clone().map_children(|c| class_of[usize::from(c)]);
        class_of.push(egraph.add(node));
    }
    let rules = RuleSet {
        rules: RuleSet::builtin()
            .rules
            .into_iter()
            .filter(|r| r.origin.strip_prefix(ALGEBRA).is_some_and(|line| line.starts_with(':')))
            .collect(),
    };
    let runner = Runner::default()
        .with_egraph(egraph)
        .with_node_limit(20 * program.node_count() + 1000)
        .with_iter_limit(10)
        .run(&rules.rewrites());
    let egraph = runner.egraph;
    if let Some(conflict) = egraph.analysis.conflicts.first() {
        return Err(Error::UnsoundRule(conflict.clone()));
    }
    let roots: Vec<Id> = program
        .outputs
        .iter()
        .map(|(_, id)| egraph.find(class_of[usize::from(*id)]))
        .collect();
    let best = fewest_ops(&egraph, &roots)?;
    let (expr, placed) = extract_dag(&roots, |c| best[&egraph.find(c)].1.clone(), |c| egraph.find(c));
    let outputs = program
        .outputs
        .iter()
        .zip(&roots)
        .map(|((name, _), root)| (name.clone(), placed[root]))
        .collect();
    let names = (0..program.node_count())
        .filter_map(|i| {
            let hint = program.name_hint(Id::from(i))?;
            let id = placed.get(&egraph.find(class_of[i]))?;
            Some((*id, hint.clone()))
        })
        .collect();
    Ok(Program::new(
        program.inputs.clone(),
        program.params.clone(),
        expr,
        outputs,
        names,
    )?)
}
