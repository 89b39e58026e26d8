//! Derivatives as programs (`grad`, `jvp`): against the interpreter's own
//! reverse and forward modes, against JAX (tests/reference), composed with
//! batching (per-example gradients, the gradient of a batched program) and
//! with each other (Hessian-vector products against finite differences).

mod common;
use batchgraph::{grad, jvp, values_from_json, BatchReduce, Batcher, Interpreter, Program, Strategy, Tensor, Values};
use common::{
    batchable_random_programs, grad_program_difference, json_tensor, jvp_program_difference, load_reference,
    random_expression, random_values, rel_diff, Rng,
};
use ndarray::Axis;

const REFERENCES: [&str; 5] = [
    "elementwise_zoo",
    "linear_mse",
    "matmul_ranks",
    "two_layer",
    "vector_output",
];

fn example(name: &str) -> Program {
    let path = format!("{}/examples/{name}.graph", env!("CARGO_MANIFEST_DIR"));
    batchgraph::parse_file(std::path::Path::new(&path)).unwrap()
}

/// The example programs with one scalar output.
fn scalar_examples() -> Vec<(&'static str, Program)> {
    [
        "seed",
        "mlp",
        "mlp3",
        "sine_mlp",
        "softmax_classifier",
        "mixed",
        "broadcasting",
    ]
    .into_iter()
    .map(|name| (name, example(name)))
    .collect()
}

fn evaluate(program: &Program, values: &Values<f64>) -> Vec<(String, Tensor<f64>)> {
    Interpreter::new(program).evaluate(values).unwrap().outputs
}

fn output<'a>(outputs: &'a [(String, Tensor<f64>)], name: &str) -> &'a Tensor<f64> {
    &outputs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .1
}

#[test]
fn gradient_and_jvp_programs_match_jax() {
    for name in REFERENCES {
        let reference = load_reference(name);
        let program = Program::parse(name, reference["program"].as_str().unwrap()).unwrap();
        let values = values_from_json::<f64>("inputs", &reference["inputs"]).unwrap();
        if reference["scalar"].as_bool().unwrap() {
            let outputs = evaluate(&grad(&program, None).unwrap(), &values);
            for d in program.inputs.iter().chain(&program.params) {
                let expected = json_tensor(&reference["grads"][&d.name]);
                let diff = rel_diff(output(&outputs, &format!("grad_{}", d.name)), &expected);
                assert!(diff < 1e-9, "{name}: grad_{} differs from JAX by {diff}", d.name);
            }
        }
        let mut with_tangents = values.clone();
        for (n, t) in values_from_json::<f64>("tangents", &reference["tangents"]).unwrap() {
            with_tangents.insert(format!("tangent_{n}"), t);
        }
        let outputs = evaluate(&jvp(&program, None).unwrap(), &with_tangents);
        let out_name = &program.outputs[0].0;
        let diff = rel_diff(
            output(&outputs, &format!("jvp_{out_name}")),
            &json_tensor(&reference["jvp"]),
        );
        assert!(diff < 1e-9, "{name}: jvp differs from JAX by {diff}");
    }
}

/// vmap(grad(f)): the gradient program batched with `--reduce none`, every strategy, against `jax.vmap(jax.grad(f))`.
#[test]
fn per_example_gradients_match_jax_vmap_of_grad() {
    for name in REFERENCES {
        let reference = load_reference(name);
        if !reference["scalar"].as_bool().unwrap() {
            continue;
        }
        let program = Program::parse(name, reference["program"].as_str().unwrap()).unwrap();
        let batch = &reference["batch"];
        let over: Vec<String> = batch["over"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().into())
            .collect();
        let size = batch["size"].as_u64().unwrap() as usize;
        let values = values_from_json::<f64>("batch inputs", &batch["inputs"]).unwrap();
        let gradient = grad(&program, None).unwrap();
        for strategy in [Strategy::Auto, Strategy::Unroll, Strategy::Fuse] {
            let batched = Batcher::new(&gradient)
                .over(over.clone())
                .size(size)
                .strategy(strategy)
                .reduce(BatchReduce::None)
                .run()
                .unwrap();
            let outputs = evaluate(&batched.program, &values);
            for d in program.inputs.iter().chain(&program.params) {
                let expected = json_tensor(&batch["per_example_grads"][&d.name]);
                let diff = rel_diff(output(&outputs, &format!("grad_{}", d.name)), &expected);
                assert!(
                    diff < 1e-9,
                    "{name} {strategy:?}: per-example grad_{} differs from JAX by {diff}",
                    d.name
                );
            }
        }
    }
}

/// Random values for `program` batched over its inputs with `size` rows.
fn batch_values(program: &Program, size: usize, rng: &mut Rng) -> Values<f64> {
    let mut values = random_values(program, rng, -1.0, 1.0);
    for d in &program.inputs {
        values.insert(d.name.clone(), rng.tensor(d.shape.with_leading(size).dims(), -1.0, 1.0));
    }
    values
}

/// Row `b` of every batched input (params as they are).
fn example_values(program: &Program, values: &Values<f64>, b: usize) -> Values<f64> {
    let mut row = values.clone();
    for d in &program.inputs {
        row.insert(d.name.clone(), values[&d.name].index_axis(Axis(0), b).to_owned());
    }
    row
}

/// Per-example gradients (batch of grad, `--reduce none`) equal grad of each
/// example alone, and their mean equals the gradient of the batch mean (grad
/// of batch): for every scalar example program and random programs over every
/// op, B in {1, 3, 8}, every strategy.
#[test]
fn per_example_gradients_compose_with_batching() {
    let mut rng = Rng::new(0x9e2d);
    let mut programs = scalar_examples();
    programs.extend(
        batchable_random_programs(12, &mut rng)
            .into_iter()
            .map(|p| ("random", p)),
    );
    for (name, program) in programs {
        let gradient = grad(&program, None).unwrap();
        for size in [1, 3, 8] {
            let values = batch_values(&program, size, &mut rng);
            for strategy in [Strategy::Auto, Strategy::Unroll, Strategy::Fuse] {
                let label = format!("{name} B={size} {strategy:?}\n{}", program.to_text());
                let per_example = Batcher::new(&gradient)
                    .size(size)
                    .strategy(strategy)
                    .reduce(BatchReduce::None)
                    .run();
                let per_example = evaluate(&per_example.unwrap().program, &values);
                let batch_mean = Batcher::new(&program)
                    .size(size)
                    .strategy(strategy)
                    .run()
                    .unwrap()
                    .program;
                let of_batch = evaluate(&grad(&batch_mean, None).unwrap(), &values);
                for b in 0..size {
                    let alone = evaluate(&gradient, &example_values(&program, &values, b));
                    for (n, g) in &alone {
                        let diff = rel_diff(&output(&per_example, n).index_axis(Axis(0), b).to_owned(), g);
                        assert!(diff < 1e-12, "{label}: {n} of example {b} differs by {diff}");
                    }
                }
                for d in program.inputs.iter().chain(&program.params) {
                    let n = format!("grad_{}", d.name);
                    let per = output(&per_example, &n);
                    let expected = if program.is_input(&d.name) {
                        per / size as f64
                    } else {
                        per.mean_axis(Axis(0)).unwrap()
                    };
                    let diff = rel_diff(output(&of_batch, &n), &expected);
                    assert!(
                        diff < 1e-12,
                        "{label}: {n} of the batch mean differs from the per-example mean by {diff}"
                    );
                }
            }
        }
    }
}

#[test]
fn symbolic_derivatives_equal_the_interpreters_on_every_example() {
    let mut rng = Rng::new(0xe4a);
    for (name, program) in scalar_examples() {
        let values = random_values(&program, &mut rng, -1.0, 1.0);
        let direction = random_values(&program, &mut rng, -1.0, 1.0);
        let d = grad_program_difference(&program, &values);
        assert!(d < 1e-12, "{name}: grad program differs by {d}");
        let d = jvp_program_difference(&program, &values, &direction);
        assert!(d < 1e-12, "{name}: jvp program differs by {d}");
    }
    let vector = example("vector_output");
    let values = random_values(&vector, &mut rng, -1.0, 1.0);
    let direction = random_values(&vector, &mut rng, -1.0, 1.0);
    assert!(jvp_program_difference(&vector, &values, &direction) < 1e-12);
}

/// Random programs over every kind of op, loops included.
#[test]
fn symbolic_derivatives_equal_the_interpreters_on_random_programs() {
    let mut rng = Rng::new(0x7a11);
    let leaves = ["a", "c", "m", "p", "s", "2", "0.5"];
    let mut checked = 0;
    while checked < 150 {
        let body = random_expression(&mut rng, 4, &leaves);
        let text = format!(
            "input a: [3]\ninput c: [2, 3]\nparam m: [2, 3]\nparam p: [3]\nparam s: []\nout loss = sum({body})"
        );
        let Ok(program) = Program::parse("random", &text) else {
            continue;
        };
        let values = random_values(&program, &mut rng, -1.0, 1.0);
        let direction = random_values(&program, &mut rng, -1.0, 1.0);
        if Interpreter::new(&program).gradient(&values).is_err() {
            continue;
        }
        match grad(&program, None) {
            Err(e) if e.to_string().contains("`chunks` loop") => {}
            Err(e) => panic!("grad of\n{text}: {e}"),
            Ok(_) => {
                let d = grad_program_difference(&program, &values);
                assert!(d < 1e-10, "grad program of\n{text}\ndiffers by {d}");
            }
        }
        let d = jvp_program_difference(&program, &values, &direction);
        assert!(d < 1e-10, "jvp program of\n{text}\ndiffers by {d}");
        checked += 1;
    }
}

/// jvp(grad(f)): Hessian-vector products, against central differences of the gradient.
#[test]
fn hessian_vector_products_match_finite_differences_of_the_gradient() {
    let mut rng = Rng::new(0x4e55);
    for (name, program) in scalar_examples() {
        let gradient = grad(&program, None).unwrap();
        let hvp = jvp(&gradient, None).unwrap();
        let values = random_values(&program, &mut rng, -1.0, 1.0);
        let direction = random_values(&program, &mut rng, -1.0, 1.0);
        let mut with_tangents = values.clone();
        for (n, t) in &direction {
            with_tangents.insert(format!("tangent_{n}"), t.clone());
        }
        let products = evaluate(&hvp, &with_tangents);
        let h = 1e-5;
        let shifted = |sign: f64| -> Vec<(String, Tensor<f64>)> {
            let moved: Values<f64> = values
                .iter()
                .map(|(n, v)| (n.clone(), v + &(&direction[n] * (sign * h))))
                .collect();
            evaluate(&gradient, &moved)
        };
        let (plus, minus) = (shifted(1.0), shifted(-1.0));
        for d in program.inputs.iter().chain(&program.params) {
            let n = format!("grad_{}", d.name);
            let finite = (output(&plus, &n) - output(&minus, &n)) / (2.0 * h);
            let diff = rel_diff(output(&products, &format!("jvp_{n}")), &finite);
            assert!(
                diff < 1e-6,
                "{name}: Hessian-vector product for {} differs from finite differences by {diff}",
                d.name
            );
        }
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let vector = example("vector_output");
    let e = grad(&vector, None).unwrap_err().to_string();
    assert!(e.contains("scalar output") && e.contains("[2]"), "{e}");
    let two = Program::parse("t", "input x: [2]\nout a = sum(x)\nout b = sum(x * x)").unwrap();
    assert!(grad(&two, None)
        .unwrap_err()
        .to_string()
        .contains("the program has 2 (a, b)"));
    let seed = example("seed");
    let e = grad(&seed, Some(&["v".to_string()])).unwrap_err().to_string();
    assert!(e.contains("`v` is not an input or param") && e.contains("x, w"), "{e}");
    let e = jvp(&seed, Some(&["x".to_string(), "x".to_string()]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("named twice"), "{e}");
    let e = grad(
        &Program::parse(
            "t",
            "param M: [2048, 1024]\ninput U: [2048, 1024, 1]\nout s = sum(M @ U)",
        )
        .unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("grad: the derivative of `@` (shape [2048, 2048, 1])"),
        "{e}"
    );
}

/// A derived name the program already has gets a suffix, so every derived program parses back,
/// and jvp of a jvp program (second-order forward mode) works.
#[test]
fn derived_names_never_clash() {
    let clash = Program::parse(
        "t",
        "input x: [2]\ninput tangent_x: [2]\nout grad_x = sum(x * tangent_x)",
    )
    .unwrap();
    for derived in [grad(&clash, None).unwrap(), jvp(&clash, None).unwrap()] {
        let text = derived.to_text();
        Program::parse("derived", &text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    }
    let outputs: Vec<String> = grad(&clash, None)
        .unwrap()
        .outputs
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(outputs, ["grad_x", "grad_x_2", "grad_tangent_x"]);
    let seed = example("seed");
    let twice = jvp(&jvp(&seed, None).unwrap(), None).unwrap();
    let inputs: Vec<&str> = twice.inputs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        inputs,
        [
            "x",
            "tangent_x",
            "tangent_w",
            "tangent_x_2",
            "tangent_tangent_x",
            "tangent_tangent_w",
            "tangent_w_2"
        ]
    );
    // Second-order forward mode: the jvp program of the first jvp program against the interpreter.
    let mut rng = Rng::new(0x22);
    let once = jvp(&seed, None).unwrap();
    let values = random_values(&once, &mut rng, -1.0, 1.0);
    let direction = random_values(&once, &mut rng, -1.0, 1.0);
    let d = jvp_program_difference(&once, &values, &direction);
    assert!(d < 1e-12, "jvp of jvp differs by {d}");
}

/// Constants that fold to infinity or NaN stay ops (the language has no literal for them).
#[test]
fn non_finite_constants_are_not_folded() {
    for text in [
        "input y: [3]\nout s = sum((-2) ^ y)",
        "input y: [3]\nout s = sum(0 ^ y)",
    ] {
        let program = Program::parse("t", text).unwrap();
        for derived in [grad(&program, None).unwrap(), jvp(&program, None).unwrap()] {
            let printed = derived.to_text();
            assert!(!printed.contains("inf") && !printed.contains("NaN"), "{printed}");
            Program::parse("derived", &printed).unwrap_or_else(|e| panic!("{printed}\n{e}"));
        }
    }
}

/// A loop whose body's tangent is the same for every row (it reads only params) still has a tangent.
#[test]
fn loops_whose_tangent_ignores_the_rows() {
    let mut rng = Rng::new(0x100b);
    for text in [
        "input x: [4, 3]\nparam w: [3]\nout s = sum(map(sum(w) * sum(w) + sum(row(x)), 4))",
        "input x: [8, 3]\nparam w: [3]\nout s = sum(chunks(rows(x, 4) + w, 8, 4))",
        "input x: [7, 3]\nparam v: [3, 3]\nout s = sum(chunks(rows(x, 3) * sum(v, 1), 7, 3) * chunks(rows(x, 3) + sum(v, 0), 7, 3))",
    ] {
        let program = Program::parse("t", text).unwrap();
        let values = random_values(&program, &mut rng, -1.0, 1.0);
        let param = program.params[0].name.clone();
        let symbolic = jvp(&program, Some(std::slice::from_ref(&param))).unwrap();
        let tangent = rng.tensor(program.params[0].shape.dims(), -1.0, 1.0);
        let mut with_tangent = values.clone();
        with_tangent.insert(format!("tangent_{param}"), tangent.clone());
        let outputs = evaluate(&symbolic, &with_tangent);
        // The interpreter's forward mode, with a zero tangent for the input.
        let mut direction: Values<f64> = [(param, tangent)].into();
        for d in &program.inputs {
            direction.insert(d.name.clone(), Tensor::zeros(d.shape.dims()));
        }
        let expected = Interpreter::new(&program).tangents(&values, &direction).unwrap().jvp;
        let d = rel_diff(output(&outputs, "jvp_s"), &expected[0].1);
        assert!(d < 1e-12, "{text}: jvp differs by {d}");
    }
}

/// The derived program goes through the algebra rules: `transpose(transpose(a))` is `a`.
#[test]
fn derived_programs_are_simplified_by_the_algebra_rules() {
    let program = Program::parse(
        "t",
        "input x: [3, 3]\nout s = sum(transpose(transpose(sin(x))) + sin(x))",
    )
    .unwrap();
    let text = grad(&program, None).unwrap().to_text();
    assert!(!text.contains("transpose"), "{text}");
}

/// The gradient program of the MLP shares the forward pass: at most 3x its nodes.
/// The cotangent of `rows(x, k)` that is the same for every chunk is its rows
/// chunk after chunk (the last chunk cut short), as the interpreter computes it.
#[test]
fn loops_whose_cotangent_ignores_the_rows() {
    let mut rng = Rng::new(0x100c);
    for text in [
        "input x: [7, 3]\nout s = sum(chunks(rows(x, 3) * 2 + 1, 7, 3))",
        "input x: [6, 3]\nout s = sum(chunks(rows(x, 2) * 3, 6, 2)) + sum(chunks(-rows(x, 3), 6, 3) ^ 2)",
    ] {
        let program = Program::parse("t", text).unwrap();
        let values = random_values(&program, &mut rng, -1.0, 1.0);
        let symbolic = grad(&program, None).unwrap();
        let outputs = evaluate(&symbolic, &values);
        let expected = Interpreter::new(&program).gradient(&values).unwrap().grads;
        for (name, g) in &expected {
            let d = rel_diff(output(&outputs, &format!("grad_{name}")), g);
            assert!(d < 1e-12, "{text}: grad_{name} differs by {d}");
        }
    }
}

/// The transposes of `index`, `slice`, `concat`, `pad` and the loop bridges
/// (`row`, `rows`), and the tangent of a loop that ignores its rows, are a
/// constant number of nodes: the derivative programs have as many nodes at
/// 1000 rows as at 100,000 (sizes at which no two literals coincide).
#[test]
fn transposes_are_a_constant_number_of_nodes_at_any_size() {
    // (body, whether its gradient program exists: a chunked body that reads an
    // outer value has none; take the gradient before chunking)
    for (body, has_grad) in [
        ("sum(index(x, 1) * w)", true),
        ("sum(slice(x, 0, 1, 3) * w)", true),
        ("sum(concat(x, x, 0) * w)", true),
        ("sum(pad(x, 0, 1, 2) * w)", true),
        ("sum(map(row(x) * w, N))", true),
        ("sum(chunks(rows(x, 2) * 2, N, 2)) + sum(w)", true),
        ("sum(chunks(rows(x, 3) * 2, N, 3)) + sum(w)", true),
        ("sum(chunks(rows(x, 2) * w, N, 2))", false),
        (
            "sum(chunks(rows(x, 3) * sum(w), N, 3) * chunks(rows(x, 3) + w, N, 3))",
            false,
        ),
    ] {
        let counts: Vec<(Option<usize>, usize)> = [1000usize, 100_000]
            .iter()
            .map(|n| {
                let text = format!(
                    "input x: [{n}, 3]\nparam w: [3]\nout s = {}",
                    body.replace('N', &n.to_string())
                );
                let program = Program::parse("t", &text).unwrap();
                let gradient = has_grad.then(|| grad(&program, None).unwrap().node_count());
                let tangent = jvp(&program, Some(&["w".to_string()])).unwrap().node_count();
                (gradient, tangent)
            })
            .collect();
        assert_eq!(
            counts[0], counts[1],
            "{body}: (grad, jvp) nodes at 1000 rows, then at 100,000"
        );
    }
}

#[test]
fn gradient_programs_stay_small() {
    for name in ["mlp", "mlp3", "sine_mlp"] {
        let program = example(name);
        let gradient = grad(&program, None).unwrap();
        let ratio = gradient.node_count() as f64 / program.node_count() as f64;
        assert!(
            ratio <= 3.0,
            "{name}: {} nodes for {} ({ratio:.2}x)",
            gradient.node_count(),
            program.node_count()
        );
    }
}

#[test]
fn derivative_programs_snapshot() {
    insta::assert_snapshot!("grad_seed", grad(&example("seed"), None).unwrap().to_text());
    insta::assert_snapshot!("grad_mlp", grad(&example("mlp"), None).unwrap().to_text());
    insta::assert_snapshot!(
        "jvp_seed",
        jvp(&example("seed"), Some(&["w".to_string()])).unwrap().to_text()
    );
}

/// `--strategy fuse` fuses every op of every gradient and JVP program (nothing is duplicated), and the
/// fused per-example program equals the program on each example.
#[test]
fn derivative_programs_fuse_completely() {
    let mut rng = Rng::new(0xf05e);
    let mut programs: Vec<(String, Program)> = vec![];
    for (name, program) in scalar_examples() {
        programs.push((format!("grad {name}"), grad(&program, None).unwrap()));
        programs.push((format!("jvp {name}"), jvp(&program, None).unwrap()));
    }
    programs.push((
        "jvp vector_output".into(),
        jvp(&example("vector_output"), None).unwrap(),
    ));
    programs.push((
        "hvp mlp".into(),
        jvp(&grad(&example("mlp"), None).unwrap(), None).unwrap(),
    ));
    for (name, program) in programs {
        let size = 3;
        let batched = Batcher::new(&program)
            .size(size)
            .strategy(Strategy::Fuse)
            .reduce(BatchReduce::None)
            .run()
            .unwrap();
        assert!(
            batched.report.unfused_ops.is_empty(),
            "{name}: unfused {:?}",
            batched.report.unfused_ops
        );
        assert!(!batched.program.loops().any(), "{name}: the fused plan loops");
        let values = batch_values(&program, size, &mut rng);
        let stacked = evaluate(&batched.program, &values);
        for b in 0..size {
            for (n, v) in evaluate(&program, &example_values(&program, &values, b)) {
                let diff = rel_diff(&output(&stacked, &n).index_axis(Axis(0), b).to_owned(), &v);
                assert!(diff < 1e-12, "{name}: {n} of example {b} differs by {diff}");
            }
        }
    }
}
