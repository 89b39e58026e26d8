//! Which groups run batched: each choice of groups fixes, in every member's
//! class, either the member's own op or its row of the batched op, and greedy
//! DAG extraction fills in the rest; the cost model prices the whole program
//! (fusion, views, copies). Greedy extraction alone cannot make this choice:
//! a row of a batched op shared by k members looks, to each member's class,
//! as dear as the whole op.

use super::AutobatchOptions;
use crate::egraph::analysis::Graph;
use crate::egraph::cost::predict_us;
use crate::egraph::extract::{extract_dag, extract_dag_greedy_where};
use crate::error::{Error, Result};
use crate::ir::{Op, Program};
use egg::{Id, Language};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// The plan the search kept.
pub(super) struct Searched {
    pub program: Program,
    pub cost_us: f64,
    /// Per group: runs batched (no member runs its own op).
    pub taken: Vec<bool>,
    /// Predicted time of the unconstrained greedy extraction.
    pub greedy_us: Option<f64>,
    /// How the search went, as a phrase.
    pub how: String,
    pub priced: usize,
    pub cut_off: bool,
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
    options: &AutobatchOptions,
) -> Result<Searched> {
    let start = Instant::now();
    // Per member class: (group, its row node), canonical after rewriting.
    let mut rows_in: HashMap<Id, Vec<(usize, Op)>> = HashMap::new();
    for (g, members) in rows.iter().enumerate() {
        for (class, node) in members {
            let node = node.clone().map_children(|c| egraph.find(c));
            rows_in.entry(egraph.find(*class)).or_default().push((g, node));
        }
    }
    let roots: Vec<Id> = program
        .outputs
        .iter()
        .map(|(_, id)| egraph.find(classes[usize::from(*id)]))
        .collect();
    let priced = AtomicUsize::new(0);
    let plan = |taken: Option<&[bool]>| -> Option<(Program, f64, Vec<bool>)> {
        priced.fetch_add(1, Ordering::Relaxed);
        let allowed = |class: Id, node: &Op| match (taken, rows_in.get(&class)) {
            (Some(taken), Some(rows)) => match rows.iter().find(|(_, row)| row == node) {
                Some(&(g, _)) => taken[g],
                None => !rows.iter().any(|&(g, _)| taken[g]),
            },
            _ => true,
        };
        let extraction = extract_dag_greedy_where(egraph, &roots, &options.profile, options.dtype, &allowed)?;
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
        // A group runs batched when no member runs its own op: each is a row
        // of the batched op, or not needed apart from it at all.
        let batched = rows
            .iter()
            .map(|members| {
                members.iter().all(|(class, _)| {
                    let class = egraph.find(*class);
                    extraction.choice.get(&class).is_none_or(|&n| {
                        let node = &egraph[class].nodes[n];
                        rows_in[&class].iter().any(|(_, row)| row == node)
                    })
                })
            })
            .collect();
        Some((extracted, cost, batched))
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
    let greedy_us = plan(None).map(|(_, cost, _)| cost);
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
    })
}
