//! Shape inference as an egg [`Analysis`]: every e-class knows its shape,
//! whether it is a number literal, and whether it depends on a batched input.

use crate::egraph::rule_search::ClassIndex;
use crate::error::Conflict;
use crate::ir::{ChildInfo, Op, Shape};
use egg::{Analysis, DidMerge, EGraph, Id, Language, Symbol};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What every e-class knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassData {
    /// The shape of the class's value.
    pub shape: Shape,
    /// The value, when the class is a number literal.
    pub constant: Option<f64>,
    /// Whether the value depends on an input being batched over (it is "mapped").
    pub mapped: bool,
    /// Whether it is computed once per row of a loop (it depends on a `row(...)`).
    pub per_row: bool,
    /// How many rows the batch it reads a row of has (the leading axis of
    /// `x` in `row(x)`): the size of its `vmap` spec. `None` when it reads
    /// no row or only chunks; the analysis's `batch` is then the size. The
    /// batcher has one batch; the autobatcher has one per group.
    pub rows: Option<usize>,
}

/// The analysis: declared shapes of the variables, which variables are
/// batched over, and the batch size (the shape of a `vmap` spec node whose
/// term reads no `row`).
#[derive(Debug, Default, Clone)]
pub struct ShapeAnalysis {
    /// The shape of every variable.
    pub vars: HashMap<Symbol, Shape>,
    /// The per-example variables being batched over.
    pub over: HashSet<Symbol>,
    /// The batch size (for `vmap`).
    pub batch: usize,
    /// Shape errors found while adding or merging, each naming the op or the
    /// two shapes: a non-empty list means some rewrite was unsound.
    pub conflicts: Vec<Conflict>,
    /// Renewed, unique across e-graphs, by every node added and every union:
    /// equal stamps mean the same e-graph (or an unchanged copy).
    pub stamp: u64,
    /// The rules' search index and the stamp it was built at.
    pub(crate) class_index: ClassIndexCache,
}

/// The rules' search index ([`crate::egraph::rule_search`]) for
/// one state of the e-graph. A copy of the e-graph keeps it: the stamp says
/// whether it is still that state.
#[derive(Debug, Default)]
pub(crate) struct ClassIndexCache(pub(crate) Mutex<Option<(u64, Arc<ClassIndex>)>>);

impl Clone for ClassIndexCache {
    fn clone(&self) -> Self {
        let cached = self.0.lock().expect("the index is never left half-built").clone();
        ClassIndexCache(Mutex::new(cached))
    }
}

impl std::ops::Deref for ClassIndexCache {
    type Target = Mutex<Option<(u64, Arc<ClassIndex>)>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A stamp no e-graph has had.
fn next_stamp() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl ShapeAnalysis {
    /// An analysis for a program's declared variables.
    pub fn new(vars: HashMap<Symbol, Shape>) -> Self {
        ShapeAnalysis {
            vars,
            ..Default::default()
        }
    }
}

/// The e-graph type used throughout the crate.
pub type Graph = EGraph<Op, ShapeAnalysis>;

impl Analysis<Op> for ShapeAnalysis {
    type Data = ClassData;

    fn make(egraph: &mut Graph, enode: &Op, _id: Id) -> ClassData {
        egraph.analysis.stamp = next_stamp();
        let data = |id: Id| &egraph[id].data;
        let (shape, mapped) = if let Some(v) = enode.as_var() {
            let declared = egraph.analysis.vars.get(&v).cloned();
            (
                declared.ok_or_else(|| Conflict::UnknownVariable { name: v.to_string() }),
                egraph.analysis.over.contains(&v),
            )
        } else if let Op::Vmap(child) = enode {
            let rows = data(*child).rows.unwrap_or(egraph.analysis.batch);
            (Ok(data(*child).shape.with_leading(rows)), true)
        } else {
            let shape = enode.infer_shape_from(|c| ChildInfo {
                shape: &data(c).shape,
                constant: data(c).constant,
            });
            // A row of a batch is per-example data: it varies with the example.
            let mapped = matches!(enode, Op::Row(_) | Op::Rows(_)) || enode.children().iter().any(|&c| data(c).mapped);
            (shape.map_err(Conflict::IllShaped), mapped)
        };
        let per_row = enode.is_per_row(|c| data(c).per_row);
        let rows = match enode {
            Op::Row(x) => data(*x).shape.dims().first().copied(),
            Op::Vmap(_) => None,
            _ => enode.children().iter().find_map(|&c| data(c).rows),
        };
        let constant = enode.as_num();
        let shape = shape.unwrap_or_else(|conflict| {
            // Only a rewrite builds an ill-shaped node: the batcher turns this into an error.
            egraph.analysis.conflicts.push(conflict);
            Shape::scalar()
        });
        ClassData {
            shape,
            constant,
            mapped,
            per_row,
            rows,
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        self.stamp = next_stamp();
        if a.shape != b.shape {
            self.conflicts.push(Conflict::Merged {
                left: a.shape.clone(),
                right: b.shape.clone(),
            });
        }
        let mut changed_a = false;
        if a.constant.is_none() && b.constant.is_some() {
            a.constant = b.constant;
            changed_a = true;
        }
        if !a.mapped && b.mapped {
            a.mapped = true;
            changed_a = true;
        }
        if !a.per_row && b.per_row {
            a.per_row = true;
            changed_a = true;
        }
        if a.rows.is_none() && b.rows.is_some() {
            a.rows = b.rows;
            changed_a = true;
        }
        DidMerge(
            changed_a,
            a.constant != b.constant || a.mapped != b.mapped || a.per_row != b.per_row || a.rows != b.rows,
        )
    }
}
