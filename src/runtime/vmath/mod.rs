//! Vectorized elementwise math over slices of `f32` and `f64`.
//!
//! glibc's scalar `tanhf`/`expf`/... cost tens of cycles per element and
//! cannot be vectorized. This module evaluates the same functions with
//! Cephes/fdlibm-style range reduction and polynomials written branch-free
//! (selects, no `if` on data, no table lookups), so LLVM auto-vectorizes the
//! slice loops. On x86_64 the loops are compiled a second time with
//! `#[target_feature(enable = "avx2,fma")]` and chosen once at run time, so
//! no `-C target-cpu` flag or nightly feature is needed; other targets get
//! the portable build only. No dependencies. (It began as the stand-alone
//! `vmath` crate; its special-value tests are `tests/vmath.rs`.)
//!
//! ```
//! use batchgraph::runtime::vmath::{self, VMath};
//! let x = [0.5f32, -1.0, 3.0];
//! let mut y = [0.0f32; 3];
//! f32::tanh_slice(&x, &mut y);
//! assert!((y[0] - 0.5f32.tanh()).abs() <= 2.0 * f32::EPSILON);
//! vmath::exp_in_place(&mut y); // free generic functions work too
//! ```
//!
//! # Accuracy
//!
//! Maximum error measured by the tests in `accuracy.rs`
//! (`cargo test --release --lib vmath`: 6 to 10 million points per function and type,
//! spread both evenly by bit pattern, so tiny magnitudes and subnormals are
//! covered, and linearly over the range; plus edge ranges such as near
//! overflow/underflow, tanh's branch points (0.625 in f64; 0.0004 and 9 in f32), floats nearest k*pi/2, and
//! special values). Both the portable and the AVX2+FMA build are measured and
//! gave the same maxima, except f32 tanh (the larger figure is the portable
//! build's). The tests assert the "bound" columns; debug builds
//! check a 64x sparser sample.
//!
//! * f32: error in ulps of the exact result, the reference being the f64
//!   function evaluated by glibc (a correctly rounded result scores <= 0.5).
//! * f64: distance in ulps from glibc's libm result (itself < 1 ulp from
//!   exact), so this is *relative to libm*. sigmoid and softplus have no libm
//!   counterpart; their reference is built from libm `exp`/`log1p` with
//!   compensated arithmetic.
//!
//! | function | range sampled (f32 / f64)     | f32 max | f32 bound | f64 max | f64 bound |
//! |----------|-------------------------------|---------|-----------|---------|-----------|
//! | exp      | +-110 / +-750                 | 0.99    | 1.5       | 1       | 1         |
//! | log      | all positive floats           | 0.82    | 1.0       | 1       | 1         |
//! | tanh     | +-20 / +-40                   | 6.62    | 7.0       | 2       | 2         |
//! | sigmoid  | +-110 / +-750                 | 2.12    | 2.5       | 2       | 2         |
//! | softplus | +-110 / +-750                 | 1.83    | 2.5       | 2       | 2         |
//! | sin      | abs < 1e9 (dense below 1e5)   | 0.53    | 0.6       | 2       | 2         |
//! | cos      | abs < 1e9 (dense below 1e5)   | 0.53    | 0.6       | 2       | 2         |
//! | sqrt     | all floats                    | 0.5     | 0.5       | 0       | 0         |
//!
//! Outside the sampled ranges results saturate exactly (exp -> 0 / +inf,
//! tanh -> +-1, sigmoid -> 0 / 1, softplus -> 0 / x). sin and cos use the
//! vector path for |x| < 1e9 (both types) and std's `sin`/`cos` for other
//! lanes (huge, infinite or NaN), so they are as accurate as libm there.
//!
//! f32 tanh trades accuracy for speed on purpose: it is the rational form
//! XLA's CPU backend uses (4.6 ulp with FMA, 6.6 without), 2.5 times cheaper
//! than an exponential-based one held to 1.3 ulp; tanh is the MLP train
//! step's largest cost after the matrix products. f64 tanh keeps the
//! exponential form (within the 1e-9 relative checks against JAX).
//!
//! # Special values
//!
//! NaN in gives NaN out for every function. exp: +inf -> +inf, -inf -> 0,
//! overflow -> +inf, underflow -> subnormal then 0. log: 0 -> -inf,
//! negative -> NaN, +inf -> +inf. tanh: +-inf -> +-1, tanh(-0) = -0.
//! sigmoid: +inf -> 1, -inf -> 0, never NaN for finite input.
//! softplus: +inf -> +inf, -inf -> 0. sin(-0) = -0.

mod dispatch;
mod f32k;
mod f64k;

#[cfg(test)]
mod accuracy;

use dispatch::{run, Grad, Op};

/// Which compiled version of the loops this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Baseline target features (SSE2 on x86_64), no FMA unless the target has it.
    Portable,
    /// Compiled with AVX2 and FMA, chosen at run time on x86_64.
    Avx2Fma,
}

/// The backend that the slice functions use on this machine (detected once).
pub fn backend() -> Backend {
    if dispatch::has_avx2_fma() {
        Backend::Avx2Fma
    } else {
        Backend::Portable
    }
}

/// Elementwise math over slices, implemented for `f32` and `f64`.
///
/// `*_slice(input, out)` writes `f(input[i])` to `out[i]` and panics if the
/// lengths differ; `*_in_place(data)` overwrites `data`. Any length works.
pub trait VMath: Copy {
    /// e^x.
    fn exp_slice(input: &[Self], out: &mut [Self]);
    /// e^x, in place.
    fn exp_in_place(data: &mut [Self]);
    /// Natural logarithm.
    fn log_slice(input: &[Self], out: &mut [Self]);
    /// Natural logarithm, in place.
    fn log_in_place(data: &mut [Self]);
    /// Hyperbolic tangent.
    fn tanh_slice(input: &[Self], out: &mut [Self]);
    /// Hyperbolic tangent, in place.
    fn tanh_in_place(data: &mut [Self]);
    /// Logistic sigmoid 1 / (1 + e^-x).
    fn sigmoid_slice(input: &[Self], out: &mut [Self]);
    /// Logistic sigmoid, in place.
    fn sigmoid_in_place(data: &mut [Self]);
    /// Sine (radians).
    fn sin_slice(input: &[Self], out: &mut [Self]);
    /// Sine, in place.
    fn sin_in_place(data: &mut [Self]);
    /// Cosine (radians).
    fn cos_slice(input: &[Self], out: &mut [Self]);
    /// Cosine, in place.
    fn cos_in_place(data: &mut [Self]);
    /// Square root (the hardware instruction, correctly rounded).
    fn sqrt_slice(input: &[Self], out: &mut [Self]);
    /// Square root, in place.
    fn sqrt_in_place(data: &mut [Self]);
    /// Softplus log(1 + e^x), without overflow for large x.
    fn softplus_slice(input: &[Self], out: &mut [Self]);
    /// Softplus, in place.
    fn softplus_in_place(data: &mut [Self]);
    /// Backward of tanh from its output: `out[i] = g[i] * (1 - y[i]^2)`.
    /// Panics if the lengths differ.
    fn tanh_grad(y: &[Self], g: &[Self], out: &mut [Self]);
    /// Backward of sigmoid from its output: `out[i] = g[i] * y[i] * (1 - y[i])`.
    /// Panics if the lengths differ.
    fn sigmoid_grad(y: &[Self], g: &[Self], out: &mut [Self]);
}

macro_rules! impl_vmath {
    ($t:ty, $m:ident) => {
        impl VMath for $t {
            fn exp_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Exp, input, out)
            }
            fn exp_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Exp, data)
            }
            fn log_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Ln, input, out)
            }
            fn log_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Ln, data)
            }
            fn tanh_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Tanh, input, out)
            }
            fn tanh_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Tanh, data)
            }
            fn sigmoid_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Sigmoid, input, out)
            }
            fn sigmoid_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Sigmoid, data)
            }
            fn sin_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Sin, input, out)
            }
            fn sin_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Sin, data)
            }
            fn cos_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Cos, input, out)
            }
            fn cos_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Cos, data)
            }
            fn sqrt_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Sqrt, input, out)
            }
            fn sqrt_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Sqrt, data)
            }
            fn softplus_slice(input: &[Self], out: &mut [Self]) {
                run::$m::slice(Op::Softplus, input, out)
            }
            fn softplus_in_place(data: &mut [Self]) {
                run::$m::in_place(Op::Softplus, data)
            }
            fn tanh_grad(y: &[Self], g: &[Self], out: &mut [Self]) {
                run::$m::grad(Grad::Tanh, y, g, out)
            }
            fn sigmoid_grad(y: &[Self], g: &[Self], out: &mut [Self]) {
                run::$m::grad(Grad::Sigmoid, y, g, out)
            }
        }
    };
}
impl_vmath!(f32, s);
impl_vmath!(f64, d);

macro_rules! free_fns {
    ($($slice:ident, $in_place:ident, $what:literal;)*) => {$(
        #[doc = concat!("Elementwise ", $what, " into `out`; same as [`VMath::", stringify!($slice), "`]. Panics if the lengths differ.")]
        pub fn $slice<T: VMath>(input: &[T], out: &mut [T]) {
            T::$slice(input, out)
        }
        #[doc = concat!("Elementwise ", $what, " in place; same as [`VMath::", stringify!($in_place), "`].")]
        pub fn $in_place<T: VMath>(data: &mut [T]) {
            T::$in_place(data)
        }
    )*};
}
free_fns! {
    exp_slice, exp_in_place, "e^x";
    log_slice, log_in_place, "natural logarithm";
    tanh_slice, tanh_in_place, "tanh";
    sigmoid_slice, sigmoid_in_place, "logistic sigmoid";
    sin_slice, sin_in_place, "sine";
    cos_slice, cos_in_place, "cosine";
    sqrt_slice, sqrt_in_place, "square root";
    softplus_slice, softplus_in_place, "softplus log(1 + e^x)";
}

/// Slices at least this long are split over the cores by [`par_in_place`].
pub use crate::ir::PARALLEL_FROM;

/// Runs the in-place kernel `f` over `data`, in chunks on rayon's threads when
/// `data` has at least [`PARALLEL_FROM`] elements.
pub fn par_in_place<T: VMath + Send>(data: &mut [T], f: fn(&mut [T])) {
    use rayon::prelude::*;
    if data.len() < PARALLEL_FROM {
        f(data)
    } else {
        data.par_chunks_mut(PARALLEL_FROM / 4).for_each(f)
    }
}

/// `out[i] = g[i] * (1 - y[i]^2)` where `y = tanh(x)`; one fused pass.
/// Panics if the lengths differ.
pub fn tanh_grad<T: VMath>(y: &[T], g: &[T], out: &mut [T]) {
    T::tanh_grad(y, g, out)
}

/// `out[i] = g[i] * y[i] * (1 - y[i])` where `y = sigmoid(x)`; one fused pass.
/// Panics if the lengths differ.
pub fn sigmoid_grad<T: VMath>(y: &[T], g: &[T], out: &mut [T]) {
    T::sigmoid_grad(y, g, out)
}
