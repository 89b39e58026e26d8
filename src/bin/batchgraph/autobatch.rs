//! `batchgraph autobatch`: find the batch nobody declared in a program, print
//! the program that runs each paying group as one batched op, and report.

use crate::{profile, write, Dtype};
use batchgraph::{autobatch, check_rule, parse_file, to_svg, AutobatchOptions, Error, RuleSet, Run};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `batchgraph autobatch`.
#[derive(Args)]
pub struct AutobatchArgs {
    /// The .graph file.
    file: PathBuf,
    /// Cost profile: saved (the one `calibrate --save` wrote, else cpu), cpu, gpu, or a JSON file.
    #[arg(long, default_value = "saved")]
    profile: String,
    /// Which run to price: the gradient (forward and backward) or the forward pass.
    #[arg(long = "for", value_enum, default_value_t = RunArg::Grad)]
    run: RunArg,
    /// Element type to price.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// A folder of extra *.rules files (checked for soundness first).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long, value_name = "REPORT.json")]
    report: Option<PathBuf>,
    /// Write a picture of the autobatched program.
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
    /// Run every group batched, whatever the cost model says (to time what it would cost).
    #[arg(long)]
    all: bool,
    /// Write, per output, the proof that the result equals the program as
    /// written: the chain of rewrites, one term per line with its rule.
    #[arg(long, value_name = "PROOF.txt")]
    explain: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum RunArg {
    Grad,
    Eval,
}

/// Runs `autobatch`: the program on stdout, a summary on stderr.
pub fn autobatch_command(args: AutobatchArgs) -> Result<(), Error> {
    let program = parse_file(&args.file)?;
    let mut rules = RuleSet::builtin();
    if let Some(dir) = &args.rules {
        rules = rules.with_checked_dir(dir, check_rule)?;
    }
    let options = AutobatchOptions {
        profile: profile(&args.profile)?,
        run: match args.run {
            RunArg::Grad => Run::Grad,
            RunArg::Eval => Run::Eval,
        },
        dtype: args.dtype.into(),
        rules,
        batch_every_group: args.all,
        explain: args.explain.is_some(),
        ..AutobatchOptions::default()
    };
    let done = autobatch(&program, &options)?;
    let r = &done.report;
    if let Some(path) = &args.report {
        write(path, &serde_json::to_string_pretty(r).expect("a report serializes"))?;
    }
    if let Some(path) = &args.svg {
        write(path, &to_svg(&done.program).map_err(Error::Io)?)?;
    }
    if let Some(path) = &args.explain {
        let mut text = String::new();
        for (name, steps) in &done.proofs {
            text += &format!(
                "# {name}: the program as written = the program returned, in {} steps\n",
                steps.len() - 1
            );
            text += &steps.join("\n");
            text += "\n";
        }
        write(path, &text)?;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "autobatch: {} groups found, {} taken; kernels {} -> {} (lower bound {}); predicted {:.1} -> {:.1} µs ({} run, {}); greedy extraction alone: {}; search: {}{}; {:.3} s",
        r.groups_found,
        r.groups_taken,
        r.kernels_before,
        r.kernels_after,
        r.lower_bound,
        r.cost_before_us,
        r.cost_after_us,
        match r.run { Run::Grad => "gradient", Run::Eval => "forward" },
        r.profile,
        r.greedy_cost_us.map_or("-".into(), |c| format!("{c:.1} µs")),
        r.search,
        if r.search_cut_off { " (cut off at its time limit)" } else { "" },
        r.seconds,
    );
    if let Some(e) = &r.extraction {
        let _ = writeln!(
            err,
            "  extraction: greedy DAG cost {} in {:.4} s; exact {} in {:.4} s, {}{}",
            e.greedy_dag_cost.map_or("-".into(), |c| format!("{c:.3}")),
            e.greedy_seconds,
            e.exact_dag_cost.map_or("-".into(), |c| format!("{c:.3}")),
            e.exact_seconds,
            e.exact_status,
            match e.exact_predicted_us {
                Some(us) => format!(" (its program: {us:.1} µs predicted)"),
                None => String::new(),
            },
        );
    }
    for g in &r.groups {
        let _ = writeln!(
            err,
            "  depth {:>3}  {:>4} x {:<40} {}{}",
            g.depth,
            g.members,
            g.op,
            if g.taken { "batched" } else { "kept apart" },
            if g.ragged { " (sizes differ: concatenated)" } else { "" }
        );
    }
    for note in &r.notes {
        let _ = writeln!(err, "autobatch: {note}");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", done.program.to_text()).map_err(|e| Error::Io(format!("stdout: {e}")))?;
    Ok(())
}
