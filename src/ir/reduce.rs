//! Reductions: **the one place a reduction is defined**. Each reduces over all
//! elements (`sum(e)`) or over one axis (`sum(e, axis)`). An entry gives the
//! name, the fold (a start value, how an element joins the accumulator, how
//! the accumulator becomes the result), and the weight `dy/dx` of each element
//! `x` in the result `y`. For a selecting reduction (`max`, `min`) the weights
//! of the elements that tie for the result share it equally, as in JAX.
//!
//! From the entry follow parsing and printing, the shape rule, the kernel,
//! reverse mode (`g` broadcast back times the weights), forward mode (the
//! weighted sum of the tangent), the cost, the batching rules (the axis moves
//! past the batch axis) and the generated tests.

use crate::ir::scalar::Scalar;
use std::fmt;
use std::str::FromStr;

macro_rules! reductions {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, selects $selects:literal,
            start $start:expr, |$acc:ident, $v:ident| combine $combine:expr,
            |$total:ident, $n:ident| finish $finish:expr,
            |$x:ident, $y:ident, $count:ident| weight $weight:expr, graph $graph:literal;
    )*) => {
        /// A reduction.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reduce {
            $( $(#[$doc])* $variant, )*
        }

        impl Reduce {
            /// Every reduction, in table order.
            pub const ALL: &'static [Reduce] = &[$(Reduce::$variant),*];

            /// The name it is written and printed with.
            pub fn name(self) -> &'static str {
                match self { $(Reduce::$variant => $name,)* }
            }

            /// Whether the result is one of the elements (its weight is shared among ties).
            pub fn selects(self) -> bool {
                match self { $(Reduce::$variant => $selects,)* }
            }

            /// The accumulator before any element.
            pub fn start<T: Scalar>(self) -> T {
                match self { $(Reduce::$variant => $start,)* }
            }

            /// The accumulator after element `v`.
            pub fn combine<T: Scalar>(self, acc: T, v: T) -> T {
                match self { $(Reduce::$variant => { let ($acc, $v) = (acc, v); $combine })* }
            }

            /// The result from the accumulator over `n` elements.
            #[allow(unused_variables)]
            pub fn finish<T: Scalar>(self, total: T, n: usize) -> T {
                match self { $(Reduce::$variant => { let ($total, $n) = (total, n); $finish })* }
            }

            /// `dy/dx` as a graph, for the gradient programs (`crate::transform`):
            /// a pattern over `?x`, `?y` (the result, broadcast to `x`) and `?n`.
            /// A selecting reduction's weights are divided by their sum (the ties).
            pub fn weight_graph(self) -> &'static str {
                match self { $(Reduce::$variant => $graph,)* }
            }

            /// `dy/dx` for an element `x` of the `n` reduced into `y` (before ties share).
            #[allow(unused_variables)]
            pub fn weight<T: Scalar>(self, x: T, y: T, n: usize) -> T {
                match self { $(Reduce::$variant => { let ($x, $y, $count) = (x, y, n); $weight })* }
            }
        }
    };
}

reductions! {
    /// `sum(e)`, `sum(e, axis)`.
    Sum = "sum", selects false, start T::zero(), |acc, v| combine acc + v,
        |total, n| finish total, |x, y, n| weight T::one(), graph "1";
    /// `mean(e)`, `mean(e, axis)`.
    Mean = "mean", selects false, start T::zero(), |acc, v| combine acc + v,
        |total, n| finish total / T::of(n as f64), |x, y, n| weight T::of(n as f64).recip(), graph "(/ 1 ?n)";
    /// `max(e)`, `max(e, axis)`; NaN wins, as in numpy.
    Max = "max", selects true, start T::neg_infinity(), |acc, v| combine if v.is_nan() || v > acc { v } else { acc },
        |total, n| finish total, |x, y, n| weight if x == y { T::one() } else { T::zero() },
        graph "(- 1 (step (abs (- ?x ?y))))";
    /// `min(e)`, `min(e, axis)`; NaN wins, as in numpy.
    Min = "min", selects true, start T::infinity(), |acc, v| combine if v.is_nan() || v < acc { v } else { acc },
        |total, n| finish total, |x, y, n| weight if x == y { T::one() } else { T::zero() },
        graph "(- 1 (step (abs (- ?x ?y))))";
}

impl fmt::Display for Reduce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reduce {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Reduce::ALL.iter().copied().find(|r| r.name() == s).ok_or(())
    }
}
