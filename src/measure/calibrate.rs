//! Calibration: this machine's interpreter timed on three programs, as a
//! cost profile for the e-graph stage's cost model.

use crate::egraph::CostProfile;
use crate::front::parse_program;
use crate::runtime::{Interpreter, Tensor};
use std::time::Instant;

/// Measures this machine's interpreter and returns a `cpu` profile:
/// per-op overhead from a chain of scalar ops, throughput from a 256x256
/// matmul, bandwidth from adding two 1M-element arrays.
pub fn calibrate() -> CostProfile {
    fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .fold(f64::INFINITY, f64::min)
    }
    let run = |text: &str, runs: usize| {
        let program = parse_program("calibrate", text).expect("calibration program parses");
        let values = program
            .inputs
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    Tensor::<f64>::from_elem(ndarray::IxDyn(d.shape.dims()), 0.5),
                )
            })
            .collect();
        let interpreter = Interpreter::new(&program);
        best_of(runs, || {
            interpreter.evaluate(&values).expect("calibration program runs");
        })
    };
    let mut chain = String::from("input x: []\nlet t0 = x\n");
    for i in 1..=1000 {
        chain.push_str(&format!("let t{i} = t{} * 0.999\n", i - 1));
    }
    chain.push_str("out y = t1000\n");
    let overhead_us = run(&chain, 20) / 1000.0;
    let n = 256.0;
    let matmul_us = run("input a: [256, 256]\ninput b: [256, 256]\nout c = a @ b", 10) - overhead_us;
    let flops_per_us = 2.0 * n * n * n / matmul_us.max(1e-3);
    let add_us = run("input a: [1000000]\ninput b: [1000000]\nout c = a + b", 10) - overhead_us;
    let bytes_per_us = 3.0 * 8.0 * 1e6 / add_us.max(1e-3);
    CostProfile {
        name: "cpu".into(),
        overhead_us,
        flops_per_us,
        bytes_per_us,
    }
}
