//! Elementwise fusion, run: the runtime's side of the schedule
//! ([`crate::ir::schedule`], found once when an interpreter is built, on the
//! program as it will run).
//!
//! A *group* is a chain of elementwise ops (unary ops, and binary ops whose
//! other operand repeats along the chain value: a bias, a scalar, a value of
//! the same shape), each link read only by the next, that starts from any
//! value (a matmul's result, an input) and keeps its shape. The interpreter
//! runs a group as one pass over memory, block by block (each block stays in
//! the cache while every op of the chain runs over it), instead of one array
//! per op; the values inside a group are never materialized. Its backward is
//! one pass too: for each block, the values inside are recomputed from the
//! chain's input and the cotangent is swept back through the chain in place,
//! the other operands' cotangents (a bias's: summed over the rows) gathered
//! on the way.

use crate::ir::schedule::Step;
pub use crate::ir::schedule::{Group, Schedule};
use crate::ir::{Binary, Scalar, Unary};
use crate::runtime::kernels::Tensor;
use crate::runtime::vector;
use crate::runtime::vmath::PARALLEL_FROM;
use ndarray::{ArrayViewD, CowArray, IxDyn};
use std::mem::MaybeUninit;

/// Calls `f::<K>(args)` with `K` the table place `op`: each op's loop is
/// compiled with the op known, so that it has no dispatch per element and
/// LLVM vectorizes it. Tables of up to 32 ops (checked at compile time).
macro_rules! by_op {
    ($op:expr, $f:ident, $($arg:expr),*) => {
        by_op!(@arms $op, $f, ($($arg),*), 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
    };
    (@arms $op:expr, $f:ident, $args:tt, $($k:literal)*) => {
        match $op {
            $($k => by_op!(@call $f, $k, $args),)*
            other => unreachable!("op {other} is past the 32 a table may have"),
        }
    };
    (@call $f:ident, $k:literal, ($($arg:expr),*)) => {
        $f::<T, $k>($($arg),*)
    };
}

/// How many links' entering values a backward sweep recomputes: up to the last
/// link past the first whose derivative reads its entering value, or whose
/// predecessor's reads its result (the same value).
fn links_to_recompute(steps: &[Step], other_wanted: &[bool]) -> usize {
    let read = |j: usize| steps[j].reads(true, other_wanted[j]) || steps[j - 1].reads(false, other_wanted[j - 1]);
    (1..steps.len()).rev().find(|&j| read(j)).unwrap_or(0)
}

/// Elements per block: the block (times the chain's length, in the backward
/// pass) stays in the cache; a whole number of the longest repeat shorter than
/// the chain value, so that every block starts a repeat.
fn block_len(n: usize, periods: impl Iterator<Item = usize>, steps: usize) -> usize {
    let period = periods.filter(|&p| p < n).max().unwrap_or(1).max(1);
    let target = (16_384 / (steps + 1)).max(64);
    (period * (target / period).max(1)).min(n).max(1)
}

/// An operand of a binary link, row-major: all of it, or a repeat of it.
struct Other<'a, T> {
    data: &'a [T],
}

impl<'a, T> Other<'a, T> {
    /// The rows of this operand a block at `offset` (a multiple of its
    /// repeat) of `len` elements of a chain value of `n` elements reads, and
    /// where in the operand they start: the block's own part of a same-sized
    /// operand, else the repeat.
    fn rows(&self, offset: usize, len: usize, n: usize) -> (usize, usize) {
        if self.data.len() == n {
            (len, offset)
        } else {
            (self.data.len(), 0)
        }
    }
}

/// Applies `step` in place over `block` (at `offset` of a chain value of `n` elements).
fn apply<T: Scalar>(step: Step, other: Option<&Other<T>>, block: &mut [T], offset: usize, n: usize) {
    match step {
        Step::Unary { kernel: Some(k), .. } => vector::run_in_place(k, block),
        Step::Unary { op, kernel: None } => by_op!(op, unary_values, block),
        Step::Binary { op, chain_is_a, .. } => {
            let other = other.expect("a binary link has its operand");
            let (width, start) = other.rows(offset, block.len(), n);
            let row = &other.data[start..start + width];
            by_op!(op, binary_values, block, row, chain_is_a)
        }
    }
}

/// The other operands of a group's binary links (by link), row-major.
struct Operands<'a, T> {
    others: Vec<Option<CowArray<'a, T, IxDyn>>>,
}

impl<'a, T: Scalar> Operands<'a, T> {
    fn new(group: &Group, value: &dyn Fn(usize) -> ArrayViewD<'a, T>) -> Self {
        Operands {
            others: group.others().map(|o| o.map(|o| row_major(value(o)))).collect(),
        }
    }

    fn others(&self) -> Vec<Option<Other<'_, T>>> {
        self.others
            .iter()
            .map(|o| {
                o.as_ref().map(|o| Other {
                    data: o.as_slice().expect("row-major"),
                })
            })
            .collect()
    }
}

/// `v` itself if it is row-major, else a row-major copy.
fn row_major<T: Clone>(v: ArrayViewD<'_, T>) -> CowArray<'_, T, IxDyn> {
    match v.is_standard_layout() {
        true => CowArray::from(v),
        false => CowArray::from(v.as_standard_layout().into_owned()),
    }
}

/// Runs `group` forward: its result from the value of its input (`input`: when
/// it is owned, at its last use, its buffer becomes the result's) and the
/// values of its other operands (`value(node)`).
pub fn forward_group<'a, T: Scalar>(
    group: &Group,
    input: CowArray<'_, T, IxDyn>,
    value: &dyn Fn(usize) -> ArrayViewD<'a, T>,
) -> Tensor<T> {
    let operands = Operands::new(group, value);
    let others = operands.others();
    let n = input.len();
    let len = block_len(n, others.iter().flatten().map(|o| o.data.len()), group.steps().len());
    // Links from `first` on, in place over a block.
    let run_block_from = |first: usize, offset: usize, block: &mut [T]| {
        for (step, other) in group.steps().iter().zip(&others).skip(first) {
            apply(*step, other.as_ref(), block, offset, n);
        }
    };
    let run_block = |offset: usize, block: &mut [T]| run_block_from(0, offset, block);
    if input.is_owned() && input.is_standard_layout() {
        let mut out = input.into_owned();
        let data = out.as_slice_mut().expect("row-major");
        for_blocks(data, len, run_block);
        return out;
    }
    let input = input.as_standard_layout();
    let source = input.as_slice().expect("row-major");
    let mut out = ndarray::ArrayD::<T>::uninit(input.raw_dim());
    let data = out.as_slice_mut().expect("a fresh array is row-major");
    for_blocks(data, len, |offset, block: &mut [MaybeUninit<T>]| {
        let source = &source[offset..offset + block.len()];
        // The first link reads the input and writes the block (a binary one), or the block
        // starts as a copy of the input.
        let done = match (group.steps()[0], others[0].as_ref()) {
            (Step::Binary { op, chain_is_a, .. }, Some(other)) => {
                let (width, start) = other.rows(offset, block.len(), n);
                let row = &other.data[start..start + width];
                by_op!(op, binary_values_into, source, block, row, chain_is_a);
                1
            }
            (Step::Unary { .. }, _) | (Step::Binary { .. }, None) => {
                block.iter_mut().zip(source).for_each(|(slot, &v)| {
                    slot.write(v);
                });
                0
            }
        };
        // SAFETY: every element of the block was just written.
        let block = unsafe { &mut *(block as *mut [MaybeUninit<T>] as *mut [T]) };
        run_block_from(done, offset, block);
    });
    // SAFETY: `for_blocks` visited every block, and each was written whole.
    unsafe { out.assume_init() }
}

/// Calls `f(offset, block)` on consecutive blocks of `len` elements of
/// `data`, on rayon's threads when `data` is long.
fn for_blocks<E: Send>(data: &mut [E], len: usize, f: impl Fn(usize, &mut [E]) + Sync) {
    use rayon::prelude::*;
    if data.len() < PARALLEL_FROM {
        data.chunks_mut(len)
            .enumerate()
            .for_each(|(b, block)| f(b * len, block));
    } else {
        data.par_chunks_mut(len)
            .enumerate()
            .for_each(|(b, block)| f(b * len, block));
    }
}

/// Runs `group` backward: given its input's value, its result `output` and the
/// result's cotangent `g`, returns the input's cotangent (in `g`'s buffer) and
/// the cotangent of each link's other operand (by link; None for a unary link
/// and where `wanted` says no). A link whose derivative is 0 by definition
/// (`step`, `sign`) sends nothing back: the input and the links before it get
/// None, as in the unfused VJP (so an infinite cotangent gives no NaN there).
pub fn backward_group<'a, T: Scalar>(
    group: &Group,
    input: ArrayViewD<'a, T>,
    output: &Tensor<T>,
    g: Tensor<T>,
    value: &dyn Fn(usize) -> ArrayViewD<'a, T>,
    wanted: &dyn Fn(usize) -> bool,
) -> (Option<Tensor<T>>, Vec<Option<Tensor<T>>>) {
    let live_from = group
        .steps()
        .iter()
        .rposition(|step| matches!(step, Step::Unary { op, .. } if Unary::ALL[*op].derivative_is_zero()))
        .map_or(0, |dead| dead + 1);
    let operands = Operands::new(group, value);
    let others = operands.others();
    let input = input.as_standard_layout();
    let output = output.as_standard_layout();
    let mut g = if g.is_standard_layout() {
        g
    } else {
        g.as_standard_layout().into_owned()
    };
    let n = g.len();
    let steps = group.steps().len();
    let len = block_len(n, others.iter().flatten().map(|o| o.data.len()), steps);
    let mut sums: Vec<Option<Vec<T>>> = group
        .others()
        .zip(&others)
        .enumerate()
        .map(|(j, (node, o))| match (node, o) {
            (Some(node), Some(o)) if j >= live_from && wanted(node) => Some(vec![T::zero(); o.data.len()]),
            _ => None,
        })
        .collect();
    let wanted_sums: Vec<bool> = sums.iter().map(Option::is_some).collect();
    let sweep = BlockSweep {
        group,
        recompute: links_to_recompute(group.steps(), &wanted_sums),
        live_from,
        others: &others,
        input: input.as_slice().expect("row-major"),
        output: output.as_slice().expect("row-major"),
        n,
    };
    let gs = g.as_slice_mut().expect("row-major");
    // Blocks on rayon's threads when long, unless a same-sized operand's cotangent is
    // written block by block (a repeat's is summed per thread, then added up).
    let repeats_only = sums.iter().flatten().all(|s| s.len() < n);
    if n >= PARALLEL_FROM && repeats_only {
        use rayon::prelude::*;
        let zeros = sums.clone();
        let fresh = || (vec![Vec::with_capacity(len); steps - 1], zeros.clone());
        sums = gs
            .par_chunks_mut(len)
            .enumerate()
            .fold(fresh, |(mut inside, mut sums), (b, block)| {
                sweep.run(b * len, block, &mut inside, &mut sums);
                (inside, sums)
            })
            .map(|(_, sums)| sums)
            .reduce(|| zeros.clone(), add_sums);
    } else {
        let mut inside = vec![Vec::with_capacity(len); steps - 1];
        for (b, block) in gs.chunks_mut(len).enumerate() {
            sweep.run(b * len, block, &mut inside, &mut sums);
        }
    }
    let shaped = |sum: Option<Vec<T>>, node: Option<usize>| {
        let dims = node.map(|node| value(node).raw_dim());
        sum.zip(dims)
            .map(|(sum, dims)| Tensor::from_shape_vec(dims, sum).expect("the operand's elements"))
    };
    let others = sums
        .into_iter()
        .zip(group.others())
        .map(|(s, o)| shaped(s, o))
        .collect();
    ((live_from == 0).then_some(g), others)
}

/// `a + b`, operand by operand.
fn add_sums<T: Scalar>(mut a: Vec<Option<Vec<T>>>, b: Vec<Option<Vec<T>>>) -> Vec<Option<Vec<T>>> {
    for (a, b) in a.iter_mut().zip(b) {
        if let (Some(a), Some(b)) = (a, b) {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
    }
    a
}

/// What a group's backward pass reads, for sweeping it back one block at a time.
struct BlockSweep<'s, T> {
    group: &'s Group,
    /// Links (from the second) whose entering values are recomputed: the others' are
    /// not read, and the input stands in for them.
    recompute: usize,
    /// The first link swept back: the one after the last whose derivative is 0 by definition.
    live_from: usize,
    others: &'s [Option<Other<'s, T>>],
    input: &'s [T],
    output: &'s [T],
    /// Elements of the chain value.
    n: usize,
}

impl<T: Scalar> BlockSweep<'_, T> {
    /// Turns `block` (the result's cotangent at `offset`) into the input's,
    /// adding the other operands' shares into `sums`; `inside[j]` holds the
    /// value entering link j + 1, recomputed for this block.
    fn run(&self, offset: usize, block: &mut [T], inside: &mut [Vec<T>], sums: &mut [Option<Vec<T>>]) {
        let (steps, others, n) = (self.group.steps(), self.others, self.n);
        let end = offset + block.len();
        let input = &self.input[offset..end];
        for j in 1..=self.recompute {
            let (done, rest) = inside.split_at_mut(j - 1);
            let entering = if j == 1 { input } else { &done[j - 2][..] };
            rest[0].clear();
            rest[0].extend_from_slice(entering);
            apply(steps[j - 1], others[j - 1].as_ref(), &mut rest[0], offset, n);
        }
        // The value entering link j: the input, recomputed, or (never read) the input.
        let entering = |j: usize| match j {
            0 => input,
            j if j <= self.recompute => &inside[j - 1][..],
            _ => input,
        };
        for j in (self.live_from..steps.len()).rev() {
            let result = match j + 1 == steps.len() {
                true => &self.output[offset..end],
                false => entering(j + 1),
            };
            let entering = entering(j);
            let link = Link {
                step: steps[j],
                other: others[j].as_ref(),
                sum: sums[j].as_deref_mut(),
            };
            link.backward(entering, result, block, offset, n);
        }
    }
}

/// One link swept backwards over a block.
struct Link<'s, 'o, T> {
    step: Step,
    other: Option<&'o Other<'o, T>>,
    /// Where the other operand's cotangent is gathered, if it is wanted.
    sum: Option<&'s mut [T]>,
}

impl<T: Scalar> Link<'_, '_, T> {
    /// `g` (the cotangent of the link's result over a block) becomes the
    /// cotangent of the value entering it (`x`, with result `y`); the other
    /// operand's share is added into `sum`.
    fn backward(self, x: &[T], y: &[T], g: &mut [T], offset: usize, n: usize) {
        match self.step {
            Step::Unary { op, .. } => by_op!(op, unary_backward, x, y, g),
            Step::Binary { op, chain_is_a, .. } => {
                let other = self.other.expect("a binary link has its operand");
                let (width, start) = other.rows(offset, g.len(), n);
                let row = &other.data[start..start + width];
                let sum = self.sum.map(|s| &mut s[start..start + width]);
                let sides = Sides { row, sum, chain_is_a };
                by_op!(op, binary_backward, sides, x, y, g)
            }
        }
    }
}

/// A binary link's other operand (one repeat) and where its cotangent gathers.
struct Sides<'r, 's, T> {
    row: &'r [T],
    sum: Option<&'s mut [T]>,
    chain_is_a: bool,
}

const _: () = assert!(
    Unary::ALL.len() <= 32 && Binary::ALL.len() <= 32,
    "by_op! covers 32 ops"
);

/// The unary op at place `K` of its table, as a constant (`K` past the table: never called).
fn unary<const K: usize>() -> Unary {
    Unary::ALL[K % Unary::ALL.len()]
}

fn binary<const K: usize>() -> Binary {
    Binary::ALL[K % Binary::ALL.len()]
}

/// `block[i] = f(block[i])` by the scalar `value` of unary op `K`.
fn unary_values<T: Scalar, const K: usize>(block: &mut [T]) {
    let op = unary::<K>();
    block.iter_mut().for_each(|v| *v = op.value(*v));
}

/// `block[i] = f(block[i], row[i % width])` (or the operands swapped) for binary op `K`.
fn binary_values<T: Scalar, const K: usize>(block: &mut [T], row: &[T], chain_is_a: bool) {
    let op = binary::<K>();
    if let [s] = row {
        let s = *s;
        match chain_is_a {
            true => block.iter_mut().for_each(|v| *v = op.value(*v, s)),
            false => block.iter_mut().for_each(|v| *v = op.value(s, *v)),
        }
        return;
    }
    for chunk in block.chunks_exact_mut(row.len()) {
        match chain_is_a {
            true => chunk.iter_mut().zip(row).for_each(|(v, &s)| *v = op.value(*v, s)),
            false => chunk.iter_mut().zip(row).for_each(|(v, &s)| *v = op.value(s, *v)),
        }
    }
}

/// `out[i] = f(source[i], row[i % width])` (or the operands swapped) for binary op `K`.
fn binary_values_into<T: Scalar, const K: usize>(
    source: &[T],
    out: &mut [MaybeUninit<T>],
    row: &[T],
    chain_is_a: bool,
) {
    let op = binary::<K>();
    let pairs = out.chunks_exact_mut(row.len()).zip(source.chunks_exact(row.len()));
    for (out, source) in pairs {
        let each = out.iter_mut().zip(source).zip(row);
        match chain_is_a {
            true => each.for_each(|((o, &x), &s)| {
                o.write(op.value(x, s));
            }),
            false => each.for_each(|((o, &x), &s)| {
                o.write(op.value(s, x));
            }),
        }
    }
}

/// `g[i] *= f'(x[i])` for unary op `K` (`y = f(x)`).
fn unary_backward<T: Scalar, const K: usize>(x: &[T], y: &[T], g: &mut [T]) {
    let op = unary::<K>();
    for ((g, &x), &y) in g.iter_mut().zip(x).zip(y) {
        *g = *g * op.derivative(x, y);
    }
}

/// `g[i] *= df/dchain`, and `sum[i % width] += g[i] * df/dother` when wanted, for binary op `K`.
fn binary_backward<T: Scalar, const K: usize>(sides: Sides<T>, x: &[T], y: &[T], g: &mut [T]) {
    let op = binary::<K>();
    let Sides {
        row,
        mut sum,
        chain_is_a,
    } = sides;
    let width = row.len();
    let partials = |x: T, s: T, y: T| match chain_is_a {
        true => op.partials(x, s, y),
        false => swap(op.partials(s, x, y)),
    };
    if let ([s], Some([total])) = (row, sum.as_deref_mut()) {
        // One element repeated (a scalar operand): its share gathers in a register,
        // not through memory once per element.
        let mut share = T::zero();
        for ((g, &x), &y) in g.iter_mut().zip(x).zip(y) {
            let (dx, ds) = partials(x, *s, y);
            share += *g * ds;
            *g = *g * dx;
        }
        *total += share;
        return;
    }
    let rows = g
        .chunks_exact_mut(width)
        .zip(x.chunks_exact(width))
        .zip(y.chunks_exact(width));
    match sum {
        Some(sum) => {
            for ((g, x), y) in rows {
                for ((((g, &x), &y), &s), total) in g.iter_mut().zip(x).zip(y).zip(row).zip(sum.iter_mut()) {
                    let (dx, ds) = partials(x, s, y);
                    *total += *g * ds;
                    *g = *g * dx;
                }
            }
        }
        None => {
            for ((g, x), y) in rows {
                for (((g, &x), &y), &s) in g.iter_mut().zip(x).zip(y).zip(row) {
                    *g = *g * partials(x, s, y).0;
                }
            }
        }
    }
}

fn swap<T>((a, b): (T, T)) -> (T, T) {
    (b, a)
}
