//! Every op to ONNX nodes: an exhaustive `match` over [`Op`] and over the
//! unary, binary and reduce tables, so a new op or table entry does not
//! compile until it is given an ONNX form; a structural op's form is in its
//! op file (`StructuralOp::onnx`). `docs/onnx.md` has the same mapping as a table.

use super::proto::{attribute_proto::AttributeType, tensor_proto::DataType};
use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto};
use super::Dtype;
use crate::error::{Error, Result};
use crate::ir::structural::{OnnxAttr, OnnxInput, Structural};
use crate::ir::{Binary, Op, Program, Reduce, Unary};
use egg::{Id, Language};
use std::collections::{HashMap, HashSet};

/// The ONNX op of a broadcasting binary op (ONNX broadcasts as numpy does).
fn binary_op(b: Binary) -> &'static str {
    match b {
        Binary::Add => "Add",
        Binary::Sub => "Sub",
        Binary::Mul => "Mul",
        Binary::Div => "Div",
        Binary::Pow => "Pow",
    }
}

/// The ONNX op of a reduction (opset 18: axes are an input; none means all axes).
fn reduce_op(r: Reduce) -> &'static str {
    match r {
        Reduce::Sum => "ReduceSum",
        Reduce::Mean => "ReduceMean",
        Reduce::Max => "ReduceMax",
        Reduce::Min => "ReduceMin",
    }
}

/// The error for a loop node that has no ONNX form: `chunks` and its `rows`
/// (a `map` is an ONNX `Loop`, and its `row` is emitted inside it).
pub fn loop_refused(node: &Op) -> Error {
    Error::ExportUnsupported {
        op: node.to_string(),
        dtype: None,
        reason: format!(
            "`{node}` is part of a `chunks` or `accumulate` loop (micro-batches), whose row count is fixed: \
             it exports with a fixed batch (an ONNX Loop), not with a symbolic one"
        ),
    }
}

/// The error for the batcher's spec node, which has no value to export.
pub fn vmap_refused() -> Error {
    Error::ExportUnsupported {
        op: "vmap".into(),
        dtype: None,
        reason: "vmap is the batcher's spec node and cannot be exported".into(),
    }
}

/// A value's name and type: `dims` fixed sizes, or `None` for a shape left to inference.
fn value_info(name: &str, elem_type: DataType, dims: Option<&[i64]>) -> ValueInfoProto {
    use super::proto::{tensor_shape_proto::dimension::Value, tensor_shape_proto::Dimension, type_proto};
    let shape = dims.map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| Dimension {
                value: Some(Value::DimValue(d)),
                ..Default::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn attr_ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    }
}

/// Builds the ONNX graph's nodes and initializers, one program node at a time.
pub struct Emitter<'p> {
    program: &'p Program,
    dtype: Dtype,
    graph: GraphProto,
    /// The ONNX value name of each program node (empty for a literal used only as an axis, row or count).
    names: Vec<String>,
    /// Whether each node is used as data (not only as an integer operand), or is an output.
    data_use: Vec<bool>,
    taken: HashSet<String>,
    int_constants: HashMap<(bool, Vec<i64>), String>,
    next: usize,
    /// Inside a loop's body: the name of the iteration number.
    iteration: Option<String>,
    /// Inside a `chunks` or `accumulate` body: its chunk size and rows.
    chunk: Option<(usize, usize)>,
}

impl<'p> Emitter<'p> {
    /// An emitter for `program` with values of `dtype`.
    pub fn new(program: &'p Program, dtype: Dtype) -> Self {
        let mut data_use = vec![false; program.expr.len()];
        for node in program.expr.as_ref() {
            for (position, &c) in node.children().iter().enumerate() {
                data_use[usize::from(c)] |= !node.integer_operand(position);
            }
        }
        for (_, id) in &program.outputs {
            data_use[usize::from(*id)] = true;
        }
        let declared = program.inputs.iter().chain(&program.params).map(|d| d.name.clone());
        let taken = declared.chain(program.outputs.iter().map(|o| o.0.clone())).collect();
        Emitter {
            program,
            dtype,
            graph: GraphProto {
                name: Some("batchgraph".into()),
                ..Default::default()
            },
            names: Vec::with_capacity(program.expr.len()),
            data_use,
            taken,
            int_constants: HashMap::new(),
            next: 0,
            iteration: None,
            chunk: None,
        }
    }

    fn fresh(&mut self) -> String {
        loop {
            let name = format!("t{}", self.next);
            self.next += 1;
            if self.taken.insert(name.clone()) {
                return name;
            }
        }
    }

    fn value(&self, id: Id) -> String {
        self.names[usize::from(id)].clone()
    }

    fn integer(&self, id: Id) -> i64 {
        self.program
            .literal(id)
            .expect("shape inference checked integer operands") as i64
    }

    /// A node of `op_type` with one output, named `output` or a fresh name.
    fn node_named(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        attributes: Vec<AttributeProto>,
        output: Option<String>,
    ) -> String {
        let output = output.unwrap_or_else(|| self.fresh());
        self.graph.node.push(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: Some(output.clone()),
            op_type: Some(op_type.into()),
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    fn node(&mut self, op_type: &str, inputs: Vec<String>, attributes: Vec<AttributeProto>) -> String {
        self.node_named(op_type, inputs, attributes, None)
    }

    /// An int64 initializer (a 1-D tensor, or a scalar if `scalar`), shared between uses.
    fn ints(&mut self, values: Vec<i64>, scalar: bool) -> String {
        if let Some(name) = self.int_constants.get(&(scalar, values.clone())) {
            return name.clone();
        }
        let name = self.fresh();
        self.graph.initializer.push(TensorProto {
            dims: if scalar { vec![] } else { vec![values.len() as i64] },
            data_type: Some(DataType::Int64 as i32),
            int64_data: values.clone(),
            name: Some(name.clone()),
            ..Default::default()
        });
        self.int_constants.insert((scalar, values), name.clone());
        name
    }

    /// A scalar initializer of the model's element type.
    fn literal(&mut self, value: f64) -> String {
        let name = self.fresh();
        let mut tensor = TensorProto {
            data_type: Some(self.dtype.onnx() as i32),
            name: Some(name.clone()),
            ..Default::default()
        };
        match self.dtype {
            Dtype::F32 => tensor.float_data = vec![value as f32],
            Dtype::F64 => tensor.double_data = vec![value],
        }
        self.graph.initializer.push(tensor);
        name
    }

    /// `a @ b`. A matrix (or stack of them) times a vector is written as a matrix
    /// times a one-column matrix, squeezed after: ONNX Runtime 1.32's
    /// `MatMulTransposeFusion` (on by default) computes `Transpose(A) @ v` wrongly
    /// when `v` is 1-D (`tests/onnx.rs` catches it on `reference/matmul_ranks`).
    fn matmul(&mut self, a: Id, b: Id) -> String {
        let (left, right) = (self.value(a), self.value(b));
        if self.program.shape(b).rank() != 1 || self.program.shape(a).rank() < 2 {
            return self.node("MatMul", vec![left, right], vec![]);
        }
        let last = self.ints(vec![-1], false);
        let column = self.node("Unsqueeze", vec![right, last.clone()], vec![]);
        let product = self.node("MatMul", vec![left, column], vec![]);
        self.node("Squeeze", vec![product, last], vec![])
    }

    /// `softplus(a)` as `eval` computes it, `max(a, 0) + log1p(exp(-|a|))`:
    /// ONNX Runtime's Softplus overflows in f64 from 710 on (exp of the input).
    /// ONNX has no log1p: `log(w) * u / (w - 1)` with `w = 1 + u` is exact to
    /// rounding (Goldberg's trick), and `u` itself where `w` rounds to 1.
    fn softplus(&mut self, a: Id) -> String {
        let x = self.value(a);
        let positive = self.node("Relu", vec![x.clone()], vec![]);
        let magnitude = self.node("Abs", vec![x], vec![]);
        let negative = self.node("Neg", vec![magnitude], vec![]);
        let u = self.node("Exp", vec![negative], vec![]);
        let one = self.literal(1.0);
        let w = self.node("Add", vec![one.clone(), u.clone()], vec![]);
        let d = self.node("Sub", vec![w.clone(), one], vec![]);
        let log = self.node("Log", vec![w], vec![]);
        let scaled = self.node("Mul", vec![log, u.clone()], vec![]);
        let ratio = self.node("Div", vec![scaled, d.clone()], vec![]);
        let zero = self.literal(0.0);
        let rounds_to_one = self.node("Equal", vec![d, zero], vec![]);
        let log1p = self.node("Where", vec![rounds_to_one, u, ratio], vec![]);
        self.node("Add", vec![positive, log1p], vec![])
    }

    /// `sigmoid(a)` as `1 / (1 + exp(-a))`: ONNX Runtime's f32 Sigmoid flushes
    /// values under about 1e-8 to 0 (sigmoid(-20) is 2.1e-9 in `eval`).
    fn sigmoid(&mut self, a: Id) -> String {
        let x = self.value(a);
        let negative = self.node("Neg", vec![x], vec![]);
        let exp = self.node("Exp", vec![negative], vec![]);
        let one = self.literal(1.0);
        let sum = self.node("Add", vec![one, exp], vec![]);
        self.node("Reciprocal", vec![sum], vec![])
    }

    /// A reduction over all axes, or over axis `k`. Max and min propagate a
    /// NaN, as `eval` does: ONNX Runtime's ReduceMax and ReduceMin ignore one
    /// that is not first, so the sum of the NaNs (0 when there are none: NaN
    /// where the input is NaN, 0 elsewhere) is added.
    fn reduce(&mut self, r: Reduce, a: Id, k: Option<Id>) -> String {
        let x = self.value(a);
        let axes: Vec<String> = k.map(|k| self.ints(vec![self.integer(k)], false)).into_iter().collect();
        let keepdims = vec![attr_int("keepdims", 0)];
        let reduced = self.node(reduce_op(r), [vec![x.clone()], axes.clone()].concat(), keepdims.clone());
        match r {
            Reduce::Sum | Reduce::Mean => reduced,
            Reduce::Max | Reduce::Min => {
                let is_nan = self.node("IsNaN", vec![x.clone()], vec![]);
                let zero = self.literal(0.0);
                let nans = self.node("Where", vec![is_nan, x, zero], vec![]);
                let any = self.node("ReduceSum", [vec![nans], axes].concat(), keepdims);
                self.node("Add", vec![reduced, any], vec![])
            }
        }
    }

    /// The structural op `s` of `children` from its op file's ONNX form.
    fn structural(&mut self, s: Structural, children: &[Id]) -> String {
        let arrays = s.arrays_of(children.len()).expect("shape inference checked the arity");
        let ints: Vec<usize> = children[arrays..].iter().map(|&c| self.integer(c) as usize).collect();
        let ranks: Vec<usize> = children[..arrays]
            .iter()
            .map(|&c| self.program.shape(c).rank())
            .collect();
        let mut outputs: Vec<String> = vec![];
        for node in s.onnx(&ints, &ranks) {
            let inputs = node
                .inputs
                .iter()
                .map(|input| match input {
                    OnnxInput::Operand(i) => self.value(children[*i]),
                    OnnxInput::Node(i) => outputs[*i].clone(),
                    OnnxInput::Ints(values) => self.ints(values.clone(), false),
                    OnnxInput::Int(value) => self.ints(vec![*value], true),
                })
                .collect();
            let attrs = node
                .attrs
                .iter()
                .map(|(name, value)| match value {
                    OnnxAttr::Int(v) => attr_int(name, *v),
                    OnnxAttr::Ints(v) => attr_ints(name, v.clone()),
                })
                .collect();
            outputs.push(self.node(node.op_type, inputs, attrs));
        }
        outputs.pop().expect("an ONNX form has a node")
    }

    /// Emits node `id` (its children are emitted already). A node that runs once
    /// per row of a loop is emitted inside the loop's body, when its `map` is.
    pub fn emit(&mut self, id: Id, node: &Op) -> Result<()> {
        let name = match self.program.loops().per_row[usize::from(id)] {
            true => String::new(),
            false => self.op_value(id, node)?,
        };
        self.names.push(name);
        Ok(())
    }

    /// The ONNX nodes of one program node; returns the name of its value.
    fn op_value(&mut self, id: Id, node: &Op) -> Result<String> {
        Ok(match node {
            Op::Var(v) => v.to_string(),
            Op::Num(n) if self.dtype == Dtype::F32 && n.0.is_finite() && !(n.0 as f32).is_finite() => {
                return Err(Error::ExportUnsupported {
                    op: format!("the literal {n}"),
                    dtype: Some("f32"),
                    reason: format!(
                        "the literal {n} is too large for f32 (largest {:e}); export with --dtype f64",
                        f32::MAX
                    ),
                })
            }
            Op::Num(n) if self.data_use[usize::from(id)] => self.literal(n.0),
            Op::Num(_) => String::new(),
            Op::Unary(Unary::Step, a) => {
                let zero = self.literal(0.0);
                let positive = self.node(Unary::Step.onnx_op(), vec![self.value(*a), zero], vec![]);
                self.node("Cast", vec![positive], vec![attr_int("to", self.dtype.onnx() as i64)])
            }
            Op::Unary(u, _) if self.dtype == Dtype::F64 && !u.onnx_has_double() => {
                return Err(Error::ExportUnsupported {
                    op: u.to_string(),
                    dtype: Some("f64"),
                    reason: format!(
                        "`{u}` has no double kernel in ONNX Runtime (ONNX {} is float only there); export with --dtype f32",
                        u.onnx_op()
                    ),
                })
            }
            Op::Unary(Unary::Softplus, a) => self.softplus(*a),
            Op::Unary(Unary::Sigmoid, a) => self.sigmoid(*a),
            Op::Unary(u, a) => self.node(u.onnx_op(), vec![self.value(*a)], vec![]),
            Op::Binary(b, [l, r]) => self.node(binary_op(*b), vec![self.value(*l), self.value(*r)], vec![]),
            Op::Reduce(r, a) => self.reduce(*r, *a, None),
            Op::ReduceAxis(r, [a, k]) => self.reduce(*r, *a, Some(*k)),
            Op::MatMul([a, b]) => self.matmul(*a, *b),
            Op::Structural(s, children) => self.structural(*s, children),
            Op::Vmap(_) => return Err(vmap_refused()),
            Op::Map(_) => self.map_loop(id)?,
            Op::Row(y) => match self.iteration.clone() {
                Some(iteration) => self.node("Gather", vec![self.value(*y), iteration], vec![attr_int("axis", 0)]),
                None => return Err(loop_refused(node)),
            },
            Op::Chunks(_) | Op::Accumulate(_) => self.chunk_loop(id)?,
            Op::Rows([y, _]) => match (self.iteration.clone(), self.chunk) {
                (Some(iteration), Some((k, n))) => self.chunk_rows(*y, iteration, k, n),
                _ => return Err(loop_refused(node)),
            },
        })
    }

    /// `rows(y, k)` in iteration `iteration` of a loop over `n` rows:
    /// `Slice(y, i k, min(i k + k, n))` along axis 0 (the last chunk may be shorter).
    fn chunk_rows(&mut self, y: Id, iteration: String, k: usize, n: usize) -> String {
        let k_value = self.ints(vec![k as i64], true);
        let start = self.node("Mul", vec![iteration, k_value.clone()], vec![]);
        let past = self.node("Add", vec![start.clone(), k_value], vec![]);
        let n_value = self.ints(vec![n as i64], true);
        let end = self.node("Min", vec![past, n_value], vec![]);
        let one = self.ints(vec![1], false);
        let starts = self.node("Reshape", vec![start, one.clone()], vec![]);
        let ends = self.node("Reshape", vec![end, one], vec![]);
        let axes = self.ints(vec![0], false);
        self.node("Slice", vec![self.value(y), starts, ends, axes], vec![])
    }

    /// `chunks(body, n, k)` and `accumulate(body, n, k)` as an ONNX `Loop` of
    /// `ceil(n / k)` trips with one carried value: the chunks' results
    /// concatenated (from an empty one) or summed (from zeros), so that a
    /// shorter last chunk needs no padding.
    fn chunk_loop(&mut self, id: Id) -> Result<String> {
        let program = self.program;
        let body = program.loops().bodies[usize::from(id)]
            .clone()
            .expect("a loop has a body");
        let k = body.chunk.expect("chunks and accumulate have a chunk size");
        let trips = self.ints(vec![body.iterations() as i64], true);
        let mut start_dims: Vec<i64> = program.shape(id).dims().iter().map(|&d| d as i64).collect();
        if !body.sums {
            start_dims[0] = 0;
        }
        let zero = self.literal(0.0);
        let start_shape = self.ints(start_dims, false);
        let start = self.node("Expand", vec![zero, start_shape], vec![]);

        let outer_graph = std::mem::take(&mut self.graph);
        let outer_constants = std::mem::take(&mut self.int_constants);
        let (iteration, cond_in, carried_in) = (self.fresh(), self.fresh(), self.fresh());
        self.iteration = Some(iteration.clone());
        self.chunk = Some((k, body.rows));
        for &n in &body.nodes {
            self.names[n] = self.op_value(Id::from(n), &program.expr[Id::from(n)])?;
        }
        let result = self.names[*body.nodes.last().expect("a body has nodes")].clone();
        let carried_out = match body.sums {
            true => self.node("Add", vec![carried_in.clone(), result], vec![]),
            false => self.node("Concat", vec![carried_in.clone(), result], vec![attr_int("axis", 0)]),
        };
        let cond_out = self.node("Identity", vec![cond_in.clone()], vec![]);
        for &n in &body.nodes {
            self.names[n] = String::new();
        }
        (self.iteration, self.chunk) = (None, None);
        self.int_constants = outer_constants;
        let mut graph = std::mem::replace(&mut self.graph, outer_graph);
        graph.name = Some(format!("chunks{}", usize::from(id)));
        graph.input = vec![
            value_info(&iteration, DataType::Int64, Some(&[])),
            value_info(&cond_in, DataType::Bool, Some(&[])),
            value_info(&carried_in, self.dtype.onnx(), None),
        ];
        graph.output = vec![
            value_info(&cond_out, DataType::Bool, Some(&[])),
            value_info(&carried_out, self.dtype.onnx(), None),
        ];
        let body_attribute = AttributeProto {
            name: Some("body".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(graph),
            ..Default::default()
        };
        Ok(self.node("Loop", vec![trips, String::new(), start], vec![body_attribute]))
    }

    /// `map(body, n)` as an ONNX `Loop` whose body graph holds the per-row nodes
    /// (values computed once are read from the outer graph), `row(y)` as
    /// `Gather(y, iteration)`, and whose scan output stacks the rows. The trip
    /// count is read from `y` at run time, so a symbolic `B` stays symbolic.
    fn map_loop(&mut self, id: Id) -> Result<String> {
        let program = self.program;
        let body = program.loops().bodies[usize::from(id)]
            .clone()
            .expect("a map has a body");
        let rows_of = body.nodes.iter().find_map(|&n| match program.expr[Id::from(n)] {
            Op::Row(y) => Some(y),
            _ => None,
        });
        let rows_of = rows_of.expect("a map's body reads a row");
        let shape = self.node("Shape", vec![self.value(rows_of)], vec![]);
        let first = self.ints(vec![0], true);
        let trips = self.node("Gather", vec![shape, first], vec![attr_int("axis", 0)]);

        let outer_graph = std::mem::take(&mut self.graph);
        let outer_constants = std::mem::take(&mut self.int_constants);
        let (iteration, cond_in) = (self.fresh(), self.fresh());
        self.iteration = Some(iteration.clone());
        for &n in &body.nodes {
            self.names[n] = self.op_value(Id::from(n), &program.expr[Id::from(n)])?;
        }
        let result = self.names[*body.nodes.last().expect("a body has nodes")].clone();
        let cond_out = self.node("Identity", vec![cond_in.clone()], vec![]);
        for &n in &body.nodes {
            self.names[n] = String::new();
        }
        self.iteration = None;
        self.int_constants = outer_constants;
        let mut graph = std::mem::replace(&mut self.graph, outer_graph);
        graph.name = Some(format!("map{}", usize::from(id)));
        graph.input = vec![
            value_info(&iteration, DataType::Int64, Some(&[])),
            value_info(&cond_in, DataType::Bool, Some(&[])),
        ];
        graph.output = vec![
            value_info(&cond_out, DataType::Bool, Some(&[])),
            value_info(&result, self.dtype.onnx(), None),
        ];
        let body_attribute = AttributeProto {
            name: Some("body".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(graph),
            ..Default::default()
        };
        Ok(self.node("Loop", vec![trips, String::new()], vec![body_attribute]))
    }

    /// The graph, with one `Identity` node per output that names it as declared.
    pub fn finish(mut self) -> Result<GraphProto> {
        for (name, id) in &self.program.outputs {
            if self
                .program
                .inputs
                .iter()
                .chain(&self.program.params)
                .any(|d| &d.name == name)
            {
                return Err(Error::ExportUnsupported {
                    op: format!("output {name}"),
                    dtype: None,
                    reason: format!("output `{name}` has the name of an input or param; ONNX needs distinct names"),
                });
            }
            let value = self.value(*id);
            self.node_named("Identity", vec![value], vec![], Some(name.clone()));
        }
        Ok(self.graph)
    }
}
