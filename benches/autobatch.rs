//! How long autobatching takes against the size of the program: the 3-layer
//! MLP of `examples/mlp3.graph` written out B times (`batch --strategy unroll
//! --expand`), about 1,000, 5,000 and 20,000 nodes. The time must grow near
//! linearly with the program (the bar: under 1 s at 20,000 nodes).
//!
//! Run: `cargo bench --bench autobatch`.

use batchgraph::{autobatch, expand_loops, AutobatchOptions, Batcher, Program, Strategy, MAX_NODES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

/// `examples/mlp3.graph` written out `copies` times.
fn written_out(copies: usize) -> Program {
    let path = format!("{}/examples/mlp3.graph", env!("CARGO_MANIFEST_DIR"));
    let example = batchgraph::parse_file(std::path::Path::new(&path)).unwrap();
    let unrolled = Batcher::new(&example)
        .size(copies)
        .strategy(Strategy::Unroll)
        .run()
        .unwrap();
    expand_loops(&unrolled.program, MAX_NODES).unwrap()
}

fn against_program_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("autobatch_vs_nodes");
    group.sample_size(10);
    let options = AutobatchOptions::default();
    // About 14 nodes per copy.
    for copies in [72usize, 360, 1440] {
        let program = written_out(copies);
        let nodes = program.node_count();
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &program, |b, p| {
            b.iter(|| autobatch(black_box(p), &options).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, against_program_size);
criterion_main!(benches);
