//! Exact DAG extraction: the cheapest choice of one node per needed class,
//! each class paid for once, as an integer linear program (extraction-gym's
//! `ilp-cbc` formulation) solved by `microlp`, a pure-Rust branch and bound.
//!
//! Greedy DAG extraction ([`crate::egraph::extract`]) prices each class by
//! its own cheapest DAG, so a batched op shared by k member classes looks,
//! from each member, as dear as the whole op plus its stacking: it is never
//! picked although the program as a whole pays for it once. The ILP sees the
//! whole program. It is exponential in the worst case, so it runs under a
//! time limit and a size limit, starts from the greedy choice (an incumbent
//! from the first node of the search), and says how it ended: proved
//! optimal, cut off with the gap it had, or not run.
//!
//! The program: one 0/1 variable per node, priced at the node's cost; each
//! root class chooses one node; a chosen node needs one chosen node in each
//! child class; each class chooses at most one. Cycles (an e-graph has them:
//! `stack(index(s, 0), ...)` is in the class of `s`) are cut lazily: every
//! two-class cycle up front, and any longer cycle found in a solution by a
//! constraint that forbids choosing all of its nodes, then solved again.

use crate::egraph::analysis::Graph;
use crate::egraph::cost::CostProfile;
use crate::egraph::extract::{node_cost, Extraction};
use crate::ir::Dtype;
use egg::{Id, Language};
use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOptions, TerminationReason, Variable};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The limits of exact extraction.
#[derive(Clone, Debug)]
pub struct ExactLimits {
    /// Longest time in the solver, all rounds together.
    pub time: Duration,
    /// Above this many candidate nodes (reachable, finite cost), it is not run.
    pub nodes: usize,
    /// Most rounds of solving again after cutting a cycle.
    pub cycle_rounds: usize,
}

impl Default for ExactLimits {
    fn default() -> Self {
        ExactLimits {
            time: Duration::from_secs(2),
            nodes: 20_000,
            cycle_rounds: 50,
        }
    }
}

/// How exact extraction ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExactStatus {
    /// The choice is proved cheapest.
    Optimal,
    /// A limit stopped the solver; the choice is the best it had, within
    /// `gap` (relative) of the best bound when one was known.
    CutOff {
        /// Which limit.
        limit: String,
        /// Relative gap between the choice and the bound.
        gap: Option<f64>,
    },
    /// Not run, or no usable answer: why.
    NotRun(String),
}

impl ExactStatus {
    /// One phrase for reports.
    pub fn describe(&self) -> String {
        match self {
            ExactStatus::Optimal => "optimal".into(),
            ExactStatus::CutOff { limit, gap: Some(gap) } => {
                format!("cut off by the {limit} (within {:.1}% of the bound)", gap * 100.0)
            }
            ExactStatus::CutOff { limit, gap: None } => format!("cut off by the {limit} (no bound yet)"),
            ExactStatus::NotRun(why) => format!("not run: {why}"),
        }
    }
}

/// The result of exact extraction.
#[derive(Clone, Debug)]
pub struct ExactExtraction {
    /// The choice, when the solver produced one (its DAG cost in `cost`).
    pub extraction: Option<Extraction>,
    /// How it ended.
    pub status: ExactStatus,
    /// Seconds spent (building and solving).
    pub seconds: f64,
    /// Candidate nodes (the program's variables).
    pub nodes: usize,
    /// Cycles cut after a solution contained them.
    pub cycles_cut: usize,
}

/// Extracts the cheapest DAG for `roots` under the node costs of `profile`
/// in `dtype` (the costs greedy extraction uses), starting from `start`
/// (normally greedy's choice) when given.
pub fn extract_dag_exact(
    egraph: &Graph,
    roots: &[Id],
    profile: &CostProfile,
    dtype: Dtype,
    start: Option<&Extraction>,
    limits: &ExactLimits,
) -> ExactExtraction {
    let began = Instant::now();
    let roots: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    let candidates = Candidates::collect(egraph, &roots, profile, dtype);
    let done = |extraction, status, cycles_cut| ExactExtraction {
        extraction,
        status,
        seconds: began.elapsed().as_secs_f64(),
        nodes: candidates.nodes.len(),
        cycles_cut,
    };
    if candidates.nodes.len() > limits.nodes {
        let why = format!(
            "{} candidate nodes, above the limit of {}",
            candidates.nodes.len(),
            limits.nodes
        );
        return done(None, ExactStatus::NotRun(why), 0);
    }
    if roots.iter().any(|r| !candidates.by_class.contains_key(r)) {
        return done(None, ExactStatus::NotRun("a root has no finite-cost node".into()), 0);
    }
    let (mut problem, vars) = candidates.problem(&roots);
    let warm: Option<Vec<(Variable, f64)>> = start.map(|s| {
        (candidates.nodes.iter().enumerate())
            .map(|(i, &(class, index, _))| (vars[i], f64::from(u8::from(s.choice.get(&class) == Some(&index)))))
            .collect()
    });
    let mut cycles_cut = 0;
    loop {
        let left = limits.time.saturating_sub(began.elapsed());
        let mut options = SolveOptions::default();
        options.time_limit = Some(left);
        options.warm_start = warm.clone();
        let outcome = match problem.solve_with(options) {
            Ok(outcome) => outcome,
            Err(e) => return done(None, ExactStatus::NotRun(format!("the solver failed: {e}")), cycles_cut),
        };
        let reason = outcome.termination_reason();
        let Some(solution) = outcome.solution() else {
            return done(None, cut_off("time limit", None), cycles_cut);
        };
        let chosen: Vec<bool> = vars.iter().map(|&v| solution.var_value_raw(v) > 0.5).collect();
        let Some(choice) = candidates.walk(egraph, &roots, &chosen) else {
            let why = "the solver's answer leaves a needed class without a node".into();
            return done(None, ExactStatus::NotRun(why), cycles_cut);
        };
        if let Some(cycle) = find_cycle(egraph, &choice) {
            if cycles_cut >= limits.cycle_rounds || began.elapsed() >= limits.time {
                let status = ExactStatus::NotRun(format!("{cycles_cut} cycles cut and the solution still has one"));
                return done(None, status, cycles_cut);
            }
            let cut: Vec<(Variable, f64)> = cycle.iter().map(|node| (vars[candidates.index[node]], 1.0)).collect();
            problem.add_constraint(cut.as_slice(), ComparisonOp::Le, cycle.len() as f64 - 1.0);
            cycles_cut += 1;
            continue;
        }
        let cost = choice
            .iter()
            .map(|(class, &index)| candidates.cost[&(*class, index)])
            .sum();
        let status = match reason {
            TerminationReason::ProvenOptimal => ExactStatus::Optimal,
            TerminationReason::MipGap => cut_off("gap asked for", solution.gap()),
            TerminationReason::TimeLimit => cut_off("time limit", solution.gap()),
            TerminationReason::NodeLimit => cut_off("node limit", solution.gap()),
            // The enum is non-exhaustive: a reason added later is a limit too.
            _ => cut_off("solver's limit", solution.gap()),
        };
        return done(Some(Extraction { choice, cost }), status, cycles_cut);
    }
}

fn cut_off(limit: &str, gap: Option<f64>) -> ExactStatus {
    ExactStatus::CutOff {
        limit: limit.into(),
        gap,
    }
}

/// The nodes the program chooses among: reachable from the roots through
/// nodes of finite cost, none of them its own child.
struct Candidates {
    /// (class, node index, cost), in a fixed order.
    nodes: Vec<(Id, usize, f64)>,
    /// Position in `nodes` of each (class, node index).
    index: HashMap<(Id, usize), usize>,
    cost: HashMap<(Id, usize), f64>,
    /// Positions in `nodes` of each class's candidates.
    by_class: HashMap<Id, Vec<usize>>,
    /// Each candidate's child classes, canonical and distinct.
    children: Vec<Vec<Id>>,
}

impl Candidates {
    fn collect(egraph: &Graph, roots: &[Id], profile: &CostProfile, dtype: Dtype) -> Candidates {
        let mut found = Candidates {
            nodes: vec![],
            index: HashMap::default(),
            cost: HashMap::default(),
            by_class: HashMap::default(),
            children: vec![],
        };
        let mut seen: HashSet<Id> = roots.iter().copied().collect();
        let mut stack: Vec<Id> = roots.to_vec();
        while let Some(class) = stack.pop() {
            for (index, node) in egraph[class].nodes.iter().enumerate() {
                let cost = node_cost(egraph, class, index, profile, dtype);
                let mut children: Vec<Id> = node.children().iter().map(|&c| egraph.find(c)).collect();
                children.sort();
                children.dedup();
                if !cost.is_finite() || children.contains(&class) {
                    continue;
                }
                for &child in &children {
                    if seen.insert(child) {
                        stack.push(child);
                    }
                }
                found.index.insert((class, index), found.nodes.len());
                found.cost.insert((class, index), cost);
                found.by_class.entry(class).or_default().push(found.nodes.len());
                found.nodes.push((class, index, cost));
                found.children.push(children);
            }
        }
        found
    }

    /// The integer program (see the module doc) and its variables, one per candidate.
    fn problem(&self, roots: &[Id]) -> (Problem, Vec<Variable>) {
        let mut problem = Problem::new(OptimizationDirection::Minimize);
        let vars: Vec<Variable> = self
            .nodes
            .iter()
            .map(|&(_, _, cost)| problem.add_binary_var(cost))
            .collect();
        let empty = Vec::new();
        let of = |class: &Id| self.by_class.get(class).unwrap_or(&empty);
        let mut distinct = roots.to_vec();
        distinct.sort();
        distinct.dedup();
        for root in &distinct {
            let one: Vec<(Variable, f64)> = of(root).iter().map(|&i| (vars[i], 1.0)).collect();
            problem.add_constraint(one.as_slice(), ComparisonOp::Ge, 1.0);
        }
        for members in self.by_class.values().filter(|m| m.len() > 1) {
            let at_most_one: Vec<(Variable, f64)> = members.iter().map(|&i| (vars[i], 1.0)).collect();
            problem.add_constraint(at_most_one.as_slice(), ComparisonOp::Le, 1.0);
        }
        for (i, children) in self.children.iter().enumerate() {
            for child in children {
                // x_i <= sum of the child's nodes (a child with none forbids x_i).
                let mut needs: Vec<(Variable, f64)> = of(child).iter().map(|&j| (vars[j], 1.0)).collect();
                needs.push((vars[i], -1.0));
                problem.add_constraint(needs.as_slice(), ComparisonOp::Ge, 0.0);
                // Two-class cycles, cut up front: i's class is a child of a node of `child`.
                for &j in of(child) {
                    if j != i && self.children[j].contains(&self.nodes[i].0) {
                        problem.add_constraint([(vars[i], 1.0), (vars[j], 1.0)], ComparisonOp::Le, 1.0);
                    }
                }
            }
        }
        (problem, vars)
    }

    /// The classes the chosen nodes reach from the roots, each with its chosen node.
    /// `None` if a class reached has no chosen node (a solution off by rounding).
    fn walk(&self, egraph: &Graph, roots: &[Id], chosen: &[bool]) -> Option<HashMap<Id, usize>> {
        let mut choice: HashMap<Id, usize> = HashMap::default();
        let mut stack: Vec<Id> = roots.to_vec();
        while let Some(class) = stack.pop() {
            if choice.contains_key(&class) {
                continue;
            }
            // The constraints ensure one; the cheapest if rounding left several.
            let pick = self.by_class[&class]
                .iter()
                .copied()
                .filter(|&i| chosen[i])
                .min_by(|&a, &b| self.nodes[a].2.total_cmp(&self.nodes[b].2));
            let i = pick?;
            choice.insert(class, self.nodes[i].1);
            stack.extend(
                egraph[class].nodes[self.nodes[i].1]
                    .children()
                    .iter()
                    .map(|&c| egraph.find(c)),
            );
        }
        Some(choice)
    }
}

/// A cycle among the chosen nodes, as (class, node index) pairs, if any.
fn find_cycle(egraph: &Graph, choice: &HashMap<Id, usize>) -> Option<Vec<(Id, usize)>> {
    // Iterative depth-first search; a class on the current path seen again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut mark: HashMap<Id, Mark> = HashMap::default();
    let children = |class: Id| -> Vec<Id> {
        match choice.get(&class) {
            Some(&n) => egraph[class].nodes[n]
                .children()
                .iter()
                .map(|&c| egraph.find(c))
                .collect(),
            None => vec![],
        }
    };
    for &start in choice.keys() {
        if mark.contains_key(&start) {
            continue;
        }
        let mut path: Vec<(Id, Vec<Id>)> = vec![(start, children(start))];
        mark.insert(start, Mark::OnPath);
        while let Some((class, pending)) = path.last_mut() {
            let class = *class;
            match pending.pop() {
                Some(child) => match mark.get(&child) {
                    Some(Mark::OnPath) => {
                        let from = path.iter().position(|(c, _)| *c == child).unwrap_or(0);
                        return Some(path[from..].iter().map(|(c, _)| (*c, choice[c])).collect());
                    }
                    Some(Mark::Done) => {}
                    None => {
                        mark.insert(child, Mark::OnPath);
                        let next = children(child);
                        path.push((child, next));
                    }
                },
                None => {
                    mark.insert(class, Mark::Done);
                    path.pop();
                }
            }
        }
    }
    None
}
