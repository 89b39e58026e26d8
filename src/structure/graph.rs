//! A batch of examples as calls of cells: each example is a DAG of calls
//! (a Tree-LSTM node, an LSTM step, a loss head), each call reading the
//! outputs of earlier calls, rows of the embedding matrix, or data (a label).
//! Written as one program (the calls inlined, the loss the mean of the
//! examples' losses) it runs in the interpreter and the general autobatcher;
//! the fast path ([`super::fast`]) runs the same calls level by level.

use crate::error::{Error, Result};
use crate::front::ProgramBuilder;
use crate::ir::Program;
use crate::runtime::{Tensor, Values};
use egg::Id;
use std::ops::Range;

/// The body of a cell: given the builder, its argument nodes and its param
/// nodes (in [`Cell::params`] order), builds its outputs.
pub type Body = fn(&mut ProgramBuilder, &[Id], &[Id]) -> Result<Vec<Id>>;

/// A cell: the `fn` whose calls are batched together.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Its name.
    pub name: &'static str,
    /// The shape of each argument (per example).
    pub args: Vec<Vec<usize>>,
    /// The params it reads, by name.
    pub params: Vec<&'static str>,
    /// How many outputs it has (a loss head has one scalar).
    pub outputs: usize,
    /// What it computes.
    pub body: Body,
}

/// A model: its params (the program's), its embedding matrix (looked up
/// outside the program, DyNet's lookup parameter: each looked-up row is an
/// input of the program, and its gradient is added back into the row), and
/// its cells.
#[derive(Clone, Debug)]
pub struct Model {
    /// Each param's name and shape.
    pub params: Vec<(&'static str, Vec<usize>)>,
    /// The embedding matrix's name and shape (rows, width).
    pub embedding: (&'static str, [usize; 2]),
    /// The cells, by index.
    pub cells: Vec<Cell>,
}

/// One argument of a call.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// Output `.1` of the earlier call `.0` (an index into the batch's calls).
    Call(usize, usize),
    /// Row of the embedding matrix.
    Lookup(usize),
    /// A per-example value (a one-hot label).
    Data(Vec<f64>),
}

/// One call of a cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The cell, by index into [`Model::cells`].
    pub cell: usize,
    /// Its arguments, one per [`Cell::args`].
    pub args: Vec<Arg>,
    /// A loss head's weight in the batch loss (its one output is a scalar loss).
    pub loss: Option<f64>,
}

/// A batch: every example's calls, example after example, each call after those it reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// The calls.
    pub calls: Vec<Call>,
    /// The calls of each example.
    pub examples: Vec<Range<usize>>,
}

impl Batch {
    /// Appends one example, given as its calls indexed from 0 (its loss heads' weight 1).
    pub fn push_example(&mut self, calls: Vec<Call>) {
        let start = self.calls.len();
        for mut call in calls {
            for arg in &mut call.args {
                if let Arg::Call(c, _) = arg {
                    *c += start;
                }
            }
            self.calls.push(call);
        }
        self.examples.push(start..self.calls.len());
    }

    /// Scales every loss head so that the batch loss is the mean of the examples' losses.
    pub fn mean_loss(mut self) -> Batch {
        let n = self.examples.len() as f64;
        for call in &mut self.calls {
            if let Some(w) = &mut call.loss {
                *w /= n;
            }
        }
        self
    }

    /// Example `e` alone, as a batch of one, its loss heads' weights 1.
    pub fn example(&self, e: usize) -> Batch {
        let range = self.examples[e].clone();
        let calls = self.calls[range.clone()]
            .iter()
            .cloned()
            .map(|mut call| {
                call.loss = call.loss.map(|_| 1.0);
                for arg in &mut call.args {
                    if let Arg::Call(c, _) = arg {
                        *c -= range.start;
                    }
                }
                call
            })
            .collect();
        let mut batch = Batch::default();
        batch.push_example(calls);
        batch
    }

    /// Checks the batch against the model: not empty, every call's cell and
    /// arguments fit it, every call reads only earlier calls' outputs.
    pub fn check(&self, model: &Model) -> Result<()> {
        if self.examples.is_empty() {
            return Err(Error::Values("empty batch: it has no examples".into()));
        }
        for (i, call) in self.calls.iter().enumerate() {
            let bad = |why: String| Err(Error::Values(format!("batch: call {i}: {why}")));
            let Some(cell) = model.cells.get(call.cell) else {
                return bad(format!("no cell {}", call.cell));
            };
            if call.args.len() != cell.args.len() {
                return bad(format!(
                    "{} takes {} arguments, given {}",
                    cell.name,
                    cell.args.len(),
                    call.args.len()
                ));
            }
            for (arg, dims) in call.args.iter().zip(&cell.args) {
                let fits = match arg {
                    Arg::Call(c, o) => *c < i && *o < model.cells[self.calls[*c].cell].outputs,
                    Arg::Lookup(row) => *row < model.embedding.1[0] && dims == &[model.embedding.1[1]],
                    Arg::Data(v) => v.len() == dims.iter().product::<usize>(),
                };
                if !fits {
                    return bad(format!("argument {arg:?} of {} does not fit", cell.name));
                }
            }
        }
        Ok(())
    }
}

/// The batch written as one program: each call's cell body inlined, each
/// looked-up row and each data argument an input of its own, and the loss
/// `out loss` the sum of the heads by their weights; with the values of the
/// inputs (the params' values are `params`'s).
pub fn batch_program(model: &Model, batch: &Batch, params: &Values<f64>) -> Result<(Program, Values<f64>)> {
    batch.check(model)?;
    let mut b = ProgramBuilder::new();
    let mut param_ids = std::collections::HashMap::new();
    for (name, dims) in &model.params {
        param_ids.insert(*name, b.param(name, dims)?);
    }
    let mut values: Values<f64> = Values::new();
    let (mut outputs, mut heads): (Vec<Vec<Id>>, Vec<(Id, f64)>) = (vec![], vec![]);
    let table = params
        .get(model.embedding.0)
        .ok_or_else(|| Error::Values(format!("no value for the embedding matrix `{}`", model.embedding.0)))?;
    for (i, call) in batch.calls.iter().enumerate() {
        let cell = &model.cells[call.cell];
        let mut args = Vec::with_capacity(call.args.len());
        for (k, (arg, dims)) in call.args.iter().zip(&cell.args).enumerate() {
            let id = match arg {
                Arg::Call(c, o) => outputs[*c][*o],
                Arg::Lookup(row) => {
                    let name = format!("x{i}_{k}");
                    values.insert(name.clone(), table.index_axis(ndarray::Axis(0), *row).to_owned());
                    b.input(&name, dims)?
                }
                Arg::Data(v) => {
                    let name = format!("d{i}_{k}");
                    values.insert(
                        name.clone(),
                        Tensor::from_shape_vec(ndarray::IxDyn(dims), v.clone())
                            .map_err(|e| Error::Values(e.to_string()))?,
                    );
                    b.input(&name, dims)?
                }
            };
            args.push(id);
        }
        let ps: Vec<Id> = cell.params.iter().map(|p| param_ids[p]).collect();
        let outs = (cell.body)(&mut b, &args, &ps)?;
        if let Some(w) = call.loss {
            heads.push((outs[0], w));
        }
        outputs.push(outs);
    }
    let mut loss: Option<Id> = None;
    for (head, w) in heads {
        let w = b.num(w);
        let term = b.mul(head, w)?;
        loss = Some(match loss {
            Some(sum) => b.add(sum, term)?,
            None => term,
        });
    }
    let loss = loss.ok_or_else(|| Error::Values("batch: no loss head".into()))?;
    b.output("loss", loss)?;
    let program = b.finish()?;
    for (name, _) in &model.params {
        values.insert(name.to_string(), params[*name].clone());
    }
    Ok((program, values))
}

/// The embedding matrix's gradient from a batch program's input gradients:
/// each looked-up row's gradient added into its row.
pub fn lookup_gradient(model: &Model, batch: &Batch, grads: &[(String, Tensor<f64>)]) -> Tensor<f64> {
    let [rows, width] = model.embedding.1;
    let mut table = Tensor::zeros(ndarray::IxDyn(&[rows, width]));
    let by_name: std::collections::HashMap<&str, &Tensor<f64>> = grads.iter().map(|(n, g)| (n.as_str(), g)).collect();
    for (i, call) in batch.calls.iter().enumerate() {
        for (k, arg) in call.args.iter().enumerate() {
            if let (Arg::Lookup(row), Some(g)) = (arg, by_name.get(format!("x{i}_{k}").as_str())) {
                let mut target = table.index_axis_mut(ndarray::Axis(0), *row);
                target += *g;
            }
        }
    }
    table
}
