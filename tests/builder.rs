//! The program builder (`batchgraph::ProgramBuilder`): a program built from
//! Rust prints in the language, parses back to the same DAG, and computes
//! the same values and gradients; shape mistakes are refused as they are
//! made, naming the op and shapes; equal subterms are built once.

use batchgraph::{random_values, Interpreter, Program, ProgramBuilder, Structural};

/// An LSTM cell's loss, built op by op: both outputs of the cell (h and c)
/// come from one product of the stacked gate weights, sliced.
fn lstm_step(b: &mut ProgramBuilder) -> batchgraph::Result<()> {
    let x = b.input("x", &[3])?;
    let h = b.input("h", &[4])?;
    let c = b.input("c", &[4])?;
    let w = b.param("w", &[16, 7])?;
    let bias = b.param("bias", &[16])?;
    let xh = b.concat(&[x, h], 0)?;
    let wx = b.matmul(w, xh)?;
    let gates = b.add(wx, bias)?;
    let mut gate = |k: usize| b.slice(gates, 0, 4 * k, 4 * k + 4);
    let (i, f, o, u) = (gate(0)?, gate(1)?, gate(2)?, gate(3)?);
    let (i, f, o, u) = (b.sigmoid(i)?, b.sigmoid(f)?, b.sigmoid(o)?, b.tanh(u)?);
    let fc = b.mul(f, c)?;
    let iu = b.mul(i, u)?;
    let c2 = b.add(fc, iu)?;
    let tc = b.tanh(c2)?;
    let h2 = b.mul(o, tc)?;
    b.name(c2, "c_next");
    let both = b.concat(&[h2, c2], 0)?;
    let loss = b.logsumexp(both)?;
    b.output("loss", loss)
}

#[test]
fn a_built_program_prints_and_parses_back_with_equal_values_and_gradients() {
    let mut b = ProgramBuilder::new();
    lstm_step(&mut b).unwrap();
    let built = b.finish().unwrap();
    let text = built.to_text();
    assert!(text.contains("let c_next ="), "{text}");
    let parsed = Program::parse("built.graph", &text).unwrap();
    assert_eq!(parsed.to_text(), text);
    assert_eq!(parsed.node_count(), built.node_count());
    let values = random_values(&built, 7);
    let g1 = Interpreter::new(&built).gradient(&values).unwrap();
    let g2 = Interpreter::new(&parsed).gradient(&values).unwrap();
    assert_eq!(g1.outputs, g2.outputs);
    assert_eq!(g1.grads, g2.grads);
}

#[test]
fn building_the_same_subterm_twice_adds_nothing() {
    let mut b = ProgramBuilder::new();
    let nodes = b.node_count();
    let (x, w) = (b.input("x2", &[3]).unwrap(), b.param("w2", &[16, 3]).unwrap());
    let first = b.matmul(w, x).unwrap();
    let first = b.tanh(first).unwrap();
    assert_eq!(b.node_count(), nodes + 4);
    let second = b.matmul(w, x).unwrap();
    let second = b.tanh(second).unwrap();
    assert_eq!((first, b.node_count()), (second, nodes + 4));
    let both = b.add(first, second).unwrap();
    b.output("y", both).unwrap();
    let program = b.finish().unwrap();
    // Only what the output reads is kept: x2, w2, the product, tanh, the sum.
    assert_eq!(program.node_count(), 5);
    // Written as a tree, tanh(w2 @ x2) counts twice.
    assert_eq!(program.nodes_before_cse(), 9);
}

#[test]
fn mistakes_are_refused_where_they_are_made() {
    let mut b = ProgramBuilder::new();
    let x = b.input("x", &[3]).unwrap();
    let w = b.param("w", &[4, 2]).unwrap();
    let err = b.matmul(w, x).unwrap_err().to_string();
    assert!(err.contains("[4, 2]") && err.contains("[3]"), "{err}");
    let err = b.concat(&[x, w], 0).unwrap_err().to_string();
    assert!(err.contains("concat"), "{err}");
    let err = b.structural(Structural::Slice, &[x], &[0, 1]).unwrap_err().to_string();
    assert!(err.contains("slice"), "{err}");
    assert!(b.param("x", &[1]).unwrap_err().to_string().contains("declared twice"));
    assert!(b.input("big", &[1 << 20, 1 << 20]).is_err());
    assert!(b.output("y", egg::Id::from(99usize)).is_err());
    assert!(ProgramBuilder::new()
        .finish()
        .unwrap_err()
        .to_string()
        .contains("no output"));
}
