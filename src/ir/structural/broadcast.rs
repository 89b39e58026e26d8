//! `broadcast(e, d0, d1, ...)`: numpy's `broadcast_to(e, (d0, d1, ...))`.

use super::common::label_with;
use super::*;
use crate::ir::Binary;

/// `broadcast(e, d0, d1, ...)`.
pub struct Broadcast;

impl StructuralOp for Broadcast {
    const NAME: &'static str = "broadcast";
    const CALL: &'static str = "the array and the dimensions of the result (broadcast(e, d0, d1, ...))";
    const ARRAYS: Count = Count::Exactly(1);
    const INTS: Count = Count::AtLeast(0);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("input a: [3, 1]", "broadcast(a, 2, 3, 4)"),
        ("input a: []", "broadcast(a, 2, 3)"),
    ];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "broadcast/times-ones",
        identity: "broadcast(A[b], d...) = (A[b] * broadcast(1, d...)), batched by the broadcasting rules",
        lhs: "(vmap (broadcast ?a ?d0 ?d1))",
    };

    /// numpy's rule, aligned from the right; a symbolic axis (the export's
    /// batch axis) broadcasts to itself.
    fn shape<D: Extent>(target: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let dims = dims[0];
        let lead = target.len().checked_sub(dims.len()).ok_or(Problem::Broadcast)?;
        (0..target.len())
            .map(|i| match i.checked_sub(lead).map(|j| dims[j]) {
                None => Ok(D::fixed(target[i])),
                Some(d) => match d.size() {
                    None => Ok(d),
                    Some(n) if n == 1 || n == target[i] => Ok(D::fixed(target[i])),
                    Some(_) => Err(Problem::Broadcast),
                },
            })
            .collect()
    }

    fn kernel<'a, T: Element>(target: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        Moved::View(arrays[0].broadcast(target).expect("shapes checked"))
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, _: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        let target = e.shape(node.arrays[0]);
        Ok(vec![(0, e.sum_to(g, &target)?)])
    }

    /// `broadcast(A, d...) = A * broadcast(1, d...)` exactly, and the product
    /// batches by the broadcasting rules without a literal B.
    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        let a = node.arrays[0];
        if !e.mapped(a) {
            return Ok(None);
        }
        let one = e.int(1)?;
        let ones = e.structural(Structural::Broadcast, &[one], node.ints)?;
        let product = e.add(Op::Binary(Binary::Mul, [a, ones]))?;
        e.vmap(product).map(Some)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs[0].elements() as f64
    }

    fn onnx(target: &[usize], _: &[usize]) -> Vec<OnnxNode> {
        let dims = target.iter().map(|&d| d as i64).collect();
        vec![OnnxNode::new(
            "Expand",
            vec![OnnxInput::Operand(0), OnnxInput::Ints(dims)],
        )]
    }

    fn label(target: &[usize]) -> String {
        label_with(Self::NAME, target)
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
