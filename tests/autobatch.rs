//! Autobatching: programs with written-out copies come back with each group
//! run as one batched op, with the values and gradients of the original.

mod common;
use batchgraph::{
    autobatch, expand_loops, AutobatchOptions, Batcher, Dtype, ExactLimits, Interpreter, Op, Program, Run, Strategy,
    MAX_NODES,
};
use common::{batchable_random_programs, random_values, rel_diff, Rng};
use std::time::Duration;

/// The question's own drawing: two copies of the per-example graph and a node averaging their losses.
const TWO_COPIES: &str = "input x1: [3]
input x2: [3]
param w: [4, 3]
fn f(x, w) = tanh(w @ x)
fn g(a, b, x) = sum(a * b) + sum(x)
out s = (g(f(x1, w), f(x1, w), x1) + g(f(x2, w), f(x2, w), x2)) / 2
";

/// The two copies' losses as two outputs: nothing adds them up, so each
/// copy's loss is a row of the batched op, shared by the two outputs.
const TWO_OUTPUTS: &str = "input x1: [3]
input x2: [3]
param w: [4, 3]
fn f(x, w) = tanh(w @ x)
fn g(a, b, x) = sum(a * b) + sum(x)
out s1 = g(f(x1, w), f(x1, w), x1)
out s2 = g(f(x2, w), f(x2, w), x2)
";

fn parse(text: &str) -> Program {
    Program::parse("test", text).unwrap()
}

fn matmuls(p: &Program) -> usize {
    p.expr.as_ref().iter().filter(|op| matches!(op, Op::MatMul(_))).count()
}

/// Outputs and gradients (every input and param) of `after` against `before`,
/// at random values: the largest relative difference.
fn difference(before: &Program, after: &Program, seed: u64) -> f64 {
    let values = random_values(before, &mut Rng::new(seed), -1.0, 1.0);
    let (a, b) = (Interpreter::new(before), Interpreter::new(after));
    let mut worst = 0.0f64;
    for ((_, x), (_, y)) in a
        .evaluate(&values)
        .unwrap()
        .outputs
        .iter()
        .zip(&b.evaluate(&values).unwrap().outputs)
    {
        worst = worst.max(rel_diff(y, x));
    }
    let scalar = before.outputs.len() == 1 && before.shape(before.outputs[0].1).rank() == 0;
    if scalar {
        let (ga, gb) = (a.gradient(&values).unwrap().grads, b.gradient(&values).unwrap().grads);
        assert_eq!(ga.len(), gb.len());
        for ((na, x), (nb, y)) in ga.iter().zip(&gb) {
            assert_eq!(na, nb);
            worst = worst.max(rel_diff(y, x));
        }
    }
    worst
}

#[test]
fn the_two_copy_program_runs_one_matmul_over_stacked_rows() {
    let program = parse(TWO_COPIES);
    assert_eq!(matmuls(&program), 2);
    let done = autobatch(&program, &AutobatchOptions::default()).unwrap();
    assert_eq!(matmuls(&done.program), 1, "{}", done.program.to_text());
    assert_eq!(done.report.groups_found, 6);
    assert_eq!(done.report.groups_taken, 6);
    assert!(done.report.cost_after_us < done.report.cost_before_us);
    assert!(difference(&program, &done.program, 1) < 1e-12);
    // The copies' losses added up are one sum over the stacked rows: no row is taken out.
    assert!(!done.program.to_text().contains("index("), "{}", done.program.to_text());
    insta::assert_snapshot!(done.program.to_text());
}

/// Greedy extraction prices each member's row of the shared batched op as the
/// whole op and keeps the copies apart; exact extraction pays for it once.
/// (Where the program adds the copies' losses up, their sum is one reduction
/// of the batched op, which greedy extraction finds as well.)
#[test]
fn exact_extraction_batches_the_two_copies_where_greedy_extraction_does_not() {
    let summed = autobatch(&parse(TWO_COPIES), &AutobatchOptions::default()).unwrap();
    let r = &summed.report;
    assert!(r.greedy_cost_us.unwrap() <= r.cost_after_us * (1.0 + 1e-9), "{r:?}");
    let done = autobatch(&parse(TWO_OUTPUTS), &AutobatchOptions::default()).unwrap();
    assert_eq!(matmuls(&done.program), 1, "{}", done.program.to_text());
    let e = done.report.extraction.expect("groups were found, so both extracted");
    assert_eq!(e.exact_status, "optimal");
    let (greedy, exact) = (e.greedy_dag_cost.unwrap(), e.exact_dag_cost.unwrap());
    assert!(exact < greedy, "exact {exact} against greedy {greedy}");
    let predicted = e.exact_predicted_us.unwrap();
    assert!(predicted < done.report.greedy_cost_us.unwrap(), "{e:?}");
    // The search over groups finds the same plan; the exact one is no worse.
    assert!(predicted <= done.report.cost_after_us * (1.0 + 1e-9), "{e:?}");
}

/// The result comes with a proof per output: a chain of rewrites, each step
/// naming its rule, from the program as written to the program returned,
/// through the equalities autobatching adds (a member is a row of its group's op).
#[test]
fn the_result_is_proved_equal_to_the_program_as_written() {
    let program = parse(TWO_COPIES);
    let options = AutobatchOptions {
        explain: true,
        ..AutobatchOptions::default()
    };
    let done = autobatch(&program, &options).unwrap();
    assert_eq!(done.proofs.len(), 1);
    let (name, steps) = &done.proofs[0];
    assert_eq!(name, "s");
    let written: egg::RecExpr<Op> = program.expr.as_ref()[..=usize::from(program.outputs[0].1)]
        .to_vec()
        .into();
    assert_eq!(steps[0], written.to_string());
    assert!(steps.len() > 2, "{steps:#?}");
    assert!(steps[1..].iter().all(|s| s.contains("Rewrite")), "{steps:#?}");
    assert!(steps.iter().any(|s| s.contains("group-sum")), "{steps:#?}");
    assert!(steps.iter().any(|s| s.contains("vmap-matvec-right")), "{steps:#?}");
    // Without asking, no proof (recording explanations costs time).
    assert!(autobatch(&program, &AutobatchOptions::default())
        .unwrap()
        .proofs
        .is_empty());
}

/// Elementwise ops on vectors of different lengths group too: one op over
/// their concatenation, each member a slice of it (DyNet's concatenation of
/// elementwise operands); chains keep the concatenated layout.
#[test]
fn groups_of_different_sizes_concatenate() {
    let program = parse(
        "input a: [3]\ninput b: [5]\ninput c: [7]\n\
         out s = sum(exp(tanh(a) * a)) + sum(exp(tanh(b) * b)) * 2 + sum(exp(tanh(c) * c))",
    );
    let options = AutobatchOptions {
        batch_every_group: true,
        ..AutobatchOptions::default()
    };
    let done = autobatch(&program, &options).unwrap();
    let r = &done.report;
    assert_eq!(r.groups.iter().filter(|g| g.ragged).count(), 3, "{r:?}");
    let text = done.program.to_text();
    assert_eq!(text.matches("concat(").count(), 1, "{text}");
    assert_eq!(text.matches("tanh(").count(), 1, "{text}");
    assert_eq!(text.matches("slice(").count(), 3, "{text}");
    assert_eq!(r.kernels_after, r.lower_bound, "{text}");
    assert_eq!(parse(&text).to_text(), text);
    assert!(difference(&program, &done.program, 7) < 1e-12);
    // Shapes that differ beyond the first axis, or ops that broadcast, do not group.
    let apart = parse("input a: [3, 2]\ninput b: [5, 4]\nout s = sum(tanh(a)) + sum(tanh(b))");
    assert_eq!(autobatch(&apart, &options).unwrap().report.groups_found, 0);
}

/// A program that shares much is exponential written as a tree, which is how
/// proofs print terms: its proof is refused up front with a note, not a hang.
#[test]
fn a_proof_too_large_to_print_is_refused_with_a_note() {
    let mut text = String::from("input x1: [3]\ninput x2: [3]\n");
    for c in 1..=2 {
        let mut previous = format!("x{c}");
        for i in 0..16 {
            text += &format!("let a{c}_{i} = tanh({previous}) * tanh({previous})\n");
            previous = format!("a{c}_{i}");
        }
    }
    text += "out s = sum(a1_15) + sum(a2_15)\n";
    let options = AutobatchOptions {
        explain: true,
        ..AutobatchOptions::default()
    };
    let done = autobatch(&parse(&text), &options).unwrap();
    assert!(done.proofs.is_empty());
    assert!(
        done.report.notes.iter().any(|n| n.contains("no proof for `s`")),
        "{:?}",
        done.report.notes
    );
}

/// A limit ends exact extraction with a note in the report, never an error:
/// the search's plan stands.
#[test]
fn exact_extraction_cut_off_by_a_limit_says_so() {
    for (limits, says) in [
        (
            ExactLimits {
                nodes: 5,
                ..ExactLimits::default()
            },
            "not run: 41 candidate nodes, above the limit of 5",
        ),
        (
            ExactLimits {
                time: Duration::ZERO,
                ..ExactLimits::default()
            },
            "cut off by the time limit",
        ),
    ] {
        let options = AutobatchOptions {
            exact: limits,
            ..AutobatchOptions::default()
        };
        let done = autobatch(&parse(TWO_COPIES), &options).unwrap();
        let e = done.report.extraction.unwrap();
        assert!(e.exact_status.starts_with(says), "{}", e.exact_status);
        assert_eq!(matmuls(&done.program), 1);
    }
}

/// `batch --strategy unroll --expand` output, fed back in, autobatches to the
/// fused plan's kernels: one matmul per layer over the stacked rows.
#[test]
fn expanded_copies_autobatch_to_one_matmul_per_layer() {
    for (text, layers) in [
        (include_str!("../examples/seed.graph"), 1),
        (include_str!("../examples/mlp3.graph"), 3),
    ] {
        let example = parse(text);
        for size in [2, 8, 64] {
            let batcher = Batcher::new(&example).size(size);
            let unrolled = batcher.clone().strategy(Strategy::Unroll).run().unwrap().program;
            let written_out = expand_loops(&unrolled, MAX_NODES).unwrap();
            let fused = batcher.strategy(Strategy::Fuse).run().unwrap().program;
            let done = autobatch(&written_out, &AutobatchOptions::default()).unwrap();
            let p = &done.program;
            assert_eq!(matmuls(p), layers, "B = {size}:\n{}", p.to_text());
            let ops = |p: &Program| p.expr.as_ref().iter().filter(|op| !egg::Language::is_leaf(*op)).count();
            assert!(
                ops(p) as f64 <= 1.2 * ops(&fused) as f64,
                "B = {size}: {} ops against the fused plan's {}:\n{}",
                ops(p),
                ops(&fused),
                p.to_text()
            );
            assert!(difference(&written_out, p, size as u64) < 1e-12, "B = {size}");
            assert_eq!(done.report.kernels_after, done.report.lower_bound, "B = {size}");
        }
    }
}

/// Exact extraction solves one integer program whatever element type the run
/// is priced in (its nodes priced in f32), so its time does not depend on the
/// type; the plans, its own included, are still priced in the run's type.
#[test]
fn exact_extraction_is_the_same_problem_in_f32_and_f64() {
    let example = parse(include_str!("../examples/mlp3.graph"));
    let unrolled = Batcher::new(&example).size(8).strategy(Strategy::Unroll).run().unwrap();
    let written_out = expand_loops(&unrolled.program, MAX_NODES).unwrap();
    let run = |dtype: Dtype| {
        let options = AutobatchOptions {
            dtype,
            ..AutobatchOptions::default()
        };
        autobatch(&written_out, &options).unwrap().report
    };
    let (f32, f64) = (run(Dtype::F32), run(Dtype::F64));
    let (e32, e64) = (f32.extraction.clone().unwrap(), f64.extraction.clone().unwrap());
    assert_eq!(e32.exact_status, "optimal");
    assert_eq!(
        (e32.exact_nodes, e32.exact_dag_cost),
        (e64.exact_nodes, e64.exact_dag_cost)
    );
    assert!(e32.exact_dag_cost.unwrap() <= e32.greedy_dag_cost.unwrap() * (1.0 + 1e-9));
    assert!(
        f64.cost_after_us > f32.cost_after_us,
        "{} against {} µs",
        f64.cost_after_us,
        f32.cost_after_us
    );
}

#[test]
fn a_program_without_groups_comes_back_unchanged_and_the_report_says_so() {
    let program = parse("input x: [3]\nparam w: [4, 3]\nout s = sum(tanh(w @ x))");
    let done = autobatch(&program, &AutobatchOptions::default()).unwrap();
    assert_eq!(done.program.to_text(), program.to_text());
    assert_eq!(done.report.groups_found, 0);
    assert!(
        done.report.notes.iter().any(|n| n.contains("no group found")),
        "{:?}",
        done.report.notes
    );
}

/// Two scalar products of separate inputs read apart: stacking four scalars and
/// reading two rows back costs more than two products, so they stay apart.
#[test]
fn two_tiny_ops_stay_apart_when_stacking_costs_more() {
    let program = parse("input a: []\ninput b: []\ninput c: []\ninput d: []\nout s = a * b\nout t = c * d");
    let done = autobatch(&program, &AutobatchOptions::default()).unwrap();
    assert_eq!(done.report.groups_found, 1);
    assert_eq!(done.report.groups_taken, 0, "{}", done.program.to_text());
    assert_eq!(done.program.to_text(), program.to_text());
}

/// The result is never predicted slower than the program as written, prints
/// and parses back to itself, and has the original's values and gradients:
/// random programs written out three times, forward and gradient pricing.
#[test]
fn random_written_out_programs_keep_their_values_and_gradients() {
    let mut rng = Rng::new(19);
    let (mut batched, mut exact) = (0, 0);
    for (k, example) in batchable_random_programs(30, &mut rng).into_iter().enumerate() {
        let unrolled = Batcher::new(&example)
            .size(3)
            .strategy(Strategy::Unroll)
            .run()
            .unwrap()
            .program;
        let written_out = expand_loops(&unrolled, MAX_NODES).unwrap();
        for run in [Run::Grad, Run::Eval] {
            let options = AutobatchOptions {
                run,
                ..AutobatchOptions::default()
            };
            let done = autobatch(&written_out, &options).unwrap_or_else(|e| panic!("{e}\n{}", written_out.to_text()));
            let r = &done.report;
            assert!(r.cost_after_us <= r.cost_before_us, "program {k}: {r:?}");
            if let Some(e) = r.extraction.as_ref().filter(|e| e.exact_status == "optimal") {
                exact += 1;
                let (greedy, exact) = (e.greedy_dag_cost.unwrap(), e.exact_dag_cost.unwrap());
                assert!(
                    exact <= greedy * (1.0 + 1e-9),
                    "program {k}: exact {exact}, greedy {greedy}"
                );
            }
            batched += usize::from(r.groups_taken > 0);
            let text = done.program.to_text();
            assert_eq!(parse(&text).to_text(), text, "program {k}");
            let d = difference(&written_out, &done.program, k as u64);
            assert!(
                d < 1e-9,
                "program {k}: differs by {d}\n{}\n=>\n{text}",
                written_out.to_text()
            );
        }
    }
    assert!(
        batched >= 30,
        "only {batched} of 60 autobatched programs run a group batched"
    );
    assert!(exact >= 30, "exact extraction proved only {exact} of 60 optimal");
}

/// The gradient and JVP programs of an autobatched program (`grad`, `jvp`)
/// equal the interpreter's reverse and forward modes on it, and batching it
/// again gives the mean of its values over the batch.
#[test]
fn autobatched_programs_differentiate_and_batch_as_programs() {
    let done = autobatch(&parse(TWO_COPIES), &AutobatchOptions::default()).unwrap();
    let p = &done.program;
    let values = random_values(p, &mut Rng::new(3), -1.0, 1.0);
    let direction = random_values(p, &mut Rng::new(4), -1.0, 1.0);
    assert!(common::grad_program_difference(p, &values) < 1e-12);
    assert!(common::jvp_program_difference(p, &values, &direction) < 1e-12);
    let batched = Batcher::new(p).size(3).strategy(Strategy::Fuse).run().unwrap().program;
    let mut rng = Rng::new(5);
    let batch_values = random_values(&batched, &mut rng, -1.0, 1.0);
    let mean = Interpreter::new(&batched).evaluate(&batch_values).unwrap().outputs[0]
        .1
        .clone();
    let mut total = 0.0;
    for i in 0..3 {
        let row: batchgraph::Values<f64> = batch_values
            .iter()
            .map(|(name, t)| match p.is_input(name) {
                true => (name.clone(), t.index_axis(ndarray::Axis(0), i).to_owned()),
                false => (name.clone(), t.clone()),
            })
            .collect();
        total += Interpreter::new(p).evaluate(&row).unwrap().outputs[0].1.sum();
    }
    assert!((mean.sum() - total / 3.0).abs() < 1e-12);
}
