//! A NaN in any operand of any op comes out as NaN, as in JAX (issue 21,
//! item 1: `relu(log(x))` at x = -1 gave 0, so a domain error became a finite
//! loss). Generated over the op tables, in f32 and f64, for an op on its own,
//! inside a fused chain, and on values long enough for the vectorized and
//! threaded kernels.

use batchgraph::{Binary, Interpreter, Program, Reduce, Scalar, Tensor, Unary, Values};
use ndarray::IxDyn;

/// The length of the test vectors: past a vector kernel's lanes, with a tail.
const N: usize = 37;

/// Where the NaN goes: the first element, one inside, the last.
const AT: [usize; 3] = [0, 17, N - 1];

fn program(text: &str) -> Program {
    Program::parse("nan.graph", text).unwrap()
}

/// `x` with a NaN at `at` and ordinary values elsewhere (in each op's domain, where it has one).
fn with_nan<T: Scalar>(at: usize) -> Tensor<T> {
    Tensor::from_shape_fn(IxDyn(&[N]), |i| match i[0] == at {
        true => T::of(f64::NAN),
        false => T::of(0.5 + 0.03 * i[0] as f64),
    })
}

fn outputs<T: Scalar>(text: &str, values: &[(&str, Tensor<T>)]) -> Tensor<T> {
    let p = program(text);
    let values: Values<T> = values.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
    Interpreter::new(&p).evaluate(&values).unwrap().outputs.remove(0).1
}

/// The ops that map NaN to a number by definition: `step` is relu's derivative, which
/// JAX's relu JVP selects as 0 where x is NaN (`select(x > 0, g, 0)`).
fn maps_nan_to_a_number(u: Unary) -> bool {
    u == Unary::Step
}

fn unary_ops_keep_nan<T: Scalar>() {
    for &u in Unary::ALL.iter().filter(|&&u| !maps_nan_to_a_number(u)) {
        let name = u.name();
        for text in [
            format!("input x: [{N}]\nout y = {name}(x)"),
            // In a fused chain, before and after other links.
            format!("input x: [{N}]\nout y = {name}(x * 1) + 0"),
        ] {
            for at in AT {
                let y = outputs::<T>(&text, &[("x", with_nan::<T>(at))]);
                assert!(y[at].is_nan(), "{text} with NaN at {at}: {:?}", y[at]);
            }
        }
    }
}

fn binary_ops_keep_nan<T: Scalar>() {
    for &b in Binary::ALL {
        let op = b.symbol();
        let text = format!("input x: [{N}]\ninput z: [{N}]\nout y = x {op} z");
        let ordinary = with_nan::<T>(N + 1);
        for at in AT {
            for (x, z) in [
                (with_nan::<T>(at), ordinary.clone()),
                (ordinary.clone(), with_nan::<T>(at)),
            ] {
                let y = outputs::<T>(&text, &[("x", x), ("z", z)]);
                assert!(y[at].is_nan(), "{text} with NaN at {at}: {:?}", y[at]);
            }
        }
        // A scalar NaN broadcast over a vector.
        let text = format!("input x: [{N}]\ninput z: []\nout y = x {op} z");
        let y = outputs::<T>(
            &text,
            &[
                ("x", ordinary.clone()),
                ("z", Tensor::from_elem(IxDyn(&[]), T::of(f64::NAN))),
            ],
        );
        assert!(y.iter().all(|v| v.is_nan()), "{text} with z NaN: {y:?}");
    }
}

fn reductions_keep_nan<T: Scalar>() {
    for &r in Reduce::ALL {
        let name = r.name();
        for at in AT {
            let y = outputs::<T>(
                &format!("input x: [{N}]\nout y = {name}(x)"),
                &[("x", with_nan::<T>(at))],
            );
            assert!(y.iter().all(|v| v.is_nan()), "{name} with NaN at {at}: {y:?}");
            // Along an axis: the NaN's row only.
            let x = with_nan::<T>(at).into_shape_with_order(IxDyn(&[1, N])).unwrap();
            let y = outputs::<T>(&format!("input x: [1, {N}]\nout y = {name}(x, 1)"), &[("x", x)]);
            assert!(y[[0]].is_nan(), "{name} along axis 1 with NaN at {at}: {y:?}");
        }
    }
}

#[test]
fn every_unary_op_keeps_a_nan() {
    unary_ops_keep_nan::<f64>();
    unary_ops_keep_nan::<f32>();
}

#[test]
fn every_binary_op_keeps_a_nan_in_either_operand() {
    binary_ops_keep_nan::<f64>();
    binary_ops_keep_nan::<f32>();
}

#[test]
fn every_reduction_keeps_a_nan() {
    reductions_keep_nan::<f64>();
    reductions_keep_nan::<f32>();
}

/// Issue 21, item 1, as reported: `sum(relu(log(x)))` at x = [-1, 2, 3] is NaN, as in JAX, numpy and ONNX Runtime.
#[test]
fn relu_of_a_domain_error_is_nan() {
    let y = outputs::<f64>(
        "input x: [3]\nout s = sum(relu(log(x)))",
        &[("x", Tensor::from_shape_vec(IxDyn(&[3]), vec![-1.0, 2.0, 3.0]).unwrap())],
    );
    assert!(y[[]].is_nan(), "{y:?}");
}
