//! The element types values have: `f64` and `f32`.

use crate::runtime::vmath::VMath;
use num_traits::{Float, FromPrimitive};

/// The element types the interpreter runs on: `f64` and `f32`. Both have
/// vectorized slice kernels ([`VMath`]), which the unary ops' `vector`
/// entries use.
pub trait Scalar:
    Float
    + VMath
    + FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + std::fmt::Debug
    + std::fmt::Display
    + std::iter::Sum
    + std::ops::AddAssign
    + Send
    + Sync
    + 'static
{
    /// Converts from f64 (literals, JSON values).
    fn of(v: f64) -> Self {
        Self::from_f64(v).expect("every f64 converts")
    }
}
impl Scalar for f64 {}
impl Scalar for f32 {}

/// The numerically stable logistic function.
pub fn sigmoid<T: Scalar>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}
