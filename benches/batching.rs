//! How long batching takes (building the e-graph, saturating, extracting the
//! chosen, the unrolled and the fused plans): against B, and against the size
//! of the per-example graph (an MLP of 1 to 8 layers) at B = 64.
//!
//! Run: `cargo bench --bench batching`.

use batchgraph::{Batcher, Program};
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
    let mut group = c.benchmark_group("batch_vs_B");
    for name in ["seed", "mlp"] {
        let program = example(name);
        for b in [16usize, 128, 1024] {
            group.bench_with_input(BenchmarkId::new(name, b), &b, |bench, &b| {
                bench.iter(|| black_box(Batcher::new(&program).size(b).run().unwrap()))
            });
        }
    }
    group.finish();
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
    targets = against_batch_size, against_graph_size
}
criterion_main!(benches);
