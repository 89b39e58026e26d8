//! A graph under construction: the forward program's nodes, then the
//! derivative nodes added to them. Equal nodes are added once (CSE as the
//! graph grows), every node's shape is inferred as it is added, and a few
//! local identities keep the derivative graphs small: literals fold, `x * 1`
//! is `x`, `x * -1` is `-x`, broadcasting to a value's own shape is the value.

use crate::error::{Error, Result};
use crate::ir::structural::{Emit, Structural};
use crate::ir::{Binary, Nodes, Op, Program, Reduce, Shape, Unary, MAX_NODES};
use egg::{ENodeOrVar, Id, Language, Pattern, RecExpr};

/// The rows a per-row node runs over: `n` rows, one at a time (`map`) or in chunks of `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoopRows {
    /// How many rows the loop covers.
    pub rows: usize,
    /// `Some(k)` inside `chunks(_, n, k)`.
    pub chunk: Option<usize>,
}

/// A graph under construction.
pub struct Builder {
    /// The nodes, each op once, with their shapes (CSE and shape checks shared with the front end's builder).
    nodes: Nodes,
    constants: Vec<Option<f64>>,
    loop_rows: Vec<Option<LoopRows>>,
}

impl Builder {
    /// A builder holding `program`'s nodes, with their ids unchanged.
    pub fn from_program(program: &Program) -> Builder {
        let mut builder = Builder {
            nodes: Nodes::default(),
            constants: vec![],
            loop_rows: vec![],
        };
        for (i, node) in program.expr.as_ref().iter().enumerate() {
            let id = builder.push(node.clone(), program.shape(Id::from(i)).clone());
            debug_assert_eq!(usize::from(id), i);
        }
        builder
    }

    /// The nodes built so far.
    pub fn into_expr(self) -> RecExpr<Op> {
        self.nodes.into_expr()
    }

    /// The shape of node `id`.
    pub fn shape(&self, id: Id) -> &Shape {
        self.nodes.shape(id)
    }

    /// The rank of node `id`.
    pub fn rank(&self, id: Id) -> usize {
        self.shape(id).rank()
    }

    /// The value of node `id` if it is a literal (or folds to one).
    pub fn constant(&self, id: Id) -> Option<f64> {
        self.constants[usize::from(id)]
    }

    /// The loop that node `id` runs in, if it runs per row.
    pub fn loop_rows(&self, id: Id) -> Option<LoopRows> {
        self.loop_rows[usize::from(id)]
    }

    /// The node `op` (children already built); its shape is checked.
    pub fn add(&mut self, op: Op) -> Result<Id> {
        if let Some(id) = self.nodes.find(&op) {
            return Ok(id);
        }
        self.nodes
            .check_room(|| format!("program too large: the derived program would have more than {MAX_NODES} nodes"))?;
        if let Some(id) = self.reshaped_broadcast(&op)? {
            return Ok(id);
        }
        if let Some(folded) = self.fold(&op) {
            return Ok(self.num(folded));
        }
        let shape = self.nodes.infer(&op)?;
        Ok(self.push(op, shape))
    }

    fn push(&mut self, op: Op, shape: Shape) -> Id {
        let constant = op.as_num();
        let loop_rows = if let Op::Row(y) = &op {
            Some(LoopRows {
                rows: self.shape(*y).dims()[0],
                chunk: None,
            })
        } else if let Op::Rows([y, k]) = &op {
            Some(LoopRows {
                rows: self.shape(*y).dims()[0],
                chunk: self.constant(*k).map(|k| k as usize),
            })
        } else if op.is_per_row(|c| self.loop_rows(c).is_some()) {
            op.children().iter().find_map(|&c| self.loop_rows(c))
        } else {
            None
        };
        let id = self.nodes.push(op, shape);
        self.constants.push(constant);
        self.loop_rows.push(loop_rows);
        id
    }

    /// A row of a value broadcast along its leading axis is the value
    /// broadcast to the row's shape (`index(broadcast(e, n, d...), i) =
    /// broadcast(e, d...)`, `row` alike), and a broadcast scalar with a new axis is the
    /// scalar broadcast to the new shape, so that constant cotangents stay constants.
    fn reshaped_broadcast(&mut self, op: &Op) -> Result<Option<Id>> {
        let expand = matches!(op, Op::Structural(Structural::Expand, _));
        let (value, dims) = match (op, op.as_structural()) {
            (Op::Row(value), _) | (_, Some((Structural::Index, [value, _]))) => {
                (*value, self.shape(*value).dims()[1..].to_vec())
            }
            (_, Some((Structural::Expand, [value, k]))) if self.rank(*value) > 0 => {
                let mut dims = self.shape(*value).dims().to_vec();
                dims.insert(self.constant(*k).map_or(0, |k| k as usize).min(dims.len()), 1);
                (*value, dims)
            }
            _ => return Ok(None),
        };
        let Some((Structural::Broadcast, children)) = self.nodes.op(value).as_structural() else {
            return Ok(None);
        };
        let inner = children[0];
        let fits = if expand {
            self.rank(inner) == 0
        } else {
            self.rank(inner) < self.rank(value)
        };
        if !fits {
            return Ok(None);
        }
        self.broadcast_to(inner, &Shape(dims)).map(Some)
    }

    /// The value of an elementwise op of literals (a recogniser of two ops, not a dispatch over all).
    /// Only finite values fold: `log(0)` stays an op, as the language has no literal for it.
    fn fold(&self, op: &Op) -> Option<f64> {
        let value = match op {
            Op::Unary(u, a) => u.value(self.constant(*a)?),
            Op::Binary(b, [l, r]) => b.value(self.constant(*l)?, self.constant(*r)?),
            _ => return None,
        };
        value.is_finite().then_some(value)
    }

    /// A new variable `name` of `shape` (a tangent input).
    pub fn var(&mut self, name: &str, shape: Shape) -> Id {
        self.push(Op::Var(name.into()), shape)
    }

    /// The literal `value` (a scalar).
    pub fn num(&mut self, value: f64) -> Id {
        match self.nodes.find(&Op::Num(crate::ir::Num(value))) {
            Some(id) => id,
            None => self.push(Op::Num(crate::ir::Num(value)), Shape::scalar()),
        }
    }

    /// An integer literal (an axis, count or dimension).
    pub fn int(&mut self, value: usize) -> Id {
        self.num(value as f64)
    }

    /// `u(a)`.
    pub fn unary(&mut self, u: Unary, a: Id) -> Result<Id> {
        if u == Unary::Neg {
            if let Op::Unary(Unary::Neg, inner) = *self.nodes.op(a) {
                return Ok(inner);
            }
        }
        self.add(Op::Unary(u, a))
    }

    /// `a op b`, with numpy broadcasting; `a ^ 1` is `a`.
    pub fn binary(&mut self, op: Binary, a: Id, b: Id) -> Result<Id> {
        if op == Binary::Pow && self.constant(b) == Some(1.0) {
            return Ok(a);
        }
        self.add(Op::Binary(op, [a, b]))
    }

    /// `a * b`. When one operand has the result's shape, the other need not
    /// be broadcast first, and a factor of 1 or -1 is no multiplication.
    pub fn mul(&mut self, a: Id, b: Id) -> Result<Id> {
        for (value, factor) in [(a, b), (b, a)] {
            let keeps_shape =
                crate::ir::broadcast(self.shape(value), self.shape(factor)).as_ref() == Some(self.shape(value));
            if !keeps_shape {
                continue;
            }
            if let Some((Structural::Broadcast, children)) = self.nodes.op(factor).as_structural() {
                let inner = children[0];
                return self.mul(value, inner);
            }
            match self.constant(factor) {
                Some(1.0) => return Ok(value),
                Some(-1.0) => return self.unary(Unary::Neg, value),
                _ => {}
            }
        }
        self.binary(Binary::Mul, a, b)
    }

    /// `a + b`.
    pub fn plus(&mut self, a: Id, b: Id) -> Result<Id> {
        self.binary(Binary::Add, a, b)
    }

    /// `r(a, axis)`.
    pub fn reduce_axis(&mut self, r: Reduce, a: Id, axis: usize) -> Result<Id> {
        let axis = self.int(axis);
        self.add(Op::ReduceAxis(r, [a, axis]))
    }

    /// `expand(a, axis)`.
    pub fn expand(&mut self, a: Id, axis: usize) -> Result<Id> {
        let axis = self.int(axis);
        self.add(Op::structural(Structural::Expand, &[a, axis]))
    }

    /// `a` broadcast to `shape` (`a` itself if it has that shape).
    pub fn broadcast_to(&mut self, a: Id, shape: &Shape) -> Result<Id> {
        if self.shape(a) == shape {
            return Ok(a);
        }
        if self.follows_a_short_last_chunk(a, shape) {
            // `k` written as a literal would be wrong for the last chunk:
            // broadcast the other axes only, so the leading one follows `a`.
            let mut other_axes = shape.clone();
            other_axes.0[0] = 1;
            let zeros = self.zeros(&other_axes)?;
            return self.add(Op::Binary(Binary::Add, [a, zeros]));
        }
        let mut children = vec![a];
        children.extend(shape.dims().iter().map(|&d| self.int(d)));
        self.add(Op::structural(Structural::Broadcast, &children))
    }

    /// Whether `a` is a chunk of a `chunks` loop whose last chunk has fewer
    /// rows than `k`, and `shape` keeps its leading axis of `k` rows.
    fn follows_a_short_last_chunk(&self, a: Id, shape: &Shape) -> bool {
        let Some(LoopRows { rows, chunk: Some(k) }) = self.loop_rows(a) else {
            return false;
        };
        let leading = |s: &Shape| s.dims().first().copied();
        rows % k != 0 && self.rank(a) == shape.rank() && leading(self.shape(a)) == Some(k) && leading(shape) == Some(k)
    }

    /// Zeros of `shape`.
    pub fn zeros(&mut self, shape: &Shape) -> Result<Id> {
        let zero = self.num(0.0);
        self.broadcast_to(zero, shape)
    }

    /// `g` summed down to `target`: the transpose of numpy broadcasting.
    pub fn sum_to(&mut self, g: Id, target: &Shape) -> Result<Id> {
        let mut g = g;
        while self.rank(g) > target.rank() {
            g = self.reduce_axis(Reduce::Sum, g, 0)?;
        }
        for (axis, &d) in target.dims().iter().enumerate() {
            if d == 1 && self.shape(g).dims()[axis] != 1 {
                let summed = self.reduce_axis(Reduce::Sum, g, axis)?;
                g = self.expand(summed, axis)?;
            }
        }
        if self.shape(g) != target {
            return Err(Error::Internal(format!(
                "cannot sum {} down to {target}",
                self.shape(g)
            )));
        }
        Ok(g)
    }

    /// `a` with its last two axes swapped (`transpose` for a matrix).
    pub fn swap_last_two(&mut self, a: Id) -> Result<Id> {
        let rank = self.rank(a);
        if rank == 2 {
            return self.add(Op::structural(Structural::Transpose, &[a]));
        }
        let mut children = vec![a];
        let axes = (0..rank - 2).chain([rank - 1, rank - 2]);
        children.extend(axes.map(|k| self.int(k)).collect::<Vec<_>>());
        self.add(Op::structural(Structural::Permute, &children))
    }

    /// The graph `pattern` (from an op table) with its variables bound to nodes.
    pub fn instantiate(&mut self, pattern: &str, bind: &[(&str, Id)]) -> Result<Id> {
        let pattern: Pattern<Op> = pattern
            .parse()
            .map_err(|e| Error::Internal(format!("derivative pattern {pattern:?}: {e}")))?;
        let mut built: Vec<Id> = Vec::with_capacity(pattern.ast.as_ref().len());
        for node in pattern.ast.as_ref() {
            let id = match node {
                ENodeOrVar::Var(v) => {
                    let name = v.to_string();
                    bind.iter()
                        .find(|(n, _)| *n == name)
                        .map(|&(_, id)| id)
                        .ok_or_else(|| Error::Internal(format!("derivative pattern uses unbound {name}")))?
                }
                ENodeOrVar::ENode(op) => {
                    let op = op.clone().map_children(|c| built[usize::from(c)]);
                    match op {
                        Op::Binary(Binary::Mul, [a, b]) => self.mul(a, b)?,
                        Op::Binary(k, [a, b]) => self.binary(k, a, b)?,
                        Op::Unary(u, a) => self.unary(u, a)?,
                        op => self.add(op)?,
                    }
                }
            };
            built.push(id);
        }
        Ok(*built.last().expect("a pattern has a root"))
    }
}

/// The op files' rules (`src/ir/structural/`) build derivative nodes here.
impl Emit for Builder {
    fn add(&mut self, op: Op) -> Result<Id> {
        Builder::add(self, op)
    }
    fn shape(&self, id: Id) -> Shape {
        Builder::shape(self, id).clone()
    }
    fn int(&mut self, n: usize) -> Result<Id> {
        Ok(Builder::int(self, n))
    }
    fn sum_to(&mut self, value: Id, target: &Shape) -> Result<Id> {
        Builder::sum_to(self, value, target)
    }
    fn zeros(&mut self, shape: &Shape) -> Result<Id> {
        Builder::zeros(self, shape)
    }
}
