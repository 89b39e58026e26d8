//! The runtime: values, the kernels (one forward arm per op), the derivative
//! rules (a VJP and a JVP per op), and the interpreter that sweeps a program
//! forward, backward (reverse mode) and with tangents (forward mode); fused
//! chains of elementwise ops run as one pass (`fusion`, running the schedule
//! the IR finds); the vectorized math (`vmath`) and its wiring to the unary
//! table's `vector` entries (`vector`); values from and to JSON; the crate's
//! random generator. It imports only the IR and the error type
//! (`tests/layers.rs`); the memory model that replays its policy is the IR's.

pub mod emit;
pub mod fusion;
pub mod grad;
pub mod interp;
pub mod kernels;
mod looprun;
pub mod random;
pub mod values;
pub mod vector;
pub mod vmath;

pub use crate::ir::{predict_peak_bytes, Run};
pub use grad::{op_jvp, op_vjp};
pub use interp::{with_threads_awake, Evaluation, Gradients, Interpreter, Kept, NodeTimes, Tangents, Values};
pub use kernels::{matmul, run_op, unbroadcast, Tensor};
pub use random::{random_values, Rng};
pub use values::{json_from_str, named_to_json, tensor_from_json, tensor_to_json, values_from_json};
