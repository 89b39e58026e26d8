//! Elementwise fusion (`batchgraph::runtime::fusion`): a fused chain's values
//! and gradients equal those of the same ops run one by one, for every unary
//! and every binary op of the tables (by construction: `Unary::ALL`,
//! `Binary::ALL`), with the chain on either side of a binary op, against a
//! repeated operand (a bias), a same-shaped one and a literal; on arrays long
//! enough to run in parallel blocks; and the buffer of a value at its last use
//! reused. A transpose a matmul reads is a view, with the same results.

use batchgraph::runtime::vmath;
use batchgraph::{Binary, Interpreter, Program, Rng, Scalar, Tensor, Unary, Values};

/// `u(arg)`, as the language writes it (`-` is prefix).
fn call(u: Unary, arg: &str) -> String {
    match u {
        Unary::Neg => format!("(-({arg}))"),
        _ => format!("{}({arg})", u.name()),
    }
}

/// The programs for one pair of ops, each with the chain it must fuse (its length).
fn programs(u: Unary, b: Binary) -> Vec<(String, usize)> {
    let decls = "input x: [6, 4]\nparam p: [4]\nparam q: [6, 4]\n";
    let op = b.symbol();
    let ux = call(u, "x");
    [
        // u, then op with a bias (the chain on the left), then * a same-shaped value.
        (format!("out s = sum(({ux} {op} p) * q)"), 3),
        // the chain on the right of op.
        (format!("out s = sum(q * (p {op} {ux}))"), 3),
        // a literal operand, and u after op.
        (format!("out s = sum({} * q)", call(u, &format!("x {op} 2"))), 3),
        // a same-shaped value on the other side: u, op, u and - a bias.
        (format!("out s = sum({} - p)", call(u, &format!("q {op} {ux}"))), 4),
    ]
    .into_iter()
    .map(|(body, links)| (format!("{decls}{body}\n"), links))
    .collect()
}

/// Values for `program`: x from `u`'s interval, p and q from `b`'s.
fn values<T: Scalar>(program: &Program, u: Unary, b: Binary, seed: u64) -> Values<T> {
    let mut rng = Rng::new(seed);
    let mut out = Values::new();
    for d in program.inputs.iter().chain(&program.params) {
        let (lo, hi) = if d.name == "x" { u.tested_on() } else { b.tested_on() };
        let t = rng.tensor(d.shape.dims(), lo, hi);
        out.insert(d.name.clone(), t.mapv(T::of));
    }
    out
}

/// Equal within `tolerance` relative, NaN where the other is NaN.
fn assert_close<T: Scalar>(fused: &Tensor<T>, unfused: &Tensor<T>, tolerance: f64, what: &str) {
    assert_eq!(fused.shape(), unfused.shape(), "{what}");
    for (f, u) in fused.iter().zip(unfused) {
        let (f, u) = (f.to_f64().unwrap(), u.to_f64().unwrap());
        let same = (f.is_nan() && u.is_nan()) || f == u || (f - u).abs() <= tolerance * (1.0 + u.abs());
        assert!(same, "{what}: fused {f}, one by one {u}");
    }
}

/// The fused run of `text` equals the unfused one, values and gradients.
fn check<T: Scalar>(text: &str, values: &Values<T>, links: usize, tolerance: f64) {
    let program = Program::parse("fusion", text).unwrap();
    let fused = Interpreter::new(&program);
    let groups = fused.fused_groups();
    assert!(
        groups.iter().any(|g| g.len() == links),
        "expected a chain of {links}, got {groups:?}\n{text}"
    );
    let unfused = Interpreter::new(&program).fuse(false);
    assert!(unfused.fused_groups().is_empty());
    let (f, u) = (fused.evaluate(values).unwrap(), unfused.evaluate(values).unwrap());
    assert_close(
        &f.outputs[0].1,
        &u.outputs[0].1,
        tolerance,
        &format!("value of\n{text}"),
    );
    let (f, u) = (fused.gradient(values).unwrap(), unfused.gradient(values).unwrap());
    for ((name, fg), (_, ug)) in f.grads.iter().zip(&u.grads) {
        assert_close(fg, ug, tolerance, &format!("d/d{name} of\n{text}"));
    }
}

#[test]
fn fused_chains_equal_the_ops_one_by_one_for_every_unary_and_binary_op() {
    for (i, &u) in Unary::ALL.iter().enumerate() {
        for (j, &b) in Binary::ALL.iter().enumerate() {
            for (text, links) in programs(u, b) {
                let seed = (i * 100 + j) as u64;
                check::<f64>(
                    &text,
                    &values(&Program::parse("v", &text).unwrap(), u, b, seed),
                    links,
                    1e-12,
                );
                check::<f32>(
                    &text,
                    &values(&Program::parse("v", &text).unwrap(), u, b, seed),
                    links,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn a_long_chain_over_many_blocks_and_threads_equals_the_ops_one_by_one() {
    // 300 x 256 elements: over vmath::PARALLEL_FROM, so the forward pass runs in parallel blocks
    // (and the backward pass, where every other operand repeats along the chain).
    const { assert!(300 * 256 >= vmath::PARALLEL_FROM) };
    let text = "input x: [300, 256]\nparam w: [256, 256]\nparam b: [256]\nparam c: [300, 256]\n\
                out s = sum(sigmoid(tanh(x @ w + b) * c - b) / 3)\n";
    let program = Program::parse("long", text).unwrap();
    let given = values::<f64>(&program, Unary::Tanh, Binary::Mul, 5);
    check(text, &given, 6, 1e-12);
    // Only repeated operands: the backward pass runs in parallel blocks too.
    let text = "input x: [300, 256]\nparam w: [256, 256]\nparam b: [256]\n\
                out s = sum(sigmoid(tanh(x @ w + b) * b - 1) / 3)\n";
    let program = Program::parse("long", text).unwrap();
    let given = values::<f64>(&program, Unary::Tanh, Binary::Mul, 6);
    check(text, &given, 6, 1e-12);
}

#[test]
fn a_scalar_chain_is_one_group() {
    let mut text = "input x: []\nlet t1 = tanh(x)\n".to_string();
    for i in 2..200 {
        text += &format!("let t{i} = tanh(t{})\n", i - 1);
    }
    text += "out s = tanh(t199)\n";
    let program = Program::parse("chain", &text).unwrap();
    let groups = Interpreter::new(&program).fused_groups();
    assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![200]);
    let values: Values<f64> = [("x".to_string(), Tensor::from_elem(ndarray::IxDyn(&[]), 0.7))].into();
    check(&text, &values, 200, 1e-12);
}

#[test]
fn a_value_read_twice_ends_a_chain_and_outputs_are_kept() {
    // t is read twice (t * t): it ends a chain; u is an output: it is kept.
    let text = "input x: [3, 4]\nlet t = exp(-x)\nlet u = t * t + 1\nout a = sum(log(u) * 2)\nout b = u\n";
    let program = Program::parse("shared", text).unwrap();
    let groups = Interpreter::new(&program).fused_groups();
    let u = usize::from(program.outputs[1].1);
    for group in &groups {
        assert!(
            !group[..group.len() - 1].contains(&u),
            "an output inside a chain: {groups:?}"
        );
    }
    let values = values::<f64>(&program, Unary::Exp, Binary::Add, 3);
    let fused = Interpreter::new(&program).evaluate(&values).unwrap();
    let unfused = Interpreter::new(&program).fuse(false).evaluate(&values).unwrap();
    for ((_, f), (_, u)) in fused.outputs.iter().zip(&unfused.outputs) {
        assert_close(f, u, 1e-12, text);
    }
}

#[test]
fn a_transpose_read_by_a_matmul_is_a_view_with_the_same_values_and_gradients() {
    let cases = [
        "input x: [5, 3]\nparam w: [4, 3]\nout s = sum(tanh(x @ transpose(w)))\n",
        "input x: [5, 3]\nparam w: [5, 4]\nout s = sum(transpose(w) @ x)\n",
        "input x: [2, 5, 3]\nparam w: [2, 4, 3]\nout s = sum(x @ permute(w, 0, 2, 1))\n",
        "input x: [3]\nparam w: [3, 4]\nout s = sum(transpose(w) @ x)\n",
        "input x: [4, 3]\nparam w: [3, 4]\nout s = sum(transpose(w) @ transpose(x))\n",
        // read twice: copied, not viewed
        "input x: [4, 4]\nlet t = transpose(x)\nout s = sum(t @ t)\n",
    ];
    for text in cases {
        let program = Program::parse("views", text).unwrap();
        let given = values::<f64>(&program, Unary::Tanh, Binary::Add, 9);
        let viewed = Interpreter::new(&program);
        let copied = Interpreter::new(&program).fuse(false);
        let (v, c) = (viewed.gradient(&given).unwrap(), copied.gradient(&given).unwrap());
        assert_close(&v.outputs[0].1, &c.outputs[0].1, 1e-12, text);
        for ((name, vg), (_, cg)) in v.grads.iter().zip(&c.grads) {
            assert_close(vg, cg, 1e-12, &format!("d/d{name} of\n{text}"));
        }
    }
}
