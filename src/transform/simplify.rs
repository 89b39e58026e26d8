//! The algebra rules (`rules/algebra.rules`) applied to a derived program in
//! an e-graph, and the cheapest equivalent program extracted, as the batcher
//! does: the derivative graph gets the same rewriting as the forward program.

use crate::egraph::{extract_dag, extract_dag_greedy, CostProfile, Graph, RuleSet, ShapeAnalysis};
use crate::error::{Error, Result};
use crate::ir::Program;
use egg::{Id, Language, Runner};

/// The rule file whose rules simplify derived programs.
const ALGEBRA: &str = "rules/algebra.rules";

/// `program` rewritten by the algebra rules and extracted at least cost (cpu profile).
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
            .filter(|r| r.origin == ALGEBRA)
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
    let extraction = extract_dag_greedy(&egraph, &roots, &CostProfile::cpu())
        .ok_or_else(|| Error::Unsupported("internal: no program extracted after simplifying".into()))?;
    let (expr, placed) = extract_dag(
        &roots,
        |c| egraph[c].nodes[extraction.choice[&c]].clone(),
        |c| egraph.find(c),
    );
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
