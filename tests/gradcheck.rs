//! For every op: reverse mode, forward mode and central finite differences
//! agree (f64), on shapes that exercise broadcasting.
//!
//! Each case computes `r = OP(...)` and the loss `L = sum(c * r)` with a random
//! `c`, so that the op's full Jacobian is probed. For a random direction `v`
//! over all inputs: <grad L, v> (reverse) = jvp (forward) = (L(x+hv) - L(x-hv)) / 2h.

mod common;
use batchgraph::{Interpreter, Program, Values};
use common::{random_values, Rng};

/// (name, declarations, expression for r, range of input values).
const CASES: &[(&str, &str, &str, (f64, f64))] = &[
    ("add broadcast", "input a: [2, 3]\ninput b: [3]", "a + b", (-2.0, 2.0)),
    ("add keepdim", "input a: [2, 1]\ninput b: [1, 3]", "a + b", (-2.0, 2.0)),
    ("sub broadcast", "input a: [3]\ninput b: [4, 3]", "a - b", (-2.0, 2.0)),
    ("mul broadcast", "input a: [2, 3]\ninput b: []", "a * b", (-2.0, 2.0)),
    ("div broadcast", "input a: [2, 3]\ninput b: [2, 1]", "a / b", (0.5, 2.0)),
    ("matmul vec vec", "input a: [3]\ninput b: [3]", "a @ b", (-1.0, 1.0)),
    ("matmul mat vec", "input a: [4, 3]\ninput b: [3]", "a @ b", (-1.0, 1.0)),
    ("matmul vec mat", "input a: [3]\ninput b: [3, 5]", "a @ b", (-1.0, 1.0)),
    (
        "matmul mat mat",
        "input a: [2, 3]\ninput b: [3, 4]",
        "a @ b",
        (-1.0, 1.0),
    ),
    (
        "matmul batch mat",
        "input a: [5, 2, 3]\ninput b: [3, 4]",
        "a @ b",
        (-1.0, 1.0),
    ),
    (
        "matmul batch vec",
        "input a: [5, 2, 3]\ninput b: [3]",
        "a @ b",
        (-1.0, 1.0),
    ),
    (
        "matmul mat batch",
        "input a: [2, 3]\ninput b: [5, 3, 4]",
        "a @ b",
        (-1.0, 1.0),
    ),
    (
        "matmul vec batch",
        "input a: [3]\ninput b: [5, 3, 4]",
        "a @ b",
        (-1.0, 1.0),
    ),
    (
        "matmul batch batch",
        "input a: [5, 2, 3]\ninput b: [5, 3, 4]",
        "a @ b",
        (-1.0, 1.0),
    ),
    (
        "matmul broadcast batch",
        "input a: [5, 1, 2, 3]\ninput b: [4, 3, 2]",
        "a @ b",
        (-1.0, 1.0),
    ),
    ("pow 3", "input a: [2, 3]", "a ^ 3", (-2.0, 2.0)),
    ("pow -0.5", "input a: [2, 3]", "a ^ -0.5", (0.5, 2.0)),
    ("neg", "input a: [2, 3]", "-a", (-2.0, 2.0)),
    ("exp", "input a: [2, 3]", "exp(a)", (-2.0, 2.0)),
    ("log", "input a: [2, 3]", "log(a)", (0.5, 2.0)),
    ("tanh", "input a: [2, 3]", "tanh(a)", (-2.0, 2.0)),
    ("sigmoid", "input a: [2, 3]", "sigmoid(a)", (-2.0, 2.0)),
    ("relu", "input a: [2, 3]", "relu(a - 0.5)", (0.0, 0.4)),
    ("relu positive", "input a: [2, 3]", "relu(a)", (0.5, 2.0)),
    ("sqrt", "input a: [2, 3]", "sqrt(a)", (0.5, 2.0)),
    ("sin", "input a: [2, 3]", "sin(a)", (-2.0, 2.0)),
    ("cos", "input a: [2, 3]", "cos(a)", (-2.0, 2.0)),
    ("abs", "input a: [2, 3]", "abs(a - 1)", (0.0, 0.8)),
    ("sum", "input a: [2, 3]", "sum(a)", (-2.0, 2.0)),
    ("mean", "input a: [2, 3]", "mean(a)", (-2.0, 2.0)),
    ("sum axis 0", "input a: [2, 3, 4]", "sum(a, 0)", (-2.0, 2.0)),
    ("sum axis 2", "input a: [2, 3, 4]", "sum(a, 2)", (-2.0, 2.0)),
    ("mean axis 1", "input a: [2, 3, 4]", "mean(a, 1)", (-2.0, 2.0)),
    ("max axis 1", "input a: [2, 3, 4]", "max(a, 1)", (-2.0, 2.0)),
    ("transpose", "input a: [2, 3, 4]", "transpose(a)", (-2.0, 2.0)),
    ("permute", "input a: [2, 3, 4]", "permute(a, 1, 2, 0)", (-2.0, 2.0)),
    ("expand", "input a: [2, 3]", "expand(a, 1)", (-2.0, 2.0)),
    ("index", "input a: [4, 3]", "index(a, 2)", (-2.0, 2.0)),
    ("stack", "input a: [3]\ninput b: [3]", "stack(a, b, a)", (-2.0, 2.0)),
    ("repeat", "input a: [2, 3]", "repeat(a, 4)", (-2.0, 2.0)),
    ("shared operand", "input a: [2, 3]", "a * a + a", (-2.0, 2.0)),
];

fn loss(interpreter: &Interpreter, values: &Values<f64>) -> f64 {
    interpreter.evaluate(values).unwrap().outputs[0].1.sum()
}

#[test]
fn reverse_forward_and_finite_differences_agree_for_every_op() {
    let mut rng = Rng(0x5eed);
    for &(name, decls, expr, (lo, hi)) in CASES {
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

#[test]
fn gradients_of_unused_variables_are_zero() {
    let program = Program::parse("t", "input x: [2]\nparam w: [3]\nout s = sum(x)").unwrap();
    let values = random_values(&program, &mut Rng(7), -1.0, 1.0);
    let g = Interpreter::new(&program).gradient(&values).unwrap();
    assert_eq!(g.grads[1].1, ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[3])));
}
