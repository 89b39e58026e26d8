//! Micro-batches chosen under a memory budget: the 3-layer MLP of
//! `examples/mlp3.graph` at B = 4096, batched once fused and once with a
//! budget of 1/8 of the fused plan's measured peak. Prints, for both, the
//! predicted and the measured peak bytes of a gradient, the time of a
//! gradient, and the largest difference between their gradients.
//!
//! `cargo run --release --example micro_batches [B] [FRACTION]`

use batchgraph::{parse_file, random_values, Batcher, Interpreter, Program, Strategy};
use std::time::{Duration, Instant};

fn best_time_us(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 5 || start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64() * 1e6);
        runs += 1;
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let b: usize = args.next().map_or(Ok(4096), |a| a.parse())?;
    let fraction: f64 = args.next().map_or(Ok(0.125), |a| a.parse())?;
    let path = format!("{}/examples/mlp3.graph", env!("CARGO_MANIFEST_DIR"));
    let mlp = parse_file(std::path::Path::new(&path))?;
    let fused = Batcher::new(&mlp).size(b).strategy(Strategy::Fuse).run()?;
    let values = random_values(&fused.program, 3);
    let measure = |program: &Program| -> Result<_, batchgraph::Error> {
        let interpreter = Interpreter::new(program);
        let gradient = interpreter.gradient(&values)?;
        let us = best_time_us(Duration::from_millis(1500), || {
            interpreter.gradient(&values).expect("runs");
        });
        Ok((gradient, us))
    };
    let (fused_gradient, fused_us) = measure(&fused.program)?;
    let budget = (fused_gradient.peak_bytes as f64 * fraction) as usize;
    let chosen = Batcher::new(&mlp).size(b).memory_budget(Some(budget)).run()?;
    let (gradient, us) = measure(&chosen.program)?;
    let difference = gradient
        .grads
        .iter()
        .zip(&fused_gradient.grads)
        .flat_map(|((_, a), (_, b))| a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()))
        .fold(0.0f64, f64::max);
    println!(
        "MLP 16-64-64-1, B = {b}, gradient of the mean loss (f64), budget {budget} bytes (1/{:.0} of the fused peak)\n",
        1.0 / fraction
    );
    println!("| plan | predicted peak | measured peak | µs per gradient |");
    println!("|---|---|---|---|");
    for (name, report, measured, us) in [
        ("fused", &fused.report, fused_gradient.peak_bytes, fused_us),
        (
            chosen.report.chosen.name.as_str(),
            &chosen.report,
            gradient.peak_bytes,
            us,
        ),
    ] {
        println!(
            "| {name} | {} | {measured} | {us:.0} |",
            report.chosen.predicted_peak_bytes
        );
    }
    println!(
        "\ntime {:.2}x the fused plan's; largest gradient difference {difference:.1e}",
        us / fused_us
    );
    println!("\nthe chosen program:\n{}", chosen.program.to_text());
    Ok(())
}
