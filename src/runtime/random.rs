//! The one pseudo-random generator of the crate (xorshift64), for values to
//! run programs on: deterministic, so that every failure reproduces.

use crate::ir::Program;
use crate::runtime::interp::Values;
use crate::runtime::kernels::Tensor;

/// A small deterministic generator (xorshift64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is mapped away from the fixed point).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A tensor of `shape` with elements uniform in [lo, hi).
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
        Tensor::from_shape_fn(ndarray::IxDyn(shape), |_| self.uniform(lo, hi))
    }
}

/// Values in [-1, 1) for every input and param of `program`, from `seed`.
pub fn random_values(program: &Program, seed: u64) -> Values<f64> {
    let mut rng = Rng::new(seed);
    program
        .inputs
        .iter()
        .chain(&program.params)
        .map(|d| (d.name.clone(), rng.tensor(d.shape.dims(), -1.0, 1.0)))
        .collect()
}
