//! The runtime: values, the kernels (one forward arm per op), the derivative
//! rules (a VJP and a JVP per op), and the interpreter that sweeps a program
//! forward, backward (reverse mode) and with tangents (forward mode); values
//! from and to JSON; the crate's random generator.

pub mod fusion;
pub mod grad;
pub mod interp;
pub mod kernels;
mod looprun;
pub mod random;
pub mod values;
pub mod vector;
pub mod vmath;

pub use crate::ir::predict_peak_bytes;
pub use crate::ir::Run;
pub use grad::{jvp, vjp};
pub use interp::{Evaluation, Gradients, Interpreter, NodeTimes, Tangents, Values};
pub use kernels::{forward, matmul, unbroadcast, Tensor};
pub use random::{random_values, Rng};
pub use values::{json_from_str, named_to_json, tensor_from_json, tensor_to_json, values_from_json};
