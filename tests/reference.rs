//! Outputs, gradients and tangents against values computed independently
//! with JAX in float64 (tests/reference/README.md).

mod common;
use batchgraph::{values_from_json, Interpreter, Program};
use common::{json_tensor, load_reference, rel_diff};

const NAMES: [&str; 9] = [
    "elementwise_zoo",
    "linear_mse",
    "matmul_ranks",
    "two_layer",
    "vector_output",
    "structural_slice",
    "structural_concat",
    "structural_pad",
    "structural_mixed",
];
const TOLERANCE: f64 = 1e-9;

#[test]
fn outputs_gradients_and_tangents_match_jax() {
    for name in NAMES {
        let reference = load_reference(name);
        let program = Program::parse(name, reference["program"].as_str().unwrap()).unwrap();
        let values = values_from_json::<f64>("inputs", &reference["inputs"]).unwrap();
        let interpreter = Interpreter::new(&program);

        let output = &interpreter.evaluate(&values).unwrap().outputs[0].1;
        let d = rel_diff(output, &json_tensor(&reference["output"]));
        assert!(d < TOLERANCE, "{name}: output differs from JAX by {d}");

        if reference["scalar"].as_bool().unwrap() {
            let gradients = interpreter.gradient(&values).unwrap();
            for (var, grad) in &gradients.grads {
                let d = rel_diff(grad, &json_tensor(&reference["grads"][var]));
                assert!(d < TOLERANCE, "{name}: gradient w.r.t. {var} differs from JAX by {d}");
            }
        }

        let tangents = values_from_json::<f64>("tangents", &reference["tangents"]).unwrap();
        let jvp = &interpreter.tangents(&values, &tangents).unwrap().jvp[0].1;
        let d = rel_diff(jvp, &json_tensor(&reference["jvp"]));
        assert!(d < TOLERANCE, "{name}: tangent differs from JAX by {d}");
    }
}

#[test]
fn f32_agrees_with_f64_to_single_precision() {
    let reference = load_reference("two_layer");
    let program = Program::parse("two_layer", reference["program"].as_str().unwrap()).unwrap();
    let values = values_from_json::<f32>("inputs", &reference["inputs"]).unwrap();
    let output = Interpreter::new(&program).evaluate(&values).unwrap().outputs[0]
        .1
        .mapv(f64::from);
    let d = rel_diff(&output, &json_tensor(&reference["output"]));
    assert!(d < 1e-5, "f32 output differs by {d}");
}
