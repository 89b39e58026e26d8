//! The interpreter: one forward sweep over the DAG in topological order (each
//! node computed once, intermediates dropped after their last use, peak bytes
//! measured), with tangents carried alongside (forward mode), and one
//! backward sweep in reverse order that accumulates cotangents (reverse mode).
//! Chains of elementwise ops run fused, one pass each way (see
//! [`crate::runtime::fusion`]); a value's buffer is reused for a fused chain
//! at its last use, and the backward sweep frees each value once it is done
//! with it.

use crate::error::{Error, Result};
use crate::ir::{early_loop, main_uses, Op, Program, Scalar, Shape, Window};
use crate::runtime::fusion::{backward_group, forward_group, Group, Schedule};
use crate::runtime::grad::{add_into_window, matmul_vjp, op_jvp, op_vjp_of};
use crate::runtime::kernels::{matmul, run_op, scalar, Tensor};
use crate::runtime::looprun::{accumulate, map_backward, map_forward, map_forward_backward, Outer};
use crate::runtime::vmath;
use egg::Language;
use ndarray::{ArrayViewD, CowArray};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod kept;
pub use kept::Kept;

/// Values by name: one for every input and param.
pub type Values<T> = HashMap<String, Tensor<T>>;

/// Outputs of a forward run.
#[derive(Clone, Debug)]
pub struct Evaluation<T> {
    /// Each output by name, in declaration order.
    pub outputs: Vec<(String, Tensor<T>)>,
    /// The most bytes of values held at once (inputs included).
    pub peak_bytes: usize,
    /// Time spent on each node, when the interpreter is [`Interpreter::timed`].
    pub times: Option<NodeTimes>,
}

/// Wall time spent on each node of a run, by node index: a fused chain's time is
/// its last node's, a loop's its own node's; nodes that did not run are zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeTimes {
    /// Computing each node's value (and tangent).
    pub forward: Vec<Duration>,
    /// Sending each node's cotangent to its operands.
    pub backward: Vec<Duration>,
}

/// Adds the time from its start to its drop into a node's slot (when timing).
struct Clock<'t> {
    running: Option<(&'t mut Duration, Instant)>,
}

impl<'t> Clock<'t> {
    /// Times into `slot`, if there is one (untimed runs have none).
    fn start(slot: Option<&'t mut Duration>) -> Self {
        Clock {
            running: slot.map(|slot| (slot, Instant::now())),
        }
    }
}

impl Drop for Clock<'_> {
    fn drop(&mut self) {
        if let Some((slot, started)) = self.running.take() {
            *slot += started.elapsed();
        }
    }
}

/// The gradient of a program's one scalar output.
#[derive(Clone, Debug)]
pub struct Gradients<T> {
    /// The output, by name.
    pub outputs: Vec<(String, Tensor<T>)>,
    /// d output / d name for every input and param, in declaration order.
    pub grads: Vec<(String, Tensor<T>)>,
    /// The most bytes of values and cotangents held at once.
    pub peak_bytes: usize,
    /// Time spent on each node, when the interpreter is [`Interpreter::timed`].
    pub times: Option<NodeTimes>,
}

/// Outputs and their tangents from a forward-mode run.
#[derive(Clone, Debug)]
pub struct Tangents<T> {
    /// Each output by name.
    pub outputs: Vec<(String, Tensor<T>)>,
    /// Each output's tangent by name.
    pub jvp: Vec<(String, Tensor<T>)>,
}

/// Runs one program. Build it once and run it on many values.
#[derive(Clone, Debug)]
pub struct Interpreter<'p> {
    program: &'p Program,
    uses: Vec<usize>,
    /// Which nodes run fused (chains of elementwise ops), found once.
    fused: Schedule,
    /// Every node on its own: for forward mode, `check_finite`, or without fusion.
    unfused: Schedule,
    fuse: bool,
    check_finite: bool,
    /// The inputs and params `gradient` differentiates with respect to (None: all).
    with_respect_to: Option<Vec<String>>,
    /// Whether a value is large enough for passes over it to be split over threads.
    splits_passes: bool,
    /// The number literals, built once rather than on every run.
    literals: Literals,
    /// Whether runs time each node.
    timed: bool,
}

/// Every number literal of a program as a 0-d array of each element type (by node).
#[derive(Clone, Debug)]
struct Literals {
    f32: Vec<Option<Tensor<f32>>>,
    f64: Vec<Option<Tensor<f64>>>,
}

impl Literals {
    fn new(program: &Program) -> Self {
        let nums: Vec<Option<f64>> = program.expr.as_ref().iter().map(Op::as_num).collect();
        Literals {
            f32: nums.iter().map(|v| v.map(|v| scalar(v as f32))).collect(),
            f64: nums.iter().map(|v| v.map(scalar)).collect(),
        }
    }

    /// The literals as `T` (f32 or f64, the only `Scalar`s).
    fn of<T: Scalar>(&self) -> &[Option<Tensor<T>>] {
        use std::any::Any;
        let (f32, f64): (&dyn Any, &dyn Any) = (&self.f32, &self.f64);
        f32.downcast_ref::<Vec<Option<Tensor<T>>>>()
            .or_else(|| f64.downcast_ref())
            .expect("Scalar is f32 or f64")
    }
}

/// A loop run forward and backward at once, with its cotangent `g`, adding into `grads`.
struct EarlyLoop<'g, T> {
    node: usize,
    g: Tensor<T>,
    grads: &'g mut Vec<Option<Tensor<T>>>,
}

struct Sweep<'v, T: Scalar> {
    values: Vec<Option<Cow<'v, Tensor<T>>>>,
    tangents: Vec<Option<Tensor<T>>>,
    peak_bytes: usize,
    /// Time per node (empty unless timed).
    times: Vec<Duration>,
}

/// The values of `node`'s children, computed before it.
fn operands<'a, T: Scalar>(values: &'a [Option<Cow<Tensor<T>>>], node: &Op) -> Vec<&'a Tensor<T>> {
    node.children()
        .iter()
        .map(|&c| values[usize::from(c)].as_deref().expect("computed before use"))
        .collect()
}

/// The cotangents a node sends back: one per operand (its VJP), or routed to
/// other nodes (a fused group's input and other operands; a transposed node
/// read through a view).
enum Sent<T> {
    ByOperand(Vec<Option<Tensor<T>>>),
    Routed(Vec<(usize, Tensor<T>)>),
}

impl<T> Sent<T> {
    /// Each cotangent with its operand's position (0 when routed) and the node it goes to.
    fn by_operand(self, node: &Op) -> SentEach<'_, T> {
        match self {
            Sent::ByOperand(cotangents) => SentEach::ByOperand(cotangents.into_iter().zip(node.children()).enumerate()),
            Sent::Routed(routed) => SentEach::Routed(routed.into_iter()),
        }
    }
}

/// Each operand's cotangent (if any) with the operand, by position.
type EachOperand<'n, T> =
    std::iter::Enumerate<std::iter::Zip<std::vec::IntoIter<Option<Tensor<T>>>, std::slice::Iter<'n, egg::Id>>>;

/// The iterator of [`Sent::by_operand`].
enum SentEach<'n, T> {
    ByOperand(EachOperand<'n, T>),
    Routed(std::vec::IntoIter<(usize, Tensor<T>)>),
}

impl<T> Iterator for SentEach<'_, T> {
    type Item = (usize, usize, Tensor<T>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            SentEach::ByOperand(each) => {
                each.find_map(|(position, (t, &child))| Some((position, usize::from(child), t?)))
            }
            SentEach::Routed(each) => each.next().map(|(child, t)| (0, child, t)),
        }
    }
}

/// A matmul's two operands, if it reads one of them as a view of a transpose.
fn viewed_operands(node: &Op, schedule: &Schedule) -> Option<[usize; 2]> {
    let Op::MatMul([a, b]) = node else { return None };
    let (a, b) = (usize::from(*a), usize::from(*b));
    (schedule.view_of(a).is_some() || schedule.view_of(b).is_some()).then_some([a, b])
}

/// The value of operand `c`: a view of the transposed node if `c` is a transpose read as a view.
fn operand<'a, T: Scalar>(values: &'a [Option<Cow<Tensor<T>>>], schedule: &Schedule, c: usize) -> ArrayViewD<'a, T> {
    let value = |n: usize| values[n].as_deref().expect("computed before use").view();
    match schedule.view_of(c) {
        Some(inner) => value(inner).reversed_axes(),
        None => value(c),
    }
}

fn bytes<T>(t: &Tensor<T>) -> usize {
    t.len() * std::mem::size_of::<T>()
}

impl<'p> Interpreter<'p> {
    /// An interpreter for `program`.
    pub fn new(program: &'p Program) -> Self {
        Interpreter {
            program,
            uses: main_uses(program),
            fused: Schedule::new(program, true),
            unfused: Schedule::new(program, false),
            fuse: true,
            check_finite: false,
            with_respect_to: None,
            splits_passes: program.shapes().iter().any(|s| s.elements() >= vmath::PARALLEL_FROM),
            literals: Literals::new(program),
            timed: false,
        }
    }

    /// `gradient` differentiates with respect to these inputs and params only
    /// (in declaration order), skipping the work only the others need (JAX's
    /// `argnums`); by default, every input and param.
    pub fn with_respect_to<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.with_respect_to = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Whether `gradient` wants the gradient of the input or param `name`.
    fn differentiates(&self, name: &str) -> bool {
        self.with_respect_to
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// Whether each node depends on an input or param `gradient` differentiates with respect to.
    fn on_gradient_path(&self) -> Vec<bool> {
        let expr = self.program.expr.as_ref();
        let mut on_path = vec![false; expr.len()];
        for (i, node) in expr.iter().enumerate() {
            on_path[i] = match node.as_var() {
                Some(v) => self.differentiates(v.as_str()),
                None => node.children().iter().any(|&c| on_path[usize::from(c)]),
            };
        }
        on_path
    }

    /// Run chains of elementwise ops fused (the default) or every op on its own.
    pub fn fuse(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }

    /// The fused groups the interpreter runs: each chain's nodes, first to
    /// last (the last one's value is the chain's result). Forward mode
    /// (tangents) and `check_finite` runs run every op on its own.
    pub fn fused_groups(&self) -> Vec<Vec<usize>> {
        match self.fuse {
            true => self.fused.groups().map(|g| g.nodes().to_vec()).collect(),
            false => vec![],
        }
    }

    /// The schedule of a run: fused unless tangents or finiteness checks are wanted.
    fn schedule(&self, tangents: bool) -> &Schedule {
        match self.fuse && !tangents && !self.check_finite {
            true => &self.fused,
            false => &self.unfused,
        }
    }

    /// Report a NaN or infinity with the op that produced it, instead of returning it.
    pub fn check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// Runs time each node ([`Evaluation::times`], [`Gradients::times`]), at
    /// a cost of two clock reads per node.
    pub fn timed(mut self, timed: bool) -> Self {
        self.timed = timed;
        self
    }

    /// A literal that overflows the element type (1e300 in f32) is an error,
    /// as an input of that size is, not an infinity.
    fn check_literals<T: Scalar>(&self) -> Result<()> {
        for node in self.program.expr.as_ref() {
            match node.as_num() {
                Some(n) if n.is_finite() && !T::of(n).is_finite() => {
                    return Err(Error::Values(format!(
                        "the literal {node} is too large for the element type (largest {:e})",
                        T::max_value().to_f64().unwrap_or(f64::MAX)
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The value of `node`'s child at `position` if it is a number literal, else NaN.
    fn literal<'a>(&'a self, node: &'a Op) -> impl Fn(usize) -> f64 + 'a {
        move |position| self.program.literal(node.children()[position]).unwrap_or(f64::NAN)
    }

    fn check_values<T: Scalar>(&self, values: &Values<T>, what: &str, all_required: bool) -> Result<()> {
        self.check_literals::<T>()?;
        let declared: Vec<_> = self.program.inputs.iter().chain(&self.program.params).collect();
        // A set, so that checking stays linear in the declarations (a program may have thousands).
        let names: std::collections::HashSet<&str> = declared.iter().map(|d| d.name.as_str()).collect();
        for name in values.keys() {
            if !names.contains(name.as_str()) {
                return Err(Error::Values(format!(
                    "{what}: `{name}` is not an input or param of the program"
                )));
            }
        }
        for d in declared {
            match values.get(&d.name) {
                None if all_required => {
                    return Err(Error::Values(format!(
                        "{what}: no value for `{}` (shape {})",
                        d.name, d.shape
                    )))
                }
                Some(v) if v.shape() != d.shape.dims() => {
                    return Err(Error::Values(format!(
                        "{what}: `{}` has shape {}, but the program declares {}",
                        d.name,
                        Shape(v.shape().to_vec()),
                        d.shape
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The forward sweep; with `retain` every value is kept (for a backward
    /// sweep), else each is dropped after its last use. An input or param in
    /// `owned` is moved into the sweep (held by it), the others borrowed from `values`.
    fn sweep<'v, T: Scalar>(
        &'v self,
        values: &'v Values<T>,
        mut owned: Values<T>,
        tangents: Option<&Values<T>>,
        retain: bool,
        mut early: Option<EarlyLoop<'_, T>>,
    ) -> Result<Sweep<'v, T>> {
        let expr = self.program.expr.as_ref();
        let mut s = Sweep {
            values: (0..expr.len()).map(|_| None).collect(),
            tangents: vec![None; if tangents.is_some() { expr.len() } else { 0 }],
            peak_bytes: 0,
            times: vec![Duration::ZERO; if self.timed { expr.len() } else { 0 }],
        };
        let mut times = std::mem::take(&mut s.times);
        let mut remaining = self.uses.clone();
        let mut live = 0usize;
        for (i, node) in expr.iter().enumerate() {
            if let Some(value) = node.as_var().and_then(|v| owned.remove(v.as_str())) {
                live += bytes(&value);
                s.values[i] = Some(Cow::Owned(value));
            }
        }
        let loops = self.program.loops();
        let schedule = self.schedule(tangents.is_some());
        for (i, node) in expr.iter().enumerate() {
            if loops.per_row[i] || schedule.is_interior(i) || s.values[i].is_some() {
                continue;
            }
            let _clock = Clock::start(times.get_mut(i));
            if let Some(body) = &loops.bodies[i] {
                let outer = Outer {
                    values: &s.values,
                    tangents: tangents.map(|_| s.tangents.as_slice()),
                };
                let run = match early.as_mut().filter(|e| e.node == i) {
                    Some(e) => {
                        let fresh: Vec<usize> = body.outer.iter().copied().filter(|&c| e.grads[c].is_none()).collect();
                        let run = map_forward_backward(self.program, i, body, outer, &e.g, e.grads, self.check_finite)?;
                        // The outer values' cotangents it made are held until the backward sweep.
                        live += fresh
                            .iter()
                            .filter_map(|&c| e.grads[c].as_ref())
                            .map(bytes)
                            .sum::<usize>();
                        run
                    }
                    None => map_forward(self.program, i, body, outer, self.check_finite)?,
                };
                s.peak_bytes = s.peak_bytes.max(live + run.row_bytes + bytes(&run.value));
                live += bytes(&run.value) + run.tangent.as_ref().map_or(0, bytes);
                if tangents.is_some() {
                    s.tangents[i] = run.tangent;
                }
                s.values[i] = Some(Cow::Owned(run.value));
            } else if let Some(group) = schedule.group(i) {
                let reused = self.run_group(i, group, !retain && remaining[group.input()] == 1, &mut s);
                live += bytes(s.values[i].as_deref().expect("just computed"));
                s.peak_bytes = s.peak_bytes.max(live);
                live -= reused;
            } else {
                live += self.step(i, node, values, tangents, schedule, &mut s)?;
            }
            s.peak_bytes = s.peak_bytes.max(live);
            if !retain {
                for &c in schedule.children(i) {
                    remaining[c] -= 1;
                    if remaining[c] == 0 {
                        live -= s.values[c].take().map_or(0, |v| bytes(&v));
                        if let Some(t) = s.tangents.get_mut(c).and_then(Option::take) {
                            live -= bytes(&t);
                        }
                    }
                }
            }
        }
        s.times = times;
        Ok(s)
    }

    /// Runs the fused `group` ending at node `i` into `s`; at the input's last
    /// use (`last_use`, when the input is not read again by the group) its
    /// buffer becomes the result's. Returns the bytes of a buffer so reused.
    fn run_group<T: Scalar>(&self, i: usize, group: &Group, last_use: bool, s: &mut Sweep<'_, T>) -> usize {
        let input = group.input();
        let reads_input_again = self.fused.children(i).iter().filter(|&&c| c == input).count() > 1;
        let reuse = match &s.values[input] {
            Some(Cow::Owned(_)) if last_use && !reads_input_again => s.values[input].take().map(Cow::into_owned),
            _ => None,
        };
        let reused = reuse.as_ref().map_or(0, bytes);
        let values = &s.values;
        let view = |n: usize| values[n].as_deref().expect("computed before use").view();
        let input = match reuse {
            Some(owned) => CowArray::from(owned),
            None => CowArray::from(view(input)),
        };
        let value = forward_group(group, input, &view);
        s.values[i] = Some(Cow::Owned(value));
        reused
    }

    /// Computes node `i` (not a loop) and its tangent into `s`; returns the bytes added.
    fn step<'v, T: Scalar>(
        &'v self,
        i: usize,
        node: &Op,
        values: &'v Values<T>,
        tangents: Option<&Values<T>>,
        schedule: &Schedule,
        s: &mut Sweep<'v, T>,
    ) -> Result<usize> {
        let literal = self.literal(node);
        let value: Cow<Tensor<T>> = match (
            &self.literals.of::<T>()[i],
            node.as_var(),
            viewed_operands(node, schedule),
        ) {
            (Some(number), _, _) => Cow::Borrowed(number),
            (None, Some(v), _) => Cow::Borrowed(&values[v.as_str()]),
            (None, None, Some([a, b])) => Cow::Owned(matmul(
                &operand(&s.values, schedule, a),
                &operand(&s.values, schedule, b),
            )),
            (None, None, None) => Cow::Owned(run_op(node, &operands(&s.values, node), &literal)),
        };
        self.finite(&value, || node.to_string())?;
        let mut added = bytes(&value);
        if let Some(given) = tangents {
            s.tangents[i] = match node.as_var() {
                Some(v) => given.get(v.as_str()).cloned(),
                None => {
                    let ts: Vec<Option<&Tensor<T>>> = node
                        .children()
                        .iter()
                        .map(|&c| s.tangents[usize::from(c)].as_ref())
                        .collect();
                    op_jvp(node, &operands(&s.values, node), &value, &ts, &literal)
                }
            };
            if let Some(t) = &s.tangents[i] {
                self.finite(t, || format!("the tangent of {node}"))?;
            }
            added += s.tangents[i].as_ref().map_or(0, bytes);
        }
        s.values[i] = Some(value);
        Ok(added)
    }

    /// The cotangents node `i` (not a loop) sends its operands, given its
    /// own cotangent `g`: by one fused pass if it ends a group, else by its
    /// VJP; each with its operand's position (0 in a group) and node.
    fn cotangents<T: Scalar>(
        &self,
        i: usize,
        schedule: &Schedule,
        values: &[Option<Cow<Tensor<T>>>],
        g: Tensor<T>,
        on_path: &[bool],
    ) -> Sent<T> {
        let node = &self.program.expr[i.into()];
        let out = values[i].as_deref().expect("kept for the backward sweep");
        if let Some(children) = viewed_operands(node, schedule) {
            // A matmul reading a transpose as a view: the cotangent goes to the transposed node.
            let [a, b] = children.map(|c| operand(values, schedule, c));
            let target = children.map(|c| schedule.view_of(c).unwrap_or(c));
            let (ga, gb) = matmul_vjp(a, b, &g, target.map(|c| on_path[c]));
            let sent = |c: usize, t: Tensor<T>| match schedule.view_of(c) {
                Some(_) => t.reversed_axes(),
                None => t,
            };
            let routed = [(children[0], ga), (children[1], gb)].into_iter().zip(target);
            return Sent::Routed(routed.filter_map(|((c, t), to)| Some((to, sent(c, t?)))).collect());
        }
        let Some(group) = schedule.group(i) else {
            let literal = self.literal(node);
            let wanted = |position: usize| on_path[usize::from(node.children()[position])];
            return Sent::ByOperand(op_vjp_of(node, &operands(values, node), out, &g, &literal, &wanted));
        };
        let view = |n: usize| values[n].as_deref().expect("kept for the backward sweep").view();
        let wanted = |n: usize| on_path[n];
        let (input, others) = backward_group(group, view(group.input()), out, g, &view, &wanted);
        Sent::Routed(
            input
                .map(|input| (group.input(), input))
                .into_iter()
                .chain(group.others_with(others))
                .collect(),
        )
    }

    /// Node `i`'s operand and the window of it that node `i` is (an `index`
    /// or a `slice` the backward sweep sends its cotangent through by
    /// [`add_into_window`]), unless it ends a fused group.
    fn window_of(&self, i: usize, schedule: &Schedule) -> Option<(usize, Window)> {
        let (operand, window) = self.program.window(i.into())?;
        schedule.group(i).is_none().then_some((usize::from(operand), window))
    }

    /// The loop (see [`early_loop`]) whose forward and backward sweeps run together, with its cotangent.
    fn early_loop<T: Scalar>(&self) -> Option<(usize, usize, Tensor<T>)> {
        let (looped, root, weight) = early_loop(self.program, &self.uses)?;
        let shape = ndarray::IxDyn(self.program.shape(looped.into()).dims());
        Some((looped, root, Tensor::from_elem(shape, T::of(weight))))
    }

    /// With `check_finite`, an error naming `what` (the op, or the derivative
    /// through it) if `t` holds a NaN or an infinity.
    fn finite<T: Scalar>(&self, t: &Tensor<T>, what: impl FnOnce() -> String) -> Result<()> {
        if !self.check_finite {
            return Ok(());
        }
        match t.iter().find(|v| !v.is_finite()) {
            Some(bad) => Err(Error::NotFinite {
                op: what(),
                value: bad.to_f64().unwrap_or(f64::NAN),
                shape: Shape(t.shape().to_vec()).to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The outputs, moved out of the sweep's values (copied only for a node
    /// that is output again later, or an input passed through).
    fn outputs<T: Scalar>(&self, mut values: Vec<Option<Cow<Tensor<T>>>>) -> Vec<(String, Tensor<T>)> {
        let outputs = &self.program.outputs;
        outputs
            .iter()
            .enumerate()
            .map(|(k, (name, id))| {
                let i = usize::from(*id);
                let value = if outputs[k + 1..].iter().any(|(_, later)| later == id) {
                    values[i].as_deref().unwrap().clone()
                } else {
                    values[i].take().unwrap().into_owned()
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// Evaluates every output.
    pub fn evaluate<T: Scalar>(&self, values: &Values<T>) -> Result<Evaluation<T>> {
        self.on_threads(|| self.evaluate_here(values))
    }

    fn evaluate_here<T: Scalar>(&self, values: &Values<T>) -> Result<Evaluation<T>> {
        self.check_values(values, "values", true)?;
        let mut s = self.sweep(values, Values::new(), None, false, None)?;
        let times = self.timed.then(|| NodeTimes {
            forward: std::mem::take(&mut s.times),
            backward: vec![Duration::ZERO; s.values.len()],
        });
        Ok(Evaluation {
            peak_bytes: s.peak_bytes,
            outputs: self.outputs(s.values),
            times,
        })
    }

    /// Reverse mode: the gradient of the one scalar output with respect to
    /// every input and param, by one backward sweep.
    pub fn gradient<T: Scalar>(&self, values: &Values<T>) -> Result<Gradients<T>> {
        self.on_threads(|| self.gradient_here(values))
    }

    /// Runs `run` on one of rayon's threads when the program has a value
    /// large enough for a pass split over the threads: each split is then
    /// handed to a thread of the pool from inside it, instead of the caller
    /// waking the pool and sleeping until it is done (a futex round trip per
    /// pass). Small programs run on the calling thread.
    ///
    /// While it runs, the pool's other threads wait for the splits by spinning
    /// (see [`stay_awake`]) instead of sleeping between passes.
    fn on_threads<R: Send>(&self, run: impl FnOnce() -> R + Send) -> R {
        // Inside `on_one_thread`, the caller runs programs side by side on the cores.
        if !self.splits_passes || crate::runtime::kernels::on_one_thread_now() {
            return run();
        }
        with_threads_awake(run)
    }

    fn gradient_here<T: Scalar>(&self, values: &Values<T>) -> Result<Gradients<T>> {
        self.check_values(values, "values", true)?;
        for name in self.with_respect_to.iter().flatten() {
            if !self.program.is_input(name) && !self.program.params.iter().any(|d| &d.name == name) {
                return Err(Error::Values(format!(
                    "with respect to: `{name}` is not an input or param of the program"
                )));
            }
        }
        let (name, root) = match self.program.outputs.as_slice() {
            [(name, root)] if self.program.shape(*root).rank() == 0 => (name, *root),
            [(name, root)] => {
                return Err(Error::Unsupported(format!(
                    "gradient: output `{name}` has shape {}; it must be a scalar",
                    self.program.shape(*root)
                )))
            }
            outputs => {
                return Err(Error::Unsupported(format!(
                    "gradient: the program has {} outputs; it must have exactly one",
                    outputs.len()
                )))
            }
        };
        let expr = self.program.expr.as_ref();
        let mut grads: Vec<Option<Tensor<T>>> = vec![None; expr.len()];
        let early = self.early_loop::<T>();
        let early_nodes = early.as_ref().map(|(l, r, _)| (*l, *r));
        let mut s = self.sweep(
            values,
            Values::new(),
            None,
            true,
            early.as_ref().map(|(node, _, g)| EarlyLoop {
                node: *node,
                g: g.clone(),
                grads: &mut grads,
            }),
        )?;
        let output = s.values[usize::from(root)].as_deref().unwrap().clone();
        grads[usize::from(root)] = Some(scalar(T::one()));
        let (peak, back_times) = self.backward_sweep(&mut s, &mut grads, early_nodes)?;
        Ok(Gradients {
            outputs: vec![(name.clone(), output)],
            grads: self.var_grads(grads)?,
            peak_bytes: peak.max(s.peak_bytes),
            times: self.timed.then_some(NodeTimes {
                forward: s.times,
                backward: back_times,
            }),
        })
    }

    /// The backward sweep over the values `s` kept, from the cotangents in
    /// `grads` (the outputs' seeds, and any an early loop made): every node's
    /// cotangent sent to its operands, down to the inputs and params, whose
    /// cotangents stay in `grads`. The values are released as it goes. Returns
    /// the most bytes held and the time per node (when timed).
    fn backward_sweep<T: Scalar>(
        &self,
        s: &mut Sweep<'_, T>,
        grads: &mut Vec<Option<Tensor<T>>>,
        early_nodes: Option<(usize, usize)>,
    ) -> Result<(usize, Vec<Duration>)> {
        let expr = self.program.expr.as_ref();
        // The values held and the seeds, which the sweep releases like any other cotangent
        // (and the cotangents an early loop made of the values it reads).
        let mut live: usize = s.values.iter().flatten().map(|v| bytes(v)).sum::<usize>()
            + grads.iter().flatten().map(bytes).sum::<usize>();
        let mut peak = live;
        let loops = self.program.loops();
        let schedule = self.schedule(false);
        let on_path = self.on_gradient_path();
        let mut back_times = vec![Duration::ZERO; if self.timed { expr.len() } else { 0 }];
        for i in (0..expr.len()).rev() {
            let node = &expr[i];
            if node.as_var().is_some() || loops.per_row[i] || schedule.is_interior(i) {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            let _clock = Clock::start(back_times.get_mut(i));
            if early_nodes.is_some_and(|(_, reduction)| reduction == i) {
                // The loop under it already swept itself backwards, row by row.
                live -= bytes(&g);
                continue;
            }
            if let Some(body) = &loops.bodies[i] {
                let outer = Outer {
                    values: &s.values,
                    tangents: None,
                };
                let fresh: Vec<usize> = body.outer.iter().copied().filter(|&c| grads[c].is_none()).collect();
                let row_bytes = map_backward(self.program, body, outer, &g, grads, self.check_finite)?;
                peak = peak.max(live + row_bytes);
                live += fresh
                    .iter()
                    .filter_map(|&c| grads[c].as_ref())
                    .map(bytes)
                    .sum::<usize>();
                peak = peak.max(live);
                live -= bytes(&g);
                continue;
            }
            let g_bytes = bytes(&g);
            if let Some((child, window)) = self.window_of(i, schedule) {
                if on_path[child] {
                    self.finite(&g, || format!("the gradient through {node} (operand 1)"))?;
                    let shape = self.program.shape(child.into()).dims();
                    if grads[child].is_none() {
                        live += shape.iter().product::<usize>() * std::mem::size_of::<T>();
                    }
                    add_into_window(&mut grads[child], shape, window, &g);
                }
            } else {
                let sent = self.cotangents(i, schedule, &s.values, g, &on_path);
                for (position, child, cotangent) in sent.by_operand(node) {
                    if expr[child].as_num().is_some() || !on_path[child] {
                        continue;
                    }
                    self.finite(&cotangent, || {
                        format!("the gradient through {node} (operand {})", position + 1)
                    })?;
                    if grads[child].is_none() {
                        live += bytes(&cotangent);
                    }
                    accumulate(&mut grads[child], cotangent);
                }
            }
            peak = peak.max(live);
            live -= g_bytes;
            // Every reader of this value has been swept back: it is not needed any more.
            live -= s.values[i].take().map_or(0, |v| bytes(&v));
        }
        Ok((peak, back_times))
    }

    /// The gradient of every input and param differentiated with respect to,
    /// in declaration order, taken from the backward sweep's `grads` (zero where none reached it).
    fn var_grads<T: Scalar>(&self, mut grads: Vec<Option<Tensor<T>>>) -> Result<Vec<(String, Tensor<T>)>> {
        let expr = self.program.expr.as_ref();
        // Each variable's node, found in one pass: looking each name up by a scan
        // of the program was quadratic in a program with thousands of inputs.
        let var_ids: HashMap<egg::Symbol, usize> = expr
            .iter()
            .enumerate()
            .filter_map(|(i, node)| node.as_var().map(|v| (v, i)))
            .collect();
        let mut var_grad = |name: &str, shape: &[usize]| {
            let id = var_ids.get(&egg::Symbol::from(name));
            id.and_then(|&i| grads[i].take())
                .unwrap_or_else(|| Tensor::zeros(ndarray::IxDyn(shape)))
        };
        let grads = self
            .program
            .inputs
            .iter()
            .chain(&self.program.params)
            .filter(|d| self.differentiates(&d.name))
            .map(|d| (d.name.clone(), var_grad(&d.name, d.shape.dims())))
            .collect::<Vec<_>>();
        for (name, g) in &grads {
            // Finite cotangents can still sum to an infinity.
            self.finite(g, || format!("the gradient of `{name}`"))?;
        }
        Ok(grads)
    }

    /// Forward mode: every output and its tangent, given tangents of the
    /// inputs and params (a missing name has a zero tangent).
    pub fn tangents<T: Scalar>(&self, values: &Values<T>, tangents: &Values<T>) -> Result<Tangents<T>> {
        self.check_values(values, "values", true)?;
        self.check_values(tangents, "tangents", false)?;
        let s = self.sweep(values, Values::new(), Some(tangents), false, None)?;
        let jvp = self
            .program
            .outputs
            .iter()
            .map(|(name, id)| {
                let i = usize::from(*id);
                let zero = || Tensor::zeros(s.values[i].as_deref().unwrap().raw_dim());
                (name.clone(), s.tangents[i].clone().unwrap_or_else(zero))
            })
            .collect();
        Ok(Tangents {
            outputs: self.outputs(s.values),
            jvp,
        })
    }
}

thread_local! {
    /// Set on the thread running [`with_threads_awake`]'s work: the pool is awake already.
    static AWAKE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `run` on one of rayon's threads while the pool's other threads spin,
/// taking up at once each job `run` hands the pool ([`stay_awake`]), instead
/// of sleeping between them: for a caller that hands the pool work many
/// times in a row (an interpreter's passes split over the cores, or the
/// fast path's levels run side by side). Nested calls run `run` directly.
pub fn with_threads_awake<R: Send>(run: impl FnOnce() -> R + Send) -> R {
    if AWAKE.get() {
        return run();
    }
    let done = &AtomicBool::new(false);
    rayon::scope(|scope| {
        let runner = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(move |_| stay_awake(done, runner));
        }
        struct Asleep;
        impl Drop for Asleep {
            fn drop(&mut self) {
                AWAKE.set(false);
            }
        }
        AWAKE.set(true);
        let asleep = Asleep;
        let result = run();
        drop(asleep);
        done.store(true, Ordering::Release);
        result
    })
}

/// Runs whatever jobs the pool has until `done`: a thread of the pool waiting
/// for the next split of a run, spinning instead of sleeping. Woken from sleep
/// for each split, the second thread of this machine's pool started late in
/// some processes, and a split pass took longer than on one thread (OpenMP
/// runtimes spin between parallel regions for the same reason). Returns at
/// once on the thread that runs the program itself, and after [`SPIN_IDLE`]
/// with nothing to run: a spinner taken up beneath a job that the run waits
/// for (nested runs on a pool of three or more threads) would otherwise never
/// see `done`.
fn stay_awake(done: &AtomicBool, runner: Option<usize>) {
    if rayon::current_thread_index() == runner {
        return;
    }
    let mut idle_since = Instant::now();
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = Instant::now(),
            Some(rayon::Yield::Idle) if idle_since.elapsed() < SPIN_IDLE => std::hint::spin_loop(),
            Some(rayon::Yield::Idle) | None => return,
        }
    }
}

/// How long [`stay_awake`] spins with nothing to run before it lets its thread sleep.
const SPIN_IDLE: Duration = Duration::from_millis(1);
