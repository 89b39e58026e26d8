//! The IR: one egg language whose ops come in kinds. Elementwise unary ops
//! ([`Unary`]), broadcasting binary ops ([`Binary`]) and reductions
//! ([`Reduce`]) are tables, so an op of those kinds is one entry; the
//! structural ops ([`Structural`]: transpose, permute, expand, index, stack,
//! repeat, broadcast, slice, concat, pad) are a table too, each defined in a
//! file of its own; matmul, the loops and the leaves are variants of their
//! own, and every `match` over [`Op`] lists them all, so the compiler names
//! every place a new one needs.
//!
//! Axes, row indices and repeat counts are ordinary `Num` children, so that
//! rewrite rules can match and build them like any other operand.

use crate::ir::binary::{Assoc, Binary};
use crate::ir::reduce::Reduce;
use crate::ir::structural::Structural;
use crate::ir::unary::Unary;
use egg::{FromOp, Id, Language, Symbol};
use std::fmt;
use std::str::FromStr;

/// A number literal in the IR. Compared and hashed by its bits, so that it
/// can live in an e-graph (two literals are the same node iff bit-equal).
#[derive(Clone, Copy, Debug)]
pub struct Num(pub f64);

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Num {}
impl std::hash::Hash for Num {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Num {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl FromStr for Num {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        // Only plain decimal literals: "inf", "nan" and friends are names.
        if !s.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(());
        }
        s.parse::<f64>().map(Num).map_err(|_| ())
    }
}
impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rust prints the shortest string that parses back to the same f64.
        if self.0 == 0.0 && self.0.is_sign_negative() {
            write!(f, "-0")
        } else if self.0 == self.0.trunc() && self.0.abs() < 1e15 {
            write!(f, "{}", self.0 as i64)
        } else if self.0.is_finite() && (self.0.abs() >= 1e15 || self.0.abs() < 1e-5) {
            // 1e300, not its 301 digits (also the shortest string that parses back).
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The arithmetic cost class of an elementwise op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flops {
    /// One flop per element (`+`, `relu`, `abs`, ...).
    Cheap,
    /// A polynomial's worth per element (`exp`, `tanh`, `^`, ...).
    Transcendental,
}

impl Flops {
    /// Floating-point operations per element.
    pub fn per_element(self) -> f64 {
        match self {
            Flops::Cheap => 1.0,
            Flops::Transcendental => 10.0,
        }
    }
}

// The variants are documented on the enum (the macro takes no per-variant docs).
#[allow(missing_docs)]
mod language {
    use super::{Binary, Num, Reduce, Structural, Unary};
    use egg::{define_language, Id, Symbol};
    define_language! {
        /// One op of the IR.
        ///
        /// Kinds defined by tables: `Unary` (`tanh(a)`, `-a`), `Binary`
        /// (`a + b`, numpy broadcasting), `Reduce` (`sum(e)` over all
        /// elements) and `ReduceAxis` (`sum(e, axis)`).
        /// `a @ b` is numpy `matmul`. `Structural` ops move data (`transpose`,
        /// `slice`, `concat`, ...; see [`Structural`]): their children are the
        /// array operands, then the integer operands.
        /// Loops: `map(body, n)` runs `body` once per row of the batch (`n` rows)
        /// and stacks the results; inside the body, `row(y)` is the current row
        /// of the batched value `y` (JAX's `lax.map`). `chunks(body, n, k)` runs
        /// `body` once per chunk of `k` of the `n` rows (the last chunk may be
        /// smaller) and concatenates the results; inside, `rows(y, k)` is the
        /// current chunk of `y` (micro-batches). `accumulate(body, n, k)` runs
        /// its body over the same chunks and sums the results, one accumulator
        /// of the body's shape (gradient accumulation: the sum over the batch
        /// computed `k` rows at a time). `vmap(e)` is the
        /// batcher's spec node (the stack over the batch of `e` on each example):
        /// it is internal to the e-graph and never executed.
        pub enum Op {
            Unary(Unary, Id),
            Binary(Binary, [Id; 2]),
            Reduce(Reduce, Id),
            ReduceAxis(Reduce, [Id; 2]),
            "@" = MatMul([Id; 2]),
            Structural(Structural, Box<[Id]>),
            "map" = Map([Id; 2]),
            "row" = Row(Id),
            "chunks" = Chunks([Id; 3]),
            "rows" = Rows([Id; 2]),
            "accumulate" = Accumulate([Id; 3]),
            "vmap" = Vmap(Id),
            Num(Num),
            Var(Symbol),
        }
    }
}
pub use language::Op;

/// The loops written as calls, with the arities they take (for error messages).
const LOOP_CALLS: [(&str, &str); 5] = [
    ("map", "2 arguments (map(body, rows))"),
    ("row", "1 argument (row(batched), inside map)"),
    ("chunks", "3 arguments (chunks(body, rows, chunk))"),
    (
        "rows",
        "2 arguments (rows(batched, chunk), inside chunks or accumulate)",
    ),
    ("accumulate", "3 arguments (accumulate(body, rows, chunk))"),
];

impl Op {
    /// The built-in `name` applied to `children`, if there is one of that arity.
    pub fn from_call(name: &str, children: Vec<Id>) -> Option<Op> {
        Op::call_arity(name)?;
        if children.is_empty() {
            return None;
        }
        if let Ok(s) = name.parse::<Structural>() {
            s.arrays_of(children.len())?;
            return Some(Op::Structural(s, children.into()));
        }
        Op::from_op(name, children).ok()
    }

    /// The structural op `op` of `children` (array operands, then integer operands).
    pub fn structural(op: Structural, children: &[Id]) -> Op {
        Op::Structural(op, children.into())
    }

    /// The structural op and its children, if this is one.
    pub fn as_structural(&self) -> Option<(Structural, &[Id])> {
        match self {
            Op::Structural(s, children) => Some((*s, children)),
            _ => None,
        }
    }

    /// The arities the built-in `name` accepts, for error messages; `None` if there is no such built-in.
    pub fn call_arity(name: &str) -> Option<&'static str> {
        if name.parse::<Unary>().is_ok_and(|u| u != Unary::Neg) {
            return Some("1 argument");
        }
        if name.parse::<Reduce>().is_ok() {
            return Some("1 or 2 arguments (the array and an axis)");
        }
        if let Ok(s) = name.parse::<Structural>() {
            return Some(s.call());
        }
        LOOP_CALLS.iter().find(|(n, _)| *n == name).map(|(_, arity)| *arity)
    }

    /// Whether the child at `position` must be an integer literal (an axis, row or count).
    pub fn integer_operand(&self, position: usize) -> bool {
        match self {
            Op::ReduceAxis(..) | Op::Map(_) | Op::Rows(_) => position == 1,
            Op::Chunks(_) | Op::Accumulate(_) => position >= 1,
            Op::Structural(s, children) => s.integer_operand(position, children.len()),
            Op::Unary(..)
            | Op::Binary(..)
            | Op::Reduce(..)
            | Op::MatMul(_)
            | Op::Row(_)
            | Op::Vmap(_)
            | Op::Num(_)
            | Op::Var(_) => false,
        }
    }

    /// The symbol, precedence and associativity of an op written infix (`a + b`).
    pub fn infix(&self) -> Option<(&'static str, u8, Assoc)> {
        match self {
            Op::Binary(b, _) => Some((b.symbol(), b.precedence(), b.assoc())),
            Op::MatMul(_) => Some(("@", 2, Assoc::Left)),
            Op::Unary(..)
            | Op::Reduce(..)
            | Op::ReduceAxis(..)
            | Op::Structural(..)
            | Op::Map(_)
            | Op::Row(_)
            | Op::Chunks(_)
            | Op::Rows(_)
            | Op::Accumulate(_)
            | Op::Vmap(_)
            | Op::Num(_)
            | Op::Var(_) => None,
        }
    }

    /// Whether this op runs once per row of a loop, given whether each child
    /// does: `row` and `rows` always, a loop never (its value is the whole
    /// batch), every other op when a child does.
    pub fn is_per_row(&self, child_per_row: impl Fn(Id) -> bool) -> bool {
        match self {
            Op::Row(_) | Op::Rows(_) => true,
            Op::Map(_) | Op::Chunks(_) | Op::Accumulate(_) | Op::Vmap(_) => false,
            Op::Unary(..)
            | Op::Binary(..)
            | Op::Reduce(..)
            | Op::ReduceAxis(..)
            | Op::MatMul(_)
            | Op::Structural(..)
            | Op::Num(_)
            | Op::Var(_) => self.children().iter().any(|&c| child_per_row(c)),
        }
    }

    /// The body of a loop (`map`, `chunks`); `None` for every other op.
    pub fn loop_body(&self) -> Option<Id> {
        match self {
            Op::Map([body, _]) | Op::Chunks([body, _, _]) | Op::Accumulate([body, _, _]) => Some(*body),
            Op::Unary(..)
            | Op::Binary(..)
            | Op::Reduce(..)
            | Op::ReduceAxis(..)
            | Op::MatMul(_)
            | Op::Structural(..)
            | Op::Row(_)
            | Op::Rows(_)
            | Op::Vmap(_)
            | Op::Num(_)
            | Op::Var(_) => None,
        }
    }

    /// The variable's name, if this is one.
    pub fn as_var(&self) -> Option<Symbol> {
        if let Op::Var(v) = self {
            Some(*v)
        } else {
            None
        }
    }

    /// The literal's value, if this is one.
    pub fn as_num(&self) -> Option<f64> {
        if let Op::Num(n) = self {
            Some(n.0)
        } else {
            None
        }
    }

    /// One op of every kind and every table entry (children are placeholders,
    /// as many as the op takes), so that tests cover every op by construction:
    /// the tables ([`Unary`], [`Binary`], [`Reduce`], [`Structural`]) give
    /// theirs, and [`Op::kind_index`]'s exhaustive match holds the list of the
    /// other variants to the enum (a unit test checks every index is here).
    pub fn every_kind() -> Vec<Op> {
        let (a, b) = (Id::from(0usize), Id::from(1usize));
        let mut ops: Vec<Op> = Unary::ALL.iter().map(|&u| Op::Unary(u, a)).collect();
        ops.extend(Binary::ALL.iter().map(|&k| Op::Binary(k, [a, b])));
        ops.extend(Reduce::ALL.iter().map(|&r| Op::Reduce(r, a)));
        ops.extend(Reduce::ALL.iter().map(|&r| Op::ReduceAxis(r, [a, b])));
        ops.extend(Structural::ALL.iter().map(|&s| {
            let arity = (1..8)
                .find(|&n| s.arrays_of(n).is_some())
                .expect("every op takes a few children");
            Op::Structural(s, vec![a; arity].into())
        }));
        ops.extend([
            Op::MatMul([a, b]),
            Op::Map([a, b]),
            Op::Row(a),
            Op::Chunks([a, b, b]),
            Op::Rows([a, b]),
            Op::Accumulate([a, b, b]),
            Op::Vmap(a),
            Op::Num(Num(0.0)),
            Op::Var(Symbol::from("x")),
        ]);
        ops
    }

    /// The position of this op's variant, `0..Op::KINDS` (for [`Op::every_kind`]'s completeness check).
    pub fn kind_index(&self) -> usize {
        match self {
            Op::Unary(..) => 0,
            Op::Binary(..) => 1,
            Op::Reduce(..) => 2,
            Op::ReduceAxis(..) => 3,
            Op::MatMul(_) => 4,
            Op::Structural(..) => 5,
            Op::Map(_) => 6,
            Op::Row(_) => 7,
            Op::Chunks(_) => 8,
            Op::Rows(_) => 9,
            Op::Vmap(_) => 10,
            Op::Num(_) => 11,
            Op::Var(_) => 12,
            Op::Accumulate(_) => 13,
        }
    }

    /// How many variants [`Op`] has: one more than the largest [`Op::kind_index`].
    pub const KINDS: usize = 14;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_lists_every_variant() {
        let kinds: std::collections::BTreeSet<usize> = Op::every_kind().iter().map(Op::kind_index).collect();
        assert_eq!(kinds, (0..Op::KINDS).collect(), "every_kind misses a variant of Op");
    }

    #[test]
    fn patterns_parse_every_kind() {
        for text in [
            "(tanh ?a)",
            "(- ?a)",
            "(- ?a ?b)",
            "(^ ?a ?b)",
            "(sum ?a)",
            "(max ?a 1)",
            "(softplus ?a)",
        ] {
            text.parse::<egg::Pattern<Op>>().unwrap();
        }
        assert_eq!(
            Op::from_call("sum", vec![Id::from(0usize)]),
            Some(Op::Reduce(Reduce::Sum, Id::from(0usize)))
        );
        assert_eq!(Op::from_call("vmap", vec![Id::from(0usize)]), None);
        assert_eq!(Op::from_call("x", vec![]), None);
    }
}
