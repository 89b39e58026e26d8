//! The core that both graph builders share (the public
//! [`ProgramBuilder`](crate::front::ProgramBuilder) and the transforms'
//! derivative builder, `transform::builder`): nodes added in order, an equal
//! node added once (CSE as the graph grows), and every node's shape inferred
//! from its children's as it is added, so that a bad operand is refused at
//! the op that reads it. What each builder adds on top (declarations and
//! outputs; constant folding and loop rows) stays with it.

use crate::ir::error::{Error, Result};
use crate::ir::{ChildInfo, Num, Op, Shape, MAX_NODES};
use egg::{Id, RecExpr};
use std::collections::HashMap;

/// Nodes under construction, each with its shape, each op once.
#[derive(Clone, Debug, Default)]
pub struct Nodes {
    expr: RecExpr<Op>,
    memo: HashMap<Op, Id>,
    shapes: Vec<Shape>,
}

impl Nodes {
    /// The node equal to `op` (children included), if one was added.
    pub fn find(&self, op: &Op) -> Option<Id> {
        self.memo.get(op).copied()
    }

    /// Adds `op` with `shape`, trusted (a declared variable, or a node whose
    /// shape was inferred already); returns its id.
    pub fn push(&mut self, op: Op, shape: Shape) -> Id {
        let id = self.expr.add(op.clone());
        self.memo.insert(op, id);
        self.shapes.push(shape);
        id
    }

    /// An error unless one more node fits under [`MAX_NODES`]; `message`
    /// says what would be too large.
    pub fn check_room(&self, message: impl FnOnce() -> String) -> Result<()> {
        if self.expr.len() >= MAX_NODES {
            return Err(Error::Limit {
                limit: MAX_NODES as u64,
                message: message(),
            });
        }
        Ok(())
    }

    /// The shape of `op`, whose children are nodes added here; an error names
    /// the op and its operands' shapes.
    pub fn infer(&self, op: &Op) -> Result<Shape> {
        Ok(op.infer_shape_from(|c| ChildInfo {
            shape: &self.shapes[usize::from(c)],
            constant: self.expr[c].as_num(),
        })?)
    }

    /// The literal `value` (a scalar), added once.
    pub fn num(&mut self, value: f64) -> Id {
        let op = Op::Num(Num(value));
        match self.find(&op) {
            Some(id) => id,
            None => self.push(op, Shape::scalar()),
        }
    }

    /// The op of node `id`.
    pub fn op(&self, id: Id) -> &Op {
        &self.expr[id]
    }

    /// The shape of node `id`.
    pub fn shape(&self, id: Id) -> &Shape {
        &self.shapes[usize::from(id)]
    }

    /// How many nodes have been added.
    pub fn len(&self) -> usize {
        self.expr.len()
    }

    /// Whether no node has been added.
    pub fn is_empty(&self) -> bool {
        self.expr.as_ref().is_empty()
    }

    /// The nodes, in the order they were added.
    pub fn into_expr(self) -> RecExpr<Op> {
        self.expr
    }
}
