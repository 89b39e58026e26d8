//! Regression tests for issue 21's memory, crash and message items: each
//! runs the command (or the library function) as the report did.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Runs the command with its address space capped at `bytes`: a run that
/// needs more fails to allocate (and aborts) instead of swapping the machine.
fn batchgraph_within(bytes: u64, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_batchgraph"));
    command
        // The built-in profile, whatever `calibrate --save` left on this machine.
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_AS, &limit) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    command.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `contents` to `name` in this test run's own folder and returns the path.
fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("batchgraph-hardening-memory-{}", std::process::id()));
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

/// The chain of the report: `let t{i} = sin(t{i-1}) * w + t{i-1}`, `steps` long.
fn chain(steps: usize) -> String {
    let mut text = String::from("input x: [3]\nparam w: [3]\nlet t0 = x\n");
    for i in 1..=steps {
        text.push_str(&format!("let t{i} = sin(t{}) * w + t{}\n", i - 1, i - 1));
    }
    text.push_str(&format!("out s = sum(t{steps})\n"));
    text
}

/// Item 6: extraction kept, per class, a copy of every class below it, so
/// memory grew with the square of the depth (5,000 steps took 6 GB, 10,000
/// aborted). Under a 1 GiB address space, 10,000 steps now batch at B = 4.
#[test]
fn batch_of_a_ten_thousand_step_chain_fits_in_a_gigabyte() {
    let file = temp_file("chain10000.graph", &chain(10_000));
    let report = temp_file("chain10000.json", "");
    let out = batchgraph_within(1 << 30, &["batch", &file, "--size", "4", "--report", &report]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // The fused plan: three ops a step.
    assert_eq!(report["chosen"]["name"], "fused");
    let nodes = report["chosen"]["nodes"].as_u64().unwrap();
    assert!((30_000..30_010).contains(&nodes), "{nodes} nodes");
}

fn batchgraph(args: &[&str]) -> Output {
    batchgraph_within(u64::MAX, args)
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn assert_close(got: &serde_json::Value, want: &serde_json::Value, what: &str) {
    let flat = |v: &serde_json::Value| -> Vec<f64> {
        let mut out = vec![];
        let mut stack = vec![v.clone()];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Array(items) => stack.extend(items.into_iter().rev()),
                other => out.push(other.as_f64().unwrap()),
            }
        }
        out
    };
    let (got, want) = (flat(got), flat(want));
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
            "{what}: {got:?} against {want:?}"
        );
    }
}

/// Item 7: the gradient program of a `chunks` loop whose chunk size does
/// not divide the rows wrote the chunk's rows as a literal in the body's
/// cotangent, so `grad` refused a program `eval --grad` runs. Its values
/// now equal `eval --grad`'s, for chunk sizes that divide the rows and not.
#[test]
fn grad_of_chunks_whose_size_does_not_divide_the_rows_equals_eval_grad() {
    let inputs = temp_file(
        "chunks/x.json",
        r#"{"x": [[1,2,3],[4,5,6],[7,8,9],[1,-2,3],[0.5,1,2],[3,3,1],[2,-1,0.25]]}"#,
    );
    for k in [1, 2, 3, 4, 7] {
        let program = temp_file(
            &format!("chunks/k{k}.graph"),
            &format!("input x: [7, 3]\nout s = mean(chunks(sum(rows(x, {k}) * 3, 1), 7, {k}), 0)\n"),
        );
        let expected = json(&batchgraph(&["eval", &program, "--inputs", &inputs, "--grad"]));
        let grad = batchgraph(&["grad", &program]);
        assert!(grad.status.success(), "chunks of {k}: {}", stderr(&grad));
        let grad_program = temp_file(
            &format!("chunks/grad_k{k}.graph"),
            &String::from_utf8(grad.stdout).unwrap(),
        );
        let got = json(&batchgraph(&["eval", &grad_program, "--inputs", &inputs]));
        assert_close(
            &got["outputs"]["s"],
            &expected["outputs"]["s"],
            &format!("s, chunks of {k}"),
        );
        assert_close(
            &got["outputs"]["grad_x"],
            &expected["grads"]["x"],
            &format!("grad_x, chunks of {k}"),
        );
    }
}

/// Item 12: a map over the wrong number of rows was reported at an empty
/// line past the end of the file; it is reported at the map, with its text.
#[test]
fn a_map_over_the_wrong_number_of_rows_is_reported_at_the_map() {
    let file = temp_file("map_rows.graph", "input x: [3, 2]\nout s = sum(map(row(x) * 2, 4))\n");
    let inputs = temp_file("map_rows.json", r#"{"x": [[1, 2], [3, 4], [5, 6]]}"#);
    let out = batchgraph(&["eval", &file, "--inputs", &inputs]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("map_rows.graph:2:13:"), "{message}");
    assert!(
        message.contains("a loop over 4 rows reads a value of shape [3, 2]"),
        "{message}"
    );
    assert!(message.contains("2 | out s = sum(map(row(x) * 2, 4))"), "{message}");
    assert!(message.contains("            ^"), "{message}");
}

/// Runs `call`, failing the test naming `function` if it panics; its result otherwise.
fn no_panic<R>(function: &str, call: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(r) => r,
        Err(_) => panic!("{function} panicked instead of returning an error"),
    }
}

/// Item 9: a zero-size dimension, declared or in the values given, then
/// `gradient` (and every other run of the interpreter): an error naming the
/// shape, never a panic (tests run in a debug build, with overflow checks).
#[test]
fn a_zero_size_dimension_is_an_error_for_every_interpreter_run() {
    use batchgraph::{Binary, Decl, Interpreter, Op, Program, Shape, Tensor, Values};
    use egg::{Id, RecExpr, Symbol};
    let mut expr = RecExpr::default();
    let x = expr.add(Op::Var(Symbol::from("x")));
    let y = expr.add(Op::Binary(Binary::Mul, [x, x]));
    expr.add(Op::Reduce(batchgraph::Reduce::Sum, y));
    let declared = |dims: &[usize]| {
        let decl = Decl {
            name: "x".into(),
            shape: Shape(dims.to_vec()),
        };
        Program::new(
            vec![decl],
            vec![],
            expr.clone(),
            vec![("s".into(), Id::from(2))],
            vec![],
        )
    };
    for dims in [&[0][..], &[0, 3], &[3, 0]] {
        let e = no_panic("Program::new", || declared(dims)).unwrap_err().to_string();
        assert!(e.contains("zero dimension"), "{dims:?}: {e}");
    }
    let program = declared(&[2, 3]).unwrap();
    for dims in [&[0][..], &[0, 3], &[2, 0], &[0, 0]] {
        let values: Values<f64> = [("x".to_string(), Tensor::<f64>::zeros(ndarray::IxDyn(dims)))].into();
        let interpreter = Interpreter::new(&program);
        let e = no_panic("Interpreter::gradient", || interpreter.gradient(&values))
            .err()
            .unwrap_or_else(|| panic!("gradient of values of shape {dims:?} for x: [2, 3]"))
            .to_string();
        assert!(e.contains('x') && e.contains("[2, 3]"), "{dims:?}: {e}");
        assert!(no_panic("Interpreter::evaluate", || interpreter.evaluate(&values)).is_err());
        assert!(no_panic("Interpreter::tangents", || interpreter.tangents(&values, &values)).is_err());
        let fused = Interpreter::new(&program).fuse(true).check_finite(true);
        assert!(no_panic("Interpreter::gradient (fused)", || fused.gradient(&values)).is_err());
    }
}

/// Item 10: `--check-finite` inside a loop named the value the loop's
/// cotangent reached (`the gradient of `x``) or the loop's consumer (`the
/// tangent of mean`) where the fused plan names `sqrt`: the loop run now
/// checks each derivative through the body's ops and names the same op.
#[test]
fn check_finite_names_the_same_op_in_loop_and_fused_plans() {
    let program = temp_file("finite/sqrt.graph", "input x: [3]\nout s = sum(sqrt(x))\n");
    let inputs = temp_file("finite/x.json", r#"{"x": [[0, 1, 2], [1, 1, 1]]}"#);
    let tangents = temp_file("finite/t.json", r#"{"x": [[1, 1, 1], [1, 1, 1]]}"#);
    let mut messages: Vec<(String, String)> = vec![];
    for strategy in ["fuse", "unroll"] {
        let batched = batchgraph(&["batch", &program, "--size", "2", "--strategy", strategy]);
        assert!(batched.status.success(), "{}", stderr(&batched));
        let file = temp_file(
            &format!("finite/{strategy}.graph"),
            &String::from_utf8(batched.stdout).unwrap(),
        );
        for run in ["--grad", "--tangents"] {
            let mut args = vec!["eval", &file, "--inputs", &inputs, "--check-finite", run];
            if run == "--tangents" {
                args.push(&tangents);
            }
            let out = batchgraph(&args);
            assert!(!out.status.success(), "{strategy} {run}: no error");
            messages.push((format!("{strategy} {run}"), stderr(&out)));
        }
    }
    for (run, message) in &messages {
        let expected = match run.ends_with("--grad") {
            true => "the gradient through sqrt",
            false => "the tangent of sqrt",
        };
        assert!(message.contains(expected), "{run}: {message}");
    }
}

/// Item 5: with a loss term computed once outside the loop (a mean of
/// stacked params, or weight decay), `batch --memory` chose chunked plans
/// whose measured peak was up to twice the budget: the prediction left out
/// the cotangents the loop's backward sweep gives the values it reads, and
/// the backward sweep of those terms. Now the measured peak of the chosen
/// plan's gradient run is within the budget, and the prediction covers it.
#[test]
fn batch_memory_budget_holds_when_a_loss_term_does_not_depend_on_the_batch() {
    let programs = [
        (
            "stacked.graph",
            "input x: [4]\nparam v: [4]\nparam W: [64, 64]\nout s = sigmoid(sum(x * v)) + mean(stack(W, W, W, W, W, W, W, W))\n",
        ),
        (
            "decay.graph",
            "input x: [4]\nparam v: [4]\nparam W: [64, 64]\nout s = sigmoid(sum(x * v)) + sum(W * W) + mean(W @ W)\n",
        ),
    ];
    let mut values = String::from(r#"{"v": [0.1, 0.2, 0.3, 0.4], "W": ["#);
    values.push_str(&vec![format!("[{}]", vec!["0.01"; 64].join(", ")); 64].join(", "));
    values.push_str(r#"], "x": ["#);
    values.push_str(&vec!["[1, 2, 3, 4]"; 64].join(", "));
    values.push_str("]}");
    let inputs = temp_file("budget/values.json", &values);
    for (name, text) in programs {
        let program = temp_file(&format!("budget/{name}"), text);
        for budget in [150_000usize, 300_000, 600_000] {
            let report = temp_file(&format!("budget/{name}.{budget}.json"), "");
            let budget_text = budget.to_string();
            let args = [
                "batch",
                &program,
                "--size",
                "64",
                "--memory",
                &budget_text,
                "--report",
                &report,
            ];
            let batched = batchgraph(&args);
            if !batched.status.success() {
                assert!(stderr(&batched).contains("no plan fits"), "{}", stderr(&batched));
                continue;
            }
            let file = temp_file(
                &format!("budget/{name}.{budget}.graph"),
                &String::from_utf8(batched.stdout).unwrap(),
            );
            let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
            let predicted = report["chosen"]["predicted_peak_bytes"].as_u64().unwrap();
            let run = json(&batchgraph(&["eval", &file, "--inputs", &inputs, "--grad", "--memory"]));
            let measured = run["peak_bytes"].as_u64().unwrap();
            let plan = &report["chosen"]["name"];
            assert!(
                measured <= budget as u64,
                "{name}, {plan}: measured {measured} > budget {budget}"
            );
            assert!(
                measured <= predicted,
                "{name}, {plan}: measured {measured} > predicted {predicted}"
            );
        }
    }
}

/// Item 5, as a property: random programs over every kind of op, some with
/// a loss term that does not depend on the batch, batched at B = 8 under a
/// random budget between the smallest and the largest plan's predicted
/// peak: whenever a plan is chosen, its gradient run's measured peak is
/// within the budget.
#[test]
fn the_memory_budget_is_a_promise_for_random_programs() {
    use batchgraph::{Batcher, Interpreter, Program};
    let mut rng = common::Rng::new(215);
    let mut chosen = 0;
    for (n, program) in common::batchable_random_programs(24, &mut rng).into_iter().enumerate() {
        // Every other program gets a term computed once, outside any loop.
        let text = match n % 2 {
            0 => program.to_text(),
            _ => program
                .to_text()
                .replacen("out loss = ", "out loss = mean(stack(m, m, m, m)) + sum(m * m) + ", 1),
        };
        let program = Program::parse("random", &text).unwrap();
        let plans = Batcher::new(&program)
            .size(8)
            .memory_budget(Some(usize::MAX))
            .plans()
            .unwrap();
        let peaks: Vec<usize> = plans.iter().map(|(summary, _)| summary.predicted_peak_bytes).collect();
        let (lo, hi) = (*peaks.iter().min().unwrap(), *peaks.iter().max().unwrap());
        for _ in 0..3 {
            let budget = lo + rng.below(hi - lo + 1);
            let Ok(batched) = Batcher::new(&program).size(8).memory_budget(Some(budget)).run() else {
                continue;
            };
            chosen += 1;
            let values = common::random_values(&batched.program, &mut rng, 0.5, 1.5);
            let measured = Interpreter::new(&batched.program).gradient(&values).unwrap().peak_bytes;
            let plan = &batched.report.chosen.name;
            assert!(
                measured <= budget,
                "{text}\n{plan}: measured {measured} > budget {budget}\n{}",
                batched.program.to_text()
            );
        }
    }
    assert!(chosen >= 24, "only {chosen} budgets had a plan");
}

/// Item 9: each public function of the library, fed the bad inputs of the
/// report's kind (names that are not there, the wrong number of outputs, a
/// batch size of 0, ragged or mistyped values), returns an `Err`: never a
/// panic in this debug build.
#[test]
fn public_functions_return_errors_for_bad_input() {
    use batchgraph::{grad, jvp, tensor_from_json, values_from_json, Batcher, Program};
    let two_outputs = Program::parse("two.graph", "input x: [2]\nout a = sum(x)\nout b = x * 2\n").unwrap();
    let vector = Program::parse("vector.graph", "input x: [2]\nout y = x * 2\n").unwrap();
    let unknown = ["nope".to_string()];
    let errors: Vec<(&str, Option<String>)> = vec![
        (
            "grad of two outputs",
            no_panic("grad", || grad(&two_outputs, None))
                .err()
                .map(|e| e.to_string()),
        ),
        (
            "grad of a vector output",
            no_panic("grad", || grad(&vector, None)).err().map(|e| e.to_string()),
        ),
        (
            "grad with respect to an unknown name",
            no_panic("grad", || grad(&vector, Some(&unknown)))
                .err()
                .map(|e| e.to_string()),
        ),
        (
            "jvp in an unknown name",
            no_panic("jvp", || jvp(&vector, Some(&unknown)))
                .err()
                .map(|e| e.to_string()),
        ),
        (
            "batch of size 0",
            no_panic("Batcher::run", || Batcher::new(&vector).size(0).run())
                .err()
                .map(|e| e.to_string()),
        ),
        (
            "batch over an unknown name",
            no_panic("Batcher::run", || Batcher::new(&vector).over(["nope"]).run())
                .err()
                .map(|e| e.to_string()),
        ),
        (
            "a ragged array",
            no_panic("tensor_from_json", || {
                tensor_from_json::<f64>("x", &serde_json::json!([[1, 2], [3]]))
            })
            .err()
            .map(|e| e.to_string()),
        ),
        (
            "a string for a number",
            no_panic("tensor_from_json", || {
                tensor_from_json::<f64>("x", &serde_json::json!(["a"]))
            })
            .err()
            .map(|e| e.to_string()),
        ),
        (
            "values that are not an object",
            no_panic("values_from_json", || {
                values_from_json::<f64>("v", &serde_json::json!([1]))
            })
            .err()
            .map(|e| e.to_string()),
        ),
    ];
    for (case, error) in errors {
        let message = error.unwrap_or_else(|| panic!("{case}: accepted"));
        assert!(!message.is_empty(), "{case}");
    }
}
