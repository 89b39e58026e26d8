//! How batching time grows with the depth of the program (issue 21, item 6):
//! the chain `let t{i} = sin(t{i-1}) * w + t{i-1}` of 1,000, 5,000 and
//! 20,000 steps batched at B = 4 with the cost model choosing. The time (and
//! the memory, which extraction once held per class for every class below
//! it) must grow about linearly: read the ratio between depths.
//!
//! Run: `cargo bench --bench deep_chain`.

use batchgraph::{Batcher, Program};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

/// The chain of the report, `steps` long.
fn chain(steps: usize) -> Program {
    let mut text = String::from("input x: [3]\nparam w: [3]\nlet t0 = x\n");
    for i in 1..=steps {
        text.push_str(&format!("let t{i} = sin(t{}) * w + t{}\n", i - 1, i - 1));
    }
    text.push_str(&format!("out s = sum(t{steps})\n"));
    Program::parse("chain", &text).unwrap()
}

fn against_depth(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_vs_depth");
    for steps in [1_000usize, 5_000, 20_000] {
        let program = chain(steps);
        group.bench_with_input(BenchmarkId::new("B4", steps), &steps, |bench, _| {
            bench.iter(|| black_box(Batcher::new(&program).size(4).run().unwrap()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5)).warm_up_time(std::time::Duration::from_millis(500));
    targets = against_depth
}
criterion_main!(benches);
