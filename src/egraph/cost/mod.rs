//! The cost model: what a run of the interpreter costs on a kind of machine,
//! in microseconds, from a [`CostProfile`] of that machine.
//!
//! Two levels use it. Extraction prices one e-node at a time ([`CostProfile::op_cost`]:
//! the op on its own, as if nothing were fused). The batcher prices each
//! whole plan by [`predict_us`], which replays what the interpreter does with
//! the program (fusion, views, loops, the backward sweep, threads, caches)
//! and is what `batch`, `bench` and `cost-check` print: a predicted time,
//! checked against the clock by `batchgraph cost-check`.

mod emitted;
mod predict;

use crate::ir::{Binary, Dtype, Flops, Op, Shape, Step, Unary, GEMM_THREADS_FROM, PARALLEL_FROM};
use serde::{Deserialize, Serialize};

pub use predict::{predict_times, predict_us, PredictedTimes};

/// The largest value a profile's field may have: a program's price, a sum over up to
/// [`crate::ir::MAX_NODES`] nodes and rows, then stays finite.
const MAX_PROFILE_VALUE: f64 = 1e12;

/// A number measured once per element type.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerDtype {
    /// In f32.
    pub f32: f64,
    /// In f64.
    pub f64: f64,
}

impl PerDtype {
    /// The value for `dtype`.
    pub fn of(self, dtype: Dtype) -> f64 {
        match dtype {
            Dtype::F32 => self.f32,
            Dtype::F64 => self.f64,
        }
    }
}

/// `structural_op_us` of the built-in `cpu` profile.
const BUILT_IN_STRUCTURAL_OP_US: f64 = 0.26;

fn built_in_structural_op_us() -> f64 {
    BUILT_IN_STRUCTURAL_OP_US
}

/// What the interpreter's work costs on a kind of machine: times in µs,
/// rates per µs. `batchgraph calibrate` measures every field on this machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostProfile {
    /// The profile's name.
    pub name: String,
    /// Fixed cost of a forward run (checking the values, setting up the sweep).
    pub run_us: f64,
    /// Further fixed cost of a gradient run (the backward sweep's set-up).
    pub grad_run_us: f64,
    /// Looking up an input's or param's value.
    pub var_us: f64,
    /// Executing one op on its own in the main sweep (dispatch, allocating its result).
    pub op_us: f64,
    /// Executing one structural op (`stack`, `permute`, `reshape`, ...: a
    /// copy that moves data), beyond its elements' walk: its result's layout
    /// is worked out axis by axis, which costs more than an elementwise op's
    /// dispatch. Profiles saved before it was measured read the built-in value.
    #[serde(default = "built_in_structural_op_us")]
    pub structural_op_us: f64,
    /// Sending one cotangent back through an op in the backward sweep.
    pub backward_op_us: f64,
    /// Each further operand an op sends a cotangent to, beyond the first (a
    /// second cotangent shares the op's dispatch but is a result of its own).
    pub backward_operand_us: f64,
    /// Running one fused chain (its set-up, beyond the elements).
    pub group_us: f64,
    /// Each link of a fused chain, beyond its elements.
    pub fused_step_us: f64,
    /// Running one loop, beyond its rows (setting up its result and its rows' slots).
    pub loop_run_us: f64,
    /// Each row of a loop, beyond its body's ops (taking the row's slots, writing its result).
    pub loop_row_us: f64,
    /// One op of a loop body, per row (the body runs op by op, unfused).
    pub loop_op_us: f64,
    /// Sending one op's cotangents back inside a loop body, per row.
    pub loop_backward_op_us: f64,
    /// Calling the GEMM once, beyond its arithmetic.
    pub gemm_call_us: f64,
    /// Nanoseconds per element of a cheap elementwise op (`+`, `relu`), data in cache.
    pub cheap_ns: PerDtype,
    /// Nanoseconds per element of a transcendental op (`tanh`, `exp`), data in cache.
    pub transcendental_ns: PerDtype,
    /// Nanoseconds per element walked through a strided view (copies that
    /// move data, reductions along an inner axis, cotangents summed down).
    pub strided_ns: f64,
    /// Nanoseconds per lane of an op that walks its operands lane by lane (a
    /// broadcast binary op, a reduction folding one lane per result).
    pub lane_ns: f64,
    /// Nanoseconds per element a reduction along an axis folds: each combine
    /// waits for the one before it (latency, not bandwidth).
    pub fold_ns: f64,
    /// Nanoseconds per row of a GEMM's result, beyond its arithmetic (what
    /// makes a tall product with few columns, `[8192, 5] @ [5, 3]`, slow).
    pub gemm_row_ns: PerDtype,
    /// Floating-point operations per µs of a GEMM on one thread.
    pub gemm_flops_per_us: PerDtype,
    /// Bytes that fit in the cache a pass runs from (a core's L2).
    pub cache_bytes: f64,
    /// Bytes per µs a pass moves when its data fits in that cache.
    pub cache_bytes_per_us: f64,
    /// Bytes per µs a pass moves when its data streams from memory.
    pub stream_bytes_per_us: f64,
    /// How much faster a pass over at least `PARALLEL_FROM` elements runs on the runtime's threads.
    pub thread_speedup: f64,
    /// How much faster a product of at least `GEMM_THREADS_FROM` multiply-adds runs on the threads.
    pub gemm_thread_speedup: f64,
}

impl CostProfile {
    /// This project's interpreter on the 2-core development machine, as
    /// `batchgraph calibrate` measured it (`crate::measure`); rerun it to get
    /// your own, which `batch`, `bench` and the walk-through then use (see `--profile`).
    pub fn cpu() -> CostProfile {
        CostProfile {
            name: "cpu".into(),
            run_us: 0.433,
            grad_run_us: 1.02,
            var_us: 0.129,
            op_us: 0.196,
            structural_op_us: BUILT_IN_STRUCTURAL_OP_US,
            backward_op_us: 0.536,
            backward_operand_us: 0.36,
            group_us: 0.245,
            fused_step_us: 0.0505,
            loop_run_us: 0.475,
            loop_row_us: 0.0472,
            loop_op_us: 0.151,
            loop_backward_op_us: 0.525,
            gemm_call_us: 0.151,
            cheap_ns: PerDtype { f32: 0.0, f64: 0.0 },
            transcendental_ns: PerDtype { f32: 0.472, f64: 2.82 },
            strided_ns: 1.06,
            lane_ns: 4.23,
            fold_ns: 0.59,
            gemm_row_ns: PerDtype { f32: 3.92, f64: 2.31 },
            gemm_flops_per_us: PerDtype {
                f32: 94_000.0,
                f64: 44_900.0,
            },
            cache_bytes: 512.0 * 1024.0,
            cache_bytes_per_us: 88_700.0,
            stream_bytes_per_us: 42_800.0,
            thread_speedup: 1.88,
            gemm_thread_speedup: 1.8,
        }
    }

    /// A GPU: a large overhead per op (a kernel launch, ~5 µs) and large
    /// throughput (~10 TFLOP/s, ~500 GB/s); a loop's ops are launches too.
    pub fn gpu() -> CostProfile {
        CostProfile {
            name: "gpu".into(),
            run_us: 10.0,
            grad_run_us: 10.0,
            var_us: 0.0,
            op_us: 5.0,
            structural_op_us: 5.0,
            backward_op_us: 5.0,
            backward_operand_us: 5.0,
            group_us: 5.0,
            fused_step_us: 0.0,
            loop_run_us: 5.0,
            loop_row_us: 0.0,
            loop_op_us: 5.0,
            loop_backward_op_us: 5.0,
            gemm_call_us: 0.0,
            cheap_ns: PerDtype { f32: 0.001, f64: 0.002 },
            transcendental_ns: PerDtype { f32: 0.002, f64: 0.004 },
            strided_ns: 0.002,
            lane_ns: 0.0,
            fold_ns: 0.0,
            gemm_row_ns: PerDtype { f32: 0.0, f64: 0.0 },
            gemm_flops_per_us: PerDtype {
                f32: 10_000_000.0,
                f64: 5_000_000.0,
            },
            cache_bytes: 4.0 * 1024.0 * 1024.0,
            cache_bytes_per_us: 1_000_000.0,
            stream_bytes_per_us: 500_000.0,
            thread_speedup: 1.0,
            gemm_thread_speedup: 1.0,
        }
    }

    /// Checks that the profile describes a machine: times finite and not
    /// negative, rates, sizes and speed-ups finite and positive. A negative
    /// overhead would reward plans with more ops, a zero rate make every op
    /// cost infinity.
    pub fn validate(&self) -> Result<(), String> {
        let times = [
            ("run_us", self.run_us),
            ("grad_run_us", self.grad_run_us),
            ("var_us", self.var_us),
            ("op_us", self.op_us),
            ("structural_op_us", self.structural_op_us),
            ("backward_op_us", self.backward_op_us),
            ("backward_operand_us", self.backward_operand_us),
            ("group_us", self.group_us),
            ("fused_step_us", self.fused_step_us),
            ("loop_run_us", self.loop_run_us),
            ("loop_row_us", self.loop_row_us),
            ("loop_op_us", self.loop_op_us),
            ("loop_backward_op_us", self.loop_backward_op_us),
            ("gemm_call_us", self.gemm_call_us),
            ("cheap_ns.f32", self.cheap_ns.f32),
            ("cheap_ns.f64", self.cheap_ns.f64),
            ("transcendental_ns.f32", self.transcendental_ns.f32),
            ("transcendental_ns.f64", self.transcendental_ns.f64),
            ("strided_ns", self.strided_ns),
            ("lane_ns", self.lane_ns),
            ("fold_ns", self.fold_ns),
            ("gemm_row_ns.f32", self.gemm_row_ns.f32),
            ("gemm_row_ns.f64", self.gemm_row_ns.f64),
        ];
        let rates = [
            ("gemm_flops_per_us.f32", self.gemm_flops_per_us.f32),
            ("gemm_flops_per_us.f64", self.gemm_flops_per_us.f64),
            ("cache_bytes", self.cache_bytes),
            ("cache_bytes_per_us", self.cache_bytes_per_us),
            ("stream_bytes_per_us", self.stream_bytes_per_us),
            ("thread_speedup", self.thread_speedup),
            ("gemm_thread_speedup", self.gemm_thread_speedup),
        ];
        let fields = times
            .iter()
            .map(|&(f, v)| (f, v, false))
            .chain(rates.iter().map(|&(f, v)| (f, v, true)));
        for (field, value, positive) in fields {
            // Bounded, so that a program's sum of costs stays finite and comparable.
            let ok = value <= MAX_PROFILE_VALUE && if positive { value > 0.0 } else { value >= 0.0 };
            if !ok {
                let must = match positive {
                    true => "a number greater than 0, at most 1e12",
                    false => "a number from 0 to 1e12",
                };
                // Large numbers in exponent form (1e308, not 309 digits).
                let value = match value.abs() >= 1e6 {
                    true => format!("{value:e}"),
                    false => value.to_string(),
                };
                return Err(format!(
                    "cost profile `{}`: {field} is {value}; it must be {must}",
                    self.name
                ));
            }
        }
        Ok(())
    }

    /// The cost of executing `op` on its own, in `dtype`, with operands of
    /// `inputs` shapes giving `output`, once (a per-row node: for one row).
    /// Leaves are free; a `vmap` spec cannot be executed and costs infinity.
    /// Extraction prices e-nodes by it; it cannot see fusion or views, which
    /// [`predict_us`] prices for the whole program.
    pub fn op_cost(&self, op: &Op, inputs: &[&Shape], output: &Shape, dtype: Dtype) -> f64 {
        let pass = Pass::new(self, dtype);
        match work(op, inputs, output) {
            Work::Free => 0.0,
            Work::NotExecutable => f64::INFINITY,
            Work::Op {
                flops,
                bytes,
                dispatches,
            } => {
                let bytes = bytes / 8.0 * pass.esize;
                let arithmetic = match op {
                    Op::MatMul(_) => {
                        let out = output.elements() as f64;
                        let columns = match inputs.get(1).map(|b| b.dims()) {
                            Some([.., n]) if inputs[1].rank() >= 2 => *n as f64,
                            _ => 1.0,
                        };
                        pass.gemm_us(
                            out / columns.max(1.0),
                            out,
                            flops / 2.0 / out.max(1.0),
                            bytes / pass.esize,
                            true,
                        )
                    }
                    Op::Var(_)
                    | Op::Num(_)
                    | Op::Vmap(_)
                    | Op::Unary(..)
                    | Op::Binary(..)
                    | Op::Reduce(..)
                    | Op::ReduceAxis(..)
                    | Op::Structural(..)
                    | Op::Row(_)
                    | Op::Rows(_)
                    | Op::Map(_)
                    | Op::Chunks(_)
                    | Op::Accumulate(_) => flops * pass.element_ns(Flops::Cheap) / 1000.0 + pass.bytes_us(bytes),
                };
                let dispatch = match op {
                    Op::Structural(..) => self.structural_op_us,
                    _ => self.op_us,
                };
                dispatch * dispatches + arithmetic
            }
        }
    }
}

/// The profile's rates for one element type: what one pass, product or
/// addition costs, shared by extraction's prices and the program's.
pub(crate) struct Pass<'a> {
    p: &'a CostProfile,
    dtype: Dtype,
    /// Bytes per element.
    pub esize: f64,
}

impl<'a> Pass<'a> {
    pub(crate) fn new(p: &'a CostProfile, dtype: Dtype) -> Self {
        Pass {
            p,
            dtype,
            esize: dtype.bytes() as f64,
        }
    }

    /// Nanoseconds per element of an op of cost class `flops`.
    pub(crate) fn element_ns(&self, flops: Flops) -> f64 {
        match flops {
            Flops::Cheap => self.p.cheap_ns.of(self.dtype),
            Flops::Transcendental => self.p.transcendental_ns.of(self.dtype),
        }
    }

    /// Nanoseconds per element of one link of a fused chain.
    pub(crate) fn step_ns(&self, step: Step) -> f64 {
        match step {
            Step::Unary { op, .. } => self.element_ns(Unary::ALL[op].flops()),
            Step::Binary { op, .. } => self.element_ns(Binary::ALL[op].flops()),
        }
    }

    /// Moving `bytes`, from cache if they fit in it, else from memory.
    pub(crate) fn bytes_us(&self, bytes: f64) -> f64 {
        match bytes <= self.p.cache_bytes {
            true => bytes / self.p.cache_bytes_per_us,
            false => bytes / self.p.stream_bytes_per_us,
        }
    }

    /// `us` of a pass over `n` elements, split over the threads when the runtime splits it.
    pub(crate) fn threaded(&self, n: f64, us: f64) -> f64 {
        match n >= PARALLEL_FROM as f64 {
            true => us / self.p.thread_speedup,
            false => us,
        }
    }

    /// Walking `n` elements through a strided view.
    pub(crate) fn strided_us(&self, n: f64) -> f64 {
        n * self.p.strided_ns / 1000.0 + self.bytes_us(2.0 * n * self.esize)
    }

    /// Walking `lanes` lanes, one call each.
    pub(crate) fn lanes_us(&self, lanes: f64) -> f64 {
        lanes * self.p.lane_ns / 1000.0
    }

    /// Adding a cotangent of `n` elements into another (in place).
    pub(crate) fn add_us(&self, n: f64) -> f64 {
        n * self.element_ns(Flops::Cheap) / 1000.0 + self.bytes_us(3.0 * n * self.esize)
    }

    /// A GEMM giving `out` elements in `rows` rows, each a sum of `k` products,
    /// touching `elements` elements in all; on the threads when large, unless `one_thread`.
    pub(crate) fn gemm_us(&self, rows: f64, out: f64, k: f64, elements: f64, one_thread: bool) -> f64 {
        let macs = out * k;
        let compute = 2.0 * macs / self.p.gemm_flops_per_us.of(self.dtype);
        let memory = self.bytes_us(elements * self.esize);
        let us = compute.max(memory) + rows * self.p.gemm_row_ns.of(self.dtype) / 1000.0;
        let us = match !one_thread && macs >= GEMM_THREADS_FROM as f64 {
            true => us / self.p.gemm_thread_speedup,
            false => us,
        };
        self.p.gemm_call_us + us
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
        // A row (or chunk) reads its own rows, not the whole batch.
        Op::Row(_) | Op::Rows(_) => {
            read = out;
            0.0
        }
        // The loop's own work: one iteration's bookkeeping per row, and writing its rows into the result.
        Op::Map(_) => return loop_work(output.dims()[0], out),
        Op::Chunks(_) => return loop_work(output.dims()[0].div_ceil(inputs[0].dims()[0]), out),
        // Its rows and chunk are literals, which shapes do not show: its own
        // work priced once (`predict_us` prices every iteration from the program).
        Op::Accumulate(_) => return loop_work(1, out),
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
