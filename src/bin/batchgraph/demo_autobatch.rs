//! The walk-through's last section: the question's two-copy drawing goes in,
//! the batch nobody declared comes out (autobatching), with the pictures side
//! by side, the proof that they are equal, their values, gradients and times.

use crate::demo::{best_time_us, indented, io, write_file, DemoOptions};
use batchgraph::{
    autobatch, random_values, to_svg, AutobatchOptions, Dtype, Error, Interpreter, Program, Result, Run, Tensor,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The question's drawing, written out: two copies and the averaging node.
pub const TWO_COPIES: &str = include_str!("../../../examples/two_copies.graph");

/// What section 6 measured (in `summary.json`).
#[derive(Clone, Debug, Serialize)]
pub struct AutobatchSummary {
    /// Ops that compute, as written and autobatched.
    pub kernels: (usize, usize),
    /// Steps of the proof that the two are equal.
    pub proof_steps: usize,
    /// Largest difference of the loss and of every gradient between the two.
    pub difference: f64,
    /// Gradient run (forward and backward), best µs, as written and autobatched.
    pub gradient_us: (f64, f64),
    /// The cost model's prediction of each (µs).
    pub predicted_us: (f64, f64),
}

/// Section 6: the two-copy graph, autobatched.
pub fn autobatched_copies(
    options: &DemoOptions,
    out: &mut dyn Write,
    files: &mut Vec<PathBuf>,
) -> Result<AutobatchSummary> {
    writeln!(out, "\n== 6. From the other side: the two-copy drawing, autobatched\n").map_err(io)?;
    let written = Program::parse("examples/two_copies.graph", TWO_COPIES)?;
    writeln!(
        out,
        "Sections 1-5 start from one example and batch it. The question starts from the other end: two\n\
         copies of the graph, one per example, and a node averaging their losses. Written that way:\n"
    )
    .map_err(io)?;
    indented(out, TWO_COPIES.trim_end())?;
    let autobatch_options = AutobatchOptions {
        profile: options.profile.clone(),
        run: Run::Grad,
        dtype: Dtype::F64,
        explain: true,
        ..AutobatchOptions::default()
    };
    let done = autobatch(&written, &autobatch_options)?;
    let r = &done.report;
    writeln!(
        out,
        "\n`batchgraph autobatch` finds {} groups of nodes with one signature (same op, same shapes, the\n\
         same w) at one depth, adds for each one op over the stacked operands to the e-graph, each member\n\
         equal to a row of it, and lets the cost model choose ({} groups taken):\n",
        r.groups_found, r.groups_taken
    )
    .map_err(io)?;
    indented(out, &done.program.to_text())?;
    writeln!(
        out,
        "\nThe two matrix-vector products became one product of the stacked rows [x1; x2] with w^T: the\n\
         indexed graph. Ops that compute: {} as written, {} autobatched (the lower bound, one per\n\
         signature and depth, is {}).",
        r.kernels_before, r.kernels_after, r.lower_bound
    )
    .map_err(io)?;
    if let Some(e) = &r.extraction {
        writeln!(
            out,
            "Greedy extraction alone keeps the copies apart (DAG cost {}): each copy sees the shared batched\n\
             op as its own cost. Exact extraction (an integer program) pays for it once: {}, {}.",
            e.greedy_dag_cost.map_or("-".into(), |c| format!("{c:.2}")),
            e.exact_dag_cost.map_or("-".into(), |c| format!("{c:.2}")),
            e.exact_status
        )
        .map_err(io)?;
    }
    let proof = proof_text(&done.proofs);
    let steps: usize = done.proofs.iter().map(|(_, s)| s.len().saturating_sub(1)).sum();
    writeln!(
        out,
        "\nThe proof that they are one e-class: {steps} rewrites from the program as written to the one\n\
         returned, each naming its rule (two_copies_proof.txt). By rule:\n"
    )
    .map_err(io)?;
    for (rule, count) in rules_used(&done.proofs) {
        writeln!(out, "    {count:>3} x {rule}").map_err(io)?;
    }
    write_file(&options.out.join("two_copies_proof.txt"), &proof, files)?;
    let side_by_side = side_by_side(
        &to_svg(&written).map_err(Error::Io)?,
        &to_svg(&done.program).map_err(Error::Io)?,
    );
    write_file(&options.out.join("two_copies_side_by_side.svg"), &side_by_side, files)?;

    let values = random_values(&written, 6);
    let (a, b) = (Interpreter::new(&written), Interpreter::new(&done.program));
    let (ga, gb) = (a.gradient(&values)?, b.gradient(&values)?);
    let difference = ga
        .outputs
        .iter()
        .chain(&ga.grads)
        .zip(gb.outputs.iter().chain(&gb.grads))
        .map(|((_, x), (_, y))| max_abs_diff(x, y))
        .fold(0.0, f64::max);
    let budget = Duration::from_millis(if options.quick { 100 } else { 500 });
    let gradient_us = (
        best_time_us(budget, || drop(a.gradient(&values))),
        best_time_us(budget, || drop(b.gradient(&values))),
    );
    let ratio = gradient_us.1 / gradient_us.0;
    let verdict = if ratio > 1.05 {
        format!(
            "autobatched is {ratio:.2}x slower here, where the model predicted it {:.2}x faster: at two\n\
             examples of three numbers the runtime's stacking and indexing (and their backward) cost more\n\
             than the model prices them",
            r.cost_before_us / r.cost_after_us
        )
    } else if ratio < 0.95 {
        format!("autobatched is {:.2}x faster here", 1.0 / ratio)
    } else {
        "the two take about the same time at two examples this small".into()
    };
    writeln!(
        out,
        "\nAt random values the loss and the gradients of x1, x2 and w agree to {difference:.1e}. The gradient\n\
         run takes {:.1} µs as written and {:.1} µs autobatched on this machine (the cost model predicted\n\
         {:.1} and {:.1}): {verdict}. Where batching pays as the copies grow, and where the cost model\n\
         picks right, is measured in docs/autobatch.md.",
        gradient_us.0, gradient_us.1, r.cost_before_us, r.cost_after_us
    )
    .map_err(io)?;
    Ok(AutobatchSummary {
        kernels: (r.kernels_before, r.kernels_after),
        proof_steps: steps,
        difference,
        gradient_us,
        predicted_us: (r.cost_before_us, r.cost_after_us),
    })
}

fn max_abs_diff(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The proofs as a text file: per output, a header and one term per line.
fn proof_text(proofs: &[(String, Vec<String>)]) -> String {
    let mut text = String::new();
    for (name, steps) in proofs {
        text += &format!(
            "# {name}: as written = autobatched, {} steps\n",
            steps.len().saturating_sub(1)
        );
        text += &steps.join("\n");
        text += "\n";
    }
    text
}

/// How many steps each rule took, most used first.
fn rules_used(proofs: &[(String, Vec<String>)]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for step in proofs.iter().flat_map(|(_, steps)| steps) {
        // A step reads `... (Rewrite=> RULE term) ...` or `(Rewrite<= RULE term)`;
        // a rule with spaces in its name is quoted.
        for part in step.split("(Rewrite").skip(1) {
            let name = part[2..].trim_start();
            let rule = match name.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or(""),
                None => name.split(' ').next().unwrap_or(""),
            };
            *counts.entry(rule.to_string()).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
}

/// Two SVG pictures in one, left and right, each under a caption.
fn side_by_side(left: &str, right: &str) -> String {
    let size = |svg: &str, attribute: &str| -> f64 {
        let key = format!("{attribute}=\"");
        svg.find(&key)
            .and_then(|at| svg[at + key.len()..].split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(400.0)
    };
    let (w1, h1, w2, h2) = (
        size(left, "width"),
        size(left, "height"),
        size(right, "width"),
        size(right, "height"),
    );
    let (gap, caption) = (40.0, 28.0);
    let width = w1 + gap + w2;
    let height = h1.max(h2) + caption;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"Helvetica, Arial, 'DejaVu Sans', sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">as written: two copies</text>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">autobatched: one batched op per group</text>\n\
         <g transform=\"translate(0 {caption})\">{left}</g>\n\
         <g transform=\"translate({} {caption})\">{right}</g>\n</svg>\n",
        w1 / 2.0,
        w1 + gap + w2 / 2.0,
        w1 + gap
    )
}
