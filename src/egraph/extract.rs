//! DAG-aware extraction: a shared node is paid for once.
//!
//! egg's `Extractor` minimises tree cost, which pays for a shared node once
//! per use and so cannot see what CSE saves. This is the greedy DAG
//! extractor of extraction-gym (`faster-greedy-dag`): every class keeps the
//! set of classes its best node needs, with their costs, and the cost of a
//! node is the sum over the union of its children's sets, each class once.
//! A node whose children's sets contain its own class would close a cycle
//! and is skipped.

use crate::egraph::analysis::Graph;
use crate::egraph::cost::CostProfile;
use crate::egraph::cost_map::{CostMap, CostMaps};
use crate::ir::{Dtype, Op, Shape};
use egg::{Id, Language};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::VecDeque;

/// Builds the chosen DAG as an expression; it lives in the IR, where CSE uses it too.
pub use crate::ir::extract_dag;

/// What one class costs: its chosen node, the classes that choice needs
/// (itself included) with each one's own cost, and their sum. The map is
/// persistent: a class shares it with its children but for its own entries,
/// which keeps extraction near-linear along deep chains.
#[derive(Clone, Copy, Debug)]
struct CostSet {
    node: usize,
    costs: CostMap,
    total: f64,
}

/// The chosen node of every class reached from the roots.
#[derive(Clone, Debug)]
pub struct Extraction {
    /// Chosen node (index into the class's nodes) per class.
    pub choice: HashMap<Id, usize>,
    /// DAG cost of the roots together, each class once.
    pub cost: f64,
}

/// Extracts the cheapest DAG it finds for `roots`, with node costs from `profile` in `dtype`.
/// Returns `None` if some root has no finite-cost implementation.
pub fn extract_dag_greedy(egraph: &Graph, roots: &[Id], profile: &CostProfile, dtype: Dtype) -> Option<Extraction> {
    extract_dag_greedy_where(egraph, roots, profile, dtype, &|_, _| true)
}

/// [`extract_dag_greedy`] choosing only nodes that `allowed(class, node)`
/// accepts.
pub fn extract_dag_greedy_where(
    egraph: &Graph,
    roots: &[Id],
    profile: &CostProfile,
    dtype: Dtype,
    allowed: &dyn Fn(Id, &Op) -> bool,
) -> Option<Extraction> {
    let dag = GreedyDag::new(egraph, profile, dtype);
    dag.extract(roots, &|n| {
        let (class, index) = dag.slot(n);
        allowed(class, &egraph[class].nodes[index])
    })
}

/// An e-graph laid out for greedy DAG extraction, repeated under different
/// restrictions (how the autobatcher prices its plans): every node numbered
/// once, with its cost, its canonical children and, per class, the nodes
/// that read it. What depends only on the e-graph is computed once here.
pub struct GreedyDag<'a> {
    egraph: &'a Graph,
    /// Per class id (canonical ones), the number of its first node.
    first: Vec<usize>,
    /// Per node: its class and its index among the class's nodes.
    slots: Vec<(Id, usize)>,
    costs: Vec<f64>,
    children: Vec<Box<[Id]>>,
    /// Per class id: the nodes that have it as a child.
    parents: Vec<Vec<usize>>,
}

impl<'a> GreedyDag<'a> {
    /// Numbers and prices the nodes of a rebuilt `egraph`, with costs from `profile` in `dtype`.
    pub fn new(egraph: &'a Graph, profile: &CostProfile, dtype: Dtype) -> Self {
        let ids = egraph.nodes().len();
        let mut dag = GreedyDag {
            egraph,
            first: vec![usize::MAX; ids],
            slots: vec![],
            costs: vec![],
            children: vec![],
            parents: vec![vec![]; ids],
        };
        for class in egraph.classes() {
            dag.first[usize::from(class.id)] = dag.slots.len();
            for (index, node) in class.nodes.iter().enumerate() {
                let n = dag.slots.len();
                dag.slots.push((class.id, index));
                dag.costs.push(node_cost(egraph, class.id, index, profile, dtype));
                let children: Box<[Id]> = node.children().iter().map(|&c| egraph.find(c)).collect();
                for &c in children.iter() {
                    dag.parents[usize::from(c)].push(n);
                }
                dag.children.push(children);
            }
        }
        dag
    }

    /// How many nodes there are (numbered from 0).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the e-graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The class of node `n` and its index among the class's nodes.
    pub fn slot(&self, n: usize) -> (Id, usize) {
        self.slots[n]
    }

    /// The number of the `index`th node of (canonical) `class`.
    pub fn number(&self, class: Id, index: usize) -> usize {
        self.first[usize::from(class)] + index
    }

    /// The cheapest DAG greedy finds for `roots`, choosing only nodes `n`
    /// that `allowed(n)` accepts; `None` if some root has no finite-cost
    /// implementation.
    pub fn extract(&self, roots: &[Id], allowed: &dyn Fn(usize) -> bool) -> Option<Extraction> {
        let egraph = self.egraph;
        let mut queue: VecDeque<usize> = (0..self.len()).filter(|&n| self.children[n].is_empty()).collect();
        let mut queued = vec![false; self.len()];
        queue.iter().for_each(|&n| queued[n] = true);
        // By class id (an index into the e-graph's nodes): hashing every look-up
        // was a quarter of the time on a long program.
        let mut best: Vec<Option<CostSet>> = vec![None; egraph.nodes().len()];
        // Every class's map lives in this arena, dropped whole at the end.
        let mut maps = CostMaps::default();
        let at = |c: &Id| usize::from(*c);
        // Wide nodes (a stack of many members) union many sets: they wait until
        // everything narrower has settled, so that each is priced once per
        // settling, not once per child that improves (quadratic in the width).
        let mut wide: VecDeque<usize> = VecDeque::new();
        loop {
            let n = match queue.pop_front() {
                Some(n) if self.children[n].len() > WIDE => {
                    wide.push_back(n); // still queued: the wide queue holds it
                    continue;
                }
                Some(n) => n,
                None => match wide.pop_front() {
                    Some(n) => n,
                    None => break,
                },
            };
            queued[n] = false;
            let (class, index) = self.slots[n];
            let own = self.costs[n];
            if !own.is_finite() || !allowed(n) {
                continue;
            }
            let children = &self.children[n];
            if !children.iter().all(|c| best[at(c)].is_some()) {
                continue;
            }
            // Start from the largest child's set and add the rest (a class in
            // two sets keeps the cost in the later child's).
            let set = |c: &Id| best[at(c)].expect("every child is priced").costs;
            let largest = children.iter().max_by_key(|c| maps.len(set(c)));
            let mut costs = largest.map_or(CostMap::EMPTY, |c| maps.retain(set(c)));
            for c in children.iter() {
                if Some(c) != largest {
                    let grown = maps.union(set(c), costs);
                    maps.release(costs);
                    costs = grown;
                }
            }
            if maps.get(costs, class).is_some() {
                maps.release(costs);
                continue; // would close a cycle
            }
            let own_set = maps.single(class, own);
            let with_own = maps.union(costs, own_set);
            maps.release(costs);
            maps.release(own_set);
            let total = maps.total(with_own);
            if best[at(&class)].is_none_or(|b| total < b.total) {
                let replaced = best[at(&class)].replace(CostSet {
                    node: index,
                    costs: with_own,
                    total,
                });
                if let Some(old) = replaced {
                    maps.release(old.costs);
                }
                for &parent in &self.parents[at(&class)] {
                    if !queued[parent] {
                        queued[parent] = true;
                        queue.push_back(parent);
                    }
                }
            } else {
                maps.release(with_own);
            }
        }
        let mut choice = HashMap::default();
        let mut all: HashMap<Id, f64> = HashMap::default();
        let mut stack: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
        while let Some(class) = stack.pop() {
            if choice.contains_key(&class) {
                continue;
            }
            let set = best[at(&class)]?;
            choice.insert(class, set.node);
            all.insert(class, maps.get(set.costs, class)?);
            stack.extend(self.children[self.number(class, set.node)].iter().copied());
        }
        if has_cycle(egraph, &choice) {
            return None;
        }
        Some(Extraction {
            cost: all.values().sum(),
            choice,
        })
    }
}

/// The extraction of an e-graph in which no class offers a real choice,
/// found without pricing sets: every class reached from the roots has one
/// executable node, or one free leaf (an input, a literal) beside others,
/// which no other node can undercut. The loop plan's e-graph is such (each
/// spec holds its loop and the unexecutable `vmap`; a batched input also
/// holds its loop over its own rows), and greedy DAG extraction spent a
/// third of a long program's batching on it. `None` where some class does
/// offer a choice, or the choices close a cycle: use [`extract_dag_greedy`].
pub fn extract_forced(egraph: &Graph, roots: &[Id], profile: &CostProfile, dtype: Dtype) -> Option<Extraction> {
    extract_forced_where(egraph, roots, profile, dtype, &|_, _| true)
}

/// [`extract_forced`] among the nodes that `allowed(class, node)` accepts.
pub fn extract_forced_where(
    egraph: &Graph,
    roots: &[Id],
    profile: &CostProfile,
    dtype: Dtype,
    allowed: &dyn Fn(Id, &Op) -> bool,
) -> Option<Extraction> {
    let mut choice: HashMap<Id, usize> = HashMap::default();
    let mut cost = 0.0;
    let mut stack: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    while let Some(class) = stack.pop() {
        if choice.contains_key(&class) {
            continue;
        }
        let priced: Vec<(usize, f64)> = (0..egraph[class].nodes.len())
            .filter(|&index| allowed(class, &egraph[class].nodes[index]))
            .map(|index| (index, node_cost(egraph, class, index, profile, dtype)))
            .filter(|(_, c)| c.is_finite())
            .collect();
        let (index, own) = match priced[..] {
            [] => return None,
            [only] => only,
            _ => {
                // A leaf no dearer than any other node's own cost is the cheapest
                // choice whatever the others' children would share.
                let cheapest = priced.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                let leaf = priced
                    .iter()
                    .find(|&&(i, c)| egraph[class].nodes[i].is_leaf() && c <= cheapest)?;
                *leaf
            }
        };
        choice.insert(class, index);
        cost += own;
        stack.extend(egraph[class].nodes[index].children().iter().map(|&c| egraph.find(c)));
    }
    if has_cycle(egraph, &choice) {
        return None;
    }
    Some(Extraction { choice, cost })
}

/// What a node costs where it stands: the op's cost on its class's shapes,
/// times the rows of its loop for a per-row node (priced here, so that each
/// class's choice already sees what a loop multiplies).
pub(crate) fn node_cost(egraph: &Graph, class: Id, index: usize, profile: &CostProfile, dtype: Dtype) -> f64 {
    let node = &egraph[class].nodes[index];
    let inputs: Vec<&Shape> = node.children().iter().map(|&c| &egraph[c].data.shape).collect();
    let runs = if egraph[class].data.per_row {
        egraph.analysis.batch as f64
    } else {
        1.0
    };
    runs * profile.op_cost(node, &inputs, &egraph[class].data.shape, dtype)
}

/// Nodes with more children than this are priced after the narrower ones settle.
const WIDE: usize = 16;

/// Whether the chosen nodes form a cycle (a greedy choice made stale by a
/// later improvement of a child can, in principle, close one).
fn has_cycle(egraph: &Graph, choice: &HashMap<Id, usize>) -> bool {
    // Kahn's algorithm over the chosen nodes.
    let mut pending: HashMap<Id, usize> = HashMap::default();
    let mut users: HashMap<Id, Vec<Id>> = HashMap::default();
    for (&class, &index) in choice {
        let children: HashSet<Id> = egraph[class].nodes[index]
            .children()
            .iter()
            .map(|&c| egraph.find(c))
            .collect();
        pending.insert(class, children.len());
        for c in children {
            users.entry(c).or_default().push(class);
        }
    }
    let mut ready: Vec<Id> = pending.iter().filter(|(_, &n)| n == 0).map(|(&c, _)| c).collect();
    let mut done = 0;
    while let Some(class) = ready.pop() {
        done += 1;
        for &user in users.get(&class).into_iter().flatten() {
            let n = pending.get_mut(&user).unwrap();
            *n -= 1;
            if *n == 0 {
                ready.push(user);
            }
        }
    }
    done != choice.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egraph::analysis::ShapeAnalysis;
    use crate::ir::{Num, Shape, Unary};
    use egg::Symbol;

    fn graph() -> (Graph, Id) {
        let vars = [(Symbol::from("x"), Shape(vec![3]))].into_iter().collect();
        let mut egraph = Graph::new(ShapeAnalysis::new(vars));
        let x = egraph.add(Op::Var(Symbol::from("x")));
        (egraph, x)
    }

    #[test]
    fn a_class_without_a_choice_is_read_off_as_greedy_would_choose_it() {
        let (mut egraph, x) = graph();
        let sin = egraph.add(Op::Unary(Unary::Sin, x));
        let root = egraph.add(Op::Unary(Unary::Tanh, sin));
        egraph.rebuild();
        let profile = CostProfile::cpu();
        let forced = extract_forced(&egraph, &[root], &profile, Dtype::F64).expect("no choice");
        let greedy = extract_dag_greedy(&egraph, &[root], &profile, Dtype::F64).unwrap();
        assert_eq!(forced.choice, greedy.choice);
        assert!((forced.cost - greedy.cost).abs() < 1e-12);
    }

    #[test]
    fn a_real_choice_is_left_to_greedy_but_a_free_leaf_is_taken() {
        let (mut egraph, x) = graph();
        let sin = egraph.add(Op::Unary(Unary::Sin, x));
        let cos = egraph.add(Op::Unary(Unary::Cos, x));
        egraph.union(sin, cos);
        let root = egraph.add(Op::Unary(Unary::Tanh, sin));
        egraph.rebuild();
        let profile = CostProfile::cpu();
        assert!(extract_forced(&egraph, &[root], &profile, Dtype::F64).is_none());
        // Restricted to one of the two, there is no choice left.
        let only_sin = |_: Id, node: &Op| !matches!(node, Op::Unary(Unary::Cos, _));
        let forced = extract_forced_where(&egraph, &[root], &profile, Dtype::F64, &only_sin).unwrap();
        let class = egraph.find(sin);
        assert_eq!(egraph[class].nodes[forced.choice[&class]], Op::Unary(Unary::Sin, x));
        // A literal beside a computed node is the cheapest whatever the rest shares.
        let two = egraph.add(Op::Num(Num(2.0)));
        let computed = egraph.add(Op::Unary(Unary::Exp, root));
        egraph.union(two, computed);
        egraph.rebuild();
        let forced = extract_forced_where(&egraph, &[two], &profile, Dtype::F64, &only_sin).unwrap();
        let class = egraph.find(two);
        assert_eq!(forced.choice.len(), 1);
        assert_eq!(egraph[class].nodes[forced.choice[&class]], Op::Num(Num(2.0)));
    }
}
