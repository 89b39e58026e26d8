//! Which nodes could run as one op: signatures, depths and groups, found on
//! the program in one pass (no subsets enumerated).
//!
//! A node's signature is its op with its attributes (literal operands are
//! nodes, so an axis or a row number is part of it), and for each operand
//! either the very node, when the operand does not depend on an input (a
//! param, a literal, anything computed from them: such operands stay shared,
//! as DyNet's signature names the matrix of a product), or its shape. Nodes
//! of one signature at one depth (the longest path from the leaves) form a
//! group: TensorFlow Fold's depth rule. Depth, not DyNet's agenda, because
//! the decision is static and priced afterwards by the cost model: the rule
//! only has to propose groups that are independent (two nodes at one depth
//! never depend on each other) and large, and the search then keeps the
//! groups that pay.

use crate::ir::{Op, Program};
use egg::{Id, Language};
use std::collections::HashMap;

/// Nodes of one signature at one depth, in the order they are stacked.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// The program's nodes, in stacking order.
    pub members: Vec<usize>,
    /// Their depth.
    pub depth: usize,
    /// Members of different sizes (along the first axis), batched by
    /// concatenating them, not stacking: elementwise ops only.
    pub ragged: bool,
}

/// One operand in a signature.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Operand {
    /// The same node for every member (it depends on no input).
    Node(Id),
    /// A value of this shape, different per member.
    Shaped(Vec<usize>),
}

/// The groups of `program` (two or more members each), by depth, and the
/// number of distinct (depth, signature) pairs among the computing ops
/// ([`computes`]) that depend on an input: the fewest of those ops the
/// program can run with.
pub(crate) fn find_groups(program: &Program) -> (Vec<Group>, usize) {
    let expr = program.expr.as_ref();
    let varies = depends_on_input(program);
    let mut depth = vec![0usize; expr.len()];
    let mut keys: HashMap<(usize, Op, Vec<Operand>), usize> = HashMap::new();
    let mut groups: Vec<Group> = vec![];
    for (i, node) in expr.iter().enumerate() {
        depth[i] = node
            .children()
            .iter()
            .map(|&c| depth[usize::from(c)] + 1)
            .max()
            .unwrap_or(0);
        if !varies[i] || !batchable(node) {
            continue;
        }
        let operands = node
            .children()
            .iter()
            .map(|&c| match varies[usize::from(c)] {
                true => Operand::Shaped(program.shape(c).dims().to_vec()),
                false => Operand::Node(c),
            })
            .collect();
        let kind = node.clone().map_children(|_| Id::from(0));
        let next = groups.len();
        let g = *keys.entry((depth[i], kind, operands)).or_insert(next);
        if g == next {
            groups.push(Group {
                members: vec![],
                depth: depth[i],
                ragged: false,
            });
        }
        groups[g].members.push(i);
    }
    let signatures = groups
        .iter()
        .filter(|g| computes(&program.expr[g.members[0].into()]))
        .count();
    let ragged = ragged_groups(program, &groups, &depth, &varies);
    // Each ragged group runs its members' signatures as one.
    let signatures = signatures - ragged.iter().map(|g| g.members.len() - 1).sum::<usize>();
    groups.retain(|g| g.members.len() >= 2);
    groups.extend(ragged);
    groups.sort_by_key(|g| (g.depth, g.members[0]));
    order_for_layout(program, &mut groups);
    (groups, signatures)
}

/// Elementwise nodes left alone by the exact signatures because their sizes
/// differ, grouped again with the size of the first axis left out (DyNet
/// concatenates such operands): one op over the concatenation, each member a
/// slice of it. Only where that is an identity: an elementwise op (no
/// broadcasting: every operand varies and has the node's shape), rank 1 or more.
fn ragged_groups(program: &Program, groups: &[Group], depth: &[usize], varies: &[bool]) -> Vec<Group> {
    let expr = program.expr.as_ref();
    let mut keys: HashMap<(usize, Op, Vec<usize>), usize> = HashMap::new();
    let mut found: Vec<Group> = vec![];
    for &i in groups.iter().filter(|g| g.members.len() == 1).map(|g| &g.members[0]) {
        let node = &expr[i];
        let dims = program.shape(Id::from(i)).dims().to_vec();
        let elementwise = matches!(node, Op::Unary(..) | Op::Binary(..))
            && !dims.is_empty()
            && node
                .children()
                .iter()
                .all(|&c| varies[usize::from(c)] && program.shape(c).dims() == dims.as_slice());
        if !elementwise {
            continue;
        }
        let kind = node.clone().map_children(|_| Id::from(0));
        let next = found.len();
        let g = *keys.entry((depth[i], kind, dims[1..].to_vec())).or_insert(next);
        if g == next {
            found.push(Group {
                members: vec![],
                depth: depth[i],
                ragged: true,
            });
        }
        found[g].members.push(i);
    }
    found.retain(|g| g.members.len() >= 2);
    found
}

/// Whether each node depends on an input of `program`.
pub(crate) fn depends_on_input(program: &Program) -> Vec<bool> {
    let mut varies: Vec<bool> = Vec::with_capacity(program.node_count());
    for node in program.expr.as_ref() {
        let v = match node.as_var() {
            Some(name) => program.is_input(name.as_str()),
            None => node.children().iter().any(|&c| varies[usize::from(c)]),
        };
        varies.push(v);
    }
    varies
}

/// Whether the op has a batched form (the batching rules cover it).
fn batchable(op: &Op) -> bool {
    match op {
        Op::Unary(..) | Op::Binary(..) | Op::Reduce(..) | Op::ReduceAxis(..) | Op::MatMul(_) | Op::Structural(..) => {
            true
        }
        Op::Num(_)
        | Op::Var(_)
        | Op::Vmap(_)
        | Op::Map(_)
        | Op::Row(_)
        | Op::Chunks(_)
        | Op::Rows(_)
        | Op::Accumulate(_) => false,
    }
}

/// Whether the op computes (a kernel that does arithmetic), rather than
/// only moving values (structural ops) or naming them (leaves, loops).
pub(crate) fn computes(op: &Op) -> bool {
    match op {
        Op::Unary(..) | Op::Binary(..) | Op::Reduce(..) | Op::ReduceAxis(..) | Op::MatMul(_) => true,
        Op::Structural(..)
        | Op::Num(_)
        | Op::Var(_)
        | Op::Vmap(_)
        | Op::Map(_)
        | Op::Row(_)
        | Op::Chunks(_)
        | Op::Rows(_)
        | Op::Accumulate(_) => false,
    }
}

/// Orders each group's members as the group it reads is ordered, when its
/// members read one member each of one earlier group: then the stacked
/// operand is that group's stacked result as it is, not a gather of it.
fn order_for_layout(program: &Program, groups: &mut [Group]) {
    let mut place: HashMap<usize, (usize, usize)> = HashMap::new();
    for (g, group) in groups.iter_mut().enumerate() {
        let arity = program.expr[group.members[0].into()].children().len();
        for p in 0..arity {
            let operand = |m: usize| usize::from(program.expr[m.into()].children()[p]);
            let places: Option<Vec<(usize, usize)>> =
                group.members.iter().map(|&m| place.get(&operand(m)).copied()).collect();
            let Some(places) = places else { continue };
            let from = places[0].0;
            let mut slots: Vec<usize> = places
                .iter()
                .map(|&(h, slot)| (h == from).then_some(slot))
                .collect::<Option<_>>()
                .unwrap_or_default();
            slots.sort_unstable();
            slots.dedup();
            if slots.len() != group.members.len() {
                continue;
            }
            group.members.sort_by_key(|&m| place[&operand(m)].1);
            break;
        }
        for (slot, &m) in group.members.iter().enumerate() {
            place.insert(m, (g, slot));
        }
    }
}
