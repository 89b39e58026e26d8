//! `concat(a0, a1, ..., axis)`: the operands joined along `axis` (numpy's
//! `concatenate`); they agree on every other axis. Its transpose slices the
//! cotangent back into the operands' parts.

use super::common::{axis_in, size_of};
use super::*;

/// `concat(a0, a1, ..., axis)`.
pub struct Concat;

impl StructuralOp for Concat {
    const NAME: &'static str = "concat";
    const CALL: &'static str = "the arrays, then the axis (concat(a, b, ..., axis))";
    const ARRAYS: Count = Count::AtLeast(1);
    const INTS: Count = Count::Exactly(1);
    const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("input a: [2, 3]\ninput b: [1, 3]", "concat(a, b, a, 0)"),
        ("input a: [2, 3]\ninput b: [2, 1]", "concat(a, b, 1)"),
    ];
    const BATCH_RULE: BatchRule = BatchRule {
        name: "axis-shift/concat",
        identity: "concat(A0[b], p, ..., k) = concat(A0, P, ..., k + 1)[b], P the batch of p + sum(step(A0)) * 0 for p unmapped",
        lhs: "(vmap (concat ?a ?b ?k))",
    };

    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
        let axis = axis_in(ints[0], dims[0].len(), 0)?;
        let mut total = 0usize;
        for (operand, d) in dims.iter().enumerate() {
            let fits = d.len() == dims[0].len() && (0..d.len()).all(|k| k == axis || d[k] == dims[0][k]);
            if !fits {
                return Err(Problem::Differ {
                    operand,
                    why: format!("cannot concatenate along axis {axis}"),
                });
            }
            total = total.saturating_add(size_of(d, axis)?);
        }
        let mut out = dims[0].to_vec();
        out[axis] = D::fixed(total);
        Ok(out)
    }

    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
        Moved::Owned(ndarray::concatenate(ndarray::Axis(ints[0]), arrays).expect("shapes checked"))
    }

    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, wanted: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>> {
        let axis = node.ints[0];
        let (mut out, mut start) = (vec![], 0);
        for (i, &a) in node.arrays.iter().enumerate() {
            let end = start + e.shape(a).dims()[axis];
            if wanted(i) {
                out.push((i, e.structural(Structural::Slice, &[g], &[axis, start, end])?));
            }
            start = end;
        }
        Ok(out)
    }

    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
        let Some(&some_mapped) = node.arrays.iter().find(|&&c| e.mapped(c)) else {
            return Ok(None);
        };
        let mut parts = Vec::with_capacity(node.arrays.len());
        for &c in node.arrays {
            let c = if e.mapped(c) { c } else { e.along(c, some_mapped)? };
            parts.push(e.vmap(c)?);
        }
        e.structural(Structural::Concat, &parts, &[node.ints[0] + 1]).map(Some)
    }

    fn elements_read(inputs: &[&Shape], _: &Shape) -> f64 {
        inputs.iter().map(|s| s.elements() as f64).sum()
    }

    fn onnx(ints: &[usize], ranks: &[usize]) -> Vec<OnnxNode> {
        let parts = (0..ranks.len()).map(OnnxInput::Operand).collect();
        vec![OnnxNode::new("Concat", parts).with("axis", OnnxAttr::Int(ints[0] as i64))]
    }

    fn label(ints: &[usize]) -> String {
        format!("concat axis {}", ints[0])
    }

    fn window(_: &[usize]) -> Option<Window> {
        None
    }
}
