//! Regression tests for the defects a hostile first user found (issue 13):
//! each test runs the command as the report did and checks the answer.

use std::io::Read;
use std::process::{Command, Output, Stdio};

fn batchgraph(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchgraph"))
        // The built-in profile, whatever `calibrate --save` left on this machine.
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// Runs the command, but a hang fails the test (after a minute) instead of
/// blocking it: the pictures that used to hang are run through this.
fn within_a_minute(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchgraph"))
        // The built-in profile, whatever `calibrate --save` left on this machine.
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes while waiting, so that a long output cannot block the child.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
            return Output { status, stdout, stderr };
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("batchgraph {args:?} hung for a minute");
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Writes `contents` to `name` in this test run's own folder and returns the path.
fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("batchgraph-hardening-{}", std::process::id()));
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

fn folder_of(path: &str) -> String {
    std::path::Path::new(path).parent().unwrap().display().to_string()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap()
}

/// Item 1: a rule with an axis argument is instantiated, so the wrong one fails.
#[test]
fn rules_check_fails_the_wrong_axis_rule_of_the_report() {
    let rule = temp_file(
        "axis/bad.rules",
        "# max over axis k of each example is max over axis k of the batch (wrong)\n\
         bad: (vmap (max ?a ?k)) => (max (vmap ?a) ?k)\n",
    );
    let o = batchgraph(&["rules", "--check", "--rules", &folder_of(&rule)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("[UNSOUND: rule bad ("), "{}", stdout(&o));
}

/// Item 3: `x ^ 0` has derivative 0 at x = 0, both ways.
#[test]
fn gradient_and_tangent_of_x_to_the_0_at_0_are_0() {
    let graph = temp_file("pow/pow.graph", "input x: []\nout s = x ^ 0\n");
    let at0 = temp_file("pow/x0.json", "{\"x\": 0}");
    let one = temp_file("pow/t1.json", "{\"x\": 1}");
    let v = json(&batchgraph(&[
        "eval",
        &graph,
        "--inputs",
        &at0,
        "--grad",
        "--tangents",
        &one,
    ]));
    assert_eq!(
        v,
        serde_json::json!({"outputs": {"s": 1.0}, "grads": {"x": 0.0}, "jvp": {"s": 0.0}})
    );
}

/// Item 8: `--check-finite` covers gradients and tangents.
#[test]
fn check_finite_covers_gradients_and_tangents() {
    let graph = temp_file("finite/sqrt.graph", "input x: [3]\nout s = sum(sqrt(x))\n");
    let values = temp_file("finite/x.json", "{\"x\": [0, 1, 2]}");
    let ones = temp_file("finite/t.json", "{\"x\": [1, 1, 1]}");
    let o = batchgraph(&["eval", &graph, "--inputs", &values, "--grad", "--check-finite"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("the gradient through sqrt"), "{}", stderr(&o));
    let o = batchgraph(&[
        "eval",
        &graph,
        "--inputs",
        &values,
        "--tangents",
        &ones,
        "--check-finite",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("the tangent of sqrt"), "{}", stderr(&o));
    // Finite cotangents that sum to an infinity.
    let sum = temp_file("finite/sum.graph", "input x: []\nout s = x * 1e308 + x * 9e307\n");
    let zero = temp_file("finite/zero.json", "{\"x\": 0}");
    let o = batchgraph(&["eval", &sum, "--inputs", &zero, "--grad", "--check-finite"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("the gradient of `x`"), "{}", stderr(&o));
    // Without the flag the same runs succeed (JSON null for the infinity).
    let o = batchgraph(&["eval", &graph, "--inputs", &values, "--grad"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Item 9: a cost profile that describes no machine is refused, naming the field.
#[test]
fn cost_profiles_are_validated() {
    // Issue 21, item 12: 1e308 passed validation, then priced every plan at infinity.
    for (field, bad) in [
        ("op_us", "-1"),
        ("stream_bytes_per_us", "0"),
        ("thread_speedup", "-5"),
        ("op_us", "1e308"),
    ] {
        let mut profile = serde_json::to_value(batchgraph::CostProfile::cpu()).unwrap();
        profile["name"] = "mine".into();
        profile[field] = serde_json::from_str(bad).unwrap();
        let path = temp_file(&format!("profile/{field}.json"), &profile.to_string());
        let o = batchgraph(&["batch", "examples/seed.graph", "--size", "2", "--profile", &path]);
        assert_eq!(o.status.code(), Some(1), "{field}: {}", stdout(&o));
        assert!(stderr(&o).contains(&format!("{field} is {bad}")), "{}", stderr(&o));
    }
}

/// Item 10: an input too large for f32 is an error, not a silent infinity.
#[test]
fn an_input_too_large_for_f32_is_an_error() {
    let graph = temp_file("f32/sum.graph", "input x: [3]\nout s = sum(x)\n");
    let values = temp_file("f32/x.json", "{\"x\": [1e300, 1, 2]}");
    let o = batchgraph(&["eval", &graph, "--inputs", &values, "--dtype", "f32"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("`x`: 1e300 is too large"), "{}", stderr(&o));
    let o = batchgraph(&["eval", &graph, "--inputs", &values]);
    assert!(o.status.success(), "f64 holds 1e300: {}", stderr(&o));
}

/// Item 11: a duplicate key is an error; argument positions count from 1 in both messages.
#[test]
fn duplicate_json_keys_and_argument_numbers() {
    let graph = temp_file("keys/sum.graph", "input x: [3]\nout s = sum(x)\n");
    let values = temp_file("keys/x.json", "{\"x\": [1, 1, 2], \"x\": [2, 2, 2]}");
    let o = batchgraph(&["eval", &graph, "--inputs", &values]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("duplicate key `x`"), "{}", stderr(&o));
    for body in ["sum(x, -1)", "sum(x, y)", "sum(x, 0.5)"] {
        let graph = temp_file(
            "keys/arg.graph",
            &format!("input x: [3]\ninput y: []\nout s = {body}\n"),
        );
        let o = batchgraph(&["show", &graph]);
        assert_eq!(o.status.code(), Some(1), "{body}");
        assert!(
            stderr(&o).contains("sum: argument 2 must be a non-negative integer literal"),
            "{body}: {}",
            stderr(&o)
        );
    }
}

/// Item 13: a closed pipe ends the command quietly, with success.
#[test]
fn a_closed_pipe_is_not_an_error() {
    let mut text = String::from("input x: [3]\nlet t0 = x\n");
    for i in 1..5000 {
        text += &format!("let t{i} = tanh(t{}) + t{}\n", i - 1, i - 1);
    }
    text += "out s = sum(t4999)\n";
    let graph = temp_file("pipe/long.graph", &text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchgraph"))
        // The built-in profile, whatever `calibrate --save` left on this machine.
        .env("BATCHGRAPH_PROFILE", "/nonexistent/batchgraph-profile.json")
        .args(["show", &graph])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(err, "");
}

/// Item 13: a rule file's pattern error reads as a sentence, not a debug struct.
#[test]
fn a_rule_pattern_error_is_a_sentence() {
    let rule = temp_file(
        "sexp/bad.rules",
        "# broken\nbad: (vmap (max ?a ?k) => (max (vmap ?a) ?k)\n",
    );
    let o = batchgraph(&["rules", "--rules", &folder_of(&rule)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad.rules:2: rule bad: left-hand side:"), "{err}");
    assert!(!err.contains("ParseError {"), "{err}");
}

/// Item 13: a tree count past u128 is said in words, not as u128::MAX.
#[test]
fn show_says_when_the_tree_count_saturates() {
    // y_k = y_{k-1} + y_{k-1}: 2^130 nodes as a tree, 131 after CSE.
    let mut text = String::from("input x: []\nlet y0 = x\n");
    for k in 1..=130 {
        text += &format!("let y{k} = y{} + y{}\n", k - 1, k - 1);
    }
    text += "out s = y130\n";
    let graph = temp_file("saturate/deep.graph", &text);
    let o = batchgraph(&["show", &graph]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(before CSE: more than 10^38)"), "{}", stdout(&o));
}

/// Item 5: pictures that hung (a 30-layer skip chain, 63 nodes, past 60 s;
/// the unrolled MLP at B = 64, 35 s) draw at once, and a program past the
/// layout engine's limits is a clear error, never a hang.
#[test]
fn show_svg_draws_deep_graphs_and_refuses_huge_ones() {
    let chain = |layers: usize| {
        let mut text = String::from("input x: [3]\nlet t0 = tanh(x)\n");
        for i in 1..layers {
            text += &format!("let t{i} = tanh(t{}) + t{}\n", i - 1, i - 1);
        }
        text + &format!("out s = sum(t{})\n", layers - 1)
    };
    let graph = temp_file("svg/skip30.graph", &chain(31));
    let svg = temp_file("svg/skip30.svg", "");
    let o = within_a_minute(&["show", &graph, "--svg", &svg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&svg).unwrap().matches("tanh").count() >= 31);
    let svg = temp_file("svg/mlp64.svg", "");
    let o = within_a_minute(&[
        "batch",
        "examples/mlp.graph",
        "--size",
        "64",
        "--strategy",
        "unroll",
        "--svg",
        &svg,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let graph = temp_file("svg/huge.graph", &chain(3000));
    let o = within_a_minute(&["show", &graph, "--svg", &temp_file("svg/huge.svg", "")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("graph too large to draw"), "{}", stderr(&o));
}

/// Item 2: `batch --rules DIR` checks the user's rules first and refuses an
/// unsound one, naming it, instead of silently changing the program.
#[test]
fn batch_refuses_an_unsound_user_rule() {
    let rule = temp_file(
        "userrules/wrong.rules",
        "# tanh of each example is relu of the batch (wrong)\nvmap-wrong: (vmap (tanh ?a)) => (relu (vmap ?a))\n",
    );
    let o = batchgraph(&[
        "batch",
        "examples/seed.graph",
        "--size",
        "2",
        "--rules",
        &folder_of(&rule),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("rule vmap-wrong ("), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    // A sound user rule is accepted.
    let rule = temp_file("userrules_ok/ok.rules", "# a - 0 = a\nsub-zero-mine: (- ?a 0) => ?a\n");
    let o = batchgraph(&[
        "batch",
        "examples/seed.graph",
        "--size",
        "2",
        "--rules",
        &folder_of(&rule),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Item 12: the unrolled plan is never said to leave duplication out, and
/// it fits the node limit at any B (main's loop node replaced the B copies).
#[test]
fn the_unrolled_plan_reports_its_size_honestly() {
    let program = batchgraph::parse_file(std::path::Path::new(&format!(
        "{}/examples/mixed.graph",
        env!("CARGO_MANIFEST_DIR")
    )))
    .unwrap();
    let batched = batchgraph::Batcher::new(&program)
        .size(100_000)
        .node_limit(1_000)
        .strategy(batchgraph::Strategy::Unroll)
        .run()
        .unwrap();
    let notes = batched.report.notes.join("\n");
    assert!(!notes.contains("left out"), "{notes}");
    assert!(batched.report.egraph_nodes <= 1_000, "{}", batched.report.egraph_nodes);
}

/// Item 7: what `batch` prints for a 63-layer MLP is accepted by `eval` and
/// `show` (it nested too deeply before).
#[test]
fn a_batched_deep_mlp_parses_back() {
    let mut text = String::from("input x: [4]\n");
    let mut previous = "x".to_string();
    for i in 0..63 {
        text += &format!("param w{i}: [4, 4]\nlet h{i} = tanh(w{i} @ {previous})\n");
        previous = format!("h{i}");
    }
    text += &format!("out s = sum({previous})\n");
    let graph = temp_file("deepmlp/mlp63.graph", &text);
    let o = batchgraph(&["batch", &graph, "--size", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let batched = temp_file("deepmlp/batched.graph", &stdout(&o));
    let o = batchgraph(&["show", &batched]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    let printed: String = shown
        .lines()
        .filter(|l| !l.starts_with("nodes:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let again = temp_file("deepmlp/shown.graph", &printed);
    let o = batchgraph(&["show", &again]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Derivative programs of deep, wide and huge programs: an answer or a clear error, never a hang.
#[test]
fn grad_and_jvp_of_deep_and_huge_programs() {
    let mut text = String::from("input x: [3]\nparam w: [3]\nlet t0 = tanh(x * w)\n");
    for i in 1..1000 {
        text += &format!("let t{i} = tanh(t{}) * w + t{}\n", i - 1, i - 1);
    }
    text += "out s = sum(t999)\n";
    let deep = temp_file("deep_grad.graph", &text);
    for command in ["grad", "jvp"] {
        let o = within_a_minute(&[command, &deep]);
        assert!(o.status.success(), "{command}: {}", stderr(&o));
        assert!(stdout(&o).contains("# nodes:"), "{command}");
    }
    // The cotangent of a row of a million is that row padded with zeros: a few nodes, not a million.
    let huge = temp_file("huge_index.graph", "input x: [1000000]\nout s = index(x, 3)\n");
    let o = within_a_minute(&["grad", &huge]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pad("), "{}", stdout(&o));
}

/// Issue 21, item 12: a count of 0 says "at least 1" (0 is a non-negative integer); a
/// byte-order mark is not part of the program; an invisible character is named by its code point.
#[test]
fn messages_say_what_is_wrong() {
    for text in [
        "input x: [3]\nout y = sum(repeat(x, 0))",
        "input x: [3, 2]\nout y = sum(map(sum(row(x)), 0))",
    ] {
        let e = batchgraph::parse_program("zero.graph", text).unwrap_err().to_string();
        assert!(e.contains("argument 2 must be at least 1"), "{e}");
    }
    let p = batchgraph::parse_program("bom.graph", "\u{feff}input x: [3]\nout y = sum(x)").unwrap();
    assert_eq!(p.to_text(), "input x: [3]\nout y = sum(x)\n");
    let e = batchgraph::parse_program("zw.graph", "input x: [3]\nout y = sum(x)\u{200b}")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("zw.graph:2:15: unexpected character") && e.contains("(U+200B)"),
        "{e}"
    );
}

/// Issue 21, item 9: library calls on bad input return errors instead of panicking (in a debug build).
#[test]
fn the_interpreter_refuses_instead_of_panicking() {
    use batchgraph::{Interpreter, Tensor, Values};
    let x: Values<f64> = [("x".to_string(), Tensor::<f64>::zeros(ndarray::IxDyn(&[2])))].into();
    // An output that is a literal: its gradient is zero for every input.
    let literal = batchgraph::Program::parse("literal.graph", "input x: [2]\nout y = 3").unwrap();
    let g = Interpreter::new(&literal).gradient(&x).unwrap();
    assert_eq!(g.grads[0].1, Tensor::<f64>::zeros(ndarray::IxDyn(&[2])));
    // A name that is neither an input nor a param.
    let p = batchgraph::Program::parse("sum.graph", "input x: [2]\nout y = sum(x)").unwrap();
    let e = Interpreter::new(&p)
        .with_respect_to(["nope"])
        .gradient(&x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`nope`") && e.contains("not an input or param"), "{e}");
}

/// Issue 21, item 9: `Program::new` refuses parts that do not fit together, with a reason.
#[test]
fn a_malformed_program_is_refused_with_a_reason() {
    use batchgraph::{Binary, Decl, Op, Program, Shape};
    use egg::{Id, RecExpr, Symbol};
    let decl = |name: &str, dims: &[usize]| Decl {
        name: name.into(),
        shape: Shape(dims.to_vec()),
    };
    let x_plus_x = || {
        let mut e = RecExpr::default();
        let x = e.add(Op::Var(Symbol::from("x")));
        e.add(Op::Binary(Binary::Add, [x, x]));
        e
    };
    let refused = |inputs: Vec<Decl>, expr: RecExpr<Op>, outputs: Vec<(String, Id)>| {
        Program::new(inputs, vec![], expr, outputs, vec![])
            .unwrap_err()
            .to_string()
    };
    let out = |i: usize| vec![("y".to_string(), Id::from(i))];
    assert!(Program::new(vec![decl("x", &[2])], vec![], x_plus_x(), out(1), vec![]).is_ok());
    let e = refused(vec![decl("x", &[2])], x_plus_x(), out(7));
    assert!(e.contains("output `y` is node 7, but there are 2 nodes"), "{e}");
    let forward: RecExpr<Op> = vec![
        Op::Binary(Binary::Add, [Id::from(1), Id::from(1)]),
        Op::Var(Symbol::from("x")),
    ]
    .into();
    let e = refused(vec![decl("x", &[2])], forward, out(0));
    assert!(e.contains("reads node 1, which is not before it"), "{e}");
    let e = refused(vec![decl("x", &[2]), decl("x", &[2])], x_plus_x(), out(1));
    assert!(e.contains("`x` is declared twice"), "{e}");
    let mut spaced = RecExpr::default();
    let v = spaced.add(Op::Var(Symbol::from("x y")));
    spaced.add(Op::Binary(Binary::Add, [v, v]));
    let e = refused(vec![decl("x y", &[2])], spaced, out(1));
    assert!(e.contains("`x y` is not a name"), "{e}");
    let e = refused(vec![decl("x", &[1 << 40, 1 << 40])], x_plus_x(), out(1));
    assert!(e.contains("more than 2^31 elements"), "{e}");
}

/// Issue 21, item 8: `bench` refuses, before allocating, a run larger than the memory available
/// (the seed's gradient at B = 5e8 in f64 needs about 116 GB).
#[test]
fn bench_refuses_a_run_the_machine_cannot_hold() {
    let available_gb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?.to_string();
        line.split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib / (1 << 20))
    });
    let Some(gb) = available_gb.filter(|&gb| gb < 100) else {
        eprintln!("skipped: this machine has 100 GB or more available (or does not say)");
        return;
    };
    let o = batchgraph(&[
        "bench",
        "examples/seed.graph",
        "--size",
        "500000000",
        "--grad",
        "--dtype",
        "f64",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("more than the") && stderr(&o).contains("available"),
        "{gb} GB: {}",
        stderr(&o)
    );
}

/// Issue 21, item 9: `unbroadcast` to a shape the cotangent is not a broadcast of, and
/// `chunk_plan` over a scalar input, are errors, not panics.
#[test]
fn library_helpers_refuse_instead_of_panicking() {
    use batchgraph::{chunk_plan, unbroadcast, Program, Tensor};
    let g = Tensor::<f64>::ones(ndarray::IxDyn(&[4, 3]));
    assert_eq!(
        unbroadcast(g.clone(), &[3]).unwrap(),
        Tensor::from_elem(ndarray::IxDyn(&[3]), 4.0)
    );
    for bad in [&[2][..], &[5, 4, 3], &[4, 2]] {
        let e = unbroadcast(g.clone(), bad).unwrap_err().to_string();
        assert!(e.contains("unbroadcast: cannot broadcast [4, 3]"), "{bad:?}: {e}");
    }
    // An output that is a reduction over axis 0, of a batched input that has no axis 0.
    let scalar = Program::parse("s.graph", "input x: []\nout y = mean(expand(x, 0), 0)").unwrap();
    let batched = ["x"].into_iter().collect();
    let e = chunk_plan(&scalar, &batched, 2).unwrap_err().to_string();
    assert!(e.contains("chunks of 2: a batched input is a scalar"), "{e}");
}
