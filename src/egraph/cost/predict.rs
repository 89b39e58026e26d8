//! The time of one run of a whole program, predicted by replaying what the
//! interpreter does with it: the fusion schedule ([`Schedule`]: a fused
//! chain is one pass, a transpose a matmul reads is a view), the loops (a
//! body runs once per row on one row's values; a gradient runs it again
//! before sweeping it back, unless the loop feeds only the loss's mean), the
//! backward sweep over the nodes on the gradient path, the threads (passes
//! and products past the runtime's thresholds), the element size, and where
//! the bytes come from (cache or memory, by working set).

use crate::egraph::cost::emitted::transpose_emitted;
use crate::egraph::cost::{CostProfile, Pass};
use crate::ir::schedule::{FEW_ROWS_MIN_DEPTH, FEW_ROWS_UP_TO, GEMV_ROWS_UP_TO};
use crate::ir::{
    early_loop, main_uses, Dtype, Flops, LoopBody, Op, Program, Run, Schedule, Shape, Structural, Window,
    GEMM_THREADS_FROM,
};
use egg::{Id, Language};

/// The predicted time of one run of `program` in `dtype`, in µs.
pub fn predict_us(profile: &CostProfile, program: &Program, run: Run, dtype: Dtype) -> f64 {
    predict_times(profile, program, run, dtype).total_us()
}

/// Where the predicted time of one run goes, node by node (as `bench --ops`
/// measures it: a fused chain's time under its last node, a loop's under its own).
#[derive(Clone, Debug, PartialEq)]
pub struct PredictedTimes {
    /// The run's own cost, beyond its nodes.
    pub fixed_us: f64,
    /// Computing each node (and, for a loop fed only by the loss's mean, sweeping it back too).
    pub forward_us: Vec<f64>,
    /// Sending each node's cotangent to its operands.
    pub backward_us: Vec<f64>,
}

impl PredictedTimes {
    /// The whole run.
    pub fn total_us(&self) -> f64 {
        self.fixed_us + self.forward_us.iter().sum::<f64>() + self.backward_us.iter().sum::<f64>()
    }
}

/// The predicted time of one run of `program` in `dtype`, node by node.
pub fn predict_times(profile: &CostProfile, program: &Program, run: Run, dtype: Dtype) -> PredictedTimes {
    Model::new(profile, program, dtype).run(run)
}

/// A program, its schedule and a profile: what the prediction reads.
struct Model<'a> {
    p: &'a CostProfile,
    program: &'a Program,
    pass: Pass<'a>,
    schedule: Schedule,
}

impl<'a> Model<'a> {
    fn new(p: &'a CostProfile, program: &'a Program, dtype: Dtype) -> Self {
        Model {
            p,
            program,
            pass: Pass::new(p, dtype),
            schedule: Schedule::new(program, true),
        }
    }

    fn elements(&self, i: usize) -> f64 {
        self.program.shape(i.into()).elements() as f64
    }

    fn run(&self, run: Run) -> PredictedTimes {
        let expr = self.program.expr.as_ref();
        let loops = self.program.loops();
        let early = match run {
            Run::Grad => early_loop(self.program, &main_uses(self.program)).map(|(l, r, _)| (l, r)),
            Run::Eval => None,
        };
        let mut times = PredictedTimes {
            fixed_us: match run {
                Run::Eval => self.p.run_us,
                Run::Grad => self.p.run_us + self.p.grad_run_us,
            },
            forward_us: vec![0.0; expr.len()],
            backward_us: vec![0.0; expr.len()],
        };
        for i in 0..expr.len() {
            if loops.per_row[i] || self.schedule.is_interior(i) {
                continue;
            }
            times.forward_us[i] = match &loops.bodies[i] {
                Some(body) if early.is_some_and(|(l, _)| l == i) => self.loop_us(body, true, true),
                Some(body) => self.loop_us(body, true, false),
                None => self.forward_us(i),
            };
        }
        if run == Run::Eval {
            return times;
        }
        let on_path = self.on_gradient_path();
        // How many cotangents each node receives: more than one are added up.
        let mut received = vec![0usize; expr.len()];
        for i in (0..expr.len()).rev() {
            let node = &expr[i];
            if !on_path[i] || node.as_var().is_some() || loops.per_row[i] || self.schedule.is_interior(i) {
                continue;
            }
            if early.is_some_and(|(_, root)| root == i) {
                continue;
            }
            if let Some(body) = &loops.bodies[i] {
                if early.is_none_or(|(l, _)| l != i) {
                    times.backward_us[i] = self.loop_us(body, false, true);
                }
                body.outer
                    .iter()
                    .filter(|&&c| on_path[c])
                    .for_each(|&c| received[c] += 1);
                continue;
            }
            let senders = self.schedule.children(i);
            let wanted: Vec<usize> = senders
                .iter()
                .copied()
                .filter(|&c| on_path[c] && expr[c].as_num().is_none())
                .collect();
            times.backward_us[i] = self.backward_us(i, &wanted);
            let windowed = self.window(i).is_some();
            for &c in &wanted {
                let target = self.schedule.view_of(c).unwrap_or(c);
                // A window's cotangent is added in place (priced in its pass); the first one fills zeros.
                times.backward_us[i] += match (windowed, received[target] > 0) {
                    (true, true) => 0.0,
                    (true, false) => self.pass.bytes_us(self.elements(target) * self.pass.esize),
                    (false, true) => self.pass.add_us(self.elements(target)),
                    (false, false) => 0.0,
                };
                received[target] += 1;
            }
        }
        times
    }

    /// Whether each node depends on a param (on an input when there are none):
    /// what a train step differentiates with respect to.
    fn on_gradient_path(&self) -> Vec<bool> {
        let wrt = match self.program.params.is_empty() {
            true => &self.program.inputs,
            false => &self.program.params,
        };
        let expr = self.program.expr.as_ref();
        let mut on_path = vec![false; expr.len()];
        for (i, node) in expr.iter().enumerate() {
            on_path[i] = match node.as_var() {
                Some(v) => wrt.iter().any(|d| d.name == v.as_str()),
                None => node.children().iter().any(|&c| on_path[usize::from(c)]),
            };
        }
        on_path
    }

    /// Computing node `i` in the main sweep: a fused chain if it ends one, else its op.
    fn forward_us(&self, i: usize) -> f64 {
        let node = &self.program.expr[i.into()];
        if node.as_var().is_some() {
            return self.p.var_us;
        }
        if node.is_leaf() {
            return 0.0;
        }
        match self.schedule.group(i) {
            Some(group) => {
                let n = self.elements(i);
                let others: f64 = group.others().flatten().map(|o| self.elements(o)).sum();
                let ns: f64 = group.steps().iter().map(|s| self.pass.step_ns(*s)).sum();
                self.p.group_us
                    + self.p.fused_step_us * group.steps().len() as f64
                    + self.pass.threaded(
                        n,
                        n * ns / 1000.0 + self.pass.bytes_us((2.0 * n + others) * self.pass.esize),
                    )
            }
            None if matches!(node, Op::Structural(..)) => self.p.structural_op_us + self.op_work_us(i, false),
            None => self.p.op_us + self.op_work_us(i, false),
        }
    }

    /// The work of node `i`'s op on its own (no per-op overhead); `in_loop`: on one row's values, on one thread.
    fn op_work_us(&self, i: usize, in_loop: bool) -> f64 {
        let node = &self.program.expr[i.into()];
        let n = self.elements(i);
        let inputs: f64 = node.children().iter().map(|&c| self.elements(c.into())).sum();
        let pass = &self.pass;
        match node {
            Op::Var(_) | Op::Num(_) | Op::Vmap(_) => 0.0,
            Op::Unary(u, _) => {
                let work = n * pass.element_ns(u.flops()) / 1000.0 + pass.bytes_us(2.0 * n * pass.esize);
                match u.vector_kernel().is_some() && !in_loop {
                    true => pass.threaded(n, work),
                    false => work,
                }
            }
            Op::Binary(b, [x, y]) => {
                let arithmetic = n * pass.element_ns(b.flops()) / 1000.0 + pass.bytes_us((n + inputs) * pass.esize);
                arithmetic + pass.lanes_us(self.broadcast_lanes(i, [usize::from(*x), usize::from(*y)]))
            }
            Op::Reduce(..) => pass.strided_us(inputs),
            Op::ReduceAxis(_, [a, _]) => self.reduce_axis_us(usize::from(*a), n),
            Op::MatMul([a, b]) => self.matmul_us(usize::from(*a), usize::from(*b), i, in_loop),
            Op::Structural(..) => pass.strided_us(n),
            // A row (or chunk) is copied out of the batched value.
            Op::Row(_) | Op::Rows(_) => pass.bytes_us(2.0 * n * pass.esize),
            Op::Map(_) | Op::Chunks(_) | Op::Accumulate(_) => 0.0,
        }
    }

    /// The lanes a binary op giving node `out` walks one by one: none when
    /// each operand is the result's shape or a trailing part of it (one loop
    /// over slices), else one per row of the result's last axis.
    fn broadcast_lanes(&self, out: usize, operands: [usize; 2]) -> f64 {
        let dims = self.program.shape(out.into()).dims();
        let [a, b] = operands.map(|c| self.program.shape(c.into()).dims());
        let one_loop = (a == dims && dims.ends_with(b)) || (b == dims && dims.ends_with(a));
        match one_loop {
            true => 0.0,
            false => self.elements(out) / dims.last().copied().unwrap_or(1).max(1) as f64,
        }
    }

    /// A reduction of node `a` giving `results` elements. The runtime stores
    /// every value row-major and folds it as contiguous blocks (one pass over
    /// the input, one write per result), whatever the axis; each element is a
    /// combine that waits for the one before.
    fn reduce_axis_us(&self, a: usize, results: f64) -> f64 {
        let elements = self.elements(a);
        elements * self.p.fold_ns / 1000.0
            + results * self.pass.element_ns(Flops::Cheap) / 1000.0
            + self.pass.bytes_us((elements + results) * self.pass.esize)
    }

    /// One product `a @ b` giving node `out` (matrices, vectors, or stacks of them).
    fn matmul_us(&self, a: usize, b: usize, out: usize, one_thread: bool) -> f64 {
        let (sa, sb) = (self.program.shape(a.into()).dims(), self.program.shape(b.into()).dims());
        let k = sa.last().copied().unwrap_or(1) as f64;
        let n = self.elements(out);
        let columns = match sb {
            [.., c] if sb.len() >= 2 => *c as f64,
            _ => 1.0,
        };
        // A stack of products: one GEMM call each.
        let calls = match sa.len().max(sb.len()) > 2 {
            true => self
                .program
                .shape(out.into())
                .dims()
                .iter()
                .rev()
                .skip(2)
                .product::<usize>() as f64,
            false => 1.0,
        };
        let touched = self.elements(a) + self.elements(b) + n;
        if let Some(us) = self.few_rows_us(sa, sb, b, one_thread) {
            return us;
        }
        self.pass.gemm_us(n / columns.max(1.0), n, k, touched, one_thread) + self.p.gemm_call_us * (calls - 1.0)
    }

    /// A few rows times a transposed matrix read as a view, which the runtime
    /// runs as `W @ transpose(x)` (one product per row when very few).
    fn few_rows_us(&self, sa: &[usize], sb: &[usize], b: usize, one_thread: bool) -> Option<f64> {
        let ([m, k], [_, n]) = (sa, sb) else { return None };
        let viewed = matches!(
            self.program.expr[b.into()].as_structural(),
            Some((Structural::Transpose, _))
        ) && self.schedule.view_of(b).is_some();
        if !(viewed && *m <= FEW_ROWS_UP_TO && *k >= FEW_ROWS_MIN_DEPTH) {
            return None;
        }
        let (m, k, n) = (*m as f64, *k as f64, *n as f64);
        let matrix = n * k;
        Some(match m as usize <= GEMV_ROWS_UP_TO {
            true => m * self.pass.gemm_us(n, n, k, matrix + k + n, one_thread),
            false => self.pass.gemm_us(n, n * m, k, matrix + m * k + m * n, one_thread) + self.pass.strided_us(m * n),
        })
    }

    /// Sending node `i`'s cotangent to the operands in `wanted` (a fused
    /// chain's: to its input and the other operands it reads).
    fn backward_us(&self, i: usize, wanted: &[usize]) -> f64 {
        let node = &self.program.expr[i.into()];
        let n = self.elements(i);
        let pass = &self.pass;
        let overhead = self.p.backward_op_us + self.p.backward_operand_us * wanted.len().saturating_sub(1) as f64;
        if let Some(group) = self.schedule.group(i) {
            let ns: f64 = group.steps().iter().map(|s| pass.step_ns(*s)).sum();
            let others: f64 = wanted.iter().skip(1).map(|&c| self.elements(c)).sum();
            return overhead
                + self.p.fused_step_us * group.steps().len() as f64
                + pass.threaded(n, n * ns / 1000.0 + pass.bytes_us((4.0 * n + others) * pass.esize));
        }
        if self.window(i).is_some() {
            // The runtime adds the cotangent into the window of the operand's (`add_into_window`).
            return overhead + pass.add_us(n);
        }
        if let Op::Structural(op, children) = node {
            let positions: Vec<bool> = children.iter().map(|c| wanted.contains(&usize::from(*c))).collect();
            return overhead + self.structural_vjp_us(i, *op, children, &|k| positions[k]);
        }
        overhead + self.vjp_work_us(i, node, wanted.len(), false)
    }

    /// The window of its operand node `i` is (an `index` or `slice` not in a
    /// fused group), whose cotangent the runtime adds in place.
    fn window(&self, i: usize) -> Option<Window> {
        let (_, window) = self.program.window(i.into())?;
        self.schedule.group(i).is_none().then_some(window)
    }

    /// Running the transpose rule of the structural op at node `i`: each
    /// node the rule emits is a kernel, with its per-op cost and its copy.
    fn structural_vjp_us(&self, i: usize, s: Structural, children: &[Id], wanted: &dyn Fn(usize) -> bool) -> f64 {
        let arrays = s.arrays_of(children.len()).unwrap_or(children.len());
        let operands: Vec<&Shape> = children[..arrays].iter().map(|&c| self.program.shape(c)).collect();
        let ints: Vec<usize> = children[arrays..]
            .iter()
            .map(|&c| self.program.literal(c).unwrap_or(0.0) as usize)
            .collect();
        let emitted = transpose_emitted(s, &operands, &ints, self.program.shape(i.into()), wanted);
        emitted.ops * self.p.structural_op_us + self.pass.strided_us(emitted.elements)
    }

    /// The work of node `i`'s VJP for `wanted` operands (no per-op overhead).
    fn vjp_work_us(&self, i: usize, node: &Op, wanted: usize, in_loop: bool) -> f64 {
        let n = self.elements(i);
        let pass = &self.pass;
        let inputs: f64 = node.children().iter().map(|&c| self.elements(c.into())).sum();
        match node {
            Op::Var(_) | Op::Num(_) | Op::Vmap(_) | Op::Map(_) | Op::Chunks(_) | Op::Accumulate(_) => 0.0,
            Op::Unary(u, _) => n * pass.element_ns(u.flops()) / 1000.0 + pass.bytes_us(3.0 * n * pass.esize),
            Op::Binary(..) => {
                // Each operand's cotangent, summed down to its shape when it was broadcast.
                let summed: f64 = node
                    .children()
                    .iter()
                    .filter(|&&c| self.elements(c.into()) < n)
                    .map(|_| pass.strided_us(n))
                    .sum();
                wanted as f64 * (n * pass.element_ns(Flops::Cheap) / 1000.0 + pass.bytes_us(3.0 * n * pass.esize))
                    + summed
            }
            Op::Reduce(..) | Op::ReduceAxis(..) => pass.strided_us(inputs),
            Op::MatMul([a, b]) => {
                let one = self.matmul_us(usize::from(*a), usize::from(*b), i, in_loop);
                let k = self.program.shape(*a).dims().last().copied().unwrap_or(1) as f64;
                // Two products of one thread each run side by side when both are large.
                match wanted == 2 && !in_loop && n * k >= GEMM_THREADS_FROM as f64 {
                    true => self.matmul_us(usize::from(*a), usize::from(*b), i, true),
                    false => wanted as f64 * one,
                }
            }
            Op::Structural(..) => pass.strided_us(n.max(inputs)),
            Op::Row(_) | Op::Rows(_) => pass.bytes_us(2.0 * n * pass.esize),
        }
    }

    /// A loop: its body once per row (forward, with `forward`; swept back, with
    /// `backward`, after computing the row again unless `forward` is also set),
    /// and its rows written into the result.
    fn loop_us(&self, body: &LoopBody, forward: bool, backward: bool) -> f64 {
        let expr = self.program.expr.as_ref();
        let row_forward: f64 = body
            .nodes
            .iter()
            .filter(|&&n| !expr[n].is_leaf())
            .map(|&n| self.p.loop_op_us + self.op_work_us(n, true))
            .sum();
        let root = *body.nodes.last().expect("a body has a root");
        let put = match body.sums {
            // Added into the accumulator.
            true => self.pass.add_us(self.elements(root)),
            false => self.pass.bytes_us(2.0 * self.elements(root) * self.pass.esize),
        };
        let mut per_row = 0.0;
        if forward || backward {
            per_row += row_forward;
        }
        if forward {
            per_row += put;
        }
        if backward {
            // Every operand's cotangent (literals aside), as the loop's sweep computes them.
            per_row += put
                + body
                    .nodes
                    .iter()
                    .filter(|&&n| !expr[n].is_leaf())
                    .map(|&n| {
                        let wanted = expr[n]
                            .children()
                            .iter()
                            .filter(|&&c| expr[usize::from(c)].as_num().is_none())
                            .count();
                        self.p.loop_backward_op_us
                            + self.p.backward_operand_us * wanted.saturating_sub(1) as f64
                            + self.vjp_work_us(n, &expr[n], wanted, true)
                    })
                    .sum::<f64>();
        }
        self.p.loop_run_us + body.iterations() as f64 * (per_row + self.p.loop_row_us)
    }
}
