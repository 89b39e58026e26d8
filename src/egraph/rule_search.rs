//! Searching the rules through an index of the e-graph by op.
//!
//! egg searches a pattern from every class holding a node of its root's enum
//! variant: each of the ~80 batching rules `(vmap (op ...))` visited every
//! `vmap` class each round, and `(* ?a 1)` every class of a binary op. On a
//! program of n ops that is rules x n class lookups, most of the time of
//! `batch` on a deep program. Here the classes are indexed by the ops they
//! hold (an op with its children cleared: `sin`, `*`, `vmap`) and, for the
//! rules that name one, by the op held by a given child: each rule searches
//! only the classes where its root and its first named child can both match.
//!
//! The index is cached in the e-graph's analysis and stamped with the
//! analysis's [`ShapeAnalysis::stamp`], which every added node and every
//! union renews: a stale index is never read.

use crate::egraph::analysis::{Graph, ShapeAnalysis};
use crate::ir::Op;
use egg::{ENodeOrVar, Id, Language, Pattern, PatternAst, SearchMatches, Searcher, Var};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Classes by the kind of op (see [`kind`]).
type ByKind = HashMap<Op, Vec<Id>>;

/// The classes by the ops they hold, and by the ops a child holds.
#[derive(Debug, Default)]
pub struct ClassIndex {
    by_kind: ByKind,
    /// Built when a rule asks: for a root kind and a child position, the
    /// classes holding a node of that kind, by the kinds of that child's class.
    by_child: Mutex<HashMap<(Op, usize), Arc<ByKind>>>,
}

impl ClassIndex {
    fn build(egraph: &Graph) -> ClassIndex {
        let mut by_kind: HashMap<Op, Vec<Id>> = HashMap::new();
        for class in egraph.classes() {
            for node in &class.nodes {
                push_once(by_kind.entry(kind(node)).or_default(), class.id);
            }
        }
        ClassIndex {
            by_kind,
            by_child: Mutex::default(),
        }
    }

    /// The classes holding a node of `root`.
    fn classes(&self, root: &Op) -> &[Id] {
        self.by_kind.get(root).map_or(&[], Vec::as_slice)
    }

    /// The classes holding a node of `root`, by the kinds its child `position` holds.
    fn by_child(&self, egraph: &Graph, root: &Op, position: usize) -> Arc<ByKind> {
        let mut by_child = self.by_child.lock().expect("the index is never left half-built");
        by_child
            .entry((root.clone(), position))
            .or_insert_with(|| Arc::new(self.by_child_kind(egraph, root, position)))
            .clone()
    }

    fn by_child_kind(&self, egraph: &Graph, root: &Op, position: usize) -> ByKind {
        let mut by_child_kind = ByKind::new();
        for &class in self.classes(root) {
            for node in egraph[class].nodes.iter().filter(|n| kind(n) == *root) {
                for child_node in &egraph[node.children()[position]].nodes {
                    push_once(by_child_kind.entry(kind(child_node)).or_default(), class);
                }
            }
        }
        by_child_kind
    }
}

fn push_once(classes: &mut Vec<Id>, class: Id) {
    if classes.last() != Some(&class) {
        classes.push(class);
    }
}

/// The index for `egraph` as it is now, built if the cached one is stale.
fn index(egraph: &Graph) -> Arc<ClassIndex> {
    let analysis: &ShapeAnalysis = &egraph.analysis;
    let mut cache = analysis.class_index.lock().expect("the index is never left half-built");
    match &*cache {
        Some((stamp, index)) if *stamp == analysis.stamp => index.clone(),
        _ => {
            let index = Arc::new(ClassIndex::build(egraph));
            *cache = Some((analysis.stamp, index.clone()));
            index
        }
    }
}

/// An op with its children cleared: which op it is. A structural op's arity
/// is left out (a `concat` or `stack` takes any number of operands), so the
/// index may offer a class whose node has another arity; the pattern's own
/// search then rejects it.
fn kind(op: &Op) -> Op {
    match op {
        Op::Structural(s, _) => Op::Structural(*s, Box::new([])),
        Op::Unary(..)
        | Op::Binary(..)
        | Op::Reduce(..)
        | Op::ReduceAxis(..)
        | Op::MatMul(_)
        | Op::Map(_)
        | Op::Row(_)
        | Op::Chunks(_)
        | Op::Rows(_)
        | Op::Accumulate(_)
        | Op::Vmap(_)
        | Op::Num(_)
        | Op::Var(_) => op.clone().map_children(|_| Id::from(0)),
    }
}

/// What a pattern's root and first op-naming child ask of a class.
#[derive(Debug)]
enum Key {
    /// The root is a variable: every class.
    Any,
    /// A node of this kind.
    Root(Op),
    /// A node of `root`'s kind whose child at `position` holds a node of `child`'s.
    Child { root: Op, position: usize, child: Op },
}

/// A rule's searcher: its left side, searched from the classes the index
/// says can match.
#[derive(Debug)]
pub struct RuleSearcher {
    pattern: Pattern<Op>,
    key: Key,
}

impl RuleSearcher {
    /// The searcher of a rule whose left side is `lhs`.
    pub fn new(lhs: Pattern<Op>) -> RuleSearcher {
        let nodes = lhs.ast.as_ref();
        let key = match nodes.last() {
            Some(ENodeOrVar::ENode(root)) => root
                .children()
                .iter()
                .enumerate()
                .find_map(|(position, &c)| match &nodes[usize::from(c)] {
                    ENodeOrVar::ENode(child) => Some(Key::Child {
                        root: kind(root),
                        position,
                        child: kind(child),
                    }),
                    ENodeOrVar::Var(_) => None,
                })
                .unwrap_or_else(|| Key::Root(kind(root))),
            _ => Key::Any,
        };
        RuleSearcher { pattern: lhs, key }
    }

    /// The searcher of `(vmap ?t)` at the classes whose child holds a node
    /// of `op`'s kind: for an applier that reads the op under `vmap` itself.
    pub fn under_vmap(op: &Op) -> RuleSearcher {
        RuleSearcher {
            pattern: "(vmap ?t)".parse().expect("a pattern"),
            key: Key::Child {
                root: Op::Vmap(Id::from(0)),
                position: 0,
                child: kind(op),
            },
        }
    }

    fn search_classes<'a>(&'a self, egraph: &Graph, classes: &[Id], limit: usize) -> Vec<SearchMatches<'a, Op>> {
        let mut matches = vec![];
        let mut found = 0;
        for &class in classes {
            if found >= limit {
                break;
            }
            if let Some(m) = self.pattern.search_eclass_with_limit(egraph, class, limit - found) {
                found += m.substs.len();
                matches.push(m);
            }
        }
        matches
    }
}

impl Searcher<Op, ShapeAnalysis> for RuleSearcher {
    fn search_eclass_with_limit(&self, egraph: &Graph, eclass: Id, limit: usize) -> Option<SearchMatches<'_, Op>> {
        self.pattern.search_eclass_with_limit(egraph, eclass, limit)
    }

    fn search_with_limit(&self, egraph: &Graph, limit: usize) -> Vec<SearchMatches<'_, Op>> {
        match &self.key {
            Key::Any => self.pattern.search_with_limit(egraph, limit),
            Key::Root(root) => self.search_classes(egraph, index(egraph).classes(root), limit),
            Key::Child { root, position, child } => {
                let by_child = index(egraph).by_child(egraph, root, *position);
                let classes = by_child.get(child).map_or(&[][..], Vec::as_slice);
                self.search_classes(egraph, classes, limit)
            }
        }
    }

    fn vars(&self) -> Vec<Var> {
        self.pattern.vars()
    }

    fn get_pattern_ast(&self) -> Option<&PatternAst<Op>> {
        Searcher::<Op, ShapeAnalysis>::get_pattern_ast(&self.pattern)
    }
}
