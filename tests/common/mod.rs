//! Helpers shared by the integration tests.
#![allow(dead_code)]

use batchgraph::{tensor_from_json, Program, Tensor, Values};
use serde_json::Value;

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
        Tensor::from_shape_fn(ndarray::IxDyn(shape), |_| self.uniform(lo, hi))
    }
}

/// Random values for every input and param of `program`, in [lo, hi).
pub fn random_values(program: &Program, rng: &mut Rng, lo: f64, hi: f64) -> Values<f64> {
    program
        .inputs
        .iter()
        .chain(&program.params)
        .map(|d| (d.name.clone(), rng.tensor(d.shape.dims(), lo, hi)))
        .collect()
}

/// The largest elementwise difference relative to max(1, |expected|).
pub fn rel_diff(actual: &Tensor<f64>, expected: &Tensor<f64>) -> f64 {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    actual
        .iter()
        .zip(expected.iter())
        .map(|(a, e)| (a - e).abs() / e.abs().max(1.0))
        .fold(0.0, f64::max)
}

pub fn json_tensor(v: &Value) -> Tensor<f64> {
    tensor_from_json("test", v).unwrap()
}

pub fn load_reference(name: &str) -> Value {
    let path = format!("{}/tests/reference/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
