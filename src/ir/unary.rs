//! Elementwise ops of one operand: **the one place an elementwise op is
//! defined**. An entry gives the op's name, its cost class, the interval the
//! generated tests draw its operand from, its value `y = f(x)`, its
//! derivative `f'(x)` with which of `x` and `y` it reads (`reads (y)`: the
//! runtime's fused chains recompute only what a derivative reads; a test holds
//! the declaration to the expression and to the graph), the derivative as a
//! graph, and optionally `vector K`: the op has a vectorized slice kernel,
//! [`VectorKernel`]`::K` (an enum generated from these entries), which the
//! runtime runs over whole contiguous arrays. The runtime maps each variant
//! to its kernel by an exhaustive match, so an entry with `vector` and no
//! kernel wired does not build; the scalar `value` is the reference the
//! generated tests hold the kernel to.
//!
//! Everything else follows from the entry: parsing and printing (`name(e)`),
//! the shape rule (the operand's shape), the scalar loops (`map_scalar`,
//! `chain`; the runtime's array kernel runs `vector` instead where there is
//! one), reverse mode (`g * f'`),
//! forward mode (`t * f'`), the cost, the batching rule
//! `(vmap (f ?a)) => (f (vmap ?a))`, and the generated gradient, batching and
//! soundness tests. `CONTRIBUTING.md` shows how to add one.

use crate::ir::op::Flops;
use crate::ir::scalar::{sigmoid, Scalar};
use ndarray::{ArrayD, Zip};
use std::fmt;
use std::str::FromStr;

/// The [`VectorKernel`] an entry names, if it has `vector`.
macro_rules! vector_kernel {
    () => {
        None
    };
    ($vector:ident) => {
        Some(VectorKernel::$vector)
    };
}

/// An entry's ONNX mark: none (float and double kernels), or `float_only`.
macro_rules! onnx_double {
    () => {
        true
    };
    (float_only) => {
        false
    };
}

/// Which of `x` and `y = f(x)` a unary op's derivative reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerivativeReads {
    /// It reads the operand `x`.
    pub x: bool,
    /// It reads the result `y`.
    pub y: bool,
}

/// An entry's `reads (...)`: `x`, `y`, both or neither (anything else does not build).
macro_rules! derivative_reads {
    () => {
        DerivativeReads { x: false, y: false }
    };
    (x) => {
        DerivativeReads { x: true, y: false }
    };
    (y) => {
        DerivativeReads { x: false, y: true }
    };
    (x, y) => {
        DerivativeReads { x: true, y: true }
    };
}

macro_rules! unary_ops {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $flops:ident, tested on ($lo:expr, $hi:expr),
            |$x:ident, $y:ident| value $value:expr,
            derivative reads ($($reads:ident),*) $derivative:expr, graph $graph:literal,
            onnx $onnx:literal $($float_only:ident)?
            $(, vector $vector:ident)?;
    )*) => {
        /// A vectorized slice kernel of a unary op: one variant per entry with
        /// `vector`. The runtime runs it (by an exhaustive match over these
        /// variants) over contiguous arrays in place of the scalar `value`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum VectorKernel {
            $($(
                #[doc = concat!("The kernel of `", $name, "`.")]
                $vector,
            )?)*
        }

        /// An elementwise op of one operand.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Unary {
            $( $(#[$doc])* $variant, )*
        }

        impl Unary {
            /// Every unary op, in table order.
            pub const ALL: &'static [Unary] = &[$(Unary::$variant),*];

            /// The name it is written and printed with (`-` is written prefix).
            pub fn name(self) -> &'static str {
                match self { $(Unary::$variant => $name,)* }
            }

            /// A name fit for identifiers (rule names, test names): `neg` for `-`.
            pub fn ident(self) -> &'static str {
                match self { $(Unary::$variant => stringify!($variant),)* }
            }

            /// What one element costs.
            pub fn flops(self) -> Flops {
                match self { $(Unary::$variant => Flops::$flops,)* }
            }

            /// Where the generated tests draw its operand: inside its domain, where finite differences work.
            pub fn tested_on(self) -> (f64, f64) {
                match self { $(Unary::$variant => ($lo, $hi),)* }
            }

            /// `f(x)`.
            #[allow(unused_variables)]
            pub fn value<T: Scalar>(self, x: T) -> T {
                match self { $(Unary::$variant => { let $x = x; $value })* }
            }

            /// `f'(x)`, given `y = f(x)` too.
            #[allow(unused_variables)]
            pub fn derivative<T: Scalar>(self, x: T, y: T) -> T {
                match self { $(Unary::$variant => { let ($x, $y) = (x, y); $derivative })* }
            }

            /// Which of `x` and `y = f(x)` the derivative reads (declared by the entry).
            pub fn derivative_reads(self) -> DerivativeReads {
                match self { $(Unary::$variant => derivative_reads!($($reads),*),)* }
            }

            /// `f'(x)` as a graph, for the gradient programs (`crate::transform`):
            /// a pattern over `?x` and `?y` (`y = f(x)`); `0` for none.
            pub fn derivative_graph(self) -> &'static str {
                match self { $(Unary::$variant => $graph,)* }
            }

            /// Whether `f'` is 0 by definition (its graph is `0`: `step`, `sign`):
            /// the op then sends no cotangent and no tangent at all, so an
            /// infinite or NaN one stops there (`inf * 0` would be NaN), as in
            /// JAX (a symbolic zero) and the gradient programs.
            pub fn derivative_is_zero(self) -> bool {
                self.derivative_graph() == "0"
            }

            /// The ONNX op (opset 18) that computes it.
            pub fn onnx_op(self) -> &'static str {
                match self { $(Unary::$variant => $onnx,)* }
            }

            /// Whether ONNX Runtime has a double kernel for [`Unary::onnx_op`]
            /// (an entry marked `float_only` has only a float one: the export
            /// refuses it in f64, and `tests/onnx.rs` runs every entry in both
            /// types, so a wrong mark fails there, naming the op).
            pub fn onnx_has_double(self) -> bool {
                match self { $(Unary::$variant => onnx_double!($($float_only)?),)* }
            }

            /// The vectorized slice kernel of this op, if its entry names one.
            pub fn vector_kernel(self) -> Option<VectorKernel> {
                match self { $(Unary::$variant => vector_kernel!($($vector)?),)* }
            }

            /// Whether this op has a vectorized slice kernel ([`Unary::vector_kernel`]).
            pub fn has_vector_kernel(self) -> bool {
                self.vector_kernel().is_some()
            }

            /// `f` of every element by the scalar `value` expression (one loop per
            /// op, not a dispatch per element). The runtime's array kernel runs
            /// the op's `vector` kernel instead over contiguous arrays.
            pub fn map_scalar<T: Scalar>(self, a: &ArrayD<T>) -> ArrayD<T> {
                match self { $(Unary::$variant => a.mapv(|$x| $value),)* }
            }

            /// `g * f'(x)` elementwise, given `x`, `y = f(x)` and `g` of one shape:
            /// the cotangent (reverse mode) or the tangent (forward mode) of `x`.
            #[allow(unused_variables)]
            pub fn chain<T: Scalar>(self, x: &ArrayD<T>, y: &ArrayD<T>, g: &ArrayD<T>) -> ArrayD<T> {
                if let (Some(xs), Some(ys), Some(gs)) = (x.as_slice(), y.as_slice(), g.as_slice()) {
                    // All in standard layout: one loop over slices, which LLVM vectorizes.
                    let out: Vec<T> = match self {
                        $(Unary::$variant => xs.iter().zip(ys).zip(gs).map(|((&$x, &$y), &g)| g * $derivative).collect(),)*
                    };
                    return ArrayD::from_shape_vec(x.raw_dim(), out).expect("one element per element of x");
                }
                match self {
                    $(Unary::$variant => Zip::from(x).and(y).and(g).map_collect(|&$x, &$y, &g| g * $derivative),)*
                }
            }
        }
    };
}

unary_ops! {
    /// `-a`, written prefix.
    Neg = "-", Cheap, tested on (-2.0, 2.0),
        |x, y| value -x, derivative reads () -T::one(), graph "(- 1)", onnx "Neg";
    /// `exp(a)`.
    Exp = "exp", Transcendental, tested on (-2.0, 2.0),
        |x, y| value x.exp(), derivative reads (y) y, graph "?y", onnx "Exp", vector Exp;
    /// `log(a)`, the natural logarithm.
    Log = "log", Transcendental, tested on (0.5, 2.0),
        |x, y| value x.ln(), derivative reads (x) x.recip(), graph "(/ 1 ?x)", onnx "Log", vector Log;
    /// `tanh(a)`.
    Tanh = "tanh", Transcendental, tested on (-2.0, 2.0),
        |x, y| value x.tanh(), derivative reads (y) T::one() - y * y, graph "(- 1 (* ?y ?y))", onnx "Tanh", vector Tanh;
    /// `sigmoid(a) = 1 / (1 + exp(-a))`.
    Sigmoid = "sigmoid", Transcendental, tested on (-3.0, 3.0),
        |x, y| value sigmoid(x), derivative reads (y) y * (T::one() - y), graph "(* ?y (- 1 ?y))", onnx "Sigmoid", vector Sigmoid;
    /// `relu(a) = max(a, 0)`, NaN kept (a max that drops NaN would turn a domain error into a
    /// finite loss); its derivative at 0 is 0, as in JAX.
    Relu = "relu", Cheap, tested on (-2.0, 2.0),
        |x, y| value if x > T::zero() || x.is_nan() { x } else { T::zero() }, derivative reads (x) if x > T::zero() { T::one() } else { T::zero() }, graph "(step ?x)", onnx "Relu";
    /// `sqrt(a)`.
    Sqrt = "sqrt", Cheap, tested on (0.5, 2.0),
        |x, y| value x.sqrt(), derivative reads (y) T::of(0.5) / y, graph "(/ 0.5 ?y)", onnx "Sqrt", vector Sqrt;
    /// `sin(a)`.
    Sin = "sin", Transcendental, tested on (-2.0, 2.0),
        |x, y| value x.sin(), derivative reads (x) x.cos(), graph "(cos ?x)", onnx "Sin", vector Sin;
    /// `cos(a)`.
    Cos = "cos", Transcendental, tested on (-2.0, 2.0),
        |x, y| value x.cos(), derivative reads (x) -x.sin(), graph "(- (sin ?x))", onnx "Cos", vector Cos;
    /// `abs(a)`; its derivative at 0 is 0.
    Abs = "abs", Cheap, tested on (-2.0, 2.0),
        |x, y| value x.abs(), derivative reads (x) if x == T::zero() { x } else { x.signum() }, graph "(sign ?x)", onnx "Abs";
    /// `softplus(a) = log(1 + exp(a))`, a smooth relu.
    Softplus = "softplus", Transcendental, tested on (-3.0, 3.0),
        |x, y| value x.max(T::zero()) + (-x.abs()).exp().ln_1p(), derivative reads (x) sigmoid(x), graph "(sigmoid ?x)", onnx "Softplus", vector Softplus;
    /// `step(a)`: 1 where `a > 0`, else 0 (the derivative of `relu`); its derivative is 0.
    Step = "step", Cheap, tested on (-2.0, 2.0),
        |x, y| value if x > T::zero() { T::one() } else { T::zero() }, derivative reads () T::zero(), graph "0", onnx "Greater";
    /// `sign(a)`: -1, 0 or 1 (NaN stays NaN), as numpy's; its derivative is 0.
    Sign = "sign", Cheap, tested on (-2.0, 2.0),
        |x, y| value if x == T::zero() || x.is_nan() { x } else { x.signum() }, derivative reads () T::zero(), graph "0", onnx "Sign";
    /// `atan(a)`, the inverse tangent.
    Atan = "atan", Transcendental, tested on (-2.0, 2.0),
        |x, y| value x.atan(), derivative reads (x) (T::one() + x * x).recip(), graph "(/ 1 (+ 1 (* ?x ?x)))", onnx "Atan" float_only;
}

impl fmt::Display for Unary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Unary {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Unary::ALL.iter().copied().find(|u| u.name() == s).ok_or(())
    }
}
