//! `batchgraph bench`: times the interpreter on a program, as written or
//! batched over each of several sizes, forward or forward + backward.
//!
//! For each size: batch (when sizes are given), build random inputs, warm up,
//! then time single runs until the time budget is spent (`batchgraph::measure::time_runs`)
//! and report the median, the fastest and the slowest run, and
//! the median per example, and how many chains of elementwise ops the
//! interpreter runs fused (`--no-fuse`: every op on its own). With `--ops`,
//! further runs time every node and list where the time goes. Progress goes to
//! stderr, results to stdout.

use crate::{profile, Dtype, StrategyArg};
use batchgraph::measure::{time_runs, timed_interpreter, values_for};
use batchgraph::{
    autobatch, predict_peak_bytes, predict_times, AutobatchOptions, BatchReduce, Batcher, Error, Interpreter,
    PredictedTimes, Program, Run, Scalar, Strategy, Values,
};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `batchgraph bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// The .graph file (per example, when --size is given).
    file: PathBuf,
    /// Batch sizes, comma-separated; each is batched (mean over the batch) and timed.
    #[arg(long, value_delimiter = ',')]
    size: Option<Vec<usize>>,
    /// Duplicate (unroll), fuse, or let the cost model choose (auto).
    #[arg(long, value_enum, default_value_t = StrategyArg::Auto)]
    strategy: StrategyArg,
    /// Time the gradient (forward + backward) with respect to the params (the inputs if there are
    /// none) instead of the forward run.
    #[arg(long)]
    grad: bool,
    /// Element type.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// With --size: choose the fastest plan whose predicted peak memory fits in this many bytes
    /// (chunked plans included), as `batch --memory` does.
    #[arg(long, value_name = "BYTES", requires = "size")]
    memory: Option<usize>,
    /// Seconds of timed runs per size (after warming up).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Cost profile for `auto`: saved (the one `calibrate --save` wrote, else cpu), cpu, gpu, or a JSON file.
    #[arg(long, default_value = "saved")]
    profile: String,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Run every op on its own instead of fusing chains of elementwise ops.
    #[arg(long)]
    no_fuse: bool,
    /// Then time every node (in further runs) and list the ones taking the most time.
    #[arg(long)]
    ops: bool,
    /// Autobatch the program first (priced for the run timed), and time both
    /// halves: the autobatching itself, repeated with nothing cached
    /// (`autobatch_us`), and the run of its result (`median_us`).
    #[arg(long, conflicts_with = "size")]
    autobatch: bool,
}

/// Nodes listed by `--ops` in text (JSON lists every node that ran).
const OPS_LISTED: usize = 8;

/// One node's (or fused chain's) share of a run, in microseconds per run.
struct OpTime {
    node: usize,
    /// The op, or a fused chain's ops in order, and the result's shape.
    label: String,
    forward: f64,
    backward: f64,
    /// The cost model's forward + backward for it.
    predicted: f64,
}

/// What one size measured, in microseconds per run.
struct Timing {
    /// Chains the interpreter ran fused, and the nodes in them.
    fused_groups: usize,
    fused_nodes: usize,
    runs: usize,
    median: f64,
    min: f64,
    max: f64,
    /// The cost model's prediction of a run (none with `--no-fuse`, which it does not model).
    predicted: Option<f64>,
    /// Per node, most time first (with `--ops`).
    ops: Vec<OpTime>,
}

/// Runs `bench`.
pub fn bench(args: BenchArgs) -> Result<(), Error> {
    if !(args.seconds > 0.0 && args.seconds <= 86_400.0) {
        return Err(Error::Unsupported(
            "--seconds must be a positive number of seconds, at most a day".into(),
        ));
    }
    let program = batchgraph::parse_file(&args.file)?;
    let sizes: Vec<Option<usize>> = match &args.size {
        Some(sizes) => sizes.iter().map(|&b| Some(b)).collect(),
        None => vec![None],
    };
    for size in sizes {
        let mut autobatch_us = None;
        let batched = match size {
            Some(b) => {
                eprintln!("bench: B = {b}: batching");
                Some(batch(&program, b, &args)?)
            }
            None if args.autobatch => {
                eprintln!("bench: autobatching");
                let (autobatched, us) = time_autobatch(&program, &args)?;
                autobatch_us = Some(us);
                Some(autobatched)
            }
            None => None,
        };
        let target = batched.as_ref().unwrap_or(&program);
        refuse_what_memory_cannot_hold(target, &args)?;
        eprintln!("bench: {} nodes: timing", target.node_count());
        let timing = match args.dtype {
            Dtype::F32 => time::<f32>(target, &args)?,
            Dtype::F64 => time::<f64>(target, &args)?,
        };
        report(&args, size, target.node_count(), &timing, autobatch_us)?;
    }
    Ok(())
}

fn batch(program: &Program, size: usize, args: &BenchArgs) -> Result<Program, Error> {
    let batched = Batcher::new(program)
        .size(size)
        .reduce(BatchReduce::Mean)
        .strategy(match args.strategy {
            StrategyArg::Auto => Strategy::Auto,
            StrategyArg::Unroll => Strategy::Unroll,
            StrategyArg::Fuse => Strategy::Fuse,
        })
        .profile(profile(&args.profile)?)
        // Priced for the run it times, in its element type.
        .price_for(if args.grad { Run::Grad } else { Run::Eval })
        .dtype(args.dtype.into())
        .memory_budget(args.memory)
        .run()?;
    Ok(batched.program)
}

/// Autobatches `program` for the run and dtype timed, repeatedly (at least
/// 3 times, for up to a tenth of `--seconds`): the program and the median
/// time of one autobatching, in µs.
fn time_autobatch(program: &Program, args: &BenchArgs) -> Result<(Program, f64), Error> {
    let options = AutobatchOptions {
        profile: profile(&args.profile)?,
        run: if args.grad { Run::Grad } else { Run::Eval },
        dtype: args.dtype.into(),
        ..AutobatchOptions::default()
    };
    let budget = Duration::from_secs_f64(args.seconds / 10.0);
    let start = Instant::now();
    let mut samples = vec![];
    let mut result = None;
    while samples.len() < 3 || (start.elapsed() < budget && samples.len() < 1000) {
        let t = Instant::now();
        let done = autobatch(program, &options)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        result = Some(done);
    }
    samples.sort_by(f64::total_cmp);
    let done = result.expect("autobatched at least once");
    eprintln!(
        "bench: autobatch: {} of {} groups batched, kernels {} -> {}",
        done.report.groups_taken, done.report.groups_found, done.report.kernels_before, done.report.kernels_after
    );
    Ok((done.program, samples[samples.len() / 2]))
}

/// Refuses, before any allocation, a run whose predicted peak (with its
/// inputs) is more than the memory the system has available.
fn refuse_what_memory_cannot_hold(program: &Program, args: &BenchArgs) -> Result<(), Error> {
    let run = if args.grad { Run::Grad } else { Run::Eval };
    let element = batchgraph::Dtype::from(args.dtype).bytes();
    let inputs: usize = program
        .inputs
        .iter()
        .chain(&program.params)
        .map(|d| d.shape.elements() * element)
        .sum();
    let needed = predict_peak_bytes(program, run, element).saturating_add(inputs);
    match available_memory() {
        Some(available) if needed as u64 > available => Err(Error::Limit {
            limit: available,
            message: format!(
                "this run needs about {needed} bytes (predicted peak and inputs), more than the {available} bytes \
                 of memory available; try a smaller --size or --memory"
            ),
        }),
        _ => Ok(()),
    }
}

/// The memory the system has available, in bytes (Linux's `MemAvailable`), if it says.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Warms up, then times single runs of `program` on random values.
fn time<T: Scalar>(program: &Program, args: &BenchArgs) -> Result<Timing, Error> {
    let values: Values<T> = values_for(program);
    let interpreter = interpreter(program, args);
    let groups = interpreter.fused_groups();
    let run = if args.grad { Run::Grad } else { Run::Eval };
    let t = time_runs(&interpreter, &values, run, Duration::from_secs_f64(args.seconds))?;
    let predicted = predict_times(&profile(&args.profile)?, program, run, args.dtype.into());
    Ok(Timing {
        predicted: (!args.no_fuse).then(|| predicted.total_us()),
        fused_groups: groups.len(),
        fused_nodes: groups.iter().map(Vec::len).sum(),
        runs: t.runs,
        median: t.median_us,
        min: t.min_us,
        max: t.max_us,
        ops: match args.ops {
            true => time_ops(program, &values, args, &groups, &predicted, t.runs.min(1000))?,
            false => vec![],
        },
    })
}

/// Times every node over `runs` further runs (a timed interpreter reads the clock
/// twice per node, so these runs are not the ones reported above).
fn time_ops<T: Scalar>(
    program: &Program,
    values: &Values<T>,
    args: &BenchArgs,
    groups: &[Vec<usize>],
    predicted: &PredictedTimes,
    runs: usize,
) -> Result<Vec<OpTime>, Error> {
    let interpreter = interpreter(program, args).timed(true);
    let mut forward = vec![Duration::ZERO; program.node_count()];
    let mut backward = forward.clone();
    for _ in 0..runs {
        let times = match args.grad {
            true => interpreter.gradient(values)?.times,
            false => interpreter.evaluate(values)?.times,
        };
        let times = times.expect("a timed interpreter times");
        for (total, t) in forward
            .iter_mut()
            .zip(times.forward)
            .chain(backward.iter_mut().zip(times.backward))
        {
            *total += t;
        }
    }
    let per_run = |d: Duration| d.as_secs_f64() * 1e6 / runs as f64;
    let label = |i: usize| {
        let ops = match groups.iter().find(|g| g.last() == Some(&i)) {
            Some(group) => {
                let ops: Vec<String> = group.iter().map(|&n| program.expr[n.into()].to_string()).collect();
                format!("fused {}", ops.join(" -> "))
            }
            None => program.expr[i.into()].to_string(),
        };
        format!("{ops} {}", program.shapes()[i])
    };
    let mut ops: Vec<OpTime> = (0..program.node_count())
        .filter(|&i| !(forward[i].is_zero() && backward[i].is_zero()))
        .map(|i| OpTime {
            node: i,
            label: label(i),
            forward: per_run(forward[i]),
            backward: per_run(backward[i]),
            predicted: predicted.forward_us[i] + predicted.backward_us[i],
        })
        .collect();
    ops.sort_by(|a, b| (b.forward + b.backward).total_cmp(&(a.forward + a.backward)));
    Ok(ops)
}

/// The interpreter `bench` times: fused unless `--no-fuse`, differentiating with
/// respect to the params (the inputs if there are none), as a train step does.
fn interpreter<'p>(program: &'p Program, args: &BenchArgs) -> Interpreter<'p> {
    timed_interpreter(program, !args.no_fuse)
}

fn report(
    args: &BenchArgs,
    size: Option<usize>,
    nodes: usize,
    t: &Timing,
    autobatch_us: Option<f64>,
) -> Result<(), Error> {
    let per_example = t.median / size.unwrap_or(1) as f64;
    if args.json {
        let line = json!({
            "size": size,
            "autobatch_us": autobatch_us,
            "median_us": t.median,
            "predicted_us": t.predicted,
            "min_us": t.min,
            "max_us": t.max,
            "per_example_us": per_example,
            "runs": t.runs,
            "nodes": nodes,
            "fused_groups": t.fused_groups,
            "fused_nodes": t.fused_nodes,
            "grad": args.grad,
            "dtype": match args.dtype { Dtype::F32 => "f32", Dtype::F64 => "f64" },
        });
        let mut line = line;
        if args.ops {
            line["ops"] = t
                .ops
                .iter()
                .map(|o| {
                    json!({"node": o.node, "op": o.label, "forward_us": o.forward, "backward_us": o.backward,
                        "predicted_us": o.predicted})
                })
                .collect();
        }
        print_line(&line.to_string())?;
    } else {
        let what = match (size, autobatch_us) {
            (Some(b), _) => format!("B = {b}"),
            (None, Some(us)) => format!("autobatched (in {us:.0} µs)"),
            (None, None) => "as written".to_string(),
        };
        let predicted = t.predicted.map_or(String::new(), |p| format!(" (predicted {p:.2})"));
        print_line(&format!(
            "{what}: median {:.2} µs per run{predicted} (min {:.2}, max {:.2}; {} runs, {nodes} nodes, {} fused in {} chains), {per_example:.3} µs per example",
            t.median, t.min, t.max, t.runs, t.fused_nodes, t.fused_groups
        ))?;
        print_ops(&t.ops)?;
    }
    Ok(())
}

/// The nodes taking the most time, as a table (nothing without `--ops`).
fn print_ops(ops: &[OpTime]) -> Result<(), Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let total: f64 = ops.iter().map(|o| o.forward + o.backward).sum();
    print_line(&format!(
        "  {:>5}  {:>10}  {:>10}  {:>6}  {:>11}  op (timed runs: {total:.1} µs per run)",
        "node", "forward µs", "backward µs", "share", "predicted µs"
    ))?;
    for o in ops.iter().take(OPS_LISTED) {
        let share = 100.0 * (o.forward + o.backward) / total;
        print_line(&format!(
            "  {:>5}  {:>10.1}  {:>11.1}  {share:>5.1}%  {:>12.1}  {}",
            o.node, o.forward, o.backward, o.predicted, o.label
        ))?;
    }
    if ops.len() > OPS_LISTED {
        let rest: f64 = ops[OPS_LISTED..].iter().map(|o| o.forward + o.backward).sum();
        print_line(&format!(
            "  {:>5}  {:>23.1}  {:>5.1}%  {} other nodes",
            "",
            rest,
            100.0 * rest / total,
            ops.len() - OPS_LISTED
        ))?;
    }
    Ok(())
}

/// Prints one line to stdout; a closed pipe is an error, not a panic.
fn print_line(line: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|_| stdout.flush())
        .map_err(|e| Error::Io(format!("stdout: {e}")))
}
