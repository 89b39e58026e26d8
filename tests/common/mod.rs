//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub use batchgraph::Rng;
use batchgraph::{tensor_from_json, Op, Program, Tensor, Unary, Values};
use serde_json::Value;

/// `x` mapped into (1, 2), for operands that must be positive and bounded.
fn positive(x: &str) -> String {
    format!("(1 + sigmoid({x}))")
}

/// The text of `op` applied to the expressions `x` and `y` (used as needed),
/// for the random-program generators: every op of the op tables and every
/// structural op, by construction. Operands are kept inside each op's domain.
/// `None` for the ops a program cannot contain.
pub fn op_text(op: &Op, x: &str, y: &str, rng: &mut Rng) -> Option<String> {
    Some(match op {
        Op::Unary(Unary::Neg, _) => format!("-({x})"),
        Op::Unary(u, _) if u.tested_on().0 > 0.0 => format!("{}({})", u.name(), positive(x)),
        Op::Unary(u, _) => format!("{}({x})", u.name()),
        Op::Binary(b, _) if b.tested_on().0 > 0.0 => format!("({} {} {})", positive(x), b.symbol(), positive(y)),
        Op::Binary(b, _) => format!("({x} {} {y})", b.symbol()),
        Op::Reduce(r, _) => format!("{}({x})", r.name()),
        Op::ReduceAxis(r, _) => format!("{}({x}, {})", r.name(), rng.below(2)),
        Op::MatMul(_) => format!("({x} @ {y})"),
        // One of the op file's examples, its operands `a` and `b` replaced by `x` and `y`.
        Op::Structural(s, _) => {
            let examples = s.examples();
            substitute(examples[rng.below(examples.len())].1, x, y)
        }
        // A loop over the rows of c: [2, 3] (the generators' batched leaf); `row` only inside it.
        Op::Map(_) => format!("map(row(c) * ({x}), 2)"),
        Op::Chunks(_) => format!("chunks(rows(c, 1) * ({x}), 2, 1)"),
        Op::Accumulate(_) => format!("accumulate(sum(rows(c, 1) * ({x}), 0), 2, 1)"),
        Op::Row(_) | Op::Rows(_) | Op::Vmap(_) | Op::Num(_) | Op::Var(_) => return None,
    })
}

/// `expression` with the names `a` and `b` replaced by the texts `x` and `y`.
pub fn substitute(expression: &str, x: &str, y: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "a" => x,
            "b" => y,
            other => other,
        });
        word.clear();
    };
    for c in expression.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A random expression of depth up to `depth` over `leaves`, drawing ops
/// uniformly from every kind of op (`Op::every_kind`).
pub fn random_expression(rng: &mut Rng, depth: usize, leaves: &[&str]) -> String {
    if depth == 0 || rng.next_f64() < 0.2 {
        return leaves[rng.below(leaves.len())].to_string();
    }
    let ops = Op::every_kind();
    loop {
        let op = &ops[rng.below(ops.len())];
        let (x, y) = (
            random_expression(rng, depth - 1, leaves),
            random_expression(rng, depth - 1, leaves),
        );
        if let Some(text) = op_text(op, &x, &y, rng) {
            return text;
        }
    }
}

/// Random values for every input and param of `program`, in [lo, hi).
pub fn random_values(program: &Program, rng: &mut Rng, lo: f64, hi: f64) -> Values<f64> {
    program
        .inputs
        .iter()
        .chain(&program.params)
        .map(|d| (d.name.clone(), rng.tensor(d.shape.dims(), lo, hi)))
        .collect()
}

/// The largest elementwise difference relative to max(1, |expected|).
pub fn rel_diff(actual: &Tensor<f64>, expected: &Tensor<f64>) -> f64 {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    actual
        .iter()
        .zip(expected.iter())
        .map(|(a, e)| (a - e).abs() / e.abs().max(1.0))
        .fold(0.0, f64::max)
}

pub fn json_tensor(v: &Value) -> Tensor<f64> {
    tensor_from_json("test", v).unwrap()
}

pub fn load_reference(name: &str) -> Value {
    let path = format!("{}/tests/reference/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Whether some output of `program` depends on one of `names`.
pub fn depends_on(program: &Program, names: &[&str]) -> bool {
    let expr = program.expr.as_ref();
    let mut depends = vec![false; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        use egg::Language;
        depends[i] = node.as_var().is_some_and(|v| names.contains(&v.as_str()))
            || node.children().iter().any(|&c| depends[usize::from(c)]);
    }
    program.outputs.iter().any(|(_, id)| depends[usize::from(*id)])
}

/// Random per-example programs over a: [3], c: [2, 3] (the batched inputs) and
/// m: [2, 3], p: [3], s: [] (params), drawn over every kind of op, each
/// depending on a batched input and free of loops (batching a loop is refused).
pub fn batchable_random_programs(count: usize, rng: &mut Rng) -> Vec<Program> {
    let leaves = ["a", "c", "m", "p", "s", "2", "0.5"];
    let mut out = vec![];
    while out.len() < count {
        let body = random_expression(rng, 4, &leaves);
        let text = format!(
            "input a: [3]\ninput c: [2, 3]\nparam m: [2, 3]\nparam p: [3]\nparam s: []\nout loss = sum({body})"
        );
        if let Ok(p) = Program::parse("random", &text) {
            if depends_on(&p, &["a", "c"]) && !p.loops().any() {
                out.push(p);
            }
        }
    }
    out
}

/// The symbolic gradient program of `program` (`batchgraph::grad`) evaluated
/// at `values`, against the interpreter's reverse mode: the largest relative
/// difference over the output and every gradient.
pub fn grad_program_difference(program: &Program, values: &Values<f64>) -> f64 {
    let symbolic = batchgraph::grad(program, None).unwrap_or_else(|e| panic!("grad of\n{}: {e}", program.to_text()));
    let evaluated = batchgraph::Interpreter::new(&symbolic)
        .evaluate(values)
        .unwrap()
        .outputs;
    let expected = batchgraph::Interpreter::new(program).gradient(values).unwrap();
    assert_eq!(evaluated.len(), 1 + expected.grads.len());
    let mut worst = rel_diff(&evaluated[0].1, &expected.outputs[0].1);
    for ((name, actual), (wrt, g)) in evaluated[1..].iter().zip(&expected.grads) {
        assert_eq!(name, &format!("grad_{wrt}"));
        worst = worst.max(rel_diff(actual, g));
    }
    worst
}

/// The symbolic JVP program of `program` (`batchgraph::jvp`) evaluated at
/// `values` with tangents `direction`, against the interpreter's forward
/// mode: the largest relative difference over every output and tangent.
pub fn jvp_program_difference(program: &Program, values: &Values<f64>, direction: &Values<f64>) -> f64 {
    let symbolic = batchgraph::jvp(program, None).unwrap_or_else(|e| panic!("jvp of\n{}: {e}", program.to_text()));
    // The tangent inputs follow the program's inputs, one per input and param in order.
    let mut all = values.clone();
    let declared = program.inputs.iter().chain(&program.params);
    for (tangent, d) in symbolic.inputs[program.inputs.len()..].iter().zip(declared) {
        all.insert(tangent.name.clone(), direction[&d.name].clone());
    }
    let evaluated = batchgraph::Interpreter::new(&symbolic).evaluate(&all).unwrap().outputs;
    let expected = batchgraph::Interpreter::new(program)
        .tangents(values, direction)
        .unwrap();
    let outputs = expected.outputs.len();
    assert_eq!(evaluated.len(), 2 * outputs);
    let mut worst: f64 = 0.0;
    for (i, (name, value)) in expected.outputs.iter().chain(&expected.jvp).enumerate() {
        if i < outputs {
            assert_eq!(&evaluated[i].0, name);
        }
        worst = worst.max(rel_diff(&evaluated[i].1, value));
    }
    worst
}
