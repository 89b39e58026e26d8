//! Exported ONNX models checked by a real engine: each model is checked by the
//! onnx package (`check_model`, full check) and run in ONNX Runtime (through
//! `tests/onnx/run_onnx.py`), and its outputs are compared with the
//! interpreter's: every example program and every reference case, per example
//! and fused-batched (one file with a symbolic batch axis, run at B = 1, 4 and
//! 7), in f32 and f64; one program per op kind; the gradient and JVP programs
//! of all of them (`grad/...`, `jvp/...`); and the reference batches against
//! JAX's values.
//!
//! The Python with onnxruntime is `$BATCHGRAPH_PYTHON`, else `.venv/bin/python`
//! at the repository root, which is created (`tests/onnx/requirements.txt`)
//! when it is missing.

mod common;

use batchgraph::export::{proto, to_model};
use batchgraph::{
    autobatch, expand_loops, tensor_to_json, to_onnx, AutobatchOptions, BatchReduce, Batcher, Dtype, DynamicBatch,
    ExportOptions, Interpreter, Op, Program, Strategy, Tensor, Values, MAX_NODES,
};
use common::{json_tensor, load_reference, op_text, Rng};
use ndarray::Axis;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const F32_TOLERANCE: f64 = 1e-5;
const F64_TOLERANCE: f64 = 1e-12;
const DERIVATIVE_F32_TOLERANCE: f64 = 1e-4;
const REFERENCES: [&str; 5] = [
    "elementwise_zoo",
    "linear_mse",
    "matmul_ranks",
    "two_layer",
    "vector_output",
];

/// A program to export, with per-example values (reference inputs, or random ones).
struct Case {
    name: String,
    program: Program,
    values: Values<f64>,
}

fn random_values(program: &Program, rng: &mut Rng) -> Values<f64> {
    common::random_values(program, rng, -1.0, 1.0)
}

/// Every example program (random values) and every reference case (its inputs).
fn cases() -> Vec<Case> {
    let mut rng = Rng::new(12);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "graph"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the example programs are missing");
    let mut cases: Vec<Case> = files
        .iter()
        .map(|path| {
            let program = batchgraph::parse_file(path).unwrap();
            let values = random_values(&program, &mut rng);
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            Case { name, program, values }
        })
        .collect();
    // Autobatched programs are ordinary programs: the examples that have
    // groups, and the seed written out four times, autobatched.
    let seed = cases
        .iter()
        .find(|c| c.name == "seed")
        .expect("the seed example")
        .program
        .clone();
    let unrolled = Batcher::new(&seed)
        .size(4)
        .strategy(Strategy::Unroll)
        .run()
        .unwrap()
        .program;
    let written_out = (
        "seed_written_out".to_string(),
        expand_loops(&unrolled, MAX_NODES).unwrap(),
    );
    let named: Vec<(String, Program)> = cases.iter().map(|c| (c.name.clone(), c.program.clone())).collect();
    for (name, program) in named.into_iter().chain([written_out]) {
        let done = autobatch(&program, &AutobatchOptions::default()).unwrap();
        if done.report.groups_taken > 0 {
            let values = random_values(&done.program, &mut rng);
            cases.push(Case {
                name: format!("autobatched/{name}"),
                program: done.program,
                values,
            });
        }
    }
    assert!(cases.iter().any(|c| c.name == "autobatched/two_copies"));
    for name in REFERENCES {
        let reference = load_reference(name);
        let program = Program::parse(name, reference["program"].as_str().unwrap()).unwrap();
        let values = batchgraph::values_from_json("inputs", &reference["inputs"]).unwrap();
        cases.push(Case {
            name: format!("reference/{name}"),
            program,
            values,
        });
    }
    cases.extend(derivative_cases(&cases, &mut rng));
    cases
}

/// The gradient program of every case with one scalar output, and the JVP program of every case.
fn derivative_cases(cases: &[Case], rng: &mut Rng) -> Vec<Case> {
    let mut derived = vec![];
    for case in cases {
        let scalar = matches!(case.program.outputs.as_slice(), [(_, id)] if case.program.shape(*id).rank() == 0);
        if scalar {
            derived.push(Case {
                name: format!("grad/{}", case.name),
                program: batchgraph::grad(&case.program, None).unwrap(),
                values: case.values.clone(),
            });
        }
        let program = batchgraph::jvp(&case.program, None).unwrap();
        let mut values = case.values.clone();
        for (name, value) in random_values(&case.program, rng) {
            values.insert(format!("tangent_{name}"), value);
        }
        derived.push(Case {
            name: format!("jvp/{}", case.name),
            program,
            values,
        });
    }
    derived
}

/// One model run: its inputs (already representable in `dtype`) and the expected outputs.
struct Job {
    label: String,
    model: PathBuf,
    dtype: Dtype,
    inputs: Values<f64>,
    expected: Vec<(String, Tensor<f64>)>,
    tolerance: f64,
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => "f32",
        Dtype::F64 => "f64",
    }
}

/// The tolerance of a run labelled `label`: a derivative program (`grad/`, `jvp/`)
/// is a longer chain of f32 roundings (the forward pass, then the sweep).
fn tolerance(dtype: Dtype, label: &str) -> f64 {
    let derivative = label.starts_with("grad/") || label.starts_with("jvp/");
    match (dtype, derivative) {
        (Dtype::F32, false) => F32_TOLERANCE,
        (Dtype::F32, true) => DERIVATIVE_F32_TOLERANCE,
        (Dtype::F64, _) => F64_TOLERANCE,
    }
}

/// `values` rounded to `dtype`, as the model and the interpreter both get them.
fn rounded(values: &Values<f64>, dtype: Dtype) -> Values<f64> {
    values
        .iter()
        .map(|(n, t)| {
            let t = match dtype {
                Dtype::F32 => t.mapv(|v| v as f32 as f64),
                Dtype::F64 => t.clone(),
            };
            (n.clone(), t)
        })
        .collect()
}

/// The interpreter's outputs at `dtype` (f32 computes in f32), as f64.
fn interpret(program: &Program, values: &Values<f64>, dtype: Dtype) -> Vec<(String, Tensor<f64>)> {
    let interpreter = Interpreter::new(program);
    match dtype {
        Dtype::F64 => interpreter.evaluate(values).unwrap().outputs,
        Dtype::F32 => {
            let values: Values<f32> = values.iter().map(|(n, t)| (n.clone(), t.mapv(|v| v as f32))).collect();
            let outputs = interpreter.evaluate(&values).unwrap().outputs;
            outputs.into_iter().map(|(n, t)| (n, t.mapv(f64::from))).collect()
        }
    }
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("batchgraph-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the model of `program` and returns its path.
fn export(program: &Program, options: &ExportOptions, file: &str) -> PathBuf {
    let path = scratch_dir().join(file.replace('/', "_"));
    std::fs::write(&path, to_onnx(program, options).unwrap()).unwrap();
    path
}

/// The largest elementwise difference relative to max(1, |expected|); NaN counts as infinite.
fn difference(actual: &Tensor<f64>, expected: &Tensor<f64>) -> f64 {
    if actual.shape() != expected.shape() {
        return f64::INFINITY;
    }
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| {
            let d = (a - e).abs() / e.abs().max(1.0);
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f64::max)
}

/// Runs every job in one Python process; fails listing every job that differs.
/// Returns the largest difference seen per dtype (f32, f64).
fn run_jobs(jobs: &[Job]) -> (f64, f64) {
    let request: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let inputs: serde_json::Map<String, Value> =
                job.inputs.iter().map(|(n, t)| (n.clone(), tensor_to_json(t))).collect();
            json!({"model": job.model, "dtype": dtype_name(job.dtype), "inputs": inputs})
        })
        .collect();
    let request_path = scratch_dir().join(format!("jobs-{}.json", jobs[0].label.replace('/', "_")));
    std::fs::write(&request_path, serde_json::to_string(&request).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/run_onnx.py");
    let output = Command::new(python()).arg(script).arg(&request_path).output().unwrap();
    assert!(
        output.status.success(),
        "run_onnx.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answers.len(), jobs.len());
    let (mut failures, mut worst) = (Vec::new(), (0.0f64, 0.0f64));
    for (job, answer) in jobs.iter().zip(&answers) {
        if let Some(error) = answer.get("error") {
            failures.push(format!("{}: {error}", job.label));
            continue;
        }
        for (name, expected) in &job.expected {
            let d = difference(&json_tensor(&answer[name]), expected);
            match job.dtype {
                Dtype::F32 => worst.0 = worst.0.max(d),
                Dtype::F64 => worst.1 = worst.1.max(d),
            }
            if d > job.tolerance {
                failures.push(format!(
                    "{} output `{name}`: differs by {d:e} (tolerance {:e})",
                    job.label, job.tolerance
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs differ:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} runs; largest difference f32 {:.2e}, f64 {:.2e}",
        jobs.len(),
        worst.0,
        worst.1
    );
    worst
}

/// A job running `model` on `values` against the interpreter on `program`.
fn job(label: String, program: &Program, model: PathBuf, dtype: Dtype, values: &Values<f64>) -> Job {
    let inputs = rounded(values, dtype);
    let expected = interpret(program, &inputs, dtype);
    Job {
        model,
        dtype,
        inputs,
        expected,
        tolerance: tolerance(dtype, &label),
        label,
    }
}

/// Names that the exporter's own value names (`t0`, ...) must step around; an
/// output that is an input, a literal, or the same node as another output.
fn naming_case() -> Case {
    let source = "input t0: [2]\nparam t1: [2]\nout t2 = t0 * t1 + 1\nout t3 = t0\nout t4 = 2\nout a = t0 * t1 + 1\n";
    let program = Program::parse("names", source).unwrap();
    let values = random_values(&program, &mut Rng::new(3));
    Case {
        name: "names".into(),
        program,
        values,
    }
}

#[test]
fn per_example_programs_match_the_interpreter() {
    let mut jobs = Vec::new();
    for case in cases().into_iter().chain([naming_case()]) {
        for dtype in [Dtype::F32, Dtype::F64] {
            let label = format!("{} {}", case.name, dtype_name(dtype));
            let options = ExportOptions {
                dtype,
                dynamic_batch: None,
            };
            let model = export(&case.program, &options, &format!("{label}.onnx"));
            jobs.push(job(label, &case.program, model, dtype, &case.values));
        }
    }
    run_jobs(&jobs);
}

/// The program, unless the export refuses it (as checked here): a float-only
/// op in f64, a `chunks` or `accumulate` loop with a symbolic batch.
fn exportable(program: &Program, options: &ExportOptions, label: &str) -> Option<Program> {
    let nodes = program.expr.as_ref();
    if let Some(Op::Unary(u, _)) = nodes
        .iter()
        .find(|n| matches!(n, Op::Unary(u, _) if !u.onnx_has_double()))
        .filter(|_| options.dtype == Dtype::F64)
    {
        // The table says ONNX Runtime has no double kernel: the export says so.
        let e = to_model(program, options).expect_err("a float-only op is refused in f64");
        assert!(
            matches!(&e, batchgraph::Error::ExportUnsupported { op, dtype: Some("f64"), .. } if op == u.name()),
            "{label}: {e:?}"
        );
        assert!(
            e.to_string().contains("has no double kernel in ONNX Runtime"),
            "{label}: {e}"
        );
        assert!(e.to_string().contains(u.name()), "{label}: {e}");
        return None;
    }
    let chunked = nodes.iter().any(|n| matches!(n, Op::Chunks(_) | Op::Accumulate(_)));
    if !chunked || options.dynamic_batch.is_none() {
        return Some(program.clone());
    }
    // A chunked loop's rows are fixed: it exports with a fixed batch only.
    let e = to_model(program, options).expect_err("chunks is refused with a symbolic batch");
    assert!(
        matches!(&e, batchgraph::Error::ExportUnsupported { dtype: None, .. }),
        "{label}: {e:?}"
    );
    assert!(e.to_string().contains("whose row count is fixed"), "{label}: {e}");
    None
}

/// Whether the program has a `map` loop.
fn has_map(program: &Program) -> bool {
    program.expr.as_ref().iter().any(|n| matches!(n, Op::Map(_)))
}

/// One program per op kind (`Op::every_kind`), each op applied to a 3x3 input and param.
fn op_cases() -> Vec<Case> {
    let mut rng = Rng::new(5);
    let mut cases = Vec::new();
    for (k, op) in Op::every_kind().iter().enumerate() {
        if let Op::Structural(s, _) = op {
            // Every example of the op's file, on its own declarations.
            for (j, (decls, expression)) in s.examples().iter().enumerate() {
                let program = Program::parse("op", &format!("{decls}\nout r = {expression}\n")).unwrap();
                let values = random_values(&program, &mut rng);
                cases.push(Case {
                    name: format!("op{k}.{j} {expression}"),
                    program,
                    values,
                });
            }
            continue;
        }
        // A loop's body works on rows of c: [2, 3], so its operand is the vector v.
        let operand = if op.loop_body().is_some() { "v" } else { "x" };
        let Some(text) = op_text(op, operand, "y", &mut rng) else {
            continue;
        };
        let source = format!("input x: [3, 3]\nparam y: [3, 3]\nparam c: [2, 3]\nparam v: [3]\nout r = {text}\n");
        let program = Program::parse("op", &source).unwrap();
        let values = random_values(&program, &mut rng);
        cases.push(Case {
            name: format!("op{k} {text}"),
            program,
            values,
        });
    }
    cases
}

#[test]
fn every_op_kind_matches_the_interpreter() {
    let cases = op_cases();
    assert!(cases.len() >= 27, "every op kind should give a program");
    let mut jobs = Vec::new();
    for case in &cases {
        for dtype in [Dtype::F32, Dtype::F64] {
            let label = format!("{} {}", case.name, dtype_name(dtype));
            let options = ExportOptions {
                dtype,
                dynamic_batch: None,
            };
            let Some(program) = exportable(&case.program, &options, &label) else {
                continue;
            };
            let model = export(&program, &options, &format!("op-{}.onnx", jobs.len()));
            jobs.push(job(label, &case.program, model, dtype, &case.values));
        }
    }
    run_jobs(&jobs);
}

fn batched(program: &Program, size: usize, reduce: BatchReduce) -> Program {
    let batcher = Batcher::new(program).size(size).reduce(reduce).strategy(Strategy::Fuse);
    batcher.run().unwrap().program
}

/// The program's text without its `input` lines (which state B), and with the
/// row count of every `map` (the last argument) written `N`: the ONNX Loop reads
/// the count from its operand, so it is not part of what the file fixes.
fn body(program: &Program) -> String {
    let text = program.to_text();
    let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("input ")).collect();
    let text = text.join("\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("map(") {
        let (before, call) = rest.split_at(start + 4);
        out.push_str(before);
        let (mut depth, mut last_comma, mut end) = (1, 0, 0);
        for (k, ch) in call.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' if depth == 1 => {
                    end = k;
                    break;
                }
                ')' => depth -= 1,
                ',' if depth == 1 => last_comma = k,
                _ => {}
            }
        }
        out.push_str(&call[..last_comma]);
        out.push_str(", N");
        rest = &call[end..];
    }
    out.push_str(rest);
    out
}

/// The case's values with every input batched: `size` random rows.
fn batch_values(case: &Case, size: usize, rng: &mut Rng) -> Values<f64> {
    let mut values = case.values.clone();
    for d in &case.program.inputs {
        values.insert(d.name.clone(), rng.tensor(d.shape.with_leading(size).dims(), -1.0, 1.0));
    }
    values
}

/// What the batched outputs must be, from the per-example program alone: run on
/// each row, then the mean over the rows (`Mean`) or their stack (`None`).
fn per_example_then_reduce(
    case: &Case,
    values: &Values<f64>,
    size: usize,
    reduce: BatchReduce,
    dtype: Dtype,
) -> Vec<(String, Tensor<f64>)> {
    let rows: Vec<Vec<(String, Tensor<f64>)>> = (0..size)
        .map(|i| {
            let mut row = values.clone();
            for d in &case.program.inputs {
                row.insert(d.name.clone(), values[&d.name].index_axis(Axis(0), i).to_owned());
            }
            interpret(&case.program, &row, dtype)
        })
        .collect();
    let names = rows[0].iter().map(|(n, _)| n.clone());
    names
        .enumerate()
        .map(|(k, name)| {
            let views: Vec<_> = rows.iter().map(|r| r[k].1.view()).collect();
            let stacked = ndarray::stack(Axis(0), &views).unwrap();
            let value = match reduce {
                BatchReduce::Mean => stacked.mean_axis(Axis(0)).unwrap(),
                BatchReduce::Sum => stacked.sum_axis(Axis(0)),
                BatchReduce::None => stacked,
            };
            (name, value)
        })
        .collect()
}

/// The dimension names of a graph input or output (`"B"`, or the size).
fn dims_of(info: &proto::ValueInfoProto) -> Vec<String> {
    use proto::tensor_shape_proto::dimension::Value as D;
    let Some(proto::type_proto::Value::TensorType(t)) = &info.r#type.as_ref().unwrap().value else {
        panic!("not a tensor")
    };
    let dims = &t.shape.as_ref().unwrap().dim;
    dims.iter()
        .map(|d| match d.value.as_ref().unwrap() {
            D::DimValue(n) => n.to_string(),
            D::DimParam(p) => p.clone(),
        })
        .collect()
}

/// The symbolic-B model must name `B` as the leading axis of the batched inputs,
/// and of the outputs exactly when the batch is not reduced.
fn check_symbolic_dims(model: &proto::ModelProto, inputs: &[String], reduce: BatchReduce, label: &str) {
    let graph = model.graph.as_ref().unwrap();
    for info in graph.input.iter().filter(|i| inputs.contains(i.name.as_ref().unwrap())) {
        assert_eq!(dims_of(info)[0], "B", "{label}");
    }
    for info in &graph.output {
        let leading_b = dims_of(info).first().map(String::as_str) == Some("B");
        assert_eq!(leading_b, reduce == BatchReduce::None, "{label}");
    }
}

/// A refusal must be right (the batched text depends on B) and name the op the
/// batcher copied: `stack` in mixed.graph, else the op case's op.
fn check_refusal(case: &Case, error: &str, depends_on_b: bool, label: &str) {
    let copied = match case.name.split_once(' ') {
        Some((_, text)) => text.split('(').next().unwrap(),
        None => "stack",
    };
    let named = error.contains(&format!("for `{copied}`, which the batcher copied"));
    assert!(depends_on_b && named, "{label}: refused: {error}");
    eprintln!("refused as expected: {label}: {error}");
}

/// The models to run a case batched with `reduce` at B = 1, 4 and 7: one file
/// exported from B = 4 with a symbolic B, or, where that is refused, one file per B.
/// Counts the symbolic exports accepted and refused in `tally`.
fn batched_models(case: &Case, reduce: BatchReduce, dtype: Dtype, tally: &mut (usize, usize)) -> Vec<(usize, PathBuf)> {
    let program = batched(&case.program, 4, reduce);
    let depends_on_b = body(&program) != body(&batched(&case.program, 5, reduce));
    let inputs: Vec<String> = case.program.inputs.iter().map(|d| d.name.clone()).collect();
    let label = format!("{} {reduce:?} {}", case.name, dtype_name(dtype));
    let dynamic_batch = Some(DynamicBatch {
        inputs: inputs.clone(),
        reduce,
    });
    let options = ExportOptions { dtype, dynamic_batch };
    if exportable(&program, &options, &label).is_none() {
        return vec![];
    }
    match to_model(&program, &options) {
        Ok(model) => {
            check_symbolic_dims(&model, &inputs, reduce, &label);
            if has_map(&program) {
                // Its loop written out as copies depends on B: refused, naming the copied op.
                let copies = expand_loops(&program, MAX_NODES).unwrap();
                let e = to_model(&copies, &options).expect_err("copies depend on B");
                check_refusal(case, &e.to_string(), true, &label);
                tally.1 += 1;
            }
            tally.0 += 1;
            let model = export(&program, &options, &format!("{label} symbolic.onnx"));
            let mut runs = [1, 4, 7].map(|b| (b, model.clone())).to_vec();
            if depends_on_b {
                // The text differs at B = 4 and 5 (the cost model chose another, equally
                // general plan, e.g. `*` and `sum` for a `@`), yet the export took B = 4's
                // as symbolic: B = 5's must then serve every B too, and both run at 1, 4, 7.
                let other = batched(&case.program, 5, reduce);
                let model = export(&other, &options, &format!("{label} symbolic from 5.onnx"));
                runs.extend([1, 4, 7].map(|b| (b, model.clone())));
            }
            runs
        }
        Err(e) => panic!("{label}: refused: {e}"),
    }
}

/// Every case batched (fused) and exported with a symbolic B, run at B = 1, 4 and 7
/// against the per-example program row by row. A refused case must be one whose
/// batched text depends on B (differs at B = 4 and B = 5), and the refusal names an op;
/// it is then exported once per B instead. An accepted case whose text differs (the cost
/// model chose another general plan at B = 5) has B = 5's export run at 1, 4, 7 too.
#[test]
fn fused_batched_programs_with_a_symbolic_batch_axis_match_at_b_1_4_7() {
    let mut rng = Rng::new(47);
    let (mut jobs, mut tally) = (Vec::new(), (0, 0));
    // The op programs that loop themselves are left out (map batches again, see tests/batching.rs; chunks is refused).
    let has_loop = |c: &Case| c.program.expr.as_ref().iter().any(|n| n.loop_body().is_some());
    for case in cases()
        .into_iter()
        .chain(op_cases().into_iter().filter(|c| !has_loop(c)))
    {
        for reduce in [BatchReduce::Mean, BatchReduce::None] {
            for dtype in [Dtype::F32, Dtype::F64] {
                for (b, model) in batched_models(&case, reduce, dtype, &mut tally) {
                    let values = rounded(&batch_values(&case, b, &mut rng), dtype);
                    let expected = per_example_then_reduce(&case, &values, b, reduce, dtype);
                    let label = format!("{} {reduce:?} {} B={b}", case.name, dtype_name(dtype));
                    let tolerance = tolerance(dtype, &label);
                    jobs.push(Job {
                        label,
                        model,
                        dtype,
                        inputs: values,
                        expected,
                        tolerance,
                    });
                }
            }
        }
    }
    let (accepted, loops) = tally;
    eprintln!("symbolic B: {accepted} exports accepted; {loops} have a map loop, whose written-out copies are refused");
    // Every op has a fusing rule: no fused plan loops (the refusal of written-out copies is tested in tests/cli.rs).
    assert_eq!(loops, 0, "a fused plan has a map loop");
    run_jobs(&jobs);
}

/// A file exported from the program batched at B = 1 (where a batch axis of size 1
/// could pass for a broadcast one) serves B = 3 and 5 too.
#[test]
fn a_file_exported_at_b_1_serves_other_batch_sizes() {
    let mut rng = Rng::new(1);
    let mut jobs = Vec::new();
    for case in cases() {
        let program = batched(&case.program, 1, BatchReduce::Mean);
        let inputs = case.program.inputs.iter().map(|d| d.name.clone()).collect();
        let dynamic_batch = Some(DynamicBatch {
            inputs,
            reduce: BatchReduce::Mean,
        });
        let options = ExportOptions {
            dtype: Dtype::F64,
            dynamic_batch,
        };
        let model = export(&program, &options, &format!("b1-{}.onnx", case.name));
        for b in [3, 5] {
            let values = batch_values(&case, b, &mut rng);
            let expected = per_example_then_reduce(&case, &values, b, BatchReduce::Mean, Dtype::F64);
            let label = format!("{} exported at B=1, run at B={b}", case.name);
            let model = model.clone();
            jobs.push(Job {
                label,
                model,
                dtype: Dtype::F64,
                inputs: values,
                expected,
                tolerance: F64_TOLERANCE,
            });
        }
    }
    run_jobs(&jobs);
}

/// The reference batches (B = 4) through one symbolic-B f64 model each, against JAX's values.
#[test]
fn reference_batches_match_jax() {
    let mut jobs = Vec::new();
    for name in REFERENCES {
        let reference = load_reference(name);
        let per_example = Program::parse(name, reference["program"].as_str().unwrap()).unwrap();
        let batch = &reference["batch"];
        let over: Vec<String> = batch["over"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let inputs: Values<f64> = batchgraph::values_from_json("inputs", &batch["inputs"]).unwrap();
        for (reduce, key) in [
            (BatchReduce::Mean, "mean"),
            (BatchReduce::Sum, "sum"),
            (BatchReduce::None, "per_example"),
        ] {
            let program = Batcher::new(&per_example)
                .over(over.clone())
                .size(4)
                .reduce(reduce)
                .strategy(Strategy::Fuse)
                .run()
                .unwrap()
                .program;
            let dynamic_batch = Some(DynamicBatch {
                inputs: over.clone(),
                reduce,
            });
            let options = ExportOptions {
                dtype: Dtype::F64,
                dynamic_batch,
            };
            let label = format!("reference/{name} {key}");
            let model = export(&program, &options, &format!("{label}.onnx"));
            let output = program.outputs[0].0.clone();
            let expected = vec![(output, json_tensor(&batch[key]))];
            jobs.push(Job {
                label,
                model,
                dtype: Dtype::F64,
                inputs: inputs.clone(),
                expected,
                tolerance: F64_TOLERANCE,
            });
        }
    }
    run_jobs(&jobs);
}

fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(find_or_make_python).clone()
}

fn has_onnxruntime(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import onnxruntime, onnx, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `$BATCHGRAPH_PYTHON`, or `.venv/bin/python`, created if missing (one process at a time: `.venv.lock`).
fn find_or_make_python() -> PathBuf {
    if let Some(python) = std::env::var_os("BATCHGRAPH_PYTHON") {
        return python.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if has_onnxruntime(&python) {
        return python;
    }
    let lock = root.join(".venv.lock");
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
        Ok(_) => {
            let made = make_venv(root);
            std::fs::remove_file(&lock).unwrap();
            made.unwrap_or_else(|e| panic!("could not create .venv with onnxruntime: {e}"));
        }
        Err(_) => {
            // Another test process is creating it: wait for it (15 minutes at most).
            for _ in 0..900 {
                if !lock.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
    assert!(
        has_onnxruntime(&python),
        "{} has no onnxruntime (delete .venv and .venv.lock, or set BATCHGRAPH_PYTHON)",
        python.display()
    );
    python
}

fn make_venv(root: &Path) -> Result<(), String> {
    let run = |program: &str, args: &[&str]| {
        let status = Command::new(program).args(args).current_dir(root).status();
        match status {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!("{program} {}: {other:?}", args.join(" "))),
        }
    };
    eprintln!("creating .venv with onnxruntime (tests/onnx/requirements.txt)");
    run("python3", &["-m", "venv", ".venv"])?;
    run(".venv/bin/pip", &["install", "-q", "-r", "tests/onnx/requirements.txt"])
}

/// The training step of `batchgraph train` (the gradient of the mean loss
/// and the optimizer's update, one program) runs in ONNX Runtime as in the
/// interpreter, for each optimizer, with the optimizer's state part way
/// through: fused, in micro-batches of 3 of 8 (the last one shorter, its sums
/// accumulated in an ONNX Loop), and under a memory budget of 1 MB at B = 1024,
/// which only a plan in chunks fits.
#[test]
fn the_training_step_matches_the_interpreter() {
    use batchgraph::train::{random_params, Optimizer, Plan, Step, StepOptions, Trainer};
    let model = batchgraph::parse_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits.graph")).unwrap();
    let mut rng = Rng::new(21);
    let mut jobs = Vec::new();
    let optimizers = [Optimizer::Sgd, Optimizer::MOMENTUM, Optimizer::ADAM];
    let plans = optimizers
        .iter()
        .flat_map(|&o| [(o, 8, Plan::Fused), (o, 8, Plan::MicroBatch(3))])
        .chain([(Optimizer::ADAM, 1024, Plan::Memory(1_000_000))]);
    for (optimizer, batch, plan) in plans {
        let options = StepOptions {
            batch,
            plan,
            optimizer,
            loss: None,
        };
        let step = Step::build(&model, &options).unwrap();
        if plan != Plan::Fused {
            assert!(step.plan_name.starts_with("chunks of"), "{}", step.plan_name);
            // One loop carries the loss and every gradient (in chunks of 3 of 8, the last has 2 rows).
            let expr = step.program.expr.as_ref();
            let loops = expr
                .iter()
                .filter(|n| matches!(n, batchgraph::Op::Accumulate(_)))
                .count();
            assert_eq!(loops, 1, "{}", step.program.to_text());
        }
        let mut trainer = Trainer::new(&step, random_params(&step.model, 2), 0.01);
        let mut batch = || {
            let mut values = random_values(&step.program, &mut rng);
            values.retain(|name, _| step.data_inputs.contains(name));
            values
        };
        for _ in 0..2 {
            trainer.step(batch()).unwrap();
        }
        let values = trainer.step_values(batch());
        for dtype in [Dtype::F32, Dtype::F64] {
            let label = format!(
                "grad/train step {} B = {} {} {}",
                optimizer.name(),
                options.batch,
                step.plan_name,
                dtype_name(dtype)
            );
            let options = ExportOptions {
                dtype,
                dynamic_batch: None,
            };
            let file = export(&step.program, &options, &format!("{label}.onnx"));
            jobs.push(job(label, &step.program, file, dtype, &values));
        }
    }
    run_jobs(&jobs);
}

/// Where ONNX Runtime's own kernels part from `eval` (issue 21, item 13): f64
/// Softplus overflows from 710 on, f32 Sigmoid flushes sigmoid(-20) to 0, and
/// ReduceMax / ReduceMin ignore a NaN that is not first. The exporter lowers
/// these ops so that the model gives `eval`'s values there, NaN for NaN.
#[test]
fn exported_models_agree_with_eval_at_the_extremes() {
    let nan = f64::NAN;
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("softplus(x)", vec![709.0, 710.0, 800.0, -800.0, 0.5, -30.0]),
        ("sigmoid(x)", vec![-20.0, -30.0, 20.0, 0.0, -80.0, 3.0]),
        ("max(x)", vec![1.0, nan, 3.0, 2.0, 0.0, -1.0]),
        ("min(x)", vec![1.0, 2.0, -3.0, nan, 0.0, 5.0]),
        ("max(x)", vec![1.0, f64::INFINITY, 3.0, 2.0, 0.0, -1.0]),
    ];
    // The same through an axis: a NaN in the second row only.
    let axis: Vec<f64> = vec![1.0, 2.0, 3.0, 4.0, nan, 6.0];
    let script = r#"
import json, sys
import numpy as np
import onnxruntime as ort
model, dtype, values, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
x = np.array([float(v) for v in values], dtype={"f32": np.float32, "f64": np.float64}[dtype]).reshape(shape)
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
(y,) = session.run(None, {"x": x})
print(json.dumps([repr(float(v)) for v in np.asarray(y, dtype=np.float64).ravel()]))
"#;
    let mut checked = 0;
    let mut jobs: Vec<(String, Vec<f64>, Vec<usize>)> = cases
        .into_iter()
        .map(|(body, values)| (format!("input x: [6]\nout y = {body}"), values, vec![6]))
        .collect();
    for op in ["max", "min"] {
        jobs.push((format!("input x: [2, 3]\nout y = {op}(x, 1)"), axis.clone(), vec![2, 3]));
    }
    for (text, values, shape) in &jobs {
        let program = Program::parse("extremes", text).unwrap();
        for dtype in [Dtype::F32, Dtype::F64] {
            let options = ExportOptions {
                dtype,
                ..ExportOptions::default()
            };
            let model = export(&program, &options, &format!("extremes-{checked}.onnx"));
            let input = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), values.clone()).unwrap();
            let mut inputs = Values::new();
            inputs.insert("x".to_string(), input);
            let expected = interpret(&program, &rounded(&inputs, dtype), dtype);
            let strings: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            let output = Command::new(python())
                .args(["-c", script])
                .arg(&model)
                .arg(dtype_name(dtype))
                .arg(serde_json::to_string(&strings).unwrap())
                .arg(serde_json::to_string(shape).unwrap())
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let got: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();
            let got: Vec<f64> = got.iter().map(|s| s.parse().unwrap()).collect();
            let want: Vec<f64> = expected[0].1.iter().copied().collect();
            let tolerance = match dtype {
                Dtype::F32 => 1e-6,
                Dtype::F64 => 1e-12,
            };
            for (g, w) in got.iter().zip(&want) {
                let same = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tolerance * w.abs();
                assert!(
                    same,
                    "{text} in {dtype:?} at {values:?}: ONNX Runtime {got:?}, eval {want:?}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}
