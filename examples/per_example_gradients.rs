//! Per-example gradients as a program: `grad` makes the gradient program of
//! one example's loss, and batching it with `--reduce none` stacks the
//! gradients of every example (JAX's `vmap(grad(f))`) instead of averaging
//! them. Used for gradient clipping, differential privacy, influence.
//!
//! 1. The sine MLP: the per-example gradient norms of 8 examples, checked
//!    against a loop that takes the gradient of each example alone, and their
//!    mean against the gradient of the mini-batch loss.
//! 2. The 3-layer MLP (16-64-64-1) at B = 256: the time of the batched
//!    per-example gradient program against a loop of the gradient program
//!    over the examples, side by side in one run.
//!
//! Run: `cargo run --release --example per_example_gradients`.

#[path = "../src/bin/batchgraph/alloc.rs"]
mod alloc;

use batchgraph::{grad, random_values, BatchReduce, Batcher, Interpreter, Program, Strategy, Tensor, Values};
use ndarray::Axis;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `batchgraph` command does: keep freed blocks, so that large values do not page-fault on every run.
    alloc::keep_freed_memory();
    norms_of_the_sine_mlp()?;
    timing_of_the_three_layer_mlp()?;
    Ok(())
}

/// The params of a program, by name.
fn param_names(program: &Program) -> Vec<String> {
    program.params.iter().map(|d| d.name.clone()).collect()
}

/// Row `b` of every input of `program`, params as they are.
fn example(program: &Program, values: &Values<f64>, b: usize) -> Values<f64> {
    let mut row = values.clone();
    for d in &program.inputs {
        row.insert(d.name.clone(), values[&d.name].index_axis(Axis(0), b).to_owned());
    }
    row
}

fn output<'a>(outputs: &'a [(String, Tensor<f64>)], name: &str) -> &'a Tensor<f64> {
    &outputs
        .iter()
        .find(|(n, _)| n == name)
        .expect("an output of that name")
        .1
}

fn norms_of_the_sine_mlp() -> Result<(), Box<dyn std::error::Error>> {
    let program = Program::parse("examples/sine_mlp.graph", include_str!("sine_mlp.graph"))?;
    let params = param_names(&program);
    let gradient = grad(&program, Some(&params))?;
    let size = 8;
    let per_example = Batcher::new(&gradient)
        .size(size)
        .strategy(Strategy::Fuse)
        .reduce(BatchReduce::None)
        .run()?;
    println!(
        "sine MLP: the gradient program has {} nodes ({} for the loss alone); batched over {size} examples \
         with --reduce none it has {} nodes, unfused ops: {:?}",
        gradient.node_count(),
        program.node_count(),
        per_example.program.node_count(),
        per_example.report.unfused_ops
    );
    let mut values = random_values(&per_example.program, 3);
    let x = Tensor::from_shape_fn(ndarray::IxDyn(&[size, 1]), |i| {
        -3.0 + 6.0 * i[0] as f64 / (size - 1) as f64
    });
    values.insert("y".into(), x.mapv(f64::sin));
    values.insert("x".into(), x);
    let stacked = Interpreter::new(&per_example.program).evaluate(&values)?.outputs;
    let alone = Interpreter::new(&gradient);
    println!("  example      x    loss  |gradient|  (loop of grad: largest difference)");
    let mut mean_of_per_example = vec![0.0; params.len()];
    for b in 0..size {
        let one = alone.evaluate(&example(&program, &values, b))?.outputs;
        let (mut norm, mut diff) = (0.0f64, 0.0f64);
        for (k, name) in params.iter().enumerate() {
            let g = output(&stacked, &format!("grad_{name}"))
                .index_axis(Axis(0), b)
                .to_owned();
            norm += g.mapv(|v| v * v).sum();
            diff = diff.max(
                (&g - output(&one, &format!("grad_{name}")))
                    .mapv(f64::abs)
                    .fold(0.0, |m, &v| m.max(v)),
            );
            mean_of_per_example[k] += g.sum() / size as f64;
        }
        let loss = output(&stacked, "loss")[b];
        println!(
            "  {b:>7} {:>6.2} {loss:>7.4} {:>11.4}  ({diff:.1e})",
            values["x"][[b, 0]],
            norm.sqrt()
        );
    }
    let mean = grad(
        &Batcher::new(&program)
            .size(size)
            .strategy(Strategy::Fuse)
            .run()?
            .program,
        Some(&params),
    )?;
    let of_batch = Interpreter::new(&mean).evaluate(&values)?.outputs;
    let worst = params.iter().enumerate().fold(0.0f64, |m, (k, name)| {
        m.max((output(&of_batch, &format!("grad_{name}")).sum() - mean_of_per_example[k]).abs())
    });
    println!("  the gradient of the mini-batch mean = the mean of the per-example gradients (largest difference of the sums: {worst:.1e})\n");
    Ok(())
}

fn outputs_name(outputs: &[(String, Tensor<f64>)], k: usize) -> &str {
    &outputs[k].0
}

/// Median seconds of `runs` calls of `f`.
fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn timing_of_the_three_layer_mlp() -> Result<(), Box<dyn std::error::Error>> {
    let program = Program::parse("examples/mlp3.graph", include_str!("mlp3.graph"))?;
    let params = param_names(&program);
    let gradient = grad(&program, Some(&params))?;
    let size = 256;
    let batched = Batcher::new(&gradient)
        .size(size)
        .strategy(Strategy::Fuse)
        .reduce(BatchReduce::None)
        .run()?;
    let values = random_values(&batched.program, 11);
    let examples: Vec<Values<f64>> = (0..size).map(|b| example(&program, &values, b)).collect();
    let (vmapped, looped) = (Interpreter::new(&batched.program), Interpreter::new(&gradient));
    let unrolled = Batcher::new(&gradient)
        .size(size)
        .strategy(Strategy::Unroll)
        .reduce(BatchReduce::None)
        .run()?
        .program;
    let mapped = Interpreter::new(&unrolled);

    let stacked = vmapped.evaluate(&values)?.outputs;
    let mut worst = 0.0f64;
    for (b, one) in examples.iter().enumerate() {
        let alone = looped.evaluate(one)?.outputs;
        for name in &params {
            let name = format!("grad_{name}");
            let g = output(&stacked, &name).index_axis(Axis(0), b).to_owned();
            worst = worst.max((&g - output(&alone, &name)).mapv(f64::abs).fold(0.0, |m, &v| m.max(v)));
        }
    }
    let runs = 15;
    let vmap_time = median_seconds(runs, || {
        vmapped.evaluate(&values).expect("runs");
    });
    // The loop stacks its results too, as the batched program does.
    let loop_time = median_seconds(runs, || {
        let runs: Vec<_> = examples
            .iter()
            .map(|one| looped.evaluate(one).expect("runs").outputs)
            .collect();
        for (k, name) in params.iter().enumerate() {
            let rows: Vec<_> = runs.iter().map(|outputs| outputs[k + 1].1.view()).collect();
            assert_eq!(outputs_name(&runs[0], k + 1), format!("grad_{name}"));
            std::hint::black_box(ndarray::stack(Axis(0), &rows).expect("rows of one shape"));
        }
    });
    let map_time = median_seconds(runs, || {
        mapped.evaluate(&values).expect("runs");
    });
    println!(
        "3-layer MLP 16-64-64-1, per-example gradients of B = {size} examples (f64, median of {runs}):\n  \
         vmap(grad), the fused batched program ({} nodes):      {:>8.0} µs\n  \
         the unrolled batched program, map(grad, {size}) ({} nodes): {:>8.0} µs ({:.1}x the fused time)\n  \
         a loop of grad per example ({} nodes, {size} runs, stacked): {:>8.0} µs ({:.1}x the fused time)\n  \
         largest difference between the fused program and the loop: {worst:.1e}",
        batched.program.node_count(),
        vmap_time * 1e6,
        unrolled.node_count(),
        map_time * 1e6,
        map_time / vmap_time,
        gradient.node_count(),
        loop_time * 1e6,
        loop_time / vmap_time
    );
    Ok(())
}
