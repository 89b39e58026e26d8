//! The interpreter: one forward sweep over the DAG in topological order (each
//! node computed once, intermediates dropped after their last use, peak bytes
//! measured), with tangents carried alongside (forward mode), and one
//! backward sweep in reverse order that accumulates cotangents (reverse mode).

use crate::error::{Error, Result};
use crate::ir::{early_loop, main_children, main_uses, Op, Program, Scalar, Shape};
use crate::runtime::grad::{jvp, vjp};
use crate::runtime::kernels::{forward, scalar, Tensor};
use crate::runtime::looprun::{accumulate, map_backward, map_forward, map_forward_backward, Outer};
use egg::Language;
use std::borrow::Cow;
use std::collections::HashMap;

/// Values by name: one for every input and param.
pub type Values<T> = HashMap<String, Tensor<T>>;

/// Outputs of a forward run.
#[derive(Clone, Debug)]
pub struct Evaluation<T> {
    /// Each output by name, in declaration order.
    pub outputs: Vec<(String, Tensor<T>)>,
    /// The most bytes of values held at once (inputs included).
    pub peak_bytes: usize,
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
    /// What the main sweep computes before each node (see [`main_children`]), found once.
    children: Vec<Vec<usize>>,
    check_finite: bool,
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
}

/// The values of `node`'s children, computed before it.
fn operands<'a, T: Scalar>(values: &'a [Option<Cow<Tensor<T>>>], node: &Op) -> Vec<&'a Tensor<T>> {
    node.children()
        .iter()
        .map(|&c| values[usize::from(c)].as_deref().expect("computed before use"))
        .collect()
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
            children: (0..program.node_count()).map(|i| main_children(program, i)).collect(),
            check_finite: false,
        }
    }

    /// Report a NaN or infinity with the op that produced it, instead of returning it.
    pub fn check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// The value of `node`'s child at `position` if it is a number literal, else NaN.
    fn literal<'a>(&'a self, node: &'a Op) -> impl Fn(usize) -> f64 + 'a {
        move |position| self.program.literal(node.children()[position]).unwrap_or(f64::NAN)
    }

    fn check_values<T: Scalar>(&self, values: &Values<T>, what: &str, all_required: bool) -> Result<()> {
        let declared: Vec<_> = self.program.inputs.iter().chain(&self.program.params).collect();
        for name in values.keys() {
            if !declared.iter().any(|d| &d.name == name) {
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
    /// sweep), else each is dropped after its last use.
    fn sweep<'v, T: Scalar>(
        &self,
        values: &'v Values<T>,
        tangents: Option<&Values<T>>,
        retain: bool,
        mut early: Option<EarlyLoop<'_, T>>,
    ) -> Result<Sweep<'v, T>> {
        let expr = self.program.expr.as_ref();
        let mut s = Sweep {
            values: (0..expr.len()).map(|_| None).collect(),
            tangents: vec![None; if tangents.is_some() { expr.len() } else { 0 }],
            peak_bytes: 0,
        };
        let mut remaining = self.uses.clone();
        let mut live = 0usize;
        let loops = self.program.loops();
        for (i, node) in expr.iter().enumerate() {
            if loops.per_row[i] {
                continue;
            }
            if let Some(body) = &loops.bodies[i] {
                let outer = Outer {
                    values: &s.values,
                    tangents: tangents.map(|_| s.tangents.as_slice()),
                };
                let run = match early.as_mut().filter(|e| e.node == i) {
                    Some(e) => map_forward_backward(self.program, i, body, outer, &e.g, e.grads, self.check_finite)?,
                    None => map_forward(self.program, i, body, outer, self.check_finite)?,
                };
                s.peak_bytes = s.peak_bytes.max(live + run.row_bytes + bytes(&run.value));
                live += bytes(&run.value) + run.tangent.as_ref().map_or(0, bytes);
                if tangents.is_some() {
                    s.tangents[i] = run.tangent;
                }
                s.values[i] = Some(Cow::Owned(run.value));
            } else {
                live += self.step(i, node, values, tangents, &mut s)?;
            }
            s.peak_bytes = s.peak_bytes.max(live);
            if !retain {
                for &c in &self.children[i] {
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
        Ok(s)
    }

    /// Computes node `i` (not a loop) and its tangent into `s`; returns the bytes added.
    fn step<'v, T: Scalar>(
        &self,
        i: usize,
        node: &Op,
        values: &'v Values<T>,
        tangents: Option<&Values<T>>,
        s: &mut Sweep<'v, T>,
    ) -> Result<usize> {
        let literal = self.literal(node);
        let value: Cow<Tensor<T>> = match node.as_var() {
            Some(v) => Cow::Borrowed(&values[v.as_str()]),
            None => Cow::Owned(forward(node, &operands(&s.values, node), &literal)),
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
                    jvp(node, &operands(&s.values, node), &value, &ts, &literal)
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

    fn outputs<T: Scalar>(&self, values: &[Option<Cow<Tensor<T>>>]) -> Vec<(String, Tensor<T>)> {
        self.program
            .outputs
            .iter()
            .map(|(name, id)| (name.clone(), values[usize::from(*id)].as_deref().unwrap().clone()))
            .collect()
    }

    /// Evaluates every output.
    pub fn evaluate<T: Scalar>(&self, values: &Values<T>) -> Result<Evaluation<T>> {
        self.check_values(values, "values", true)?;
        let s = self.sweep(values, None, false, None)?;
        Ok(Evaluation {
            outputs: self.outputs(&s.values),
            peak_bytes: s.peak_bytes,
        })
    }

    /// Reverse mode: the gradient of the one scalar output with respect to
    /// every input and param, by one backward sweep.
    pub fn gradient<T: Scalar>(&self, values: &Values<T>) -> Result<Gradients<T>> {
        self.check_values(values, "values", true)?;
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
        let s = self.sweep(
            values,
            None,
            true,
            early.as_ref().map(|(node, _, g)| EarlyLoop {
                node: *node,
                g: g.clone(),
                grads: &mut grads,
            }),
        )?;
        grads[usize::from(root)] = Some(scalar(T::one()));
        let mut live: usize = s.values.iter().flatten().map(|v| bytes(v)).sum();
        let mut peak = live;
        let loops = self.program.loops();
        for i in (0..expr.len()).rev() {
            let node = &expr[i];
            if node.as_var().is_some() || loops.per_row[i] {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
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
                let row_bytes = map_backward(self.program, body, outer, &g, &mut grads)?;
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
            let literal = self.literal(node);
            let out = s.values[i].as_deref().unwrap();
            for (position, cotangent) in vjp(node, &operands(&s.values, node), out, &g, &literal)
                .into_iter()
                .enumerate()
            {
                let (Some(cotangent), child) = (cotangent, usize::from(node.children()[position])) else {
                    continue;
                };
                if expr[child].as_num().is_some() {
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
            peak = peak.max(live);
            live -= bytes(&g);
        }
        let mut var_grad = |name: &str, shape: &[usize]| {
            let id = self.program.var_id(name);
            id.and_then(|i| grads[usize::from(i)].take())
                .unwrap_or_else(|| Tensor::zeros(ndarray::IxDyn(shape)))
        };
        let grads = self
            .program
            .inputs
            .iter()
            .chain(&self.program.params)
            .map(|d| (d.name.clone(), var_grad(&d.name, d.shape.dims())))
            .collect::<Vec<_>>();
        for (name, g) in &grads {
            // Finite cotangents can still sum to an infinity.
            self.finite(g, || format!("the gradient of `{name}`"))?;
        }
        Ok(Gradients {
            outputs: vec![(name.clone(), s.values[usize::from(root)].as_deref().unwrap().clone())],
            grads,
            peak_bytes: peak.max(s.peak_bytes),
        })
    }

    /// Forward mode: every output and its tangent, given tangents of the
    /// inputs and params (a missing name has a zero tangent).
    pub fn tangents<T: Scalar>(&self, values: &Values<T>, tangents: &Values<T>) -> Result<Tangents<T>> {
        self.check_values(values, "values", true)?;
        self.check_values(tangents, "tangents", false)?;
        let s = self.sweep(values, Some(tangents), false, None)?;
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
            outputs: self.outputs(&s.values),
            jvp,
        })
    }
}
