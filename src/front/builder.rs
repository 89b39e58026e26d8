//! Building a program from Rust, the way DyNet builds a computation graph
//! per example: declare inputs and params, add ops, name outputs. Every op's
//! shape is checked as it is added (an error names the op and the operands'
//! shapes), and an op equal to one already added, children included, is that
//! node (CSE as you build), so the same subterm built twice costs nothing.
//! [`ProgramBuilder::finish`] gives a [`Program`], whose printed form is the
//! `.graph` language: the text language stays what a program prints as and
//! parses back from.
//!
//! ```
//! use batchgraph::front::ProgramBuilder;
//! let mut b = ProgramBuilder::new();
//! let x = b.input("x", &[3]).unwrap();
//! let w = b.param("w", &[4, 3]).unwrap();
//! let h = b.matmul(w, x).unwrap();
//! let h = b.tanh(h).unwrap();
//! let product = b.matmul(w, x).unwrap();
//! let again = b.tanh(product).unwrap();
//! assert_eq!(h, again); // CSE as you build
//! let s = b.sum(h).unwrap();
//! b.output("s", s).unwrap();
//! let program = b.finish().unwrap();
//! assert!(program.to_text().contains("tanh(w @ x)"));
//! assert!(b_err().is_err());
//! fn b_err() -> batchgraph::Result<egg::Id> {
//!     let mut b = ProgramBuilder::new();
//!     let x = b.input("x", &[3])?;
//!     let w = b.param("w", &[4, 2])?;
//!     b.matmul(w, x) // [4, 2] @ [3]: refused here, naming the op and shapes
//! }
//! ```

use crate::error::{Error, Result};
use crate::ir::{Binary, Decl, Nodes, Op, Program, Reduce, Shape, Structural, Unary, MAX_NODES};
use egg::{Id, Language, Symbol};

/// A program under construction (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct ProgramBuilder {
    inputs: Vec<Decl>,
    params: Vec<Decl>,
    /// The nodes, each op once, with their shapes.
    nodes: Nodes,
    outputs: Vec<(String, Id)>,
    names: Vec<(Id, String)>,
    /// Every name declared, so that declaring stays linear in a program of thousands of inputs.
    declared: std::collections::HashSet<String>,
}

impl ProgramBuilder {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the per-example input `name` of shape `dims`; returns its node.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> Result<Id> {
        self.declare(name, dims, true)
    }

    /// Declares the param `name` (shared by every example) of shape `dims`; returns its node.
    pub fn param(&mut self, name: &str, dims: &[usize]) -> Result<Id> {
        self.declare(name, dims, false)
    }

    fn declare(&mut self, name: &str, dims: &[usize], input: bool) -> Result<Id> {
        let decl = Decl {
            name: name.to_string(),
            shape: Shape(dims.to_vec()),
        };
        decl.shape
            .check_size()
            .map_err(|reason| Error::Values(format!("builder: `{name}`: {reason}")))?;
        if !self.declared.insert(name.to_string()) {
            return Err(Error::Values(format!("builder: `{name}` is declared twice")));
        }
        let shape = decl.shape.clone();
        match input {
            true => self.inputs.push(decl),
            false => self.params.push(decl),
        }
        Ok(self.nodes.push(Op::Var(Symbol::from(name)), shape))
    }

    /// The literal `value` (a scalar).
    pub fn num(&mut self, value: f64) -> Id {
        self.nodes.num(value)
    }

    /// Adds `op`, whose children are nodes already built: its shape is
    /// checked (an error names the op and its operands' shapes), and an equal
    /// node already built is returned instead of a new one.
    pub fn op(&mut self, op: Op) -> Result<Id> {
        if let Some(id) = self.nodes.find(&op) {
            return Ok(id);
        }
        if let Some(&c) = op.children().iter().find(|&&c| usize::from(c) >= self.nodes.len()) {
            return Err(Error::Values(format!(
                "builder: {op} reads node {c}, which was not built here"
            )));
        }
        if let Op::Var(v) = &op {
            return Err(Error::Values(format!(
                "builder: `{v}` is a variable; declare it with input or param"
            )));
        }
        self.nodes
            .check_room(|| format!("program too large: more than {MAX_NODES} nodes"))?;
        let shape = self.nodes.infer(&op)?;
        Ok(self.nodes.push(op, shape))
    }

    /// The shape of node `id`.
    pub fn shape(&self, id: Id) -> &Shape {
        self.nodes.shape(id)
    }

    /// How many distinct nodes have been built.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// `u(a)`.
    pub fn unary(&mut self, u: Unary, a: Id) -> Result<Id> {
        self.op(Op::Unary(u, a))
    }

    /// `a op b`, numpy broadcasting.
    pub fn binary(&mut self, op: Binary, a: Id, b: Id) -> Result<Id> {
        self.op(Op::Binary(op, [a, b]))
    }

    /// `a @ b` (numpy matmul).
    pub fn matmul(&mut self, a: Id, b: Id) -> Result<Id> {
        self.op(Op::MatMul([a, b]))
    }

    /// `r(a)` over every element.
    pub fn reduce(&mut self, r: Reduce, a: Id) -> Result<Id> {
        self.op(Op::Reduce(r, a))
    }

    /// `r(a, axis)`.
    pub fn reduce_axis(&mut self, r: Reduce, a: Id, axis: usize) -> Result<Id> {
        let axis = self.num(axis as f64);
        self.op(Op::ReduceAxis(r, [a, axis]))
    }

    /// The structural op `s` of `arrays`, then the integer operands `ints`
    /// (`slice(a, axis, start, end)` is `structural(Slice, &[a], &[axis, start, end])`).
    pub fn structural(&mut self, s: Structural, arrays: &[Id], ints: &[usize]) -> Result<Id> {
        let mut children = arrays.to_vec();
        children.extend(ints.iter().map(|&i| self.num(i as f64)));
        if s.arrays_of(children.len()) != Some(arrays.len()) {
            return Err(Error::Values(format!(
                "builder: {} takes {}; given {} arrays and {} integers",
                s.name(),
                s.call(),
                arrays.len(),
                ints.len()
            )));
        }
        self.op(Op::structural(s, &children))
    }

    /// `a + b`.
    pub fn add(&mut self, a: Id, b: Id) -> Result<Id> {
        self.binary(Binary::Add, a, b)
    }

    /// `a - b`.
    pub fn sub(&mut self, a: Id, b: Id) -> Result<Id> {
        self.binary(Binary::Sub, a, b)
    }

    /// `a * b`.
    pub fn mul(&mut self, a: Id, b: Id) -> Result<Id> {
        self.binary(Binary::Mul, a, b)
    }

    /// `a / b`.
    pub fn div(&mut self, a: Id, b: Id) -> Result<Id> {
        self.binary(Binary::Div, a, b)
    }

    /// `tanh(a)`.
    pub fn tanh(&mut self, a: Id) -> Result<Id> {
        self.unary(Unary::Tanh, a)
    }

    /// `sigmoid(a)`.
    pub fn sigmoid(&mut self, a: Id) -> Result<Id> {
        self.unary(Unary::Sigmoid, a)
    }

    /// `exp(a)`.
    pub fn exp(&mut self, a: Id) -> Result<Id> {
        self.unary(Unary::Exp, a)
    }

    /// `log(a)`.
    pub fn log(&mut self, a: Id) -> Result<Id> {
        self.unary(Unary::Log, a)
    }

    /// `sum(a)` over every element.
    pub fn sum(&mut self, a: Id) -> Result<Id> {
        self.reduce(Reduce::Sum, a)
    }

    /// `slice(a, axis, start, end)`.
    pub fn slice(&mut self, a: Id, axis: usize, start: usize, end: usize) -> Result<Id> {
        self.structural(Structural::Slice, &[a], &[axis, start, end])
    }

    /// `concat(parts..., axis)`.
    pub fn concat(&mut self, parts: &[Id], axis: usize) -> Result<Id> {
        self.structural(Structural::Concat, parts, &[axis])
    }

    /// `index(a, i)`: row `i` of `a`.
    pub fn index(&mut self, a: Id, i: usize) -> Result<Id> {
        self.structural(Structural::Index, &[a], &[i])
    }

    /// `log(sum(exp(z - max(z)))) + max(z)`: the log-sum-exp of a vector, stable for large logits.
    pub fn logsumexp(&mut self, z: Id) -> Result<Id> {
        let top = self.reduce(Reduce::Max, z)?;
        let shifted = self.sub(z, top)?;
        let e = self.exp(shifted)?;
        let s = self.sum(e)?;
        let l = self.log(s)?;
        self.add(l, top)
    }

    /// Gives node `id` the name `name` when printed (a `let`).
    pub fn name(&mut self, id: Id, name: &str) {
        self.names.push((id, name.to_string()));
    }

    /// Names node `id` an output.
    pub fn output(&mut self, name: &str, id: Id) -> Result<()> {
        if usize::from(id) >= self.nodes.len() {
            return Err(Error::Values(format!(
                "builder: output `{name}` is not a node built here"
            )));
        }
        if self.outputs.iter().any(|(n, _)| n == name) {
            return Err(Error::Values(format!("builder: output `{name}` is named twice")));
        }
        self.outputs.push((name.to_string(), id));
        Ok(())
    }

    /// The program: the nodes the outputs read (others are dropped), checked
    /// as [`Program::new`] checks a program.
    pub fn finish(self) -> Result<Program> {
        if self.outputs.is_empty() {
            return Err(Error::Values("builder: the program has no output".into()));
        }
        Ok(Program::new(
            self.inputs,
            self.params,
            self.nodes.into_expr(),
            self.outputs,
            self.names,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_the_op_and_the_shapes() {
        let mut b = ProgramBuilder::new();
        let x = b.input("x", &[3]).unwrap();
        let w = b.param("w", &[4, 2]).unwrap();
        let message = b.matmul(w, x).unwrap_err().to_string();
        assert!(message.contains("[4, 2]") && message.contains("[3]"), "{message}");
        let message = b.add(w, x).unwrap_err().to_string();
        assert!(message.contains("[4, 2]") && message.contains("[3]"), "{message}");
        assert!(b.slice(x, 0, 2, 5).is_err());
        assert!(b.index(x, 3).is_err());
        assert!(b.input("x", &[2]).is_err());
        assert!(b.structural(Structural::Slice, &[x], &[0]).is_err());
    }

    #[test]
    fn equal_ops_are_one_node() {
        let mut b = ProgramBuilder::new();
        let x = b.input("x", &[3]).unwrap();
        let one = b.num(1.0);
        let a = b.add(x, one).unwrap();
        let before = b.node_count();
        let one_again = b.num(1.0);
        let again = b.add(x, one_again).unwrap();
        assert_eq!((a, b.node_count()), (again, before));
    }
}
