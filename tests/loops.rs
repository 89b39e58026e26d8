//! Loops and micro-batches: the loop plan (`map`) and the chunked plans
//! (`chunks`) compute what the fused plan computes, values and gradients;
//! printed loops parse back; the memory model predicts what the interpreter
//! measures; a budget picks a plan that fits.

mod common;
use batchgraph::{
    chunk_plan, parse_file, predict_peak_bytes, BatchReduce, Batcher, Interpreter, Program, Run, Strategy, Values,
};
use common::{batchable_random_programs, rel_diff, Rng};
use std::collections::HashSet;

fn example(name: &str) -> Program {
    let path = format!("{}/examples/{name}.graph", env!("CARGO_MANIFEST_DIR"));
    parse_file(std::path::Path::new(&path)).unwrap()
}

/// The example programs (the ones the fused plan can chunk: no loop in them).
fn examples() -> Vec<(Program, Vec<&'static str>)> {
    vec![
        (example("seed"), vec!["x"]),
        (example("mlp"), vec!["x", "y"]),
        (example("mlp3"), vec!["x", "y"]),
        (example("softmax_classifier"), vec!["x", "y"]),
        (example("sine_mlp"), vec!["x", "y"]),
        (example("mixed"), vec!["x"]),
        (example("broadcasting"), vec!["x"]),
        (example("vector_output"), vec!["x"]),
    ]
}

fn values_for(program: &Program, rng: &mut Rng) -> Values<f64> {
    program
        .inputs
        .iter()
        .chain(&program.params)
        .map(|d| (d.name.clone(), rng.tensor(d.shape.dims(), 0.3, 1.5)))
        .collect()
}

/// `other` computes what `fused` computes: every output, and (scalar output) every gradient, within 1e-12.
fn assert_same(fused: &Program, other: &Program, values: &Values<f64>, what: &str) {
    let (a, b) = (Interpreter::new(fused), Interpreter::new(other));
    let (x, y) = (a.evaluate(values).unwrap(), b.evaluate(values).unwrap());
    for ((name, u), (_, v)) in x.outputs.iter().zip(&y.outputs) {
        let d = rel_diff(v, u);
        assert!(d < 1e-12, "{what}: output {name} differs by {d}\n{}", other.to_text());
    }
    let scalar = fused.outputs.len() == 1 && fused.shape(fused.outputs[0].1).rank() == 0;
    if scalar {
        let (g, h) = (a.gradient(values).unwrap(), b.gradient(values).unwrap());
        for ((name, u), (_, v)) in g.grads.iter().zip(&h.grads) {
            let d = rel_diff(v, u);
            assert!(
                d < 1e-12,
                "{what}: gradient w.r.t. {name} differs by {d}\n{}",
                other.to_text()
            );
        }
    }
}

#[test]
fn loop_and_chunked_plans_compute_what_the_fused_plan_computes() {
    let mut rng = Rng::new(0x100b);
    let mut programs = examples();
    programs.extend(
        batchable_random_programs(20, &mut rng)
            .into_iter()
            .map(|p| (p, vec!["a", "c"])),
    );
    for (program, over) in &programs {
        let batched: HashSet<&str> = over.iter().copied().collect();
        for b in [1, 2, 3, 8, 13] {
            for reduce in [BatchReduce::Mean, BatchReduce::None] {
                let plan = |strategy| {
                    Batcher::new(program)
                        .over(over.clone())
                        .size(b)
                        .reduce(reduce)
                        .strategy(strategy)
                        .run()
                        .unwrap()
                };
                let fused = plan(Strategy::Fuse).program;
                let values = values_for(&fused, &mut rng);
                let looped = plan(Strategy::Unroll).program;
                assert!(looped.loops().any(), "{}", looped.to_text());
                assert_same(&fused, &looped, &values, &format!("loop plan, B = {b}, {reduce:?}"));
                for k in [1, 2, 3, 5].into_iter().filter(|&k| k < b) {
                    // Fused plans with an unfused op already loop: those are not chunked.
                    let chunked = chunk_plan(&fused, &batched, k);
                    let Ok(chunked) = chunked else {
                        assert!(fused.loops().any(), "{}\n{}", chunked.unwrap_err(), fused.to_text());
                        continue;
                    };
                    assert_same(
                        &fused,
                        &chunked,
                        &values,
                        &format!("chunks of {k}, B = {b}, {reduce:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn printed_loops_parse_back() {
    for (program, over) in examples() {
        let fused = Batcher::new(&program)
            .over(over.clone())
            .size(5)
            .strategy(Strategy::Fuse)
            .run()
            .unwrap()
            .program;
        let looped = Batcher::new(&program)
            .over(over.clone())
            .size(5)
            .strategy(Strategy::Unroll)
            .run()
            .unwrap()
            .program;
        let batched: HashSet<&str> = over.iter().copied().collect();
        let mut plans = vec![looped];
        plans.extend(chunk_plan(&fused, &batched, 2));
        for plan in plans {
            let text = plan.to_text();
            let again = Program::parse("printed", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(again.to_text(), text);
            assert_eq!(again.node_count(), plan.node_count());
        }
    }
}

#[test]
fn printed_plans_snapshots() {
    let mlp = example("mlp");
    let looped = Batcher::new(&mlp)
        .size(8)
        .strategy(Strategy::Unroll)
        .run()
        .unwrap()
        .program;
    insta::assert_snapshot!("mlp_b8_loop", looped.to_text());
    let fused = Batcher::new(&mlp)
        .size(8)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap()
        .program;
    let chunked = chunk_plan(&fused, &["x", "y"].into_iter().collect(), 3).unwrap();
    insta::assert_snapshot!("mlp_b8_chunks_of_3", chunked.to_text());
    let mixed = Batcher::new(&example("mixed")).size(8).run().unwrap().program;
    insta::assert_snapshot!("mixed_b8_auto", mixed.to_text());
}

#[test]
fn the_memory_model_predicts_what_the_interpreter_measures() {
    let mut rng = Rng::new(0x3e3);
    for (program, over) in examples() {
        for strategy in [Strategy::Fuse, Strategy::Unroll] {
            let plan = Batcher::new(&program)
                .over(over.clone())
                .size(6)
                .strategy(strategy)
                .run()
                .unwrap()
                .program;
            let values = values_for(&plan, &mut rng);
            let interpreter = Interpreter::new(&plan);
            let eval = interpreter.evaluate(&values).unwrap().peak_bytes;
            assert_eq!(predict_peak_bytes(&plan, Run::Eval, 8), eval, "{}", plan.to_text());
            if let Ok(gradient) = interpreter.gradient(&values) {
                let predicted = predict_peak_bytes(&plan, Run::Grad, 8);
                let error = (predicted as f64 - gradient.peak_bytes as f64).abs() / gradient.peak_bytes as f64;
                assert!(
                    error <= 0.25,
                    "predicted {predicted}, measured {}\n{}",
                    gradient.peak_bytes,
                    plan.to_text()
                );
            }
        }
    }
}

#[test]
fn a_budget_of_an_eighth_of_the_fused_peak_picks_micro_batches_that_fit() {
    let mlp = example("mlp3");
    let fused = Batcher::new(&mlp).size(4096).strategy(Strategy::Fuse).run().unwrap();
    let values = values_for(&fused.program, &mut Rng::new(9));
    let fused_gradient = Interpreter::new(&fused.program).gradient(&values).unwrap();
    let budget = fused_gradient.peak_bytes / 8;
    let chosen = Batcher::new(&mlp).size(4096).memory_budget(Some(budget)).run().unwrap();
    let gradient = Interpreter::new(&chosen.program).gradient(&values).unwrap();
    assert!(
        chosen.report.chosen.name.starts_with("chunks of"),
        "{:?}",
        chosen.report.chosen
    );
    assert!(
        gradient.peak_bytes <= budget,
        "measured {} > budget {budget}",
        gradient.peak_bytes
    );
    let predicted = chosen.report.chosen.predicted_peak_bytes as f64;
    assert!((predicted - gradient.peak_bytes as f64).abs() <= 0.25 * gradient.peak_bytes as f64);
    for ((name, a), (_, b)) in gradient.grads.iter().zip(&fused_gradient.grads) {
        assert!(rel_diff(a, b) < 1e-9, "gradient w.r.t. {name}");
    }
}

#[test]
fn a_budget_nothing_fits_names_the_smallest_peak() {
    let e = Batcher::new(&example("mlp3"))
        .size(64)
        .memory_budget(Some(100))
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no plan fits in 100 bytes") && e.contains("smallest predicted peak"),
        "{e}"
    );
}

#[test]
fn compile_size_does_not_depend_on_b_and_absurd_sizes_are_refused() {
    let mlp = example("mlp3");
    for strategy in [Strategy::Fuse, Strategy::Unroll, Strategy::Auto] {
        let small = Batcher::new(&mlp).size(64).strategy(strategy).run().unwrap().report;
        let large = Batcher::new(&mlp)
            .size(1_000_000)
            .strategy(strategy)
            .run()
            .unwrap()
            .report;
        assert_eq!(small.egraph_nodes, large.egraph_nodes, "{strategy:?}");
        assert_eq!(small.chosen.nodes, large.chosen.nodes, "{strategy:?}");
    }
    let huge = Batcher::new(&mlp).size((1 << 31) - 1).run().unwrap_err();
    assert!(
        matches!(&huge, batchgraph::Error::Limit { limit, .. } if *limit == batchgraph::MAX_ELEMENTS),
        "{huge:?}"
    );
    assert!(
        huge.to_string()
            .starts_with("batch size 2147483647: input x would have shape"),
        "{huge}"
    );
    let seed = example("seed");
    let refused = Batcher::new(&seed).over(["x"]).size((1 << 31) - 1).run();
    assert!(matches!(refused, Err(batchgraph::Error::Limit { .. })));
    let ok = Batcher::new(&Program::parse("t", "input x: []\nout y = x * 2").unwrap())
        .size((1 << 31) - 1)
        .run();
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn loop_mistakes_are_errors_that_point_at_them() {
    let cases = [
        ("out s = map(map(row(row(x)), 3), 4)", "2:17", "loops do not nest"),
        (
            "out s = map(row(x), 4) + row(x)",
            "2:9",
            "reads row(...) outside of map",
        ),
        ("out s = map(sum(x), 4)", "2:9", "the body does not read row(...)"),
        (
            "out s = map(row(x), 3)",
            "",
            "a loop over 3 rows reads a value of shape [4, 3]",
        ),
        (
            "out s = chunks(rows(x, 2), 4, 3)",
            "2:9",
            "chunks: a body of shape [2, 3] is not a chunk of 3 rows",
        ),
        (
            "out s = chunks(rows(x, 5), 4, 5)",
            "2:16",
            "rows: no chunk of 5 rows in a value of shape [4, 3]",
        ),
        ("out s = chunks(row(x), 4, 1)", "2:9", "is not a chunk of 1 rows"),
        ("out s = map(rows(x, 2), 4)", "", "does not belong in a map"),
    ];
    for (line, at, message) in cases {
        let e = Program::parse("loops.graph", &format!("input x: [4, 3]\n{line}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(message) && e.starts_with(&format!("loops.graph:{at}")),
            "{line}: {e}"
        );
    }
}

/// A chunk body is checked at the last chunk's size too: one that only works at k rows is an error
/// when the program is read, not a failure when it runs.
#[test]
fn a_chunk_body_must_fit_the_last_smaller_chunk() {
    for (text, expected) in [
        (
            "input x: [7, 3]\nparam v: [3, 3]\nout s = sum(chunks(rows(x, 3) + v, 7, 3))",
            "the body's result has shape [3, 3] for the last chunk, of 1 rows",
        ),
        (
            "input x: [7, 3]\nout s = sum(chunks(transpose(rows(x, 3)), 7, 3))",
            "the body's result has shape [3, 1] for the last chunk, of 1 rows",
        ),
        (
            "input x: [7, 3]\nparam v: [3, 3]\nout s = sum(chunks(sum(rows(x, 3) @ v + v, 1), 7, 3))",
            "the body's result has shape [3] for the last chunk",
        ),
    ] {
        let e = Program::parse("chunks", text).unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
    // Evenly divided rows have no smaller chunk, and a body that broadcasts a row-sized value is fine.
    Program::parse(
        "even",
        "input x: [6, 3]\nparam v: [3, 3]\nout s = sum(chunks(rows(x, 3) + v, 6, 3))",
    )
    .unwrap();
    Program::parse(
        "fine",
        "input x: [7, 3]\nparam v: [3]\nout s = sum(chunks(rows(x, 3) * v, 7, 3))",
    )
    .unwrap();
}
