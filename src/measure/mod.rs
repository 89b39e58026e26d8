//! What only running programs can tell the e-graph stage: whether a rewrite
//! rule is sound ([`check_rule`]: both sides evaluated on random tensors by
//! the interpreter) and what ops cost on this machine ([`calibrate()`]: the
//! interpreter timed, as a [`CostProfile`](crate::egraph::CostProfile)).
//!
//! It sits above both the e-graph stage and the runtime, which import only
//! the IR (`tests/layers.rs`): the e-graph stage takes a checker where it
//! needs one ([`RuleSet::with_checked_dir`](crate::egraph::RuleSet::with_checked_dir)).

pub mod calibrate;
pub mod soundness;

pub use calibrate::calibrate;
pub use soundness::check_rule;
