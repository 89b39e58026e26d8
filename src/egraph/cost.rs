//! The cost model: a fixed overhead per op executed, plus work (flops) and
//! memory traffic (bytes), with a profile per kind of machine.

use crate::ir::{early_loop, main_uses, Op, Program, Run, Shape};
use egg::Language;
use serde::{Deserialize, Serialize};

/// What one op costs on a kind of machine. Costs are in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostProfile {
    /// The profile's name.
    pub name: String,
    /// Fixed cost of executing one op (dispatch, allocation; kernel launch on a GPU), µs.
    pub overhead_us: f64,
    /// Floating-point operations per µs.
    pub flops_per_us: f64,
    /// Bytes read and written per µs.
    pub bytes_per_us: f64,
}

impl CostProfile {
    /// This project's interpreter on a CPU core. The numbers come from
    /// `batchgraph calibrate` (`crate::measure`) on the 2-core development machine; rerun it to
    /// get your own (`--profile FILE.json` takes its output).
    pub fn cpu() -> CostProfile {
        CostProfile {
            name: "cpu".into(),
            overhead_us: 0.32,
            flops_per_us: 31_000.0,
            bytes_per_us: 1_750.0,
        }
    }

    /// A GPU: a large overhead per op (a kernel launch, ~5 µs) and large
    /// throughput (~10 TFLOP/s, ~500 GB/s).
    pub fn gpu() -> CostProfile {
        CostProfile {
            name: "gpu".into(),
            overhead_us: 5.0,
            flops_per_us: 10_000_000.0,
            bytes_per_us: 500_000.0,
        }
    }

    /// Checks that the profile describes a machine: an overhead that is finite
    /// and not negative, throughputs that are finite and positive. A negative
    /// overhead would reward plans with more ops, a zero throughput make every
    /// op cost infinity.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("overhead_us", self.overhead_us, false),
            ("flops_per_us", self.flops_per_us, true),
            ("bytes_per_us", self.bytes_per_us, true),
        ];
        for (field, value, positive) in fields {
            let ok = value.is_finite() && if positive { value > 0.0 } else { value >= 0.0 };
            if !ok {
                let must = if positive {
                    "a finite number greater than 0"
                } else {
                    "a finite number, 0 or more"
                };
                return Err(format!(
                    "cost profile `{}`: {field} is {value}; it must be {must}",
                    self.name
                ));
            }
        }
        Ok(())
    }

    /// The cost of executing `op` with operands of `inputs` shapes giving `output`:
    /// overhead + flops / throughput + bytes / bandwidth. Leaves are free; a
    /// `vmap` spec cannot be executed and costs infinity.
    pub fn op_cost(&self, op: &Op, inputs: &[&Shape], output: &Shape) -> f64 {
        match work(op, inputs, output) {
            Work::Free => 0.0,
            Work::NotExecutable => f64::INFINITY,
            Work::Op {
                flops,
                bytes,
                dispatches,
            } => self.overhead_us * dispatches + flops / self.flops_per_us + bytes / self.bytes_per_us,
        }
    }
}

/// What executing one op takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Nothing: a variable or a literal.
    Free,
    /// It cannot be executed (a `vmap` spec).
    NotExecutable,
    /// One op: floating-point operations and bytes moved (f64 elements).
    Op {
        /// Floating-point operations.
        flops: f64,
        /// Bytes read and written.
        bytes: f64,
        /// How many times it pays the per-op overhead (a loop pays it per row).
        dispatches: f64,
    },
}

/// The work of one op with operands of `inputs` shapes giving `output`.
pub fn work(op: &Op, inputs: &[&Shape], output: &Shape) -> Work {
    let out = output.elements() as f64;
    let mut read: f64 = inputs.iter().map(|s| s.elements() as f64).sum();
    let flops = match op {
        Op::Var(_) | Op::Num(_) => return Work::Free,
        Op::Vmap(_) => return Work::NotExecutable,
        Op::Unary(u, _) => u.flops().per_element() * out,
        Op::Binary(b, _) => b.flops().per_element() * out,
        Op::Reduce(..) | Op::ReduceAxis(..) => read,
        Op::MatMul(_) => {
            let inner = *inputs[0].dims().last().unwrap_or(&1) as f64;
            2.0 * out * inner
        }
        Op::Structural(s, children) => {
            let arrays = s.arrays_of(children.len()).unwrap_or(children.len());
            let arrays = arrays.min(inputs.len());
            // Integer operands are literals, read as one element each.
            read = s.elements_read(&inputs[..arrays], output) + (inputs.len() - arrays) as f64;
            0.0
        }
        Op::Row(_) | Op::Rows(_) => 0.0,
        // The loop's own work: one iteration's bookkeeping per row, and writing its rows into the result.
        Op::Map(_) => return loop_work(output.dims()[0], out),
        Op::Chunks(_) => return loop_work(output.dims()[0].div_ceil(inputs[0].dims()[0]), out),
    };
    Work::Op {
        flops,
        bytes: 8.0 * (read + out),
        dispatches: 1.0,
    }
}

/// A loop's own work: one iteration's bookkeeping each time round, and writing its `out` elements.
fn loop_work(iterations: usize, out: f64) -> Work {
    Work::Op {
        flops: 0.0,
        bytes: 8.0 * out,
        dispatches: iterations as f64,
    }
}

/// Cost of a whole program's forward pass: each node once, the body of a loop once per row.
pub fn program_cost(profile: &CostProfile, program: &Program) -> f64 {
    program_cost_for(profile, program, Run::Eval)
}

/// How many forward passes' worth a node's backward sweep costs: a matmul's
/// two products, one pass for every other op, nothing for a leaf.
fn backward_factor(op: &Op) -> f64 {
    match op {
        Op::MatMul(_) => 2.0,
        Op::Unary(..)
        | Op::Binary(..)
        | Op::Reduce(..)
        | Op::ReduceAxis(..)
        | Op::Structural(..)
        | Op::Map(_)
        | Op::Row(_)
        | Op::Chunks(_)
        | Op::Rows(_) => 1.0,
        Op::Vmap(_) | Op::Num(_) | Op::Var(_) => 0.0,
    }
}

/// Cost of a whole program for `run`: the forward pass, or the forward pass
/// and the backward sweep, in which a loop's body runs forward again (one
/// row at a time is all it keeps) before its backward sweep.
pub fn program_cost_for(profile: &CostProfile, program: &Program, run: Run) -> f64 {
    let runs = program.loops().runs();
    let per_row = &program.loops().per_row;
    // The loop that feeds only the mean of the loss runs each row forward and backward at once.
    let early_body: Vec<usize> = early_loop(program, &main_uses(program))
        .and_then(|(l, _, _)| program.loops().bodies[l].as_ref())
        .map_or(vec![], |body| body.nodes.clone());
    let recomputed = |i: usize| per_row[i] && early_body.binary_search(&i).is_err();
    program
        .expr
        .as_ref()
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let inputs: Vec<&Shape> = node.children().iter().map(|&c| program.shape(c)).collect();
            let passes = match run {
                Run::Eval => 1.0,
                Run::Grad => 1.0 + f64::from(u8::from(recomputed(i))) + backward_factor(node),
            };
            passes * runs[i] as f64 * profile.op_cost(node, &inputs, program.shape(egg::Id::from(i)))
        })
        .sum()
}
