//! The fast path: TensorFlow Fold's dynamic batching with cells batched by
//! the e-graph. Each cell's calls are a vmap of its body, so the body is
//! batched once by the [`Batcher`] (`--strategy fuse`: a shared W times
//! stacked vectors is one GEMM) and cached: a forward program (outputs
//! stacked) and a vector-Jacobian program (`v = sum(out * g)` over the
//! outputs, summed over the rows, so its gradient is the rows' VJPs and the
//! params' summed gradient). A batched program whose nodes do not depend on
//! the row count (checked by batching at 2 and at 3 rows and comparing) is
//! re-declared at any row count with no further rewriting; otherwise it is
//! batched once per row count met.
//!
//! Per batch the work is linear in the calls: each call's level is one more
//! than the deepest call it reads (Fold's depth), the calls of one cell at one
//! level run as one batched program, their arguments gathered into stacked
//! rows and their outputs scattered back; the backward sweep goes down the
//! levels, gathering cotangents and scattering the VJPs (a looked-up row's
//! into the embedding's gradient). The plan (levels and members) is cached by
//! the batch's structure, so a batch whose structure repeats reuses it.

use super::graph::{Arg, Batch, Cell, Model};
use crate::egraph::{kernel_bound, BatchReduce, Batcher, Strategy};
use crate::error::{Error, Result};
use crate::front::ProgramBuilder;
use crate::ir::{Decl, Program, Shape};
use crate::runtime::{Interpreter, Tensor, Values};
use egg::Id;
use ndarray::{Axis, IxDyn};
use std::collections::HashMap;
use std::rc::Rc;

/// One cell's batched programs, at one row count.
#[derive(Clone, Debug)]
struct Batched {
    forward: Program,
    vjp: Program,
    /// Kernels the forward program runs.
    kernels: usize,
}

/// One cell, compiled: its batched programs at 2 rows (the template) and
/// whether they hold at any row count.
#[derive(Clone, Debug)]
struct Compiled {
    template: Batched,
    generic: bool,
    output_shapes: Vec<Shape>,
    by_rows: HashMap<usize, Rc<Batched>>,
}

/// The calls of one cell at one level.
#[derive(Clone, Debug)]
pub struct Group {
    /// The cell.
    pub cell: usize,
    /// The calls, in batch order.
    pub calls: Vec<usize>,
}

/// A batch's schedule: groups level by level (levels in order).
#[derive(Clone, Debug)]
pub struct Plan {
    /// Each level's groups.
    pub levels: Vec<Vec<Group>>,
}

/// What one forward and backward run of a batch gave.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The batch loss.
    pub loss: f64,
    /// The gradient of every param and of the embedding matrix, by name.
    pub grads: Values<f64>,
    /// Kernels the forward sweep ran (each batched program's, per level).
    pub kernels: usize,
    /// Batched cell programs run forward (one per cell per level).
    pub launches: usize,
}

/// A model compiled for the fast path, with its plan cache.
#[derive(Debug)]
pub struct FastPath {
    model: Model,
    cells: Vec<Compiled>,
    plans: HashMap<Vec<u64>, Rc<Plan>>,
    /// Plans looked up and found.
    pub plan_hits: usize,
    /// Plans looked up and made.
    pub plan_misses: usize,
}

fn arg_name(k: usize) -> String {
    format!("a{k}")
}

fn cot_name(k: usize) -> String {
    format!("g{k}")
}

/// The per-example program of `cell` (arguments `a0..`, outputs `o0..`), and
/// with `vjp`, its vector-Jacobian product `v = sum(o0 * g0) + ...` instead.
fn cell_program(model: &Model, cell: &Cell, vjp: bool) -> Result<Program> {
    let mut b = ProgramBuilder::new();
    let mut args = vec![];
    for (k, dims) in cell.args.iter().enumerate() {
        args.push(b.input(&arg_name(k), dims)?);
    }
    let mut params = vec![];
    for p in &cell.params {
        let dims = &model
            .params
            .iter()
            .find(|(n, _)| n == p)
            .ok_or_else(|| Error::Values(format!("cell {}: no param `{p}`", cell.name)))?
            .1;
        params.push(b.param(p, dims)?);
    }
    let outs = (cell.body)(&mut b, &args, &params)?;
    if !vjp {
        for (k, &o) in outs.iter().enumerate() {
            b.output(&format!("o{k}"), o)?;
        }
        return b.finish();
    }
    let mut v: Option<Id> = None;
    for (k, &o) in outs.iter().enumerate() {
        let dims = b.shape(o).dims().to_vec();
        let g = b.input(&cot_name(k), &dims)?;
        let og = b.mul(o, g)?;
        let term = b.sum(og)?;
        v = Some(match v {
            Some(v) => b.add(v, term)?,
            None => term,
        });
    }
    b.output(
        "v",
        v.ok_or_else(|| Error::Values(format!("cell {} has no output", cell.name)))?,
    )?;
    b.finish()
}

/// `program` batched over its inputs at `rows` rows by the e-graph.
fn batch_cell(program: &Program, rows: usize, reduce: BatchReduce) -> Result<Program> {
    let over: Vec<String> = program.inputs.iter().map(|d| d.name.clone()).collect();
    Ok(Batcher::new(program)
        .over(over)
        .size(rows)
        .strategy(Strategy::Fuse)
        .reduce(reduce)
        .run()?
        .program)
}

fn batch_both(model: &Model, cell: &Cell, rows: usize) -> Result<Batched> {
    let forward = batch_cell(&cell_program(model, cell, false)?, rows, BatchReduce::None)?;
    let vjp = batch_cell(&cell_program(model, cell, true)?, rows, BatchReduce::Sum)?;
    Ok(Batched {
        kernels: kernel_bound(&forward).0,
        forward,
        vjp,
    })
}

/// `program` (batched at some row count) declared at `rows` rows.
fn at_rows(program: &Program, rows: usize) -> Result<Program> {
    let inputs = program
        .inputs
        .iter()
        .map(|d| {
            let mut dims = d.shape.dims().to_vec();
            dims[0] = rows;
            Decl {
                name: d.name.clone(),
                shape: Shape(dims),
            }
        })
        .collect();
    Ok(Program::new(
        inputs,
        program.params.clone(),
        program.expr.clone(),
        program.outputs.clone(),
        vec![],
    )?)
}

impl FastPath {
    /// Compiles every cell of `model` once (batched by the e-graph).
    pub fn new(model: &Model) -> Result<FastPath> {
        let mut cells = vec![];
        for cell in &model.cells {
            let template = batch_both(model, cell, 2)?;
            let three = batch_both(model, cell, 3)?;
            let generic = template.forward.expr == three.forward.expr && template.vjp.expr == three.vjp.expr;
            let example = cell_program(model, cell, false)?;
            let output_shapes = example
                .outputs
                .iter()
                .map(|(_, id)| example.shape(*id).clone())
                .collect();
            cells.push(Compiled {
                template,
                generic,
                output_shapes,
                by_rows: HashMap::new(),
            });
        }
        Ok(FastPath {
            model: model.clone(),
            cells,
            plans: HashMap::new(),
            plan_hits: 0,
            plan_misses: 0,
        })
    }

    /// Whether every cell's batched programs hold at any row count (compiled once, re-declared per level).
    pub fn generic(&self) -> bool {
        self.cells.iter().all(|c| c.generic)
    }

    /// Cell `cell`'s batched programs at `rows` rows, from the cache.
    fn batched(&mut self, cell: usize, rows: usize) -> Result<Rc<Batched>> {
        if let Some(b) = self.cells[cell].by_rows.get(&rows) {
            return Ok(b.clone());
        }
        let compiled = &self.cells[cell];
        let b = match compiled.generic {
            true => Batched {
                forward: at_rows(&compiled.template.forward, rows)?,
                vjp: at_rows(&compiled.template.vjp, rows)?,
                kernels: compiled.template.kernels,
            },
            false => batch_both(&self.model, &self.model.cells[cell], rows)?,
        };
        let b = Rc::new(b);
        self.cells[cell].by_rows.insert(rows, b.clone());
        Ok(b)
    }

    /// The batch's plan: from the cache when a batch of the same structure was seen.
    pub fn plan(&mut self, batch: &Batch) -> Result<Rc<Plan>> {
        batch.check(&self.model)?;
        let key = structure_key(batch);
        if let Some(plan) = self.plans.get(&key) {
            self.plan_hits += 1;
            return Ok(plan.clone());
        }
        self.plan_misses += 1;
        let plan = Rc::new(make_plan(batch, self.model.cells.len()));
        self.plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// Runs `batch` forward and backward with `params` (the model's params and
    /// its embedding matrix): the loss and every gradient.
    pub fn run(&mut self, batch: &Batch, plan: &Plan, params: &Values<f64>) -> Result<Outcome> {
        let table = params
            .get(self.model.embedding.0)
            .ok_or_else(|| Error::Values(format!("no value for `{}`", self.model.embedding.0)))?;
        let mut values: Vec<Values<f64>> = self
            .model
            .cells
            .iter()
            .map(|cell| {
                cell.params
                    .iter()
                    .map(|p| (p.to_string(), params[*p].clone()))
                    .collect()
            })
            .collect();
        let mut outs: Vec<Vec<Tensor<f64>>> = vec![vec![]; batch.calls.len()];
        let (mut loss, mut kernels, mut launches) = (0.0, 0, 0);
        let mut gathered: Vec<Vec<Tensor<f64>>> = vec![];
        for group in plan.levels.iter().flatten() {
            let b = self.batched(group.cell, group.calls.len())?;
            let cell = &self.model.cells[group.cell];
            let args: Vec<Tensor<f64>> = (0..cell.args.len())
                .map(|k| gather_arg(batch, &group.calls, k, &cell.args[k], &outs, table))
                .collect();
            let v = &mut values[group.cell];
            for (k, a) in args.into_iter().enumerate() {
                v.insert(arg_name(k), a);
            }
            let evaluation = Interpreter::new(&b.forward).evaluate(v)?;
            // The arguments, kept for the backward sweep (moved, not copied).
            let args: Vec<Tensor<f64>> = (0..cell.args.len())
                .map(|k| v.remove(&arg_name(k)).expect("inserted above"))
                .collect();
            for (o, (_, stacked)) in evaluation.outputs.into_iter().enumerate() {
                for (j, &c) in group.calls.iter().enumerate() {
                    let row = stacked.index_axis(Axis(0), j).to_owned();
                    if let (0, Some(w)) = (o, batch.calls[c].loss) {
                        loss += w * row.sum();
                    }
                    outs[c].push(row);
                }
            }
            kernels += b.kernels;
            launches += 1;
            gathered.push(args);
        }
        let grads = self.backward(batch, plan, params, &outs, gathered, values)?;
        Ok(Outcome {
            loss,
            grads,
            kernels,
            launches,
        })
    }

    fn backward(
        &mut self,
        batch: &Batch,
        plan: &Plan,
        params: &Values<f64>,
        outs: &[Vec<Tensor<f64>>],
        mut gathered: Vec<Vec<Tensor<f64>>>,
        mut values: Vec<Values<f64>>,
    ) -> Result<Values<f64>> {
        let mut cots: Vec<Vec<Option<Tensor<f64>>>> = outs.iter().map(|o| vec![None; o.len()]).collect();
        for (c, call) in batch.calls.iter().enumerate() {
            if let Some(w) = call.loss {
                cots[c][0] = Some(Tensor::from_elem(outs[c][0].raw_dim(), w));
            }
        }
        let mut grads: Values<f64> = self
            .model
            .params
            .iter()
            .map(|(n, _)| (n.to_string(), Tensor::zeros(params[*n].raw_dim())))
            .collect();
        let table = self.model.embedding.0;
        let mut table_grad = Tensor::zeros(params[table].raw_dim());
        let groups: Vec<&Group> = plan.levels.iter().flatten().collect();
        for (gi, group) in groups.iter().enumerate().rev() {
            let args = gathered.pop().expect("one gathered set per group");
            debug_assert_eq!(gathered.len(), gi);
            if group.calls.iter().all(|&c| cots[c].iter().all(Option::is_none)) {
                continue;
            }
            let b = self.batched(group.cell, group.calls.len())?;
            let cell = &self.model.cells[group.cell];
            let v = &mut values[group.cell];
            for (k, a) in args.into_iter().enumerate() {
                v.insert(arg_name(k), a);
            }
            for (o, shape) in self.cells[group.cell].output_shapes.iter().enumerate() {
                v.insert(cot_name(o), gather_cotangent(&group.calls, o, shape, &cots));
            }
            let wrt: Vec<String> = (0..cell.args.len())
                .filter(|&k| !matches!(batch.calls[group.calls[0]].args[k], Arg::Data(_)))
                .map(arg_name)
                .chain(cell.params.iter().map(|p| p.to_string()))
                .collect();
            let gradient = Interpreter::new(&b.vjp).with_respect_to(wrt).gradient(v)?;
            for (name, g) in gradient.grads {
                if let Some(total) = grads.get_mut(&name) {
                    *total += &g;
                    continue;
                }
                let Some(k) = name.strip_prefix('a').and_then(|k| k.parse::<usize>().ok()) else {
                    continue;
                };
                for (j, &c) in group.calls.iter().enumerate() {
                    let row = g.index_axis(Axis(0), j);
                    match &batch.calls[c].args[k] {
                        Arg::Call(p, o) => match &mut cots[*p][*o] {
                            Some(t) => *t += &row,
                            slot @ None => *slot = Some(row.to_owned()),
                        },
                        Arg::Lookup(r) => {
                            let mut target = table_grad.index_axis_mut(Axis(0), *r);
                            target += &row;
                        }
                        Arg::Data(_) => {}
                    }
                }
            }
        }
        grads.insert(table.to_string(), table_grad);
        Ok(grads)
    }
}

/// Argument `k` of `calls`, stacked: `[calls, dims...]`.
fn gather_arg(
    batch: &Batch,
    calls: &[usize],
    k: usize,
    dims: &[usize],
    outs: &[Vec<Tensor<f64>>],
    table: &Tensor<f64>,
) -> Tensor<f64> {
    let mut shape = vec![calls.len()];
    shape.extend_from_slice(dims);
    let mut stacked = Tensor::zeros(IxDyn(&shape));
    for (j, &c) in calls.iter().enumerate() {
        let mut row = stacked.index_axis_mut(Axis(0), j);
        match &batch.calls[c].args[k] {
            Arg::Call(p, o) => row.assign(&outs[*p][*o]),
            Arg::Lookup(r) => row.assign(&table.index_axis(Axis(0), *r)),
            Arg::Data(v) => row.iter_mut().zip(v).for_each(|(d, s)| *d = *s),
        }
    }
    stacked
}

/// Output `o`'s cotangents of `calls`, stacked (zero where none reached a call).
fn gather_cotangent(calls: &[usize], o: usize, shape: &Shape, cots: &[Vec<Option<Tensor<f64>>>]) -> Tensor<f64> {
    let mut dims = vec![calls.len()];
    dims.extend_from_slice(shape.dims());
    let mut stacked = Tensor::zeros(IxDyn(&dims));
    for (j, &c) in calls.iter().enumerate() {
        if let Some(t) = &cots[c][o] {
            stacked.index_axis_mut(Axis(0), j).assign(t);
        }
    }
    stacked
}

/// The batch's structure, as numbers: each call's cell and what its arguments read
/// (which output of which call; a lookup or data, whatever the row or value).
fn structure_key(batch: &Batch) -> Vec<u64> {
    let mut key = Vec::with_capacity(batch.calls.len() * 6);
    for call in &batch.calls {
        key.push(call.cell as u64);
        key.push(call.loss.is_some() as u64);
        for arg in &call.args {
            match arg {
                Arg::Call(c, o) => key.extend([1, *c as u64, *o as u64]),
                Arg::Lookup(_) => key.push(2),
                Arg::Data(v) => key.extend([3, v.len() as u64]),
            }
        }
    }
    key
}

/// Levels by depth (one more than the deepest call read), each level's calls grouped by cell.
pub fn make_plan(batch: &Batch, cells: usize) -> Plan {
    let mut level = vec![0usize; batch.calls.len()];
    let mut levels: Vec<Vec<Vec<usize>>> = vec![];
    for (i, call) in batch.calls.iter().enumerate() {
        level[i] = call
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Call(c, _) => Some(level[*c] + 1),
                Arg::Lookup(_) | Arg::Data(_) => None,
            })
            .max()
            .unwrap_or(0);
        if levels.len() <= level[i] {
            levels.resize(level[i] + 1, vec![vec![]; cells]);
        }
        levels[level[i]][call.cell].push(i);
    }
    Plan {
        levels: levels
            .into_iter()
            .map(|by_cell| {
                by_cell
                    .into_iter()
                    .enumerate()
                    .filter(|(_, calls)| !calls.is_empty())
                    .map(|(cell, calls)| Group { cell, calls })
                    .collect()
            })
            .collect(),
    }
}
