//! `batchgraph train`: train a program's params on data with the step
//! program (the gradient of the mean loss and the optimizer's update as one
//! program), with a progress bar; writes the params, a loss curve and a summary.

use crate::{parse_bytes, stdout_error};
use batchgraph::train::{
    random_params, read_params, steps_per_epoch, train, write_params, Dataset, Evaluator, Length, Metrics, Optimizer,
    Plan, Step, StepOptions, Trainer,
};
use batchgraph::{line_chart_svg, parse_file, Chart, Error, Program, Series};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `batchgraph train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The .graph file: the loss of one example (inputs are the data, params are trained).
    file: PathBuf,
    /// Training data: .npz (one array per input, named as the input, the leading axis the examples)
    /// or .csv (a header; column `x` for an input of one element, else `x_0`, `x_1`, ... row-major).
    #[arg(long, value_name = "DATA")]
    data: PathBuf,
    /// Held-out data (same format), evaluated after each epoch.
    #[arg(long, value_name = "DATA")]
    held_out: Option<PathBuf>,
    /// Examples per step (the optimizer's batch B).
    #[arg(long, value_name = "B")]
    batch: usize,
    /// Compute each batch by the fastest plan whose predicted peak memory fits: bytes, or with a unit (64KiB, 10MB).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, conflicts_with = "micro_batch")]
    memory: Option<usize>,
    /// Compute each batch in micro-batches of k examples, their gradients accumulated.
    #[arg(long, value_name = "K")]
    micro_batch: Option<usize>,
    /// The update.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    /// Learning rate (default: 0.1 for sgd, 0.01 for momentum, 0.001 for adam).
    #[arg(long, value_name = "X")]
    lr: Option<f64>,
    /// Passes over the data (default 10).
    #[arg(long, value_name = "N", conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Steps to take, instead of epochs.
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Seed of the random params and of the shuffling.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Start from these params (.npz, as written to DIR/params.npz, or .json in the values format).
    #[arg(long, value_name = "PARAMS")]
    init: Option<PathBuf>,
    /// Where to write params.npz, loss.svg and summary.json (written whole at the end).
    #[arg(long, value_name = "DIR", default_value = "out/train")]
    out: PathBuf,
    /// The output that is the loss (default: the only scalar output).
    #[arg(long, value_name = "NAME")]
    loss: Option<String>,
    /// The output of class scores, for the accuracy (default: `logits` if the program has it).
    #[arg(long, value_name = "NAME")]
    scores: Option<String>,
    /// Print the step program (params in, new params out) and stop.
    #[arg(long)]
    print_step: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Momentum,
    Adam,
}

/// The files `train` writes into `--out`.
const OUTPUTS: [&str; 3] = ["params.npz", "loss.svg", "summary.json"];

fn optimizer(arg: OptimizerArg) -> (Optimizer, f64) {
    match arg {
        OptimizerArg::Sgd => (Optimizer::Sgd, 0.1),
        OptimizerArg::Momentum => (Optimizer::MOMENTUM, 0.01),
        OptimizerArg::Adam => (Optimizer::ADAM, 0.001),
    }
}

/// Refuses an `--out` that is a file or holds files `train` did not write (it is replaced whole).
fn check_out(out: &Path) -> Result<(), Error> {
    if !out.exists() {
        return Ok(());
    }
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", out.display()));
    if !out.is_dir() {
        return Err(Error::Io(format!(
            "--out {}: exists and is not a folder",
            out.display()
        )));
    }
    for entry in std::fs::read_dir(out).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if !OUTPUTS.iter().any(|o| name == *o) {
            return Err(Error::Io(format!(
                "--out {}: holds `{}`, which train did not write; it replaces the folder whole, so give a new or empty one",
                out.display(),
                name.to_string_lossy()
            )));
        }
    }
    Ok(())
}

/// Writes the files into a new folder beside `out`, then puts it in `out`'s place.
fn write_out(out: &Path, write: impl FnOnce(&Path) -> Result<(), Error>) -> Result<(), Error> {
    let io = |what: &Path, e: std::io::Error| Error::Io(format!("{}: {e}", what.display()));
    let name = out
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().to_string());
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let temp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    std::fs::create_dir(&temp).map_err(|e| io(&temp, e))?;
    if let Err(e) = write(&temp) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(e);
    }
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| io(out, e))?;
        std::fs::rename(&temp, out).map_err(|e| io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    } else {
        std::fs::rename(&temp, out).map_err(|e| io(out, e))?;
    }
    Ok(())
}

/// The scores output for the accuracy: `--scores`, else `logits` if there is one.
fn scores_output(program: &Program, asked: Option<&str>) -> Option<String> {
    match asked {
        Some(name) => Some(name.to_string()),
        None => program
            .outputs
            .iter()
            .any(|(n, _)| n == "logits")
            .then(|| "logits".to_string()),
    }
}

/// One evaluation after an epoch.
struct EpochMetrics {
    epoch: usize,
    step: usize,
    train: Metrics,
    held_out: Option<Metrics>,
}

fn metrics_json(m: &Metrics) -> Value {
    json!({ "loss": m.loss, "accuracy": m.accuracy })
}

fn describe(m: &Metrics) -> String {
    match m.accuracy {
        Some(a) => format!("loss {:.4}, accuracy {:.2}%", m.loss, 100.0 * a),
        None => format!("loss {:.4}", m.loss),
    }
}

/// The per-step losses, averaged in windows so that a long run stays a readable picture.
fn step_curve(losses: &[f64]) -> Vec<(f64, f64)> {
    let window = losses.len().div_ceil(1000).max(1);
    losses
        .chunks(window)
        .enumerate()
        .map(|(i, c)| (((i * window) + c.len()) as f64, c.iter().sum::<f64>() / c.len() as f64))
        .collect()
}

fn loss_chart(losses: &[f64], epochs: &[EpochMetrics], batch: usize) -> Result<String, Error> {
    let chart = Chart {
        title: format!("training loss (B = {batch})"),
        x_label: "step".into(),
        y_label: "mean loss".into(),
        log_x: false,
        log_y: true,
    };
    let mut series = vec![Series {
        label: "batch loss".into(),
        points: step_curve(losses),
        line: true,
    }];
    let per_epoch = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        epochs.iter().filter_map(|e| f(e).map(|v| (e.step as f64, v))).collect()
    };
    series.push(Series {
        label: "training set".into(),
        points: per_epoch(&|e| Some(e.train.loss)),
        line: true,
    });
    let held_out = per_epoch(&|e| e.held_out.map(|m| m.loss));
    if !held_out.is_empty() {
        series.push(Series {
            label: "held out".into(),
            points: held_out,
            line: true,
        });
    }
    line_chart_svg(&chart, &series).map_err(Error::Io)
}

fn progress_bar(total: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta}]")
            .expect("a valid template"),
    );
    bar
}

/// The run as JSON (`summary.json`): the options, the totals and every epoch's metrics.
fn summary_json(
    args: &TrainArgs,
    step: &Step,
    examples: usize,
    lr: f64,
    total: usize,
    seconds: f64,
    epochs: &[EpochMetrics],
) -> Value {
    let last = epochs.last().expect("the last step is evaluated");
    json!({
        "program": args.file.display().to_string(),
        "data": args.data.display().to_string(),
        "held_out": args.held_out.as_ref().map(|p| p.display().to_string()),
        "examples": examples,
        "batch": args.batch,
        "plan": step.plan_name,
        "optimizer": step.options.optimizer.name(),
        "lr": lr,
        "seed": args.seed,
        "init": args.init.as_ref().map(|p| p.display().to_string()),
        "steps": total,
        "examples_seen": total * args.batch,
        "training_seconds": seconds,
        "examples_per_second": (total * args.batch) as f64 / seconds.max(1e-9),
        "final": {
            "train": metrics_json(&last.train),
            "held_out": last.held_out.as_ref().map(metrics_json),
        },
        "epochs": epochs.iter().map(|e| json!({
            "epoch": e.epoch,
            "step": e.step,
            "train": metrics_json(&e.train),
            "held_out": e.held_out.as_ref().map(metrics_json),
        })).collect::<Vec<_>>(),
    })
}

/// Runs `train`.
pub fn train_command(args: TrainArgs) -> Result<(), Error> {
    let program = parse_file(&args.file)?;
    let (optimizer, default_lr) = optimizer(args.optimizer);
    let lr = args.lr.unwrap_or(default_lr);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::Unsupported(format!("--lr must be a positive number, not {lr}")));
    }
    let plan = match (args.memory, args.micro_batch) {
        (Some(bytes), _) => Plan::Memory(bytes),
        (None, Some(k)) => Plan::MicroBatch(k),
        (None, None) => Plan::Fused,
    };
    let options = StepOptions {
        batch: args.batch,
        plan,
        optimizer,
        loss: args.loss.clone(),
    };
    let step = Step::build(&program, &options)?;
    if args.print_step {
        say!("{}", step.program.to_text());
        return Ok(());
    }
    // Everything that can be wrong with the inputs is found before the first step.
    check_out(&args.out)?;
    let data = Dataset::load(&step.model, &args.data)?;
    let held_out = args
        .held_out
        .as_deref()
        .map(|p| Dataset::load(&step.model, p))
        .transpose()?;
    let params = match &args.init {
        Some(path) => read_params(&step.model, path)?,
        None => random_params(&step.model, args.seed),
    };
    let per_epoch = steps_per_epoch(&step, &data)?;
    let length = match (args.epochs, args.steps) {
        (_, Some(n)) => Length::Steps(n),
        (n, None) => Length::Epochs(n.unwrap_or(10)),
    };
    let scores = scores_output(&program, args.scores.as_deref());
    let evaluator = |len| Evaluator::new(&program, &step.loss, scores.as_deref(), len);
    let train_eval = evaluator(data.len)?;
    let held_eval = held_out.as_ref().map(|d| evaluator(d.len)).transpose()?;
    let total = match length {
        Length::Epochs(n) => n * per_epoch,
        Length::Steps(n) => n,
    };
    if total == 0 {
        return Err(Error::Unsupported(
            "nothing to train: --epochs and --steps must be at least 1".into(),
        ));
    }

    let bar = progress_bar(total);
    let mut trainer = Trainer::new(&step, params, lr);
    let mut losses = vec![];
    let mut epochs = vec![];
    let started = Instant::now();
    let mut evaluating = 0.0;
    let mut recent = f64::NAN;
    train(
        &mut trainer,
        &data,
        length,
        args.seed.wrapping_add(1),
        |trainer, done| {
            if !done.loss.is_finite() {
                return Err(Error::Unsupported(format!(
                    "step {}: the loss is {} (try a smaller --lr)",
                    done.step, done.loss
                )));
            }
            losses.push(done.loss);
            recent = if recent.is_nan() {
                done.loss
            } else {
                0.95 * recent + 0.05 * done.loss
            };
            let training = started.elapsed().as_secs_f64() - evaluating;
            bar.set_position(done.step as u64);
            bar.set_message(format!(
                "epoch {}  loss {recent:.4}  {:.0} examples/s",
                done.epoch + 1,
                (done.step * args.batch) as f64 / training.max(1e-9)
            ));
            if done.epoch_end || done.step == total {
                let t = Instant::now();
                let train = train_eval.evaluate(&trainer.params, &data)?;
                let held = match (&held_eval, &held_out) {
                    (Some(e), Some(d)) => Some(e.evaluate(&trainer.params, d)?),
                    _ => None,
                };
                evaluating += t.elapsed().as_secs_f64();
                let line = format!(
                    "epoch {:>3}  step {:>6}  train {}{}",
                    done.epoch + 1,
                    done.step,
                    describe(&train),
                    held.map_or(String::new(), |h| format!("  held-out {}", describe(&h)))
                );
                bar.suspend(|| eprintln!("{line}"));
                epochs.push(EpochMetrics {
                    epoch: done.epoch + 1,
                    step: done.step,
                    train,
                    held_out: held,
                });
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64() - evaluating;
    let last = epochs.last().expect("the last step is evaluated");
    let summary = summary_json(&args, &step, data.len, lr, total, seconds, &epochs);
    let chart = loss_chart(&losses, &epochs, args.batch)?;
    write_out(&args.out, |dir| {
        write_params(&step.model, &trainer.params, &dir.join("params.npz"))?;
        let text = |name: &str, body: String| {
            std::fs::write(dir.join(name), body).map_err(|e| Error::Io(format!("{name}: {e}")))
        };
        text("loss.svg", chart)?;
        text(
            "summary.json",
            serde_json::to_string_pretty(&summary).expect("JSON") + "\n",
        )
    })?;
    say!(
        "trained {total} steps of {} examples ({}, {}, lr {lr}) in {seconds:.1} s\ntrain: {}\n",
        args.batch,
        step.plan_name,
        optimizer.name(),
        describe(&last.train)
    );
    if let Some(h) = &last.held_out {
        say!("held-out: {}\n", describe(h));
    }
    say!("wrote {}/params.npz, loss.svg, summary.json\n", args.out.display());
    Ok(())
}
