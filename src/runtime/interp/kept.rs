//! Reverse mode split in two: a forward sweep that keeps its values, and a
//! backward sweep started later from cotangents of the outputs given then.
//! A caller that chains programs (the structure fast path runs one batched
//! cell per level, each level reading the outputs of earlier ones) learns an
//! output's cotangent only after the later programs have run backward; with
//! the values kept, each program's forward runs once, not again inside a
//! vector-Jacobian program.

use super::{bytes, Interpreter, Sweep, Values};
use crate::error::{Error, Result};
use crate::ir::{Scalar, Shape};
use crate::runtime::kernels::Tensor;

/// A forward sweep's values, kept for one backward sweep ([`Kept::backward`]).
pub struct Kept<'v, 'p, T: Scalar> {
    interpreter: &'v Interpreter<'p>,
    sweep: Sweep<'v, T>,
}

impl<'p> Interpreter<'p> {
    /// Runs the program forward and keeps every value for a later
    /// [`Kept::backward`]. The inputs and params in `owned` are moved into the
    /// sweep (a level's gathered arguments); the others are read from `shared`
    /// (the params every level reads), which may hold names the program does not declare.
    pub fn forward_kept<'v, T: Scalar>(&'v self, owned: Values<T>, shared: &'v Values<T>) -> Result<Kept<'v, 'p, T>> {
        self.check_literals::<T>()?;
        self.check_split(&owned, shared)?;
        let sweep = self.on_threads(|| self.sweep(shared, owned, None, true, None))?;
        Ok(Kept {
            interpreter: self,
            sweep,
        })
    }

    /// Every declared input and param has a value of its shape in `owned` or
    /// `shared`; every name in `owned` is declared, and read by one node.
    fn check_split<T: Scalar>(&self, owned: &Values<T>, shared: &Values<T>) -> Result<()> {
        for d in self.program.inputs.iter().chain(&self.program.params) {
            let Some(v) = owned.get(&d.name).or_else(|| shared.get(&d.name)) else {
                return Err(Error::Values(format!(
                    "values: no value for `{}` (shape {})",
                    d.name, d.shape
                )));
            };
            if v.shape() != d.shape.dims() {
                return Err(Error::Values(format!(
                    "values: `{}` has shape {}, but the program declares {}",
                    d.name,
                    Shape(v.shape().to_vec()),
                    d.shape
                )));
            }
        }
        for name in owned.keys() {
            let nodes = self
                .program
                .expr
                .as_ref()
                .iter()
                .filter(|n| n.as_var().is_some_and(|v| v.as_str() == name))
                .count();
            if nodes != 1 {
                return Err(Error::Values(format!(
                    "values: `{name}` is read by {nodes} nodes of the program; a moved value needs exactly one"
                )));
            }
        }
        Ok(())
    }
}

impl<T: Scalar> Kept<'_, '_, T> {
    /// Output `k`'s value (in declaration order).
    pub fn output(&self, k: usize) -> &Tensor<T> {
        let id = self.interpreter.program.outputs[k].1;
        self.sweep.values[usize::from(id)]
            .as_deref()
            .expect("a kept sweep holds every value")
    }

    /// The bytes of values held.
    pub fn bytes(&self) -> usize {
        self.sweep.values.iter().flatten().map(|v| bytes(v)).sum()
    }

    /// The backward sweep from `seeds`, one cotangent per output in
    /// declaration order (`None`: zero): the gradient of `sum(output_k *
    /// seed_k)` over the outputs with respect to every input and param the
    /// interpreter differentiates with respect to, in declaration order.
    pub fn backward(mut self, seeds: Vec<Option<Tensor<T>>>) -> Result<Vec<(String, Tensor<T>)>> {
        let interpreter = self.interpreter;
        let program = interpreter.program;
        if seeds.len() != program.outputs.len() {
            return Err(Error::Values(format!(
                "backward: {} cotangents for {} outputs",
                seeds.len(),
                program.outputs.len()
            )));
        }
        let mut grads: Vec<Option<Tensor<T>>> = vec![None; program.node_count()];
        for ((name, id), seed) in program.outputs.iter().zip(seeds) {
            let Some(seed) = seed else { continue };
            let shape = program.shape(*id);
            if seed.shape() != shape.dims() {
                return Err(Error::Values(format!(
                    "backward: the cotangent of `{name}` has shape {}, but the output's is {shape}",
                    Shape(seed.shape().to_vec())
                )));
            }
            crate::runtime::looprun::accumulate(&mut grads[usize::from(*id)], seed);
        }
        interpreter.on_threads(|| -> Result<_> {
            interpreter.backward_sweep(&mut self.sweep, &mut grads, None)?;
            interpreter.var_grads(grads)
        })
    }
}
