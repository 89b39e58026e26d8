//! How long `to_svg` takes (layout and SVG text): every example program, the
//! B = 2 unrolled (a loop) and fused plans of each, the MLP's unrolled plan at
//! B = 64 (about 700 nodes before the loop node, 35 s with the old layout
//! engine; a loop of 20 nodes now) and a 2,000-node program.
//!
//! Run: `cargo bench --bench drawing`.

use batchgraph::{to_svg, Batcher, Program, Strategy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

const EXAMPLES: [&str; 7] = [
    "seed",
    "mlp",
    "softmax_classifier",
    "sine_mlp",
    "mixed",
    "broadcasting",
    "vector_output",
];

fn example(name: &str) -> Program {
    let path = format!("{}/examples/{name}.graph", env!("CARGO_MANIFEST_DIR"));
    batchgraph::parse_file(std::path::Path::new(&path)).unwrap()
}

fn batched(program: &Program, size: usize, strategy: Strategy) -> Program {
    Batcher::new(program)
        .size(size)
        .strategy(strategy)
        .run()
        .unwrap()
        .program
}

/// `t_i = tanh(t_{i-1}) + t_{i-1}`, `layers` times: 2 * layers + 3 nodes with the output.
fn skip_chain(layers: usize) -> Program {
    let mut text = String::from("input x: [3]\nlet t0 = tanh(x)\n");
    for i in 1..layers {
        text += &format!("let t{i} = tanh(t{}) + t{}\n", i - 1, i - 1);
    }
    text += &format!("out s = sum(t{})\n", layers - 1);
    Program::parse("skip", &text).unwrap()
}

fn draw(c: &mut Criterion, group: &str, programs: &[(String, Program)]) {
    let mut group = c.benchmark_group(group);
    for (name, program) in programs {
        let nodes = batchgraph::to_petgraph(program).node_count();
        group.bench_with_input(BenchmarkId::new(name.as_str(), nodes), program, |bench, p| {
            bench.iter(|| black_box(to_svg(p).unwrap()))
        });
    }
    group.finish();
}

fn examples(c: &mut Criterion) {
    let programs: Vec<(String, Program)> = EXAMPLES.iter().map(|&n| (n.to_string(), example(n))).collect();
    draw(c, "draw_example", &programs);
}

fn plans(c: &mut Criterion) {
    let mut programs = Vec::new();
    for name in EXAMPLES {
        let p = example(name);
        programs.push((format!("{name}_b2_unrolled"), batched(&p, 2, Strategy::Unroll)));
        programs.push((format!("{name}_b2_fused"), batched(&p, 2, Strategy::Fuse)));
    }
    draw(c, "draw_b2_plan", &programs);
}

fn large(c: &mut Criterion) {
    let programs = vec![
        (
            "mlp_b64_unrolled".to_string(),
            batched(&example("mlp"), 64, Strategy::Unroll),
        ),
        ("skip_chain_1000".to_string(), skip_chain(1000)),
    ];
    draw(c, "draw_large", &programs);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(300));
    targets = examples, plans, large
}
criterion_main!(benches);
