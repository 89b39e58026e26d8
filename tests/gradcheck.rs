//! For every op: reverse mode, forward mode and central finite differences
//! agree (f64), on shapes that exercise broadcasting.
//!
//! Each case computes `r = OP(...)` and the loss `L = sum(c * r)` with a random
//! `c`, so that the op's full Jacobian is probed. For a random direction `v`
//! over all inputs: <grad L, v> (reverse) = jvp (forward) = (L(x+hv) - L(x-hv)) / 2h.

mod common;
use batchgraph::{Interpreter, Op, Program, Unary, Values};
use common::{grad_program_difference, jvp_program_difference, random_values, Rng};

/// A case: (name, declarations, expression for r, range of input values).
type Case = (String, &'static str, String, (f64, f64));

/// The cases for one op: every op of the tables and every structural op, by construction.
fn cases(op: &Op) -> Vec<Case> {
    let wide = (-2.0, 2.0);
    match op {
        Op::Unary(u, _) => {
            let call = if *u == Unary::Neg {
                "-a".to_string()
            } else {
                format!("{}(a)", u.name())
            };
            vec![(u.ident().to_string(), "input a: [2, 3]", call, u.tested_on())]
        }
        Op::Binary(b, _) => [
            ("broadcast", "input a: [2, 3]\ninput b: [3]"),
            ("keepdim", "input a: [2, 1]\ninput b: [1, 3]"),
            ("scalar", "input a: []\ninput b: [2, 3]"),
        ]
        .into_iter()
        .map(|(how, decls)| {
            (
                format!("{} {how}", b.ident()),
                decls,
                format!("a {} b", b.symbol()),
                b.tested_on(),
            )
        })
        .collect(),
        Op::Reduce(r, _) => vec![(
            r.name().to_string(),
            "input a: [2, 3]",
            format!("{}(a)", r.name()),
            wide,
        )],
        Op::ReduceAxis(r, _) => (0..3)
            .map(|k| {
                (
                    format!("{} axis {k}", r.name()),
                    "input a: [2, 3, 4]",
                    format!("{}(a, {k})", r.name()),
                    wide,
                )
            })
            .collect(),
        Op::MatMul(_) => [
            ("vec vec", "input a: [3]\ninput b: [3]"),
            ("mat vec", "input a: [4, 3]\ninput b: [3]"),
            ("vec mat", "input a: [3]\ninput b: [3, 5]"),
            ("mat mat", "input a: [2, 3]\ninput b: [3, 4]"),
            ("batch mat", "input a: [5, 2, 3]\ninput b: [3, 4]"),
            ("batch vec", "input a: [5, 2, 3]\ninput b: [3]"),
            ("mat batch", "input a: [2, 3]\ninput b: [5, 3, 4]"),
            ("vec batch", "input a: [3]\ninput b: [5, 3, 4]"),
            ("batch batch", "input a: [5, 2, 3]\ninput b: [5, 3, 4]"),
            ("broadcast batch", "input a: [5, 1, 2, 3]\ninput b: [4, 3, 2]"),
        ]
        .into_iter()
        .map(|(how, decls)| (format!("matmul {how}"), decls, "a @ b".to_string(), (-1.0, 1.0)))
        .collect(),
        // Every example of the op's file.
        Op::Structural(s, _) => s
            .examples()
            .iter()
            .map(|(decls, expression)| (format!("{s} {expression}"), *decls, expression.to_string(), wide))
            .collect(),
        Op::Map(_) => vec![(
            "map".into(),
            "input a: [3, 2]\nparam w: [2]",
            "map(tanh(row(a) * w) * row(a), 3)".into(),
            wide,
        )],
        Op::Row(_) => vec![("row".into(), "input a: [3, 2]", "map(row(a) ^ 2, 3)".into(), wide)],
        // Five rows in chunks of two: the last chunk is smaller.
        Op::Chunks(_) => vec![(
            "chunks".into(),
            "input a: [5, 2]\nparam w: [2]",
            "chunks(tanh(rows(a, 2) * w) * rows(a, 2), 5, 2)".into(),
            wide,
        )],
        // Five rows in chunks of two, summed: the last chunk is smaller.
        Op::Accumulate(_) => vec![(
            "accumulate".into(),
            "input a: [5, 2]\nparam w: [2]",
            "accumulate(sum(tanh(rows(a, 2) * w) * rows(a, 2), 0), 5, 2)".into(),
            wide,
        )],
        Op::Rows(_) => vec![(
            "rows".into(),
            "input a: [5, 2]",
            "chunks(rows(a, 3) ^ 2, 5, 3)".into(),
            wide,
        )],
        Op::Vmap(_) | Op::Num(_) | Op::Var(_) => vec![],
    }
}

/// Every case of every op, and one with a shared operand.
fn all_cases() -> Vec<Case> {
    let mut all: Vec<Case> = Op::every_kind().iter().flat_map(cases).collect();
    all.push((
        "shared operand".into(),
        "input a: [2, 3]",
        "a * a + a".into(),
        (-2.0, 2.0),
    ));
    all
}

fn loss(interpreter: &Interpreter, values: &Values<f64>) -> f64 {
    interpreter.evaluate(values).unwrap().outputs[0].1.sum()
}

#[test]
fn reverse_forward_and_finite_differences_agree_for_every_op() {
    let mut rng = Rng::new(0x5eed);
    for (name, decls, expr, (lo, hi)) in all_cases() {
        let name = name.as_str();
        // First find r's shape, then build the loss with a `c` of that shape.
        let probe = Program::parse(name, &format!("{decls}\nout r = {expr}")).unwrap();
        let r_shape = probe.shape(probe.outputs[0].1).clone();
        let text = format!("{decls}\nparam c: {r_shape}\nout loss = sum(c * ({expr}))");
        let program = Program::parse(name, &text).unwrap();
        let interpreter = Interpreter::new(&program);
        let values = random_values(&program, &mut rng, lo, hi);
        let direction = random_values(&program, &mut rng, -1.0, 1.0);

        let gradients = interpreter.gradient(&values).unwrap();
        let reverse: f64 = gradients.grads.iter().map(|(n, g)| (g * &direction[n]).sum()).sum();
        let forward = interpreter.tangents(&values, &direction).unwrap().jvp[0].1.sum();
        let h = 1e-6;
        let shifted = |sign: f64| -> Values<f64> {
            values
                .iter()
                .map(|(n, v)| (n.clone(), v + &(&direction[n] * (sign * h))))
                .collect()
        };
        let finite = (loss(&interpreter, &shifted(1.0)) - loss(&interpreter, &shifted(-1.0))) / (2.0 * h);

        let scale = reverse.abs().max(1.0);
        assert!(
            (reverse - forward).abs() / scale < 1e-12,
            "{name}: reverse {reverse} vs forward {forward}"
        );
        assert!(
            (reverse - finite).abs() / scale < 1e-6,
            "{name}: reverse {reverse} vs finite differences {finite}"
        );
    }
}

/// The gradient and JVP programs (`grad`, `jvp`: derivatives as graphs) of
/// every case equal the interpreter's reverse and forward modes.
#[test]
fn symbolic_derivatives_equal_the_interpreters_for_every_op() {
    let mut rng = Rng::new(0xd1ff);
    for (name, decls, expr, (lo, hi)) in all_cases() {
        let probe = Program::parse(&name, &format!("{decls}\nout r = {expr}")).unwrap();
        let r_shape = probe.shape(probe.outputs[0].1).clone();
        let text = format!("{decls}\nparam c: {r_shape}\nout loss = sum(c * ({expr}))");
        let program = Program::parse(&name, &text).unwrap();
        let values = random_values(&program, &mut rng, lo, hi);
        let direction = random_values(&program, &mut rng, -1.0, 1.0);
        let jvp = jvp_program_difference(&program, &values, &direction);
        assert!(jvp < 1e-12, "{name}: jvp program differs by {jvp}");
        let grad = grad_program_difference(&program, &values);
        assert!(grad < 1e-12, "{name}: grad program differs by {grad}");
    }
}

#[test]
fn gradients_of_unused_variables_are_zero() {
    let program = Program::parse("t", "input x: [2]\nparam w: [3]\nout s = sum(x)").unwrap();
    let values = random_values(&program, &mut Rng::new(7), -1.0, 1.0);
    let g = Interpreter::new(&program).gradient(&values).unwrap();
    assert_eq!(g.grads[1].1, ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[3])));
}
