//! `transpose(e)`: the axes reversed (a matrix's transpose; a vector or a scalar unchanged).

use super::*;

/// `transpose(e)`.
pub struct Transpose;

impl StructuralOp for Transpose {
    const NAME: &'static str = "transpose";
    const CALL: &'static str = "1 argument";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::Exactly(0);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[("input a: [2, 3, 4]", "transpose(a)")];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "move-axes/transpose",
        identity: "transpose(A[b]) = permute(A, 0, r, r - 1, ..., 1)[b] for A[b] of rank r >= 3",
        lhs: "(vmap (transpose ?a))",
    };

    fn shape<D: Extent>(_: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        Ok(dims[0].iter().rev().copied().collect())
    }

    fn kernel<'a, T: Element>(_: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        Moved::View(arrays[0].clone().reversed_axes())
    }

    fn transpose(e: &mut dyn Emit, _: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        Ok(vec![(0, e.structural(Structural::Transpose, &[g], &[])?)])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        let a = node.arrays[0];
        let rank = e.shape(a).rank();
        // Ranks 0-2 have text rules (rules/batching.rules).
        if !e.mapped(a) || rank < 3 {
            return Ok(None);
        }
        let batched = e.vmap(a)?;
        let axes: Vec<usize> = std::iter::once(0).chain((1..=rank).rev()).collect();
        e.structural(Structural::Permute, &[batched], &axes).map(Some)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(_: &[usize], ranks: &[usize]) -> Vec<OnnxNode> {
        match ranks[0] {
            0 | 1 => vec![OnnxNode::new("Identity", vec![OnnxInput::Operand(0)])],
            rank => {
                let perm = (0..rank as i64).rev().collect();
                vec![OnnxNode::new("Transpose", vec![OnnxInput::Operand(0)]).with("perm", OnnxAttr::Ints(perm))]
            }
        }
    }

    fn label(_: &[usize]) -> String {
        Self::NAME.into()
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
