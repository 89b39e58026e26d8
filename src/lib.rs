//! batchgraph: mini-batching of computational graphs by e-graph rewriting.
//!
//! A program in the `.graph` language is parsed into one DAG of [`Op`]s, in
//! which equal subterms are shared (CSE, by hash-consing). It can be printed
//! back, drawn (DOT, SVG), evaluated, and differentiated in reverse and
//! forward mode by the interpreter; [`grad`]
//! and [`jvp`] write its derivatives as programs; the [`Batcher`] batches any
//! of them over a mini-batch by rewriting.
//!
//! The crate is organised by stage, one folder each: [`front`] (the
//! language), [`ir`] (ops, shapes, programs), [`egraph`] (rules, cost,
//! extraction, batching), [`transform`] (derivatives as programs),
//! [`runtime`] (the interpreter), [`measure`] (rule soundness and cost
//! calibration, by running the interpreter), [`export`] (ONNX), [`train`]
//! (data, optimizers, the training step as a program, the noise scale)
//! and, with the `pictures` feature, [`pictures`]. Everything is re-exported here.
//!
//! The stages are layers, and an import points down only (`tests/layers.rs`
//! enforces it): [`ir`] imports no other stage; the crate's error type sits
//! on it; [`front`], [`egraph`], [`transform`] and [`runtime`] import only
//! those two (and [`transform`] the [`egraph`] too, for its simplifier);
//! [`measure`], [`export`], [`train`] and [`pictures`] import any of the stages below.
//!
//! ```
//! use batchgraph::Program;
//! let program = Program::parse("seed.graph", "
//!     input x: [3]
//!     param w: [4, 3]
//!     fn f(x, w) = tanh(w @ x)
//!     fn g(a, b, x) = sum(a * b) + sum(x)
//!     out s = g(f(x, w), f(x, w), x)
//! ").unwrap();
//! assert_eq!(program.node_count(), 8);          // f(x, w) is one node
//! assert_eq!(program.nodes_before_cse(), 13);   // as a tree it was two
//! assert!(program.to_text().contains("let t1 = tanh(w @ x)"));
//! ```
#![warn(missing_docs)]

pub mod egraph;
mod error;
pub mod export;
pub mod front;
pub mod ir;
pub mod measure;
#[cfg(feature = "pictures")]
pub mod pictures;
pub mod runtime;
pub mod structure;
pub mod train;
pub mod transform;

pub use egg::StopReason;
pub use egraph::{
    autobatch, chunk_plan, chunk_sizes, extract_dag, extract_dag_exact, extract_dag_greedy, extract_dag_greedy_where,
    parse_rule_file, predict_times, predict_us, stop_reason_text, work, AutobatchOptions, AutobatchReport, Autobatched,
    BatchReport, Batched, Batcher, ClassData, Conditions, CostProfile, ExactExtraction, ExactLimits, ExactStatus,
    Extraction, ExtractionReport, Graph, GreedyDag, GroupReport, PerDtype, PlanSummary, PredictedTimes, Rule, RuleSet,
    ShapeAnalysis, Strategy, TextRule, Work, BUILTIN_RULE_FILES,
};
pub use error::{Conflict, Error, Result};
pub use export::{to_onnx, DynamicBatch, ExportOptions};
pub use front::{parse_file, parse_program, ParseError, ProgramBuilder, MAX_CALL_DEPTH, MAX_NESTING};
pub use ir::{
    broadcast, expand_loops, infer_shapes, matmul, one_loop, Assoc, BatchReduce, Binary, ChildInfo, Decl, Dtype, Flops,
    LoopBody, Loops, Num, Op, Program, Reduce, Run, Scalar, Shape, ShapeError, Structural, Unary, MAX_ELEMENTS,
    MAX_NODES, MAX_RANK,
};
pub use measure::{
    calibrate, check_rule, cost_check, summarize, time_program, time_side_by_side, ConfigCheck, CostCheckOptions,
    CostCheckSummary, PlanCheck, Timing,
};
#[cfg(feature = "pictures")]
pub use pictures::{line_chart_svg, to_dot, to_petgraph, to_picture, to_svg, Chart, GraphNode, NodeKind, Series};
pub use runtime::{
    json_from_str, named_to_json, predict_peak_bytes, random_values, run_op, tensor_from_json, tensor_to_json,
    unbroadcast, values_from_json, Evaluation, Gradients, Interpreter, NodeTimes, Rng, Tangents, Tensor, Values,
};
pub use transform::{grad, jvp};

impl Program {
    /// Parses program text; `file` names it in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Program, ParseError> {
        parse_program(file, text)
    }
}
