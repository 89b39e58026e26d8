//! Mini-batch SGD with batchgraph: fit y = sin(x) + noise with a 1-32-1 tanh
//! MLP. The per-example loss (examples/sine_mlp.graph) is batched by the
//! library, reverse mode gives the gradient, and the params are updated.
//!
//! 1. Trains with the fused plan to a stated loss, and again with the
//!    unrolled plan: the same losses (to rounding), a longer time.
//! 2. The experiment: one step on a batch of 2k computed as two passes of k
//!    (gradient accumulation) against two steps on batches of k, plotted
//!    against examples seen and against time.
//!
//! Run: `cargo run --release --example train_mlp [-- OUT_DIR]` (default out/train_mlp).

use batchgraph::{line_chart_svg, Batcher, Chart, Interpreter, Program, Rng, Series, Strategy, Tensor, Values};
use ndarray::{s, IxDyn};
use std::time::Instant;

const EXAMPLES: usize = 512;
const K: usize = 16;
const LEARNING_RATE: f64 = 0.05;
/// The noise is uniform in [-0.1, 0.1] (variance 0.0033): the floor of the loss.
const TARGET_LOSS: f64 = 0.005;

struct Data {
    x: Tensor<f64>,
    y: Tensor<f64>,
}

fn data() -> Data {
    let x = Rng::new(1).tensor(&[EXAMPLES, 1], -1.0, 1.0) * 3.0;
    let noise = Rng::new(2).tensor(&[EXAMPLES, 1], -1.0, 1.0) * 0.1;
    let y = x.mapv(f64::sin) + noise;
    Data { x, y }
}

fn init_params(program: &Program) -> Values<f64> {
    program
        .params
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let fan_in = if d.shape.rank() == 2 { d.shape.dims()[1] } else { 1 } as f64;
            (
                d.name.clone(),
                Rng::new(10 + i as u64).tensor(d.shape.dims(), -1.0, 1.0) / fan_in.sqrt(),
            )
        })
        .collect()
}

fn rows(data: &Data, start: usize, n: usize) -> Values<f64> {
    [
        (
            "x".to_string(),
            data.x.slice(s![start..start + n, ..]).to_owned().into_dyn(),
        ),
        (
            "y".to_string(),
            data.y.slice(s![start..start + n, ..]).to_owned().into_dyn(),
        ),
    ]
    .into()
}

/// The mean loss over the whole data set, with the batched (fused) program of size EXAMPLES.
fn full_loss(program: &Program, params: &Values<f64>, data: &Data) -> f64 {
    let mut values = rows(data, 0, EXAMPLES);
    values.extend(params.clone());
    Interpreter::new(program).evaluate(&values).unwrap().outputs[0].1.sum()
}

/// Mean-loss gradient of `passes` consecutive passes of `k` rows from `start`, accumulated.
fn gradient(
    interpreter: &Interpreter,
    params: &Values<f64>,
    data: &Data,
    start: usize,
    k: usize,
    passes: usize,
) -> Values<f64> {
    let mut total: Values<f64> = params
        .iter()
        .map(|(n, p)| (n.clone(), Tensor::zeros(IxDyn(p.shape()))))
        .collect();
    for pass in 0..passes {
        let mut values = rows(data, start + pass * k, k);
        values.extend(params.clone());
        for (name, g) in interpreter.gradient(&values).unwrap().grads {
            if let Some(t) = total.get_mut(&name) {
                *t += &(g / passes as f64);
            }
        }
    }
    total
}

fn step(params: &mut Values<f64>, grads: &Values<f64>, lr: f64) {
    for (name, p) in params.iter_mut() {
        *p -= &(&grads[name] * lr);
    }
}

/// One training run: each step takes `passes` passes of `k` rows. Records
/// (examples seen, seconds, full-data loss) every `every` examples.
fn train(
    program: &Program,
    full: &Program,
    data: &Data,
    k: usize,
    passes: usize,
    lr: f64,
    epochs: usize,
) -> Vec<(usize, f64, f64)> {
    let interpreter = Interpreter::new(program);
    let mut params = init_params(program);
    let mut curve = vec![(0, 0.0, full_loss(full, &params, data))];
    let (mut seen, mut seconds) = (0, 0.0);
    let per_step = k * passes;
    for _ in 0..epochs {
        let mut start = 0;
        while start + per_step <= EXAMPLES {
            let t = Instant::now();
            let grads = gradient(&interpreter, &params, data, start, k, passes);
            step(&mut params, &grads, lr);
            seconds += t.elapsed().as_secs_f64();
            start += per_step;
            seen += per_step;
        }
        curve.push((seen, seconds, full_loss(full, &params, data)));
    }
    curve
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "out/train_mlp".into()));
    std::fs::create_dir_all(&out)?;
    let example = Program::parse("examples/sine_mlp.graph", include_str!("sine_mlp.graph"))?;
    let data = data();
    let fused = Batcher::new(&example).size(K).strategy(Strategy::Fuse).run()?.program;
    let unrolled = Batcher::new(&example).size(K).strategy(Strategy::Unroll).run()?.program;
    let fused_2k = Batcher::new(&example)
        .size(2 * K)
        .strategy(Strategy::Fuse)
        .run()?
        .program;
    let full = Batcher::new(&example)
        .size(EXAMPLES)
        .strategy(Strategy::Fuse)
        .run()?
        .program;
    println!("the batched loss (B = {K}, fused):\n{}", fused.to_text());

    // 1. Fused and unrolled: the same run.
    let epochs = 200;
    let fused_curve = train(&fused, &full, &data, K, 1, LEARNING_RATE, epochs);
    for (epoch, (seen, _, loss)) in fused_curve.iter().enumerate().step_by(25) {
        println!("epoch {epoch:>4}  examples {seen:>7}  loss {loss:.5}");
    }
    let (_, fused_seconds, final_loss) = *fused_curve.last().unwrap();
    println!(
        "final loss {final_loss:.5} after {epochs} epochs (target {TARGET_LOSS}): {}",
        if final_loss < TARGET_LOSS {
            "reached"
        } else {
            "NOT reached"
        }
    );
    let unrolled_curve = train(&unrolled, &full, &data, K, 1, LEARNING_RATE, epochs);
    let largest = fused_curve
        .iter()
        .zip(&unrolled_curve)
        .map(|(a, b)| (a.2 - b.2).abs())
        .fold(0.0, f64::max);
    let unrolled_seconds = unrolled_curve.last().unwrap().1;
    println!(
        "unrolled plan ({} nodes against {}): largest loss difference {largest:.1e}; training time {:.2} s against {:.2} s fused ({:.1}x)",
        unrolled.node_count(),
        fused.node_count(),
        unrolled_seconds,
        fused_seconds,
        unrolled_seconds / fused_seconds
    );
    let chart = Chart {
        title: "sine MLP, B = 16: full-data loss".into(),
        x_label: "epoch".into(),
        y_label: "mean squared error".into(),
        log_x: false,
        log_y: true,
    };
    let series = [Series {
        label: "fused plan".into(),
        points: fused_curve.iter().enumerate().map(|(e, p)| (e as f64, p.2)).collect(),
        line: true,
    }];
    std::fs::write(out.join("loss.svg"), line_chart_svg(&chart, &series)?)?;

    // 2. The experiment: one step on 2k in two passes of k, or two steps on k.
    let epochs = 100;
    let runs = [
        (
            "two steps on k = 16",
            train(&fused, &full, &data, K, 1, LEARNING_RATE, epochs),
        ),
        (
            "one step on 2k = 32, two passes of 16",
            train(&fused, &full, &data, K, 2, LEARNING_RATE, epochs),
        ),
        (
            "one step on 2k = 32, two passes, lr x 2",
            train(&fused, &full, &data, K, 2, 2.0 * LEARNING_RATE, epochs),
        ),
        (
            "one step on 2k = 32, one pass of 32",
            train(&fused_2k, &full, &data, 2 * K, 1, LEARNING_RATE, epochs),
        ),
    ];
    println!(
        "\nthe experiment: {epochs} epochs each ({} examples seen)",
        epochs * EXAMPLES
    );
    println!(
        "{:<42} {:>12} {:>12} {:>14}",
        "", "final loss", "seconds", "µs / example"
    );
    for (name, curve) in &runs {
        let (seen, seconds, loss) = *curve.last().unwrap();
        println!(
            "{name:<42} {loss:>12.5} {seconds:>12.3} {:>14.3}",
            seconds * 1e6 / seen as f64
        );
    }
    let per_example = |i: usize| {
        let (seen, seconds, _) = *runs[i].1.last().unwrap();
        seconds * 1e6 / seen as f64
    };
    let (small, accumulated) = (runs[0].1.last().unwrap().2, runs[1].1.last().unwrap().2);
    println!(
        "what it shows: one step on 2k in two passes cost {:.2}x the time of two steps on k (per example {:.2} µs \
         against {:.2} µs), and at equal examples seen the two smaller steps got {} ({small:.5} against {accumulated:.5}).",
        per_example(1) / per_example(0),
        per_example(1),
        per_example(0),
        if small < accumulated { "further" } else { "less far" }
    );
    let halfway = epochs / 4;
    println!(
        "after {} examples: {:.5} (two steps on k) against {:.5} (accumulated 2k, same lr)",
        runs[0].1[halfway].0, runs[0].1[halfway].2, runs[1].1[halfway].2
    );
    let by = |f: fn(&(usize, f64, f64)) -> f64,
              title: &str,
              x_label: &str,
              file: &str|
     -> Result<(), Box<dyn std::error::Error>> {
        let chart = Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: "full-data loss".into(),
            log_x: false,
            log_y: true,
        };
        let series: Vec<Series> = runs
            .iter()
            .map(|(name, curve)| Series {
                label: name.to_string(),
                points: curve.iter().map(|p| (f(p), p.2)).collect(),
                line: true,
            })
            .collect();
        std::fs::write(out.join(file), line_chart_svg(&chart, &series)?)?;
        Ok(())
    };
    by(
        |p| p.0 as f64,
        "gradient accumulation: loss against examples seen",
        "examples seen",
        "accumulation_examples.svg",
    )?;
    by(
        |p| p.1,
        "gradient accumulation: loss against time",
        "seconds",
        "accumulation_time.svg",
    )?;
    println!(
        "\npictures: {}/loss.svg, accumulation_examples.svg, accumulation_time.svg",
        out.display()
    );
    Ok(())
}
