//! Regression tests for the wrong answers of the third hardening pass
//! (issue 21): each runs the case as the report found it and checks the answer.

use std::process::{Command, Output};

fn batchgraph(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchgraph"))
        // The built-in profile, whatever `calibrate --save` left on this machine.
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Writes `contents` to `name` in this test run's own folder and returns the path.
fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("batchgraph-hardening-values-{}", std::process::id()));
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

fn folder_of(path: &str) -> String {
    std::path::Path::new(path).parent().unwrap().display().to_string()
}

/// Item 2: rules true only for positive values (the checker drew every value
/// from (0.25, 1.75)), each refused by `rules --check` and by `batch --rules`,
/// naming file, line and rule. `sign` and `a / a` are written for scalars,
/// where their shapes agree, so that only their values can refuse them.
#[test]
fn rules_true_only_for_positive_values_are_refused() {
    let rules = [
        "(relu ?a) => ?a",
        "(abs ?a) => ?a",
        "(sqrt (* ?a ?a)) => ?a",
        "(log (* ?a ?b)) => (+ (log ?a) (log ?b))",
        "(sign ?a) => 1 if rank(?a) == 0",
        "(/ ?a ?a) => 1 if rank(?a) == 0",
        "(vmap (relu ?a)) => (vmap ?a)",
    ];
    for (i, rule) in rules.iter().enumerate() {
        let file = temp_file(
            &format!("positive{i}/mine.rules"),
            &format!("# true for positive a\nmine: {rule}\n"),
        );
        let named = format!("rule mine ({file}:2)");
        let o = batchgraph(&["rules", "--check", "--rules", &folder_of(&file)]);
        assert_eq!(o.status.code(), Some(1), "{rule}: {}", stdout(&o));
        assert!(
            stdout(&o).contains(&format!("[UNSOUND: {named}")),
            "{rule}: {}",
            stdout(&o)
        );
        let o = batchgraph(&[
            "batch",
            "examples/seed.graph",
            "--size",
            "2",
            "--rules",
            &folder_of(&file),
        ]);
        assert_eq!(o.status.code(), Some(1), "{rule}: {}", stdout(&o));
        assert!(stderr(&o).contains(&named), "{rule}: {}", stderr(&o));
    }
}

/// Item 2: the report's program, batched with `relu(a) => a`, lost its loss
/// (-0.75 for 2.25); the rule is refused, and the project's own rules all pass
/// the check on the new values (signed, zero, tied and large).
#[test]
fn the_reports_relu_rule_cannot_change_the_loss() {
    let program = temp_file(
        "relu/prog.graph",
        "input x: [2]\nparam w: [2, 2]\nout s = sum(relu(w @ x))\n",
    );
    let file = temp_file(
        "relu/rules/mine.rules",
        "# relu is the identity (for positive a)\nmine: (relu ?a) => ?a\n",
    );
    let o = batchgraph(&["batch", &program, "--size", "2", "--rules", &folder_of(&file)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = batchgraph(&["rules", "--check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("UNSOUND"), "{}", stdout(&o));
}

/// Item 11: a literal that overflows f32 was silently infinity (an input of
/// 1e300 is refused); now it is refused the same way, naming the literal
/// readably (`--check-finite` named it with 301 digits).
#[test]
fn a_literal_that_overflows_f32_is_an_error_naming_it() {
    let program = temp_file("literal/prog.graph", "input x: [2]\nout s = sum(x * 1e300 * 1e-300)\n");
    let values = temp_file("literal/x.json", "{\"x\": [1, 2]}");
    for extra in [&[][..], &["--check-finite"][..], &["--grad"][..]] {
        let mut args = vec!["eval", &program, "--inputs", &values, "--dtype", "f32"];
        args.extend(extra);
        let o = batchgraph(&args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", stdout(&o));
        assert!(
            stderr(&o).contains("the literal 1e300 is too large for the element type"),
            "{extra:?}: {}",
            stderr(&o)
        );
    }
    // The f32 model (which returned NaN) is refused too; the f64 one is written.
    let onnx = temp_file("literal/model.onnx", "");
    let o = batchgraph(&["export", &program, "--dtype", "f32", "--onnx", &onnx]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("the literal 1e300"), "{}", stderr(&o));
    let o = batchgraph(&["export", &program, "--dtype", "f64", "--onnx", &onnx]);
    assert!(o.status.success(), "{}", stderr(&o));
    // In f64 the literal fits, and the value is the program's.
    let o = batchgraph(&["eval", &program, "--inputs", &values]);
    assert!(stdout(&o).contains("\"s\":3.0"), "{}{}", stdout(&o), stderr(&o));
}

/// The gradient program's values at `values` against the interpreter's
/// reverse mode, elementwise, NaN only against NaN.
fn grad_program_agrees(source: &str, values: &[(&str, f64)]) -> Result<(), String> {
    let program = batchgraph::parse_program("case.graph", source).map_err(|e| e.to_string())?;
    let values: batchgraph::Values<f64> = values
        .iter()
        .map(|(name, v)| (name.to_string(), ndarray::arr0(*v).into_dyn()))
        .collect();
    let symbolic = batchgraph::grad(&program, None).map_err(|e| e.to_string())?;
    let derived = batchgraph::Interpreter::new(&symbolic)
        .evaluate(&values)
        .unwrap()
        .outputs;
    let expected = batchgraph::Interpreter::new(&program).gradient(&values).unwrap();
    for ((name, got), (wrt, want)) in derived[1..].iter().zip(&expected.grads) {
        let (got, want) = (got.first().unwrap(), want.first().unwrap());
        if !(got == want || (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-12 * want.abs().max(1.0)) {
            return Err(format!(
                "{source}: {name} = {got}, eval --grad gives {wrt}: {want}\n{}",
                symbolic.to_text()
            ));
        }
    }
    Ok(())
}

/// Item 4: the gradient program dropped a zero partial although the incoming
/// cotangent was infinite: `sqrt(x * 0 + z)` at z = 0 gave `grad_x = 0`
/// where `eval --grad` and JAX give NaN (inf * 0).
#[test]
fn the_gradient_program_keeps_the_nan_of_a_zero_partial() {
    grad_program_agrees(
        "input x: []\ninput z: []\nout s = sqrt(x * 0 + z)\n",
        &[("x", 1.0), ("z", 0.0)],
    )
    .unwrap();
}

/// Item 4, generated over the binary ops: each with a literal 0 operand on
/// either side, under an infinite cotangent (sqrt at 0) and a finite one; the
/// gradient program agrees with the interpreter's reverse mode.
#[test]
fn gradient_programs_agree_with_eval_on_zero_operands_under_infinite_cotangents() {
    let mut failures = vec![];
    for &op in batchgraph::Binary::ALL {
        let symbol = op.symbol();
        for term in [format!("(x {symbol} 0)"), format!("(0 {symbol} x)")] {
            for (outer, z) in [("sqrt", 0.0), ("sqrt", 1.0)] {
                let source = format!("input x: []\ninput z: []\nout s = {outer}({term} * 0 + z)\n");
                if let Err(e) = grad_program_agrees(&source, &[("x", 0.75), ("z", z)]) {
                    failures.push(e);
                }
                let source = format!("input x: []\ninput z: []\nout s = {outer}({term} + z)\n");
                if let Err(e) = grad_program_agrees(&source, &[("x", 0.75), ("z", z)]) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Item 3: a batched reduction over every element of a matrix was two
/// reductions, one per axis (`max(max(x + b, 2), 1)`), so a tie split its
/// gradient per row first: [[0.25, 0.25], [0, 0.5]] at x = [[1, 1], [0, 1]].
/// The per-example program and JAX give 1/3 to each of the three tied
/// elements; every plan must too.
#[test]
fn a_tied_maximum_over_a_matrix_shares_its_gradient_evenly_in_every_plan() {
    use batchgraph::{Batcher, Interpreter, Strategy};
    let program =
        batchgraph::parse_program("tie.graph", "input x: [2, 2]\nparam b: [2, 2]\nout s = max(x + b)\n").unwrap();
    let x = ndarray::arr3(&[[[1.0, 1.0], [0.0, 1.0]]]).into_dyn();
    let b = ndarray::Array::zeros(ndarray::IxDyn(&[2, 2]));
    let third = 1.0 / 3.0;
    let even = ndarray::arr2(&[[third, third], [0.0, third]]).into_dyn();
    for strategy in [Strategy::Fuse, Strategy::Auto, Strategy::Unroll] {
        let batched = Batcher::new(&program).size(1).strategy(strategy).run().unwrap().program;
        let values: batchgraph::Values<f64> = [("x".into(), x.clone()), ("b".into(), b.clone())].into_iter().collect();
        let grads = Interpreter::new(&batched).gradient(&values).unwrap().grads;
        for (name, g) in &grads {
            let g = g.to_shape(ndarray::IxDyn(&[2, 2])).unwrap();
            let off = (&g - &even).iter().fold(0.0f64, |m, d| m.max(d.abs()));
            assert!(off < 1e-12, "{strategy:?}: grad {name} = {g}\n{}", batched.to_text());
        }
    }
}

/// A JAX reference number: a JSON number, or "nan", "inf", "-inf" as a string.
fn jax_number(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        v => v.as_f64().unwrap(),
    }
}

/// Equal, NaN only to NaN, else within 1e-12 relative (infinities equal).
fn same(got: f64, want: f64) -> bool {
    got == want || (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-12 * want.abs().max(1.0)
}

fn load_zero_derivatives() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/zero_derivatives.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn scalars(pairs: &[(&str, f64)]) -> batchgraph::Values<f64> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), ndarray::arr0(*v).into_dyn()))
        .collect()
}

/// Found with item 4: `d(0 ^ x)/dx` was `y * log(0)` = NaN in the gradient
/// program where the interpreter gave 0. Against JAX over a grid with 0 and
/// negative values on both sides: reverse mode (fused and not), the `grad`
/// program, forward mode and the `jvp` program along each operand.
#[test]
fn power_gradients_agree_with_jax_at_zero_and_negative_values() {
    let reference = load_zero_derivatives();
    let program = batchgraph::parse_program("pow.graph", "input a: []\ninput b: []\nout s = a ^ b\n").unwrap();
    let grad = batchgraph::grad(&program, None).unwrap();
    let jvp = batchgraph::jvp(&program, None).unwrap();
    let mut failures = vec![];
    for case in reference["pow"].as_array().unwrap() {
        let (a, b) = (jax_number(&case["a"]), jax_number(&case["b"]));
        let want = [jax_number(&case["da"]), jax_number(&case["db"])];
        let values = scalars(&[("a", a), ("b", b)]);
        let first = |t: &batchgraph::Tensor<f64>| *t.first().unwrap();
        let mut got: Vec<(String, [f64; 2])> = vec![];
        for fuse in [true, false] {
            let grads = batchgraph::Interpreter::new(&program)
                .fuse(fuse)
                .gradient(&values)
                .unwrap()
                .grads;
            got.push((
                format!("reverse (fuse {fuse})"),
                [first(&grads[0].1), first(&grads[1].1)],
            ));
        }
        let outputs = batchgraph::Interpreter::new(&grad).evaluate(&values).unwrap().outputs;
        got.push(("the grad program".into(), [first(&outputs[1].1), first(&outputs[2].1)]));
        // Along each operand with the other's tangent 0 (JAX's jvp: da * 1 + db * 0).
        let along = |i: usize| -> batchgraph::Values<f64> {
            scalars(&[("a", (i == 0) as u8 as f64), ("b", (i == 1) as u8 as f64)])
        };
        let forward: Vec<f64> = (0..2)
            .map(|i| {
                first(
                    &batchgraph::Interpreter::new(&program)
                        .tangents(&values, &along(i))
                        .unwrap()
                        .jvp[0]
                        .1,
                )
            })
            .collect();
        let mut jvp_values = values.clone();
        let symbolic: Vec<f64> = (0..2)
            .map(|i| {
                for (k, name) in ["a", "b"].iter().enumerate() {
                    jvp_values.insert(jvp.inputs[2 + k].name.clone(), along(i)[*name].clone());
                }
                first(
                    &batchgraph::Interpreter::new(&jvp)
                        .evaluate(&jvp_values)
                        .unwrap()
                        .outputs[1]
                        .1,
                )
            })
            .collect();
        let jax_forward = [want[0] * 1.0 + want[1] * 0.0, want[0] * 0.0 + want[1] * 1.0];
        for (way, [da, db]) in got {
            if !same(da, want[0]) || !same(db, want[1]) {
                failures.push(format!(
                    "{a} ^ {b}: {way} gives ({da}, {db}), JAX ({}, {})",
                    want[0], want[1]
                ));
            }
        }
        for (way, t) in [("forward mode", forward), ("the jvp program", symbolic)] {
            if !same(t[0], jax_forward[0]) || !same(t[1], jax_forward[1]) {
                failures.push(format!("{a} ^ {b}: {way} gives {t:?}, JAX {jax_forward:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Found with item 4: `sign` and `step` under an infinite cotangent gave NaN
/// (inf * 0) in the interpreter where the gradient program and JAX (a
/// symbolic zero) give 0. The JAX cases, then every op of the unary table
/// whose derivative is 0 by definition, alone and after `sqrt` (in a fused
/// chain and not): reverse mode, the grad program, and forward mode against
/// the jvp program.
#[test]
fn ops_whose_derivative_is_zero_send_nothing_back_as_in_jax() {
    let reference = load_zero_derivatives();
    let mut failures = vec![];
    let mut check = |source: &str, x: f64, want: Option<(f64, f64)>| {
        let program = batchgraph::parse_program("zero.graph", source).unwrap();
        let values = scalars(&[("x", x), ("z", 0.0)]);
        let first = |t: &batchgraph::Tensor<f64>| *t.first().unwrap();
        let reverse = |fuse: bool| {
            let grads = batchgraph::Interpreter::new(&program)
                .fuse(fuse)
                .gradient(&values)
                .unwrap()
                .grads;
            (first(&grads[0].1), first(&grads[1].1))
        };
        let want = want.unwrap_or((0.0, reverse(false).1));
        let outputs = batchgraph::Interpreter::new(&batchgraph::grad(&program, None).unwrap())
            .evaluate(&values)
            .unwrap()
            .outputs;
        let ways = [
            ("reverse, fused", reverse(true)),
            ("reverse, unfused", reverse(false)),
            ("the grad program", (first(&outputs[1].1), first(&outputs[2].1))),
        ];
        for (way, (gx, gz)) in ways {
            if !same(gx, want.0) || !same(gz, want.1) {
                failures.push(format!(
                    "{source}at x = {x}: {way} gives ({gx}, {gz}), expected {want:?}"
                ));
            }
        }
        // Forward along x alone (z's tangent 0), against the jvp program.
        let along = scalars(&[("x", 1.0), ("z", 0.0)]);
        let forward = first(
            &batchgraph::Interpreter::new(&program)
                .tangents(&values, &along)
                .unwrap()
                .jvp[0]
                .1,
        );
        let jvp = batchgraph::jvp(&program, None).unwrap();
        let mut all = values.clone();
        for (k, name) in ["x", "z"].iter().enumerate() {
            all.insert(jvp.inputs[2 + k].name.clone(), along[*name].clone());
        }
        let symbolic = first(&batchgraph::Interpreter::new(&jvp).evaluate(&all).unwrap().outputs[1].1);
        if !same(forward, symbolic) {
            failures.push(format!(
                "{source}at x = {x}: forward mode gives {forward}, the jvp program {symbolic}"
            ));
        }
    };
    for case in reference["programs"].as_array().unwrap() {
        let want = (jax_number(&case["grads"]["x"]), jax_number(&case["grads"]["z"]));
        check(
            case["program"].as_str().unwrap(),
            jax_number(&case["inputs"]["x"]),
            Some(want),
        );
    }
    let zero: Vec<_> = batchgraph::Unary::ALL
        .iter()
        .filter(|u| u.derivative_is_zero())
        .collect();
    assert!(!zero.is_empty());
    for u in zero {
        for form in [
            format!("sqrt({u}(x) + z)"),
            format!("sqrt({u}(sqrt(x)) + z)"),
            format!("sqrt({u}(x) * 2 + z)"),
        ] {
            for x in [0.0, 1.0, -1.0] {
                check(&format!("input x: []\ninput z: []\nout s = {form}\n"), x, None);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
