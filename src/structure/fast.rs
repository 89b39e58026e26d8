//! The fast path: TensorFlow Fold's dynamic batching with cells batched by
//! the e-graph. Each cell's calls are a vmap of its body, so the body is
//! batched once by the [`Batcher`] (`--strategy fuse`: a shared W times
//! stacked vectors is one GEMM) into a forward program (outputs stacked) and
//! cached. A batched program whose nodes do not depend on the row count
//! (checked by batching at 2 and at 3 rows and comparing) is re-declared at
//! any row count with no further rewriting; otherwise it is batched once per
//! row count met.
//!
//! Per batch the work is linear in the calls: each call's level is one more
//! than the deepest call it reads (Fold's depth; the calls nothing reads, the
//! loss heads, all wait for the last level), the calls of one cell at one
//! level run as one batched program, their arguments gathered into stacked
//! rows from the outputs of earlier levels. Each level's forward runs once and
//! keeps its values ([`Kept`]); the backward sweep goes down the levels, each
//! group's outputs' cotangents (stacked as its outputs are) seeding its kept
//! forward's backward sweep, and the arguments' cotangents scattered to the
//! rows that made them (a looked-up row's into the embedding's gradient). The
//! plan (levels and members) is cached by the batch's structure, so a batch
//! whose structure repeats reuses it.

use super::graph::{Arg, Batch, Cell, Model};
use crate::egraph::{kernel_bound, BatchReduce, Batcher, Strategy};
use crate::error::{Error, Result};
use crate::front::ProgramBuilder;
use crate::ir::{Decl, Program, Shape, PARALLEL_FROM};
use crate::runtime::kernels::add_assign;
use crate::runtime::{Interpreter, Kept, Tensor, Values};
use ndarray::{Axis, IxDyn};
use std::collections::HashMap;
use std::rc::Rc;

/// One cell's batched program, at one row count.
#[derive(Clone, Debug)]
struct Batched {
    forward: Program,
    /// Kernels the forward program runs.
    kernels: usize,
}

/// One cell, compiled: its batched program at 2 rows (the template) and
/// whether it holds at any row count.
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

/// The per-example program of `cell` (arguments `a0..`, outputs `o0..`).
fn cell_program(model: &Model, cell: &Cell) -> Result<Program> {
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
    for (k, &o) in outs.iter().enumerate() {
        b.output(&format!("o{k}"), o)?;
    }
    b.finish()
}

/// `program` batched over its inputs at `rows` rows by the e-graph.
fn batch_cell(program: &Program, rows: usize) -> Result<Program> {
    let over: Vec<String> = program.inputs.iter().map(|d| d.name.clone()).collect();
    Ok(Batcher::new(program)
        .over(over)
        .size(rows)
        .strategy(Strategy::Fuse)
        .reduce(BatchReduce::None)
        .run()?
        .program)
}

fn batch_forward(model: &Model, cell: &Cell, rows: usize) -> Result<Batched> {
    let forward = batch_cell(&cell_program(model, cell)?, rows)?;
    Ok(Batched {
        kernels: kernel_bound(&forward).0,
        forward,
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
            let template = batch_forward(model, cell, 2)?;
            let three = batch_forward(model, cell, 3)?;
            let generic = template.forward.expr == three.forward.expr;
            let example = cell_program(model, cell)?;
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

    /// Whether every cell's batched program holds at any row count (compiled once, re-declared per level).
    pub fn generic(&self) -> bool {
        self.cells.iter().all(|c| c.generic)
    }

    /// Cell `cell`'s batched program at `rows` rows, from the cache.
    fn batched(&mut self, cell: usize, rows: usize) -> Result<Rc<Batched>> {
        if let Some(b) = self.cells[cell].by_rows.get(&rows) {
            return Ok(b.clone());
        }
        let compiled = &self.cells[cell];
        let b = match compiled.generic {
            true => Batched {
                forward: at_rows(&compiled.template.forward, rows)?,
                kernels: compiled.template.kernels,
            },
            false => batch_forward(&self.model, &self.model.cells[cell], rows)?,
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
    /// its embedding matrix): the loss and every gradient. Each group's
    /// forward runs once, its values kept ([`Kept`]) until the backward sweep
    /// comes down to its level with its outputs' cotangents.
    pub fn run(&mut self, batch: &Batch, plan: &Plan, params: &Values<f64>) -> Result<Outcome> {
        let table = params
            .get(self.model.embedding.0)
            .ok_or_else(|| Error::Values(format!("no value for `{}`", self.model.embedding.0)))?;
        let groups: Vec<&Group> = plan.levels.iter().flatten().collect();
        // Where each call's outputs are: its group and its row there.
        let mut at = vec![(0, 0); batch.calls.len()];
        for (gi, group) in groups.iter().enumerate() {
            for (j, &c) in group.calls.iter().enumerate() {
                at[c] = (gi, j);
            }
        }
        let programs = groups
            .iter()
            .map(|g| self.batched(g.cell, g.calls.len()))
            .collect::<Result<Vec<_>>>()?;
        let interpreters: Vec<Interpreter> = groups
            .iter()
            .zip(&programs)
            .map(|(group, b)| Interpreter::new(&b.forward).with_respect_to(self.wrt(batch, group)))
            .collect();
        // What each group's arguments read, found once for the gathers and the scatters.
        let pieces: Vec<Vec<Vec<Piece>>> = groups
            .iter()
            .map(|g| {
                (0..self.model.cells[g.cell].args.len())
                    .map(|k| pieces_of(batch, g, k, &at))
                    .collect()
            })
            .collect();
        let (mut loss, mut kernels) = (0.0, 0);
        let mut kept: Vec<Kept<f64>> = Vec::with_capacity(groups.len());
        for (gi, group) in groups.iter().enumerate() {
            let cell = &self.model.cells[group.cell];
            let args = (0..cell.args.len())
                .map(|k| {
                    Ok((
                        arg_name(k),
                        gather_arg(group, k, &cell.args[k], &pieces[gi][k], &kept, table)?,
                    ))
                })
                .collect::<Result<Values<f64>>>()?;
            let level = interpreters[gi].forward_kept(args, params)?;
            for (j, &c) in group.calls.iter().enumerate() {
                if let Some(w) = batch.calls[c].loss {
                    loss += w * level.output(0).index_axis(Axis(0), j).sum();
                }
            }
            kernels += programs[gi].kernels;
            kept.push(level);
        }
        let launches = kept.len();
        let grads = self.backward(batch, &groups, &pieces, params, kept)?;
        Ok(Outcome {
            loss,
            grads,
            kernels,
            launches,
        })
    }

    /// The inputs and params a group's gradient is wanted for: its cell's
    /// params and every argument but data (a label has no gradient).
    fn wrt(&self, batch: &Batch, group: &Group) -> Vec<String> {
        let cell = &self.model.cells[group.cell];
        (0..cell.args.len())
            .filter(|&k| !matches!(batch.calls[group.calls[0]].args[k], Arg::Data(_)))
            .map(arg_name)
            .chain(cell.params.iter().map(|p| p.to_string()))
            .collect()
    }

    /// The backward sweep, group by group down the levels: each group's
    /// outputs' cotangents (stacked, as its outputs are) seed its kept
    /// forward's backward sweep; the arguments' cotangents are scattered to
    /// the rows of the groups that made them (a looked-up row's into the
    /// embedding's gradient) and the params' summed.
    fn backward(
        &self,
        batch: &Batch,
        groups: &[&Group],
        pieces: &[Vec<Vec<Piece>>],
        params: &Values<f64>,
        mut kept: Vec<Kept<f64>>,
    ) -> Result<Values<f64>> {
        // Each group's outputs' cotangents, stacked; None while nothing reached them.
        let mut cots: Vec<Vec<Option<Tensor<f64>>>> = groups
            .iter()
            .map(|g| vec![None; self.model.cells[g.cell].outputs])
            .collect();
        for (gi, group) in groups.iter().enumerate() {
            // A loss head's output is seeded with its weight; a call of the same cell that is not a head, with 0.
            if group.calls.iter().any(|&c| batch.calls[c].loss.is_some()) {
                let weights = group
                    .calls
                    .iter()
                    .map(|&c| batch.calls[c].loss.unwrap_or(0.0))
                    .collect();
                let stacked = Tensor::from_shape_vec(IxDyn(&[group.calls.len()]), weights)
                    .map_err(|e| Error::Values(e.to_string()))?;
                cots[gi][0] = Some(stacked);
            }
        }
        let mut sums: HashMap<String, Tensor<f64>> = HashMap::new();
        let table = self.model.embedding.0;
        let mut table_grad = Tensor::zeros(params[table].raw_dim());
        for gi in (0..groups.len()).rev() {
            let level = kept.pop().expect("one kept forward per group");
            let seeds = std::mem::take(&mut cots[gi]);
            if seeds.iter().all(Option::is_none) {
                continue;
            }
            for (name, g) in level.backward(seeds)? {
                let Some(k) = name.strip_prefix('a').and_then(|k| k.parse::<usize>().ok()) else {
                    add_into(&mut sums, name, g);
                    continue;
                };
                let mut j = 0;
                for piece in &pieces[gi][k] {
                    match *piece {
                        Piece::Rows {
                            group: pg,
                            output: o,
                            first: pj,
                            len,
                        } => {
                            let rows = g.slice_axis(Axis(0), (j..j + len).into());
                            let slot = &mut cots[pg][o];
                            match slot {
                                // The block is the whole of what that output's cotangent would hold.
                                None if pj == 0 && len == groups[pg].calls.len() => *slot = Some(rows.to_owned()),
                                _ => {
                                    let slot = slot.get_or_insert_with(|| {
                                        let mut dims = vec![groups[pg].calls.len()];
                                        dims.extend_from_slice(self.cells[groups[pg].cell].output_shapes[o].dims());
                                        Tensor::zeros(IxDyn(&dims))
                                    });
                                    let target = slot.slice_axis_mut(Axis(0), (pj..pj + len).into());
                                    add_assign(target, rows);
                                }
                            }
                            j += len;
                        }
                        Piece::Lookup(r) => {
                            add_row(&mut table_grad, r, g.index_axis(Axis(0), j));
                            j += 1;
                        }
                        Piece::Data(_) => j += 1,
                    }
                }
            }
        }
        let mut grads: Values<f64> = self
            .model
            .params
            .iter()
            .map(|(n, _)| {
                let g = match sums.remove(*n) {
                    Some(g) if g.is_standard_layout() => g,
                    // At a fixed rank: ndarray's copy of a dynamic-rank transposed view goes element by element.
                    Some(g) => crate::runtime::kernels::row_major_copy(g.view()),
                    None => Tensor::zeros(params[*n].raw_dim()),
                };
                (n.to_string(), g)
            })
            .collect();
        grads.insert(table.to_string(), table_grad);
        Ok(grads)
    }
}

/// Adds `row` into row `r` of `table`: as two slices when both are
/// contiguous (a looked-up word's cotangent, thousands per batch, each too
/// short for ndarray's general elementwise add to pay its setup).
fn add_row(table: &mut Tensor<f64>, r: usize, row: ndarray::ArrayViewD<f64>) {
    let mut target = table.index_axis_mut(Axis(0), r);
    match (target.as_slice_mut(), row.as_slice()) {
        (Some(t), Some(v)) => t.iter_mut().zip(v).for_each(|(t, v)| *t += v),
        _ => target += &row,
    }
}

/// Adds `g` into `sums[name]`. The first is kept in its own layout (a
/// param read transposed gets its gradient transposed), so that the later
/// ones, of the same layout, add element by element in memory order.
/// A large one (the node cell's gate matrix, 1.3 MB, once per level) is
/// added on all cores: the fast path's own work runs between the batched
/// programs, on the calling thread alone.
fn add_into(sums: &mut HashMap<String, Tensor<f64>>, name: String, g: Tensor<f64>) {
    use rayon::prelude::*;
    let Some(total) = sums.get_mut(&name) else {
        sums.insert(name, g);
        return;
    };
    if total.len() >= PARALLEL_FROM && total.strides() == g.strides() {
        if let (Some(t), Some(g)) = (total.as_slice_memory_order_mut(), g.as_slice_memory_order()) {
            let chunk = t.len().div_ceil(rayon::current_num_threads());
            t.par_chunks_mut(chunk)
                .zip(g.par_chunks(chunk))
                .for_each(|(t, g)| t.iter_mut().zip(g).for_each(|(t, g)| *t += g));
            return;
        }
    }
    *total += &g;
}

/// A run of a group's calls whose argument `k` reads one thing: consecutive
/// rows of one earlier group's output (an LSTM step's group reading the step
/// before's, sentence after sentence, is one run), a row of the embedding
/// matrix, or data.
#[derive(Clone, Copy, Debug)]
enum Piece<'b> {
    Rows {
        group: usize,
        output: usize,
        first: usize,
        len: usize,
    },
    Lookup(usize),
    Data(&'b [f64]),
}

/// What argument `k` of `group`'s calls reads, in order, as [`Piece`]s
/// (`at`: each call's group and row there).
fn pieces_of<'b>(batch: &'b Batch, group: &Group, k: usize, at: &[(usize, usize)]) -> Vec<Piece<'b>> {
    let mut pieces: Vec<Piece> = Vec::new();
    for &c in &group.calls {
        match &batch.calls[c].args[k] {
            Arg::Call(p, o) => {
                let (pg, pj) = at[*p];
                match pieces.last_mut() {
                    Some(Piece::Rows {
                        group,
                        output,
                        first,
                        len,
                    }) if *group == pg && *output == *o && *first + *len == pj => *len += 1,
                    _ => pieces.push(Piece::Rows {
                        group: pg,
                        output: *o,
                        first: pj,
                        len: 1,
                    }),
                }
            }
            Arg::Lookup(r) => pieces.push(Piece::Lookup(*r)),
            Arg::Data(v) => pieces.push(Piece::Data(v)),
        }
    }
    pieces
}

/// Argument `k` of `group`'s calls, stacked: `[calls, dims...]`, read
/// ([`pieces_of`]) from the kept outputs of earlier groups, the embedding
/// matrix, or the data; into one buffer, without zeroing it first, a run of
/// rows copied as one block.
fn gather_arg(
    group: &Group,
    k: usize,
    dims: &[usize],
    pieces: &[Piece],
    kept: &[Kept<f64>],
    table: &Tensor<f64>,
) -> Result<Tensor<f64>> {
    let mut shape = vec![group.calls.len()];
    shape.extend_from_slice(dims);
    let width: usize = dims.iter().product();
    let mut data = Vec::with_capacity(group.calls.len() * width);
    for piece in pieces {
        let rows = match *piece {
            Piece::Rows {
                group: pg,
                output,
                first,
                len,
            } => kept[pg].output(output).slice_axis(Axis(0), (first..first + len).into()),
            Piece::Lookup(r) => table.slice_axis(Axis(0), (r..r + 1).into()),
            Piece::Data(v) => {
                data.extend_from_slice(v);
                continue;
            }
        };
        match rows.as_slice() {
            Some(slice) => data.extend_from_slice(slice),
            None => data.extend(rows.iter()),
        }
    }
    Tensor::from_shape_vec(IxDyn(&shape), data).map_err(|e| Error::Values(format!("gathering argument {k}: {e}")))
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

/// Levels by depth (one more than the deepest call read), each level's calls
/// grouped by cell; except that the calls no call reads (the loss heads) all
/// wait for the last level, one past the deepest call that is read, so that
/// each head cell runs once, not once per depth its examples end at.
pub fn make_plan(batch: &Batch, cells: usize) -> Plan {
    let mut level = vec![0usize; batch.calls.len()];
    let mut read = vec![false; batch.calls.len()];
    for (i, call) in batch.calls.iter().enumerate() {
        level[i] = call
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Call(c, _) => {
                    read[*c] = true;
                    Some(level[*c] + 1)
                }
                Arg::Lookup(_) | Arg::Data(_) => None,
            })
            .max()
            .unwrap_or(0);
    }
    // Every call a sink reads is read, so a sink's own level is at most this one.
    let last = (0..level.len())
        .filter(|&i| read[i])
        .map(|i| level[i] + 1)
        .max()
        .unwrap_or(0);
    let mut levels: Vec<Vec<Vec<usize>>> = vec![];
    for (i, call) in batch.calls.iter().enumerate() {
        let at = if read[i] { level[i] } else { last };
        if levels.len() <= at {
            levels.resize(at + 1, vec![vec![]; cells]);
        }
        levels[at][call.cell].push(i);
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
