//! Interpreter options that change what a run computes, not its results:
//! a gradient with respect to some of the inputs and params equals those
//! entries of the full gradient.

use batchgraph::{random_values, Interpreter, Program};

#[test]
fn a_gradient_with_respect_to_some_names_equals_those_of_the_full_gradient() {
    let text = "input x: [5, 3]\nparam w: [4, 3]\nparam b: [4]\n\
                out s = mean(sum(tanh(x @ transpose(w) + b) ^ 2, 1), 0)\n";
    let program = Program::parse("wrt", text).unwrap();
    let values = random_values(&program, 11);
    let full = Interpreter::new(&program).gradient(&values).unwrap();
    for names in [vec!["w"], vec!["b", "w"], vec!["x"], vec![]] {
        let some = Interpreter::new(&program)
            .with_respect_to(names.iter().copied())
            .gradient(&values)
            .unwrap();
        let want: Vec<_> = full.grads.iter().filter(|(n, _)| names.contains(&n.as_str())).collect();
        assert_eq!(some.grads.iter().collect::<Vec<_>>(), want, "{names:?}");
        assert_eq!(some.outputs, full.outputs);
    }
}
