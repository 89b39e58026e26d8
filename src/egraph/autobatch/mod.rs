//! Autobatching: the batch nobody declared. A program that computes the same
//! op on different data in several places (copies written out, repeated
//! blocks, `batch --expand` output fed back in) gets, for each group of such
//! nodes, one batched op over their stacked operands in the same e-graph,
//! each member equal to a row of it, equal by construction. The batching
//! rules (`rules/batching.rules`) then give the batched op its fused form (a
//! shared W times stacked vectors is one GEMM), and a search over which
//! groups run batched, each plan extracted and priced by the cost model,
//! keeps the cheapest: two tiny ops whose stacking costs more stay apart.
//!
//! Following `docs/design/autobatching.md`: groups come from signatures and
//! depths on the program ([`groups`]), one e-node per group (not Tensat's
//! pairwise rules, which need a round per doubling), and layout continuity by
//! construction: a group whose members read an earlier group's members in
//! its order reads the earlier group's batched result itself, with no
//! unstacking and restacking between levels.

mod groups;
mod search;

pub use search::ExtractionReport;

use crate::egraph::analysis::{Graph, ShapeAnalysis};
use crate::egraph::batch::{saturate, stop_reason_text};
use crate::egraph::cost::{predict_us, CostProfile};
use crate::egraph::extract_exact::ExactLimits;
use crate::egraph::rules::RuleSet;
use crate::egraph::unloop::fuse_loops;
use crate::error::{Error, Result};
use crate::ir::{Binary, Dtype, Num, Op, Program, Reduce, Run, Structural};
use egg::{Id, Language};
use groups::{computes, depends_on_input, find_groups, Group};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How to autobatch: the cost model's profile, run and element type, the
/// rules and the limits.
#[derive(Clone, Debug)]
pub struct AutobatchOptions {
    /// The cost profile that prices each plan.
    pub profile: CostProfile,
    /// Which run to price: the gradient (forward and backward) or the forward pass.
    pub run: Run,
    /// The element type the program will run in.
    pub dtype: Dtype,
    /// The rules (the batching rules give the batched ops their fused forms).
    pub rules: RuleSet,
    /// Most e-nodes while rewriting.
    pub node_limit: usize,
    /// Most rewrite iterations.
    pub iter_limit: usize,
    /// Longest time spent rewriting.
    pub time_limit: Duration,
    /// Up to this many groups, every subset of them is priced (exact over the
    /// choice of groups); above, coordinate descent from all groups taken.
    pub exhaustive_groups: usize,
    /// Longest time the search over groups may take (it then keeps the best so far).
    pub search_limit: Duration,
    /// The predicted saving a batched plan must show to replace the program as
    /// written (a fraction: 0.05 is 5%). Within that the model cannot tell the
    /// two apart (its error on small ops is a few tenths of a µs), and the
    /// program as written, with no copies, is the safer pick.
    pub min_gain: f64,
    /// Run every group batched, whatever the cost model says: to measure
    /// what the batched program costs where the model keeps it apart.
    pub batch_every_group: bool,
    /// Limits of the exact extraction run beside the search (its time is
    /// also bounded by what is left of `search_limit`).
    pub exact: ExactLimits,
    /// Prove each output of the result equal to the output as written: the
    /// chain of rewrites (egg's explanations) that joins them, in
    /// [`Autobatched::proofs`]. Recording explanations slows rewriting.
    pub explain: bool,
}

impl Default for AutobatchOptions {
    fn default() -> Self {
        AutobatchOptions {
            profile: CostProfile::cpu(),
            run: Run::Grad,
            dtype: Dtype::F64,
            rules: RuleSet::builtin(),
            node_limit: 300_000,
            iter_limit: 30,
            time_limit: Duration::from_secs(10),
            exhaustive_groups: 8,
            search_limit: Duration::from_secs(10),
            min_gain: 0.05,
            batch_every_group: false,
            // Half a second: within the compile-time budget of a large program
            // (it solves every checked program in under 0.2 s).
            exact: ExactLimits {
                time: Duration::from_millis(500),
                ..ExactLimits::default()
            },
            explain: false,
        }
    }
}

/// One group of nodes that could run as one op.
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    /// The op, as its first member prints.
    pub op: String,
    /// Its members' depth (longest path from the leaves).
    pub depth: usize,
    /// How many nodes it batches.
    pub members: usize,
    /// Whether its members differ in size (batched by concatenating, each a
    /// slice of the result) rather than stacked.
    pub ragged: bool,
    /// Whether the chosen program runs it batched.
    pub taken: bool,
}

/// What autobatching found and chose.
#[derive(Clone, Debug, Serialize)]
pub struct AutobatchReport {
    /// Groups of two or more nodes of one signature at one depth.
    pub groups_found: usize,
    /// Groups the chosen program runs batched.
    pub groups_taken: usize,
    /// Kernels (ops that compute: elementwise, reductions, products; each
    /// node once, whether or not the runtime fuses it into a chain) of the
    /// program as written.
    pub kernels_before: usize,
    /// Kernels of the program returned.
    pub kernels_after: usize,
    /// Fewest kernels with every group batched: one per distinct (signature,
    /// depth) among the kernels that depend on an input, plus the others.
    pub lower_bound: usize,
    /// Ops that only move values (stack, index, transpose, ...) as written.
    pub copies_before: usize,
    /// Ops that only move values in the program returned.
    pub copies_after: usize,
    /// Predicted time of the program as written (µs).
    pub cost_before_us: f64,
    /// Predicted time of the program returned (µs).
    pub cost_after_us: f64,
    /// Predicted time of what greedy DAG extraction alone picks from the same
    /// e-graph (it prices each member's row of a shared batched op as if it
    /// paid for the whole op, so it keeps the ops apart).
    pub greedy_cost_us: Option<f64>,
    /// How the groups were chosen: every subset, or coordinate descent.
    pub search: String,
    /// Plans extracted and priced.
    pub plans_priced: usize,
    /// Whether the search stopped at its time limit before it finished.
    pub search_cut_off: bool,
    /// Which run was priced.
    pub run: Run,
    /// The element type priced.
    pub dtype: Dtype,
    /// The cost profile's name.
    pub profile: String,
    /// E-nodes in the e-graph.
    pub egraph_nodes: usize,
    /// E-classes in it.
    pub egraph_classes: usize,
    /// Rewrite iterations.
    pub iterations: usize,
    /// Why rewriting stopped, as a sentence.
    pub stop_reason: String,
    /// Seconds spent in all (grouping, rewriting, searching).
    pub seconds: f64,
    /// Greedy against exact extraction of the whole e-graph (absent when no
    /// group was found: nothing was extracted).
    pub extraction: Option<ExtractionReport>,
    /// Anything else worth knowing.
    pub notes: Vec<String>,
    /// Every group found.
    pub groups: Vec<GroupReport>,
}

/// The autobatched program and the report.
#[derive(Clone, Debug)]
pub struct Autobatched {
    /// The program: same inputs, params and outputs, equal values.
    pub program: Program,
    /// What was found and chosen.
    pub report: AutobatchReport,
    /// With [`AutobatchOptions::explain`]: per output, its name and the
    /// proof that the result's output equals the one as written, one term
    /// per line, each with the rule that rewrote it (egg's flat explanation).
    pub proofs: Vec<(String, Vec<String>)>,
}

/// The kernels of `program` as written and the fewest it could run with
/// every group batched: [`AutobatchReport::kernels_before`] and
/// [`AutobatchReport::lower_bound`] without rewriting anything (one pass over
/// the program), for callers that batch by other means and count against the
/// same bound (`crate::structure`'s level schedule).
pub fn kernel_bound(program: &Program) -> (usize, usize) {
    let (_, signatures) = find_groups(program);
    let varies = depends_on_input(program);
    let expr = program.expr.as_ref();
    let kernels = expr.iter().filter(|op| computes(op)).count();
    let fixed = (0..expr.len()).filter(|&i| computes(&expr[i]) && !varies[i]).count();
    (kernels, signatures + fixed)
}

/// Finds groups of independent same-signature nodes in `program` and runs
/// each as one batched op where the cost model says it pays.
pub fn autobatch(program: &Program, options: &AutobatchOptions) -> Result<Autobatched> {
    let start = Instant::now();
    if program.loops().any() {
        return autobatch(&fuse_loops(program, &options.rules)?, options);
    }
    let (groups, signatures) = find_groups(program);
    let price = |p: &Program| predict_us(&options.profile, p, options.run, options.dtype);
    let count = |p: &Program, which: fn(&Op) -> bool| p.expr.as_ref().iter().filter(|op| which(op)).count();
    let kernels = |p: &Program| count(p, computes);
    let copies = |p: &Program| count(p, |op| op.as_structural().is_some());
    let varies = depends_on_input(program);
    let fixed = (0..program.node_count())
        .filter(|&i| computes(&program.expr[i.into()]) && !varies[i])
        .count();
    let mut report = AutobatchReport {
        groups_found: groups.len(),
        groups_taken: 0,
        kernels_before: kernels(program),
        kernels_after: kernels(program),
        lower_bound: signatures + fixed,
        copies_before: copies(program),
        copies_after: copies(program),
        cost_before_us: price(program),
        cost_after_us: price(program),
        greedy_cost_us: None,
        search: "none".into(),
        plans_priced: 0,
        search_cut_off: false,
        run: options.run,
        dtype: options.dtype,
        profile: options.profile.name.clone(),
        egraph_nodes: 0,
        egraph_classes: 0,
        iterations: 0,
        stop_reason: "no rewriting (no group)".into(),
        seconds: 0.0,
        extraction: None,
        notes: vec![],
        groups: vec![],
    };
    if groups.is_empty() {
        report
            .notes
            .push("no group found: the program is returned unchanged".into());
        report.seconds = start.elapsed().as_secs_f64();
        return Ok(Autobatched {
            program: program.clone(),
            report,
            proofs: vec![],
        });
    }
    let built = build(program, &groups, options.explain);
    let (mut egraph, iterations, stop_reason) = saturate(
        built.egraph,
        &options.rules,
        options.node_limit,
        options.iter_limit,
        options.time_limit,
    );
    if let Some(conflict) = egraph.analysis.conflicts.first() {
        return Err(Error::UnsoundRule(conflict.clone()));
    }
    report.egraph_nodes = egraph.total_number_of_nodes();
    report.egraph_classes = egraph.number_of_classes();
    report.iterations = iterations;
    report.stop_reason = stop_reason_text(&stop_reason);
    let searched = search::search(&egraph, program, &built.classes, &built.rows, &built.ops, options)?;
    report.greedy_cost_us = searched.greedy_us;
    report.search = searched.how.clone();
    report.plans_priced = searched.priced;
    report.search_cut_off = searched.cut_off;
    report.extraction = Some(searched.extraction.clone());
    report.groups = groups
        .iter()
        .zip(&searched.taken)
        .map(|(g, &taken)| GroupReport {
            op: program.expr[g.members[0].into()].to_string(),
            depth: g.depth,
            members: g.members.len(),
            ragged: g.ragged,
            taken,
        })
        .collect();
    report.groups_taken = searched.taken.iter().filter(|&&t| t).count();
    // Never worse than the program as written, which is one of the plans.
    let pays = searched.cost_us < report.cost_before_us * (1.0 - options.min_gain.clamp(0.0, 1.0));
    let chosen = match pays || options.batch_every_group {
        true => searched.program,
        false => {
            report.groups_taken = 0;
            report.groups.iter_mut().for_each(|g| g.taken = false);
            program.clone()
        }
    };
    if report.groups_taken == 0 {
        report.notes.push(
            "no group saves the margin asked for (min_gain) under the cost model: the program is returned unchanged"
                .into(),
        );
    }
    report.kernels_after = kernels(&chosen);
    report.copies_after = copies(&chosen);
    report.cost_after_us = price(&chosen);
    report.seconds = start.elapsed().as_secs_f64();
    let proofs = match options.explain {
        true => prove(&mut egraph, program, &chosen, &mut report.notes),
        false => vec![],
    };
    Ok(Autobatched {
        program: chosen,
        report,
        proofs,
    })
}

/// Per output, the chain of rewrites that makes `after`'s output equal to
/// `before`'s in the e-graph both were extracted from.
fn prove(egraph: &mut Graph, before: &Program, after: &Program, notes: &mut Vec<String>) -> Vec<(String, Vec<String>)> {
    // A program's nodes are in topological order: those up to a root are its expression.
    let rooted = |p: &Program, root: Id| -> egg::RecExpr<Op> { p.expr.as_ref()[..=usize::from(root)].to_vec().into() };
    let mut proofs = vec![];
    for ((name, a), (_, b)) in before.outputs.iter().zip(&after.outputs) {
        let (a, b) = (rooted(before, *a), rooted(after, *b));
        // Explanations print terms as trees: a program that shares much grows
        // exponentially so written, so such a proof is refused up front.
        let largest = tree_size(&a).max(tree_size(&b));
        if largest > PROOF_TREE_LIMIT {
            notes.push(format!(
                "no proof for `{name}`: its terms written as trees have {largest} nodes (the limit is {PROOF_TREE_LIMIT})"
            ));
            continue;
        }
        proofs.push((name.clone(), egraph.explain_equivalence(&a, &b).get_flat_strings()));
    }
    proofs
}

/// Most nodes of a term written as a tree for which a proof is written.
const PROOF_TREE_LIMIT: u128 = 20_000;

/// Nodes of `expr`'s root written as a tree (shared subterms once per use), saturating.
fn tree_size(expr: &egg::RecExpr<Op>) -> u128 {
    let mut sizes: Vec<u128> = Vec::with_capacity(expr.len());
    for node in expr.as_ref() {
        let children = node.children().iter().map(|&c| sizes[usize::from(c)]);
        sizes.push(children.fold(1u128, u128::saturating_add));
    }
    sizes.last().copied().unwrap_or(0)
}

/// The e-graph of a program with its groups' batched alternatives.
struct Built {
    egraph: Graph,
    /// The class of each program node (before rewriting).
    classes: Vec<Id>,
    /// For each group, each member's row of the batched op: (member class, `index` node).
    rows: Vec<Vec<(Id, Op)>>,
    /// For each group, the class of its batched op `Y`.
    ops: Vec<Id>,
}

/// Adds the program, then for each group (by depth) the per-row template
/// `op(row(A1), w, ...)` over stacked operands `A` (shared operands as they
/// are), its spec `Y = vmap(template)`, and `member_j = index(Y, j)`.
/// With `explain`, the e-graph records why each union holds (egg's
/// explanations), so that equalities can be proved after rewriting.
fn build(program: &Program, groups: &[Group], explain: bool) -> Built {
    let mut analysis = ShapeAnalysis::new(program.var_shapes());
    analysis.batch = 1;
    let mut egraph = Graph::new(analysis);
    if explain {
        egraph = egraph.with_explanations_enabled();
    }
    let expr = program.expr.as_ref();
    let mut classes: Vec<Id> = Vec::with_capacity(expr.len());
    for node in expr {
        let class = egraph.add(node.clone().map_children(|c| classes[usize::from(c)]));
        classes.push(class);
    }
    // For each group: its spec Y and its template T (a row of Y).
    let mut batched: Vec<(Id, Id)> = Vec::with_capacity(groups.len());
    let mut rows = Vec::with_capacity(groups.len());
    let by_members: HashMap<&[usize], usize> = groups
        .iter()
        .enumerate()
        .map(|(g, group)| (group.members.as_slice(), g))
        .collect();
    for group in groups {
        if group.ragged {
            let (whole, members) = build_ragged(&mut egraph, program, &classes, group, &by_members, &batched);
            batched.push((whole, whole));
            rows.push(members);
            continue;
        }
        let first = &expr[group.members[0]];
        let mut children = vec![];
        for p in 0..first.children().len() {
            let operands = operand_of_each(expr, group, p);
            let earlier = by_members
                .get(operands.as_slice())
                .filter(|&&h| h < batched.len() && !groups[h].ragged);
            let child = if operands.iter().all(|&o| o == operands[0]) {
                classes[operands[0]]
            } else if let Some(&h) = earlier {
                batched[h].1
            } else {
                let stacked = stack_of(&mut egraph, program, &classes, &operands);
                let row = egraph.add(Op::Row(stacked));
                let spec = egraph.add(Op::Vmap(row));
                egraph.union_trusted(spec, stacked, "vmap-of-row: vmap(row(s)) = s");
                row
            };
            children.push(child);
        }
        let mut next = children.into_iter();
        let template = egraph.add(
            first
                .clone()
                .map_children(|_| next.next().expect("one child per operand")),
        );
        let spec = egraph.add(Op::Vmap(template));
        let mut members = vec![];
        for (j, &m) in group.members.iter().enumerate() {
            let row_number = egraph.add(Op::Num(Num(j as f64)));
            let index = Op::structural(Structural::Index, &[spec, row_number]);
            let id = egraph.add(index.clone());
            egraph.union_trusted(classes[m], id, "group-member: member j = index(group op, j)");
            members.push((classes[m], index));
        }
        batched.push((spec, template));
        rows.push(members);
    }
    // A stack the program writes of a group's members, in order, is the group's batched op.
    for (i, node) in expr.iter().enumerate() {
        if let Some((Structural::Stack, operands)) = node.as_structural() {
            let operands: Vec<usize> = operands.iter().map(|&c| usize::from(c)).collect();
            if let Some(&g) = by_members.get(operands.as_slice()).filter(|&&g| !groups[g].ragged) {
                egraph.union_trusted(classes[i], batched[g].0, "group-stack: stack(members) = group op");
            }
        }
    }
    group_sums(&mut egraph, program, &classes, groups, &batched);
    egraph.rebuild();
    let ops = batched.iter().map(|&(spec, _)| spec).collect();
    Built {
        egraph,
        classes,
        rows,
        ops,
    }
}

/// A sum the program writes of a group's members (a tree of `+` whose
/// leaves are exactly the members, each once, in any order; the tree stops
/// at members) is the sum of the group's batched op over its rows:
/// `m_1 + ... + m_k = sum(Y, 0)`. So the copies' losses added up, as the
/// two-copy drawing writes them, become one reduction, as `mean(stack(...), 0)`
/// of expanded output does: no row is taken out of `Y`, and none of its
/// cotangents is sent back through an `index`.
fn group_sums(egraph: &mut Graph, program: &Program, classes: &[Id], groups: &[Group], batched: &[(Id, Id)]) {
    let expr = program.expr.as_ref();
    let mut member_of: Vec<bool> = vec![false; expr.len()];
    let mut by_sorted: HashMap<Vec<usize>, usize> = HashMap::new();
    for (g, group) in groups.iter().enumerate().filter(|(_, group)| !group.ragged) {
        group.members.iter().for_each(|&m| member_of[m] = true);
        let mut sorted = group.members.clone();
        sorted.sort_unstable();
        by_sorted.insert(sorted, g);
    }
    let largest = groups.iter().map(|g| g.members.len()).max().unwrap_or(0);
    let is_add = |i: usize| matches!(expr[i], Op::Binary(Binary::Add, _));
    // Only the roots of `+` trees (an inner `+` of a tree is part of its root's).
    let mut inner = vec![false; expr.len()];
    for node in expr.iter().filter(|node| matches!(node, Op::Binary(Binary::Add, _))) {
        node.children().iter().for_each(|&c| inner[usize::from(c)] = true);
    }
    let zero = egraph.add(Op::Num(Num(0.0)));
    for root in (0..expr.len()).filter(|&i| is_add(i) && !inner[i] && !member_of[i]) {
        let (mut leaves, mut pending) = (vec![], vec![root]);
        while let Some(i) = pending.pop() {
            match is_add(i) && !member_of[i] {
                true => pending.extend(expr[i].children().iter().map(|&c| usize::from(c))),
                false => leaves.push(i),
            }
            if leaves.len() > largest {
                break;
            }
        }
        leaves.sort_unstable();
        if let Some(&g) = by_sorted.get(&leaves) {
            let sum = egraph.add(Op::ReduceAxis(Reduce::Sum, [batched[g].0, zero]));
            egraph.union_trusted(classes[root], sum, "group-sum: m_1 + ... + m_k = sum(group op, 0)");
        }
    }
}

/// A ragged group (members of different lengths, elementwise): the op over
/// the concatenation of each operand's members along the first axis (an
/// earlier ragged group's result when the operands are its members, in
/// order), and each member's slice of it: (the whole, (member class, slice)).
fn build_ragged(
    egraph: &mut Graph,
    program: &Program,
    classes: &[Id],
    group: &Group,
    by_members: &HashMap<&[usize], usize>,
    batched: &[(Id, Id)],
) -> (Id, Vec<(Id, Op)>) {
    let expr = program.expr.as_ref();
    let first = &expr[group.members[0]];
    let axis = egraph.add(Op::Num(Num(0.0)));
    let mut children = vec![];
    for p in 0..first.children().len() {
        let operands = operand_of_each(expr, group, p);
        // Ragged groups read only ragged groups' results as a whole (their
        // members are elementwise, so an earlier group of the same members is ragged too).
        let child = match by_members.get(operands.as_slice()).filter(|&&h| h < batched.len()) {
            Some(&h) => batched[h].0,
            None => {
                let mut parts: Vec<Id> = operands.iter().map(|&o| classes[o]).collect();
                parts.push(axis);
                egraph.add(Op::structural(Structural::Concat, &parts))
            }
        };
        children.push(child);
    }
    let mut next = children.into_iter();
    let whole = egraph.add(
        first
            .clone()
            .map_children(|_| next.next().expect("one child per operand")),
    );
    let mut members = vec![];
    let mut start = 0;
    for &m in &group.members {
        let length = program.shape(Id::from(m)).dims()[0];
        let (from, to) = (
            egraph.add(Op::Num(Num(start as f64))),
            egraph.add(Op::Num(Num((start + length) as f64))),
        );
        let slice = Op::structural(Structural::Slice, &[whole, axis, from, to]);
        let id = egraph.add(slice.clone());
        egraph.union_trusted(
            classes[m],
            id,
            "ragged-member: member j = slice(op of the concatenation, its range)",
        );
        members.push((classes[m], slice));
        start += length;
    }
    (whole, members)
}

/// Operand `p` of each member of `group`, in its order.
fn operand_of_each(expr: &[Op], group: &Group, p: usize) -> Vec<usize> {
    group
        .members
        .iter()
        .map(|&m| usize::from(expr[m].children()[p]))
        .collect()
}

/// The operands stacked: `s` itself when they are `index(s, 0)`, ...,
/// `index(s, k-1)` of an `s` of k rows, else a `stack` of them.
fn stack_of(egraph: &mut Graph, program: &Program, classes: &[Id], operands: &[usize]) -> Id {
    let rows_of = |o: usize| match program.expr[o.into()].as_structural() {
        Some((Structural::Index, [s, row])) => Some((*s, program.literal(*row)?)),
        _ => None,
    };
    let whole = operands.iter().enumerate().try_fold(None, |source, (j, &o)| {
        let (s, row) = rows_of(o)?;
        (row == j as f64 && source.is_none_or(|x| x == s)).then_some(Some(s))
    });
    if let Some(Some(s)) = whole {
        if program.shape(s).dims().first() == Some(&operands.len()) {
            return classes[usize::from(s)];
        }
    }
    let stacked: Vec<Id> = operands.iter().map(|&o| classes[o]).collect();
    egraph.add(Op::structural(Structural::Stack, &stacked))
}

#[cfg(test)]
mod tests {
    //! Exact extraction against an independent brute force on the e-graphs
    //! autobatching builds (small enough to enumerate).

    use super::*;
    use crate::egraph::extract::{node_cost, Extraction};
    use crate::egraph::extract_exact::{extract_dag_exact, ExactStatus};

    /// The cheapest acyclic choice for `roots`, by depth-first enumeration of
    /// every choice of node for every class reached (pruned by the best so far).
    fn brute_force(egraph: &Graph, roots: &[Id], profile: &CostProfile, dtype: Dtype) -> f64 {
        fn go(
            egraph: &Graph,
            cost: &dyn Fn(Id, usize) -> f64,
            pending: &mut Vec<Id>,
            chosen: &mut Vec<(Id, usize)>,
            spent: f64,
            best: &mut f64,
        ) {
            if spent >= *best {
                return;
            }
            let Some(class) = pending.pop() else {
                *best = spent;
                return;
            };
            if chosen.iter().any(|&(c, _)| c == class) {
                go(egraph, cost, pending, chosen, spent, best);
            } else {
                for (index, node) in egraph[class].nodes.iter().enumerate() {
                    let own = cost(class, index);
                    let children: Vec<Id> = node.children().iter().map(|&c| egraph.find(c)).collect();
                    // A child already on the path above would close a cycle: a
                    // chosen class's descendants may not include it.
                    if !own.is_finite() || reaches(egraph, chosen, &children, class) {
                        continue;
                    }
                    let depth = pending.len();
                    pending.extend(children.iter().copied());
                    chosen.push((class, index));
                    go(egraph, cost, pending, chosen, spent + own, best);
                    chosen.pop();
                    pending.truncate(depth);
                }
            }
            pending.push(class);
        }
        /// Whether `target` is among `from` or reachable from them through chosen nodes.
        fn reaches(egraph: &Graph, chosen: &[(Id, usize)], from: &[Id], target: Id) -> bool {
            let mut stack = from.to_vec();
            let mut seen = vec![];
            while let Some(c) = stack.pop() {
                if c == target {
                    return true;
                }
                if seen.contains(&c) {
                    continue;
                }
                seen.push(c);
                if let Some(&(_, n)) = chosen.iter().find(|&&(k, _)| k == c) {
                    stack.extend(egraph[c].nodes[n].children().iter().map(|&x| egraph.find(x)));
                }
            }
            false
        }
        let cost = |class: Id, index: usize| node_cost(egraph, class, index, profile, dtype);
        let mut best = f64::INFINITY;
        let mut pending: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
        go(egraph, &cost, &mut pending, &mut vec![], 0.0, &mut best);
        best
    }

    #[test]
    fn exact_extraction_equals_brute_force_and_beats_greedy_on_the_two_copies() {
        // The copies' losses as two outputs (added up, their sum is one reduction greedy finds too).
        let program = Program::parse(
            "two copies",
            "input x1: [3]\ninput x2: [3]\nparam w: [4, 3]\n\
             fn f(x, w) = tanh(w @ x)\nfn g(a, b, x) = sum(a * b) + sum(x)\n\
             out s1 = g(f(x1, w), f(x1, w), x1)\nout s2 = g(f(x2, w), f(x2, w), x2)",
        )
        .unwrap();
        let options = AutobatchOptions::default();
        let (groups, _) = find_groups(&program);
        let built = build(&program, &groups, false);
        let (egraph, _, _) = saturate(built.egraph, &options.rules, 10_000, 30, Duration::from_secs(10));
        let roots: Vec<Id> = program
            .outputs
            .iter()
            .map(|(_, id)| egraph.find(built.classes[usize::from(*id)]))
            .collect();
        let (profile, dtype) = (&options.profile, options.dtype);
        let greedy = crate::egraph::extract::extract_dag_greedy(&egraph, &roots, profile, dtype).unwrap();
        let exact = extract_dag_exact(&egraph, &roots, profile, dtype, Some(&greedy), &options.exact);
        assert_eq!(exact.status, ExactStatus::Optimal);
        let found = exact.extraction.unwrap().cost;
        let truth = brute_force(&egraph, &roots, profile, dtype);
        assert!((found - truth).abs() < 1e-9, "exact {found}, brute force {truth}");
        assert!(
            found < greedy.cost - 1e-9,
            "exact {found} is not below greedy {}",
            greedy.cost
        );
    }

    #[test]
    fn a_group_whose_batched_op_runs_is_taken_even_with_members_run_apart() {
        let program = Program::parse(
            "two copies",
            "input x1: [3]\ninput x2: [3]\nparam w: [4, 3]\n\
             let a = tanh(w @ x1)\nlet b = tanh(w @ x2)\nout s = sum(a + b) + sum(a * a * 3)",
        )
        .unwrap();
        let (groups, _) = find_groups(&program);
        let built = build(&program, &groups, false);
        let egraph = &built.egraph;
        let g = groups
            .iter()
            .position(|group| matches!(program.expr[group.members[0].into()], Op::Unary(..)))
            .expect("the group of tanh");
        let rows_in = search::rows_by_class(egraph, &built.rows);
        // Each member's own node: the one that is not its row of the group.
        let own = |class: Id| {
            let class = egraph.find(class);
            let rows = &rows_in[&class];
            let n = egraph[class]
                .nodes
                .iter()
                .position(|node| rows.iter().all(|(_, row)| row != node));
            (class, n.expect("the member's own op"))
        };
        let members: HashMap<Id, usize> = built.rows[g].iter().map(|&(class, _)| own(class)).collect();
        let taken = |choice: HashMap<Id, usize>| {
            let extraction = Extraction {
                choice: choice.into_iter().collect(),
                cost: 0.0,
            };
            search::groups_run_batched(egraph, &extraction, &built.rows, &rows_in, &built.ops)[g]
        };
        // Members apart, the batched op not run: not taken.
        assert!(!taken(members.clone()));
        // Members apart for other readers, and the batched op run (a `group-sum`): taken.
        let y = egraph.find(built.ops[g]);
        let mut both = members;
        both.insert(y, 0);
        assert!(!matches!(egraph[y].nodes[0], Op::Structural(Structural::Stack, _)));
        assert!(taken(both));
    }
}
