//! `slice(e, axis, start, end)`: elements `start..end` along `axis` (numpy's
//! `e[..., start:end, ...]`). Its transpose is `pad`, and `pad`'s is `slice`.

use super::common::{axis_in, shift_axis, size_of};
use super::*;

/// `slice(e, axis, start, end)`.
pub struct Slice;

impl StructuralOp for Slice {
    const NAME: &'static str = "slice";
    const CALL: &'static str = "4 arguments (slice(e, axis, start, end))";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::Exactly(3);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("input a: [4, 3]", "slice(a, 0, 1, 3)"),
        ("input a: [2, 3]", "slice(a, 1, 1, 3)"),
    ];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "axis-shift/slice",
        identity: "slice(A[b], k, s, e) = slice(A, k + 1, s, e)[b]",
        lhs: "(vmap (slice ?a ?k ?s ?e))",
    };

    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let (axis, start, end) = (axis_in(ints[0], dims[0].len(), 0)?, ints[1], ints[2]);
        if start >= end || end > size_of(dims[0], axis)? {
            return Err(Problem::Range { axis, start, end });
        }
        let mut out = dims[0].to_vec();
        out[axis] = D::fixed(end - start);
        Ok(out)
    }

    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        let range = ndarray::Slice::from(ints[1]..ints[2]);
        Moved::View(arrays[0].slice_axis(ndarray::Axis(ints[0]), range))
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        let (axis, start, end) = (node.ints[0], node.ints[1], node.ints[2]);
        let size = e.shape(node.arrays[0]).dims()[axis];
        Ok(vec![(
            0,
            e.structural(Structural::Pad, &[g], &[axis, start, size - end])?,
        )])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        shift_axis(e, Structural::Slice, node)
    }

    fn elements_read(_: &[&Shape], output: &Shape) -> f64 {
        output.elements() as f64
    }

    fn onnx(ints: &[usize], _: &[usize]) -> Vec<OnnxNode> {
        let one = |n: usize| OnnxInput::Ints(vec![n as i64]);
        vec![OnnxNode::new(
            "Slice",
            vec![OnnxInput::Operand(0), one(ints[1]), one(ints[2]), one(ints[0])],
        )]
    }

    fn label(ints: &[usize]) -> String {
        format!("slice {}:{} of axis {}", ints[1], ints[2], ints[0])
    }

    fn window(ints: &[usize]) -> Option<Window> {
        Some(Window {
            axis: ints[0],
            start: ints[1],
            end: ints[2],
            drops_axis: false,
        })
    }
}
