//! Batching by rewriting: the two ways to batch a program live side by side
//! in one e-graph, and a cost model with DAG-aware extraction chooses.
//!
//! Following `shared/design/batching-in-an-egraph.md`: for every per-example
//! subterm `t` that depends on a batched input there is a spec node
//! `(vmap t)` ("the stack over the batch of t on each example"), which cannot
//! be executed. Two families of implementations join its e-class:
//! - fused: the rules of `rules/batching.rules` (JAX's batching rules as
//!   rewrites) give one batched op per op;
//! - duplicated: `stack(t_0, ..., t_{B-1})`, where copy `t_i` reads row `i`
//!   of each batched input; copies share every unmapped subterm (params).
//!
//! The bridge `t_i = index((vmap t), i)` lets a per-example copy read row `i`
//! of a fused child, and a fused op read a stack of copies: mixed plans. An op
//! with no fusing rule keeps only its duplicated implementation, so it still
//! batches.

use crate::egraph::analysis::{Graph, ShapeAnalysis};
use crate::egraph::cost::{program_cost, CostProfile};
use crate::egraph::extract::{extract_dag, extract_dag_greedy};
use crate::egraph::rules::RuleSet;
use crate::error::{Error, Result};
use crate::ir::{Binary, Decl, Num, Op, Program, Reduce};
use egg::{Id, Language, Runner, Symbol};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Which ways to batch the batcher may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Both ways and every mix; the cost model chooses.
    Auto,
    /// Duplicate the per-example graph B times.
    Unroll,
    /// One batched op per op; an op with no fusing rule is duplicated.
    Fuse,
}

/// What each output of the batched program is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchReduce {
    /// The mean over the batch (the mini-batch loss).
    Mean,
    /// The sum over the batch.
    Sum,
    /// The per-example outputs stacked along a new leading axis.
    None,
}

/// Size and cost of one plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanSummary {
    /// Nodes of the program (after CSE).
    pub nodes: usize,
    /// Its cost under the profile (µs, each node once).
    pub cost: f64,
}

/// What the batcher did.
#[derive(Clone, Debug, Serialize)]
pub struct BatchReport {
    /// Batch size.
    pub size: usize,
    /// Inputs batched over.
    pub over: Vec<String>,
    /// The strategy asked for.
    pub strategy: Strategy,
    /// The cost profile's name.
    pub profile: String,
    /// The program returned.
    pub chosen: PlanSummary,
    /// The pure duplicated program.
    pub unroll: Option<PlanSummary>,
    /// The fused program (ops without a fusing rule duplicated).
    pub fuse: Option<PlanSummary>,
    /// Per-example ops that have no fused implementation (they are duplicated).
    pub unfused_ops: Vec<String>,
    /// E-nodes in the e-graph the program was extracted from.
    pub egraph_nodes: usize,
    /// E-classes in it.
    pub egraph_classes: usize,
    /// Rewrite iterations.
    pub iterations: usize,
    /// Why rewriting stopped (saturated, or which limit was hit).
    pub stop_reason: String,
    /// Seconds spent building, rewriting and extracting.
    pub seconds: f64,
    /// Anything else worth knowing (e.g. duplication left out for size).
    pub notes: Vec<String>,
}

/// The batched program and the report.
#[derive(Clone, Debug)]
pub struct Batched {
    /// The mini-batched program: batched inputs keep their names and gain a leading axis of size B.
    pub program: Program,
    /// What was done, and the alternatives' costs.
    pub report: BatchReport,
}

/// Builds the mini-batched program, in the style of egg's `Runner`:
/// `Batcher::new(&program).over(["x"]).size(64).strategy(Strategy::Auto).run()?`.
#[derive(Clone, Debug)]
pub struct Batcher<'p> {
    program: &'p Program,
    over: Option<Vec<String>>,
    size: usize,
    strategy: Strategy,
    reduce: BatchReduce,
    profile: CostProfile,
    rules: RuleSet,
    node_limit: usize,
    iter_limit: usize,
    time_limit: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Duplicate {
    All,
    WhereNeeded,
}

struct Plan {
    program: Program,
    cost: f64,
    egraph_nodes: usize,
    egraph_classes: usize,
    iterations: usize,
    stop_reason: String,
    unfused_ops: Vec<String>,
    notes: Vec<String>,
}

fn example_symbol(name: &str) -> Symbol {
    // A name the language cannot write, so it never clashes.
    Symbol::from(format!("{name}'"))
}

impl<'p> Batcher<'p> {
    /// A batcher for `program`: batch size 2, over every input, mean, auto, cpu profile, built-in rules.
    pub fn new(program: &'p Program) -> Self {
        Batcher {
            program,
            over: None,
            size: 2,
            strategy: Strategy::Auto,
            reduce: BatchReduce::Mean,
            profile: CostProfile::cpu(),
            rules: RuleSet::builtin(),
            node_limit: 300_000,
            iter_limit: 30,
            time_limit: Duration::from_secs(10),
        }
    }
    /// The inputs to batch over (default: every input).
    pub fn over<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.over = Some(names.into_iter().map(Into::into).collect());
        self
    }
    /// The batch size B.
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }
    /// Which ways to batch.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
    /// What each output becomes.
    pub fn reduce(mut self, reduce: BatchReduce) -> Self {
        self.reduce = reduce;
        self
    }
    /// The cost profile.
    pub fn profile(mut self, profile: CostProfile) -> Self {
        self.profile = profile;
        self
    }
    /// The rules.
    pub fn rules(mut self, rules: RuleSet) -> Self {
        self.rules = rules;
        self
    }
    /// Most e-nodes (rewriting stops there; duplication is left out past it).
    pub fn node_limit(mut self, limit: usize) -> Self {
        self.node_limit = limit;
        self
    }
    /// Most rewrite iterations.
    pub fn iter_limit(mut self, limit: usize) -> Self {
        self.iter_limit = limit;
        self
    }
    /// Longest time spent rewriting.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    fn over_names(&self) -> Result<Vec<String>> {
        let names = match &self.over {
            Some(names) => names.clone(),
            None => self.program.inputs.iter().map(|d| d.name.clone()).collect(),
        };
        for n in &names {
            if self.program.params.iter().any(|d| &d.name == n) {
                return Err(Error::Unsupported(format!(
                    "`{n}` is a param: params are shared, never batched"
                )));
            }
            if !self.program.is_input(n) {
                return Err(Error::Unsupported(format!("`{n}` is not an input of the program")));
            }
        }
        Ok(names)
    }

    /// Batches the program.
    pub fn run(&self) -> Result<Batched> {
        let start = Instant::now();
        if self.size == 0 {
            return Err(Error::Unsupported("the batch size must be at least 1".into()));
        }
        let over = self.over_names()?;
        let summary = |p: &Plan| PlanSummary {
            nodes: p.program.node_count(),
            cost: p.cost,
        };
        // The pure plans, for the report (and as candidates for `auto`).
        let unroll = self.plan(&over, false, Duplicate::All);
        let fuse = self.plan(&over, true, Duplicate::WhereNeeded);
        let (unroll_summary, fuse_summary) = (unroll.as_ref().ok().map(summary), fuse.as_ref().ok().map(summary));
        let chosen = match self.strategy {
            Strategy::Unroll => unroll?,
            Strategy::Fuse => fuse?,
            Strategy::Auto => {
                let mixed = self.plan(&over, true, Duplicate::All);
                cheapest([("mixed", mixed), ("fused", fuse), ("unrolled", unroll)])?
            }
        };
        let report = BatchReport {
            size: self.size,
            over,
            strategy: self.strategy,
            profile: self.profile.name.clone(),
            chosen: summary(&chosen),
            unroll: unroll_summary,
            fuse: fuse_summary,
            unfused_ops: chosen.unfused_ops,
            egraph_nodes: chosen.egraph_nodes,
            egraph_classes: chosen.egraph_classes,
            iterations: chosen.iterations,
            stop_reason: chosen.stop_reason,
            seconds: start.elapsed().as_secs_f64(),
            notes: chosen.notes,
        };
        Ok(Batched {
            program: chosen.program,
            report,
        })
    }

    /// The declared shapes for the e-graph: a batched input is there twice,
    /// per example (`x'`) and batched (`x`, with the leading axis).
    fn analysis(&self, batched: &HashSet<&str>) -> ShapeAnalysis {
        let mut vars = HashMap::new();
        for d in self.program.inputs.iter().chain(&self.program.params) {
            if batched.contains(d.name.as_str()) {
                vars.insert(example_symbol(&d.name), d.shape.clone());
                vars.insert(Symbol::from(&d.name), d.shape.with_leading(self.size));
            } else {
                vars.insert(Symbol::from(&d.name), d.shape.clone());
            }
        }
        let mut analysis = ShapeAnalysis::new(vars);
        analysis.over = batched.iter().map(|n| example_symbol(n)).collect();
        analysis.batch = self.size;
        analysis
    }

    /// Adds the per-example program (batched inputs renamed) and a spec node
    /// for every mapped subterm; the spec of a batched input is the batched input.
    fn add_program(&self, egraph: &mut Graph, batched: &HashSet<&str>) -> (Vec<Id>, Vec<Option<Id>>) {
        let mut example: Vec<Id> = Vec::with_capacity(self.program.node_count());
        for node in self.program.expr.as_ref() {
            let node = match node.as_var() {
                Some(v) if batched.contains(v.as_str()) => Op::Var(example_symbol(v.as_str())),
                _ => node.clone().map_children(|c| example[usize::from(c)]),
            };
            example.push(egraph.add(node));
        }
        let mut spec: Vec<Option<Id>> = vec![None; example.len()];
        for (i, &class) in example.iter().enumerate() {
            if egraph[class].data.mapped {
                let s = egraph.add(Op::Vmap(class));
                if let Some(v) = self.program.expr[Id::from(i)].as_var() {
                    let input = egraph.add(Op::Var(v));
                    egraph.union(s, input);
                }
                spec[i] = Some(s);
            }
        }
        egraph.rebuild();
        (example, spec)
    }

    /// Runs the rules to saturation or a limit; returns the e-graph, the
    /// iterations and why it stopped.
    fn saturate(&self, egraph: Graph) -> (Graph, usize, String) {
        let runner = Runner::default()
            .with_egraph(egraph)
            .with_node_limit(self.node_limit)
            .with_iter_limit(self.iter_limit)
            .with_time_limit(self.time_limit)
            .run(&self.rules.rewrites());
        let stop_reason = match &runner.stop_reason {
            Some(egg::StopReason::Saturated) => "saturated".to_string(),
            Some(egg::StopReason::NodeLimit(n)) => format!("node limit ({n} e-nodes)"),
            Some(egg::StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
            Some(egg::StopReason::TimeLimit(s)) => format!("time limit ({s} s)"),
            Some(egg::StopReason::Other(s)) => s.clone(),
            None => "not run".to_string(),
        };
        (runner.egraph, runner.iterations.len(), stop_reason)
    }

    /// The root of each output: the mean, sum or stack over the batch.
    fn output_roots(&self, egraph: &mut Graph, example: &[Id], spec: &[Option<Id>]) -> Vec<Id> {
        let count = egraph.add(Op::Num(Num(self.size as f64)));
        let zero = egraph.add(Op::Num(Num(0.0)));
        let roots = self
            .program
            .outputs
            .iter()
            .map(|(_, id)| {
                let i = usize::from(*id);
                match (spec[i], self.reduce) {
                    (Some(s), BatchReduce::Mean) => egraph.add(Op::ReduceAxis(Reduce::Mean, [s, zero])),
                    (Some(s), BatchReduce::Sum) => egraph.add(Op::ReduceAxis(Reduce::Sum, [s, zero])),
                    (Some(s), BatchReduce::None) => s,
                    (None, BatchReduce::Mean) => example[i],
                    (None, BatchReduce::Sum) => egraph.add(Op::Binary(Binary::Mul, [example[i], count])),
                    (None, BatchReduce::None) => egraph.add(Op::Repeat([example[i], count])),
                }
            })
            .collect();
        egraph.rebuild();
        roots
    }

    /// The cheapest program the e-graph holds for `roots`, with the batched inputs declared.
    fn extract(&self, egraph: &Graph, roots: &[Id], batched: &HashSet<&str>) -> Result<Program> {
        let extraction = extract_dag_greedy(egraph, roots, &self.profile)
            .ok_or_else(|| Error::Unsupported("extraction found no executable program".into()))?;
        let (expr, placed) = extract_dag(
            roots,
            |c| egraph[c].nodes[extraction.choice[&c]].clone(),
            |c| egraph.find(c),
        );
        let inputs = self
            .program
            .inputs
            .iter()
            .map(|d| Decl {
                name: d.name.clone(),
                shape: if batched.contains(d.name.as_str()) {
                    d.shape.with_leading(self.size)
                } else {
                    d.shape.clone()
                },
            })
            .collect();
        let outputs = self
            .program
            .outputs
            .iter()
            .zip(roots)
            .map(|((name, _), root)| (name.clone(), placed[&egraph.find(*root)]))
            .collect();
        Ok(Program::new(
            inputs,
            self.program.params.clone(),
            expr,
            outputs,
            vec![],
        )?)
    }

    fn plan(&self, over: &[String], fuse: bool, duplicate: Duplicate) -> Result<Plan> {
        let batched: HashSet<&str> = over.iter().map(String::as_str).collect();
        let mut egraph = Graph::new(self.analysis(&batched));
        let (example, spec) = self.add_program(&mut egraph, &batched);
        let (mut iterations, mut stop_reason) = (0, "no rewriting (duplication only)".to_string());
        if fuse {
            (egraph, iterations, stop_reason) = self.saturate(egraph);
        }
        // Which specs have no implementation other than themselves.
        let unfused: Vec<usize> = (0..example.len())
            .filter(|&i| spec[i].is_some_and(|s| egraph[s].nodes.iter().all(|n| matches!(n, Op::Vmap(_)))))
            .collect();
        let mut unfused_ops: Vec<String> = unfused
            .iter()
            .map(|&i| self.program.expr[Id::from(i)].to_string())
            .collect();
        unfused_ops.sort();
        unfused_ops.dedup();

        let mut notes = vec![];
        let mapped_count = spec.iter().flatten().count();
        let mut duplicate = duplicate;
        // Only a plan that fuses has another way than duplication; the pure
        // unrolled plan duplicates every op whatever its size.
        if fuse
            && duplicate == Duplicate::All
            && 3 * self.size * mapped_count + egraph.total_number_of_nodes() > self.node_limit
        {
            notes.push(format!(
                "duplication of every op left out: {} copies of {mapped_count} ops would pass the node limit of {}; only ops without a fusing rule are duplicated",
                self.size, self.node_limit
            ));
            duplicate = Duplicate::WhereNeeded;
        }
        let to_copy: HashSet<usize> = match duplicate {
            Duplicate::All => (0..example.len()).filter(|&i| spec[i].is_some()).collect(),
            Duplicate::WhereNeeded => unfused.iter().copied().collect(),
        };
        self.duplicate(&mut egraph, &example, &spec, &to_copy, duplicate == Duplicate::All);
        egraph.rebuild();
        if egraph.total_number_of_nodes() > self.node_limit {
            notes.push(format!(
                "the e-graph has {} e-nodes, more than the node limit of {}: the limit stops rewriting, not the duplication this plan needs",
                egraph.total_number_of_nodes(),
                self.node_limit
            ));
        }
        if let Some(conflict) = egraph.analysis.conflicts.first() {
            return Err(Error::UnsoundRule(conflict.clone()));
        }
        let roots = self.output_roots(&mut egraph, &example, &spec);
        let program = self.extract(&egraph, &roots, &batched)?;
        Ok(Plan {
            cost: program_cost(&self.profile, &program),
            program,
            egraph_nodes: egraph.total_number_of_nodes(),
            egraph_classes: egraph.number_of_classes(),
            iterations,
            stop_reason,
            unfused_ops,
            notes,
        })
    }

    /// Adds `stack(t_0, ..., t_{B-1})` to the spec class of every node in
    /// `to_copy`; copy `t_i` reads row `i` of the batched inputs, reuses
    /// unmapped subterms as they are, and reads row `i` of the spec of a
    /// child that is not copied. With `bridge`, also `t_i = index(vmap t, i)`.
    fn duplicate(
        &self,
        egraph: &mut Graph,
        example: &[Id],
        spec: &[Option<Id>],
        to_copy: &HashSet<usize>,
        bridge: bool,
    ) {
        let b = self.size;
        let expr = self.program.expr.as_ref();
        let rows: Vec<Id> = (0..b).map(|i| egraph.add(Op::Num(Num(i as f64)))).collect();
        let mut copies: HashMap<usize, Vec<Id>> = HashMap::new();
        for (i, node) in expr.iter().enumerate() {
            if !to_copy.contains(&i) {
                continue;
            }
            let s = spec[i].expect("only mapped nodes are copied");
            let mut row_copies = Vec::with_capacity(b);
            for (row, &literal) in rows.iter().enumerate() {
                let copy = match node.as_var() {
                    Some(v) => egraph.add(Op::Index([
                        egraph.lookup(Op::Var(v)).expect("the batched input"),
                        literal,
                    ])),
                    None => {
                        let mut children = Vec::with_capacity(node.len());
                        for &c in node.children() {
                            let c = usize::from(c);
                            let child = match (copies.get(&c), spec[c]) {
                                (Some(cs), _) => cs[row],
                                (None, Some(child_spec)) => egraph.add(Op::Index([child_spec, literal])),
                                (None, None) => example[c],
                            };
                            children.push(child);
                        }
                        let mut k = 0;
                        egraph.add(node.clone().map_children(|_| {
                            k += 1;
                            children[k - 1]
                        }))
                    }
                };
                if bridge {
                    let row_of_spec = egraph.add(Op::Index([s, literal]));
                    egraph.union(copy, row_of_spec);
                }
                row_copies.push(copy);
            }
            let stack = egraph.add(Op::Stack(row_copies.clone().into()));
            egraph.union(s, stack);
            copies.insert(i, row_copies);
        }
    }
}

/// The cheapest of the candidate plans. A plan that failed for a limit is a
/// note while another succeeds; an unsound rule is an error, never a fallback.
fn cheapest<const N: usize>(candidates: [(&str, Result<Plan>); N]) -> Result<Plan> {
    let mut plans: Vec<Plan> = vec![];
    let mut failures = vec![];
    for (name, plan) in candidates {
        match plan {
            Ok(p) => plans.push(p),
            Err(e @ Error::UnsoundRule(_)) => return Err(e),
            Err(e) => failures.push((name, e)),
        }
    }
    let Some(best) = (0..plans.len()).min_by(|&a, &b| plans[a].cost.total_cmp(&plans[b].cost)) else {
        return Err(failures.remove(0).1);
    };
    let mut chosen = plans.swap_remove(best);
    chosen
        .notes
        .extend(failures.iter().map(|(name, e)| format!("the {name} plan failed: {e}")));
    Ok(chosen)
}
