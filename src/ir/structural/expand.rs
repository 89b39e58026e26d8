//! `expand(e, axis)`: a new axis of size 1 inserted at `axis`.

use super::common::label_with;
use super::*;

/// `expand(e, axis)`.
pub struct Expand;

impl StructuralOp for Expand {
    const NAME: &'static str = "expand";
    const CALL: &'static str = "2 arguments (expand(e, axis))";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::Exactly(1);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[("input a: [2, 3]", "expand(a, 1)")];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "axis-shift/expand",
        identity: "expand(A[b], k) = expand(A, k + 1)[b]",
        lhs: "(vmap (expand ?a ?k))",
    };

    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let axis = common::axis_in(ints[0], dims[0].len() + 1, 0)?;
        let mut out = dims[0].to_vec();
        out.insert(axis, D::fixed(1));
        Ok(out)
    }

    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        Moved::View(arrays[0].clone().insert_axis(ndarray::Axis(ints[0])))
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        Ok(vec![(0, e.reduce_sum(g, node.ints[0])?)])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        // Mapped or not: `vmap` of an unmapped operand is its own rule's business.
        let batched = e.vmap(node.arrays[0])?;
        e.structural(Structural::Expand, &[batched], &[node.ints[0] + 1])
            .map(Some)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(ints: &[usize], _: &[usize]) -> Vec<OnnxNode> {
        vec![OnnxNode::new(
            "Unsqueeze",
            vec![OnnxInput::Operand(0), OnnxInput::Ints(vec![ints[0] as i64])],
        )]
    }

    fn label(ints: &[usize]) -> String {
        label_with("expand axis", ints)
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
