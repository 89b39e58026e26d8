//! `reshape(e, axis, d1, ..., dm)`: the axes of `e` from `axis` on, read in
//! row-major order, laid out as the dimensions `d1, ..., dm` (numpy's
//! `e.reshape(e.shape[:axis] + (d1, ..., dm))`); the axes before `axis` stay.
//! The batcher writes a reduction over every axis of an example as one
//! reduction over `reshape(e, 1, n)`, so that tied elements share the
//! gradient evenly (reductions one axis at a time split it per row first).
//! Its transpose is `reshape` back to the operand's dimensions.

use super::common::shift_axis;
use super::*;

/// `reshape(e, axis, d1, ..., dm)`.
pub struct Reshape;

impl StructuralOp for Reshape {
    const NAME: &'static str = "reshape";
    const CALL: &'static str = "the array, the first axis reshaped and the new dimensions";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::AtLeast(1);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("input a: [2, 3, 4]", "reshape(a, 1, 12)"),
        ("input a: [2, 6]", "reshape(a, 0, 3, 2, 2)"),
        ("input a: [4, 3]", "reshape(a, 1, 3, 1)"),
    ];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "axis-shift/reshape",
        identity: "reshape(A[b], k, d...) = reshape(A, k + 1, d...)[b]",
        lhs: "(vmap (reshape ?a ?k ?d))",
    };

    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let axis = common::axis_in(ints[0], dims[0].len() + 1, 0)?;
        if let Some(zero) = ints[1..].iter().position(|&d| d == 0) {
            return Err(Problem::Zero { position: zero + 2 });
        }
        let mut elements = 1usize;
        for k in axis..dims[0].len() {
            elements = elements.saturating_mul(common::size_of(dims[0], k)?);
        }
        let into = ints[1..].iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if into != Some(elements) {
            return Err(Problem::Reshape { elements });
        }
        let mut out = dims[0][..axis].to_vec();
        out.extend(ints[1..].iter().map(|&d| D::fixed(d)));
        Ok(out)
    }

    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        let a = &arrays[0];
        let mut dims = a.shape()[..ints[0]].to_vec();
        dims.extend_from_slice(&ints[1..]);
        // A view when the operand is row-major already, else a row-major copy.
        match a.clone().into_shape_with_order(ndarray::IxDyn(&dims)) {
            Ok(view) => Moved::View(view),
            Err(_) => Moved::Owned(
                ArrayD::from_shape_vec(ndarray::IxDyn(&dims), a.iter().cloned().collect())
                    .expect("the shape rule checked the element count"),
            ),
        }
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        let axis = node.ints[0];
        let shape = e.shape(node.arrays[0]);
        let ints: Vec<usize> = std::iter::once(axis).chain(shape.dims()[axis..].iter().copied()).collect();
        Ok(vec![(0, e.structural(Structural::Reshape, &[g], &ints)?)])
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        shift_axis(e, Structural::Reshape, node)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(ints: &[usize], _: &[usize]) -> Vec<OnnxNode> {
        // ONNX's 0 copies the input's dimension (the shape rule refuses a 0 in `d`).
        let shape = std::iter::repeat_n(0, ints[0]).chain(ints[1..].iter().map(|&d| d as i64)).collect();
        vec![OnnxNode::new(
            "Reshape",
            vec![OnnxInput::Operand(0), OnnxInput::Ints(shape)],
        )]
    }

    fn label(ints: &[usize]) -> String {
        let dims: Vec<String> = ints[1..].iter().map(|d| d.to_string()).collect();
        format!("reshape from axis {} to [{}]", ints[0], dims.join(", "))
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
