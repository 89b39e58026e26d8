//! The op table's `vector` entries wired to [`vmath`]: each
//! [`VectorKernel`] to its in-place slice kernel, by an exhaustive match (an
//! entry of `src/ir/unary.rs` with `vector` and no kernel here does not
//! build), and a unary op's array kernel ([`UnaryMap::map`]), which runs it
//! over contiguous arrays. [`vmath`] itself knows nothing of the ops.

use crate::ir::{Scalar, TypedSlice, Unary, VectorKernel};
use crate::runtime::vmath::{self, VMath};
use ndarray::ArrayD;

/// The in-place slice kernel of `kernel` for the element type `T`.
fn in_place<T: VMath>(kernel: VectorKernel) -> fn(&mut [T]) {
    match kernel {
        VectorKernel::Exp => T::exp_in_place,
        VectorKernel::Log => T::log_in_place,
        VectorKernel::Tanh => T::tanh_in_place,
        VectorKernel::Sigmoid => T::sigmoid_in_place,
        VectorKernel::Sqrt => T::sqrt_in_place,
        VectorKernel::Sin => T::sin_in_place,
        VectorKernel::Cos => T::cos_in_place,
        VectorKernel::Softplus => T::softplus_in_place,
    }
}

/// Runs `kernel` over `data` in place, on the calling thread.
#[inline]
pub fn run_in_place<T: Scalar>(kernel: VectorKernel, data: &mut [T]) {
    match T::typed(data) {
        TypedSlice::F32(data) => in_place::<f32>(kernel)(data),
        TypedSlice::F64(data) => in_place::<f64>(kernel)(data),
    }
}

/// Runs `kernel` over `data` in place, in chunks on rayon's threads when
/// `data` has at least [`vmath::PARALLEL_FROM`] elements.
#[inline]
pub fn par_run_in_place<T: Scalar>(kernel: VectorKernel, data: &mut [T]) {
    match T::typed(data) {
        TypedSlice::F32(data) => vmath::par_in_place(data, in_place::<f32>(kernel)),
        TypedSlice::F64(data) => vmath::par_in_place(data, in_place::<f64>(kernel)),
    }
}

/// A unary op's array kernel.
pub trait UnaryMap {
    /// `f` of every element: the op's vector kernel over a contiguous array
    /// (one SIMD pass, on every core for large arrays), else (no kernel, or a
    /// strided array) its scalar `value`, one loop per op.
    fn map<T: Scalar>(self, a: &ArrayD<T>) -> ArrayD<T>;
}

impl UnaryMap for Unary {
    fn map<T: Scalar>(self, a: &ArrayD<T>) -> ArrayD<T> {
        if let Some(kernel) = self.vector_kernel() {
            if a.as_slice_memory_order().is_some() {
                let mut out = a.clone();
                let data = out.as_slice_memory_order_mut().expect("a clone keeps the layout");
                par_run_in_place(kernel, data);
                return out;
            }
        }
        self.map_scalar(a)
    }
}
