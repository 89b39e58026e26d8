//! Which groups run batched: each choice of groups fixes, in every member's
//! class, either the member's own op or its row of the batched op, and greedy
//! DAG extraction fills in the rest; the cost model prices the whole program
//! (fusion, views, copies). Greedy extraction alone cannot make this choice:
//! a row of a batched op shared by k members looks, to each member's class,
//! as dear as the whole op.

use super::AutobatchOptions;
use crate::egraph::analysis::Graph;
use crate::egraph::cost::predict_us;
use crate::egraph::extract::{extract_dag, node_cost, Extraction, GreedyDag};
use crate::egraph::extract_exact::{extract_dag_exact, ExactLimits};
use crate::error::{Error, Result};
use crate::ir::{Dtype, Op, Program, Structural};
use egg::{Id, Language};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// The plan the search kept.
pub(super) struct Searched {
    pub program: Program,
    pub cost_us: f64,
    /// Per group: runs batched (its batched op is computed, or no member runs its own op).
    pub taken: Vec<bool>,
    /// Predicted time of the unconstrained greedy extraction.
    pub greedy_us: Option<f64>,
    /// How the search went, as a phrase.
    pub how: String,
    pub priced: usize,
    pub cut_off: bool,
    /// Greedy against exact extraction, unconstrained, on the same e-graph.
    pub extraction: ExtractionReport,
}

/// The element type exact extraction prices nodes in, whatever the run's.
/// Its program is one candidate plan among the search's, which the cost
/// model prices in the run's type like every other; the integer program is
/// then the same problem for every type. Priced in f64, the same e-graphs'
/// programs solved up to 9x slower (the library's default is f64, the CLI's
/// f32), so the compile time depended on the type asked for.
const EXACT_PRICED_IN: Dtype = Dtype::F32;

/// Greedy and exact DAG extraction of the whole e-graph, side by side: the
/// cost each optimises (the sum of its nodes' costs, each class once), the
/// time each took and what the cost model predicts for each program.
#[derive(Clone, Debug, Serialize)]
pub struct ExtractionReport {
    /// DAG cost of greedy extraction's choice (µs, summed per node), its
    /// nodes priced as exact extraction prices them (in f32), so the two compare.
    pub greedy_dag_cost: Option<f64>,
    /// Seconds greedy extraction took.
    pub greedy_seconds: f64,
    /// DAG cost of exact extraction's choice (nodes priced in f32), when it gave one.
    pub exact_dag_cost: Option<f64>,
    /// Seconds exact extraction took (building the program and solving).
    pub exact_seconds: f64,
    /// How exact extraction ended: optimal, cut off by a limit (and the gap), or not run.
    pub exact_status: String,
    /// Candidate nodes in the exact extractor's integer program.
    pub exact_nodes: usize,
    /// Cycles found in a solution and cut, each costing a solve again.
    pub exact_cycles_cut: usize,
    /// The cost model's prediction for the exact extraction's program (µs).
    pub exact_predicted_us: Option<f64>,
    /// Whether the program returned is the exact extraction's (it priced
    /// below every plan of the search over groups).
    pub exact_chosen: bool,
}

/// A plan: its program, predicted µs, the groups forced to their rows, and
/// the groups that run batched in it.
type Best = (Program, f64, Vec<bool>, Vec<bool>);

/// Searches the choices of groups (see the module doc).
pub(super) fn search(
    egraph: &Graph,
    program: &Program,
    classes: &[Id],
    rows: &[Vec<(Id, Op)>],
    ops: &[Id],
    options: &AutobatchOptions,
) -> Result<Searched> {
    let start = Instant::now();
    let rows_in = rows_by_class(egraph, rows);
    let roots: Vec<Id> = program
        .outputs
        .iter()
        .map(|(_, id)| egraph.find(classes[usize::from(*id)]))
        .collect();
    let priced = AtomicUsize::new(0);
    // A choice of nodes as a program, priced, with the groups it runs batched.
    let realize = |extraction: &Extraction| -> Option<(Program, f64, Vec<bool>)> {
        priced.fetch_add(1, Ordering::Relaxed);
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
        let extracted = Program::new(program.inputs.clone(), program.params.clone(), expr, outputs, vec![]).ok()?;
        let cost = predict_us(&options.profile, &extracted, options.run, options.dtype);
        let batched = groups_run_batched(egraph, extraction, rows, &rows_in, ops);
        Some((extracted, cost, batched))
    };
    // Laid out and priced once; each plan only restricts which nodes it may choose.
    let dag = GreedyDag::new(egraph, &options.profile, options.dtype);
    let restriction = Restriction::new(&dag, egraph, &rows_in);
    let plan = |taken: Option<&[bool]>| -> Option<(Program, f64, Vec<bool>)> {
        let extraction = match taken {
            Some(taken) => dag.extract(&roots, &|n| restriction.allows(n, taken))?,
            None => dag.extract(&roots, &|_| true)?,
        };
        realize(&extraction)
    };
    // The cheapest of several choices, priced on every thread.
    // Past the search's time limit, the plans not yet priced are skipped.
    let late = AtomicBool::new(false);
    let cheapest = |choices: Vec<Vec<bool>>| -> Option<Best> {
        choices
            .into_par_iter()
            .filter(|_| {
                let over = start.elapsed() > options.search_limit;
                late.fetch_or(over, Ordering::Relaxed);
                !over
            })
            .filter_map(|taken| plan(Some(&taken)).map(|(p, cost, batched)| (p, cost, taken, batched)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    let greedy_start = Instant::now();
    let greedy = dag.extract(&roots, &|_| true);
    let greedy_seconds = greedy_start.elapsed().as_secs_f64();
    let greedy_us = greedy.as_ref().and_then(&realize).map(|(_, cost, _)| cost);
    // Exact extraction of the whole e-graph, from greedy's choice, within
    // what is left of the search's time.
    let limits = ExactLimits {
        time: options
            .exact
            .time
            .min(options.search_limit.saturating_sub(start.elapsed())),
        ..options.exact.clone()
    };
    let exact = extract_dag_exact(
        egraph,
        &roots,
        &options.profile,
        EXACT_PRICED_IN,
        greedy.as_ref(),
        &limits,
    );
    let exact_plan = exact.extraction.as_ref().and_then(&realize);
    // Greedy's choice priced as exact extraction prices nodes, so that the two DAG costs compare.
    let dag_cost = |e: &Extraction| -> f64 {
        (e.choice.iter())
            .map(|(&class, &index)| node_cost(egraph, class, index, &options.profile, EXACT_PRICED_IN))
            .sum()
    };
    let mut extraction = ExtractionReport {
        greedy_dag_cost: greedy.as_ref().map(dag_cost),
        greedy_seconds,
        exact_dag_cost: exact.extraction.as_ref().map(|e| e.cost),
        exact_seconds: exact.seconds,
        exact_status: exact.status.describe(),
        exact_nodes: exact.nodes,
        exact_cycles_cut: exact.cycles_cut,
        exact_predicted_us: exact_plan.as_ref().map(|p| p.1),
        exact_chosen: false,
    };
    let count = rows.len();
    let better = |candidate: Option<Best>, best: &mut Option<Best>| -> bool {
        match candidate {
            Some(c) if best.as_ref().is_none_or(|b| c.1 < b.1) => {
                *best = Some(c);
                true
            }
            _ => false,
        }
    };
    let mut best: Option<Best> = None;
    let mut cut_off = false;
    let how;
    if options.batch_every_group {
        how = "every group batched (asked for)".into();
        better(cheapest(vec![vec![true; count]]), &mut best);
    } else if count <= options.exhaustive_groups {
        how = format!("every subset of the {count} groups ({} plans)", 1usize << count);
        let subsets = (0..1usize << count).map(|mask| (0..count).map(|g| mask >> g & 1 == 1).collect());
        better(cheapest(subsets.collect()), &mut best);
    } else {
        // Steepest descent: from the better of none and all, price every
        // single flip at once and take the best, until none improves.
        how = format!("steepest descent over {count} groups, one flip at a time");
        better(cheapest(vec![vec![false; count], vec![true; count]]), &mut best);
        while let Some(current) = best.as_ref().map(|b| b.2.clone()) {
            if start.elapsed() > options.search_limit {
                cut_off = true;
                break;
            }
            let flips = (0..count)
                .map(|g| {
                    let mut taken = current.clone();
                    taken[g] = !taken[g];
                    taken
                })
                .collect();
            if !better(cheapest(flips), &mut best) {
                break;
            }
        }
    }
    // The exact extraction's program is one more plan.
    if let Some((p, cost, batched)) = exact_plan {
        if !options.batch_every_group {
            extraction.exact_chosen = better(Some((p, cost, batched.clone(), batched)), &mut best);
        }
    }
    let priced = priced.into_inner();
    cut_off |= late.into_inner();
    let (program, cost_us, _, taken) =
        best.ok_or_else(|| Error::Internal("autobatch: no plan could be extracted".into()))?;
    Ok(Searched {
        program,
        cost_us,
        taken,
        greedy_us,
        how,
        priced,
        cut_off,
        extraction,
    })
}

/// Per member class (canonical): each group it is a member of, with its row node.
pub(super) fn rows_by_class(egraph: &Graph, rows: &[Vec<(Id, Op)>]) -> HashMap<Id, Vec<(usize, Op)>> {
    let mut rows_in: HashMap<Id, Vec<(usize, Op)>> = HashMap::new();
    for (g, members) in rows.iter().enumerate() {
        for (class, node) in members {
            let node = node.clone().map_children(|c| egraph.find(c));
            rows_in.entry(egraph.find(*class)).or_default().push((g, node));
        }
    }
    rows_in
}

/// Which groups a choice of nodes runs batched: the group's batched op `Y`
/// (class `ops[g]`) is computed (reached through a node other than the
/// program's own `stack` of the members: through the members' rows, or a
/// `group-sum`, even with members also run apart for other readers), or no
/// member runs its own op at all.
pub(super) fn groups_run_batched(
    egraph: &Graph,
    extraction: &Extraction,
    rows: &[Vec<(Id, Op)>],
    rows_in: &HashMap<Id, Vec<(usize, Op)>>,
    ops: &[Id],
) -> Vec<bool> {
    let chosen = |class: Id| extraction.choice.get(&class).map(|&n| &egraph[class].nodes[n]);
    rows.iter()
        .zip(ops)
        .map(|(members, &op)| {
            let computed =
                chosen(egraph.find(op)).is_some_and(|node| !matches!(node, Op::Structural(Structural::Stack, _)));
            let no_member_apart = members.iter().all(|(class, _)| {
                let class = egraph.find(*class);
                chosen(class).is_none_or(|node| rows_in[&class].iter().any(|(_, row)| row == node))
            });
            computed || no_member_apart
        })
        .collect()
}

/// Which nodes a plan may choose, given which groups it runs batched: in a
/// member's class, the node that is its row of a taken group, and the
/// member's own nodes only when none of its groups is taken.
struct Restriction {
    /// Per node: the group it is a row of, if any.
    row_of: Vec<Option<usize>>,
    /// Per node: the groups of its class (empty outside members' classes).
    groups: Vec<Vec<usize>>,
}

impl Restriction {
    fn new(dag: &GreedyDag, egraph: &Graph, rows_in: &HashMap<Id, Vec<(usize, Op)>>) -> Self {
        let mut restriction = Restriction {
            row_of: vec![None; dag.len()],
            groups: vec![vec![]; dag.len()],
        };
        for (&class, rows) in rows_in {
            for (index, node) in egraph[class].nodes.iter().enumerate() {
                let n = dag.number(class, index);
                restriction.row_of[n] = rows.iter().find(|(_, row)| row == node).map(|&(g, _)| g);
                restriction.groups[n] = rows.iter().map(|&(g, _)| g).collect();
            }
        }
        restriction
    }

    fn allows(&self, n: usize, taken: &[bool]) -> bool {
        match self.row_of[n] {
            Some(g) => taken[g],
            None => !self.groups[n].iter().any(|&g| taken[g]),
        }
    }
}
