//! Training a program written in the language: data ([`data`]: `.npz` and
//! CSV, checked whole up front), params ([`params`]: seeded random or read,
//! written as `.npz`), the step program ([`step`]: the gradient of the mean
//! loss over a batch and the optimizer's update as one program, params in,
//! new params out), the loop that runs it ([`run`]) and the gradient noise
//! scale from per-example gradients ([`noise`]).
//!
//! It sits above the stages it builds from (`transform` for the gradient,
//! `egraph` for batching, `runtime` to run), beside `measure` and `export`.

pub mod data;
pub mod noise;
pub mod params;
pub mod run;
pub mod step;

pub use data::{Dataset, MAX_DATA_BYTES};
pub use noise::{noise_scale, NoiseScale, TwoBatchEstimate};
pub use params::{check_params, random_params, read_params, write_params};
pub use run::{steps_per_epoch, train, Evaluator, Length, Metrics, StepDone, Trainer};
pub use step::{loss_program, Optimizer, Plan, StateSlot, Step, StepOptions};
