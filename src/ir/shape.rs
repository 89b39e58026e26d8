//! Shapes and shape inference, one rule per op, shared by the parser, the
//! e-graph analysis and the interpreter.

use crate::ir::op::Op;
use crate::ir::structural::{Problem, Structural};
use egg::{Id, Language};
use std::fmt;

/// The largest number of elements one value may have (2^31, 16 GiB in f64).
pub const MAX_ELEMENTS: u64 = 1 << 31;
/// The largest rank a value may have.
pub const MAX_RANK: usize = 16;

/// The shape of a value: its dimensions, outermost first; `[]` is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// The scalar shape `[]`.
    pub fn scalar() -> Shape {
        Shape(vec![])
    }
    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.0.iter().product()
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// This shape with a new leading axis of size `n`.
    pub fn with_leading(&self, n: usize) -> Shape {
        let mut dims = vec![n];
        dims.extend_from_slice(&self.0);
        Shape(dims)
    }
    /// An error unless the shape is within [`MAX_RANK`] and [`MAX_ELEMENTS`] and has no zero dimension.
    pub fn check_size(&self) -> Result<(), String> {
        if self.rank() > MAX_RANK {
            return Err(format!("shape {self} has more than {MAX_RANK} axes"));
        }
        if self.0.contains(&0) {
            return Err(format!("shape {self} has a zero dimension"));
        }
        let mut total: u64 = 1;
        for &d in &self.0 {
            total = total.saturating_mul(d as u64);
        }
        if total > MAX_ELEMENTS {
            return Err(format!("shape {self} has more than 2^31 elements"));
        }
        Ok(())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Shape {
        Shape(dims)
    }
}

/// A shape error: names the op and the shapes involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    /// Elementwise operands that numpy cannot broadcast together.
    #[error("{op}: cannot broadcast {left} with {right}")]
    Broadcast {
        /// The op.
        op: String,
        /// Left operand's shape.
        left: Shape,
        /// Right operand's shape.
        right: Shape,
    },
    /// Matmul operands whose inner dimensions differ (or a scalar operand).
    #[error("@: cannot multiply {left} by {right}")]
    MatMul {
        /// Left operand's shape.
        left: Shape,
        /// Right operand's shape.
        right: Shape,
    },
    /// An axis out of range for the operand.
    #[error("{op}: axis {axis} is out of range for shape {shape}")]
    Axis {
        /// The op.
        op: String,
        /// The axis given.
        axis: i64,
        /// The operand's shape.
        shape: Shape,
    },
    /// An operand that must be an integer literal (an axis, index or count) is not.
    #[error("{op}: argument {position} must be a non-negative integer literal")]
    NotAnInteger {
        /// The op.
        op: String,
        /// Which argument (1-based).
        position: usize,
    },
    /// A count (rows, repeats, a chunk size) of zero, where at least one is needed.
    #[error("{op}: argument {position} must be at least 1")]
    Zero {
        /// The op.
        op: String,
        /// Which argument (1-based).
        position: usize,
    },
    /// A row index past the end of the leading axis.
    #[error("index: row {index} is out of range for shape {shape}")]
    Index {
        /// The row asked for.
        index: i64,
        /// The operand's shape.
        shape: Shape,
    },
    /// Operands of `stack` or `concat` that do not fit together.
    #[error("{op}: {why} {first} with {other}")]
    Operands {
        /// The op.
        op: String,
        /// What could not be done: "cannot stack", "cannot concatenate along axis 1".
        why: String,
        /// The first operand's shape.
        first: Shape,
        /// The first operand that does not fit it.
        other: Shape,
    },
    /// A range of elements outside an axis, or empty (`slice`).
    #[error("{op}: elements {start}..{end} of axis {axis} are not a range inside {shape}")]
    Range {
        /// The op.
        op: String,
        /// The axis.
        axis: usize,
        /// First element.
        start: usize,
        /// One past the last.
        end: usize,
        /// The operand's shape.
        shape: Shape,
    },
    /// `reshape` to dimensions that do not hold the elements of the axes reshaped.
    #[error("reshape: the axes from {axis} of {shape} hold {elements} elements, which {into} does not")]
    Reshape {
        /// The first axis reshaped.
        axis: usize,
        /// The number of elements in the axes reshaped.
        elements: usize,
        /// The new dimensions.
        into: Shape,
        /// The operand's shape.
        shape: Shape,
    },
    /// A structural op given a number of arguments it does not take.
    #[error("{op} takes {takes}; it was given {given}")]
    Arity {
        /// The op.
        op: String,
        /// What it takes.
        takes: &'static str,
        /// How many arguments it was given.
        given: usize,
    },
    /// `permute` axes that are not a permutation of the operand's axes.
    #[error("permute: {axes:?} is not a permutation of the axes of {shape}")]
    Permutation {
        /// The axes given.
        axes: Vec<i64>,
        /// The operand's shape.
        shape: Shape,
    },
    /// A result too large or of too high a rank.
    #[error("{op}: {reason}")]
    TooLarge {
        /// The op.
        op: String,
        /// Why.
        reason: String,
    },
    /// A loop that is not well formed: a `row` outside `map`, rows of another size, nested loops.
    #[error("{reason}")]
    Loop {
        /// What is wrong.
        reason: String,
    },
    /// An op that has no value of its own (the batcher's `vmap` spec).
    #[error("{op}: not an executable op")]
    NotExecutable {
        /// The op.
        op: String,
    },
    /// A program built from parts that do not fit together (through the library:
    /// a child or output that is not an earlier node, a name declared twice or not a name,
    /// a declared shape that cannot be held).
    #[error("malformed program: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

/// numpy's broadcasting of two shapes, or `None`.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let rank = a.rank().max(b.rank());
    // Dimension `i` of `s` counted from the right, 1 where `s` has no such axis.
    let dim = |s: &Shape, i: usize| if i < s.rank() { s.0[s.rank() - 1 - i] } else { 1 };
    let mut out = Vec::with_capacity(rank);
    for i in (0..rank).rev() {
        out.push(match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        });
    }
    Some(Shape(out))
}

/// numpy `matmul` shape rule: 1-D operands are promoted and the promoted axis
/// removed again; leading (batch) axes broadcast.
pub fn matmul(a: &Shape, b: &Shape) -> Result<Shape, ShapeError> {
    let err = || ShapeError::MatMul {
        left: a.clone(),
        right: b.clone(),
    };
    if a.rank() == 0 || b.rank() == 0 {
        return Err(err());
    }
    let a2: Vec<usize> = if a.rank() == 1 { vec![1, a.0[0]] } else { a.0.clone() };
    let b2: Vec<usize> = if b.rank() == 1 { vec![b.0[0], 1] } else { b.0.clone() };
    let (m, k1) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k1 != k2 {
        return Err(err());
    }
    let batch = broadcast(&Shape(a2[..a2.len() - 2].to_vec()), &Shape(b2[..b2.len() - 2].to_vec())).ok_or_else(err)?;
    let mut out = batch.0;
    if a.rank() > 1 {
        out.push(m);
    }
    if b.rank() > 1 {
        out.push(n);
    }
    Ok(Shape(out))
}

/// What shape inference knows of one child: its shape and, for a literal, its value.
#[derive(Clone, Copy, Debug)]
pub struct ChildInfo<'a> {
    /// The child's shape.
    pub shape: &'a Shape,
    /// The child's value if it is a number literal.
    pub constant: Option<f64>,
}

fn integer_operand(op: &Op, children: &[ChildInfo], position: usize) -> Result<i64, ShapeError> {
    match children[position].constant {
        Some(v) if v >= 0.0 && v == v.trunc() && v < 1e15 => Ok(v as i64),
        _ => Err(ShapeError::NotAnInteger {
            op: op.to_string(),
            position: position + 1,
        }),
    }
}

fn axis_operand(op: &Op, children: &[ChildInfo], position: usize, rank: usize) -> Result<usize, ShapeError> {
    let axis = integer_operand(op, children, position)?;
    if axis as usize >= rank {
        return Err(ShapeError::Axis {
            op: op.to_string(),
            axis,
            shape: children[0].shape.clone(),
        });
    }
    Ok(axis as usize)
}

impl Op {
    /// [`Op::infer_shape`], asking `child` what is known of each child.
    pub fn infer_shape_from<'a>(&self, child: impl Fn(Id) -> ChildInfo<'a>) -> Result<Shape, ShapeError> {
        let children: Vec<ChildInfo> = self.children().iter().map(|&c| child(c)).collect();
        self.infer_shape(&children)
    }

    /// The shape of this op's result given its children, for every op but
    /// `Var` (whose shape is declared) and `Vmap` (whose shape depends on the batch).
    pub fn infer_shape(&self, children: &[ChildInfo]) -> Result<Shape, ShapeError> {
        let first = || children[0].shape.clone();
        let shape = match self {
            Op::Num(_) => Shape::scalar(),
            Op::Var(_) | Op::Vmap(_) => return Err(ShapeError::NotExecutable { op: self.to_string() }),
            Op::Unary(..) => first(),
            Op::Binary(..) => {
                let (l, r) = (children[0].shape, children[1].shape);
                broadcast(l, r).ok_or_else(|| ShapeError::Broadcast {
                    op: self.to_string(),
                    left: l.clone(),
                    right: r.clone(),
                })?
            }
            Op::Reduce(..) => Shape::scalar(),
            Op::ReduceAxis(..) => {
                let mut dims = first().0;
                let axis = axis_operand(self, children, 1, dims.len())?;
                dims.remove(axis);
                Shape(dims)
            }
            Op::MatMul(_) => matmul(children[0].shape, children[1].shape)?,
            Op::Structural(s, ids) => structural(self, *s, ids.len(), children)?,
            Op::Map(_) => {
                let n = integer_operand(self, children, 1)?;
                if n == 0 {
                    return Err(ShapeError::Zero {
                        op: self.to_string(),
                        position: 2,
                    });
                }
                first().with_leading(n as usize)
            }
            Op::Chunks(_) => {
                let (n, k) = (integer_operand(self, children, 1)?, integer_operand(self, children, 2)?);
                let body = first().0;
                if n == 0 || k == 0 || body.first() != Some(&(k as usize)) {
                    return Err(ShapeError::Loop {
                        reason: format!(
                            "chunks: a body of shape {} is not a chunk of {k} rows (of {n})",
                            first()
                        ),
                    });
                }
                Shape(body[1..].to_vec()).with_leading(n as usize)
            }
            Op::Accumulate(_) => {
                let (n, k) = (integer_operand(self, children, 1)?, integer_operand(self, children, 2)?);
                if n == 0 || k == 0 || k > n {
                    return Err(ShapeError::Loop {
                        reason: format!("accumulate: no chunk of {k} rows in {n} rows"),
                    });
                }
                // The sum of the chunks' results: one accumulator of the body's shape.
                first()
            }
            Op::Rows(_) => {
                let k = integer_operand(self, children, 1)?;
                let dims = first().0;
                if dims.is_empty() || k == 0 || k as usize > dims[0] {
                    return Err(ShapeError::Loop {
                        reason: format!("rows: no chunk of {k} rows in a value of shape {}", first()),
                    });
                }
                Shape(dims[1..].to_vec()).with_leading(k as usize)
            }
            Op::Row(_) => {
                let dims = first().0;
                if dims.is_empty() {
                    return Err(ShapeError::Loop {
                        reason: "row: a scalar has no rows".into(),
                    });
                }
                Shape(dims[1..].to_vec())
            }
        };
        shape.check_size().map_err(|reason| ShapeError::TooLarge {
            op: self.to_string(),
            reason,
        })?;
        Ok(shape)
    }
}

/// The shape of the structural op `s` from its op file's rule, its problems
/// named with the op and the shapes.
fn structural(op: &Op, s: Structural, arity: usize, children: &[ChildInfo]) -> Result<Shape, ShapeError> {
    let arrays = s.arrays_of(arity).ok_or_else(|| ShapeError::Arity {
        op: s.name().into(),
        takes: s.call(),
        given: arity,
    })?;
    let ints = (arrays..arity)
        .map(|p| integer_operand(op, children, p).map(|v| v as usize))
        .collect::<Result<Vec<_>, _>>()?;
    let dims: Vec<&[usize]> = children[..arrays].iter().map(|c| c.shape.dims()).collect();
    let shape_of = |i: usize| children[i].shape.clone();
    s.shape(&ints, &dims).map(Shape).map_err(|problem| match problem {
        Problem::Axis { axis, operand } => ShapeError::Axis {
            op: s.name().into(),
            axis: axis as i64,
            shape: shape_of(operand),
        },
        Problem::Row { index } => ShapeError::Index {
            index: index as i64,
            shape: shape_of(0),
        },
        Problem::Differ { operand, why } => ShapeError::Operands {
            op: s.name().into(),
            why,
            first: shape_of(0),
            other: shape_of(operand),
        },
        Problem::Permutation => ShapeError::Permutation {
            axes: ints.iter().map(|&k| k as i64).collect(),
            shape: shape_of(0),
        },
        Problem::Broadcast => ShapeError::Broadcast {
            op: s.name().into(),
            left: shape_of(0),
            right: Shape(ints.clone()),
        },
        Problem::Range { axis, start, end } => ShapeError::Range {
            op: s.name().into(),
            axis,
            start,
            end,
            shape: shape_of(0),
        },
        Problem::Zero { position } => ShapeError::Zero {
            op: s.name().into(),
            position: position + 1,
        },
        Problem::Reshape { elements } => ShapeError::Reshape {
            axis: ints[0],
            elements,
            into: Shape(ints[1..].to_vec()),
            shape: shape_of(0),
        },
        Problem::Symbolic { axis } => ShapeError::Loop {
            reason: format!("{s}: axis {axis} of {} has no fixed size", shape_of(0)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(d: &[usize]) -> Shape {
        Shape(d.to_vec())
    }

    #[test]
    fn matmul_follows_numpy() {
        assert_eq!(matmul(&s(&[3]), &s(&[3])).unwrap(), s(&[]));
        assert_eq!(matmul(&s(&[4, 3]), &s(&[3])).unwrap(), s(&[4]));
        assert_eq!(matmul(&s(&[3]), &s(&[3, 5])).unwrap(), s(&[5]));
        assert_eq!(matmul(&s(&[8, 2, 3]), &s(&[3, 5])).unwrap(), s(&[8, 2, 5]));
        assert_eq!(matmul(&s(&[3]), &s(&[8, 3, 5])).unwrap(), s(&[8, 5]));
        assert_eq!(
            matmul(&s(&[4, 3]), &s(&[4])).unwrap_err().to_string(),
            "@: cannot multiply [4, 3] by [4]"
        );
    }

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(broadcast(&s(&[2, 3]), &s(&[3])), Some(s(&[2, 3])));
        assert_eq!(broadcast(&s(&[2, 1]), &s(&[1, 3])), Some(s(&[2, 3])));
        assert_eq!(broadcast(&s(&[2, 3]), &s(&[2])), None);
    }
}
