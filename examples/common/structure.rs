//! What `examples/treelstm.rs` and `examples/bilstm.rs` share: train on
//! batches of new examples without autobatching (the batch's program run by
//! the interpreter) and with it (the fast path), time each phase, count
//! kernels against the lower bound, print the table and draw it.

use batchgraph::structure::pipeline::{step_fast, step_unbatched};
use batchgraph::structure::{batch_program, init_params, Batch, FastPath, Model, Phases};
use batchgraph::{line_chart_svg, Chart, Series};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The batch sizes of the table.
pub const SIZES: [usize; 5] = [1, 8, 32, 64, 256];

/// The command line: OUT (default `out/structure`), EXAMPLES (default
/// 1280) and SIZES (comma-separated, default [`SIZES`]).
pub struct Args {
    pub out: PathBuf,
    pub examples: usize,
    pub sizes: Vec<usize>,
}

/// Reads [`Args`].
pub fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    Args {
        out: PathBuf::from(args.get(1).map_or("out/structure", String::as_str)),
        examples: args.get(2).map_or(1280, |n| n.parse().expect("EXAMPLES is a number")),
        sizes: args.get(3).map_or(SIZES.to_vec(), |a| {
            a.split(',').map(|n| n.parse().expect("SIZES are numbers")).collect()
        }),
    }
}

/// `model`'s cells compiled once for the fast path; prints `title`, then
/// how long compiling took (`how`: what compiling did, or empty).
pub fn compile(model: &Model, title: &str, how: &str) -> FastPath {
    let start = Instant::now();
    let fast = FastPath::new(model).expect("compile the cells");
    println!("{title}");
    println!(
        "Cells compiled once{how}: {:.2} s; re-declared at any row count: {}.\n",
        start.elapsed().as_secs_f64(),
        fast.generic()
    );
    fast
}

/// One row of the table.
pub struct Row {
    pub size: usize,
    pub batches: usize,
    pub examples: usize,
    pub unbatched: Phases,
    pub fast: Phases,
    pub kernels: usize,
    pub lower_bound: usize,
    pub unbatched_kernels: usize,
    pub plan_hits: usize,
    pub plan_misses: usize,
    pub first_loss: f64,
    pub last_loss: f64,
}

impl Row {
    fn rate(&self, p: &Phases) -> f64 {
        self.examples as f64 / p.total().as_secs_f64()
    }
}

fn ms(d: Duration, batches: usize) -> f64 {
    d.as_secs_f64() * 1e3 / batches as f64
}

/// Trains `batches` batches of `size` new examples each way (the same
/// batches, the same initial params), timing each phase; `make(seed, size)`
/// draws a batch.
pub fn measure(
    model: &Model,
    fast: &mut FastPath,
    size: usize,
    batches: usize,
    make: &dyn Fn(u64, usize) -> Batch,
) -> Row {
    let rate = 0.05;
    let (mut p_unbatched, mut p_fast) = (init_params(model, 1), init_params(model, 1));
    let (mut unbatched, mut fast_phases) = (Phases::default(), Phases::default());
    let (hits, misses) = (fast.plan_hits, fast.plan_misses);
    let (mut kernels, mut lower_bound, mut unbatched_kernels) = (0, 0, 0);
    let (mut first_loss, mut last_loss) = (0.0, 0.0);
    for k in 0..batches {
        let seed = 1000 * size as u64 + k as u64;
        let start = Instant::now();
        let batch = make(seed, size);
        let drawn = start.elapsed();
        let (loss_u, phases) = step_unbatched(model, &batch, &mut p_unbatched, rate).expect("unbatched step");
        unbatched.add(phases);
        unbatched.build += drawn;
        let (outcome, phases) = step_fast(fast, &batch, &mut p_fast, rate).expect("fast step");
        fast_phases.add(phases);
        fast_phases.build += drawn;
        assert!(
            (outcome.loss - loss_u).abs() < 1e-6 * loss_u.abs().max(1.0),
            "the two ways disagree: {} against {loss_u}",
            outcome.loss
        );
        if k == 0 {
            first_loss = outcome.loss;
            let (program, _) = batch_program(model, &batch, &p_fast).expect("program");
            let (all, bound) = batchgraph::egraph::kernel_bound(&program);
            (kernels, lower_bound, unbatched_kernels) = (outcome.kernels, bound, all);
        }
        last_loss = outcome.loss;
    }
    Row {
        size,
        batches,
        examples: size * batches,
        unbatched,
        fast: fast_phases,
        kernels,
        lower_bound,
        unbatched_kernels,
        plan_hits: fast.plan_hits - hits,
        plan_misses: fast.plan_misses - misses,
        first_loss,
        last_loss,
    }
}

/// Prints the table (markdown).
pub fn print_table(rows: &[Row], unit: &str) {
    println!("| B | batches | {unit}/s without | {unit}/s with | speed-up | without: build / run ms per batch | with: build / plan / run ms per batch | kernels per batch (first batch): without / with / lower bound | with / bound | plans reused |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (u, f) = (r.rate(&r.unbatched), r.rate(&r.fast));
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2}x | {:.2} / {:.2} | {:.2} / {:.3} / {:.2} | {} / {} / {} | {:.2} | {} of {} |",
            r.size,
            r.batches,
            u,
            f,
            f / u,
            ms(r.unbatched.build, r.batches),
            ms(r.unbatched.run, r.batches),
            ms(r.fast.build, r.batches),
            ms(r.fast.batch, r.batches),
            ms(r.fast.run, r.batches),
            r.unbatched_kernels,
            r.kernels,
            r.lower_bound,
            r.kernels as f64 / r.lower_bound as f64,
            r.plan_hits,
            r.plan_hits + r.plan_misses,
        );
    }
}

/// Draws examples per second against B, with and without autobatching.
pub fn draw(rows: &[Row], title: &str, unit: &str, path: &Path) {
    let series = |label: &str, with: bool| Series {
        label: label.into(),
        points: rows
            .iter()
            .map(|r| (r.size as f64, r.rate(if with { &r.fast } else { &r.unbatched })))
            .collect(),
        line: true,
    };
    let chart = Chart {
        title: title.into(),
        x_label: "batch size B".into(),
        y_label: format!("{unit} per second (training)"),
        log_x: true,
        log_y: true,
    };
    let svg = line_chart_svg(
        &chart,
        &[
            series("autobatched (fast path)", true),
            series("without autobatching", false),
        ],
    )
    .expect("chart");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("output folder");
    }
    std::fs::write(path, svg).expect("write the chart");
    println!("\nwrote {}", path.display());
}

/// How many batches to run at `size`: `examples` examples in all, at least 2 batches.
pub fn batches_for(size: usize, examples: usize) -> usize {
    (examples / size).max(2)
}

/// How many times each batch size is measured: the table keeps each way's
/// fastest pass (the machine is shared, and a pass slowed by other work says
/// nothing about the code).
pub const PASSES: usize = 2;

/// `best` with each way's phases replaced by `row`'s where `row`'s pass was faster that way.
fn keep_faster(best: &mut Row, row: Row) {
    if row.unbatched.total() < best.unbatched.total() {
        best.unbatched = row.unbatched;
    }
    if row.fast.total() < best.fast.total() {
        best.fast = row.fast;
    }
}

/// Measures every batch size in `sizes` ([`measure`], [`PASSES`] times, each
/// way's faster pass kept), prints the table and each size's first and last
/// loss, and draws the chart to `path`: what both examples report.
#[allow(clippy::too_many_arguments)]
pub fn measure_and_report(
    model: &Model,
    fast: &mut FastPath,
    sizes: &[usize],
    examples: usize,
    make: &dyn Fn(u64, usize) -> Batch,
    unit: &str,
    title: &str,
    path: &Path,
) {
    let mut rows = vec![];
    for &size in sizes {
        let mut best = measure(model, fast, size, batches_for(size, examples), make);
        for _ in 1..PASSES {
            keep_faster(&mut best, measure(model, fast, size, batches_for(size, examples), make));
        }
        rows.push(best);
        eprintln!("B = {size} done");
    }
    print_table(&rows, unit);
    for r in &rows {
        println!(
            "B = {}: loss {:.4} on the first batch, {:.4} on the last",
            r.size, r.first_loss, r.last_loss
        );
    }
    draw(&rows, title, unit, path);
}
