//! Elementwise ops of two operands with numpy broadcasting: **the one place
//! such an op is defined**. An entry gives the infix symbol, its precedence
//! and associativity, its cost class, the interval its operands are tested
//! on, its value `y = f(a, b)`, both partial derivatives with which of `a`,
//! `b` and `y` each reads (`d_b reads (b, y)`: the runtime's fused chains
//! recompute only what a partial reads; a test holds each declaration to the
//! expression and to the graph), and the partials as graphs.
//!
//! From the entry follow parsing and printing, the shape rule (numpy
//! broadcasting), the kernel, reverse mode (`g * df/da` summed down to each
//! operand's shape), forward mode, the cost, the broadcasting batching rules
//! and the generated tests.

use crate::ir::op::Flops;
use crate::ir::scalar::Scalar;
use ndarray::{Array, ArrayD, ArrayView, ArrayViewD, Dimension, Zip};
use std::fmt;
use std::str::FromStr;

/// How an infix op groups: `a - b - c` is `(a - b) - c`, `a ^ b ^ c` is `a ^ (b ^ c)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assoc {
    /// Groups to the left.
    Left,
    /// Groups to the right.
    Right,
}

/// Which of `a`, `b` and `y = f(a, b)` a partial derivative of a binary op reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialReads {
    /// It reads the left operand.
    pub a: bool,
    /// It reads the right operand.
    pub b: bool,
    /// It reads the result.
    pub y: bool,
}

/// An entry's `reads (...)`: a subset of `a, b, y`, in that order (anything else does not build).
macro_rules! partial_reads {
    (@ $a:literal $b:literal $y:literal) => {
        PartialReads { a: $a, b: $b, y: $y }
    };
    () => { partial_reads!(@ false false false) };
    (a) => { partial_reads!(@ true false false) };
    (b) => { partial_reads!(@ false true false) };
    (y) => { partial_reads!(@ false false true) };
    (a, b) => { partial_reads!(@ true true false) };
    (a, y) => { partial_reads!(@ true false true) };
    (b, y) => { partial_reads!(@ false true true) };
    (a, b, y) => { partial_reads!(@ true true true) };
}

macro_rules! binary_ops {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $symbol:literal, precedence $prec:literal $assoc:ident, $flops:ident,
            tested on ($lo:expr, $hi:expr),
            |$a:ident, $b:ident, $y:ident| value $value:expr,
            d_a reads ($($reads_a:ident),*) $da:expr, d_b reads ($($reads_b:ident),*) $db:expr,
            graph ($graph_da:literal, $graph_db:literal);
    )*) => {
        /// An elementwise op of two operands, with numpy broadcasting.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Binary {
            $( $(#[$doc])* $variant, )*
        }

        impl Binary {
            /// Every binary op, in table order.
            pub const ALL: &'static [Binary] = &[$(Binary::$variant),*];

            /// The infix symbol.
            pub fn symbol(self) -> &'static str {
                match self { $(Binary::$variant => $symbol,)* }
            }

            /// A name fit for identifiers (rule names, test names).
            pub fn ident(self) -> &'static str {
                match self { $(Binary::$variant => stringify!($variant),)* }
            }

            /// Binding strength, as in Python: 1 for `+ -`, 2 for `* /` (and `@`), 4 for `^`.
            pub fn precedence(self) -> u8 {
                match self { $(Binary::$variant => $prec,)* }
            }

            /// How a chain of it groups.
            pub fn assoc(self) -> Assoc {
                match self { $(Binary::$variant => Assoc::$assoc,)* }
            }

            /// What one element costs.
            pub fn flops(self) -> Flops {
                match self { $(Binary::$variant => Flops::$flops,)* }
            }

            /// Where the generated tests draw its operands.
            pub fn tested_on(self) -> (f64, f64) {
                match self { $(Binary::$variant => ($lo, $hi),)* }
            }

            /// `f(a, b)`.
            #[allow(unused_variables)]
            pub fn value<T: Scalar>(self, a: T, b: T) -> T {
                match self { $(Binary::$variant => { let ($a, $b) = (a, b); $value })* }
            }

            /// `(df/da, df/db)` at `(a, b)`, given `y = f(a, b)` too.
            #[allow(unused_variables)]
            pub fn partials<T: Scalar>(self, a: T, b: T, y: T) -> (T, T) {
                match self { $(Binary::$variant => { let ($a, $b, $y) = (a, b, y); ($da, $db) })* }
            }

            /// Which of `a`, `b` and `y = f(a, b)` `df/da` (`side` 0) or `df/db`
            /// (`side` 1) reads (declared by the entry).
            pub fn partial_reads(self, side: usize) -> PartialReads {
                match self {
                    $(Binary::$variant => if side == 0 {
                        partial_reads!($($reads_a),*)
                    } else {
                        partial_reads!($($reads_b),*)
                    },)*
                }
            }

            /// `df/da` (`side` 0) or `df/db` (`side` 1) as a graph, for the gradient
            /// programs (`crate::transform`): a pattern over `?a`, `?b` and `?y`.
            pub fn partial_graph(self, side: usize) -> &'static str {
                match self { $(Binary::$variant => if side == 0 { $graph_da } else { $graph_db },)* }
            }

            /// `g * df/da` (`side` 0) or `g * df/db` (`side` 1) elementwise, given
            /// `a`, `b`, `y = f(a, b)` and `g` already broadcast to one shape: one
            /// loop per op and side, with no dispatch per element. Any dimension type:
            /// a fixed rank walks broadcast (strided) operands faster than a dynamic one.
            #[allow(unused_variables)]
            pub fn chain<T: Scalar, D: Dimension>(
                self,
                side: usize,
                a: &ArrayView<T, D>,
                b: &ArrayView<T, D>,
                y: &ArrayView<T, D>,
                g: &ArrayView<T, D>,
            ) -> Array<T, D> {
                let zip = Zip::from(a).and(b).and(y).and(g);
                match self {
                    $(Binary::$variant => if side == 0 {
                        zip.map_collect(|&$a, &$b, &$y, &g| g * $da)
                    } else {
                        zip.map_collect(|&$a, &$b, &$y, &g| g * $db)
                    },)*
                }
            }

            /// `f` over `long` with `short` repeated along it (`long.len()` a multiple of
            /// `short.len()`, both in row-major order): a same-shaped pair, or a bias
            /// over a batch, as one loop over slices. `short_is_a` says which operand
            /// `short` is.
            pub fn map_repeated<T: Scalar>(self, long: &[T], short: &[T], short_is_a: bool) -> Vec<T> {
                let mut out = Vec::with_capacity(long.len());
                if short.is_empty() {
                    return out;
                }
                match self {
                    $(Binary::$variant => for row in long.chunks_exact(short.len()) {
                        if short_is_a {
                            out.extend(short.iter().zip(row).map(|(&$a, &$b)| $value));
                        } else {
                            out.extend(row.iter().zip(short).map(|(&$a, &$b)| $value));
                        }
                    },)*
                }
                out
            }

            /// `f` over one lane of the result (a run along its last axis), each
            /// operand's lane a slice or one value repeated, appended to `out`:
            /// the inner loop of a broadcast (an outer product's rows) over slices.
            pub fn map_lane<T: Scalar>(self, a: Lane<T>, b: Lane<T>, out: &mut Vec<T>) {
                match self {
                    $(Binary::$variant => match (a, b) {
                        (Lane::Slice(x), Lane::Slice(y)) => out.extend(x.iter().zip(y).map(|(&$a, &$b)| $value)),
                        (Lane::Slice(x), Lane::Repeat($b, _)) => out.extend(x.iter().map(|&$a| $value)),
                        (Lane::Repeat($a, _), Lane::Slice(y)) => out.extend(y.iter().map(|&$b| $value)),
                        (Lane::Repeat($a, n), Lane::Repeat($b, _)) => out.extend(std::iter::repeat_n($value, n)),
                    },)*
                }
            }

            /// `f` of every pair of elements of `a` and `b`, already broadcast to one shape
            /// (one loop per op, not a dispatch per element).
            pub fn map<T: Scalar>(self, a: &ArrayViewD<T>, b: &ArrayViewD<T>) -> ArrayD<T> {
                match self { $(Binary::$variant => Zip::from(a).and(b).map_collect(|&$a, &$b| $value),)* }
            }
        }
    };
}

binary_ops! {
    /// `a + b`.
    Add = "+", precedence 1 Left, Cheap, tested on (-2.0, 2.0),
        |a, b, y| value a + b, d_a reads () T::one(), d_b reads () T::one(), graph ("1", "1");
    /// `a - b`.
    Sub = "-", precedence 1 Left, Cheap, tested on (-2.0, 2.0),
        |a, b, y| value a - b, d_a reads () T::one(), d_b reads () -T::one(), graph ("1", "(- 1)");
    /// `a * b`.
    Mul = "*", precedence 2 Left, Cheap, tested on (-2.0, 2.0),
        |a, b, y| value a * b, d_a reads (b) b, d_b reads (a) a, graph ("?b", "?a");
    /// `a / b`.
    Div = "/", precedence 2 Left, Cheap, tested on (0.5, 2.0),
        |a, b, y| value a / b, d_a reads (b) b.recip(), d_b reads (b, y) -y / b, graph ("(/ 1 ?b)", "(- (/ ?y ?b))");
    /// `a ^ b`, numpy's `power`. As in JAX, `d/da` is 0 where `b` is 0 (also at
    /// `a = 0`), and `d/db` is `y * log(a)` with a 0 `a` read as 1 (so 0 where
    /// `a` is 0, unless `y` is infinite: `0 ^ -1`). The graph forms say the same
    /// without a select: `b - step(|b|)` is `b - 1` except at `b = 0`, where
    /// `a ^ 0 = 1`; `a + (1 - step(|a|))` is `a` except at `a = 0`, where it is 1.
    Pow = "^", precedence 4 Right, Transcendental, tested on (0.5, 2.0),
        |a, b, y| value power(a, b),
        d_a reads (a, b) if b == T::zero() { T::zero() } else { b * power(a, b - T::one()) },
        d_b reads (a, y) y * (if a == T::zero() { T::one() } else { a }).ln(),
        graph ("(* ?b (^ ?a (- ?b (step (abs ?b)))))", "(* ?y (log (+ ?a (- 1 (step (abs ?a))))))");
}

/// One operand's run along the last axis of a broadcast result.
#[derive(Clone, Copy, Debug)]
pub enum Lane<'a, T> {
    /// Contiguous elements.
    Slice(&'a [T]),
    /// One element, repeated this many times (a broadcast axis).
    Repeat(T, usize),
}

/// `a ^ b`; an integer exponent by repeated multiplication (exact for negative `a`).
/// A square (squared errors) and a first power skip the general integer loop.
fn power<T: Scalar>(a: T, b: T) -> T {
    if b == T::of(2.0) {
        return a * a;
    }
    if b == T::one() {
        return a;
    }
    if b == b.trunc() && b.abs() < T::of(64.0) {
        a.powi(b.to_i32().expect("a small integer"))
    } else {
        a.powf(b)
    }
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl FromStr for Binary {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Binary::ALL.iter().copied().find(|b| b.symbol() == s).ok_or(())
    }
}
