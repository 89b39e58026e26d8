//! Several sums over the same chunks carried by one loop. A program with
//! `accumulate(b1, n, k)`, ..., `accumulate(bm, n, k)` runs m loops, and each
//! runs the per-chunk values its body reads: the forward pass of a chunk is
//! recomputed once per sum (per parameter gradient). [`one_loop`] makes
//! them one `accumulate(concat(reshape(b1, 0, s1), ..., reshape(bm, 0, sm), 0), n, k)`,
//! whose one accumulator holds every sum flattened side by side; each sum is
//! its slice, reshaped back (`reshape(slice(acc, 0, o, o + s), 0, dims...)`).
//! Each chunk's values are computed once and every sum is added in, as
//! gradient accumulation does. Sums one of which reads another's result
//! (through any path) stay in loops of their own, run one after the other.

use crate::ir::op::{Num, Op};
use crate::ir::program::Program;
use crate::ir::shape::ShapeError;
use crate::ir::structural::Structural;
use egg::{Id, Language, RecExpr};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// `program` with the `accumulate` loops over the same rows and chunks that
/// do not read each other's results merged into one loop each (the program
/// itself when there are none to merge).
pub fn one_loop(program: &Program) -> Result<Program, ShapeError> {
    let expr = program.expr.as_ref();
    let group_of = groups(program);
    let groups = group_of.iter().flatten().max().map_or(0, |&g| g + 1);
    let mut members: Vec<Vec<usize>> = vec![vec![]; groups];
    for (i, g) in group_of.iter().enumerate() {
        if let Some(g) = g {
            members[*g].push(i);
        }
    }
    if members.iter().all(|m| m.len() < 2) {
        return Ok(program.clone());
    }
    let order = merged_order(expr, &group_of, &members);
    let mut out: Vec<Op> = Vec::with_capacity(expr.len() + 8 * group_of.len());
    let push = |op: Op, out: &mut Vec<Op>| {
        out.push(op);
        Id::from(out.len() - 1)
    };
    let mut placed: Vec<Option<Id>> = vec![None; expr.len()];
    let mut merged: Vec<Option<Id>> = vec![None; groups];
    for slot in order {
        match slot {
            Slot::Node(i) => {
                let op = match group_of[i] {
                    Some(g) if members[g].len() > 1 => {
                        let offset: usize = members[g]
                            .iter()
                            .take_while(|&&m| m != i)
                            .map(|&m| program.shape(Id::from(m)).elements())
                            .sum();
                        let shape = program.shape(Id::from(i));
                        let mut ints = vec![0, offset, offset + shape.elements()];
                        let whole = merged[g].expect("the loop runs before its sums are read");
                        let slice = structural(Structural::Slice, whole, &ints, &mut out);
                        ints = vec![0];
                        ints.extend(shape.dims());
                        structural(Structural::Reshape, slice, &ints, &mut out)
                    }
                    _ => push(
                        expr[i]
                            .clone()
                            .map_children(|c| placed[usize::from(c)].expect("placed")),
                        &mut out,
                    ),
                };
                placed[i] = Some(op);
            }
            Slot::Group(g) => {
                let mut parts = vec![];
                for &m in &members[g] {
                    let Op::Accumulate([body, _, _]) = &expr[m] else {
                        unreachable!("a group holds accumulate nodes")
                    };
                    let elements = program.shape(*body).elements();
                    let body = placed[usize::from(*body)].expect("placed");
                    parts.push(structural(Structural::Reshape, body, &[0, elements], &mut out));
                }
                parts.push(push(Op::Num(Num(0.0)), &mut out));
                let flat = push(Op::Structural(Structural::Concat, parts.into()), &mut out);
                let Op::Accumulate([_, n, k]) = &expr[members[g][0]] else {
                    unreachable!("a group holds accumulate nodes")
                };
                let (n, k) = (placed[usize::from(*n)], placed[usize::from(*k)]);
                merged[g] = Some(push(
                    Op::Accumulate([flat, n.expect("placed"), k.expect("placed")]),
                    &mut out,
                ));
            }
        }
    }
    let outputs = program
        .outputs
        .iter()
        .map(|(name, id)| (name.clone(), placed[usize::from(*id)].expect("placed")))
        .collect();
    let names = (0..expr.len())
        .filter_map(|i| Some((placed[i]?, program.name_hint(Id::from(i))?.clone())))
        .collect();
    Program::new(
        program.inputs.clone(),
        program.params.clone(),
        RecExpr::from(out),
        outputs,
        names,
    )
}

/// `op(array, ints...)` pushed onto `out`, its integer operands as literals.
fn structural(op: Structural, array: Id, ints: &[usize], out: &mut Vec<Op>) -> Id {
    let mut children = vec![array];
    for &n in ints {
        out.push(Op::Num(Num(n as f64)));
        children.push(Id::from(out.len() - 1));
    }
    out.push(Op::Structural(op, children.into()));
    Id::from(out.len() - 1)
}

/// The loop each `accumulate` node joins (`None` for other nodes): the first
/// one over the same rows and chunks that it does not read, directly or
/// through other loops; else one of its own.
fn groups(program: &Program) -> Vec<Option<usize>> {
    let expr = program.expr.as_ref();
    // The loops each node reads, and the loops each loop reads.
    let mut reads: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); expr.len()];
    let mut loop_reads: Vec<BTreeSet<usize>> = vec![];
    let mut keys: Vec<(Option<f64>, Option<f64>)> = vec![];
    let mut group_of = vec![None; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        let mut read: BTreeSet<usize> = node
            .children()
            .iter()
            .flat_map(|&c| reads[usize::from(c)].iter().copied())
            .collect();
        if let Op::Accumulate([_, n, k]) = node {
            // Every loop reached through the loops it reads (they grow as members join).
            let mut frontier: Vec<usize> = read.iter().copied().collect();
            while let Some(g) = frontier.pop() {
                for &h in &loop_reads[g] {
                    if read.insert(h) {
                        frontier.push(h);
                    }
                }
            }
            let key = (program.literal(*n), program.literal(*k));
            let g = (0..keys.len())
                .find(|&g| keys[g] == key && !read.contains(&g))
                .unwrap_or_else(|| {
                    keys.push(key);
                    loop_reads.push(BTreeSet::new());
                    keys.len() - 1
                });
            loop_reads[g].extend(read.iter().copied());
            group_of[i] = Some(g);
            read.insert(g);
        }
        reads[i] = read;
    }
    group_of
}

/// A node of the merged program, in the order it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// A node of the program (a sum merged into a loop: its slice of the loop's accumulator).
    Node(usize),
    /// The merged loop of a group.
    Group(usize),
}

/// The program's nodes and the merged loops, children before parents (a
/// merged loop after every member's body, its sums after it), otherwise in
/// the program's order.
fn merged_order(expr: &[Op], group_of: &[Option<usize>], members: &[Vec<usize>]) -> Vec<Slot> {
    let merged = |i: usize| group_of[i].filter(|&g| members[g].len() > 1);
    let children = |slot: Slot| -> Vec<Slot> {
        match slot {
            Slot::Node(i) => match merged(i) {
                Some(g) => vec![Slot::Group(g)],
                None => expr[i].children().iter().map(|&c| Slot::Node(usize::from(c))).collect(),
            },
            Slot::Group(g) => members[g]
                .iter()
                .flat_map(|&m| expr[m].children().iter().map(|&c| Slot::Node(usize::from(c))))
                .collect(),
        }
    };
    let slots: Vec<Slot> = (0..expr.len())
        .map(Slot::Node)
        .chain((0..members.len()).filter(|&g| members[g].len() > 1).map(Slot::Group))
        .collect();
    let index = |slot: Slot| match slot {
        Slot::Node(i) => i,
        Slot::Group(g) => expr.len() + g,
    };
    // Kahn's algorithm, the smallest ready position first (a group at its first member's).
    let position = |slot: Slot| match slot {
        Slot::Node(i) => (i, 1),
        Slot::Group(g) => (members[g][0], 0),
    };
    let mut waiting = vec![0usize; expr.len() + members.len()];
    let mut parents: Vec<Vec<Slot>> = vec![vec![]; expr.len() + members.len()];
    for &slot in &slots {
        let mut seen = BTreeSet::new();
        for child in children(slot) {
            if seen.insert(child) {
                waiting[index(slot)] += 1;
                parents[index(child)].push(slot);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<((usize, usize), Slot)>> = slots
        .iter()
        .filter(|&&s| waiting[index(s)] == 0)
        .map(|&s| Reverse((position(s), s)))
        .collect();
    let mut order = Vec::with_capacity(slots.len());
    while let Some(Reverse((_, slot))) = ready.pop() {
        order.push(slot);
        for &parent in &parents[index(slot)] {
            waiting[index(parent)] -= 1;
            if waiting[index(parent)] == 0 {
                ready.push(Reverse((position(parent), parent)));
            }
        }
    }
    debug_assert_eq!(order.len(), slots.len(), "merging loops made a cycle");
    order
}
