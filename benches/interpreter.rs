//! Interpreter speed: forward+backward of a two-layer MLP loss, example by
//! example versus one batched program (B = 1, 16, 256), and the cost of one
//! node (dispatch and allocation) on a chain of tiny ops, run one op at a
//! time and fused into one chain.
//!
//! Run: `cargo bench --bench interpreter`.

use batchgraph::{Interpreter, Program, Tensor, Values};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

const D: usize = 64;
const H: usize = 128;
const O: usize = 10;

fn per_example() -> Program {
    let text = format!(
        "input x: [{D}]\ninput y: [{O}]\nparam W1: [{H}, {D}]\nparam b1: [{H}]\nparam W2: [{O}, {H}]\nparam b2: [{O}]\n\
         let h = tanh(W1 @ x + b1)\nout loss = mean((W2 @ h + b2 - y) ^ 2)\n"
    );
    Program::parse("mlp", &text).unwrap()
}

/// The same loss over a batch, written by hand: one matrix-matrix product per layer.
fn batched(b: usize) -> Program {
    let text = format!(
        "input x: [{b}, {D}]\ninput y: [{b}, {O}]\nparam W1: [{H}, {D}]\nparam b1: [{H}]\nparam W2: [{O}, {H}]\nparam b2: [{O}]\n\
         let h = tanh(x @ transpose(W1) + b1)\nout loss = mean(mean((h @ transpose(W2) + b2 - y) ^ 2, 1), 0)\n"
    );
    Program::parse("mlp_batched", &text).unwrap()
}

fn filled(shape: &[usize], seed: usize) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|k| (((k * 31 + seed * 17) % 97) as f64 / 97.0) - 0.5)
        .collect();
    Tensor::from_shape_vec(ndarray::IxDyn(shape), data).unwrap()
}

fn values(program: &Program) -> Values<f64> {
    program
        .inputs
        .iter()
        .chain(&program.params)
        .enumerate()
        .map(|(i, d)| (d.name.clone(), filled(d.shape.dims(), i)))
        .collect()
}

fn mlp(c: &mut Criterion) {
    let mut group = c.benchmark_group("mlp_forward_backward");
    let single = per_example();
    let single_values = values(&single);
    let interpreter = Interpreter::new(&single);
    for b in [1usize, 16, 256] {
        group.throughput(Throughput::Elements(b as u64));
        group.bench_with_input(BenchmarkId::new("per_example_loop", b), &b, |bench, &b| {
            bench.iter(|| {
                for _ in 0..b {
                    black_box(interpreter.gradient(&single_values).unwrap());
                }
            })
        });
        let program = batched(b);
        let batch_values = values(&program);
        let batch_interpreter = Interpreter::new(&program);
        group.bench_with_input(BenchmarkId::new("batched", b), &b, |bench, _| {
            bench.iter(|| black_box(batch_interpreter.gradient(&batch_values).unwrap()))
        });
    }
    group.finish();
}

fn per_node(c: &mut Criterion) {
    // 1000 scalar ops in a chain: the time is almost all per-node bookkeeping.
    let mut text = String::from("input x: []\nlet t0 = x\n");
    for i in 1..=1000 {
        text.push_str(&format!("let t{i} = t{} * 0.999\n", i - 1));
    }
    text.push_str("out y = t1000\n");
    let program = Program::parse("chain", &text).unwrap();
    let nodes = program.node_count() as u64;
    let values = values(&program);
    // Fused, the chain is one pass; one op at a time, each node pays the bookkeeping.
    let mut group = c.benchmark_group("per_node");
    group.throughput(Throughput::Elements(nodes));
    for (name, fuse) in [("scalar_chain", false), ("scalar_chain_fused", true)] {
        let interpreter = Interpreter::new(&program).fuse(fuse);
        group.bench_function(format!("forward_{name}"), |b| {
            b.iter(|| black_box(interpreter.evaluate(&values).unwrap()))
        });
        group.bench_function(format!("forward_backward_{name}"), |b| {
            b.iter(|| black_box(interpreter.gradient(&values).unwrap()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = mlp, per_node
}
criterion_main!(benches);
