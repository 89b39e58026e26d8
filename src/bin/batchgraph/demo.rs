//! The walk-through: how mini-batching fits the computational-graph picture,
//! answered by running the seed graph, with numbers and pictures.

use crate::demo_autobatch::{autobatched_copies, AutobatchSummary};
use batchgraph::{
    expand_loops, grad, line_chart_svg, random_values, time_side_by_side, to_svg, Batcher, Chart, CostProfile, Error,
    Interpreter, Program, Result, Run, Series, Strategy, Tensor, Values, MAX_NODES,
};
use ndarray::{Axis, IxDyn};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The seed graph of the question.
pub const SEED: &str = include_str!("../../../examples/seed.graph");

/// What the walk-through does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Where the pictures go.
    pub out: PathBuf,
    /// Shorter measurements (B up to 256, fewer repetitions).
    pub quick: bool,
    /// The cost profile plans are priced with.
    pub profile: CostProfile,
}

/// One row of the timing table.
#[derive(Clone, Debug, Serialize)]
pub struct TimingRow {
    /// Batch size.
    pub size: usize,
    /// Forward + backward, microseconds per example, unrolled plan.
    pub unrolled_us: f64,
    /// The same, fused plan.
    pub fused_us: f64,
}

/// One way of computing the gradient of a batch of 64: the plan compiled under a memory budget.
#[derive(Clone, Debug, Serialize)]
pub struct Accumulation {
    /// How many passes.
    pub passes: usize,
    /// Rows per pass.
    pub rows: usize,
    /// Largest difference from the gradient computed in one pass.
    pub difference: f64,
    /// Microseconds for the whole batch.
    pub us: f64,
    /// Measured peak bytes of the gradient.
    pub peak_bytes: usize,
    /// The compiler's prediction of it.
    pub predicted_peak_bytes: usize,
    /// The memory budget the plan was compiled under.
    pub budget_bytes: usize,
}

/// What the walk-through measured (also written to `summary.json`, which the tests read).
#[derive(Clone, Debug, Serialize)]
pub struct DemoSummary {
    /// Largest |grad of batched mean loss - mean of per-example grads|, unrolled and fused.
    pub gradient_differences: (f64, f64),
    /// Time per example by batch size.
    pub timings: Vec<TimingRow>,
    /// The gradient of one batch of 64 computed in passes.
    pub accumulation: Vec<Accumulation>,
    /// The two-copy drawing, autobatched.
    pub autobatch: AutobatchSummary,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The best of repeated runs of `f`, in microseconds, within about `budget`.
pub fn best_time_us(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 3 || start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64() * 1e6);
        runs += 1;
    }
    best
}

pub(crate) fn write_file(path: &Path, text: &str, files: &mut Vec<PathBuf>) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    files.push(path.to_path_buf());
    Ok(())
}

fn max_abs_diff(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Prints `text` indented by four spaces.
pub(crate) fn indented(out: &mut dyn Write, text: &str) -> Result<()> {
    for line in text.lines() {
        writeln!(out, "    {line}").map_err(io)?;
    }
    Ok(())
}

pub(crate) fn io(e: std::io::Error) -> Error {
    Error::Io(e.to_string())
}

/// Runs the walk-through, printing to `out`; writes the pictures and `summary.json` to `options.out`.
pub fn run_demo(options: &DemoOptions, out: &mut dyn Write) -> Result<DemoSummary> {
    let start = Instant::now();
    std::fs::create_dir_all(&options.out).map_err(|e| Error::Io(format!("{}: {e}", options.out.display())))?;
    let mut files = vec![];
    let seed = Program::parse("examples/seed.graph", SEED)?;
    graphs_and_costs(&seed, options, out, &mut files)?;
    let differences = gradient_is_the_mean(&seed, out)?;
    let timings = speed(&seed, options, out, &mut files)?;
    gradient_programs(&seed, options, out, &mut files)?;
    let accumulation = accumulation(&seed, options, out)?;
    let autobatch = autobatched_copies(options, out, &mut files)?;
    writeln!(out, "\nPictures written to {}:", options.out.display()).map_err(io)?;
    for f in &files {
        writeln!(out, "    {}", f.display()).map_err(io)?;
    }
    writeln!(out, "\nDone in {:.1} s.", start.elapsed().as_secs_f64()).map_err(io)?;
    let summary = DemoSummary {
        gradient_differences: (differences[0], differences[1]),
        timings,
        accumulation,
        autobatch,
        files,
    };
    let json = serde_json::to_string_pretty(&summary).expect("serializable");
    std::fs::write(options.out.join("summary.json"), json).map_err(|e| Error::Io(e.to_string()))?;
    Ok(summary)
}

/// Section 1: the seed graph, CSE, the two B = 2 plans with pictures, and their costs.
fn graphs_and_costs(
    seed: &Program,
    options: &DemoOptions,
    out: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    writeln!(out, "== 1. The per-example graph, and the batched graph\n").map_err(io)?;
    writeln!(out, "The seed program (x is one example, w a parameter, s its loss):\n").map_err(io)?;
    indented(out, SEED.trim_end())?;
    writeln!(
        out,
        "\nAfter inlining the fns and sharing equal subterms in the e-graph (CSE):\n"
    )
    .map_err(io)?;
    indented(out, &seed.to_text())?;
    let saved = seed.nodes_before_cse() - seed.node_count() as u128;
    writeln!(
        out,
        "\n{} nodes; written as a tree it had {}: CSE saved {saved} (f(x, w) is computed once).",
        seed.node_count(),
        seed.nodes_before_cse()
    )
    .map_err(io)?;
    write_file(&options.out.join("seed.svg"), &to_svg(seed).map_err(Error::Io)?, files)?;

    let mut unrolled = Batcher::new(seed).size(2).strategy(Strategy::Unroll).run()?;
    unrolled.program = expand_loops(&unrolled.program, MAX_NODES)?;
    let fused = Batcher::new(seed).size(2).strategy(Strategy::Fuse).run()?;
    writeln!(
        out,
        "\nBatched over B = 2 examples by duplication: two copies of the graph, each reading its row of x,"
    )
    .map_err(io)?;
    writeln!(
        out,
        "both sharing w, and one node that averages their losses (mean over axis 0):\n"
    )
    .map_err(io)?;
    indented(out, &unrolled.program.to_text())?;
    writeln!(
        out,
        "\nBatched by fusion (what JAX's vmap gives): one op per op; w @ x becomes one matrix-matrix product:\n"
    )
    .map_err(io)?;
    indented(out, &fused.program.to_text())?;
    write_file(
        &options.out.join("seed_b2_unrolled.svg"),
        &to_svg(&unrolled.program).map_err(Error::Io)?,
        files,
    )?;
    write_file(
        &options.out.join("seed_b2_fused.svg"),
        &to_svg(&fused.program).map_err(Error::Io)?,
        files,
    )?;
    // The copies as the compiler keeps them: one loop, drawn as a box run once per row.
    let looped = Batcher::new(seed).size(2).strategy(Strategy::Unroll).run()?.program;
    writeln!(
        out,
        "\nThe compiler keeps the copies as one loop over the rows (printed as written, drawn as a box):\n"
    )
    .map_err(io)?;
    indented(out, &looped.to_text())?;
    write_file(
        &options.out.join("seed_b2_loop.svg"),
        &to_svg(&looped).map_err(Error::Io)?,
        files,
    )?;

    writeln!(
        out,
        "\nBoth live in one e-graph; the cost model (profile `{}`: the interpreter's overheads, fusion,\n\
         GEMM rates, bandwidths and threads) predicts each plan's time, and here each is also measured:\n",
        options.profile.name
    )
    .map_err(io)?;
    writeln!(
        out,
        "    {:>6} {:>14} {:>11} {:>12} {:>23} {:>23}   chosen",
        "B", "copies' nodes", "loop nodes", "fused nodes", "loop µs pred. / meas.", "fused µs pred. / meas."
    )
    .map_err(io)?;
    let budget = Duration::from_millis(if options.quick { 20 } else { 100 });
    for b in [2usize, 64, 1024] {
        let batcher = Batcher::new(seed).size(b).profile(options.profile.clone());
        let r = batcher.run()?.report;
        let plans = batcher.plans()?;
        let plan = |name: &str| plans.iter().find(|(s, _)| s.name == name).expect("auto considers both");
        let ((u, looped), (f, fused)) = (plan("loop"), plan("fused"));
        let measured = time_side_by_side::<f64>(&[looped, fused], Run::Grad, budget)?;
        let copies = expand_loops(looped, MAX_NODES)?.node_count();
        writeln!(
            out,
            "    {b:>6} {copies:>14} {:>11} {:>12} {:>11.1} / {:>9.1} {:>11.1} / {:>9.1}   {}",
            u.nodes, f.nodes, u.cost, measured[0], f.cost, measured[1], r.chosen.name
        )
        .map_err(io)?;
    }
    writeln!(
        out,
        "\n(Both price and time a gradient, forward and backward, in f64.) Why: the unrolled plan executes B copies of every op,\n\
         each paying the per-op overhead and a matrix-vector product; the fused plan executes the same dozen\n\
         ops at every B, and its matmul is one matrix-matrix product. Written out, the copies grow with B; the\n\
         compiler keeps them as one loop, `map(body, B)`, so that its own work does not grow with B."
    )
    .map_err(io)?;
    Ok(())
}

/// Section 2: the gradient of the batched mean loss against the mean of per-example gradients.
fn gradient_is_the_mean(seed: &Program, out: &mut dyn Write) -> Result<Vec<f64>> {
    writeln!(
        out,
        "\n== 2. The gradient of the batch loss is the mean of the per-example gradients\n"
    )
    .map_err(io)?;
    let b = 8;
    let mut differences = vec![];
    for strategy in [Strategy::Unroll, Strategy::Fuse] {
        let batched = Batcher::new(seed).size(b).strategy(strategy).run()?;
        let values = random_values(&batched.program, 1);
        let grads = Interpreter::new(&batched.program).gradient(&values)?;
        let per_example = Interpreter::new(seed);
        let mut mean_w = Tensor::<f64>::zeros(IxDyn(&[4, 3]));
        for i in 0..b {
            let row: Values<f64> = [
                ("x".to_string(), values["x"].index_axis(Axis(0), i).to_owned()),
                ("w".to_string(), values["w"].clone()),
            ]
            .into();
            mean_w = mean_w + &per_example.gradient(&row)?.grads[1].1 / b as f64;
        }
        let w_grad = &grads.grads.iter().find(|(n, _)| n == "w").unwrap().1;
        let d = max_abs_diff(w_grad, &mean_w);
        writeln!(
            out,
            "    {strategy:?} plan, B = {b}: largest |d mean-loss/dw - mean of per-example dloss/dw| = {d:.2e}"
        )
        .map_err(io)?;
        differences.push(d);
    }
    writeln!(
        out,
        "\nThe batched loss is mean(stack(s_0, ..., s_7)); the derivative of a mean is the mean of the\n\
         derivatives, and reverse mode over either graph computes exactly that (to rounding)."
    )
    .map_err(io)?;
    Ok(differences)
}

/// Section 3: forward + backward time per example of both plans, by B, with a chart.
fn speed(
    seed: &Program,
    options: &DemoOptions,
    out: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<TimingRow>> {
    writeln!(
        out,
        "\n== 3. Where the speed comes from: forward + backward, time per example, on this machine\n"
    )
    .map_err(io)?;
    let sizes: Vec<usize> = if options.quick {
        vec![1, 4, 16, 64, 256]
    } else {
        vec![1, 4, 16, 64, 256, 1024]
    };
    let budget = Duration::from_millis(if options.quick { 40 } else { 150 });
    writeln!(
        out,
        "    {:>6} {:>14} {:>14} {:>10}",
        "B", "unrolled µs", "fused µs", "speed-up"
    )
    .map_err(io)?;
    let mut timings = vec![];
    for &b in &sizes {
        let mut row = TimingRow {
            size: b,
            unrolled_us: 0.0,
            fused_us: 0.0,
        };
        for strategy in [Strategy::Unroll, Strategy::Fuse] {
            let batched = Batcher::new(seed).size(b).strategy(strategy).run()?;
            let values = random_values(&batched.program, 2);
            let interpreter = Interpreter::new(&batched.program);
            let us = best_time_us(budget, || {
                interpreter.gradient(&values).expect("runs");
            }) / b as f64;
            match strategy {
                Strategy::Unroll => row.unrolled_us = us,
                Strategy::Fuse | Strategy::Auto => row.fused_us = us,
            }
        }
        writeln!(
            out,
            "    {b:>6} {:>14.3} {:>14.3} {:>9.1}x",
            row.unrolled_us,
            row.fused_us,
            row.unrolled_us / row.fused_us
        )
        .map_err(io)?;
        out.flush().map_err(io)?;
        timings.push(row);
    }
    let chart = Chart {
        title: "seed graph: forward + backward per example".into(),
        x_label: "batch size B".into(),
        y_label: "µs per example".into(),
        log_x: true,
        log_y: true,
    };
    let series = [
        Series {
            label: "unrolled (B copies)".into(),
            points: timings.iter().map(|r| (r.size as f64, r.unrolled_us)).collect(),
            line: true,
        },
        Series {
            label: "fused (one batched op per op)".into(),
            points: timings.iter().map(|r| (r.size as f64, r.fused_us)).collect(),
            line: true,
        },
    ];
    write_file(
        &options.out.join("time_per_example.svg"),
        &line_chart_svg(&chart, &series).map_err(Error::Io)?,
        files,
    )?;
    let (first, last) = (&timings[0], &timings[timings.len() - 1]);
    let (low, high) = timings.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
        (lo.min(r.unrolled_us), hi.max(r.unrolled_us))
    });
    writeln!(
        out,
        "\nOn one core, with no parallel hardware, the fused plan's time per example falls from {:.2} µs (B = {})\n\
         to {:.3} µs (B = {}), {:.0}x less than unrolled, while the unrolled plan's stays between {low:.1} and\n\
         {high:.1} µs. The fused plan pays the per-op overhead (dispatch, allocation) once per batch instead of\n\
         once per example, and its matmul reads w once for all B rows (one BLAS-3 product), not once per row.",
        first.fused_us,
        first.size,
        last.fused_us,
        last.size,
        last.unrolled_us / last.fused_us
    )
    .map_err(io)?;
    Ok(timings)
}

/// Section 4: the gradient programs of the duplicated and the fused plan, side by side, and their growth with B.
fn gradient_programs(
    seed: &Program,
    options: &DemoOptions,
    out: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    writeln!(out, "\n== 4. Why the gradient machinery cares which graph it is fed\n").map_err(io)?;
    let w = ["w".to_string()];
    let copies = expand_loops(
        &Batcher::new(seed).size(2).strategy(Strategy::Unroll).run()?.program,
        MAX_NODES,
    )?;
    let fused = Batcher::new(seed).size(2).strategy(Strategy::Fuse).run()?.program;
    let (copies_grad, fused_grad) = (grad(&copies, Some(&w))?, grad(&fused, Some(&w))?);
    writeln!(
        out,
        "`batchgraph grad` turns a program into its gradient program (reverse mode as a graph, built on the\n\
         forward nodes, so the forward values it needs are shared). The gradient program of the duplicated\n\
         B = 2 plan, with respect to w ({} nodes, {} for the plan):\n",
        copies_grad.node_count(),
        copies.node_count()
    )
    .map_err(io)?;
    indented(out, &copies_grad.to_text())?;
    writeln!(
        out,
        "\nThat of the fused plan ({} nodes, {} for the plan):\n",
        fused_grad.node_count(),
        fused.node_count()
    )
    .map_err(io)?;
    indented(out, &fused_grad.to_text())?;
    for (name, program) in [
        ("seed_b2_unrolled_grad.svg", &copies_grad),
        ("seed_b2_fused_grad.svg", &fused_grad),
    ] {
        write_file(&options.out.join(name), &to_svg(program).map_err(Error::Io)?, files)?;
    }
    writeln!(out, "\nNodes of the gradient program (with respect to w) as B grows:\n").map_err(io)?;
    writeln!(
        out,
        "    {:>6} {:>22} {:>18} {:>19}",
        "B", "copies written out", "as a loop", "fused"
    )
    .map_err(io)?;
    for b in [2usize, 16, 256] {
        let looped = Batcher::new(seed).size(b).strategy(Strategy::Unroll).run()?.program;
        let copies = expand_loops(&looped, MAX_NODES)?;
        let fused = Batcher::new(seed).size(b).strategy(Strategy::Fuse).run()?.program;
        let mut counts = vec![];
        for program in [&copies, &looped, &fused] {
            counts.push(grad(program, Some(&w))?.node_count());
        }
        writeln!(out, "    {b:>6} {:>22} {:>18} {:>19}", counts[0], counts[1], counts[2]).map_err(io)?;
    }
    writeln!(
        out,
        "\nReverse mode differentiates whatever graph it is given: fed the copies, it makes a backward copy\n\
         of every op of every example (its size grows with B, and so does its run time: one small backward\n\
         op per example per op); fed the loop, it makes a loop of backward bodies; fed the fused graph, it\n\
         makes one batched backward op per op, the same graph at every B, whose matmuls are matrix-matrix\n\
         products. The gradient is the same (section 2); the program that computes it is not."
    )
    .map_err(io)?;
    Ok(())
}

/// Section 5: one batch of 64 computed under budgets of 1, 1/2 and 1/3 of the fused plan's peak:
/// the same gradient in more passes, less memory (the loop's rows hold the params' cotangents,
/// so 1/4 fits no plan).
fn accumulation(seed: &Program, options: &DemoOptions, out: &mut dyn Write) -> Result<Vec<Accumulation>> {
    let budget = Duration::from_millis(if options.quick { 40 } else { 150 });
    writeln!(
        out,
        "\n== 5. Gradient accumulation: the optimizer's batch is not the computed batch\n"
    )
    .map_err(io)?;
    let total = 64;
    let fused = Batcher::new(seed).size(total).strategy(Strategy::Fuse).run()?;
    let values = random_values(&fused.program, 3);
    let fused_peak = Interpreter::new(&fused.program).gradient(&values)?.peak_bytes;
    writeln!(
        out,
        "One batch of {total}, compiled under a memory budget (`batchgraph batch --size {total} --memory BYTES`):\n\
         the compiler picks the fastest plan whose predicted peak fits, here micro-batches of k rows whose\n\
         gradients it accumulates.\n"
    )
    .map_err(io)?;
    writeln!(
        out,
        "    {:>8} {:>16} {:>10} {:>14} {:>14} {:>20} {:>10}",
        "budget", "plan", "passes", "predicted B", "measured B", "largest diff vs 1x64", "time µs"
    )
    .map_err(io)?;
    let mut reference: Option<Vec<Tensor<f64>>> = None;
    let mut accumulation = vec![];
    for divisor in [1usize, 2, 3] {
        let bytes = fused_peak / divisor;
        let plan = Batcher::new(seed).size(total).memory_budget(Some(bytes)).run()?;
        let interpreter = Interpreter::new(&plan.program);
        let gradient = interpreter.gradient(&values)?;
        let grads: Vec<Tensor<f64>> = gradient.grads.iter().map(|(_, g)| g.clone()).collect();
        let d = reference.as_ref().map_or(0.0, |r| {
            r.iter()
                .zip(&grads)
                .map(|(a, b)| max_abs_diff(a, b))
                .fold(0.0, f64::max)
        });
        reference.get_or_insert(grads);
        let us = best_time_us(budget, || {
            interpreter.gradient(&values).expect("runs");
        });
        let name = &plan.report.chosen.name;
        let rows = name
            .strip_prefix("chunks of ")
            .and_then(|k| k.parse().ok())
            .unwrap_or(total);
        let row = Accumulation {
            passes: total.div_ceil(rows),
            rows,
            difference: d,
            us,
            peak_bytes: gradient.peak_bytes,
            predicted_peak_bytes: plan.report.chosen.predicted_peak_bytes,
            budget_bytes: bytes,
        };
        writeln!(
            out,
            "    {bytes:>8} {name:>16} {:>10} {:>14} {:>14} {d:>20.2e} {us:>10.1}",
            row.passes, row.predicted_peak_bytes, row.peak_bytes
        )
        .map_err(io)?;
        accumulation.push(row);
    }
    let fastest = accumulation.iter().min_by(|a, b| a.us.total_cmp(&b.us)).unwrap();
    let largest = accumulation.iter().map(|a| a.difference).fold(0.0, f64::max);
    writeln!(
        out,
        "\nThe same gradient (largest difference {largest:.1e}) whether the 64 examples are computed at once or\n\
         in pieces: the optimizer's batch (what the gradient averages over) is a choice of the loss; the\n\
         computed batch (the extra index the kernels see) is a choice of speed and memory. Here {} pass(es)\n\
         of {} rows were fastest; the peak memory went from {} bytes (1 x 64) to {} bytes ({} x {}), as predicted.",
        fastest.passes,
        fastest.rows,
        accumulation[0].peak_bytes,
        accumulation[accumulation.len() - 1].peak_bytes,
        accumulation[accumulation.len() - 1].passes,
        accumulation[accumulation.len() - 1].rows,
    )
    .map_err(io)?;
    Ok(accumulation)
}
