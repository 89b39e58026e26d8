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
use crate::egraph::cost_map::CostMap;
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
#[derive(Clone, Debug)]
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
/// accepts: how the autobatcher fixes which groups run batched.
pub fn extract_dag_greedy_where(
    egraph: &Graph,
    roots: &[Id],
    profile: &CostProfile,
    dtype: Dtype,
    allowed: &dyn Fn(Id, &Op) -> bool,
) -> Option<Extraction> {
    let node_cost = |class: Id, index: usize| match allowed(class, &egraph[class].nodes[index]) {
        true => node_cost(egraph, class, index, profile, dtype),
        false => f64::INFINITY,
    };
    let mut parents: HashMap<Id, Vec<(Id, usize)>> = HashMap::default();
    let mut queue: VecDeque<(Id, usize)> = VecDeque::new();
    let mut queued: HashSet<(Id, usize)> = HashSet::default();
    for class in egraph.classes() {
        for (index, node) in class.nodes.iter().enumerate() {
            if node.is_leaf() {
                queue.push_back((class.id, index));
                queued.insert((class.id, index));
            }
            for &child in node.children() {
                parents.entry(egraph.find(child)).or_default().push((class.id, index));
            }
        }
    }
    // By class id (an index into the e-graph's nodes): hashing every look-up
    // was a quarter of the time on a long program.
    let mut best: Vec<Option<CostSet>> = vec![None; egraph.nodes().len()];
    let at = |c: &Id| usize::from(*c);
    // Wide nodes (a stack of many members) union many sets: they wait until
    // everything narrower has settled, so that each is priced once per
    // settling, not once per child that improves (quadratic in the width).
    let mut wide: VecDeque<(Id, usize)> = VecDeque::new();
    loop {
        let (class, index) = match queue.pop_front() {
            Some(item) if egraph[item.0].nodes[item.1].children().len() > WIDE => {
                wide.push_back(item); // still queued: the wide queue holds it
                continue;
            }
            Some(item) => item,
            None => match wide.pop_front() {
                Some(item) => item,
                None => break,
            },
        };
        queued.remove(&(class, index));
        let node = &egraph[class].nodes[index];
        let own = node_cost(class, index);
        if !own.is_finite() {
            continue;
        }
        let children: Vec<Id> = node.children().iter().map(|&c| egraph.find(c)).collect();
        if !children.iter().all(|c| best[at(c)].is_some()) {
            continue;
        }
        // Start from the largest child's set and add the rest (a class in
        // two sets keeps the cost in the later child's).
        let set = |c: &Id| best[at(c)].as_ref().expect("every child is priced");
        let largest = children.iter().max_by_key(|c| set(c).costs.len());
        let mut costs = largest.map(|c| set(c).costs.clone()).unwrap_or_default();
        for c in &children {
            if Some(c) != largest {
                costs = set(c).costs.union(&costs);
            }
        }
        if costs.get(class).is_some() {
            continue; // would close a cycle
        }
        let costs = costs.union(&CostMap::single(class, own));
        let total = costs.total();
        if best[at(&class)].as_ref().is_none_or(|b| total < b.total) {
            best[at(&class)] = Some(CostSet {
                node: index,
                costs,
                total,
            });
            for &(parent, parent_index) in parents.get(&class).into_iter().flatten() {
                if queued.insert((parent, parent_index)) {
                    queue.push_back((parent, parent_index));
                }
            }
        }
    }
    let mut choice = HashMap::default();
    let mut all: HashMap<Id, f64> = HashMap::default();
    let mut stack: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    while let Some(class) = stack.pop() {
        if choice.contains_key(&class) {
            continue;
        }
        let set = best[at(&class)].as_ref()?;
        choice.insert(class, set.node);
        all.insert(class, set.costs.get(class)?);
        stack.extend(egraph[class].nodes[set.node].children().iter().map(|&c| egraph.find(c)));
    }
    if has_cycle(egraph, &choice) {
        return None;
    }
    Some(Extraction {
        cost: all.values().sum(),
        choice,
    })
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
