//! Issue 20, "what is not there yet": the batched weight gradient of a layer
//! `W @ x` is the contraction `transpose(d) @ x` (rule `contract-outer`), not
//! a `[B, m, n]` stack of outer products reduced over the batch; in
//! micro-batches the contraction reads the per-example vectors the chunks
//! concatenate. Checked on the gradient program of `examples/digits.graph`:
//! shapes (no `[B, 32, 64]` or `[B, 10, 32]` value), values against the plan
//! without the rule and against the mean of per-example gradients, and the
//! measured peak memory. In micro-batches the sums over the batch are
//! accumulated chunk by chunk (`accumulate`), so what a step holds beyond its
//! inputs does not grow with the batch.

use batchgraph::{
    chunk_plan, grad, parse_file, predict_peak_bytes, BatchReduce, Batcher, Interpreter, Program, Rng, RuleSet, Run,
    Strategy, Tensor, Values,
};
use std::collections::HashSet;

/// The gradient program of the digits model's loss with respect to its params.
fn digits_gradient() -> Program {
    let path = format!("{}/examples/digits.graph", env!("CARGO_MANIFEST_DIR"));
    let (model, _) = batchgraph::train::loss_program(&parse_file(std::path::Path::new(&path)).unwrap(), None).unwrap();
    let params: Vec<String> = model.params.iter().map(|d| d.name.clone()).collect();
    grad(&model, Some(&params)).unwrap()
}

fn batched(gradient: &Program, b: usize, reduce: BatchReduce, rules: RuleSet) -> Program {
    Batcher::new(gradient)
        .size(b)
        .reduce(reduce)
        .strategy(Strategy::Fuse)
        .rules(rules)
        .run()
        .unwrap()
        .program
}

fn values_for(program: &Program, rng: &mut Rng) -> Values<f64> {
    program
        .inputs
        .iter()
        .chain(&program.params)
        .map(|d| (d.name.clone(), rng.tensor(d.shape.dims(), -1.0, 1.0)))
        .collect()
}

/// The largest difference relative to max(1, |expected|).
fn difference(actual: &Tensor<f64>, expected: &Tensor<f64>) -> f64 {
    assert_eq!(actual.shape(), expected.shape());
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs() / e.abs().max(1.0))
        .fold(0.0, f64::max)
}

fn outputs(program: &Program, values: &Values<f64>) -> (Vec<(String, Tensor<f64>)>, usize) {
    let run = Interpreter::new(program).evaluate(values).unwrap();
    (run.outputs, run.peak_bytes)
}

/// Every shape of rank 3 in the program with the batch as its leading axis.
fn stacks(program: &Program, b: usize) -> Vec<Vec<usize>> {
    (0..program.node_count())
        .map(|i| program.shape(i.into()).dims().to_vec())
        .filter(|d| d.len() == 3 && d[0] == b)
        .collect()
}

#[test]
fn the_batched_weight_gradient_is_a_contraction_with_the_same_values() {
    let gradient = digits_gradient();
    let mut rng = Rng::new(0x20a);
    for b in [2, 8, 64, 256] {
        for reduce in [BatchReduce::Mean, BatchReduce::Sum] {
            let with = batched(&gradient, b, reduce, RuleSet::builtin());
            let without = batched(&gradient, b, reduce, RuleSet::builtin().without("contract-outer"));
            // The rule is what removes the stacks: without it they are there.
            let held = stacks(&without, b);
            assert!(
                held.contains(&vec![b, 32, 64]) && held.contains(&vec![b, 10, 32]),
                "{held:?}"
            );
            let values = values_for(&with, &mut rng);
            let ((got, peak), (expected, _)) = (outputs(&with, &values), outputs(&without, &values));
            // (At a few examples the cost model may keep a stack of a few outer products: it is as cheap.)
            if b >= 64 {
                assert!(stacks(&with, b).is_empty(), "B = {b}, {reduce:?}:\n{}", with.to_text());
                assert!(predict_peak_bytes(&with, Run::Eval, 8) < b * 32 * 64 * 8);
                assert!(peak < b * 32 * 64 * 8, "B = {b}: measured peak {peak} bytes");
            }
            for ((name, g), (_, e)) in got.iter().zip(&expected) {
                let d = difference(g, e);
                assert!(d < 1e-12, "B = {b}, {reduce:?}: {name} differs by {d:e}");
            }
        }
    }
}

/// The mean over the batch of each per-example gradient (the gradient program run on one example at a time).
fn mean_of_per_example_gradients(gradient: &Program, values: &Values<f64>, b: usize) -> Vec<Tensor<f64>> {
    let mut sums: Vec<Tensor<f64>> = vec![];
    for i in 0..b {
        let example: Values<f64> = values
            .iter()
            .map(|(n, v)| match gradient.is_input(n) {
                true => (n.clone(), v.index_axis(ndarray::Axis(0), i).to_owned()),
                false => (n.clone(), v.clone()),
            })
            .collect();
        let (out, _) = outputs(gradient, &example);
        for (k, (_, t)) in out.into_iter().enumerate() {
            match sums.get_mut(k) {
                Some(s) => *s += &t,
                None => sums.push(t),
            }
        }
    }
    sums.into_iter().map(|s| s / b as f64).collect()
}

#[test]
fn micro_batches_compute_the_mean_of_per_example_gradients_without_the_stacks() {
    let gradient = digits_gradient();
    let over: HashSet<&str> = ["x", "y"].into_iter().collect();
    let mut rng = Rng::new(0x20b);
    for (b, k) in [(12, 5), (64, 16), (256, 64)] {
        let fused = batched(&gradient, b, BatchReduce::Mean, RuleSet::builtin());
        let chunked = chunk_plan(&fused, &over, k).unwrap();
        assert!(chunked.loops().any(), "{}", chunked.to_text());
        if b >= 64 {
            assert!(stacks(&chunked, b).is_empty(), "{}", chunked.to_text());
        }
        let values = values_for(&fused, &mut rng);
        let (got, peak) = outputs(&chunked, &values);
        assert_eq!(
            peak,
            predict_peak_bytes(&chunked, Run::Eval, 8),
            "{}",
            chunked.to_text()
        );
        let (fused_out, _) = outputs(&fused, &values);
        let per_example = mean_of_per_example_gradients(&gradient, &values, b);
        for (((name, g), (_, f)), e) in got.iter().zip(&fused_out).zip(&per_example) {
            let (d, e) = (difference(g, f), difference(g, e));
            assert!(
                d < 1e-12 && e < 1e-12,
                "B = {b}, k = {k}: {name} differs by {d:e} from fused, {e:e} from the per-example mean"
            );
        }
    }
}

/// A budget of 1,000,000 bytes for a step (the gradient program run forward): before the
/// contraction no plan fit at B = 256 (the smallest held 4,388,424 bytes); with it, the fused plan
/// does. At B = 1024 the inputs alone are 606,208 bytes and the fused plan 1,392,664: before the
/// micro-batches accumulated, no plan fit (their concatenated rows held as much as the fused plan);
/// now a plan in chunks fits, its sums accumulated chunk by chunk, and its measured peak is within
/// the budget.
#[test]
fn a_one_megabyte_budget_fits_a_step_of_256_and_of_1024_digits() {
    let gradient = digits_gradient();
    let budget = 1_000_000;
    let plan = |b: usize| {
        Batcher::new(&gradient)
            .size(b)
            .memory_budget(Some(budget))
            .price_for(Run::Eval)
            .run()
            .unwrap()
    };
    for b in [256, 1024] {
        let chosen = plan(b);
        let values = values_for(&chosen.program, &mut Rng::new(0x20c));
        let (_, peak) = outputs(&chosen.program, &values);
        assert!(
            peak <= budget,
            "B = {b}, {}: measured {peak} bytes",
            chosen.report.chosen.name
        );
        if b == 1024 {
            assert!(
                chosen.report.chosen.name.starts_with("chunks of"),
                "{}",
                chosen.report.chosen.name
            );
        }
    }
}

/// Gradient accumulation proper: in chunks of 64, the bytes a step holds beyond its inputs
/// are the same at B = 256, 1024 and 2048 (one accumulator per sum, one chunk's values),
/// measured and predicted alike, and its gradients are the fused plan's.
#[test]
fn accumulated_chunks_hold_the_same_bytes_at_any_batch() {
    let gradient = digits_gradient();
    let over: HashSet<&str> = ["x", "y"].into_iter().collect();
    let mut rng = Rng::new(0x20d);
    let mut beyond_inputs = vec![];
    for b in [256, 1024, 2048] {
        let fused = batched(&gradient, b, BatchReduce::Mean, RuleSet::builtin());
        let chunked = chunk_plan(&fused, &over, 64).unwrap();
        let accumulates = chunked
            .expr
            .as_ref()
            .iter()
            .any(|n| matches!(n, batchgraph::Op::Accumulate(_)));
        assert!(accumulates, "{}", chunked.to_text());
        let values = values_for(&fused, &mut rng);
        let (got, peak) = outputs(&chunked, &values);
        assert_eq!(peak, predict_peak_bytes(&chunked, Run::Eval, 8), "B = {b}");
        let inputs: usize = chunked.inputs.iter().map(|d| d.shape.elements() * 8).sum();
        beyond_inputs.push(peak - inputs);
        let (expected, _) = outputs(&fused, &values);
        for ((name, g), (_, e)) in got.iter().zip(&expected) {
            let d = difference(g, e);
            assert!(d < 1e-12, "B = {b}: {name} differs by {d:e}");
        }
    }
    assert!(
        beyond_inputs.windows(2).all(|w| w[0] == w[1]),
        "bytes beyond the inputs: {beyond_inputs:?}"
    );
}
