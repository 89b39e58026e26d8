//! Rules run on values: an [`Emit`] whose nodes are tensors, so that the
//! interpreter runs the structural ops' transpose and JVP rules (written once
//! in each op's file, for the gradient programs too) numerically. Each node
//! added runs its kernel at once.

use crate::error::{Error, Result};
use crate::ir::structural::{Emit, Node, Structural};
use crate::ir::{ChildInfo, Op, Scalar, Shape};
use crate::runtime::kernels::{run_op, scalar, sum_to_shape, Tensor};
use egg::{Id, Language};
use std::borrow::Cow;

/// One node: a value (borrowed from the caller or computed), a literal, or
/// an operand of which a linear rule reads only the shape.
enum Slot<'a, T: Scalar> {
    Value(Cow<'a, Tensor<T>>),
    Literal(f64, Tensor<T>),
    ShapeOnly,
}

/// Values under a rule.
pub struct ValueEmit<'a, T: Scalar> {
    slots: Vec<Slot<'a, T>>,
    shapes: Vec<Shape>,
}

impl<'a, T: Scalar> ValueEmit<'a, T> {
    fn new() -> Self {
        ValueEmit {
            slots: vec![],
            shapes: vec![],
        }
    }

    fn push(&mut self, slot: Slot<'a, T>, shape: Shape) -> Id {
        self.slots.push(slot);
        self.shapes.push(shape);
        Id::from(self.slots.len() - 1)
    }

    fn value(&mut self, t: &'a Tensor<T>) -> Id {
        self.push(Slot::Value(Cow::Borrowed(t)), Shape(t.shape().to_vec()))
    }

    fn shape_only(&mut self, shape: &[usize]) -> Id {
        self.push(Slot::ShapeOnly, Shape(shape.to_vec()))
    }

    fn take(&mut self, id: Id) -> Tensor<T> {
        match std::mem::replace(&mut self.slots[usize::from(id)], Slot::ShapeOnly) {
            Slot::Value(v) => v.into_owned(),
            Slot::Literal(_, t) => t,
            Slot::ShapeOnly => unreachable!("a rule's result is a value it computed"),
        }
    }

    fn tensor(&self, id: Id) -> Result<&Tensor<T>> {
        match &self.slots[usize::from(id)] {
            Slot::Value(v) => Ok(v),
            Slot::Literal(_, t) => Ok(t),
            Slot::ShapeOnly => Err(Error::Internal("a linear rule read the value of an operand".into())),
        }
    }
}

impl<T: Scalar> Emit for ValueEmit<'_, T> {
    fn add(&mut self, op: Op) -> Result<Id> {
        if let Op::Num(n) = op {
            return Ok(self.push(Slot::Literal(n.0, scalar(T::of(n.0))), Shape::scalar()));
        }
        let literal = |c: Id| match self.slots[usize::from(c)] {
            Slot::Literal(v, _) => Some(v),
            _ => None,
        };
        let shape = op.infer_shape_from(|c| ChildInfo {
            shape: &self.shapes[usize::from(c)],
            constant: literal(c),
        })?;
        let args = op
            .children()
            .iter()
            .map(|&c| self.tensor(c))
            .collect::<Result<Vec<_>>>()?;
        let children = op.children();
        let out = run_op(&op, &args, &|i| literal(children[i]).unwrap_or(f64::NAN));
        Ok(self.push(Slot::Value(Cow::Owned(out)), shape))
    }

    fn shape(&self, id: Id) -> Shape {
        self.shapes[usize::from(id)].clone()
    }

    fn sum_to(&mut self, value: Id, target: &Shape) -> Result<Id> {
        let summed = sum_to_shape(self.tensor(value)?.clone(), target.dims());
        Ok(self.push(Slot::Value(Cow::Owned(summed)), target.clone()))
    }

    fn zeros(&mut self, shape: &Shape) -> Result<Id> {
        let zeros = Tensor::zeros(shape.dims());
        Ok(self.push(Slot::Value(Cow::Owned(zeros)), shape.clone()))
    }
}

/// An emitter holding the array operands of the structural op `s` as shapes
/// (its linear rules never read their values), their ids, and the values of
/// its integer operands.
fn operands_by_shape<'a, T: Scalar>(
    s: Structural,
    args: &[&Tensor<T>],
    literal: &dyn Fn(usize) -> f64,
) -> (ValueEmit<'a, T>, Vec<Id>, Vec<usize>) {
    let arrays = s.arrays_of(args.len()).expect("shape inference checked the arity");
    let ints: Vec<usize> = (arrays..args.len()).map(|i| literal(i) as usize).collect();
    let mut e = ValueEmit::new();
    let operands: Vec<Id> = args[..arrays].iter().map(|a| e.shape_only(a.shape())).collect();
    (e, operands, ints)
}

/// The cotangents of the array operands of the structural op `s` (with
/// `arity` children, whose operands are `args` and integer operands
/// `literal(i)`) given its result's cotangent `g`, by its transpose rule;
/// `None` for integer operands and operands not `wanted`.
pub fn structural_vjp<T: Scalar>(
    s: Structural,
    args: &[&Tensor<T>],
    g: &Tensor<T>,
    literal: &dyn Fn(usize) -> f64,
    wanted: &dyn Fn(usize) -> bool,
) -> Vec<Option<Tensor<T>>> {
    let (mut e, operands, ints) = operands_by_shape(s, args, literal);
    let g = e.value(g);
    let node = Node {
        arrays: &operands,
        ints: &ints,
    };
    let pairs = s
        .transpose(&mut e, &node, g, wanted)
        .expect("a transpose rule reads shapes only");
    let mut out: Vec<Option<Tensor<T>>> = vec![None; args.len()];
    for (i, id) in pairs {
        out[i] = Some(e.take(id));
    }
    out
}

/// The tangent of the structural op `s`'s result given its operands'
/// tangents `t` (`None`: zero), by linearity; `None` when all are zero.
pub fn structural_jvp<T: Scalar>(
    s: Structural,
    args: &[&Tensor<T>],
    t: &[Option<&Tensor<T>>],
    literal: &dyn Fn(usize) -> f64,
) -> Option<Tensor<T>> {
    let (mut e, operands, ints) = operands_by_shape(s, args, literal);
    let tangents: Vec<Option<Id>> = t[..operands.len()].iter().map(|t| t.map(|t| e.value(t))).collect();
    let node = Node {
        arrays: &operands,
        ints: &ints,
    };
    let tangent = |id: Id| tangents[usize::from(id)];
    let result = s
        .jvp(&mut e, &node, &tangent)
        .expect("a JVP by linearity reads shapes only");
    result.map(|id| e.take(id))
}
