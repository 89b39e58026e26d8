//! The schedule of elementwise fusion: which nodes of a program the runtime
//! runs as one fused chain (a [`Group`]), and which it computes inside their
//! reader, found once per program from its shapes and the op tables. The
//! runtime executes the schedule (`crate::runtime::fusion`); the memory
//! model ([`crate::ir::memory`]) replays it, which is why it lives here,
//! below both the runtime and the batcher that predicts memory.
//!
//! A group is a chain of elementwise ops (unary ops, and binary ops whose
//! other operand repeats along the chain value: a bias, a scalar, a value of
//! the same shape), each link read only by the next, that starts from any
//! value (a matmul's result, an input) and keeps its shape; the values inside
//! a group are never materialized. A transpose read once, by a matmul, is
//! read as a view.

use crate::ir::{main_children, main_uses, Binary, Op, PartialReads, Program, Structural, Unary, VectorKernel};

/// Passes (elementwise, fused chains) over at least this many elements are
/// split over the cores; shorter ones run on the calling thread (a hand-off
/// costs microseconds). The runtime splits by it and the cost model prices by it.
pub const PARALLEL_FROM: usize = 1 << 16;

/// Products of at least this many multiply-adds (a 1024-row batch through a
/// 64 x 64 layer) run on every core; smaller ones stay on the calling
/// thread, where a thread hand-off costs more than it saves.
pub const GEMM_THREADS_FROM: usize = 1 << 22;

/// A product of at most this many rows by a transposed row-major matrix
/// (`x @ transpose(W)`, read as a view) ...
pub const FEW_ROWS_UP_TO: usize = 8;
/// ... at least this deep runs as `W @ transpose(x)`, W streamed once ...
pub const FEW_ROWS_MIN_DEPTH: usize = 64;
/// ... and up to this many rows, as one matrix-vector product per row.
pub const GEMV_ROWS_UP_TO: usize = 4;

/// One link of a fused chain.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// A unary op.
    Unary {
        /// Its place in [`Unary::ALL`].
        op: usize,
        /// The vectorized kernel the runtime runs for it, if it has one.
        kernel: Option<VectorKernel>,
    },
    /// A binary op between the chain value and node `other` (which repeats along it).
    Binary {
        /// Its place in [`Binary::ALL`].
        op: usize,
        /// The node of the other operand.
        other: usize,
        /// Whether the chain value is the left operand.
        chain_is_a: bool,
    },
}

impl Step {
    /// Whether sweeping this link back reads the value entering it (`reads(true)`)
    /// or its result (`reads(false)`); `other_wanted`: the other operand's
    /// cotangent is gathered too. As the op tables declare it: tanh's
    /// `1 - y^2` reads only the result, `+` reads neither.
    pub fn reads(self, entering: bool, other_wanted: bool) -> bool {
        match self {
            Step::Unary { op, .. } => {
                let reads = Unary::ALL[op].derivative_reads();
                if entering {
                    reads.x
                } else {
                    reads.y
                }
            }
            Step::Binary { op, chain_is_a, .. } => {
                let (chain, other) = if chain_is_a { (0, 1) } else { (1, 0) };
                let var = |reads: PartialReads| match (entering, chain_is_a) {
                    (false, _) => reads.y,
                    (true, true) => reads.a,
                    (true, false) => reads.b,
                };
                let op = Binary::ALL[op];
                var(op.partial_reads(chain)) || (other_wanted && var(op.partial_reads(other)))
            }
        }
    }
}

/// A chain of elementwise ops the runtime runs as one pass.
#[derive(Clone, Debug)]
pub struct Group {
    /// The node whose value the chain starts from.
    input: usize,
    /// The chain's nodes, first to last (the last is the group's result).
    nodes: Vec<usize>,
    steps: Vec<Step>,
}

impl Group {
    /// The node whose value the chain starts from.
    pub fn input(&self) -> usize {
        self.input
    }

    /// The chain's nodes, first to last; the last one's value is the group's result.
    pub fn nodes(&self) -> &[usize] {
        &self.nodes
    }

    /// `per_link` (one entry per link, as the runtime's backward pass returns the
    /// other operands' cotangents) paired with each link's other operand.
    pub fn others_with<'g, V: 'g>(&'g self, per_link: Vec<Option<V>>) -> impl Iterator<Item = (usize, V)> + 'g {
        self.others().zip(per_link).filter_map(|(node, v)| Some((node?, v?)))
    }

    /// The links, first to last.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The other operand of each binary link, by link (None for a unary one).
    pub fn others(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        self.steps.iter().map(|step| match step {
            Step::Unary { .. } => None,
            Step::Binary { other, .. } => Some(*other),
        })
    }
}

/// Which nodes run fused, found once per program.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The group each node ends, by its last node.
    groups: Vec<Option<Group>>,
    /// Whether a node is computed inside its reader, never on its own: inside
    /// a group, or a transpose that a matmul reads as a view.
    interior: Vec<bool>,
    /// For a transpose read as a view, the node it transposes.
    views: Vec<Option<usize>>,
    /// What the main sweep computes before each node: [`main_children`], and
    /// for a group's last node the values the whole group reads.
    children: Vec<Vec<usize>>,
}

impl Schedule {
    /// The schedule of `program`: with `fuse`, every chain of two or more
    /// elementwise ops is a group; without, every node runs on its own.
    pub fn new(program: &Program, fuse: bool) -> Self {
        let count = program.node_count();
        let mut schedule = Schedule {
            groups: vec![None; count],
            interior: vec![false; count],
            views: vec![None; count],
            children: (0..count).map(|i| main_children(program, i)).collect(),
        };
        if fuse {
            schedule.fuse(program);
            schedule.view_transposes(program);
        }
        schedule
    }

    /// A transpose read once, by a matmul, is not copied: the matmul reads
    /// the transposed node through a view (the GEMM takes any strides), and
    /// its cotangent goes straight to that node.
    fn view_transposes(&mut self, program: &Program) {
        let uses = main_uses(program);
        let per_row = &program.loops().per_row;
        for i in (0..program.node_count()).filter(|&i| !per_row[i]) {
            let Op::MatMul(operands) = &program.expr[i.into()] else {
                continue;
            };
            for c in operands.iter().map(|&c| usize::from(c)) {
                let Some((Structural::Transpose, [inner])) = program.expr[c.into()].as_structural() else {
                    continue;
                };
                if uses[c] == 1 && !per_row[c] && !self.interior[c] {
                    let inner = usize::from(*inner);
                    self.views[c] = Some(inner);
                    self.interior[c] = true;
                    self.children[i]
                        .iter_mut()
                        .filter(|k| **k == c)
                        .for_each(|k| *k = inner);
                }
            }
        }
    }

    /// For a transpose a matmul reads as a view, the node it transposes.
    pub fn view_of(&self, i: usize) -> Option<usize> {
        self.views[i]
    }

    fn fuse(&mut self, program: &Program) {
        let uses = main_uses(program);
        let loops = program.loops();
        let mut chains: Vec<Option<Group>> = vec![None; program.node_count()];
        for i in 0..program.node_count() {
            if loops.per_row[i] {
                continue;
            }
            // Through the operand whose chain it extends, if one does; else a chain starts here.
            let candidates = links(program, i);
            let extends =
                |&(from, _): &(usize, Step)| uses[from] == 1 && !loops.per_row[from] && chains[from].is_some();
            let extending = candidates.iter().find(|c| extends(c)).copied();
            let Some((from, step)) = extending.or(candidates.first().copied()) else {
                continue;
            };
            let extends = extending.is_some();
            let mut group = match extends {
                true => chains[from].take().expect("checked"),
                false => Group {
                    input: from,
                    nodes: vec![],
                    steps: vec![],
                },
            };
            group.nodes.push(i);
            group.steps.push(step);
            chains[i] = Some(group);
        }
        for group in chains.into_iter().flatten().filter(|g| g.nodes.len() >= 2) {
            let (&last, inside) = group.nodes.split_last().expect("two or more");
            for &n in inside {
                self.interior[n] = true;
            }
            self.children[last] = std::iter::once(group.input).chain(group.others().flatten()).collect();
            self.groups[last] = Some(group);
        }
    }

    /// The group node `i` ends, if it ends one.
    pub fn group(&self, i: usize) -> Option<&Group> {
        self.groups[i].as_ref()
    }

    /// Whether node `i` is computed inside its reader (a group, or a matmul
    /// reading a transpose as a view): its value never exists on its own.
    pub fn is_interior(&self, i: usize) -> bool {
        self.interior[i]
    }

    /// What the main sweep computes before node `i` (see [`main_children`]);
    /// for a group's last node, what the group reads.
    pub fn children(&self, i: usize) -> &[usize] {
        &self.children[i]
    }

    /// Every group, by its last node's position.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().flatten()
    }
}

/// Node `i` as a link of a chain: each operand the chain may come through, with the step.
fn links(program: &Program, i: usize) -> Vec<(usize, Step)> {
    let shape = program.shape(i.into()).dims();
    let dims = |n: usize| program.shape(n.into()).dims();
    let node = &program.expr[i.into()];
    if let Op::Unary(op, a) = node {
        let kernel = op.vector_kernel();
        let op = Unary::ALL
            .iter()
            .position(|u| u == op)
            .expect("every op is in the table");
        return vec![(usize::from(*a), Step::Unary { op, kernel })];
    }
    if let Op::Binary(op, [a, b]) = node {
        let (a, b) = (usize::from(*a), usize::from(*b));
        let op = Binary::ALL
            .iter()
            .position(|o| o == op)
            .expect("every op is in the table");
        // The other operand must repeat along the chain value: its shape a trailing part of it.
        let step = |other, chain_is_a| Step::Binary { op, other, chain_is_a };
        let mut candidates = vec![];
        if dims(a) == shape && shape.ends_with(dims(b)) {
            candidates.push((a, step(b, true)));
        }
        if dims(b) == shape && shape.ends_with(dims(a)) {
            candidates.push((b, step(a, false)));
        }
        return candidates;
    }
    vec![]
}
