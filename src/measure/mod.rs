//! What only running programs can tell the e-graph stage: whether a rewrite
//! rule is sound ([`check_rule`]: both sides evaluated on random tensors by
//! the interpreter) and what ops cost on this machine ([`calibrate()`]: the
//! interpreter timed, as a [`CostProfile`](crate::egraph::CostProfile)).
//!
//! It sits above both the e-graph stage and the runtime, which import only
//! the IR (`tests/layers.rs`): the e-graph stage takes a checker where it
//! needs one ([`RuleSet::with_checked_dir`](crate::egraph::RuleSet::with_checked_dir)).

pub mod calibrate;
pub mod cost_check;
pub mod soundness;
pub mod timing;

pub use calibrate::calibrate;
pub use cost_check::{cost_check, summarize, ConfigCheck, CostCheckOptions, CostCheckSummary, PlanCheck};
pub use soundness::check_rule;
pub use timing::{time_program, time_runs, time_side_by_side, timed_interpreter, values_for, Timing};
