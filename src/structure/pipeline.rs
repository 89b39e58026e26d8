//! One training step on a batch, two ways, timed by phase: unbatched (the
//! batch written as one program and run by the interpreter, as DyNet runs a
//! graph without autobatching) and by the fast path (plan, batched cells,
//! gathers and scatters). Both end with a plain SGD update.

use super::fast::{FastPath, Outcome};
use super::graph::{batch_program, lookup_gradient, Batch, Model};
use crate::error::Result;
use crate::runtime::{Interpreter, Rng, Values};
use std::time::{Duration, Instant};

/// Time spent per phase of a step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// Building: the batch's program (unbatched), or nothing beyond the batch's calls (fast path).
    pub build: Duration,
    /// Autobatching: the plan (levels, from the cache when the structure repeats).
    pub batch: Duration,
    /// Running forward and backward, and the SGD update.
    pub run: Duration,
}

impl Phases {
    /// The sum of the phases.
    pub fn total(&self) -> Duration {
        self.build + self.batch + self.run
    }

    /// Adds `other`'s times.
    pub fn add(&mut self, other: Phases) {
        self.build += other.build;
        self.batch += other.batch;
        self.run += other.run;
    }
}

/// Random params for `model` (and its embedding matrix), uniform in
/// ±1/sqrt(fan-in), from `seed`.
pub fn init_params(model: &Model, seed: u64) -> Values<f64> {
    let mut rng = Rng::new(seed);
    let mut params = Values::new();
    let (name, [rows, width]) = model.embedding;
    params.insert(name.to_string(), rng.tensor(&[rows, width], -0.5, 0.5));
    for (name, dims) in &model.params {
        let fan_in = *dims.last().unwrap_or(&1) as f64;
        let scale = 1.0 / fan_in.sqrt();
        params.insert(name.to_string(), rng.tensor(dims, -scale, scale));
    }
    params
}

/// The loss and the gradient of every param and of the embedding matrix, by
/// the interpreter on the batch's one program, unbatched; with the time spent building it.
pub fn unbatched_gradient(model: &Model, batch: &Batch, params: &Values<f64>) -> Result<(f64, Values<f64>, Phases)> {
    let start = Instant::now();
    let (program, values) = batch_program(model, batch, params)?;
    let build = start.elapsed();
    let start = Instant::now();
    let g = Interpreter::new(&program).gradient(&values)?;
    let loss = g.outputs[0].1.sum();
    let table = lookup_gradient(model, batch, &g.grads);
    let mut grads: Values<f64> = g.grads.into_iter().filter(|(n, _)| params.contains_key(n)).collect();
    grads.insert(model.embedding.0.to_string(), table);
    let phases = Phases {
        build,
        batch: Duration::ZERO,
        run: start.elapsed(),
    };
    Ok((loss, grads, phases))
}

/// The mean over the batch's examples of each example's gradient, each
/// example's program run alone (its loss weight 1): what the batch's gradient must equal.
pub fn per_example_mean_gradient(model: &Model, batch: &Batch, params: &Values<f64>) -> Result<Values<f64>> {
    let n = batch.examples.len();
    let mut mean: Values<f64> = Values::new();
    for e in 0..n {
        let example = batch.example(e);
        let (_, grads, _) = unbatched_gradient(model, &example, params)?;
        for (name, g) in grads {
            let g = g / n as f64;
            match mean.get_mut(&name) {
                Some(total) => *total += &g,
                None => {
                    mean.insert(name, g);
                }
            }
        }
    }
    Ok(mean)
}

/// `params -= rate * grads`.
pub fn sgd(params: &mut Values<f64>, grads: &Values<f64>, rate: f64) {
    for (name, g) in grads {
        if let Some(p) = params.get_mut(name) {
            p.scaled_add(-rate, g);
        }
    }
}

/// One SGD step without autobatching: the loss before the step and the phases' times.
pub fn step_unbatched(model: &Model, batch: &Batch, params: &mut Values<f64>, rate: f64) -> Result<(f64, Phases)> {
    let (loss, grads, mut phases) = unbatched_gradient(model, batch, params)?;
    let start = Instant::now();
    sgd(params, &grads, rate);
    phases.run += start.elapsed();
    Ok((loss, phases))
}

/// One SGD step by the fast path: the outcome (before the step) and the phases' times.
pub fn step_fast(fast: &mut FastPath, batch: &Batch, params: &mut Values<f64>, rate: f64) -> Result<(Outcome, Phases)> {
    let start = Instant::now();
    let plan = fast.plan(batch)?;
    let planned = start.elapsed();
    let start = Instant::now();
    let outcome = fast.run(batch, &plan, params)?;
    sgd(params, &outcome.grads, rate);
    let phases = Phases {
        build: Duration::ZERO,
        batch: planned,
        run: start.elapsed(),
    };
    Ok((outcome, phases))
}
