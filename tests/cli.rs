//! The command line: output forms, exit statuses and error messages.

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

fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("batchgraph-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

#[test]
fn show_prints_program_shapes_and_node_counts() {
    let o = batchgraph(&["show", "examples/seed.graph"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("let t1 = tanh(w @ x)\nout s = sum(t1 * t1) + sum(x)\n"),
        "{text}"
    );
    assert!(text.contains("# output s: []"), "{text}");
    assert!(text.ends_with("nodes: 8 (before CSE: 13)\n"), "{text}");
}

#[test]
fn show_json_is_one_object() {
    let o = batchgraph(&["show", "examples/seed.graph", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"nodes": 8, "nodes_before_cse": 13, "inputs": {"x": [3]}, "params": {"w": [4, 3]}, "outputs": {"s": []}})
    );
}

#[test]
fn show_writes_svg_and_dot() {
    let svg = temp_file("seed.svg", "");
    let dot = temp_file("seed.dot", "");
    let o = batchgraph(&["show", "examples/seed.graph", "--svg", &svg, "--dot", &dot]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    assert!(std::fs::read_to_string(&dot).unwrap().starts_with("digraph"));
}

#[test]
fn eval_prints_outputs_gradients_and_tangents() {
    let o = batchgraph(&[
        "eval",
        "examples/seed.graph",
        "--inputs",
        "examples/seed_inputs.json",
        "--grad",
        "--tangents",
        "examples/seed_tangents.json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // Rounded to 12 digits: the last bits depend on the CPU's matmul kernel (FMA or not).
    insta::assert_snapshot!("seed_eval", serde_json::to_string_pretty(&rounded(&v)).unwrap());
}

fn rounded(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => Value::String(format!("{:.12e}", n.as_f64().unwrap())),
        Value::Array(items) => Value::Array(items.iter().map(rounded).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), rounded(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn eval_in_f32_is_close_to_f64() {
    let run = |dtype| {
        let o = batchgraph(&[
            "eval",
            "examples/seed.graph",
            "--inputs",
            "examples/seed_inputs.json",
            "--dtype",
            dtype,
        ]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["outputs"]["s"].as_f64().unwrap()
    };
    let (a, b) = (run("f64"), run("f32"));
    assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "{a} vs {b}");
}

#[test]
fn bad_values_name_the_variable_and_shapes() {
    let cases = [
        (r#"{"x": [1, 2, 3]}"#, "no value for `w` (shape [4, 3])"),
        (
            r#"{"x": [1, 2], "w": [[1,2,3],[1,2,3],[1,2,3],[1,2,3]]}"#,
            "`x` has shape [2], but the program declares [3]",
        ),
        (
            r#"{"x": [1, 2, 3], "w": [[1,2,3],[1,2,3],[1,2,3],[1,2,3]], "v": 1}"#,
            "`v` is not an input or param",
        ),
        (r#"{"x": [1, [2], 3], "w": 1}"#, "not a rectangular array"),
        (r#"{"x": "#, "invalid JSON"),
    ];
    for (i, (values, message)) in cases.iter().enumerate() {
        let path = temp_file(&format!("values{i}.json"), values);
        let o = batchgraph(&["eval", "examples/seed.graph", "--inputs", &path]);
        assert_eq!(o.status.code(), Some(1), "{values}");
        assert!(stderr(&o).contains(message), "{values}: {}", stderr(&o));
    }
}

#[test]
fn errors_exit_1_and_usage_errors_exit_2() {
    let bad = temp_file("bad.graph", "input x: [3]\nout s = tanh(x @ x @ x)\n");
    let o = batchgraph(&["show", &bad]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.graph:2:20: @: cannot multiply [] by [3]"), "{e}");
    assert!(
        e.contains("2 | out s = tanh(x @ x @ x)\n  |                    ^"),
        "{e}"
    );

    assert_eq!(batchgraph(&["show"]).status.code(), Some(2));
    assert_eq!(batchgraph(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(batchgraph(&["show", "no/such/file.graph"]).status.code(), Some(1));
}

#[test]
fn grad_needs_one_scalar_output() {
    let vector = temp_file("vector.graph", "input x: [3]\nout y = tanh(x)\n");
    let values = temp_file("v.json", r#"{"x": [1, 2, 3]}"#);
    let o = batchgraph(&["eval", &vector, "--inputs", &values, "--grad"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("output `y` has shape [3]; it must be a scalar"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_finite_names_the_op() {
    let program = temp_file("log.graph", "input x: [3]\nout y = sum(log(x))\n");
    let values = temp_file("neg.json", r#"{"x": [1, -2, 3]}"#);
    let o = batchgraph(&["eval", &program, "--inputs", &values]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("null"), "NaN is printed as null: {}", stdout(&o));
    let o = batchgraph(&["eval", &program, "--inputs", &values, "--check-finite"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("log produced a non-finite value (NaN) in a value of shape [3]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn batch_prints_a_program_that_show_and_eval_accept() {
    let report = temp_file("report.json", "");
    let o = batchgraph(&["batch", "examples/seed.graph", "--size", "3", "--report", &report]);
    assert!(o.status.success(), "{}", stderr(&o));
    let batched = temp_file("batched.graph", &stdout(&o));
    let shown = batchgraph(&["show", &batched, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(v["inputs"]["x"], serde_json::json!([3, 3]));
    let values = temp_file(
        "batched_values.json",
        r#"{"x": [[1,2,3],[4,5,6],[7,8,9]], "w": [[1,0,0],[0,1,0],[0,0,1],[1,1,1]]}"#,
    );
    let evaluated = batchgraph(&["eval", &batched, "--inputs", &values, "--grad"]);
    assert!(evaluated.status.success(), "{}", stderr(&evaluated));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for key in [
        "chosen",
        "unroll",
        "fuse",
        "egraph_nodes",
        "iterations",
        "stop_reason",
        "seconds",
    ] {
        assert!(!r[key].is_null(), "report has no {key}: {r}");
    }
}

#[test]
fn batch_errors_name_the_problem() {
    let bad_rules = temp_file("rules/mine.rules", "");
    std::fs::write(&bad_rules, "# x\nbad: (vmap (exp ?a) => (exp (vmap ?a))\n").unwrap();
    let dir = std::path::Path::new(&bad_rules).parent().unwrap().display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["--size", "0"], "batch size must be at least 1"),
        (&["--size", "2", "--over", "w"], "`w` is a param"),
        (&["--size", "2", "--over", "q"], "`q` is not an input"),
        (
            &["--size", "2", "--rules", &dir],
            "mine.rules:2: rule bad: left-hand side",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["batch", "examples/seed.graph"];
        all.extend_from_slice(args);
        let o = batchgraph(&all);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn rules_check_passes_the_builtin_rules_and_names_a_wrong_one() {
    let o = batchgraph(&["rules", "--check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("vmap-matvec-right") && !stdout(&o).contains("UNSOUND"));
    let wrong = temp_file("wrong/wrong.rules", "");
    std::fs::write(
        &wrong,
        "# exp is not tanh\nvmap-wrong: (vmap (exp ?a)) => (tanh (vmap ?a)) if mapped(?a)\n",
    )
    .unwrap();
    let dir = std::path::Path::new(&wrong).parent().unwrap().display().to_string();
    let o = batchgraph(&["rules", "--check", "--rules", &dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("UNSOUND: rule vmap-wrong ("), "{}", stdout(&o));
}

#[test]
fn export_writes_an_onnx_model_with_a_symbolic_batch_axis() {
    use batchgraph::export::proto::{tensor_shape_proto::dimension::Value as Dim, type_proto, ModelProto};
    use prost::Message;
    let out = temp_file("seed_b.onnx", "");
    let o = batchgraph(&[
        "export",
        "examples/seed.graph",
        "--onnx",
        &out,
        "--batch",
        "4",
        "--dynamic-batch",
        "--dtype",
        "f64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = ModelProto::decode(&*std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(model.opset_import[0].version, Some(18));
    let graph = model.graph.unwrap();
    let described = |info: &batchgraph::export::proto::ValueInfoProto| {
        let Some(type_proto::Value::TensorType(t)) = &info.r#type.as_ref().unwrap().value else {
            panic!("not a tensor")
        };
        let dims: Vec<String> = t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                Dim::DimValue(n) => n.to_string(),
                Dim::DimParam(p) => p.clone(),
            })
            .collect();
        format!("{} {} {:?}", info.name.as_ref().unwrap(), t.elem_type.unwrap(), dims)
    };
    let inputs: Vec<String> = graph.input.iter().map(described).collect();
    let outputs: Vec<String> = graph.output.iter().map(described).collect();
    // 11 is ONNX's DOUBLE; the mean over the batch is a scalar.
    assert_eq!(inputs, ["x 11 [\"B\", \"3\"]", "w 11 [\"4\", \"3\"]"]);
    assert_eq!(outputs, ["s 11 []"]);
}

#[test]
fn export_errors_exit_1_and_name_the_problem() {
    let out = temp_file("refused.onnx", "");
    std::fs::remove_file(&out).unwrap();
    let unbatched = temp_file(
        "unbatched.graph",
        "input x: [3]\nparam w: [3]\nout s = sum(w)\nout t = sum(x)\n",
    );
    let chunks = temp_file(
        "chunks.graph",
        "input c: [2, 3]\nparam v: [3]\nout r = sum(chunks(rows(c, 1) * v, 2, 1))\n",
    );
    let no_input = temp_file("no_input.graph", "param w: [3]\nout s = sum(w)\n");
    let cases: [(&[&str], &str); 8] = [
        (&[&no_input, "--batch", "3", "--dynamic-batch"], "no input is batched"),
        (
            &["examples/seed.graph", "--dynamic-batch"],
            "--dynamic-batch needs --batch B",
        ),
        // A chunked loop exports with its fixed rows; batching it again is refused.
        (
            &[&chunks, "--batch", "2", "--dynamic-batch"],
            "`chunks` or `accumulate` loop is not supported",
        ),
        (
            &[
                "examples/mixed.graph",
                "--batch",
                "4",
                "--strategy",
                "unroll",
                "--expand",
                "--dynamic-batch",
            ],
            "`index(_, 0)` takes one row of the batch axis for `@`",
        ),
        (
            &[&unbatched, "--batch", "4", "--reduce", "sum", "--dynamic-batch"],
            "output `s` does not depend on the batched inputs",
        ),
        (
            &[&unbatched, "--batch", "4", "--reduce", "none", "--dynamic-batch"],
            "output `s` has shape [4]",
        ),
        (
            &["examples/seed.graph", "--batch", "4", "--over", "w"],
            "`w` is a param",
        ),
        (&["no/such/file.graph"], "no/such/file.graph"),
    ];
    for (args, message) in cases {
        let mut all = vec!["export", "--onnx", &out];
        all.extend_from_slice(args);
        let o = batchgraph(&all);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(!std::path::Path::new(&out).exists(), "{args:?} wrote a file");
    }
    let o = batchgraph(&["export", "examples/seed.graph", "--onnx", "no/such/dir/m.onnx"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no/such/dir/m.onnx"), "{}", stderr(&o));
    let o = batchgraph(&["export", "examples/seed.graph", "--onnx", &out, "--over", "x"]);
    assert_eq!(o.status.code(), Some(2), "--over without --batch is a usage error");
}

#[test]
fn batch_refuses_bad_sizes_and_budgets_clearly() {
    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["batch", "examples/seed.graph", "--size", "0"],
            1,
            "the batch size must be at least 1",
        ),
        (
            &["batch", "examples/seed.graph", "--size", "4000000000"],
            1,
            "batch size 4000000000: input x would have shape",
        ),
        (
            &["batch", "examples/seed.graph", "--size", "18446744073709551615"],
            1,
            "more than 2^31 elements",
        ),
        (&["batch", "examples/seed.graph", "--size", "-3"], 2, "--size"),
        (
            &["batch", "examples/seed.graph", "--size", "8", "--memory", "0"],
            2,
            "at least 1 byte",
        ),
        (
            &["batch", "examples/seed.graph", "--size", "8", "--memory", "lots"],
            2,
            "not a size",
        ),
        (
            &["batch", "examples/mlp3.graph", "--size", "64", "--memory", "1KiB"],
            1,
            "no plan fits in 1024 bytes: the smallest predicted peak is",
        ),
    ];
    for (args, code, message) in cases {
        let start = std::time::Instant::now();
        let o = batchgraph(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        // Refused up front: nothing is built per row.
        assert!(start.elapsed().as_secs() < 20, "{args:?} took {:?}", start.elapsed());
    }
}

#[test]
fn batch_under_a_memory_budget_reports_the_chosen_plan() {
    let report = temp_file("budget/report.json", "");
    let o = batchgraph(&[
        "batch",
        "examples/mlp3.graph",
        "--size",
        "1000",
        "--memory",
        "500KB",
        "--report",
        &report,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Micro-batches (their sums accumulated chunk by chunk when the chunk divides the rows).
    let printed = stdout(&o);
    assert!(
        printed.contains("chunks(") || printed.contains("accumulate("),
        "{printed}"
    );
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(r["chosen"]["predicted_peak_bytes"].as_u64().unwrap() <= 500_000, "{r}");
    assert_eq!(r["run"], "grad");
    assert!(r["plans"].as_array().unwrap().len() > 4, "{r}");
}

#[test]
fn the_loop_plan_prints_one_loop_and_expand_writes_the_copies() {
    let o = batchgraph(&[
        "batch",
        "examples/seed.graph",
        "--size",
        "1000000",
        "--strategy",
        "unroll",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("map(sum(t2 * t2) + sum(t1), 1000000)"),
        "{}",
        stdout(&o)
    );
    let o = batchgraph(&[
        "batch",
        "examples/seed.graph",
        "--size",
        "3",
        "--strategy",
        "unroll",
        "--expand",
    ]);
    assert!(
        stdout(&o).contains("stack(") && stdout(&o).contains("index(x, 2)"),
        "{}",
        stdout(&o)
    );
    let o = batchgraph(&[
        "batch",
        "examples/seed.graph",
        "--size",
        "1000000",
        "--strategy",
        "unroll",
        "--expand",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("writing the loops out would take"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_json_is_one_object_per_size() {
    let o = batchgraph(&[
        "bench",
        "examples/seed.graph",
        "--size",
        "1,3",
        "--grad",
        "--json",
        "--seconds",
        "0.01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for (line, size) in lines.iter().zip([1.0, 3.0]) {
        assert_eq!(line["size"], size as u64);
        let median = line["median_us"].as_f64().unwrap();
        assert!(line["min_us"].as_f64().unwrap() <= median && median <= line["max_us"].as_f64().unwrap());
        assert!((line["per_example_us"].as_f64().unwrap() - median / size).abs() < 1e-9);
    }
    let o = batchgraph(&[
        "bench",
        "examples/seed.graph",
        "--json",
        "--seconds",
        "0.01",
        "--dtype",
        "f64",
    ]);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(line["size"].is_null(), "{line}");
}

/// `--ops` lists every node that ran, a fused chain under its last node, with
/// forward and backward times that add up to a positive total; text lists the
/// largest first.
#[test]
fn bench_ops_says_where_the_time_goes() {
    let args = [
        "bench",
        "examples/mlp.graph",
        "--size",
        "64",
        "--strategy",
        "fuse",
        "--grad",
        "--ops",
    ];
    let o = batchgraph(&[&args[..], &["--json", "--seconds", "0.01"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let ops = line["ops"].as_array().expect("an ops list");
    let time = |o: &serde_json::Value| o["forward_us"].as_f64().unwrap() + o["backward_us"].as_f64().unwrap();
    assert!(ops.iter().all(|o| time(o) >= 0.0) && ops.iter().map(time).sum::<f64>() > 0.0);
    let labels: Vec<&str> = ops.iter().map(|o| o["op"].as_str().unwrap()).collect();
    assert!(labels.iter().any(|l| l.starts_with("@ [64, ")), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("fused + -> tanh [64, ")),
        "{labels:?}"
    );
    let o = batchgraph(&[&args[..], &["--seconds", "0.01"]].concat());
    let text = stdout(&o);
    assert!(text.contains("forward µs") && text.contains("share"), "{text}");
    let shares: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_suffix('%')?.parse().ok()))
        .collect();
    assert!(
        shares.len() >= 3 && shares.windows(2).take(OPS_SORTED).all(|w| w[0] >= w[1]),
        "{text}"
    );
}

/// The nodes `--ops` lists largest first (the last line is the rest, in any order).
const OPS_SORTED: usize = 5;

#[test]
fn bench_rejects_bad_arguments_with_a_message() {
    let o = batchgraph(&["bench", "examples/seed.graph", "--seconds", "0"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--seconds must be a positive number"),
        "{}",
        stderr(&o)
    );
    for seconds in ["1e300", "NaN", "inf"] {
        let o = batchgraph(&["bench", "examples/seed.graph", "--seconds", seconds]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("at most a day"), "{seconds}: {}", stderr(&o));
    }
    let o = batchgraph(&["bench", "examples/vector_output.graph", "--grad", "--seconds", "0.01"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("error: gradient: output `y` has shape [2]"),
        "{}",
        stderr(&o)
    );
    let o = batchgraph(&["bench", "examples/seed.graph", "--size", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at least 1"), "{}", stderr(&o));
}

#[test]
fn grad_and_jvp_print_programs_that_batch_and_eval_accept() {
    let o = batchgraph(&["grad", "examples/seed.graph", "--wrt", "w"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("out s = ") && text.contains("out grad_w = "), "{text}");
    assert!(!text.contains("grad_x"), "{text}");
    assert!(text.contains("# output grad_w: [4, 3]"), "{text}");
    // The printed program is a program: batch it per example, then evaluate it.
    let path = temp_file("seed_grad.graph", &text);
    let o = batchgraph(&["batch", &path, "--size", "3", "--reduce", "none", "--strategy", "fuse"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("out grad_w = "), "{}", stdout(&o));
    let o = batchgraph(&["eval", &path, "--inputs", "examples/seed_inputs.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"grad_w\""), "{}", stdout(&o));

    let o = batchgraph(&["jvp", "examples/vector_output.graph", "--tangents", "W"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("input tangent_W: [2, 3]") && text.contains("out jvp_y = "),
        "{text}"
    );
}

#[test]
fn grad_and_jvp_errors_name_the_problem() {
    let o = batchgraph(&["grad", "examples/vector_output.graph"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("y has shape [2]"), "{}", stderr(&o));
    let o = batchgraph(&["grad", "examples/seed.graph", "--wrt", "q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`q` is not an input or param"), "{}", stderr(&o));
    let o = batchgraph(&["jvp", "examples/seed.graph", "--tangents", "x,x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("named twice"), "{}", stderr(&o));
}

/// `calibrate --save` writes the profile where `--profile saved` (the default) reads it.
#[test]
fn a_saved_calibration_is_the_default_profile() {
    let path = std::env::temp_dir().join(format!("batchgraph-cli-{}/saved/profile.json", std::process::id()));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_batchgraph"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("BATCHGRAPH_PROFILE", &path)
            .output()
            .unwrap()
    };
    let report = temp_file("saved/report.json", "");
    let o = run(&["batch", "examples/seed.graph", "--size", "2", "--report", &report]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = || serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(read()["profile"], "cpu", "nothing saved yet: the built-in profile");
    let o = run(&["calibrate", "--save"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let saved: batchgraph::CostProfile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved.validate(), Ok(()));
    let o = run(&["batch", "examples/seed.graph", "--size", "2", "--report", &report]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read()["profile"], "cpu (calibrated)");
}

/// A profile saved before the model gained a term is refused naming the
/// missing field, and says how to get a complete one.
#[test]
fn a_profile_from_an_older_version_says_to_calibrate_again() {
    let mut profile = serde_json::to_value(batchgraph::CostProfile::cpu()).unwrap();
    profile.as_object_mut().unwrap().remove("fold_ns");
    let path = temp_file("old/profile.json", &profile.to_string());
    let o = batchgraph(&["batch", "examples/seed.graph", "--size", "2", "--profile", &path]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains("missing field `fold_ns`") && e.contains("calibrate --save"),
        "{e}"
    );
}

/// `autobatch` prints the program (which parses back), a summary naming the
/// groups, and a JSON report; `bench --autobatch` times both halves.
#[test]
fn autobatch_prints_the_program_and_reports_groups() {
    let report = temp_file("autobatch/report.json", "");
    let o = batchgraph(&["autobatch", "examples/two_copies.graph", "--report", &report]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("stack(x1, x2)") && text.matches('@').count() == 1,
        "{text}"
    );
    assert!(stderr(&o).contains("6 groups found, 6 taken"), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["groups_found"], 6);
    assert!(json["kernels_after"].as_u64() < json["kernels_before"].as_u64());
    let again = temp_file("autobatch/again.graph", &text);
    assert!(batchgraph(&["show", &again]).status.success());

    let o = batchgraph(&[
        "bench",
        "examples/two_copies.graph",
        "--autobatch",
        "--seconds",
        "0.05",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(
        line["autobatch_us"].as_f64().unwrap() > 0.0 && line["median_us"].as_f64().unwrap() > 0.0,
        "{line}"
    );

    let o = batchgraph(&["autobatch", "examples/seed.graph"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no group found"), "{}", stderr(&o));
    let o = batchgraph(&["autobatch", "examples/missing.graph"]);
    assert_eq!(o.status.code(), Some(1));
}
