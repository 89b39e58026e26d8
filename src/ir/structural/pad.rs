//! `pad(e, axis, before, after)`: `before` zeros, `e`, then `after` zeros
//! along `axis` (numpy's `pad` with zeros, one axis). Its transpose is `slice`.

use super::common::{axis_in, shift_axis, size_of};
use super::*;

/// `pad(e, axis, before, after)`.
pub struct Pad;

impl StructuralOp for Pad {
    const NAME: &'static str = "pad";
    const CALL: &'static str = "4 arguments (pad(e, axis, before, after))";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::Exactly(3);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("input a: [2, 3]", "pad(a, 0, 1, 2)"),
        ("input a: [2, 3]", "pad(a, 1, 0, 1)"),
    ];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "axis-shift/pad",
        identity: "pad(A[b], k, p, q) = pad(A, k + 1, p, q)[b]",
        lhs: "(vmap (pad ?a ?k ?p ?q))",
    };

    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let axis = axis_in(ints[0], dims[0].len(), 0)?;
        let size = size_of(dims[0], axis)?;
        let mut out = dims[0].to_vec();
        out[axis] = D::fixed(size.saturating_add(ints[1]).saturating_add(ints[2]));
        Ok(out)
    }

    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        let (a, axis, before) = (&arrays[0], ndarray::Axis(ints[0]), ints[1]);
        let mut dims = a.shape().to_vec();
        dims[ints[0]] += before + ints[2];
        let mut out = ArrayD::zeros(dims);
        let inside = ndarray::Slice::from(before..before + a.len_of(axis));
        out.slice_axis_mut(axis, inside).assign(a);
        Moved::Owned(out)
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        let (axis, before) = (node.ints[0], node.ints[1]);
        let size = e.shape(node.arrays[0]).dims()[axis];
        Ok(vec![(
            0,
            e.structural(Structural::Slice, &[g], &[axis, before, before + size])?,
        )])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        shift_axis(e, Structural::Pad, node)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(ints: &[usize], ranks: &[usize]) -> Vec<OnnxNode> {
        // ONNX's pads: every axis's "before", then every axis's "after"; the value is 0 by default.
        let rank = ranks[0];
        let mut pads = vec![0i64; 2 * rank];
        pads[ints[0]] = ints[1] as i64;
        pads[rank + ints[0]] = ints[2] as i64;
        vec![OnnxNode::new("Pad", vec![OnnxInput::Operand(0), OnnxInput::Ints(pads)])]
    }

    fn label(ints: &[usize]) -> String {
        format!("pad axis {} by {}, {}", ints[0], ints[1], ints[2])
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
