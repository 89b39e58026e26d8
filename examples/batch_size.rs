//! When does a bigger batch stop paying? The experiment of issue 20, item 4,
//! on the digits (`examples/digits.graph`, `data/digits/train.npz`), with SGD:
//!
//! 1. For each optimizer batch B in {4, 8, ..., 1024}, the learning rate
//!    tuned on a grid (seed 0), then 3 seeds at the best rate: the steps S and
//!    the examples E = B S to reach a target training loss (the mean over the
//!    whole training set, checked after every step).
//! 2. The law of McCandlish et al. (2018), S/S_min - 1 = (E/E_min - 1)^-1,
//!    which is S = S_min + E_min / B: fitted by least squares in 1/B (its R^2),
//!    giving B_crit = E_min / S_min.
//! 3. The measured noise scale B_simple at the params where each run (seed 0)
//!    reached the target, beside B_crit: over the whole training set, tr(Sigma)
//!    over |G|^2 with |G|^2 corrected for its bias (|G_n|^2 - tr(Sigma) / n: the
//!    two-batch estimator with B_small = 1 and B_big = n), and the two-batch
//!    estimate from batches of 64 with its standard error.
//! 4. The time to the target on this machine with each B computed fused, and
//!    under a memory budget that fits only 64 examples at once (what a step
//!    accumulated in chunks of 64 holds; the plan `--memory` picks: past it,
//!    micro-batches whose sums accumulate in one loop), the fastest of
//!    `PASSES` interleaved runs.
//!
//! Run: `cargo run --release --example batch_size [-- OUT_DIR]` (default out/batch_size).
//! Prints a markdown report; writes steps.svg, examples.svg and time.svg.

use batchgraph::train::data::shuffled;
use batchgraph::train::{
    loss_program, noise_scale, random_params, Dataset, Evaluator, Optimizer, Plan, Step, StepOptions, Trainer,
};
use batchgraph::{line_chart_svg, parse_file, predict_peak_bytes, Chart, Program, Rng, Series, Values};
use std::path::{Path, PathBuf};
use std::time::Instant;

const TARGET: f64 = 0.15;
const BATCHES: [usize; 9] = [4, 8, 16, 32, 64, 128, 256, 512, 1024];
const RATES: [f64; 6] = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0];
const SEEDS: [u64; 3] = [0, 1, 2];
/// A run that has not reached the target after this many examples stops.
const MAX_EXAMPLES: usize = 400_000;
/// The training loss is checked every this many examples (every step from B = 32 on).
const CHECK_EVERY: usize = 32;

/// One run to the target.
struct Run {
    steps: Option<usize>,
    seconds: f64,
    /// The plan the step was computed by (`fused`, `chunks of k`).
    plan: String,
    params: Values<f64>,
}

struct Setup {
    model: Program,
    data: Dataset,
    evaluator: Evaluator,
}

/// SGD at `lr` with batch `batch` from `seed` until the training loss is below
/// TARGET, or `limit` steps (a tuning run that cannot beat the best so far stops).
/// A budget for a step of `batch` examples that fits only 64 at once: the
/// step's data inputs at `batch` (held whatever the plan) plus what a step
/// accumulated in chunks of 64 holds beyond its own (predicted, f64; the same
/// at any batch). A fused step of 64 holds less: it keeps no accumulator, and
/// the one loop carrying every sum holds them all at once.
fn budget_for_64(setup: &Setup, batch: usize) -> usize {
    let held = |b: usize, plan: Plan| {
        let options = StepOptions {
            batch: b,
            plan,
            optimizer: Optimizer::Sgd,
            loss: None,
        };
        let step = Step::build(&setup.model, &options).expect("the step program builds");
        let data: usize = step
            .program
            .inputs
            .iter()
            .filter(|d| step.data_inputs.contains(&d.name))
            .map(|d| d.shape.elements() * 8)
            .sum();
        (predict_peak_bytes(&step.program, batchgraph::Run::Eval, 8), data)
    };
    let (peak_chunked, data_chunked) = held(128, Plan::MicroBatch(64));
    let (_, data) = held(batch, Plan::Fused);
    data + (peak_chunked - data_chunked)
}

/// How many times each timed run is repeated (fused and budget interleaved); the fastest counts.
const PASSES: usize = 3;

fn run(setup: &Setup, batch: usize, lr: f64, seed: u64, plan: Plan, limit: usize) -> Run {
    let options = StepOptions {
        batch,
        plan,
        optimizer: Optimizer::Sgd,
        loss: None,
    };
    let step = Step::build(&setup.model, &options).expect("the step program builds");
    let mut trainer = Trainer::new(&step, random_params(&step.model, seed), lr);
    let mut rng = Rng::new(seed + 100);
    let per_epoch = setup.data.len / batch;
    let mut order = vec![];
    let mut seconds = 0.0;
    let every = (CHECK_EVERY / batch).max(1);
    for s in 0..limit.min(MAX_EXAMPLES / batch) {
        let within = s % per_epoch;
        if within == 0 {
            order = shuffled(setup.data.len, &mut rng);
        }
        let rows = setup.data.rows(&order[within * batch..(within + 1) * batch]);
        let t = Instant::now();
        let loss = trainer.step(rows).expect("a step runs");
        seconds += t.elapsed().as_secs_f64();
        if !loss.is_finite() {
            break;
        }
        if (s + 1) % every != 0 {
            continue;
        }
        let full = setup
            .evaluator
            .evaluate(&trainer.params, &setup.data)
            .expect("evaluates")
            .loss;
        if full < TARGET {
            return Run {
                steps: Some(s + 1),
                seconds,
                plan: step.plan_name.clone(),
                params: trainer.params,
            };
        }
        if !full.is_finite() {
            break;
        }
    }
    Run {
        steps: None,
        seconds,
        plan: step.plan_name.clone(),
        params: trainer.params,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Least squares of y = a + b x: (a, b, R^2).
fn fit_line(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let residual: f64 = points.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let total: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    (a, b, 1.0 - residual / total)
}

fn chart(
    out: &Path,
    file: &str,
    title: &str,
    y_label: &str,
    series: Vec<Series>,
) -> Result<(), Box<dyn std::error::Error>> {
    let chart = Chart {
        title: title.into(),
        x_label: "optimizer batch B".into(),
        y_label: y_label.into(),
        log_x: true,
        log_y: true,
    };
    std::fs::write(out.join(file), line_chart_svg(&chart, &series)?)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "out/batch_size".into()));
    std::fs::create_dir_all(&out)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program = parse_file(&root.join("examples/digits.graph"))?;
    let (model, loss) = loss_program(&program, None)?;
    let data = Dataset::load(&model, &root.join("data/digits/train.npz"))?;
    let evaluator = Evaluator::new(&model, &loss, None, data.len)?;
    let setup = Setup { model, data, evaluator };
    let batches: Vec<usize> = BATCHES.iter().copied().filter(|&b| b <= setup.data.len).collect();

    println!(
        "SGD on digits (examples/digits.graph, {} training examples), target training loss {TARGET}\n",
        setup.data.len
    );
    println!("| B | best lr | steps (3 seeds) | median steps | median examples | B_simple at target, all data | B_simple, batches of 64 (± s.e.) | s fused | s, budget for 64 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = vec![];
    for &batch in &batches {
        // The rate: fewest steps from seed 0 (unreached counts as infinitely many).
        let (mut lr, mut best) = (RATES[0], usize::MAX);
        for &rate in &RATES {
            if let Some(steps) = run(&setup, batch, rate, 0, Plan::Fused, best).steps {
                if steps < best {
                    (lr, best) = (rate, steps);
                }
            }
        }
        let runs: Vec<Run> = SEEDS
            .iter()
            .map(|&seed| run(&setup, batch, lr, seed, Plan::Fused, usize::MAX))
            .collect();
        let steps: Vec<Option<usize>> = runs.iter().map(|r| r.steps).collect();
        let reached: Vec<f64> = steps.iter().flatten().map(|&s| s as f64).collect();
        // The machine is shared: fused and budget runs interleaved, the fastest of each.
        let mut fused = runs[0].seconds;
        let mut chunked: Option<(f64, String)> = None;
        for _ in 0..PASSES {
            fused = fused.min(run(&setup, batch, lr, 0, Plan::Fused, usize::MAX).seconds);
            if batch > 64 {
                let budgeted = run(
                    &setup,
                    batch,
                    lr,
                    0,
                    Plan::Memory(budget_for_64(&setup, batch)),
                    usize::MAX,
                );
                if chunked.as_ref().is_none_or(|(s, _)| budgeted.seconds < *s) {
                    chunked = Some((budgeted.seconds, budgeted.plan));
                }
            }
        }
        let scale = noise_scale(&setup.model, None, &runs[0].params, &setup.data, 64)?;
        let corrected = scale.tr_sigma / (scale.g_norm2 - scale.tr_sigma / scale.examples as f64);
        let noise = scale.two_batch.expect("22 batches of 64");
        let median_steps = (reached.len() == runs.len()).then(|| median(reached.clone()));
        println!(
            "| {batch} | {lr} | {} | {} | {} | {corrected:.0} | {:.0} ± {:.0} | {:.3} | {} |",
            steps
                .iter()
                .map(|s| s.map_or("-".into(), |s| s.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            median_steps.map_or("-".into(), |s| format!("{s:.0}")),
            median_steps.map_or("-".into(), |s| format!("{:.0}", s * batch as f64)),
            noise.b_simple,
            noise.standard_error,
            fused,
            chunked
                .as_ref()
                .map_or("(fused)".into(), |(s, plan)| format!("{s:.3} ({plan})")),
        );
        rows.push((batch, median_steps, corrected, fused, chunked.map(|(s, _)| s)));
    }

    let reached: Vec<(usize, f64)> = rows.iter().filter_map(|r| r.1.map(|s| (r.0, s))).collect();
    let (s_min, e_min, r2) = fit_line(&reached.iter().map(|&(b, s)| (1.0 / b as f64, s)).collect::<Vec<_>>());
    let b_crit = e_min / s_min;
    let b_simple = median(rows.iter().map(|r| r.2).collect());
    println!(
        "\nfit S = S_min + E_min / B over {} batch sizes: S_min = {s_min:.1} steps, E_min = {e_min:.0} examples, \
         B_crit = E_min / S_min = {b_crit:.1}, R^2 = {r2:.3}",
        reached.len()
    );
    println!(
        "measured B_simple at the target (all data, bias-corrected; median over B): {b_simple:.0}; B_simple / B_crit = {:.2}",
        b_simple / b_crit
    );

    let fit_points =
        |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> { batches.iter().map(|&b| (b as f64, f(b as f64))).collect() };
    chart(
        &out,
        "steps.svg",
        &format!("SGD on digits: steps to training loss {TARGET}"),
        "steps (median of 3 seeds)",
        vec![
            Series {
                label: "measured".into(),
                points: reached.iter().map(|&(b, s)| (b as f64, s)).collect(),
                line: false,
            },
            Series {
                label: format!("S_min + E_min / B (R^2 {r2:.3})"),
                points: fit_points(&|b| s_min + e_min / b),
                line: true,
            },
        ],
    )?;
    chart(
        &out,
        "examples.svg",
        &format!("SGD on digits: examples to training loss {TARGET}"),
        "examples (median of 3 seeds)",
        vec![
            Series {
                label: "measured".into(),
                points: reached.iter().map(|&(b, s)| (b as f64, s * b as f64)).collect(),
                line: false,
            },
            Series {
                label: "E_min + S_min B".into(),
                points: fit_points(&|b| e_min + s_min * b),
                line: true,
            },
        ],
    )?;
    chart(
        &out,
        "time.svg",
        &format!("SGD on digits: seconds of steps to training loss {TARGET} (seed 0)"),
        "seconds",
        vec![
            Series {
                label: "fused".into(),
                points: rows.iter().map(|r| (r.0 as f64, r.3)).collect(),
                line: true,
            },
            Series {
                label: "memory budget for 64 examples".into(),
                points: rows.iter().filter_map(|r| r.4.map(|s| (r.0 as f64, s))).collect(),
                line: true,
            },
        ],
    )?;
    println!("\npictures: {}/steps.svg, examples.svg, time.svg", out.display());
    Ok(())
}
