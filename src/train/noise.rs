//! The gradient noise scale of McCandlish et al., "An Empirical Model of
//! Large-Batch Training" (2018): B_simple = tr(Sigma) / |G|^2, where G is the
//! mean gradient and Sigma the covariance of the per-example gradients. The
//! critical batch, past which a bigger batch stops cutting the steps in
//! proportion, is close to it.
//!
//! Computed from per-example gradients (the gradient program batched with no
//! reduction: vmap of grad), a batch of B examples at a time, two ways:
//! - over the whole data: |G|^2 of the mean gradient, tr(Sigma) the unbiased
//!   sample covariance's trace, and their ratio ([`NoiseScale`]);
//! - the paper's unbiased two-batch-size estimator (its Appendix A), with
//!   B_small = 1 (each example's gradient) and B_big = B (each batch's mean):
//!   per batch, |G|^2 ~ (B |G_big|^2 - |G_small|^2) / (B - 1) and
//!   tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 - 1/B), both unbiased; their
//!   means over the batches, the ratio of the means, and its standard error
//!   by the jackknife over batches ([`TwoBatchEstimate`]).

use crate::error::{Error, Result};
use crate::ir::Program;
use crate::runtime::{Interpreter, Values};
use crate::train::data::Dataset;
use crate::train::run::per_example_by_size;
use crate::train::step::loss_program;
use crate::transform::grad;
use ndarray::Axis;
use serde::Serialize;

/// The noise scale over the whole data.
#[derive(Clone, Debug, Serialize)]
pub struct NoiseScale {
    /// Examples used (all of the data).
    pub examples: usize,
    /// tr(Sigma) / |G|^2.
    pub b_simple: f64,
    /// The trace of the per-example gradients' covariance (unbiased: divided by examples - 1).
    pub tr_sigma: f64,
    /// |G|^2 of the mean gradient over the data.
    pub g_norm2: f64,
    /// The two-batch-size estimator (when there are at least two whole batches of B >= 2).
    pub two_batch: Option<TwoBatchEstimate>,
}

/// McCandlish et al.'s unbiased estimates from batches of B_small = 1 and B_big = B.
#[derive(Clone, Debug, Serialize)]
pub struct TwoBatchEstimate {
    /// B_small (1: one example's gradient).
    pub b_small: usize,
    /// B_big (the batch).
    pub b_big: usize,
    /// Whole batches of B_big averaged over.
    pub batches: usize,
    /// The unbiased estimate of |G|^2 (of the true mean gradient).
    pub g_norm2: f64,
    /// The unbiased estimate of tr(Sigma).
    pub tr_sigma: f64,
    /// Their ratio.
    pub b_simple: f64,
    /// The standard error of `b_simple` (jackknife over the batches).
    pub standard_error: f64,
}

/// Per batch: the sum of the per-example gradients (flattened, params in
/// order) and the sum of their squared norms.
struct BatchSums {
    size: usize,
    sum: Vec<f64>,
    squares: f64,
}

/// The per-example gradients of `program` (a per-example loss, `loss` its
/// output or the only scalar one) at `params`, over `data` in batches of `batch`.
pub fn noise_scale(
    program: &Program,
    loss: Option<&str>,
    params: &Values<f64>,
    data: &Dataset,
    batch: usize,
) -> Result<NoiseScale> {
    if data.len < 2 {
        return Err(Error::Unsupported(
            "the noise scale needs at least 2 examples (a covariance)".into(),
        ));
    }
    let (model, _) = loss_program(program, loss)?;
    let names: Vec<String> = model.params.iter().map(|d| d.name.clone()).collect();
    if names.is_empty() {
        return Err(Error::Unsupported(
            "the program has no params: no gradient to measure".into(),
        ));
    }
    let gradient = grad(&model, Some(&names))?;
    let batch = batch.clamp(1, data.len);
    let programs = per_example_by_size(&gradient, data.len, batch)?;
    let mut batches = vec![];
    let mut start = 0;
    while start < data.len {
        let (size, program) = programs
            .iter()
            .find(|(size, _)| start + size <= data.len)
            .expect("the last size is the remainder");
        let indices: Vec<usize> = (start..start + size).collect();
        let mut values = data.rows(&indices);
        values.extend(params.iter().map(|(n, v)| (n.clone(), v.clone())));
        let outputs = Interpreter::new(program).evaluate(&values)?.outputs;
        batches.push(batch_sums(*size, &outputs[1..]));
        start += size;
    }
    Ok(estimate(&batches, batch))
}

/// Sums of a batch's per-example gradients, each output `[size, ...]`.
fn batch_sums(size: usize, grads: &[(String, crate::runtime::Tensor<f64>)]) -> BatchSums {
    let mut sum = vec![];
    let mut squares = 0.0;
    for (_, g) in grads {
        sum.extend(g.sum_axis(Axis(0)).iter().copied());
        squares += g.iter().map(|v| v * v).sum::<f64>();
    }
    BatchSums { size, sum, squares }
}

fn norm2(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum()
}

fn estimate(batches: &[BatchSums], batch: usize) -> NoiseScale {
    let n: usize = batches.iter().map(|b| b.size).sum();
    let mut total = vec![0.0; batches[0].sum.len()];
    for b in batches {
        for (t, s) in total.iter_mut().zip(&b.sum) {
            *t += s;
        }
    }
    let mean: Vec<f64> = total.iter().map(|t| t / n as f64).collect();
    let g_norm2 = norm2(&mean);
    let squares: f64 = batches.iter().map(|b| b.squares).sum();
    let tr_sigma = (squares - n as f64 * g_norm2) / (n - 1) as f64;
    // Per whole batch: the unbiased |G|^2 and tr(Sigma) from B_small = 1, B_big = B.
    let per_batch: Vec<(f64, f64)> = batches
        .iter()
        .filter(|b| b.size == batch && batch >= 2)
        .map(|b| {
            let big = norm2(&b.sum) / (batch * batch) as f64;
            let small = b.squares / batch as f64;
            let bf = batch as f64;
            ((bf * big - small) / (bf - 1.0), (small - big) / (1.0 - 1.0 / bf))
        })
        .collect();
    NoiseScale {
        examples: n,
        b_simple: tr_sigma / g_norm2,
        tr_sigma,
        g_norm2,
        two_batch: (per_batch.len() >= 2).then(|| two_batch(&per_batch, batch)),
    }
}

/// The means of the per-batch estimates, their ratio, and its jackknife standard error.
fn two_batch(per_batch: &[(f64, f64)], batch: usize) -> TwoBatchEstimate {
    let k = per_batch.len() as f64;
    let (g_total, s_total) = per_batch.iter().fold((0.0, 0.0), |(g, s), p| (g + p.0, s + p.1));
    let b_simple = s_total / g_total;
    let leave_one_out: Vec<f64> = per_batch.iter().map(|p| (s_total - p.1) / (g_total - p.0)).collect();
    let mean = leave_one_out.iter().sum::<f64>() / k;
    let variance = leave_one_out.iter().map(|b| (b - mean).powi(2)).sum::<f64>() * (k - 1.0) / k;
    TwoBatchEstimate {
        b_small: 1,
        b_big: batch,
        batches: per_batch.len(),
        g_norm2: g_total / k,
        tr_sigma: s_total / k,
        b_simple,
        standard_error: variance.sqrt(),
    }
}
