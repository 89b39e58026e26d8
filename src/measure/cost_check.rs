//! The cost model checked against the clock: every plan the batcher
//! considers, for every program and batch size asked, priced by the cost
//! model and timed by the interpreter; the regret of the plan the model
//! picks (its time over the fastest plan's) and each prediction's ratio to
//! the measurement.

use crate::egraph::{predict_us, Batcher, CostProfile, PlanSummary, Strategy};
use crate::error::Result;
use crate::ir::{Dtype, Program, Run};
use crate::measure::timing::time_side_by_side;
use serde::Serialize;
use std::time::Duration;

/// What to check.
#[derive(Clone, Debug)]
pub struct CostCheckOptions {
    /// Batch sizes.
    pub sizes: Vec<usize>,
    /// The runs priced and timed.
    pub runs: Vec<Run>,
    /// The element type runs compute in (and the model prices).
    pub dtype: Dtype,
    /// Time spent timing each distinct plan, per pass.
    pub budget: Duration,
    /// How many times the whole grid is timed (each plan keeps its fastest pass).
    pub passes: usize,
    /// The profile the model prices with.
    pub profile: CostProfile,
}

/// One plan of one configuration: predicted and measured.
#[derive(Clone, Debug, Serialize)]
pub struct PlanCheck {
    /// The plan's name (`fused`, `mixed`, `loop`).
    pub plan: String,
    /// Its nodes.
    pub nodes: usize,
    /// The model's price, µs.
    pub predicted_us: f64,
    /// The median measured run, µs (the fastest pass's).
    pub measured_us: f64,
    /// predicted / measured.
    pub ratio: f64,
}

/// One (program, batch size, run): the plans, which one the model picks, which one is fastest.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigCheck {
    /// The program's name.
    pub example: String,
    /// Batch size.
    pub size: usize,
    /// The run priced and timed.
    pub run: Run,
    /// Every plan.
    pub plans: Vec<PlanCheck>,
    /// The plan the model picks (the cheapest predicted; the first of equals).
    pub chosen: String,
    /// The plan measured fastest.
    pub fastest: String,
    /// The chosen plan's time over the fastest's, less one (0: the model picked the fastest).
    pub regret: f64,
}

/// The summary of a check.
#[derive(Clone, Debug, Serialize)]
pub struct CostCheckSummary {
    /// Configurations checked.
    pub configurations: usize,
    /// Plans timed (with repeats across configurations that share a program).
    pub plans: usize,
    /// Configurations whose chosen plan is within 5% of the fastest.
    pub within_5_percent: usize,
    /// The largest regret.
    pub worst_regret: f64,
    /// Plans whose prediction is within 2x of the measurement.
    pub within_2x: usize,
    /// The smallest and largest predicted / measured.
    pub ratio_range: (f64, f64),
}

/// One configuration's plans before timing: each plan's summary, program and
/// price, and the distinct programs among them (plans that came out the same
/// program are timed once).
struct Pending {
    example: String,
    size: usize,
    run: Run,
    plans: Vec<(PlanSummary, Program, f64)>,
    /// For each plan, its program's place among the distinct ones.
    distinct_of: Vec<usize>,
    distinct: Vec<usize>,
}

/// Prices and times every plan of every program at every size and run;
/// `progress` hears of each step. The whole grid is timed `options.passes`
/// times and each plan keeps its fastest pass's median, so that a stretch in
/// which a shared machine runs slower does not land on one configuration.
pub fn cost_check(
    programs: &[(String, Program)],
    options: &CostCheckOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<ConfigCheck>> {
    let mut pending = vec![];
    for (name, program) in programs {
        for &size in &options.sizes {
            for &run in &options.runs {
                let one_scalar = matches!(program.outputs.as_slice(), [(_, o)] if program.shape(*o).rank() == 0);
                if run == Run::Grad && !one_scalar {
                    progress(&format!("{name}: no gradient (it needs one scalar output)"));
                    continue;
                }
                progress(&format!("{name}, B = {size}, {run:?}: batching"));
                let plans = Batcher::new(program)
                    .size(size)
                    .strategy(Strategy::Auto)
                    .price_for(run)
                    .dtype(options.dtype)
                    .profile(options.profile.clone())
                    .plans()?;
                let texts: Vec<String> = plans.iter().map(|(_, p)| p.to_text()).collect();
                let mut distinct: Vec<usize> = vec![];
                let mut distinct_of = vec![];
                for (i, text) in texts.iter().enumerate() {
                    match distinct.iter().position(|&d| &texts[d] == text) {
                        Some(d) => distinct_of.push(d),
                        None => {
                            distinct_of.push(distinct.len());
                            distinct.push(i);
                        }
                    }
                }
                let plans = plans
                    .into_iter()
                    .map(|(summary, plan)| {
                        let predicted = predict_us(&options.profile, &plan, run, options.dtype);
                        (summary, plan, predicted)
                    })
                    .collect();
                pending.push(Pending {
                    example: name.clone(),
                    size,
                    run,
                    plans,
                    distinct_of,
                    distinct,
                });
            }
        }
    }
    let mut fastest: Vec<Vec<f64>> = pending.iter().map(|p| vec![f64::INFINITY; p.distinct.len()]).collect();
    for pass in 1..=options.passes.max(1) {
        for (p, best) in pending.iter().zip(&mut fastest) {
            progress(&format!(
                "pass {pass}: {}, B = {}, {:?}: timing {} distinct plans",
                p.example,
                p.size,
                p.run,
                p.distinct.len()
            ));
            let programs: Vec<&Program> = p.distinct.iter().map(|&d| &p.plans[d].1).collect();
            let budget = options.budget * programs.len() as u32;
            let medians = match options.dtype {
                Dtype::F32 => time_side_by_side::<f32>(&programs, p.run, budget)?,
                Dtype::F64 => time_side_by_side::<f64>(&programs, p.run, budget)?,
            };
            for (b, m) in best.iter_mut().zip(medians) {
                *b = b.min(m);
            }
        }
    }
    Ok(pending
        .into_iter()
        .zip(fastest)
        .map(|(p, measured)| {
            let checked: Vec<PlanCheck> = p
                .plans
                .iter()
                .zip(&p.distinct_of)
                .map(|((summary, plan, predicted_us), &d)| PlanCheck {
                    plan: summary.name.clone(),
                    nodes: plan.node_count(),
                    predicted_us: *predicted_us,
                    measured_us: measured[d],
                    ratio: predicted_us / measured[d],
                })
                .collect();
            let first_min = |key: fn(&PlanCheck) -> f64| {
                (0..checked.len())
                    .min_by(|&a, &b| key(&checked[a]).total_cmp(&key(&checked[b])))
                    .expect("a batcher returns at least one plan")
            };
            let (chosen, fastest) = (first_min(|p| p.predicted_us), first_min(|p| p.measured_us));
            ConfigCheck {
                example: p.example,
                size: p.size,
                run: p.run,
                chosen: checked[chosen].plan.clone(),
                fastest: checked[fastest].plan.clone(),
                regret: checked[chosen].measured_us / checked[fastest].measured_us - 1.0,
                plans: checked,
            }
        })
        .collect())
}

/// Counts and extremes over `checks`.
pub fn summarize(checks: &[ConfigCheck]) -> CostCheckSummary {
    let plans: Vec<&PlanCheck> = checks.iter().flat_map(|c| &c.plans).collect();
    CostCheckSummary {
        configurations: checks.len(),
        plans: plans.len(),
        within_5_percent: checks.iter().filter(|c| c.regret <= 0.05).count(),
        worst_regret: checks.iter().map(|c| c.regret).fold(0.0, f64::max),
        within_2x: plans.iter().filter(|p| (0.5..=2.0).contains(&p.ratio)).count(),
        ratio_range: plans
            .iter()
            .fold((f64::INFINITY, 0.0), |(lo, hi), p| (lo.min(p.ratio), hi.max(p.ratio))),
    }
}
