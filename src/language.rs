//! The IR: one egg language, one variant per op.
//!
//! Axes, row indices and repeat counts are ordinary `Num` children, so that
//! rewrite rules can match and build them like any other operand.

use egg::Id;
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
        } else {
            write!(f, "{}", self.0)
        }
    }
}

// The variants are documented on the enum (the macro takes no per-variant docs).
#[allow(missing_docs)]
mod ir {
    use super::Num;
    use egg::{define_language, Id, Symbol};
    define_language! {
        ///
        /// Call-syntax ops: `sum(e)` and `mean(e)` reduce all elements;
        /// `sum(e, axis)`, `mean(e, axis)`, `max(e, axis)` reduce one axis;
        /// `transpose(e)` reverses the axes; `permute(e, a0, a1, ...)` is numpy's
        /// `transpose(e, axes)`; `expand(e, axis)` inserts an axis of size 1;
        /// `index(e, i)` is row `i` of the leading axis; `stack(a0, a1, ...)` stacks
        /// along a new leading axis; `repeat(e, n)` broadcasts along a new leading
        /// axis of size `n`. `a ^ p` needs a literal `p`. `vmap(e)` is the batcher's
        /// spec node (the stack over the batch of `e` on each example): it is
        /// internal to the e-graph and never executed.
        pub enum Op {
            "+" = Add([Id; 2]),
            "-" = Sub([Id; 2]),
            "*" = Mul([Id; 2]),
            "/" = Div([Id; 2]),
            "@" = MatMul([Id; 2]),
            "^" = Pow([Id; 2]),
            "-" = Neg(Id),
            "exp" = Exp(Id),
            "log" = Log(Id),
            "tanh" = Tanh(Id),
            "sigmoid" = Sigmoid(Id),
            "relu" = Relu(Id),
            "sqrt" = Sqrt(Id),
            "sin" = Sin(Id),
            "cos" = Cos(Id),
            "abs" = Abs(Id),
            "sum" = Sum(Id),
            "mean" = Mean(Id),
            "sum" = SumAxis([Id; 2]),
            "mean" = MeanAxis([Id; 2]),
            "max" = MaxAxis([Id; 2]),
            "transpose" = Transpose(Id),
            "permute" = Permute(Box<[Id]>),
            "expand" = Expand([Id; 2]),
            "index" = Index([Id; 2]),
            "stack" = Stack(Box<[Id]>),
            "repeat" = Repeat([Id; 2]),
            "vmap" = Vmap(Id),
            Num(Num),
            Var(Symbol),
        }
    }
}
pub use ir::Op;

impl Op {
    /// The built-in `name` applied to `children`, if there is one of that arity.
    pub fn builtin(name: &str, children: Vec<Id>) -> Option<Op> {
        let c = &children;
        let op = match (name, c.len()) {
            ("exp", 1) => Op::Exp(c[0]),
            ("log", 1) => Op::Log(c[0]),
            ("tanh", 1) => Op::Tanh(c[0]),
            ("sigmoid", 1) => Op::Sigmoid(c[0]),
            ("relu", 1) => Op::Relu(c[0]),
            ("sqrt", 1) => Op::Sqrt(c[0]),
            ("sin", 1) => Op::Sin(c[0]),
            ("cos", 1) => Op::Cos(c[0]),
            ("abs", 1) => Op::Abs(c[0]),
            ("sum", 1) => Op::Sum(c[0]),
            ("mean", 1) => Op::Mean(c[0]),
            ("transpose", 1) => Op::Transpose(c[0]),
            ("sum", 2) => Op::SumAxis([c[0], c[1]]),
            ("mean", 2) => Op::MeanAxis([c[0], c[1]]),
            ("max", 2) => Op::MaxAxis([c[0], c[1]]),
            ("expand", 2) => Op::Expand([c[0], c[1]]),
            ("index", 2) => Op::Index([c[0], c[1]]),
            ("repeat", 2) => Op::Repeat([c[0], c[1]]),
            ("permute", n) if n >= 1 => Op::Permute(children.into()),
            ("stack", n) if n >= 1 => Op::Stack(children.into()),
            _ => return None,
        };
        Some(op)
    }

    /// The arities a built-in accepts, for error messages; `None` if `name` is no built-in.
    pub fn builtin_arity(name: &str) -> Option<&'static str> {
        Some(match name {
            "exp" | "log" | "tanh" | "sigmoid" | "relu" | "sqrt" | "sin" | "cos" | "abs" | "transpose" => "1 argument",
            "sum" | "mean" => "1 or 2 arguments",
            "max" => "2 arguments (max(e, axis))",
            "expand" | "index" | "repeat" => "2 arguments",
            "permute" => "the array and one axis per dimension",
            "stack" => "at least 1 argument",
            _ => return None,
        })
    }

    /// Which children must be integer literals (axes, indices, counts), by position.
    pub fn is_integer_operand(&self, position: usize) -> bool {
        match self {
            Op::SumAxis(_) | Op::MeanAxis(_) | Op::MaxAxis(_) | Op::Expand(_) | Op::Index(_) | Op::Repeat(_) => {
                position == 1
            }
            Op::Permute(_) => position >= 1,
            _ => false,
        }
    }

    /// Whether the op is written infix (`a + b`) rather than as a call.
    pub fn infix(&self) -> Option<&'static str> {
        Some(match self {
            Op::Add(_) => "+",
            Op::Sub(_) => "-",
            Op::Mul(_) => "*",
            Op::Div(_) => "/",
            Op::MatMul(_) => "@",
            Op::Pow(_) => "^",
            _ => return None,
        })
    }
}
