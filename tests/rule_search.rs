//! The rules search through an index of the e-graph (`src/egraph/rule_search.rs`):
//! every rule must find exactly what egg's own pattern search finds, on the
//! batching e-graph of every example program, before rewriting and after each
//! round of it (the index must never be read stale).

use batchgraph::{Graph, Op, Program, RuleSet, ShapeAnalysis};
use egg::{ENodeOrVar, Id, Language, Pattern, Runner, SearchMatches, Searcher, Symbol, Var};
use std::collections::HashMap;

const BATCH: usize = 3;

/// The per-example program with a `vmap` spec over every mapped class, as the
/// batcher builds it (each input read through `row`).
fn batching_egraph(program: &Program) -> Graph {
    let mut vars = HashMap::new();
    for d in &program.inputs {
        vars.insert(Symbol::from(&d.name), d.shape.with_leading(BATCH));
    }
    for d in &program.params {
        vars.insert(Symbol::from(&d.name), d.shape.clone());
    }
    let mut analysis = ShapeAnalysis::new(vars);
    analysis.batch = BATCH;
    analysis.over = program.inputs.iter().map(|d| Symbol::from(&d.name)).collect();
    let mut egraph = Graph::new(analysis);
    let mut example: Vec<Id> = vec![];
    for node in program.expr.as_ref() {
        let class = match node.as_var() {
            Some(v) if egraph.analysis.over.contains(&v) => {
                let input = egraph.add(Op::Var(v));
                let row = egraph.add(Op::Row(input));
                let spec = egraph.add(Op::Vmap(row));
                egraph.union(spec, input);
                row
            }
            _ => egraph.add(node.clone().map_children(|c| example[usize::from(c)])),
        };
        example.push(class);
    }
    for &class in &example {
        if egraph[class].data.mapped {
            egraph.add(Op::Vmap(class));
        }
    }
    egraph.rebuild();
    egraph
}

/// Whether `a` and `b` are the same op (a structural op of any arity).
fn same_op(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::Structural(x, _), Op::Structural(y, _)) => x == y,
        _ => a.clone().map_children(|_| Id::from(0)) == b.clone().map_children(|_| Id::from(0)),
    }
}

/// What egg's own search of the rule's pattern finds. A Rust applier that
/// matches `(vmap ?t)` and reads the op under it itself is shown as the
/// pattern it batches (`rule.lhs`, `(vmap (op ...))`): its matches are those
/// where `?t` holds that op.
fn plain_search(egraph: &Graph, rule: &batchgraph::Rule) -> Vec<String> {
    let own = Pattern::new(rule.rewrite.searcher.get_pattern_ast().expect("a pattern").clone());
    let mut found = own.search(egraph);
    if own.ast != rule.lhs.ast {
        let shown = rule.lhs.ast.as_ref();
        let Some(ENodeOrVar::ENode(Op::Vmap(child))) = shown.last() else {
            panic!("rule {} is searched as {own} but shown as {}", rule.name, rule.lhs)
        };
        let ENodeOrVar::ENode(op) = &shown[usize::from(*child)] else {
            panic!("rule {} is shown as {}", rule.name, rule.lhs)
        };
        let t: Var = "?t".parse().unwrap();
        for m in &mut found {
            m.substs.retain(|s| egraph[s[t]].nodes.iter().any(|n| same_op(n, op)));
        }
    }
    matches(found)
}

/// Every match as text, sorted: the class and each substitution.
fn matches(found: Vec<SearchMatches<Op>>) -> Vec<String> {
    let mut out: Vec<String> = found
        .into_iter()
        .flat_map(|m| m.substs.into_iter().map(move |s| format!("{} {s:?}", m.eclass)))
        .collect();
    out.sort();
    out
}

#[test]
fn every_rule_finds_through_the_index_what_egg_finds_in_every_round() {
    let rules = RuleSet::builtin();
    let rewrites: Vec<_> = rules.rules.iter().map(|r| r.rewrite.clone()).collect();
    let mut checked = 0;
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "graph") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let program = Program::parse(&path.display().to_string(), &text).unwrap();
        let mut egraph = batching_egraph(&program);
        for round in 0..3 {
            for rule in &rules.rules {
                let indexed = matches(rule.rewrite.search(&egraph));
                let plain = plain_search(&egraph, rule);
                assert_eq!(
                    indexed,
                    plain,
                    "{}: rule {} in round {round}",
                    path.display(),
                    rule.name
                );
                checked += indexed.len();
            }
            egraph = Runner::default()
                .with_egraph(egraph)
                .with_iter_limit(1)
                .run(&rewrites)
                .egraph;
        }
    }
    assert!(checked > 500, "only {checked} matches compared");
}

#[test]
fn a_rule_finds_what_was_added_after_its_last_search() {
    let rules = RuleSet::builtin();
    let vmap_sin = rules
        .rules
        .iter()
        .find(|r| r.name == "vmap-sin")
        .expect("the rule of sin");
    let transpose = rules
        .rules
        .iter()
        .find(|r| r.name == "move-axes/transpose")
        .expect("transpose's rule");
    let program = Program::parse("t.graph", "input x: [2, 3]\nout y = sum(x)\n").unwrap();
    let mut egraph = batching_egraph(&program);
    assert!(vmap_sin.rewrite.search(&egraph).is_empty());
    assert!(transpose.rewrite.search(&egraph).is_empty());
    let x = egraph.add(Op::Var(Symbol::from("x")));
    let row = egraph.add(Op::Row(x));
    let sin = egraph.add(Op::Unary(batchgraph::Unary::Sin, row));
    egraph.add(Op::Vmap(sin));
    let transposed = egraph.add(Op::Structural(batchgraph::Structural::Transpose, Box::new([row])));
    egraph.add(Op::Vmap(transposed));
    egraph.rebuild();
    assert_eq!(matches(vmap_sin.rewrite.search(&egraph)).len(), 1);
    assert_eq!(matches(transpose.rewrite.search(&egraph)).len(), 1);
}
