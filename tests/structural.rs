//! The structural ops from their op files (`src/ir/structural/`): values by
//! hand against numpy's definitions, the errors that name op and shapes,
//! printing, and the inverse pairs (`slice` and `pad`, `concat` and `slice`).

mod common;
use batchgraph::{grad, Interpreter, Op, Program, Shape, ShapeError, Structural, Tensor, Values};
use ndarray::{array, ArrayD};

fn run(text: &str, values: &[(&str, ArrayD<f64>)]) -> Tensor<f64> {
    let program = Program::parse("t", text).unwrap();
    let values: Values<f64> = values.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
    Interpreter::new(&program).evaluate(&values).unwrap().outputs[0]
        .1
        .clone()
}

#[test]
fn slice_concat_and_pad_compute_numpys_values() {
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn();
    let y = array![[7.0], [8.0]].into_dyn();
    let decls = "input x: [2, 3]\ninput y: [2, 1]\n";
    let cases: [(&str, ArrayD<f64>); 8] = [
        ("slice(x, 1, 1, 3)", array![[2.0, 3.0], [5.0, 6.0]].into_dyn()),
        ("slice(x, 0, 1, 2)", array![[4.0, 5.0, 6.0]].into_dyn()),
        (
            "concat(x, y, x, 1)",
            array![[1.0, 2.0, 3.0, 7.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 8.0, 4.0, 5.0, 6.0]].into_dyn(),
        ),
        ("pad(y, 0, 1, 2)", array![[0.0], [7.0], [8.0], [0.0], [0.0]].into_dyn()),
        (
            "pad(x, 1, 0, 1)",
            array![[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 6.0, 0.0]].into_dyn(),
        ),
        // numpy's x.reshape(6), x.reshape(3, 2), and a transposed (not row-major) operand.
        ("reshape(x, 0, 6)", array![1.0, 2.0, 3.0, 4.0, 5.0, 6.0].into_dyn()),
        (
            "reshape(x, 0, 3, 2)",
            array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]].into_dyn(),
        ),
        (
            "reshape(transpose(x), 1, 2, 1)",
            array![[[1.0], [4.0]], [[2.0], [5.0]], [[3.0], [6.0]]].into_dyn(),
        ),
    ];
    for (expression, expected) in cases {
        let got = run(
            &format!("{decls}out r = {expression}"),
            &[("x", x.clone()), ("y", y.clone())],
        );
        assert_eq!(got, expected, "{expression}");
    }
}

/// Each op's error is the shape error that names it and its operands'
/// shapes, as data (the variant) and as a sentence.
#[test]
fn bad_structural_calls_name_the_op_and_the_shapes() {
    let shape = |d: &[usize]| Shape(d.to_vec());
    let cases: Vec<(&str, Option<ShapeError>, &str)> = vec![
        (
            "slice(x, 0, 1, 3)",
            Some(ShapeError::Range {
                op: "slice".into(),
                axis: 0,
                start: 1,
                end: 3,
                shape: shape(&[2, 3]),
            }),
            "slice: elements 1..3 of axis 0 are not a range inside [2, 3]",
        ),
        (
            "slice(x, 1, 2, 2)",
            Some(ShapeError::Range {
                op: "slice".into(),
                axis: 1,
                start: 2,
                end: 2,
                shape: shape(&[2, 3]),
            }),
            "slice: elements 2..2 of axis 1 are not a range inside [2, 3]",
        ),
        (
            "slice(x, 2, 0, 1)",
            Some(ShapeError::Axis {
                op: "slice".into(),
                axis: 2,
                shape: shape(&[2, 3]),
            }),
            "slice: axis 2 is out of range for shape [2, 3]",
        ),
        (
            "concat(x, y, 0)",
            Some(ShapeError::Operands {
                op: "concat".into(),
                why: "cannot concatenate along axis 0".into(),
                first: shape(&[2, 3]),
                other: shape(&[2, 1]),
            }),
            "concat: cannot concatenate along axis 0 [2, 3] with [2, 1]",
        ),
        (
            "concat(x, z, 1)",
            Some(ShapeError::Operands {
                op: "concat".into(),
                why: "cannot concatenate along axis 1".into(),
                first: shape(&[2, 3]),
                other: shape(&[3]),
            }),
            "concat: cannot concatenate along axis 1 [2, 3] with [3]",
        ),
        (
            "pad(x, 3, 1, 1)",
            Some(ShapeError::Axis {
                op: "pad".into(),
                axis: 3,
                shape: shape(&[2, 3]),
            }),
            "pad: axis 3 is out of range for shape [2, 3]",
        ),
        (
            "reshape(x, 1, 2)",
            Some(ShapeError::Reshape {
                axis: 1,
                elements: 3,
                into: shape(&[2]),
                shape: shape(&[2, 3]),
            }),
            "reshape: the axes from 1 of [2, 3] hold 3 elements, which [2] does not",
        ),
        (
            "reshape(x, 0, 6, 0)",
            Some(ShapeError::Zero {
                op: "reshape".into(),
                position: 4,
            }),
            "reshape: argument 4 must be at least 1",
        ),
        // Caught by the parser before any shape is known: no shape error behind it.
        (
            "slice(x, 0, 1)",
            None,
            "slice takes 4 arguments (slice(e, axis, start, end)), not 3",
        ),
        ("pad(x, 0, -1, 1)", None, "must be a non-negative integer literal"),
    ];
    for (expression, variant, message) in cases {
        let text = format!("input x: [2, 3]\ninput y: [2, 1]\ninput z: [3]\nout r = {expression}");
        let error = Program::parse("t", &text).unwrap_err();
        if variant.is_some() {
            assert_eq!(error.shape.as_deref(), variant.as_ref(), "{expression}");
        }
        assert!(error.to_string().contains(message), "{expression}: {error}");
    }
}

/// The printer writes every structural op back as its call, and the text parses to the same program.
#[test]
fn structural_programs_print_and_parse_back() {
    for &s in Structural::ALL {
        for (decls, expression) in s.examples() {
            let program = Program::parse("t", &format!("{decls}\nout r = {expression}")).unwrap();
            let text = program.to_text();
            assert!(text.contains(&format!("{s}(")), "{s}: {text}");
            let again = Program::parse("t", &text).unwrap();
            assert_eq!(again.to_text(), text, "{s}");
        }
    }
}

/// The transpose pairs: the gradient of a slice is a pad, of a pad a slice,
/// of a concat a slice per operand, of an index a pad of one row.
#[test]
fn transposes_come_in_pairs() {
    for (decls, expression, transpose) in [
        ("param w: [2, 3]", "sum(slice(x, 0, 1, 3) * w)", "pad("),
        ("param w: [7, 3]", "sum(pad(x, 0, 1, 2) * w)", "slice("),
        ("param w: [8, 3]", "sum(concat(x, x, 0) * w)", "slice("),
        ("param w: [3]", "sum(index(x, 2) * w)", "pad("),
    ] {
        let text = format!("input x: [4, 3]\n{decls}\nout s = {expression}");
        let gradient = grad(&Program::parse("t", &text).unwrap(), None).unwrap().to_text();
        assert!(gradient.contains(transpose), "{expression}: {gradient}");
        assert!(!gradient.contains("stack("), "{expression}: {gradient}");
    }
}

/// Every op is in `Op::every_kind`, with as many children as it takes.
#[test]
fn every_structural_op_is_a_kind() {
    let kinds = Op::every_kind();
    for &s in Structural::ALL {
        let op = kinds
            .iter()
            .find(|op| matches!(op, Op::Structural(k, _) if *k == s))
            .unwrap_or_else(|| panic!("{s} is missing from every_kind"));
        assert!(s.arrays_of(op.as_structural().unwrap().1.len()).is_some(), "{s}");
        assert!(!s.examples().is_empty(), "{s} has no example");
    }
}

/// An op that declares its result a window of its operand (`index`, `slice`)
/// computes exactly that window, and the interpreter's reverse mode, which
/// adds the cotangent into the window in place of running the transpose rule,
/// agrees with the gradient program (which runs the rule), whether the
/// operand's cotangent starts there or is added to one it already has.
#[test]
fn a_window_is_what_the_op_computes_and_its_cotangent_goes_into_it() {
    let mut rng = batchgraph::Rng::new(7);
    let mut windows = 0;
    for &s in Structural::ALL {
        for (decls, expression) in s.examples() {
            let program = Program::parse("t", &format!("{decls}\nout r = {expression}")).unwrap();
            let root = program.outputs[0].1;
            let Some((operand, window)) = program.window(root) else {
                continue;
            };
            windows += 1;
            let values = common::random_values(&program, &mut rng, -2.0, 2.0);
            let result = Interpreter::new(&program).evaluate(&values).unwrap().outputs[0]
                .1
                .clone();
            let Op::Var(name) = &program.expr[operand] else {
                panic!("{s}: the examples read a declared operand")
            };
            let whole = values[name.as_str()].clone();
            let range = ndarray::Slice::from(window.start..window.end);
            let mut taken = whole.slice_axis(ndarray::Axis(window.axis), range).to_owned();
            if window.drops_axis {
                taken = taken.index_axis_move(ndarray::Axis(window.axis), 0);
            }
            assert_eq!(result, taken, "{s}: {expression}");
            for loss in [
                format!("sum(sin({expression}))"),
                format!("sum(sin({expression})) + sum(cos({name}))"),
            ] {
                let program = Program::parse("t", &format!("{decls}\nout r = {loss}")).unwrap();
                let values = common::random_values(&program, &mut rng, -2.0, 2.0);
                let worst = common::grad_program_difference(&program, &values);
                assert!(worst < 1e-12, "{s}: {loss}: {worst}");
            }
        }
    }
    assert!(windows >= 2, "index and slice are windows");
}
