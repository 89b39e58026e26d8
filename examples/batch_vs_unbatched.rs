//! The library end to end on the seed graph: parse, batch both ways, run
//! forward and backward, and check the batched gradient against the mean of
//! per-example gradients.
//!
//! Run: `cargo run --release --example batch_vs_unbatched`.

use batchgraph::{random_values, Batcher, Interpreter, Program, Strategy, Values};
use ndarray::Axis;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = Program::parse("examples/seed.graph", include_str!("seed.graph"))?;
    println!(
        "per-example program ({} nodes after CSE):\n{}",
        seed.node_count(),
        seed.to_text()
    );

    let b = 16;
    let values = random_values(&Batcher::new(&seed).size(b).run()?.program, 7);
    let per_example = Interpreter::new(&seed);
    let rows: Vec<Values<f64>> = (0..b)
        .map(|i| {
            [
                ("x".to_string(), values["x"].index_axis(Axis(0), i).to_owned()),
                ("w".to_string(), values["w"].clone()),
            ]
            .into()
        })
        .collect();
    let mean_loss: f64 = rows
        .iter()
        .map(|r| per_example.evaluate(r).unwrap().outputs[0].1.sum())
        .sum::<f64>()
        / b as f64;
    let mean_grad_w = rows
        .iter()
        .map(|r| per_example.gradient(r).unwrap().grads[1].1.clone())
        .fold(ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[4, 3])), |acc, g| {
            acc + g / b as f64
        });

    for strategy in [Strategy::Unroll, Strategy::Fuse, Strategy::Auto] {
        let batched = Batcher::new(&seed).over(["x"]).size(b).strategy(strategy).run()?;
        let result = Interpreter::new(&batched.program).gradient(&values)?;
        let loss = result.outputs[0].1.sum();
        let grad_w = &result.grads.iter().find(|(n, _)| n == "w").unwrap().1;
        let diff = (grad_w - &mean_grad_w).iter().fold(0.0f64, |m, d| m.max(d.abs()));
        println!(
            "{strategy:?}: {} nodes, cost {:.1} µs; loss {loss:.12} (mean of per-example losses {mean_loss:.12}); \
             largest gradient difference {diff:.1e}",
            batched.program.node_count(),
            batched.report.chosen.cost
        );
    }
    Ok(())
}
