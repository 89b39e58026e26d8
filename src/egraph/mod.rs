//! The e-graph stage: shape inference as an egg analysis, rewrite rules (text
//! files, rule classes generated from the op tables, Rust appliers), the
//! cost model, DAG-aware extraction, and the batcher that puts the duplicated
//! and the fused plans in one e-graph and picks one. It imports only the IR:
//! what needs the interpreter (the rules' soundness checker, calibrating the
//! cost model) is `crate::measure`'s.

pub mod analysis;
pub mod appliers;
pub mod autobatch;
pub mod batch;
pub mod chunking;
pub mod class_rules;
pub mod cost;
mod cost_map;
pub mod extract;
pub mod extract_exact;
mod loop_plan;
pub mod rule_search;
pub mod rules;
pub mod structural;
pub mod unloop;

pub use crate::ir::BatchReduce;
pub use analysis::{ClassData, Graph, ShapeAnalysis};
pub use autobatch::{
    autobatch, kernel_bound, AutobatchOptions, AutobatchReport, Autobatched, ExtractionReport, GroupReport,
};
pub use batch::{stop_reason_text, BatchReport, Batched, Batcher, PlanSummary, Strategy};
pub use chunking::{chunk_plan, chunk_sizes};
pub use cost::{predict_times, predict_us, work, CostProfile, PerDtype, PredictedTimes, Work};
pub use extract::{
    extract_dag, extract_dag_greedy, extract_dag_greedy_where, extract_forced, extract_forced_where, Extraction,
    GreedyDag,
};
pub use extract_exact::{extract_dag_exact, ExactExtraction, ExactLimits, ExactStatus};
pub use rules::{parse_rule_file, Conditions, Rule, RuleSet, TextRule, BUILTIN_RULE_FILES};
pub use unloop::fuse_loops;
