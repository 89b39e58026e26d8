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
//! rows from the outputs of earlier levels. A group of many calls runs as one
//! part per core, the parts of a level side by side, each on its own thread
//! (`Split`): most of a level's ops are too small to split over the cores
//! one by one. Each level's forward runs once and
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
use crate::runtime::kernels::on_one_thread;
use crate::runtime::{with_threads_awake, Interpreter, Kept, Tensor, Values};
use ndarray::{Axis, IxDyn};
use std::collections::HashMap;
use std::sync::Arc;

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
    by_rows: HashMap<usize, Arc<Batched>>,
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
    plans: HashMap<Vec<u64>, Arc<Plan>>,
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
    fn batched(&mut self, cell: usize, rows: usize) -> Result<Arc<Batched>> {
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
        let b = Arc::new(b);
        self.cells[cell].by_rows.insert(rows, b.clone());
        Ok(b)
    }

    /// The batch's plan: from the cache when a batch of the same structure was seen.
    pub fn plan(&mut self, batch: &Batch) -> Result<Arc<Plan>> {
        batch.check(&self.model)?;
        let key = structure_key(batch);
        if let Some(plan) = self.plans.get(&key) {
            self.plan_hits += 1;
            return Ok(plan.clone());
        }
        self.plan_misses += 1;
        let plan = Arc::new(make_plan(batch, self.model.cells.len()));
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
        let (name, dims) = self.model.embedding;
        if table.shape() != dims {
            return Err(Error::Values(format!(
                "`{name}` is {:?}; the model's embedding matrix is {dims:?}",
                table.shape()
            )));
        }
        let table = match table.is_standard_layout() {
            true => std::borrow::Cow::Borrowed(table),
            false => std::borrow::Cow::Owned(crate::runtime::kernels::row_major_copy(table.view())),
        };
        let split = Split::of(plan, rayon::current_num_threads());
        let programs = split
            .parts
            .iter()
            .map(|g| self.batched(g.cell, g.calls.len()))
            .collect::<Result<Vec<_>>>()?;
        let this = &*self;
        let (loss, grads, kernels) = with_threads_awake(|| this.run_parts(batch, &split, &programs, params, &table))?;
        Ok(Outcome {
            loss,
            grads,
            kernels,
            launches: plan.levels.iter().map(Vec::len).sum(),
        })
    }

    /// [`FastPath::run`] on the parts of `split` (each part's batched
    /// program in `programs`), on the pool's threads: the loss, the
    /// gradients and the kernels run.
    fn run_parts(
        &self,
        batch: &Batch,
        split: &Split,
        programs: &[Arc<Batched>],
        params: &Values<f64>,
        table: &Tensor<f64>,
    ) -> Result<(f64, Values<f64>, usize)> {
        let parts = &split.parts;
        // Where each call's outputs are: its part and its row there.
        let mut at = vec![(0, 0); batch.calls.len()];
        for (pi, part) in parts.iter().enumerate() {
            for (j, &c) in part.calls.iter().enumerate() {
                at[c] = (pi, j);
            }
        }
        let interpreters: Vec<Interpreter> = parts
            .iter()
            .zip(programs)
            .map(|(part, b)| Interpreter::new(&b.forward).with_respect_to(self.wrt(batch, part)))
            .collect();
        // What each part's arguments read, found once for the gathers and the scatters.
        let pieces: Vec<Vec<Vec<Piece>>> = parts
            .iter()
            .map(|g| {
                (0..self.model.cells[g.cell].args.len())
                    .map(|k| pieces_of(batch, g, k, &at))
                    .collect()
            })
            .collect();
        let (mut loss, mut kernels) = (0.0, 0);
        let mut kept: Vec<Kept<f64>> = Vec::with_capacity(parts.len());
        for level in &split.levels {
            let run_part = |pi: usize| -> Result<Kept<f64>> {
                let part = &parts[pi];
                let cell = &self.model.cells[part.cell];
                let args = (0..cell.args.len())
                    .map(|k| {
                        let arg = gather_arg(part, k, &cell.args[k], &pieces[pi][k], &kept, table)?;
                        Ok((arg_name(k), arg))
                    })
                    .collect::<Result<Values<f64>>>()?;
                interpreters[pi].forward_kept(args, params)
            };
            let outcomes = side_by_side(level.clone().collect(), run_part);
            for (pi, outcome) in level.clone().zip(outcomes) {
                let outcome = outcome?;
                for (j, &c) in parts[pi].calls.iter().enumerate() {
                    if let Some(w) = batch.calls[c].loss {
                        loss += w * outcome.output(0).index_axis(Axis(0), j).sum();
                    }
                }
                if split.first[pi] {
                    kernels += programs[pi].kernels;
                }
                kept.push(outcome);
            }
        }
        let grads = self.backward(batch, split, &pieces, params, kept)?;
        Ok((loss, grads, kernels))
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
        split: &Split,
        pieces: &[Vec<Vec<Piece>>],
        params: &Values<f64>,
        mut kept: Vec<Kept<f64>>,
    ) -> Result<Values<f64>> {
        let groups = &split.parts;
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
                cots[gi][0] = Some(stacked(group.calls.len(), &[], weights)?);
            }
        }
        let mut sums: HashMap<String, Tensor<f64>> = HashMap::new();
        let table = self.model.embedding.0;
        let mut table_grad = Tensor::zeros(params[table].raw_dim());
        for level in split.levels.iter().rev() {
            let seeds: Vec<_> = level.clone().map(|pi| std::mem::take(&mut cots[pi])).collect();
            let forwards = kept.split_off(level.start).into_iter().zip(seeds).collect();
            let backwards = side_by_side(forwards, |(forward, seeds)| match seeds.iter().all(Option::is_none) {
                true => Ok(vec![]),
                false => forward.backward(seeds),
            });
            for (gi, sent) in level.clone().zip(backwards) {
                for (name, g) in sent? {
                    match name.strip_prefix('a').and_then(|k| k.parse::<usize>().ok()) {
                        Some(k) => self.scatter(groups, gi, k, &pieces[gi][k], g, &mut cots, &mut table_grad)?,
                        None => add_into(&mut sums, name, g),
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
                    Some(g) => as_row_major(g),
                    None => Tensor::zeros(params[*n].raw_dim()),
                };
                (n.to_string(), g)
            })
            .collect();
        grads.insert(table.to_string(), table_grad);
        Ok(grads)
    }

    /// Scatters `g`, the cotangent of argument `k` of part `gi`, to the rows
    /// that argument read ([`pieces_of`]): into the cotangents of the parts
    /// that made them (`cots`), a looked-up row's into the embedding's gradient.
    #[allow(clippy::too_many_arguments)]
    fn scatter(
        &self,
        groups: &[Group],
        gi: usize,
        k: usize,
        pieces: &[Piece],
        g: Tensor<f64>,
        cots: &mut [Vec<Option<Tensor<f64>>>],
        table_grad: &mut Tensor<f64>,
    ) -> Result<()> {
        let g = as_row_major(g);
        let g = g.as_slice().expect("row-major");
        let width = self.model.cells[groups[gi].cell].args[k].iter().product::<usize>();
        let mut j = 0;
        for piece in pieces {
            match *piece {
                Piece::Rows {
                    group: pg,
                    output: o,
                    first: pj,
                    len,
                } => {
                    let rows = &g[j * width..(j + len) * width];
                    let slot = &mut cots[pg][o];
                    let calls = groups[pg].calls.len();
                    match slot {
                        // The block is the whole of what that output's cotangent would hold.
                        None if pj == 0 && len == calls => {
                            *slot = Some(stacked(
                                calls,
                                self.cells[groups[pg].cell].output_shapes[o].dims(),
                                rows.to_vec(),
                            )?)
                        }
                        _ => {
                            let slot = slot.get_or_insert_with(|| {
                                let mut dims = vec![calls];
                                dims.extend_from_slice(self.cells[groups[pg].cell].output_shapes[o].dims());
                                Tensor::zeros(IxDyn(&dims))
                            });
                            let target = slot.as_slice_mut().expect("made row-major");
                            add_slice(&mut target[pj * width..(pj + len) * width], rows);
                        }
                    }
                    j += len;
                }
                Piece::Lookup(r) => {
                    let target = table_grad.as_slice_mut().expect("made row-major");
                    add_slice(&mut target[r * width..(r + 1) * width], &g[j * width..(j + 1) * width]);
                    j += 1;
                }
                Piece::Data(_) => j += 1,
            }
        }
        Ok(())
    }
}

/// A plan's groups as they run: a group of many calls split into row ranges
/// (parts), one per core, so that each level's work runs side by side on the
/// cores, each part's ops on its own thread: most of a level's ops are too
/// small to split over the cores one by one (an elementwise pass under
/// [`PARALLEL_FROM`] elements runs on one thread while the others wait).
struct Split {
    /// The parts, level by level, a group's in order.
    parts: Vec<Group>,
    /// Each level's parts.
    levels: Vec<std::ops::Range<usize>>,
    /// Whether each part is its group's first (the group's kernels are counted once).
    first: Vec<bool>,
}

/// Groups of at least this many calls are split into one part per core.
const SPLIT_FROM: usize = 16;

impl Split {
    fn of(plan: &Plan, cores: usize) -> Split {
        let mut split = Split {
            parts: vec![],
            levels: vec![],
            first: vec![],
        };
        for level in &plan.levels {
            let start = split.parts.len();
            for group in level {
                let parts = match group.calls.len() >= SPLIT_FROM {
                    true => cores.max(1),
                    false => 1,
                };
                let step = group.calls.len().div_ceil(parts);
                for (k, calls) in group.calls.chunks(step).enumerate() {
                    split.parts.push(Group {
                        cell: group.cell,
                        calls: calls.to_vec(),
                    });
                    split.first.push(k == 0);
                }
            }
            split.levels.push(start..split.parts.len());
        }
        split
    }
}

/// `f` of each item: side by side on the cores when there are several, each
/// on one thread (its products not split again), else here with every core.
fn side_by_side<I: Send, R: Send>(items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
    use rayon::prelude::*;
    match items.len() {
        0 | 1 => items.into_iter().map(f).collect(),
        _ => items.into_par_iter().map(|item| on_one_thread(|| f(item))).collect(),
    }
}

/// `t += v`, element by element: a piece of a few rows, too short for
/// ndarray's general elementwise add to pay its setup (thousands per batch).
fn add_slice(t: &mut [f64], v: &[f64]) {
    t.iter_mut().zip(v).for_each(|(t, v)| *t += v);
}

/// `g` in row-major order (a cotangent from a backward sweep may come
/// transposed), copied at a fixed rank: ndarray's copy of a dynamic-rank
/// transposed view goes element by element.
fn as_row_major(g: Tensor<f64>) -> Tensor<f64> {
    match g.is_standard_layout() {
        true => g,
        false => crate::runtime::kernels::row_major_copy(g.view()),
    }
}

/// `data` as a tensor of `rows` rows of `dims`.
fn stacked(rows: usize, dims: &[usize], data: Vec<f64>) -> Result<Tensor<f64>> {
    let mut shape = vec![rows];
    shape.extend_from_slice(dims);
    Tensor::from_shape_vec(IxDyn(&shape), data).map_err(|e| Error::Values(e.to_string()))
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
    let width: usize = dims.iter().product();
    let mut data = Vec::with_capacity(group.calls.len() * width);
    let table = table.as_slice().expect("the embedding matrix is row-major");
    for piece in pieces {
        match *piece {
            Piece::Rows {
                group: pg,
                output,
                first,
                len,
            } => {
                let rows = kept[pg].output(output);
                match rows.as_slice() {
                    Some(rows) => data.extend_from_slice(&rows[first * width..(first + len) * width]),
                    None => data.extend(rows.slice_axis(Axis(0), (first..first + len).into()).iter()),
                }
            }
            Piece::Lookup(r) => data.extend_from_slice(&table[r * width..(r + 1) * width]),
            Piece::Data(v) => data.extend_from_slice(v),
        }
    }
    stacked(group.calls.len(), dims, data).map_err(|e| Error::Values(format!("gathering argument {k}: {e}")))
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
