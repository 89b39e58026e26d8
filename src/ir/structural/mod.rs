//! The structural ops: data movement (`transpose`, `permute`, `expand`,
//! `index`, `stack`, `repeat`, `broadcast`, `slice`, `concat`, `pad`,
//! `reshape`).
//! **One file per op holds everything about it**, as JAX registers a
//! primitive with its rules in one block: its call name and operands, its
//! shape rule (generic over [`Extent`], so the same rule infers concrete
//! shapes and ONNX's symbolic batch axis), its kernel (as a view of the
//! operand where it is one, [`Moved`]), its transpose rule, its batching rule,
//! the elements it moves (the cost), its ONNX form and its picture label.
//!
//! Every structural op is linear in its array operands, so its JVP is the op
//! itself applied to the tangents ([`Structural::jvp`], written once for all),
//! and its transpose rule is written once against [`Emit`]: the gradient
//! programs run it on a graph builder, the interpreter runs it on values.
//! Transposes pair up: `slice` with `pad`, `concat` with `slice`, `index`
//! with `pad`, `stack` with `index`, `reshape` with itself; each is a constant number of nodes.
//!
//! A node's children are its array operands, then its integer operands
//! (axes, rows, sizes), all literals. The table at the bottom of this file
//! lists the ops; [`Structural`]'s methods dispatch to them through one match
//! each, generated from it (and the file's `mod` line). Adding an op is a new
//! file implementing [`StructuralOp`] and one line in the table;
//! `CONTRIBUTING.md` says more.

use crate::ir::error::Result;
use crate::ir::op::{Num, Op};
use crate::ir::reduce::Reduce;
use crate::ir::shape::Shape;
use egg::Id;
use ndarray::{ArrayD, ArrayViewD};
use std::fmt;
use std::str::FromStr;

/// How many operands of one kind (arrays, integers) an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Exactly this many.
    Exactly(usize),
    /// At least this many (at most one of an op's two counts).
    AtLeast(usize),
}

/// One dimension as a shape rule sees it: a size, or (for the ONNX export's
/// symbolic batch axis) a size known only as a symbol.
pub trait Extent: Copy + Eq + fmt::Debug {
    /// A fixed size.
    fn fixed(n: usize) -> Self;
    /// The size, if it is fixed.
    fn size(self) -> Option<usize>;
}

impl Extent for usize {
    fn fixed(n: usize) -> usize {
        n
    }
    fn size(self) -> Option<usize> {
        Some(self)
    }
}

/// What a shape rule found wrong; the caller names the op and the shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// An axis out of range for array operand `operand`.
    Axis {
        /// The axis given.
        axis: usize,
        /// Which array operand.
        operand: usize,
    },
    /// A row past the end of the leading axis.
    Row {
        /// The row given.
        index: usize,
    },
    /// Array operand `operand` does not fit the first one.
    Differ {
        /// Which array operand.
        operand: usize,
        /// What was being done: "cannot stack", "cannot concatenate along axis 1".
        why: String,
    },
    /// The integer operands are not a permutation of the axes.
    Permutation,
    /// The operand does not broadcast to the target dimensions.
    Broadcast,
    /// A range `start..end` outside the axis, or empty.
    Range {
        /// The axis.
        axis: usize,
        /// First element taken.
        start: usize,
        /// One past the last element taken.
        end: usize,
    },
    /// A count that must be positive is 0 (integer operand `position`, 0-based among all children).
    Zero {
        /// Position among the node's children.
        position: usize,
    },
    /// The new dimensions of `reshape` do not hold the `elements` of the axes reshaped.
    Reshape {
        /// The number of elements in the axes reshaped.
        elements: usize,
    },
    /// The rule needs the size of an axis that is symbolic (the batch axis of an export).
    Symbolic {
        /// The axis of the first array operand.
        axis: usize,
    },
}

/// An op's result as its kernel gives it: a view of an operand (the runtime
/// copies it, or reads it in place), or a new array.
pub enum Moved<'a, T> {
    /// A strided view of an operand.
    View(ArrayViewD<'a, T>),
    /// A new array.
    Owned(ArrayD<T>),
}

/// Where rules build nodes: a program under construction (the gradient
/// programs), an e-graph (batching) or values (the interpreter runs a rule
/// numerically). Nodes are named by [`Id`].
pub trait Emit {
    /// Adds the node `op`, whose children are nodes of this emitter.
    fn add(&mut self, op: Op) -> Result<Id>;
    /// The shape of node `id`.
    fn shape(&self, id: Id) -> Shape;
    /// The integer literal `n`.
    fn int(&mut self, n: usize) -> Result<Id> {
        self.add(Op::Num(Num(n as f64)))
    }
    /// `value` summed down to `target` (the adjoint of numpy broadcasting).
    fn sum_to(&mut self, value: Id, target: &Shape) -> Result<Id> {
        let mut value = value;
        while self.shape(value).rank() > target.rank() {
            value = self.reduce_sum(value, 0)?;
        }
        for (axis, &d) in target.dims().iter().enumerate() {
            if d == 1 && self.shape(value).dims()[axis] != 1 {
                let summed = self.reduce_sum(value, axis)?;
                value = self.structural(Structural::Expand, &[summed], &[axis])?;
            }
        }
        Ok(value)
    }
    /// Zeros of `shape`.
    fn zeros(&mut self, shape: &Shape) -> Result<Id> {
        let zero = self.add(Op::Num(Num(0.0)))?;
        match shape.rank() {
            0 => Ok(zero),
            _ => self.structural(Structural::Broadcast, &[zero], shape.dims()),
        }
    }
    /// `sum(value, axis)`.
    fn reduce_sum(&mut self, value: Id, axis: usize) -> Result<Id> {
        let axis = self.int(axis)?;
        self.add(Op::ReduceAxis(Reduce::Sum, [value, axis]))
    }
    /// The structural op `op` of `arrays` and the integer operands `ints`.
    fn structural(&mut self, op: Structural, arrays: &[Id], ints: &[usize]) -> Result<Id> {
        let mut children = arrays.to_vec();
        for &n in ints {
            children.push(self.int(n)?);
        }
        self.add(Op::Structural(op, children.into()))
    }
}

/// An [`Emit`] that batches: an e-graph with the batcher's `vmap` spec nodes.
pub trait BatchEmit: Emit {
    /// Whether node `id` depends on the batched inputs.
    fn mapped(&self, id: Id) -> bool;
    /// The spec node `vmap(id)`: `id` stacked over the batch (axis 0).
    fn vmap(&mut self, id: Id) -> Result<Id> {
        self.add(Op::Vmap(id))
    }
    /// The unmapped `p` as a mapped value equal to it in every example,
    /// `p + step(x) * 0` for a mapped `x` of `p`'s shape, or
    /// `p + sum(step(x)) * 0` for one of another shape (the added term is
    /// exactly 0 and its derivative 0), so that its batched value needs no
    /// literal batch size. A sum, not a product with `p`: `x`'s cotangent never
    /// meets `p`'s value, so a NaN or infinity in `p` stays out of it.
    fn along(&mut self, p: Id, x: Id) -> Result<Id> {
        use crate::ir::{Binary, Unary};
        let zero = self.int(0)?;
        let mut step = self.add(Op::Unary(Unary::Step, x))?;
        if self.shape(p) != self.shape(x) {
            step = self.add(Op::Reduce(Reduce::Sum, step))?;
        }
        let zeros = self.add(Op::Binary(Binary::Mul, [step, zero]))?;
        self.add(Op::Binary(Binary::Add, [p, zeros]))
    }
}

/// One node of a structural op as its rules see it: its array operands (nodes
/// of the emitter) and the values of its integer operands.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// The array operands.
    pub arrays: &'a [Id],
    /// The integer operands' values.
    pub ints: &'a [usize],
}

/// A batching rule's name, the identity it states, and a left side at one
/// arity for the soundness checker (which tries the others for a variadic op).
#[derive(Clone, Copy, Debug)]
pub struct BatchRule {
    /// `family/op`, as `batchgraph rules` lists it.
    pub name: &'static str,
    /// The identity, e.g. `slice(A[b], k, s, e) = slice(A, k + 1, s, e)[b]`.
    pub identity: &'static str,
    /// A left side, e.g. `(vmap (slice ?a ?k ?s ?e))`.
    pub lhs: &'static str,
}

/// An input of one ONNX node of an op's ONNX form.
#[derive(Clone, Debug, PartialEq)]
pub enum OnnxInput {
    /// Array operand `i` of the op.
    Operand(usize),
    /// The output of node `i` of the same form.
    Node(usize),
    /// A constant int64 tensor of these values (1-D).
    Ints(Vec<i64>),
    /// A constant int64 scalar.
    Int(i64),
}

/// An attribute of one ONNX node.
#[derive(Clone, Debug, PartialEq)]
pub enum OnnxAttr {
    /// An integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
}

/// One ONNX node of an op's ONNX form (opset 18); the form's last node gives the op's value.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxNode {
    /// The ONNX op type.
    pub op_type: &'static str,
    /// Its inputs.
    pub inputs: Vec<OnnxInput>,
    /// Its attributes.
    pub attrs: Vec<(&'static str, OnnxAttr)>,
}

impl OnnxNode {
    /// An ONNX node without attributes.
    pub fn new(op_type: &'static str, inputs: Vec<OnnxInput>) -> OnnxNode {
        OnnxNode {
            op_type,
            inputs,
            attrs: vec![],
        }
    }
    /// This node with the attribute `name`.
    pub fn with(mut self, name: &'static str, value: OnnxAttr) -> OnnxNode {
        self.attrs.push((name, value));
        self
    }
}

/// Where a structural op's result lies in its (one) array operand, when it is
/// one window of it: elements `start..end` along `axis`, that axis dropped
/// when `drops_axis` (`index`). Its transpose then puts the cotangent in that
/// window of zeros, which the runtime does by writing (adding) it there in
/// the operand's cotangent directly: one pass over the result's elements,
/// with no padded array and no further add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The axis of the operand.
    pub axis: usize,
    /// First element taken along it.
    pub start: usize,
    /// One past the last.
    pub end: usize,
    /// Whether the result leaves the axis out (one element taken, as `index` does).
    pub drops_axis: bool,
}

/// The element types kernels move: anything with a zero (for `pad`).
pub trait Element: Clone + num_traits::Zero {}
impl<T: Clone + num_traits::Zero> Element for T {}

/// Everything about one structural op. Every item is required, so a new op
/// does not compile until it has them all.
pub trait StructuralOp {
    /// The name it is called by.
    const NAME: &'static str;
    /// How it is called, for error messages: `slice(e, axis, start, end)`.
    const CALL: &'static str;
    /// How many array operands it takes.
    const ARRAYS: Count;
    /// How many integer operands follow them.
    const INTS: Count;
    /// Uses for the generated tests, at least one: declarations and an
    /// expression over them (gradients checked three ways, batching,
    /// printing, export).
    const EXAMPLES: &'static [(&'static str, &'static str)];
    /// Its batching rule.
    const BATCH_RULE: BatchRule;

    /// The result's dimensions from the array operands' (`dims`) and the integer operands.
    fn shape<D: Extent>(ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem>;
    /// The result from the array operands (shapes checked).
    fn kernel<'a, T: Element>(ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T>;
    /// The cotangents of the wanted array operands (by position) given the
    /// result's cotangent `g`: `(position, cotangent)` pairs, each a constant
    /// number of nodes. Linear: it reads the operands' shapes, never their values.
    fn transpose(e: &mut dyn Emit, node: &Node, g: Id, wanted: &dyn Fn(usize) -> bool) -> Result<Vec<(usize, Id)>>;
    /// `vmap` of the node, built from the batched operands (`e.vmap`) with
    /// the batch axis first; `None` where the rule does not apply (unmapped
    /// operands, a case a text rule covers).
    fn batch(e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>>;
    /// Elements read to compute a result of `output` (it writes `output.elements()`).
    fn elements_read(inputs: &[&Shape], output: &Shape) -> f64;
    /// Its ONNX form, given the array operands' ranks.
    fn onnx(ints: &[usize], ranks: &[usize]) -> Vec<OnnxNode>;
    /// Its label in pictures: name and integer operands (`slice 1:3 of axis 0`).
    fn label(ints: &[usize]) -> String;
    /// The window of its operand the result is, if it is one (see [`Window`]);
    /// `None` for every op whose result is not a window of one operand.
    fn window(ints: &[usize]) -> Option<Window>;
}

/// Generates [`Structural`] and its dispatching methods from the table.
macro_rules! structural_ops {
    ($($variant:ident => $module:ident::$def:ident,)*) => {
        $(mod $module;)*
        $(use $module::$def;)*

        /// A structural op (see the module docs); each is defined in a file of its own.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Structural {
            $(
                #[doc = concat!("Defined in `src/ir/structural/", stringify!($module), ".rs`.")]
                $variant,
            )*
        }

        impl Structural {
            /// Every structural op, in table order.
            pub const ALL: &'static [Structural] = &[$(Structural::$variant),*];

            /// The name it is called by.
            pub fn name(self) -> &'static str {
                match self { $(Structural::$variant => <$def>::NAME,)* }
            }
            /// How it is called, for error messages.
            pub fn call(self) -> &'static str {
                match self { $(Structural::$variant => <$def>::CALL,)* }
            }
            /// How many array and integer operands it takes.
            pub fn counts(self) -> (Count, Count) {
                match self { $(Structural::$variant => (<$def>::ARRAYS, <$def>::INTS),)* }
            }
            /// Uses for the generated tests.
            pub fn examples(self) -> &'static [(&'static str, &'static str)] {
                match self { $(Structural::$variant => <$def>::EXAMPLES,)* }
            }
            /// Its batching rule.
            pub fn batch_rule(self) -> BatchRule {
                match self { $(Structural::$variant => <$def>::BATCH_RULE,)* }
            }
            /// The result's dimensions (see [`StructuralOp::shape`]).
            pub fn shape<D: Extent>(self, ints: &[usize], dims: &[&[D]]) -> std::result::Result<Vec<D>, Problem> {
                match self { $(Structural::$variant => <$def>::shape(ints, dims),)* }
            }
            /// The result (see [`StructuralOp::kernel`]).
            pub fn kernel<'a, T: Element>(self, ints: &[usize], arrays: &'a [ArrayViewD<'a, T>]) -> Moved<'a, T> {
                match self { $(Structural::$variant => <$def>::kernel(ints, arrays),)* }
            }
            /// The operands' cotangents (see [`StructuralOp::transpose`]).
            pub fn transpose(
                self,
                e: &mut dyn Emit,
                node: &Node,
                g: Id,
                wanted: &dyn Fn(usize) -> bool,
            ) -> Result<Vec<(usize, Id)>> {
                match self { $(Structural::$variant => <$def>::transpose(e, node, g, wanted),)* }
            }
            /// The batched node (see [`StructuralOp::batch`]).
            pub fn batch(self, e: &mut dyn BatchEmit, node: &Node) -> Result<Option<Id>> {
                match self { $(Structural::$variant => <$def>::batch(e, node),)* }
            }
            /// Elements read (see [`StructuralOp::elements_read`]).
            pub fn elements_read(self, inputs: &[&Shape], output: &Shape) -> f64 {
                match self { $(Structural::$variant => <$def>::elements_read(inputs, output),)* }
            }
            /// Its ONNX form (see [`StructuralOp::onnx`]).
            pub fn onnx(self, ints: &[usize], ranks: &[usize]) -> Vec<OnnxNode> {
                match self { $(Structural::$variant => <$def>::onnx(ints, ranks),)* }
            }
            /// Its label in pictures.
            pub fn label(self, ints: &[usize]) -> String {
                match self { $(Structural::$variant => <$def>::label(ints),)* }
            }
            /// The window of its operand it takes (see [`StructuralOp::window`]).
            pub fn window(self, ints: &[usize]) -> Option<Window> {
                match self { $(Structural::$variant => <$def>::window(ints),)* }
            }
        }
    };
}

structural_ops! {
    Transpose => transpose::Transpose,
    Permute => permute::Permute,
    Expand => expand::Expand,
    Index => index::Index,
    Stack => stack::Stack,
    Repeat => repeat::Repeat,
    Broadcast => broadcast::Broadcast,
    Slice => slice::Slice,
    Concat => concat::Concat,
    Pad => pad::Pad,
    Reshape => reshape::Reshape,
}

impl Structural {
    /// How many of `children` children are array operands, or `None` if the op does not take that many.
    pub fn arrays_of(self, children: usize) -> Option<usize> {
        let (arrays, ints) = self.counts();
        let (n_arrays, n_ints) = match (arrays, ints) {
            (Count::Exactly(a), Count::Exactly(i)) => (a, i),
            (Count::Exactly(a), Count::AtLeast(_)) => (a, children.checked_sub(a)?),
            (Count::AtLeast(_), Count::Exactly(i)) => (children.checked_sub(i)?, i),
            (Count::AtLeast(_), Count::AtLeast(_)) => unreachable!("at most one count of an op is open"),
        };
        let fits = |count: Count, n: usize| match count {
            Count::Exactly(k) => n == k,
            Count::AtLeast(k) => n >= k,
        };
        (n_arrays + n_ints == children && fits(arrays, n_arrays) && fits(ints, n_ints)).then_some(n_arrays)
    }

    /// Whether the child at `position` (of `children`) is an integer operand.
    pub fn integer_operand(self, position: usize, children: usize) -> bool {
        self.arrays_of(children).is_some_and(|arrays| position >= arrays)
    }

    /// Whether its arity is open (`stack`, `concat`, `permute`, `broadcast`).
    pub fn variadic(self) -> bool {
        let (arrays, ints) = self.counts();
        matches!(arrays, Count::AtLeast(_)) || matches!(ints, Count::AtLeast(_))
    }

    /// The JVP of every structural op, by linearity: the op applied to the
    /// operands' tangents (`None`: zero), or `None` when all are zero.
    pub fn jvp(self, e: &mut dyn Emit, node: &Node, tangent: &dyn Fn(Id) -> Option<Id>) -> Result<Option<Id>> {
        if node.arrays.iter().all(|&a| tangent(a).is_none()) {
            return Ok(None);
        }
        let mut tangents = Vec::with_capacity(node.arrays.len());
        for &a in node.arrays {
            tangents.push(match tangent(a) {
                Some(t) => t,
                None => {
                    let shape = e.shape(a);
                    e.zeros(&shape)?
                }
            });
        }
        e.structural(self, &tangents, node.ints).map(Some)
    }
}

impl fmt::Display for Structural {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Structural {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Structural::ALL.iter().copied().find(|op| op.name() == s).ok_or(())
    }
}

/// Helpers the op files share.
mod common {
    use super::{BatchEmit, Emit, Extent, Node, Problem, Structural};
    use crate::ir::error::Result;
    use egg::Id;

    /// `axis` checked against a rank.
    pub fn axis_in(axis: usize, rank: usize, operand: usize) -> std::result::Result<usize, Problem> {
        if axis < rank {
            Ok(axis)
        } else {
            Err(Problem::Axis { axis, operand })
        }
    }

    /// The fixed size of `dims[axis]`.
    pub fn size_of<D: Extent>(dims: &[D], axis: usize) -> std::result::Result<usize, Problem> {
        dims[axis].size().ok_or(Problem::Symbolic { axis })
    }

    /// The batching rule of an op of one array operand whose first integer
    /// operand is an axis of it: the same op on `vmap` of the operand, one
    /// axis further (the batch axis comes first); `None` for an unmapped operand.
    pub fn shift_axis(e: &mut dyn BatchEmit, op: Structural, node: &Node) -> Result<Option<Id>> {
        let a = node.arrays[0];
        if !e.mapped(a) {
            return Ok(None);
        }
        let batched = e.vmap(a)?;
        let mut ints = node.ints.to_vec();
        ints[0] += 1;
        e.structural(op, &[batched], &ints).map(Some)
    }

    /// `permute(value, 1, 0, 2, ..., rank - 1)`: swaps the two leading axes.
    pub fn swap_leading(e: &mut dyn Emit, value: Id, rank: usize) -> Result<Id> {
        let axes: Vec<usize> = [1, 0].into_iter().chain(2..rank).collect();
        e.structural(Structural::Permute, &[value], &axes)
    }

    /// The inverse of the permutation `axes`.
    pub fn inverse(axes: &[usize]) -> Vec<usize> {
        let mut inverse = vec![0; axes.len()];
        for (i, &p) in axes.iter().enumerate() {
            inverse[p] = i;
        }
        inverse
    }

    /// The label `name` followed by the integer operands.
    pub fn label_with(name: &str, ints: &[usize]) -> String {
        let mut text = name.to_string();
        for n in ints {
            text.push_str(&format!(" {n}"));
        }
        text
    }
}
