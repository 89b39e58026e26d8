//! The IR and programs: the ops (by kind: the [`Unary`], [`Binary`] and
//! [`Reduce`] tables and the structural ops of [`Op`]), shapes and shape
//! inference, the element types, and [`Program`] (a DAG after CSE, by
//! hash-consing) with its printer back to the language. Also what every
//! later stage reads about a program without running it: its loops, the
//! schedule of elementwise fusion and the memory model, and the modes and
//! limits several stages share.
//!
//! The lowest layer: it imports no other stage of the crate (`tests/layers.rs`).

pub mod binary;
pub mod error;
pub mod limits;
pub mod loops;
pub mod memory;
pub mod modes;
pub mod nodes;
pub mod one_loop;
pub mod op;
pub mod print;
pub mod program;
pub mod reduce;
pub mod scalar;
pub mod schedule;
pub mod shape;
pub mod structural;
pub mod unary;

pub use binary::{Assoc, Binary, Lane, PartialReads};
pub use limits::MAX_NODES;
pub use loops::{
    early_loop, expand_loops, find_loops, find_loops_located, last_chunk_shapes, main_children, main_uses, LoopBody,
    Loops,
};
pub use memory::predict_peak_bytes;
pub use modes::{BatchReduce, Dtype, Run};
pub use nodes::Nodes;
pub use one_loop::one_loop;
pub use op::{Flops, Num, Op};
pub use program::{extract_dag, infer_shapes, Decl, Program};
pub use reduce::Reduce;
pub use scalar::{sigmoid, Scalar, TypedSlice};
pub use schedule::{Group, Schedule, Step, GEMM_THREADS_FROM, PARALLEL_FROM};
pub use shape::{broadcast, matmul, ChildInfo, Shape, ShapeError, MAX_ELEMENTS, MAX_RANK};
pub use structural::{BatchEmit, Emit, Extent, Moved, Structural, Window};
pub use unary::{DerivativeReads, Unary, VectorKernel};
