//! The element types values have: `f64` and `f32`.

use num_traits::{Float, FromPrimitive};

/// The element types the interpreter runs on: `f64` and `f32`. Code that
/// has one implementation per type (the runtime's vectorized kernels) gets
/// at it from generic code through [`Scalar::typed`].
pub trait Scalar:
    Float
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

    /// `data` as a slice of its concrete type. Each implementation returns
    /// its own variant, so after monomorphization a match on the result
    /// costs nothing.
    fn typed(data: &mut [Self]) -> TypedSlice<'_>;
}

impl Scalar for f64 {
    #[inline]
    fn typed(data: &mut [f64]) -> TypedSlice<'_> {
        TypedSlice::F64(data)
    }
}

impl Scalar for f32 {
    #[inline]
    fn typed(data: &mut [f32]) -> TypedSlice<'_> {
        TypedSlice::F32(data)
    }
}

/// A slice of one of the element types, as its concrete type ([`Scalar::typed`]).
pub enum TypedSlice<'a> {
    /// `f32` elements.
    F32(&'a mut [f32]),
    /// `f64` elements.
    F64(&'a mut [f64]),
}

/// The numerically stable logistic function.
pub fn sigmoid<T: Scalar>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}
