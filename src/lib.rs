//! batchgraph: mini-batching of computational graphs by e-graph rewriting.
//!
//! A program in the `.graph` language is parsed into one DAG of [`Op`]s, in
//! which equal subterms are shared (CSE, done by adding it to an egg
//! e-graph). It can be printed back, drawn (DOT, SVG), evaluated, and
//! differentiated in reverse and forward mode by the interpreter.
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

mod analysis;
mod batch;
mod cost;
mod demo;
mod draw;
mod error;
mod extract;
mod grad;
mod interp;
mod kernels;
mod language;
mod parser;
mod plot;
mod program;
mod rules;
mod shape;
mod soundness;
mod values;

pub use analysis::{ClassData, Graph, ShapeAnalysis};
pub use batch::{BatchReport, Batched, Batcher, PlanSummary, Reduce, Strategy};
pub use cost::{calibrate, program_cost, work, CostProfile};
pub use demo::{best_time_us, pseudo_random, random_values, run_demo, DemoOptions, DemoSummary, TimingRow, SEED};
pub use draw::{dot_to_svg, to_dot, to_petgraph, to_svg, GraphNode, NodeKind};
pub use error::{Error, Result};
pub use extract::{extract_dag_greedy, Extraction};
pub use grad::{jvp, vjp};
pub use interp::{Evaluation, Gradients, Interpreter, Tangents, Values};
pub use kernels::{forward, matmul as matmul_kernel, unbroadcast, Scalar, Tensor};
pub use language::{Num, Op};
pub use parser::{parse_file, parse_program, ParseError, MAX_CALL_DEPTH, MAX_NESTING, MAX_NODES};
pub use plot::{line_chart_svg, Chart, Series};
pub use program::{extract_dag, infer_shapes, Decl, Program};
pub use rules::{parse_rule_file, Conditions, RuleSet, TextRule, BUILTIN_RULE_FILES, RUST_APPLIERS};
pub use shape::{broadcast, matmul, ChildInfo, Shape, ShapeError, MAX_ELEMENTS, MAX_RANK};
pub use soundness::check_rule;
pub use values::{named_to_json, tensor_from_json, tensor_to_json, values_from_json};

impl Program {
    /// Parses program text; `file` names it in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Program, ParseError> {
        parse_program(file, text)
    }
}
