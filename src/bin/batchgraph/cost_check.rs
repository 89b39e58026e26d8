//! `batchgraph cost-check`: every plan of every program, priced by the cost
//! model and timed, over a range of batch sizes, forward and gradient; a
//! table (or JSON), and a picture of predicted against measured time.

use crate::{profile, Dtype};
use batchgraph::{
    cost_check, line_chart_svg, summarize, Chart, ConfigCheck, CostCheckOptions, Error, Program, Run, Series,
};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `batchgraph cost-check`.
#[derive(Args)]
pub struct CostCheckArgs {
    /// The .graph files (per example); each is batched at every size.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,16,64,256,1024,4096,8192")]
    sizes: Vec<usize>,
    /// The runs to price and time, comma-separated.
    #[arg(long = "for", value_enum, value_delimiter = ',', default_value = "eval,grad")]
    runs: Vec<RunArg>,
    /// Element type.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Seconds of timed runs per distinct plan.
    #[arg(long, default_value_t = 0.1)]
    seconds: f64,
    /// Times the whole grid is timed; each plan keeps its fastest pass's median.
    #[arg(long, default_value_t = 2)]
    passes: usize,
    /// Cost profile: saved (the calibrated one, if saved), cpu, gpu, or a JSON file.
    #[arg(long, default_value = "saved")]
    profile: String,
    /// Write every configuration and plan as JSON.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Draw predicted against measured time (SVG).
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum RunArg {
    Eval,
    Grad,
}

/// Runs `cost-check`.
pub fn cost_check_command(args: CostCheckArgs) -> Result<(), Error> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err(Error::Unsupported(
            "--seconds must be a positive number of seconds, at most an hour".into(),
        ));
    }
    if !(1..=100).contains(&args.passes) {
        return Err(Error::Unsupported("--passes must be from 1 to 100".into()));
    }
    let programs: Vec<(String, Program)> = args
        .files
        .iter()
        .map(|f| {
            let name = f
                .file_stem()
                .map_or("program".into(), |s| s.to_string_lossy().into_owned());
            Ok((name, batchgraph::parse_file(f)?))
        })
        .collect::<Result<_, Error>>()?;
    let profile = profile(&args.profile)?;
    let options = CostCheckOptions {
        sizes: args.sizes.clone(),
        runs: args
            .runs
            .iter()
            .map(|r| match r {
                RunArg::Eval => Run::Eval,
                RunArg::Grad => Run::Grad,
            })
            .collect(),
        dtype: args.dtype.into(),
        budget: Duration::from_secs_f64(args.seconds),
        passes: args.passes,
        profile,
    };
    let checks = cost_check(&programs, &options, |step| eprintln!("cost-check: {step}"))?;
    print_table(&checks)?;
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "profile": options.profile,
            "dtype": options.dtype,
            "summary": summarize(&checks),
            "configurations": checks,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).expect("serializes"))
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, picture(&checks)?).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

fn print_table(checks: &[ConfigCheck]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let mut line = |s: String| writeln!(out, "{s}").map_err(|e| Error::Io(format!("stdout: {e}")));
    line(format!(
        "{:<20} {:>5} {:<4}  {:<7} {:<7} {:>7}  plans: predicted / measured µs (ratio)",
        "example", "B", "run", "chosen", "fastest", "regret"
    ))?;
    for c in checks {
        let plans: Vec<String> = c
            .plans
            .iter()
            .map(|p| format!("{} {:.1}/{:.1} ({:.2})", p.plan, p.predicted_us, p.measured_us, p.ratio))
            .collect();
        line(format!(
            "{:<20} {:>5} {:<4}  {:<7} {:<7} {:>6.1}%  {}",
            c.example,
            c.size,
            run_name(c.run),
            c.chosen,
            c.fastest,
            100.0 * c.regret,
            plans.join("  ")
        ))?;
    }
    let s = summarize(checks);
    line(format!(
        "\n{} of {} configurations pick a plan within 5% of the fastest (worst regret {:.1}%);\n\
         {} of {} predictions within 2x of the measurement (predicted / measured from {:.3} to {:.3}).",
        s.within_5_percent,
        s.configurations,
        100.0 * s.worst_regret,
        s.within_2x,
        s.plans,
        s.ratio_range.0,
        s.ratio_range.1
    ))
}

fn run_name(run: Run) -> &'static str {
    match run {
        Run::Eval => "eval",
        Run::Grad => "grad",
    }
}

/// Predicted against measured, log-log, one colour per plan kind, with the
/// line of perfect prediction and the 2x band.
fn picture(checks: &[ConfigCheck]) -> Result<String, Error> {
    let plans = checks.iter().flat_map(|c| c.plans.iter());
    let (lo, hi) = plans.clone().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (
            lo.min(p.measured_us).min(p.predicted_us),
            hi.max(p.measured_us).max(p.predicted_us),
        )
    });
    let line = |label: &str, factor: f64| Series {
        label: label.into(),
        points: vec![(lo, lo * factor), (hi, hi * factor)],
        line: true,
    };
    let mut series = vec![line("predicted = measured", 1.0), line("2x off", 2.0), line("", 0.5)];
    for kind in ["fused", "mixed", "loop"] {
        series.push(Series {
            label: kind.into(),
            points: plans
                .clone()
                .filter(|p| p.plan == kind)
                .map(|p| (p.measured_us, p.predicted_us))
                .collect(),
            line: false,
        });
    }
    let chart = Chart {
        title: "The cost model against the clock (every plan, example, B and run)".into(),
        x_label: "measured µs".into(),
        y_label: "predicted µs".into(),
        log_x: true,
        log_y: true,
    };
    line_chart_svg(&chart, &series).map_err(Error::Io)
}
