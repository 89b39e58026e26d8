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
            // Not this item: d(0 ^ x)/dx is `y * log(0)` = NaN in the gradient
            // program, 0 in the interpreter (and JAX); left for a separate fix.
            if op == batchgraph::Binary::Pow && term.starts_with("(0") {
                continue;
            }
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
