//! Running steps: a [`Trainer`] holds the params and the optimizer's state
//! and runs the step program on one batch at a time; [`train`] draws the
//! batches (shuffled each epoch from the seed; a last partial batch is left
//! out, so every step has B examples); an [`Evaluator`] gives the mean loss
//! (and the accuracy, for a classifier) over a whole data set.

use crate::egraph::{Batcher, Strategy};
use crate::error::{Error, Result};
use crate::ir::{BatchReduce, Program};
use crate::runtime::{Interpreter, Rng, Tensor, Values};
use crate::train::data::{shuffled, Dataset};
use crate::train::step::{restrict, Step};
use egg::Id;
use ndarray::{Axis, IxDyn};
use std::collections::HashMap;

/// The params and optimizer state between steps, and the interpreter of the step program.
pub struct Trainer<'s> {
    step: &'s Step,
    interpreter: Interpreter<'s>,
    /// The params, by name.
    pub params: Values<f64>,
    /// The optimizer's state, by its input's name (zeros at first).
    pub state: Values<f64>,
    /// Steps taken so far.
    pub steps_taken: u64,
    /// The learning rate.
    pub lr: f64,
}

impl<'s> Trainer<'s> {
    /// A trainer starting from `params`, with the optimizer's state at zero.
    pub fn new(step: &'s Step, params: Values<f64>, lr: f64) -> Trainer<'s> {
        let state = step
            .state
            .iter()
            .map(|s| (s.input.clone(), Tensor::zeros(IxDyn(s.shape.dims()))))
            .collect();
        Trainer {
            step,
            interpreter: Interpreter::new(&step.program),
            params,
            state,
            steps_taken: 0,
            lr,
        }
    }

    /// The step program's values for one batch (its data inputs, `[B, ...]`).
    pub fn step_values(&self, batch: Values<f64>) -> Values<f64> {
        let mut values = batch;
        values.extend(self.params.iter().map(|(n, v)| (n.clone(), v.clone())));
        values.extend(self.state.iter().map(|(n, v)| (n.clone(), v.clone())));
        values.insert(self.step.lr_input.clone(), Tensor::from_elem(IxDyn(&[]), self.lr));
        if let Some(t) = &self.step.t_input {
            values.insert(t.clone(), Tensor::from_elem(IxDyn(&[]), (self.steps_taken + 1) as f64));
        }
        values
    }

    /// One step on `batch`: the params and state move on; returns the batch's mean loss (before the update).
    pub fn step(&mut self, batch: Values<f64>) -> Result<f64> {
        let values = self.step_values(batch);
        let mut outputs: HashMap<String, Tensor<f64>> =
            self.interpreter.evaluate(&values)?.outputs.into_iter().collect();
        let mut take = |name: &str| {
            outputs
                .remove(name)
                .ok_or_else(|| Error::Internal(format!("the step program has no output `{name}`")))
        };
        let loss = take(&self.step.loss)?.sum();
        for (decl, output) in &self.step.params {
            let value = take(output)?;
            self.params.insert(decl.name.clone(), value);
        }
        for slot in &self.step.state {
            let value = take(&slot.output)?;
            self.state.insert(slot.input.clone(), value);
        }
        self.steps_taken += 1;
        Ok(loss)
    }
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// Passes over the data (each `examples / B` steps).
    Epochs(usize),
    /// Steps.
    Steps(usize),
}

/// What the training loop reports after each step.
#[derive(Clone, Copy, Debug)]
pub struct StepDone {
    /// Steps taken so far (this one included).
    pub step: usize,
    /// The epoch this step was in (from 0).
    pub epoch: usize,
    /// Whether it was the last step of its epoch.
    pub epoch_end: bool,
    /// The batch's mean loss.
    pub loss: f64,
}

/// The steps per epoch: whole batches of the data (`len / B`).
pub fn steps_per_epoch(step: &Step, data: &Dataset) -> Result<usize> {
    let batch = step.options.batch;
    if data.len < batch {
        return Err(Error::Unsupported(format!(
            "the batch is {batch} examples but the data has only {}",
            data.len
        )));
    }
    Ok(data.len / batch)
}

/// Trains for `length` on `data`, the batches shuffled each epoch by a
/// generator from `seed`; `after_step` sees each step (and may stop the run by an error).
pub fn train(
    trainer: &mut Trainer,
    data: &Dataset,
    length: Length,
    seed: u64,
    mut after_step: impl FnMut(&Trainer, StepDone) -> Result<()>,
) -> Result<()> {
    let batch = trainer.step.options.batch;
    let per_epoch = steps_per_epoch(trainer.step, data)?;
    let total = match length {
        Length::Epochs(n) => n * per_epoch,
        Length::Steps(n) => n,
    };
    let mut rng = Rng::new(seed);
    let mut order = vec![];
    for step in 0..total {
        let within = step % per_epoch;
        if within == 0 {
            order = shuffled(data.len, &mut rng);
        }
        let loss = trainer.step(data.rows(&order[within * batch..(within + 1) * batch]))?;
        let done = StepDone {
            step: step + 1,
            epoch: step / per_epoch,
            epoch_end: within + 1 == per_epoch,
            loss,
        };
        after_step(trainer, done)?;
    }
    Ok(())
}

/// The mean loss over a data set, and the accuracy when the model has a classifier's scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// The mean per-example loss.
    pub loss: f64,
    /// The fraction of examples whose largest score is at the label's largest entry.
    pub accuracy: Option<f64>,
}

/// Computes [`Metrics`] over a data set, in chunks of at most [`Evaluator::CHUNK`] examples.
pub struct Evaluator {
    /// The batched programs: (examples each, program).
    programs: Vec<(usize, Program)>,
    loss: String,
    /// The scores output and the one-hot label input, for the accuracy.
    classifier: Option<(String, String)>,
}

impl Evaluator {
    /// The most examples evaluated at once.
    pub const CHUNK: usize = 512;

    /// An evaluator of `model`'s `loss` output over `len` examples. With
    /// `scores` (an output of the same shape as one input, the one-hot label),
    /// it also counts the examples whose largest score is at the label's largest entry.
    pub fn new(model: &Program, loss: &str, scores: Option<&str>, len: usize) -> Result<Evaluator> {
        let output = |name: &str| {
            model
                .outputs
                .iter()
                .find(|(n, _)| n == name)
                .cloned()
                .ok_or_else(|| Error::Unsupported(format!("the program has no output `{name}`")))
        };
        let mut outputs: Vec<(String, Id)> = vec![output(loss)?];
        let classifier = match scores {
            None => None,
            Some(scores) => {
                let (name, id) = output(scores)?;
                let shape = model.shape(id);
                // The label: an input of the scores' shape that the scores do not read.
                let reads = restrict(model, &[(name.clone(), id)])?;
                let labels: Vec<&String> = model
                    .inputs
                    .iter()
                    .filter(|d| &d.shape == shape && reads.var_id(&d.name).is_none())
                    .map(|d| &d.name)
                    .collect();
                let [label] = labels.as_slice() else {
                    return Err(Error::Unsupported(format!(
                        "accuracy: `{scores}` has shape {shape}, and {} inputs that it does not read have it \
                         (one, the one-hot label, should)",
                        labels.len()
                    )));
                };
                outputs.push((name.clone(), id));
                Some((name, label.to_string()))
            }
        };
        let program = restrict(model, &outputs)?;
        let programs = per_example_by_size(&program, len, Self::CHUNK)?;
        Ok(Evaluator {
            programs,
            loss: loss.into(),
            classifier,
        })
    }

    /// The metrics of `params` over `data` (of the length the evaluator was made for).
    pub fn evaluate(&self, params: &Values<f64>, data: &Dataset) -> Result<Metrics> {
        let (mut loss, mut correct, mut start) = (0.0, 0usize, 0);
        while start < data.len {
            let (size, program) = self
                .programs
                .iter()
                .find(|(size, _)| start + size <= data.len)
                .ok_or_else(|| Error::Internal("the evaluator was made for another length".into()))?;
            let indices: Vec<usize> = (start..start + size).collect();
            let mut values = data.rows(&indices);
            values.extend(params.iter().map(|(n, v)| (n.clone(), v.clone())));
            let outputs: HashMap<String, Tensor<f64>> = Interpreter::new(program)
                .evaluate(&values)?
                .outputs
                .into_iter()
                .collect();
            loss += outputs[&self.loss].sum();
            if let Some((scores, label)) = &self.classifier {
                correct += count_correct(&outputs[scores], &values[label]);
            }
            start += size;
        }
        Ok(Metrics {
            loss: loss / data.len as f64,
            accuracy: self.classifier.as_ref().map(|_| correct as f64 / data.len as f64),
        })
    }
}

/// How many rows of `scores` have their largest entry where `labels` has its largest.
/// `program` batched fused over `size` examples (outputs per example, not
/// reduced), and over the remainder when `size` does not divide `len`: the
/// programs that run `len` examples in passes of `size`.
pub(crate) fn per_example_by_size(program: &Program, len: usize, size: usize) -> Result<Vec<(usize, Program)>> {
    let size = size.clamp(1, len.max(1));
    let mut sizes = vec![size];
    if !len.is_multiple_of(size) {
        sizes.push(len % size);
    }
    sizes
        .into_iter()
        .map(|size| {
            let batched = Batcher::new(program)
                .size(size)
                .reduce(BatchReduce::None)
                .strategy(Strategy::Fuse)
                .run()?;
            Ok((size, batched.program))
        })
        .collect()
}

fn count_correct(scores: &Tensor<f64>, labels: &Tensor<f64>) -> usize {
    let argmax = |row: ndarray::ArrayViewD<f64>| {
        row.iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            )
            .0
    };
    scores
        .axis_iter(Axis(0))
        .zip(labels.axis_iter(Axis(0)))
        .filter(|(s, l)| argmax(s.view()) == argmax(l.view()))
        .count()
}
