//! Reductions whose inputs tie, batched every way (issue 21, item 3): the
//! gradient of the batched program is the mean of the per-example gradients,
//! so a tie shares the gradient evenly in every plan as it does per example
//! (and in JAX). Generated over every reduction, every rank 1-4 and axis set
//! (every axis, or one), every strategy, chunk plans and autobatching; each
//! gradient checked three ways: reverse mode and the `grad` program, forward
//! mode and the `jvp` program, central finite differences along a direction
//! that keeps the ties.

mod common;
use batchgraph::{
    autobatch, chunk_plan, expand_loops, AutobatchOptions, Batcher, Interpreter, Program, Reduce, Strategy, Tensor,
    Values, MAX_NODES,
};
use common::{grad_program_difference, json_tensor, jvp_program_difference, load_reference, rel_diff, Rng};
use ndarray::{Axis, IxDyn};
use std::collections::HashSet;

/// Per-example shapes, ranks 1-4.
const SHAPES: &[&[usize]] = &[&[4], &[2, 3], &[2, 2, 2], &[2, 1, 2, 2]];

/// `sum(r(x + b))` and `sum(r(x + b, k))` for every reduction, shape and axis.
fn tied_programs() -> Vec<(Program, Reduce)> {
    let mut programs = vec![];
    for &r in Reduce::ALL {
        for dims in SHAPES {
            let shape = format!("{dims:?}");
            let calls =
                std::iter::once(format!("{r}(x + b)")).chain((0..dims.len()).map(|k| format!("{r}(x + b, {k})")));
            for call in calls {
                let text = format!("input x: {shape}\nparam b: {shape}\nout s = sum({call})\n");
                programs.push((Program::parse("tied", &text).unwrap(), r));
            }
        }
    }
    programs
}

/// Every plan of `program` batched over `x` at size `b` (mean), by name.
fn every_plan(program: &Program, b: usize) -> Vec<(String, Program)> {
    let batcher = |strategy| {
        Batcher::new(program)
            .over(["x"])
            .size(b)
            .strategy(strategy)
            .run()
            .unwrap()
            .program
    };
    let mut plans: Vec<(String, Program)> = [Strategy::Unroll, Strategy::Fuse, Strategy::Auto]
        .into_iter()
        .map(|s| (format!("{s:?}"), batcher(s)))
        .collect();
    let fused = plans[1].1.clone();
    let over: HashSet<&str> = ["x"].into_iter().collect();
    for k in (1..b).filter(|&k| !b.is_multiple_of(k) || k == 1) {
        plans.push((format!("chunks of {k}"), chunk_plan(&fused, &over, k).unwrap()));
    }
    // The copies written out, grouped back by autobatching (every group taken).
    let copies = expand_loops(&plans[0].1, MAX_NODES).unwrap();
    let options = AutobatchOptions {
        batch_every_group: true,
        ..AutobatchOptions::default()
    };
    plans.push(("autobatch".into(), autobatch(&copies, &options).unwrap().program));
    plans
}

/// Values with ties: integers from {0, 1, 2} (x, over the batch) and {0, 1} (b).
fn tied_values(program: &Program, b: usize, rng: &mut Rng) -> Values<f64> {
    let dims = program.inputs[0].shape.dims().to_vec();
    let batched: Vec<usize> = std::iter::once(b).chain(dims.iter().copied()).collect();
    let x = rng.tensor(&batched, 0.0, 3.0).mapv(f64::floor);
    let shared = rng.tensor(&dims, 0.0, 2.0).mapv(f64::floor);
    [("x".to_string(), x), ("b".to_string(), shared)].into_iter().collect()
}

/// Example `i`'s values: row `i` of x, b shared.
fn example(values: &Values<f64>, i: usize) -> Values<f64> {
    let mut one = values.clone();
    one.insert("x".into(), values["x"].index_axis(Axis(0), i).to_owned());
    one
}

/// The mean over the batch of the per-example gradients: x's stacked over the batch, b's summed, both over B.
fn mean_of_per_example_grads(program: &Program, values: &Values<f64>, b: usize) -> Values<f64> {
    let per: Vec<_> = (0..b)
        .map(|i| Interpreter::new(program).gradient(&example(values, i)).unwrap().grads)
        .collect();
    let mut mean = Values::new();
    for (v, (name, g)) in per[0].iter().enumerate() {
        let scaled: Vec<Tensor<f64>> = per.iter().map(|p| &p[v].1 / b as f64).collect();
        let value = match name.as_str() {
            "x" => ndarray::stack(Axis(0), &scaled.iter().map(|t| t.view()).collect::<Vec<_>>()).unwrap(),
            _ => scaled.iter().fold(Tensor::zeros(IxDyn(g.shape())), |acc, t| acc + t),
        };
        mean.insert(name.clone(), value);
    }
    mean
}

/// `sum(a * b)` over every named tensor of `grads`.
fn dot(grads: &Values<f64>, direction: &Values<f64>) -> f64 {
    grads.iter().map(|(n, g)| (g * &direction[n]).sum()).sum()
}

/// The batched plan's output at `values`.
fn output(plan: &Program, values: &Values<f64>) -> f64 {
    *Interpreter::new(plan).evaluate(values).unwrap().outputs[0]
        .1
        .first()
        .unwrap()
}

/// Checks `plan` at `values` against `expected` gradients three ways; `Err` names what differs.
fn check_three_ways(plan: &Program, values: &Values<f64>, expected: &Values<f64>, rng: &mut Rng) -> Result<(), String> {
    let reverse = Interpreter::new(plan)
        .gradient(values)
        .map_err(|e| e.to_string())?
        .grads;
    for (name, g) in &reverse {
        let d = rel_diff(g, &expected[name]);
        if d > 1e-12 {
            return Err(format!(
                "reverse mode: grad {name} = {g}, the per-example mean is {}",
                expected[name]
            ));
        }
    }
    // The gradient program of a `chunks` loop reading an outer value (b) sums
    // its chunks' contributions with `accumulate` (issue 20); every plan has one.
    let symbolic = batchgraph::grad(plan, None).is_ok() || !plan.to_text().contains("chunks(");
    let d = if symbolic {
        grad_program_difference(plan, values)
    } else {
        0.0
    };
    if d > 1e-12 {
        return Err(format!("the grad program differs from reverse mode by {d}"));
    }
    // Forward mode along a random direction: the gradient's dot product with it.
    let direction: Values<f64> = values
        .iter()
        .map(|(n, v)| (n.clone(), rng.tensor(v.shape(), -1.0, 1.0)))
        .collect();
    let tangents = Interpreter::new(plan)
        .tangents(values, &direction)
        .map_err(|e| e.to_string())?;
    let (forward, want) = (*tangents.jvp[0].1.first().unwrap(), dot(expected, &direction));
    if (forward - want).abs() > 1e-12 * want.abs().max(1.0) {
        return Err(format!("forward mode gives {forward}, the per-example mean {want}"));
    }
    let d = if symbolic {
        jvp_program_difference(plan, values, &direction)
    } else {
        0.0
    };
    if d > 1e-12 {
        return Err(format!("the jvp program differs from forward mode by {d}"));
    }
    // Finite differences along a direction that moves tied elements of x + b
    // together (a function of their common value), so the ties hold and the
    // program is differentiable along it; b stays.
    let mut along = values.clone();
    along.insert("b".into(), Tensor::zeros(values["b"].raw_dim()));
    let sum = &values["x"] + &values["b"];
    along.insert("x".into(), sum.mapv(|v| 1.0 + v * v / 4.0));
    let h = 1e-3;
    let shifted = |sign: f64| -> Values<f64> {
        values
            .iter()
            .map(|(n, v)| (n.clone(), v + &(&along[n] * (sign * h))))
            .collect()
    };
    let central = (output(plan, &shifted(1.0)) - output(plan, &shifted(-1.0))) / (2.0 * h);
    let want = dot(expected, &along);
    if (central - want).abs() > 1e-8 * want.abs().max(1.0) {
        return Err(format!(
            "finite differences give {central}, the per-example mean {want}"
        ));
    }
    Ok(())
}

/// The generated test: every reduction, rank, axis set and plan, at B = 1 and 3.
#[test]
fn tied_reductions_batch_to_the_mean_of_per_example_gradients_in_every_plan() {
    let mut rng = Rng::new(21);
    let mut failures = vec![];
    let programs = tied_programs();
    for (program, _) in &programs {
        for b in [1, 3] {
            let values = tied_values(program, b, &mut rng);
            let expected = mean_of_per_example_grads(program, &values, b);
            for (plan_name, plan) in every_plan(program, b) {
                if let Err(e) = check_three_ways(&plan, &values, &expected, &mut rng) {
                    failures.push(format!(
                        "{}B = {b}, {plan_name}: {e}\n{}",
                        program.to_text(),
                        plan.to_text()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every reduction was tried, each at every rank and axis (1 + rank programs per shape).
    let per_op: usize = SHAPES.iter().map(|d| 1 + d.len()).sum();
    assert_eq!(programs.len(), Reduce::ALL.len() * per_op);
}

/// Against JAX (`tests/reference/tied_reductions.json`, written by
/// `tied_reductions.py`): the per-example gradients, and every plan's value
/// and gradient of the batch mean, for every reduction the file covers (it
/// must cover every reduction of the table).
#[test]
fn tied_reductions_agree_with_jax_in_every_plan() {
    let reference = load_reference("tied_reductions");
    let cases = reference["cases"].as_array().unwrap();
    let covered: HashSet<&str> = cases.iter().map(|c| c["reduction"].as_str().unwrap()).collect();
    for r in Reduce::ALL {
        assert!(
            covered.contains(r.name()),
            "no JAX case for {r}: rerun tied_reductions.py with it"
        );
    }
    let mut rng = Rng::new(3);
    let mut failures = vec![];
    for case in cases {
        let program = Program::parse("jax", case["program"].as_str().unwrap()).unwrap();
        let batch = &case["batch"];
        let b = batch["size"].as_u64().unwrap() as usize;
        let values: Values<f64> = ["x", "b"]
            .into_iter()
            .map(|n| (n.to_string(), json_tensor(&batch["inputs"][n])))
            .collect();
        let jax_grads: Values<f64> = ["x", "b"]
            .into_iter()
            .map(|n| (n.to_string(), json_tensor(&batch["mean_grads"][n])))
            .collect();
        for i in 0..b {
            let grads = Interpreter::new(&program).gradient(&example(&values, i)).unwrap().grads;
            for (name, g) in grads {
                let jax = json_tensor(&batch["per_example_grads"][name.as_str()]);
                let jax = jax.index_axis(Axis(0), i).to_owned();
                if rel_diff(&g, &jax) > 1e-9 {
                    failures.push(format!(
                        "{}example {i}: grad {name} = {g}, JAX {jax}",
                        program.to_text()
                    ));
                }
            }
        }
        let mean = batch["mean"].as_f64().unwrap();
        for (plan_name, plan) in every_plan(&program, b) {
            let value = output(&plan, &values);
            let checked = match (value - mean).abs() <= 1e-9 * mean.abs().max(1.0) {
                true => check_three_ways(&plan, &values, &jax_grads, &mut rng),
                false => Err(format!("the value is {value}, JAX's mean {mean}")),
            };
            if let Err(e) = checked {
                failures.push(format!("{}{plan_name}: {e}\n{}", program.to_text(), plan.to_text()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
