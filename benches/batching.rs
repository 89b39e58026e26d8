//! How long batching takes (building the e-graph, saturating, extracting the
//! chosen, the loop and the fused plans): the 3-layer MLP of
//! `examples/mlp3.graph` for each strategy at B = 64, 4096 and 10^6 (the time
//! must not grow with B); against the size of the per-example graph (an MLP
//! of 1 to 8 layers) at B = 64; and with a memory budget (chunk sizes tried).
//!
//! Run: `cargo bench --bench batching`.

use batchgraph::{Batcher, Program, Strategy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

fn example(name: &str) -> Program {
    let path = format!("{}/examples/{name}.graph", env!("CARGO_MANIFEST_DIR"));
    batchgraph::parse_file(std::path::Path::new(&path)).unwrap()
}

/// An MLP loss with `layers` tanh layers of width 16.
fn deep_mlp(layers: usize) -> Program {
    let mut text = String::from("input x: [16]\ninput y: [16]\nlet h0 = x\n");
    for l in 1..=layers {
        text.push_str(&format!(
            "param W{l}: [16, 16]\nparam b{l}: [16]\nlet h{l} = tanh(W{l} @ h{} + b{l})\n",
            l - 1
        ));
    }
    text.push_str(&format!("out loss = mean((h{layers} - y) ^ 2)\n"));
    Program::parse("deep", &text).unwrap()
}

fn against_batch_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("mlp3_vs_B");
    let program = example("mlp3");
    for (name, strategy) in [
        ("fuse", Strategy::Fuse),
        ("auto", Strategy::Auto),
        ("unroll", Strategy::Unroll),
    ] {
        for b in [64usize, 4096, 1_000_000] {
            group.bench_with_input(BenchmarkId::new(name, b), &b, |bench, &b| {
                bench.iter(|| black_box(Batcher::new(&program).size(b).strategy(strategy).run().unwrap()))
            });
        }
    }
    group.finish();
}

fn under_a_budget(c: &mut Criterion) {
    let program = example("mlp3");
    c.bench_function("mlp3_B4096_budget_2MB", |bench| {
        bench.iter(|| {
            black_box(
                Batcher::new(&program)
                    .size(4096)
                    .memory_budget(Some(2_000_000))
                    .run()
                    .unwrap(),
            )
        })
    });
}

fn against_graph_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_vs_layers");
    for layers in [1usize, 2, 4, 8] {
        let program = deep_mlp(layers);
        group.bench_with_input(BenchmarkId::new("B64", layers), &layers, |bench, _| {
            bench.iter(|| black_box(Batcher::new(&program).size(64).run().unwrap()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_millis(500));
    targets = against_batch_size, against_graph_size, under_a_budget
}
criterion_main!(benches);
