//! Batching by rewriting: the two ways to batch a program live side by side
//! in one e-graph, and a cost model with DAG-aware extraction chooses.
//!
//! Following `docs/design/batching-in-an-egraph.md`: for every per-example
//! subterm `t` that depends on a batched input there is a spec node
//! `(vmap t)` ("the stack over the batch of t on each example"), which cannot
//! be executed. Two families of implementations join its e-class:
//! - fused: the rules of `rules/batching.rules` (JAX's batching rules as
//!   rewrites) give one batched op per op;
//! - duplicated: `stack(t_0, ..., t_{B-1})`, where copy `t_i` reads row `i`
//!   of each batched input; copies share every unmapped subterm (params).
//!
//! The bridge `t_i = index((vmap t), i)` lets a per-example copy read row `i`
//! of a fused child, and a fused op read a stack of copies: mixed plans. Every
//! op has a fusing rule at every rank; an op whose rule is left out
//! (`RuleSet::without`) keeps only its duplicated implementation, so it still
//! batches.

use crate::egraph::analysis::{Graph, ShapeAnalysis};
use crate::egraph::chunking::{chunk_plan, chunk_sizes};
use crate::egraph::cost::{predict_us, CostProfile};
use crate::egraph::extract::{extract_dag, extract_forced_where, GreedyDag};
use crate::egraph::loop_plan::loop_plan;
use crate::egraph::rules::RuleSet;
use crate::egraph::unloop::fuse_loops;
use crate::error::{Error, Result};
use crate::ir::{predict_peak_bytes, BatchReduce, Binary, Decl, Dtype, Num, Op, Program, Reduce, Run, Structural};
use egg::StopReason;
use egg::{BackoffScheduler, Id, Language, RecExpr, Runner, Symbol};
use serde::Serialize;
use std::cell::OnceCell;
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
    /// One batched op per op; an op whose fusing rule is left out is duplicated.
    Fuse,
}

/// Size, cost and memory of one plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanSummary {
    /// Which plan: `fused`, `mixed`, `loop`, or `chunks of K`.
    pub name: String,
    /// Nodes of the program (after CSE).
    pub nodes: usize,
    /// Its cost under the profile for the run priced (µs; a loop's body once per row).
    pub cost: f64,
    /// The most bytes of values the interpreter is predicted to hold at once running it (f64).
    pub predicted_peak_bytes: usize,
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
    /// Which run was priced: `grad` (forward and backward) or `eval`.
    pub run: Run,
    /// The memory budget asked for, in bytes.
    pub memory_budget: Option<usize>,
    /// The program returned.
    pub chosen: PlanSummary,
    /// Every plan considered.
    pub plans: Vec<PlanSummary>,
    /// The pure duplicated program.
    pub unroll: Option<PlanSummary>,
    /// The fused program (ops without a fusing rule duplicated).
    pub fuse: Option<PlanSummary>,
    /// Per-example ops that have no fused implementation (they are duplicated).
    pub unfused_ops: Vec<String>,
    /// E-nodes in the e-graph the program was extracted from (0 for the
    /// loop plan, which is written without one).
    pub egraph_nodes: usize,
    /// E-classes in it.
    pub egraph_classes: usize,
    /// Rewrite iterations.
    pub iterations: usize,
    /// Why rewriting stopped: egg's reason (saturated, or which limit was
    /// hit); `Other("no rewriting (loop only)")` when the plan needed none.
    /// In JSON, the sentence [`stop_reason_text`] gives.
    #[serde(serialize_with = "serialize_stop_reason")]
    pub stop_reason: StopReason,
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
    memory_budget: Option<usize>,
    run_kind: Run,
    dtype: Dtype,
}

/// Which implementations a plan may use for a batched subterm.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ways {
    /// A loop over the rows only (the duplicated plan, as one loop).
    Loop,
    /// Fused ops; a loop only for subterms no rule fuses.
    FuseWhereFusible,
    /// Fused ops and loops everywhere: every mix.
    Both,
}

/// The plans a batcher chooses from, and the pure plans' summaries.
struct Candidates {
    candidates: Vec<Result<Plan>>,
    unroll: Option<PlanSummary>,
    fuse: Option<PlanSummary>,
}

/// The per-example program with a spec for every mapped subterm, rewritten:
/// what the fused and the mixed plans start from.
struct Saturated {
    egraph: Graph,
    example: Vec<Id>,
    spec: Vec<Option<Id>>,
    iterations: usize,
    stop_reason: StopReason,
}

struct Plan {
    name: String,
    program: Program,
    cost: f64,
    peak: usize,
    egraph_nodes: usize,
    egraph_classes: usize,
    iterations: usize,
    stop_reason: StopReason,
    unfused_ops: Vec<String>,
    notes: Vec<String>,
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
            memory_budget: None,
            run_kind: Run::Grad,
            dtype: Dtype::F64,
        }
    }
    /// Choose the fastest plan whose predicted peak memory fits in `bytes`
    /// (chunk sizes included); an error if none does.
    pub fn memory_budget(mut self, bytes: Option<usize>) -> Self {
        self.memory_budget = bytes;
        self
    }
    /// Which run to price and to predict the memory of (default: `Run::Grad`).
    pub fn price_for(mut self, run: Run) -> Self {
        self.run_kind = run;
        self
    }
    /// The element type the program will run in, which the cost model prices
    /// (default: `Dtype::F64`, as `eval` runs).
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
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
        if self.program.loops().any() {
            // A batched program with loops (the duplicated plan): its loops fused first.
            let unlooped = fuse_loops(self.program, &self.rules)?;
            return Batcher {
                program: &unlooped,
                ..self.clone()
            }
            .run();
        }
        let start = Instant::now();
        let over = self.over_names()?;
        let Candidates {
            candidates,
            unroll: unroll_summary,
            fuse: fuse_summary,
        } = self.candidates(&over)?;
        let plans: Vec<PlanSummary> = candidates.iter().flatten().map(Plan::summary).collect();
        let chosen = self.choose(candidates)?;
        let report = BatchReport {
            size: self.size,
            over,
            strategy: self.strategy,
            profile: self.profile.name.clone(),
            run: self.run_kind,
            memory_budget: self.memory_budget,
            chosen: chosen.summary(),
            plans,
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

    /// The loop plan as greedy extraction finds it in the loop plan's
    /// e-graph (the per-example program, a spec and a loop for every mapped
    /// subterm, no rewriting): what [`Batcher::run`] writes directly, kept to
    /// check that the two agree (`tests/batching.rs`).
    #[doc(hidden)]
    pub fn loop_plan_by_extraction(&self) -> Result<Program> {
        let over = self.over_names()?;
        let batched: HashSet<&str> = over.iter().map(String::as_str).collect();
        let mut egraph = Graph::new(self.analysis(&batched));
        let (example, spec) = self.add_program(&mut egraph, &batched);
        let unrewritten = Saturated {
            egraph,
            example,
            spec,
            iterations: 0,
            stop_reason: StopReason::Other("no rewriting (loop only)".into()),
        };
        self.plans_from(&over, &[Ways::Loop], unrewritten)
            .remove(0)
            .map(|plan| plan.program)
    }

    /// Every plan the strategy allows (and the memory budget's chunked plans),
    /// each with its program: what [`Batcher::run`] chooses from. A plan that
    /// failed for a limit is left out; an unsound rule is an error.
    pub fn plans(&self) -> Result<Vec<(PlanSummary, Program)>> {
        if self.program.loops().any() {
            let unlooped = fuse_loops(self.program, &self.rules)?;
            return Batcher {
                program: &unlooped,
                ..self.clone()
            }
            .plans();
        }
        let over = self.over_names()?;
        let mut plans = vec![];
        for plan in self.candidates(&over)?.candidates {
            match plan {
                Ok(p) => plans.push((p.summary(), p.program)),
                Err(e @ Error::UnsoundRule(_)) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(plans)
    }

    /// The plans to choose from, and the two pure plans' summaries for the report.
    fn candidates(&self, over: &[String]) -> Result<Candidates> {
        self.check_size(over)?;
        // The fused and the mixed plans start from the same saturated
        // e-graph: rewrite once (the time of a long program is there).
        let saturated = self.saturated(over);
        let unroll = self.loop_plan(over);
        let (fuse, mixed) = match self.strategy {
            Strategy::Auto => {
                // One e-graph holds both: the fused plan is the mixed one's
                // choice without the loops it does not need.
                let mut both = self.plans_from(over, &[Ways::FuseWhereFusible, Ways::Both], saturated);
                let mixed = both.pop().expect("two plans");
                (both.pop().expect("two plans"), Some(mixed))
            }
            Strategy::Fuse | Strategy::Unroll => (
                self.plans_from(over, &[Ways::FuseWhereFusible], saturated).remove(0),
                None,
            ),
        };
        let (unroll_summary, fuse_summary) = (
            unroll.as_ref().ok().map(Plan::summary),
            fuse.as_ref().ok().map(Plan::summary),
        );
        let mut candidates: Vec<Result<Plan>> = match (self.strategy, mixed) {
            (Strategy::Unroll, _) => vec![unroll],
            (Strategy::Fuse, _) | (Strategy::Auto, None) => vec![fuse],
            // Fused first: of two plans that cost the same, the simpler name wins.
            (Strategy::Auto, Some(mixed)) => vec![fuse, mixed, unroll],
        };
        if self.memory_budget.is_some() && self.strategy != Strategy::Unroll {
            candidates.extend(self.chunk_plans(over, candidates.iter().flatten().find(|p| p.name == "fused")));
        }
        Ok(Candidates {
            candidates,
            unroll: unroll_summary,
            fuse: fuse_summary,
        })
    }

    /// The fused plan over chunks of every size worth trying.
    fn chunk_plans(&self, over: &[String], fused: Option<&Plan>) -> Vec<Result<Plan>> {
        let Some(fused) = fused else { return vec![] };
        let batched: HashSet<&str> = over.iter().map(String::as_str).collect();
        chunk_sizes(self.size)
            .into_iter()
            .map(|k| {
                let program = chunk_plan(&fused.program, &batched, k)?;
                Ok(Plan {
                    name: format!("chunks of {k}"),
                    notes: vec![],
                    ..self.priced(program, fused)
                })
            })
            .collect()
    }

    /// The cheapest candidate (that fits the memory budget, if there is one).
    /// A plan that failed for a limit is a note while another succeeds; an
    /// unsound rule is an error, never a fallback.
    fn choose(&self, candidates: Vec<Result<Plan>>) -> Result<Plan> {
        let mut plans: Vec<Plan> = vec![];
        let mut failures = vec![];
        for plan in candidates {
            match plan {
                Ok(p) => plans.push(p),
                Err(e @ Error::UnsoundRule(_)) => return Err(e),
                Err(e) => failures.push(e),
            }
        }
        if let Some(budget) = self.memory_budget {
            let smallest = plans.iter().min_by_key(|p| p.peak).map(|p| (p.peak, p.name.clone()));
            plans.retain(|p| p.peak <= budget);
            if plans.is_empty() {
                return Err(Error::Limit {
                    limit: budget as u64,
                    message: match smallest {
                        Some((peak, name)) => {
                            format!(
                                "no plan fits in {budget} bytes: the smallest predicted peak is {peak} bytes ({name})"
                            )
                        }
                        None => format!("no plan fits in {budget} bytes"),
                    },
                });
            }
        }
        let Some(best) = (0..plans.len()).min_by(|&a, &b| plans[a].cost.total_cmp(&plans[b].cost)) else {
            return Err(failures.remove(0));
        };
        let mut chosen = plans.swap_remove(best);
        chosen
            .notes
            .extend(failures.iter().map(|e| format!("a plan failed: {e}")));
        Ok(chosen)
    }

    /// `program` with its cost and predicted peak; the rest from `like`.
    fn priced(&self, program: Program, like: &Plan) -> Plan {
        Plan {
            name: like.name.clone(),
            cost: predict_us(&self.profile, &program, self.run_kind, self.dtype),
            peak: predict_peak_bytes(&program, self.run_kind, self.dtype.bytes()),
            program,
            egraph_nodes: like.egraph_nodes,
            egraph_classes: like.egraph_classes,
            iterations: like.iterations,
            stop_reason: like.stop_reason.clone(),
            unfused_ops: like.unfused_ops.clone(),
            notes: like.notes.clone(),
        }
    }

    /// Refuses a batch size whose batched values cannot be held, before any work.
    fn check_size(&self, over: &[String]) -> Result<()> {
        if self.size == 0 {
            return Err(Error::Unsupported("the batch size must be at least 1".into()));
        }
        let batched: HashSet<&str> = over.iter().map(String::as_str).collect();
        let too_large = |what: String, shape: &crate::ir::Shape| {
            let batched = shape.with_leading(self.size);
            batched.check_size().map_err(|reason| Error::Limit {
                limit: match batched.rank() > crate::ir::MAX_RANK {
                    true => crate::ir::MAX_RANK as u64,
                    false => crate::ir::MAX_ELEMENTS,
                },
                message: format!("batch size {}: {what} would have shape {batched}: {reason}", self.size),
            })
        };
        for d in self.program.inputs.iter().filter(|d| batched.contains(d.name.as_str())) {
            too_large(format!("input {}", d.name), &d.shape)?;
        }
        // Every value that depends on a batched input gets the leading axis too.
        let expr = self.program.expr.as_ref();
        let mut mapped = vec![false; expr.len()];
        for (i, node) in expr.iter().enumerate() {
            mapped[i] = node.as_var().is_some_and(|v| batched.contains(v.as_str()))
                || node.children().iter().any(|&c| mapped[usize::from(c)]);
            if mapped[i] {
                too_large(format!("the value of {node}"), self.program.shape(Id::from(i)))?;
            }
        }
        Ok(())
    }

    /// The declared shapes for the e-graph: a batched input has the leading axis.
    fn analysis(&self, batched: &HashSet<&str>) -> ShapeAnalysis {
        let mut vars = HashMap::new();
        for d in self.program.inputs.iter().chain(&self.program.params) {
            let shape = if batched.contains(d.name.as_str()) {
                d.shape.with_leading(self.size)
            } else {
                d.shape.clone()
            };
            vars.insert(Symbol::from(&d.name), shape);
        }
        let mut analysis = ShapeAnalysis::new(vars);
        analysis.batch = self.size;
        analysis
    }

    /// Adds the per-example program, in which a batched input `x` reads
    /// `row(x)`, and a spec node for every mapped subterm; the spec of
    /// `row(x)` is `x` itself.
    fn add_program(&self, egraph: &mut Graph, batched: &HashSet<&str>) -> (Vec<Id>, Vec<Option<Id>>) {
        let mut example: Vec<Id> = Vec::with_capacity(self.program.node_count());
        let mut spec: Vec<Option<Id>> = vec![None; self.program.node_count()];
        for node in self.program.expr.as_ref() {
            let class = match node.as_var() {
                Some(v) if batched.contains(v.as_str()) => {
                    let input = egraph.add(Op::Var(v));
                    let row = egraph.add(Op::Row(input));
                    let s = egraph.add(Op::Vmap(row));
                    egraph.union(s, input);
                    spec[example.len()] = Some(s);
                    row
                }
                _ => egraph.add(node.clone().map_children(|c| example[usize::from(c)])),
            };
            example.push(class);
        }
        for (i, &class) in example.iter().enumerate() {
            if spec[i].is_none() && egraph[class].data.mapped {
                spec[i] = Some(egraph.add(Op::Vmap(class)));
            }
        }
        egraph.rebuild();
        (example, spec)
    }

    /// Adds `map(t, B)` to the spec class of each subterm `t` in `looped`, and
    /// with `bridges`, `t = row(vmap t)` for every mapped subterm, so that a
    /// loop body can read a row of a value computed fused (mixed plans).
    fn add_loops(&self, egraph: &mut Graph, example: &[Id], spec: &[Option<Id>], looped: &[usize], bridges: bool) {
        let rows = egraph.add(Op::Num(Num(self.size as f64)));
        for &i in looped {
            if let Some(s) = spec[i] {
                let map = egraph.add(Op::Map([example[i], rows]));
                egraph.union(s, map);
            }
        }
        if bridges {
            for (i, &class) in example.iter().enumerate() {
                if let Some(s) = spec[i] {
                    let row = egraph.add(Op::Row(s));
                    egraph.union(class, row);
                }
            }
        }
        egraph.rebuild();
    }

    /// Runs the rules to saturation or a limit; returns the e-graph, the
    /// iterations and why it stopped.
    fn saturate(&self, egraph: Graph) -> (Graph, usize, StopReason) {
        saturate(egraph, &self.rules, self.node_limit, self.iter_limit, self.time_limit)
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
                    (None, BatchReduce::None) => egraph.add(Op::structural(Structural::Repeat, &[example[i], count])),
                }
            })
            .collect();
        egraph.rebuild();
        roots
    }

    /// The cheapest program the e-graph holds for `roots` among the nodes
    /// `allowed` accepts, with the batched inputs declared. A plan whose
    /// e-graph leaves no choice is read off it; the others share `dag`.
    fn extract<'g>(
        &self,
        egraph: &'g Graph,
        roots: &[Id],
        batched: &HashSet<&str>,
        allowed: &dyn Fn(Id, &Op) -> bool,
        dag: &OnceCell<GreedyDag<'g>>,
    ) -> Result<Program> {
        let extraction = extract_forced_where(egraph, roots, &self.profile, self.dtype, allowed)
            .or_else(|| {
                let dag = dag.get_or_init(|| GreedyDag::new(egraph, &self.profile, self.dtype));
                dag.extract(roots, &|n| {
                    let (class, index) = dag.slot(n);
                    allowed(class, &egraph[class].nodes[index])
                })
            })
            .ok_or_else(|| Error::Internal("extraction found no executable program".into()))?;
        let (expr, placed) = extract_dag(
            roots,
            |c| egraph[c].nodes[extraction.choice[&c]].clone(),
            |c| egraph.find(c),
        );
        let outputs: Vec<Id> = roots.iter().map(|root| placed[&egraph.find(*root)]).collect();
        self.declared(expr, &outputs, batched)
    }

    /// `expr` as a program with `outputs` (in the order of the program's) and
    /// the batched inputs declared with the batch axis.
    fn declared(&self, expr: RecExpr<Op>, outputs: &[Id], batched: &HashSet<&str>) -> Result<Program> {
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
            .zip(outputs)
            .map(|((name, _), &id)| (name.clone(), id))
            .collect();
        Ok(Program::new(
            inputs,
            self.program.params.clone(),
            expr,
            outputs,
            vec![],
        )?)
    }

    /// The loop plan, written directly (see [`loop_plan`]).
    fn loop_plan(&self, over: &[String]) -> Result<Plan> {
        let batched: HashSet<&str> = over.iter().map(String::as_str).collect();
        let (expr, outputs) = loop_plan(self.program, &batched, self.size, self.reduce);
        let mapped_ops = {
            let expr = self.program.expr.as_ref();
            let mut mapped = vec![false; expr.len()];
            let mut ops = vec![];
            for (i, node) in expr.iter().enumerate() {
                mapped[i] = node.as_var().is_some_and(|v| batched.contains(v.as_str()))
                    || node.children().iter().any(|&c| mapped[usize::from(c)]);
                if mapped[i] {
                    ops.push(node.to_string());
                }
            }
            ops.sort();
            ops.dedup();
            ops
        };
        let program = self.declared(expr, &outputs, &batched)?;
        Ok(Plan {
            name: "loop".to_string(),
            cost: predict_us(&self.profile, &program, self.run_kind, self.dtype),
            peak: predict_peak_bytes(&program, self.run_kind, self.dtype.bytes()),
            program,
            egraph_nodes: 0,
            egraph_classes: 0,
            iterations: 0,
            stop_reason: StopReason::Other("no rewriting (loop only)".into()),
            unfused_ops: mapped_ops,
            notes: vec![],
        })
    }

    /// The per-example program and its specs added, then rewritten.
    fn saturated(&self, over: &[String]) -> Saturated {
        let batched: HashSet<&str> = over.iter().map(String::as_str).collect();
        let mut egraph = Graph::new(self.analysis(&batched));
        let (example, spec) = self.add_program(&mut egraph, &batched);
        // The outputs' reductions over the batch are rewritten too (a mean of
        // outer products is a matmul: `contract-outer`).
        self.output_roots(&mut egraph, &example, &spec);
        let (egraph, iterations, stop_reason) = self.saturate(egraph);
        Saturated {
            egraph,
            example,
            spec,
            iterations,
            stop_reason,
        }
    }

    /// The plan of each of `ways`, from one e-graph (`saturated`; the loop
    /// plan's is the per-example program unrewritten). The loops
    /// that any of them needs are added once; each extraction keeps to the
    /// nodes its ways allow.
    fn plans_from(&self, over: &[String], ways: &[Ways], saturated: Saturated) -> Vec<Result<Plan>> {
        let batched: HashSet<&str> = over.iter().map(String::as_str).collect();
        let Saturated {
            mut egraph,
            example,
            spec,
            iterations,
            stop_reason,
        } = saturated;
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
        let every_way = ways.iter().any(|w| matches!(w, Ways::Loop | Ways::Both));
        let looped: Vec<usize> = match every_way {
            true => (0..example.len()).filter(|&i| spec[i].is_some()).collect(),
            false => unfused.clone(),
        };
        // A loop body may read a row of a fused value in every plan but the loop.
        let bridges = ways.iter().any(|&w| w != Ways::Loop);
        self.add_loops(&mut egraph, &example, &spec, &looped, bridges);
        if let Some(conflict) = egraph.analysis.conflicts.first() {
            return ways.iter().map(|_| Err(Error::UnsoundRule(conflict.clone()))).collect();
        }
        let roots = self.output_roots(&mut egraph, &example, &spec);
        // The fused plan loops only where no rule fuses.
        let unfused_specs: HashSet<Id> = unfused
            .iter()
            .filter_map(|&i| spec[i])
            .map(|s| egraph.find(s))
            .collect();
        let fused_only =
            |class: Id, node: &Op| !matches!(node, Op::Map(_)) || unfused_specs.contains(&egraph.find(class));
        let dag = OnceCell::new();
        ways.iter()
            .map(|&way| {
                let program = match way {
                    Ways::FuseWhereFusible => self.extract(&egraph, &roots, &batched, &fused_only, &dag)?,
                    Ways::Loop | Ways::Both => self.extract(&egraph, &roots, &batched, &|_, _| true, &dag)?,
                };
                Ok(Plan {
                    name: match way {
                        Ways::Loop => "loop",
                        Ways::FuseWhereFusible => "fused",
                        Ways::Both => "mixed",
                    }
                    .to_string(),
                    cost: predict_us(&self.profile, &program, self.run_kind, self.dtype),
                    peak: predict_peak_bytes(&program, self.run_kind, self.dtype.bytes()),
                    program,
                    egraph_nodes: egraph.total_number_of_nodes(),
                    egraph_classes: egraph.number_of_classes(),
                    iterations,
                    stop_reason: stop_reason.clone(),
                    unfused_ops: unfused_ops.clone(),
                    notes: vec![],
                })
            })
            .collect()
    }
}

impl Plan {
    fn summary(&self) -> PlanSummary {
        PlanSummary {
            name: self.name.clone(),
            nodes: self.program.node_count(),
            cost: self.cost,
            predicted_peak_bytes: self.peak,
        }
    }
}

/// Runs `rules` on `egraph` to saturation or a limit (e-nodes, iterations,
/// time); returns the e-graph, the iterations and why it stopped.
pub(crate) fn saturate(
    egraph: Graph,
    rules: &RuleSet,
    node_limit: usize,
    iter_limit: usize,
    time_limit: Duration,
) -> (Graph, usize, StopReason) {
    // A batching rule matches once per op of the program: egg's default
    // limit of 1,000 matches would ban it for rounds on a long program
    // (each round searching every rule over the whole e-graph), so the limit
    // grows with the program; it still stops a rule that multiplies nodes.
    let match_limit = (2 * egraph.total_number_of_nodes()).max(1_000);
    let scheduler = BackoffScheduler::default().with_initial_match_limit(match_limit);
    let rewrites = rules.rewrites_for(&egraph);
    let runner = Runner::default()
        .with_scheduler(scheduler)
        .with_egraph(egraph)
        .with_node_limit(node_limit)
        .with_iter_limit(iter_limit)
        .with_time_limit(time_limit)
        .run(&rewrites);
    let stop_reason = runner
        .stop_reason
        .unwrap_or_else(|| StopReason::Other("not run".into()));
    (runner.egraph, runner.iterations.len(), stop_reason)
}

/// Why rewriting stopped, as a sentence: `saturated`, `node limit (N e-nodes)`, ...
pub fn stop_reason_text(reason: &StopReason) -> String {
    match reason {
        StopReason::Saturated => "saturated".to_string(),
        StopReason::NodeLimit(n) => format!("node limit ({n} e-nodes)"),
        StopReason::IterationLimit(n) => format!("iteration limit ({n})"),
        StopReason::TimeLimit(s) => format!("time limit ({s} s)"),
        StopReason::Other(s) => s.clone(),
    }
}

fn serialize_stop_reason<S: serde::Serializer>(
    reason: &StopReason,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&stop_reason_text(reason))
}
