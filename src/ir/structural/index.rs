//! `index(e, i)`: row `i` of the leading axis. Its transpose pads the
//! cotangent with zeros to the other rows (`pad`), two nodes at any size.

use super::common::{label_with, size_of, swap_leading};
use super::*;

/// `index(e, i)`.
pub struct Index;

impl StructuralOp for Index {
    const NAME: &'static str = "index";
    const CALL: &'static str = "2 arguments (index(e, row))";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::Exactly(1);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[("input a: [4, 3]", "index(a, 2)")];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "index/second-axis",
        identity: "index(A[b], i) = index(permute(A, 1, 0, 2, ...), i)[b]",
        lhs: "(vmap (index ?a ?i))",
    };

    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let index = ints[0];
        if dims[0].is_empty() || index >= size_of(dims[0], 0)? {
            return Err(Problem::Row { index });
        }
        Ok(dims[0][1..].to_vec())
    }

    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        Moved::View(arrays[0].clone().index_axis_move(ndarray::Axis(0), ints[0]))
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        let (row, rows) = (node.ints[0], e.shape(node.arrays[0]).dims()[0]);
        let one_row = e.structural(Structural::Expand, &[g], &[0])?;
        let padded = e.structural(Structural::Pad, &[one_row], &[0, row, rows - 1 - row])?;
        Ok(vec![(0, padded)])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        let a = node.arrays[0];
        let rank = e.shape(a).rank();
        if !e.mapped(a) || rank == 0 {
            return Ok(None);
        }
        // The rows indexed are axis 1 of the batched value: bring them to the front.
        let batched = e.vmap(a)?;
        let rows_first = swap_leading(e, batched, rank + 1)?;
        e.structural(Structural::Index, &[rows_first], node.ints).map(Some)
    }

    /// The whole operand, as the cost model has always charged it (the
    /// kernel reads one row; pricing that is the cost model's issue to take up).
    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(ints: &[usize], _: &[usize]) -> Vec<OnnxNode> {
        vec![
            OnnxNode::new("Gather", vec![OnnxInput::Operand(0), OnnxInput::Int(ints[0] as i64)])
                .with("axis", OnnxAttr::Int(0)),
        ]
    }

    fn label(ints: &[usize]) -> String {
        label_with(Self::NAME, ints)
    }

    fn window(ints: &[usize]) -> Option<Window> {
        Some(Window {
            axis: 0,
            start: ints[0],
            end: ints[0] + 1,
            drops_axis: true,
        })
    }
}
