//! `stack(a0, a1, ...)`: the operands (of one shape) along a new leading axis.

use super::common::swap_leading;
use super::*;

/// `stack(a0, a1, ...)`.
pub struct Stack;

impl StructuralOp for Stack {
    const NAME: &'static str = "stack";
    const CALL: &'static str = "at least 1 argument";
    const ARRAYS: Count = Count::AtLeast(1);
    const INTS: Count = Count::Exactly(0);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[("input a: [3]\ninput b: [3]", "stack(a, b, a)")];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "stack/second-axis",
        identity: "stack(A0[b], p, ...) = permute(stack(A0, P, ...), 1, 0, 2, ...)[b], P the batch of p + step(A0) * 0 for p unmapped",
        lhs: "(vmap (stack ?a ?b))",
    };

    fn shape<D: Extent>(_: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        if let Some(operand) = dims.iter().position(|d| d != &dims[0]) {
            return Err(Problem::Differ {
                operand,
                why: "cannot stack".into(),
            });
        }
        let mut out = vec![D::fixed(dims.len())];
        out.extend_from_slice(dims[0]);
        Ok(out)
    }

    fn kernel<'a, T: Element>(_: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        // Row-major operands (what the runtime stores) are copied slice after
        // slice: ndarray's stack walks each operand as a general view, which
        // costs more than the copy for many small operands.
        let slices: Option<Vec<&[T]>> = arrays.iter().map(|a| a.as_slice()).collect();
        if let Some(slices) = slices {
            let mut shape = vec![arrays.len()];
            shape.extend_from_slice(arrays[0].shape());
            let data: Vec<T> = slices.concat();
            return Moved::Owned(ndarray::ArrayD::from_shape_vec(shape, data).expect("shapes checked"));
        }
        Moved::Owned(ndarray::stack(ndarray::Axis(0), arrays).expect("shapes checked"))
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, wanted: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        let mut out = vec![];
        for i in (0..node.arrays.len()).filter(|&i| wanted(i)) {
            out.push((i, e.structural(Structural::Index, &[g], &[i])?));
        }
        Ok(out)
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        let Some(&some_mapped) = node.arrays.iter().find(|&&c| e.mapped(c)) else {
            return Ok(None);
        };
        let rank = e.shape(node.arrays[0]).rank();
        let mut rows = Vec::with_capacity(node.arrays.len());
        for &c in node.arrays {
            let c = if e.mapped(c) { c } else { e.along(c, some_mapped)? };
            rows.push(e.vmap(c)?);
        }
        // stack gives [n, B, ...]; the batch axis goes first.
        let stacked = e.structural(Structural::Stack, &rows, &[])?;
        swap_leading(e, stacked, rank + 2).map(Some)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs.iter().map(|s| s.elements() as f64).sum()
    }

    fn onnx(_: &[usize], ranks: &[usize]) -> Vec<OnnxNode> {
        let mut nodes: Vec<OnnxNode> = (0..ranks.len())
            .map(|i| OnnxNode::new("Unsqueeze", vec![OnnxInput::Operand(i), OnnxInput::Ints(vec![0])]))
            .collect();
        if ranks.len() > 1 {
            let parts = (0..ranks.len()).map(OnnxInput::Node).collect();
            nodes.push(OnnxNode::new("Concat", parts).with("axis", OnnxAttr::Int(0)));
        }
        nodes
    }

    fn label(_: &[usize]) -> String {
        Self::NAME.into()
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
