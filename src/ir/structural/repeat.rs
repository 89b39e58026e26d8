//! `repeat(e, n)`: `e` broadcast along a new leading axis of size `n`.

use super::common::{label_with, swap_leading};
use super::*;

/// `repeat(e, n)`.
pub struct Repeat;

impl StructuralOp for Repeat {
    const NAME: &'static str = "repeat";
    const CALL: &'static str = "2 arguments (repeat(e, count))";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::Exactly(1);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[("input a: [2, 3]", "repeat(a, 4)")];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "repeat/second-axis",
        identity: "repeat(A[b], n) = permute(repeat(A, n), 1, 0, 2, ...)[b]",
        lhs: "(vmap (repeat ?a ?n))",
    };

    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        if ints[0] == 0 {
            return Err(Problem::Zero { position: 1 });
        }
        let mut out = vec![D::fixed(ints[0])];
        out.extend_from_slice(dims[0]);
        Ok(out)
    }

    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        let dims: Vec<usize> = std::iter::once(ints[0])
            .chain(arrays[0].shape().iter().copied())
            .collect();
        Moved::View(arrays[0].broadcast(dims).expect("shapes checked"))
    }

    fn transpose(e: &mut dyn Emit, _: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        Ok(vec![(0, e.reduce_sum(g, 0)?)])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        let a = node.arrays[0];
        if !e.mapped(a) {
            return Ok(None);
        }
        // repeat gives [n, B, ...]; the batch axis goes first.
        let batched = e.vmap(a)?;
        let repeated = e.structural(Structural::Repeat, &[batched], node.ints)?;
        let rank = e.shape(a).rank();
        swap_leading(e, repeated, rank + 2).map(Some)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(ints: &[usize], ranks: &[usize]) -> Vec<OnnxNode> {
        // Expand broadcasts both ways: [n, 1, ..., 1] against [1, shape...] is [n, shape...],
        // and writes no size of the operand into the model (so a batch axis in it stays symbolic).
        let mut shape = vec![ints[0] as i64];
        shape.extend(std::iter::repeat_n(1, ranks[0]));
        vec![
            OnnxNode::new("Unsqueeze", vec![OnnxInput::Operand(0), OnnxInput::Ints(vec![0])]),
            OnnxNode::new("Expand", vec![OnnxInput::Node(0), OnnxInput::Ints(shape)]),
        ]
    }

    fn label(ints: &[usize]) -> String {
        label_with(Self::NAME, ints)
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
