//! Batching: every strategy computes the mean / sum / stack of the
//! per-example results (values and gradients), agrees with JAX's vmap, keeps
//! fused programs small, and every rule is sound.

mod common;
use batchgraph::{
    check_rule, parse_rule_file, BatchReduce as Reduce, BatchReport, Batcher, Error, Interpreter, Program, Rule,
    RuleSet, Strategy, Tensor, Values,
};
use common::{batchable_random_programs, json_tensor, load_reference, rel_diff, Rng};
use egg::StopReason;
use ndarray::{Axis, IxDyn};

fn example(name: &str) -> Program {
    let path = format!("{}/examples/{name}.graph", env!("CARGO_MANIFEST_DIR"));
    batchgraph::parse_file(std::path::Path::new(&path)).unwrap()
}

fn row(t: &Tensor<f64>, b: usize) -> Tensor<f64> {
    t.index_axis(Axis(0), b).to_owned()
}

/// Checks the batched program against running the per-example program on each row; returns the report.
fn check_semantics(
    program: &Program,
    over: &[&str],
    b: usize,
    strategy: Strategy,
    reduce: Reduce,
    rng: &mut Rng,
) -> BatchReport {
    let batched = Batcher::new(program)
        .over(over.to_vec())
        .size(b)
        .strategy(strategy)
        .reduce(reduce)
        .run()
        .unwrap();
    let bp = &batched.program;
    let values: Values<f64> = bp
        .inputs
        .iter()
        .chain(&bp.params)
        .map(|d| (d.name.clone(), rng.tensor(d.shape.dims(), 0.3, 1.5)))
        .collect();
    let example_values = |i: usize| -> Values<f64> {
        values
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    if over.contains(&n.as_str()) {
                        row(v, i)
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let per_example = Interpreter::new(program);
    let result = Interpreter::new(bp).evaluate(&values).unwrap();
    let context = format!(
        "{}\nbatched with B = {b}, {strategy:?}, {reduce:?}:\n{}",
        program.to_text(),
        bp.to_text()
    );
    for (k, (name, value)) in result.outputs.iter().enumerate() {
        let rows: Vec<Tensor<f64>> = (0..b)
            .map(|i| per_example.evaluate(&example_values(i)).unwrap().outputs[k].1.clone())
            .collect();
        let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
        let stacked = ndarray::stack(Axis(0), &views).unwrap();
        let expected = match reduce {
            Reduce::Mean => stacked.mean_axis(Axis(0)).unwrap(),
            Reduce::Sum => stacked.sum_axis(Axis(0)),
            Reduce::None => stacked,
        };
        let d = rel_diff(value, &expected);
        assert!(d < 1e-9, "output {name} differs by {d}\n{context}");
    }
    // Gradients of a scalar mean or sum: the mean (sum) of per-example gradients.
    let scalar = program.outputs.len() == 1 && program.shape(program.outputs[0].1).rank() == 0;
    if scalar && reduce != Reduce::None {
        let scale = if reduce == Reduce::Mean { 1.0 / b as f64 } else { 1.0 };
        let grads = Interpreter::new(bp).gradient(&values).unwrap().grads;
        let per: Vec<Vec<(String, Tensor<f64>)>> = (0..b)
            .map(|i| per_example.gradient(&example_values(i)).unwrap().grads)
            .collect();
        for (v, (name, g)) in grads.iter().enumerate() {
            let expected = if over.contains(&name.as_str()) {
                let views: Vec<Tensor<f64>> = per.iter().map(|p| &p[v].1 * scale).collect();
                ndarray::stack(Axis(0), &views.iter().map(|t| t.view()).collect::<Vec<_>>()).unwrap()
            } else {
                per.iter().fold(Tensor::zeros(IxDyn(g.shape())), |acc, p| acc + &p[v].1) * scale
            };
            let d = rel_diff(g, &expected);
            assert!(d < 1e-9, "gradient w.r.t. {name} differs by {d}\n{context}");
        }
    }
    batched.report
}

#[test]
fn every_strategy_computes_the_batch_of_per_example_results() {
    let mut rng = Rng::new(0xba7c4);
    let mut programs: Vec<(Program, Vec<&str>)> = vec![
        (example("seed"), vec!["x"]),
        (example("mlp"), vec!["x", "y"]),
        (example("softmax_classifier"), vec!["x", "y"]),
        (example("sine_mlp"), vec!["x", "y"]),
        (example("mixed"), vec!["x"]),
        (example("broadcasting"), vec!["x"]),
        (example("vector_output"), vec!["x"]),
    ];
    programs.extend(
        batchable_random_programs(30, &mut rng)
            .into_iter()
            .map(|p| (p, vec!["a", "c"])),
    );
    for (program, over) in &programs {
        for b in [1, 2, 3, 8] {
            for strategy in [Strategy::Auto, Strategy::Unroll, Strategy::Fuse] {
                for reduce in [Reduce::Mean, Reduce::Sum, Reduce::None] {
                    check_semantics(program, over, b, strategy, reduce, &mut rng);
                }
            }
        }
    }
}

#[test]
fn batched_programs_agree_with_jax_vmap() {
    for name in [
        "elementwise_zoo",
        "linear_mse",
        "matmul_ranks",
        "two_layer",
        "vector_output",
        "structural_slice",
        "structural_concat",
        "structural_pad",
        "structural_mixed",
    ] {
        let reference = load_reference(name);
        let program = Program::parse(name, reference["program"].as_str().unwrap()).unwrap();
        let batch = &reference["batch"];
        let over: Vec<String> = batch["over"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let size = batch["size"].as_u64().unwrap() as usize;
        let values = batchgraph::values_from_json::<f64>("inputs", &batch["inputs"]).unwrap();
        for strategy in [Strategy::Auto, Strategy::Unroll, Strategy::Fuse] {
            for (reduce, key) in [
                (Reduce::Mean, "mean"),
                (Reduce::Sum, "sum"),
                (Reduce::None, "per_example"),
            ] {
                let batched = Batcher::new(&program)
                    .over(over.clone())
                    .size(size)
                    .strategy(strategy)
                    .reduce(reduce)
                    .run()
                    .unwrap();
                let interpreter = Interpreter::new(&batched.program);
                let out = &interpreter.evaluate(&values).unwrap().outputs[0].1;
                let d = rel_diff(out, &json_tensor(&batch[key]));
                assert!(
                    d < 1e-9,
                    "{name} {strategy:?} {key}: differs from JAX by {d}\n{}",
                    batched.program.to_text()
                );
                if reduce == Reduce::Mean && !batch["mean_grads"].is_null() {
                    for (var, g) in interpreter.gradient(&values).unwrap().grads {
                        let d = rel_diff(&g, &json_tensor(&batch["mean_grads"][&var]));
                        assert!(
                            d < 1e-9,
                            "{name} {strategy:?}: gradient w.r.t. {var} differs from JAX by {d}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn plans_do_not_grow_with_b_and_written_out_copies_grow_linearly() {
    let seed = example("seed");
    let program = |b: usize, strategy| Batcher::new(&seed).size(b).strategy(strategy).run().unwrap().program;
    for strategy in [Strategy::Fuse, Strategy::Unroll, Strategy::Auto] {
        let nodes: Vec<usize> = [2, 16, 128, 1 << 20]
            .iter()
            .map(|&b| program(b, strategy).node_count())
            .collect();
        assert!(
            nodes.iter().all(|&n| n == nodes[0]),
            "{strategy:?} node counts {nodes:?}"
        );
    }
    let expanded = |b: usize| {
        batchgraph::expand_loops(&program(b, Strategy::Unroll), batchgraph::MAX_NODES)
            .unwrap()
            .node_count()
    };
    let (u2, u4, u8) = (expanded(2), expanded(4), expanded(8));
    assert!(
        u4 > u2 && u8 - u4 == 2 * (u4 - u2),
        "expanded node counts {u2}, {u4}, {u8}"
    );
}

#[test]
fn cost_model_chooses_fusion_for_the_seed_graph() {
    let batched = Batcher::new(&example("seed")).size(64).run().unwrap();
    let r = &batched.report;
    let (unroll, fuse) = (r.unroll.as_ref().unwrap(), r.fuse.as_ref().unwrap());
    assert!(r.chosen.cost <= unroll.cost.min(fuse.cost) + 1e-9, "{r:?}");
    assert!(fuse.cost < unroll.cost / 5.0, "{r:?}");
    assert!(matches!(r.stop_reason, StopReason::Saturated), "{:?}", r.stop_reason);
}

#[test]
fn seed_batched_twice_snapshots() {
    let seed = example("seed");
    let unrolled = Batcher::new(&seed)
        .size(2)
        .strategy(Strategy::Unroll)
        .run()
        .unwrap()
        .program;
    let fused = Batcher::new(&seed)
        .size(2)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap()
        .program;
    insta::assert_snapshot!("seed_b2_loop", unrolled.to_text());
    // Written out, the loop is the B copies of the textbook picture.
    let unrolled = batchgraph::expand_loops(&unrolled, 1000).unwrap();
    insta::assert_snapshot!("seed_b2_unrolled", unrolled.to_text());
    insta::assert_snapshot!("seed_b2_unrolled_dot", batchgraph::to_dot(&unrolled));
    insta::assert_snapshot!("seed_b2_fused", fused.to_text());
    insta::assert_snapshot!("seed_b2_fused_dot", batchgraph::to_dot(&fused));
    let mlp = Batcher::new(&example("mlp"))
        .size(2)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap()
        .program;
    insta::assert_snapshot!("mlp_b2_fused", mlp.to_text());
}

#[test]
fn an_op_without_a_fusing_rule_is_duplicated_and_the_rest_fused() {
    let seed = example("seed");
    let rules = RuleSet::builtin().without("vmap-tanh");
    let batched = Batcher::new(&seed).size(4).rules(rules.clone()).run().unwrap();
    let text = batched.program.to_text();
    assert_eq!(batched.report.unfused_ops, vec!["tanh".to_string()]);
    assert!(text.contains("map(tanh(row("), "tanh runs in a loop:\n{text}");
    assert!(text.contains("x @ transpose(w)"), "the matmul stays fused:\n{text}");
    for strategy in [Strategy::Auto, Strategy::Fuse] {
        let batched = Batcher::new(&seed)
            .size(4)
            .rules(rules.clone())
            .strategy(strategy)
            .run()
            .unwrap();
        assert!(batched.program.to_text().contains("map(tanh(row("));
    }
    check_semantics(&seed, &["x"], 4, Strategy::Auto, Reduce::Mean, &mut Rng::new(3));
}

#[test]
fn every_rule_is_sound() {
    let rules = RuleSet::builtin();
    assert!(rules.rules.len() > 50);
    for rule in &rules.rules {
        let checked = check_rule(rule).unwrap_or_else(|e| panic!("{e}"));
        assert!(checked > 0, "rule {} was never instantiated", rule.name);
    }
}

#[test]
fn a_wrong_rule_fails_the_check_and_names_itself() {
    let wrong = "# wrong on purpose\nvmap-bad: (vmap (exp ?a)) => (tanh (vmap ?a))\n\
                 # wrong for the wrong ranks\nvmap-bad-matmul: (vmap (@ ?w ?x)) => (@ ?w (vmap ?x)) if unmapped(?w), mapped(?x)";
    for rule in parse_rule_file("wrong.rules", wrong).unwrap() {
        let rule = Rule::from_text(rule);
        let e = check_rule(&rule).unwrap_err();
        assert!(e.starts_with(&format!("rule {} (wrong.rules:", rule.name)), "{e}");
    }
}

#[test]
fn bad_rule_files_name_file_line_and_rule() {
    let cases = [
        (
            "# c\nr1: (vmap (exp ?a)) => (exp (vmap ?a)\n",
            2,
            "r1",
            "right-hand side",
        ),
        (
            "# c\nr1: (vmap (exp ?a)) -> (exp (vmap ?a))\n",
            2,
            "r1",
            "expected `=>`",
        ),
        (
            "r1: (vmap (exp ?a)) => (exp (vmap ?a))\n",
            1,
            "r1",
            "needs a `#` comment",
        ),
        (
            "# c\nr1: (vmap (exp ?a)) => (exp (vmap ?b))\n",
            2,
            "r1",
            "?b appears on the right",
        ),
        (
            "# c\nr1: (vmap (exp ?a)) => (exp (vmap ?a)) if ranked(?a)\n",
            2,
            "r1",
            "unknown condition",
        ),
        (
            "# c\nr1: (vmap (exp ?a)) => (exp (vmap ?a)) if rank(?c) == 1\n",
            2,
            "r1",
            "does not bind",
        ),
        (
            "# c\nr1: (vmap (exp ?a)) => (exp (vmap ?a))\n# d\nr1: (exp ?a) => ?a\n",
            4,
            "r1",
            "already defined",
        ),
        ("# c\nno colon here\n", 2, "?", "expected `NAME: LHS"),
    ];
    for (text, line, rule, message) in cases {
        let e = parse_rule_file("my.rules", text).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("my.rules:{line}: rule {rule}: ")) && e.contains(message),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn limits_are_reported_not_fatal() {
    let seed = example("seed");
    let batched = Batcher::new(&seed).size(8).iter_limit(1).run().unwrap();
    assert!(
        matches!(batched.report.stop_reason, StopReason::IterationLimit(1)),
        "{:?}",
        batched.report.stop_reason
    );
    let batched = Batcher::new(&seed).size(1024).node_limit(10).run().unwrap();
    assert!(
        matches!(batched.report.stop_reason, StopReason::NodeLimit(_)),
        "{:?}",
        batched.report
    );
    check_semantics(&seed, &["x"], 3, Strategy::Auto, Reduce::Mean, &mut Rng::new(5));
}

#[test]
fn batching_b_1024_finishes() {
    for name in ["seed", "mlp"] {
        let batched = Batcher::new(&example(name)).size(1024).run().unwrap();
        assert!(batched.program.node_count() < 40, "{}", batched.program.to_text());
        assert!(
            batched.report.unroll.as_ref().unwrap().nodes < 40,
            "{:?}",
            batched.report
        );
        assert!(batched.report.egraph_nodes < 200, "{:?}", batched.report);
    }
}

#[test]
fn the_mixed_example_fuses_stack_and_without_its_rule_loops_over_stack_alone() {
    let batched = Batcher::new(&example("mixed")).size(4).run().unwrap();
    let text = batched.program.to_text();
    assert!(batched.report.unfused_ops.is_empty(), "{:?}", batched.report);
    assert!(text.contains("permute(stack(t1, -t1), 1, 0, 2)"), "{text}");
    let rules = RuleSet::builtin().without("stack");
    let batched = Batcher::new(&example("mixed")).size(4).rules(rules).run().unwrap();
    let text = batched.program.to_text();
    assert_eq!(batched.report.unfused_ops, vec!["stack".to_string()]);
    assert!(
        text.contains("tanh(x @ transpose(w))") && text.contains("map(stack(row(t1), row(-t1)), 4)"),
        "{text}"
    );
}

/// Every example program, by file name.
fn every_example() -> Vec<(String, Program)> {
    let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "graph"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| (p.display().to_string(), batchgraph::parse_file(&p).unwrap()))
        .collect()
}

/// Structural ops at ranks 3 and 4, with mapped and unmapped operands (a: [3], c: [2, 3] batched).
const STRUCTURAL_PROGRAMS: [&str; 18] = [
    "sum(c @ u)",
    "sum(t @ a)",
    "sum(a @ u)",
    "sum(repeat(c, 2) @ transpose(c))",
    "sum(repeat(c, 2) @ repeat(transpose(c), 2))",
    "sum(a @ repeat(transpose(c), 4)) + sum(c @ a) + sum(a @ a) + sum(transpose(c) @ c)",
    "sum(permute(repeat(c, 4), 1, 2, 0) * u)",
    "sum(transpose(repeat(c, 3)) * a)",
    "sum(index(c, 1) * index(t, 0)) + sum(index(repeat(a, 2), 1))",
    "sum(stack(a, p, a) @ transpose(m)) + sum(stack(c, m))",
    "sum(broadcast(a, 4, 2, 3) * t) + sum(broadcast(c, 4, 2, 3)) + sum(broadcast(sum(a), 2))",
    "sum(repeat(repeat(c, 2), 3) * a)",
    "sum(step(c - 1) * sign(a - 1))",
    "sum(expand(c, 2) @ expand(a, 0))",
    "sum(slice(c, 1, 0, 2) * slice(m, 1, 1, 3)) + sum(slice(t, 0, 1, 3) * slice(a, 0, 0, 3))",
    "sum(concat(c, m, c, 0) @ a) + sum(concat(a, p, 0) * concat(p, a, 0)) + sum(concat(m, c, 1))",
    "sum(pad(c, 1, 1, 2) * pad(m, 1, 2, 1)) + sum(pad(a, 0, 0, 3) * concat(a, p, 0))",
    "sum(tanh(concat(a, slice(p, 0, 0, 2), 0))) + sum(concat(slice(m, 1, 0, 1), c, 1) ^ 2)",
];

/// `--strategy fuse` fuses every op: nothing is left to a loop, for the
/// example programs, random programs over every kind of op, and the
/// structural ops at higher ranks, at B in {1, 3, 8}; the values are the per-example ones.
#[test]
fn fuse_leaves_no_op_unfused() {
    let mut rng = Rng::new(0xf05e);
    let mut programs: Vec<(String, Program, Vec<String>)> = every_example()
        .into_iter()
        .map(|(name, p)| {
            let over = p.inputs.iter().map(|d| d.name.clone()).collect();
            (name, p, over)
        })
        .collect();
    let declared =
        "input a: [3]\ninput c: [2, 3]\nparam m: [2, 3]\nparam p: [3]\nparam t: [4, 2, 3]\nparam u: [2, 3, 4]";
    for body in STRUCTURAL_PROGRAMS {
        let program = Program::parse(body, &format!("{declared}\nout loss = {body}")).unwrap();
        programs.push((body.to_string(), program, vec!["a".into(), "c".into()]));
    }
    for program in batchable_random_programs(30, &mut rng) {
        programs.push((program.to_text(), program, vec!["a".into(), "c".into()]));
    }
    for (name, program, over) in &programs {
        let over: Vec<&str> = over.iter().map(String::as_str).collect();
        for b in [1, 3, 8] {
            for reduce in [Reduce::Mean, Reduce::None] {
                let report = check_semantics(program, &over, b, Strategy::Fuse, reduce, &mut rng);
                assert!(
                    report.unfused_ops.is_empty(),
                    "{name}, B = {b}: {:?}",
                    report.unfused_ops
                );
            }
        }
    }
}

/// A fused batched program batches again: the MLP batched over B = 3 (its
/// loss the mean over the 3), then over B = 2, is the per-example result of
/// the first batching for each of the 2.
#[test]
fn a_batched_program_batches_again() {
    let mut rng = Rng::new(0x2b);
    let once = Batcher::new(&example("mlp"))
        .size(3)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap();
    assert!(once.report.unfused_ops.is_empty());
    for strategy in [Strategy::Fuse, Strategy::Auto, Strategy::Unroll] {
        for reduce in [Reduce::None, Reduce::Mean] {
            let twice = check_semantics(&once.program, &["x", "y"], 2, strategy, reduce, &mut rng);
            if strategy == Strategy::Fuse {
                assert!(twice.unfused_ops.is_empty(), "{:?}", twice.unfused_ops);
            }
        }
    }
    let per_example = Batcher::new(&example("mlp"))
        .size(3)
        .reduce(Reduce::None)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap();
    check_semantics(
        &per_example.program,
        &["x", "y"],
        2,
        Strategy::Fuse,
        Reduce::None,
        &mut rng,
    );
}

/// Random per-example programs over the leaves of `batchable_random_programs`
/// that hold a `map` loop (over the rows of c) and no `chunks` or `accumulate`.
fn random_programs_with_a_map(count: usize, rng: &mut Rng) -> Vec<Program> {
    let mut out = vec![];
    while out.len() < count {
        let body = common::random_expression(rng, 4, &["a", "c", "m", "p", "s", "2"]);
        let text = format!(
            "input a: [3]\ninput c: [2, 3]\nparam m: [2, 3]\nparam p: [3]\nparam s: []\nout loss = sum({body})"
        );
        if let Ok(p) = Program::parse("random", &text) {
            let chunks = p
                .expr
                .as_ref()
                .iter()
                .any(|n| matches!(n, batchgraph::Op::Chunks(_) | batchgraph::Op::Accumulate(_)));
            if p.loops().any() && !chunks && common::depends_on(&p, &["a", "c"]) {
                out.push(p);
            }
        }
    }
    out
}

/// A batched program with loops (the duplicated plan, and a mixed plan)
/// batches again: each loop's body is batched over its rows with the fused
/// rules first, and the result is the per-example result of the first batching.
#[test]
fn a_batched_program_with_loops_batches_again() {
    let mut rng = Rng::new(0x100b);
    let mixed_rules = RuleSet::builtin().without("stack");
    let (mlp, seed, mixed) = (example("mlp"), example("seed"), example("mixed"));
    let looped = [
        ("mlp", Batcher::new(&mlp).size(3).strategy(Strategy::Unroll)),
        ("seed", Batcher::new(&seed).size(4).strategy(Strategy::Unroll)),
        ("mixed", Batcher::new(&mixed).size(3).rules(mixed_rules)),
    ];
    for (name, batcher) in looped {
        let once = batcher.run().unwrap().program;
        assert!(once.loops().any(), "{name}: {}", once.to_text());
        let over: Vec<&str> = once.inputs.iter().map(|d| d.name.as_str()).collect();
        for strategy in [Strategy::Fuse, Strategy::Auto, Strategy::Unroll] {
            for reduce in [Reduce::None, Reduce::Mean] {
                let twice = check_semantics(&once, &over, 2, strategy, reduce, &mut rng);
                if strategy == Strategy::Fuse {
                    assert!(twice.unfused_ops.is_empty(), "{name}: {:?}", twice.unfused_ops);
                }
            }
        }
    }
    // Random programs, batched once as a loop; and random programs that hold a `map` of their own.
    let mut programs: Vec<Program> = batchable_random_programs(10, &mut rng)
        .iter()
        .map(|p| {
            Batcher::new(p)
                .over(["a", "c"])
                .size(3)
                .strategy(Strategy::Unroll)
                .run()
                .unwrap()
                .program
        })
        .collect();
    programs.extend(random_programs_with_a_map(10, &mut rng));
    for program in &programs {
        let over: Vec<&str> = program.inputs.iter().map(|d| d.name.as_str()).collect();
        for b in [1, 3] {
            let twice = check_semantics(program, &over, b, Strategy::Fuse, Reduce::Mean, &mut rng);
            assert!(twice.unfused_ops.is_empty(), "{:?}", twice.unfused_ops);
        }
    }
    let fused = Batcher::new(&seed)
        .size(4)
        .strategy(Strategy::Fuse)
        .run()
        .unwrap()
        .program;
    let chunked = batchgraph::chunk_plan(&fused, &["x"].into_iter().collect(), 2).unwrap();
    let refused = Batcher::new(&chunked).size(2).run().unwrap_err().to_string();
    assert!(
        refused.contains("`chunks` or `accumulate` loop is not supported"),
        "{refused}"
    );
}

/// An unmapped operand of `concat` or `stack` holding NaN or infinity where
/// nothing reads it: the batched gradient is the per-example one, finite (the
/// operand is made mapped by adding an exact 0, never by multiplying by 1).
#[test]
fn a_nan_in_an_unmapped_operand_stays_out_of_the_batched_gradient() {
    for body in [
        "sum(slice(concat(log(w), x, 0), 0, 2, 4) * 3)",
        "sum(index(stack(log(w), x), 1) * 3)",
        "sum(slice(concat(exp(w * 1000), x, 0), 0, 2, 4))",
    ] {
        let program = Program::parse("t", &format!("input x: [2]\nparam w: [2]\nout s = {body}")).unwrap();
        for strategy in [Strategy::Fuse, Strategy::Auto] {
            let batched = Batcher::new(&program).size(2).strategy(strategy).run().unwrap().program;
            let values: Values<f64> = [
                ("x".to_string(), ndarray::array![[1.0, 2.0], [3.0, 4.0]].into_dyn()),
                ("w".to_string(), ndarray::array![-1.0, 1.0].into_dyn()),
            ]
            .into();
            let grads = Interpreter::new(&batched).gradient(&values).unwrap().grads;
            let x = &grads.iter().find(|(n, _)| n == "x").unwrap().1;
            assert!(
                x.iter().all(|v| v.is_finite()),
                "{body} {strategy:?}: {x}\n{}",
                batched.to_text()
            );
        }
    }
}

#[test]
fn every_op_batches_through_a_rule_of_its_class() {
    // Every op a per-example program can hold has a batching rule that the soundness checker exercised.
    let rules = RuleSet::builtin();
    for op in batchgraph::Op::every_kind() {
        let family = match &op {
            batchgraph::Op::Unary(u, _) => format!("vmap-{}", u.ident().to_lowercase()),
            batchgraph::Op::Binary(b, _) => format!("vmap-{}-both", b.ident().to_lowercase()),
            batchgraph::Op::Reduce(r, _) => format!("reduce-all/{}", r.name()),
            batchgraph::Op::ReduceAxis(r, _) => format!("axis-shift/{}", r.name()),
            batchgraph::Op::MatMul(_) => "matmul/batched-gemm".into(),
            batchgraph::Op::Structural(s, _) => s.batch_rule().name.into(),
            batchgraph::Op::Map(_)
            | batchgraph::Op::Row(_)
            | batchgraph::Op::Chunks(_)
            | batchgraph::Op::Rows(_)
            | batchgraph::Op::Accumulate(_)
            | batchgraph::Op::Vmap(_)
            | batchgraph::Op::Num(_)
            | batchgraph::Op::Var(_) => continue,
        };
        let rule = rules
            .rules
            .iter()
            .find(|r| r.name == family)
            .unwrap_or_else(|| panic!("no rule {family}"));
        assert!(check_rule(rule).unwrap() > 0, "{family}");
    }
}

#[test]
fn a_rule_that_breaks_shapes_is_an_error_never_a_fallback() {
    let dir = std::env::temp_dir().join(format!("batchgraph-bad-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.rules"),
        "# wrong: drops the batch axis\nbad: (vmap (tanh ?a)) => (sum (vmap ?a))\n",
    )
    .unwrap();
    let rules = RuleSet::builtin().with_dir(&dir).unwrap();
    for strategy in [Strategy::Auto, Strategy::Fuse] {
        let result = Batcher::new(&example("seed"))
            .size(4)
            .strategy(strategy)
            .rules(rules.clone())
            .run();
        // The conflict is data: the two shapes the unsound rule merged, or the node it built.
        assert!(
            matches!(
                result,
                Err(Error::UnsoundRule(
                    batchgraph::Conflict::Merged { .. } | batchgraph::Conflict::IllShaped(_)
                ))
            ),
            "{strategy:?}: {:?}",
            result.map(|b| b.report)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The auto strategy extracts its fused plan from the e-graph it shares with
/// the mixed plan (the loops it may not use left out of its choice): the
/// fused program is the one `--strategy fuse` extracts from an e-graph of its
/// own, for every example at B in {1, 3, 8}, with every rule and with the
/// tanh, matmul and product rules left out in turn (so that the fused plan
/// loops over the ops no rule fuses).
#[test]
fn the_shared_fused_plan_is_the_fused_strategys_plan() {
    let without = |names: &[&str]| {
        names.iter().fold(RuleSet::builtin(), |rules, name| {
            let fewer = rules.clone().without(name);
            assert!(fewer.rules.len() < rules.rules.len(), "no rule {name}");
            fewer
        })
    };
    let rule_sets = [
        RuleSet::builtin(),
        without(&["vmap-tanh"]),
        without(&["vmap-matmul-right", "vmap-matvec-right"]),
        without(&["vmap-mul-both", "vmap-mul-left", "vmap-mul-right"]),
    ];
    let fused = |plans: Vec<(batchgraph::PlanSummary, Program)>| {
        plans
            .into_iter()
            .find(|(summary, _)| summary.name == "fused")
            .map(|(summary, program)| (summary.nodes, summary.cost, program.to_text()))
    };
    let mut compared = 0;
    for (name, program) in every_example() {
        for rules in &rule_sets {
            for size in [1, 3, 8] {
                let batcher = Batcher::new(&program).size(size).rules(rules.clone());
                let shared = fused(batcher.clone().strategy(Strategy::Auto).plans().unwrap());
                let alone = fused(batcher.strategy(Strategy::Fuse).plans().unwrap());
                assert!(alone.is_some(), "{name}, B = {size}: no fused plan");
                assert_eq!(shared, alone, "{name}, B = {size}");
                compared += 1;
            }
        }
    }
    assert!(compared >= 40, "{compared}");
}

/// The loop plan is written directly, not extracted: it is the program greedy
/// extraction finds in the loop plan's e-graph, for every example and 60
/// random programs, batched over every input and over the first alone, at B
/// in {1, 3}, with every reduction of the outputs (a program with several
/// outputs, one of them unmapped, among them).
#[test]
fn the_loop_plan_is_the_loop_plans_extraction() {
    let mut programs = every_example();
    let mut rng = Rng::new(11);
    programs.extend(
        batchable_random_programs(60, &mut rng)
            .into_iter()
            .map(|p| ("random".to_string(), p)),
    );
    let several = "input x: [3]\ninput y: [3]\nparam w: [3]\nlet h = tanh(x * w)\n\
                   out a = sum(h)\nout b = sum(w * 2)\nout c = h + y\nout d = x";
    programs.push((
        "several outputs".to_string(),
        Program::parse("several", several).unwrap(),
    ));
    let mut compared = 0;
    for (name, program) in &programs {
        let first = vec![program.inputs[0].name.clone()];
        let all: Vec<String> = program.inputs.iter().map(|d| d.name.clone()).collect();
        for over in [all, first] {
            for reduce in [Reduce::Mean, Reduce::Sum, Reduce::None] {
                for size in [1, 3] {
                    let batcher = Batcher::new(program)
                        .over(over.clone())
                        .size(size)
                        .reduce(reduce)
                        .strategy(Strategy::Unroll);
                    let direct = batcher.run().unwrap().program;
                    let extracted = batcher.loop_plan_by_extraction().unwrap();
                    assert_eq!(
                        direct.to_text(),
                        extracted.to_text(),
                        "{name} over {over:?}, {reduce:?}, B = {size}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 400, "{compared}");
}
