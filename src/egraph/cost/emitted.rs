//! What a structural op's transpose rule runs, counted on shapes: the
//! runtime sends a cotangent back through a structural op by running the
//! rule written in the op's file (`crate::runtime::emit`), each node it emits
//! one kernel. `index`'s rule, for one, emits an `expand` and a `pad`.

use crate::error::Result;
use crate::ir::structural::{Emit, Node, Structural};
use crate::ir::{ChildInfo, Op, Shape};
use egg::{Id, Language};

/// The kernels a rule emitted and the elements they wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Emitted {
    pub ops: f64,
    pub elements: f64,
}

/// An emitter of shapes only, counting what would run.
struct Counting {
    shapes: Vec<Shape>,
    literals: Vec<Option<f64>>,
    emitted: Emitted,
}

impl Counting {
    fn push(&mut self, shape: Shape, literal: Option<f64>) -> Id {
        self.shapes.push(shape);
        self.literals.push(literal);
        Id::from(self.shapes.len() - 1)
    }
}

impl Emit for Counting {
    fn add(&mut self, op: Op) -> Result<Id> {
        if let Op::Num(n) = op {
            return Ok(self.push(Shape::scalar(), Some(n.0)));
        }
        let shape = op.infer_shape_from(|c| ChildInfo {
            shape: &self.shapes[usize::from(c)],
            constant: self.literals[usize::from(c)],
        })?;
        debug_assert!(!op.is_leaf());
        self.emitted.ops += 1.0;
        self.emitted.elements += shape.elements() as f64;
        Ok(self.push(shape, None))
    }

    fn shape(&self, id: Id) -> Shape {
        self.shapes[usize::from(id)].clone()
    }
}

/// What the transpose rule of `s` runs for a result of shape `out`, operands
/// of `operands` shapes and integer operands `ints`, sending the cotangent to
/// the `wanted` operands. Nothing if the shapes do not fit the rule.
pub(crate) fn transpose_emitted(
    s: Structural,
    operands: &[&Shape],
    ints: &[usize],
    out: &Shape,
    wanted: &dyn Fn(usize) -> bool,
) -> Emitted {
    let mut e = Counting {
        shapes: vec![],
        literals: vec![],
        emitted: Emitted::default(),
    };
    let arrays: Vec<Id> = operands.iter().map(|&shape| e.push(shape.clone(), None)).collect();
    let g = e.push(out.clone(), None);
    let node = Node { arrays: &arrays, ints };
    match s.transpose(&mut e, &node, g, wanted) {
        Ok(_) => e.emitted,
        Err(_) => Emitted::default(),
    }
}
