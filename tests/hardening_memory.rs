//! Regression tests for issue 21's memory, crash and message items: each
//! runs the command (or the library function) as the report did.

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
