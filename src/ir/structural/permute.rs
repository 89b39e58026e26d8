//! `permute(e, a0, a1, ...)`: numpy's `transpose(e, axes)`, the axes reordered.

use super::common::{inverse, label_with};
use super::*;

/// `permute(e, a0, a1, ...)`.
pub struct Permute;

impl StructuralOp for Permute {
    const NAME: &'static str = "permute";
    const CALL: &'static str = "the array and one axis per dimension";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::AtLeast(0);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[("input a: [2, 3, 4]", "permute(a, 1, 2, 0)")];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "move-axes/permute",
        identity: "permute(A[b], k0, k1, ...) = permute(A, 0, k0 + 1, k1 + 1, ...)[b]",
        lhs: "(vmap (permute ?a ?k0 ?k1))",
    };

    fn shape<D: Extent>(axes: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        if sorted != (0..dims[0].len()).collect::<Vec<_>>() {
            return Err(Problem::Permutation);
        }
        Ok(axes.iter().map(|&k| dims[0][k]).collect())
    }

    fn kernel<'a, T: Element>(axes: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        Moved::View(arrays[0].clone().permuted_axes(ndarray::IxDyn(axes)))
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        Ok(vec![(0, e.structural(Structural::Permute, &[g], &inverse(node.ints))?)])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        let a = node.arrays[0];
        if !e.mapped(a) {
            return Ok(None);
        }
        let batched = e.vmap(a)?;
        let shifted: Vec<usize> = std::iter::once(0).chain(node.ints.iter().map(|k| k + 1)).collect();
        e.structural(Structural::Permute, &[batched], &shifted).map(Some)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(axes: &[usize], _: &[usize]) -> Vec<OnnxNode> {
        let perm = axes.iter().map(|&k| k as i64).collect();
        vec![OnnxNode::new("Transpose", vec![OnnxInput::Operand(0)]).with("perm", OnnxAttr::Ints(perm))]
    }

    fn label(axes: &[usize]) -> String {
        label_with(Self::NAME, axes)
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
