//! Timing the interpreter: the median of single runs after a warm-up, the
//! measurement that `bench`, `calibrate` and the cost check all quote.

use crate::error::Result;
use crate::ir::{Program, Run, Scalar};
use crate::runtime::{random_values, Interpreter, Values};
use std::time::{Duration, Instant};

/// The fewest timed runs, however long a run takes.
pub const MIN_RUNS: usize = 5;
/// The most timed runs, however short a run is.
pub const MAX_RUNS: usize = 200_000;

/// What timing one program measured, in microseconds per run.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Timed runs.
    pub runs: usize,
    /// Median of the runs.
    pub median_us: f64,
    /// Fastest run.
    pub min_us: f64,
    /// Slowest run.
    pub max_us: f64,
}

/// Random values (seed 7) for every input and param of `program`, as `T`.
pub fn values_for<T: Scalar>(program: &Program) -> Values<T> {
    random_values(program, 7)
        .into_iter()
        .map(|(name, t)| (name, t.mapv(|v| T::of(v))))
        .collect()
}

/// The interpreter a timing runs: fused unless `fuse` is false, differentiating
/// with respect to the params (the inputs if there are none), as a train step does.
pub fn timed_interpreter(program: &Program, fuse: bool) -> Interpreter<'_> {
    let wrt = match program.params.is_empty() {
        true => &program.inputs,
        false => &program.params,
    };
    Interpreter::new(program)
        .fuse(fuse)
        .with_respect_to(wrt.iter().map(|d| d.name.clone()))
}

/// Runs `interpreter` for `run` on `values`, warms up (a tenth of `budget`, at
/// least two runs), then times single runs until `budget` is spent (at least
/// [`MIN_RUNS`], at most [`MAX_RUNS`]).
pub fn time_runs<T: Scalar>(
    interpreter: &Interpreter<'_>,
    values: &Values<T>,
    run: Run,
    budget: Duration,
) -> Result<Timing> {
    let once = || -> Result<()> {
        match run {
            Run::Grad => drop(std::hint::black_box(interpreter.gradient(values)?)),
            Run::Eval => drop(std::hint::black_box(interpreter.evaluate(values)?)),
        }
        Ok(())
    };
    let start = Instant::now();
    let mut warm = 0;
    while warm < 2 || start.elapsed() < budget / 10 {
        once()?;
        warm += 1;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < MAX_RUNS && (samples.len() < MIN_RUNS || start.elapsed() < budget) {
        let t = Instant::now();
        once()?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(Timing {
        runs: samples.len(),
        median_us: median(&samples),
        min_us: samples[0],
        max_us: samples[samples.len() - 1],
    })
}

/// Times `program` for `run` in `T` on random values (see [`time_runs`]).
pub fn time_program<T: Scalar>(program: &Program, run: Run, budget: Duration) -> Result<Timing> {
    time_runs(
        &timed_interpreter(program, true),
        &values_for::<T>(program),
        run,
        budget,
    )
}

/// How many blocks [`time_side_by_side`] splits each program's time into.
const BLOCKS: usize = 5;

/// Times several programs for `run` in `T` side by side: in rounds, each
/// program in turn gets a block of runs (its first run, which warms the
/// caches back up, left out) until `budget` is spent over [`BLOCKS`] rounds;
/// the median of each program's runs. Drift in the machine's speed
/// (frequency, neighbours) falls on every program alike, while each block
/// runs warm, as a training loop runs its step.
pub fn time_side_by_side<T: Scalar>(programs: &[&Program], run: Run, budget: Duration) -> Result<Vec<f64>> {
    let interpreters: Vec<Interpreter> = programs.iter().map(|p| timed_interpreter(p, true)).collect();
    let values: Vec<Values<T>> = programs.iter().map(|p| values_for::<T>(p)).collect();
    let once = |i: usize| -> Result<f64> {
        let t = Instant::now();
        match run {
            Run::Grad => drop(std::hint::black_box(interpreters[i].gradient(&values[i])?)),
            Run::Eval => drop(std::hint::black_box(interpreters[i].evaluate(&values[i])?)),
        }
        Ok(t.elapsed().as_secs_f64() * 1e6)
    };
    let block = budget / (BLOCKS * programs.len().max(1)) as u32;
    let mut samples = vec![vec![]; programs.len()];
    for _ in 0..BLOCKS {
        for (i, s) in samples.iter_mut().enumerate() {
            once(i)?;
            let start = Instant::now();
            let mut runs = 0;
            while runs < MAX_RUNS / BLOCKS && (runs < MIN_RUNS.div_ceil(BLOCKS) || start.elapsed() < block) {
                s.push(once(i)?);
                runs += 1;
            }
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            median(&s)
        })
        .collect())
}

/// The median of `sorted` (not empty, in ascending order).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n % 2 {
        1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
