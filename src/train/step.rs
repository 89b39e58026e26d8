//! The training step as one program: the model's params in, the updated
//! params out. Built from the per-example loss in three moves: [`grad`] of
//! the loss with respect to the params, batched over B examples by the
//! [`Batcher`] (the mean over the batch; fused, in micro-batches of k, or the
//! fastest plan under a memory budget), then the optimizer's update written
//! after the gradient's nodes. It prints, batches, runs and exports to ONNX
//! like any program.
//!
//! The step program's inputs are the batched data inputs, `lr` (the learning
//! rate, a scalar), for Adam `t` (the number of this step, from 1), and the
//! optimizer's state (`v_<param>` for momentum; `m_<param>`, `v_<param>` for
//! Adam). Its outputs are the mean loss over the batch, `new_<param>` for
//! each param, then `new_<state>` for each state input.

use crate::egraph::{chunk_plan, Batcher, Strategy};
use crate::error::{Error, Result};
use crate::ir::{BatchReduce, Decl, Program, Run, Shape};
use crate::transform::builder::Builder;
use crate::transform::grad;
use egg::Id;
use std::collections::HashSet;

/// The update applied to each param from its mean gradient `g`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `p - lr * g`.
    Sgd,
    /// Heavy ball, as torch's and optax's SGD with momentum: `v = mu * v + g`, `p - lr * v`.
    Momentum {
        /// The decay of the velocity `mu` (0.9 is usual).
        mu: f64,
    },
    /// Adam (Kingma and Ba), as optax's `adam` (eps inside the square root 0):
    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
    Adam {
        /// Decay of the first moment (0.9).
        b1: f64,
        /// Decay of the second moment (0.999).
        b2: f64,
        /// Added to the root of the second moment (1e-8).
        eps: f64,
    },
}

impl Optimizer {
    /// Momentum with its usual decay, 0.9.
    pub const MOMENTUM: Optimizer = Optimizer::Momentum { mu: 0.9 };
    /// Adam with its usual constants (0.9, 0.999, 1e-8).
    pub const ADAM: Optimizer = Optimizer::Adam {
        b1: 0.9,
        b2: 0.999,
        eps: 1e-8,
    };

    /// The prefixes of the state kept per param (`v` for `v_<param>`).
    fn state_prefixes(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd => &[],
            Optimizer::Momentum { .. } => &["v"],
            Optimizer::Adam { .. } => &["m", "v"],
        }
    }

    /// Its name, as the command line spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum { .. } => "momentum",
            Optimizer::Adam { .. } => "adam",
        }
    }
}

/// How the batch of the step is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// All B examples at once (the fused plan).
    Fused,
    /// In micro-batches of k examples, their gradients accumulated (k < B; k >= B is the fused plan).
    MicroBatch(usize),
    /// The plan the cost model prices fastest whose predicted peak memory fits this many bytes.
    Memory(usize),
}

/// What a step program is built with.
#[derive(Clone, Debug)]
pub struct StepOptions {
    /// The batch B: examples per step.
    pub batch: usize,
    /// How the batch is computed.
    pub plan: Plan,
    /// The update.
    pub optimizer: Optimizer,
    /// The output that is the per-example loss (`None`: the program's only scalar output).
    pub loss: Option<String>,
}

/// One state input of the step program and the output that updates it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateSlot {
    /// The input (`m_W`).
    pub input: String,
    /// The output with its next value (`new_m_W`).
    pub output: String,
    /// Its shape (the param's).
    pub shape: Shape,
}

/// The step program and what its names mean.
#[derive(Clone, Debug)]
pub struct Step {
    /// The program: params in, new params out.
    pub program: Program,
    /// The per-example loss program it was built from (the loss output only).
    pub model: Program,
    /// The options it was built with.
    pub options: StepOptions,
    /// The loss output's name.
    pub loss: String,
    /// Each param and the output with its next value (`new_<param>`).
    pub params: Vec<(Decl, String)>,
    /// The optimizer's state.
    pub state: Vec<StateSlot>,
    /// The data inputs (batched: `[B, ...]`).
    pub data_inputs: Vec<String>,
    /// The learning-rate input's name.
    pub lr_input: String,
    /// The step-number input's name (Adam only).
    pub t_input: Option<String>,
    /// Which plan computes the batch (`fused`, `chunks of K`, ...).
    pub plan_name: String,
}

/// The model with only its loss output: `loss` by name, or its only scalar output.
pub fn loss_program(model: &Program, loss: Option<&str>) -> Result<(Program, String)> {
    let scalars: Vec<&(String, Id)> = model
        .outputs
        .iter()
        .filter(|(_, id)| model.shape(*id).rank() == 0)
        .collect();
    let chosen = match loss {
        Some(name) => match model.outputs.iter().find(|(n, _)| n == name) {
            Some(o) if model.shape(o.1).rank() == 0 => o,
            Some(o) => {
                return Err(Error::Unsupported(format!(
                    "the loss `{name}` has shape {}; training needs a scalar loss per example",
                    model.shape(o.1)
                )))
            }
            None => return Err(Error::Unsupported(format!("the program has no output `{name}`"))),
        },
        None => match scalars.as_slice() {
            [one] => *one,
            _ => {
                return Err(Error::Unsupported(format!(
                    "which output is the loss? The program has {} scalar outputs ({}): name it with --loss",
                    scalars.len(),
                    scalars.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        },
    };
    Ok((restrict(model, std::slice::from_ref(chosen))?, chosen.0.clone()))
}

/// `program` with only `outputs` (nodes no output reads are dropped).
pub fn restrict(program: &Program, outputs: &[(String, Id)]) -> Result<Program> {
    let names = (0..program.node_count())
        .filter_map(|i| program.name_hint(Id::from(i)).map(|n| (Id::from(i), n.clone())))
        .collect();
    Ok(Program::new(
        program.inputs.clone(),
        program.params.clone(),
        program.expr.clone(),
        outputs.to_vec(),
        names,
    )?)
}

/// The mean-loss gradient of the model over a batch, computed by `plan`.
fn batched_gradient(model: &Program, options: &StepOptions) -> Result<(Program, String)> {
    let params: Vec<String> = model.params.iter().map(|d| d.name.clone()).collect();
    if params.is_empty() {
        return Err(Error::Unsupported("the program has no params to train".into()));
    }
    if model.inputs.is_empty() {
        return Err(Error::Unsupported(
            "the program has no inputs: there is no data to train on".into(),
        ));
    }
    let gradient = grad(model, Some(&params))?;
    let batcher = Batcher::new(&gradient).size(options.batch).reduce(BatchReduce::Mean);
    let over: HashSet<&str> = model.inputs.iter().map(|d| d.name.as_str()).collect();
    match options.plan {
        Plan::Fused => Ok((batcher.strategy(Strategy::Fuse).run()?.program, "fused".into())),
        Plan::MicroBatch(0) => Err(Error::Unsupported("--micro-batch must be at least 1".into())),
        Plan::MicroBatch(k) if k >= options.batch => {
            Ok((batcher.strategy(Strategy::Fuse).run()?.program, "fused".into()))
        }
        Plan::MicroBatch(k) => {
            let fused = batcher.strategy(Strategy::Fuse).run()?.program;
            Ok((chunk_plan(&fused, &over, k)?, format!("chunks of {k}")))
        }
        Plan::Memory(bytes) => {
            // The step runs the gradient program forward: that is the run to fit.
            let batched = batcher.memory_budget(Some(bytes)).price_for(Run::Eval).run()?;
            Ok((batched.program, batched.report.chosen.name))
        }
    }
}

/// Names taken in the step program, and fresh ones (`name_2`, ...) for what it adds.
struct Names(HashSet<String>);

impl Names {
    fn fresh(&mut self, base: String) -> String {
        let name = (1..)
            .map(|k| if k == 1 { base.clone() } else { format!("{base}_{k}") })
            .find(|n| !self.0.contains(n))
            .expect("some suffix is free");
        self.0.insert(name.clone());
        name
    }
}

impl Step {
    /// Builds the step program of `model` (a per-example loss).
    pub fn build(model: &Program, options: &StepOptions) -> Result<Step> {
        if options.batch == 0 {
            return Err(Error::Unsupported("the batch must be at least 1 example".into()));
        }
        let (model, loss) = loss_program(model, options.loss.as_deref())?;
        let (gradient, plan_name) = batched_gradient(&model, options)?;
        let mut names = Names(
            gradient
                .inputs
                .iter()
                .chain(&gradient.params)
                .map(|d| d.name.clone())
                .chain(gradient.outputs.iter().map(|(n, _)| n.clone()))
                .collect(),
        );
        let mut b = Builder::from_program(&gradient);
        let mut inputs = gradient.inputs.clone();
        let mut scalar_input = |b: &mut Builder, inputs: &mut Vec<Decl>, base: &str| {
            let name = names.fresh(base.into());
            inputs.push(Decl {
                name: name.clone(),
                shape: Shape::scalar(),
            });
            (name.clone(), b.var(&name, Shape::scalar()))
        };
        let (lr_input, lr) = scalar_input(&mut b, &mut inputs, "lr");
        let t = match options.optimizer {
            Optimizer::Adam { .. } => Some(scalar_input(&mut b, &mut inputs, "t")),
            _ => None,
        };
        let mut outputs = vec![gradient.outputs[0].clone()];
        let (mut params, mut state, mut state_outputs) = (vec![], vec![], vec![]);
        for (decl, (_, g)) in model.params.iter().zip(&gradient.outputs[1..]) {
            let p = b.var(&decl.name, decl.shape.clone());
            let mut slots = vec![];
            for prefix in options.optimizer.state_prefixes() {
                let input = names.fresh(format!("{prefix}_{}", decl.name));
                inputs.push(Decl {
                    name: input.clone(),
                    shape: decl.shape.clone(),
                });
                slots.push((input.clone(), b.var(&input, decl.shape.clone())));
            }
            let current: Vec<Id> = slots.iter().map(|s| s.1).collect();
            let (new_p, new_state) = update(&mut b, options.optimizer, p, *g, lr, t.as_ref().map(|t| t.1), &current)?;
            let new_name = names.fresh(format!("new_{}", decl.name));
            outputs.push((new_name.clone(), new_p));
            params.push((decl.clone(), new_name));
            for ((input, _), value) in slots.into_iter().zip(new_state) {
                let output = names.fresh(format!("new_{input}"));
                state_outputs.push((output.clone(), value));
                state.push(StateSlot {
                    input,
                    output,
                    shape: decl.shape.clone(),
                });
            }
        }
        outputs.extend(state_outputs);
        let hints = (0..gradient.node_count())
            .filter_map(|i| gradient.name_hint(Id::from(i)).map(|n| (Id::from(i), n.clone())))
            .collect();
        let program = Program::new(inputs, gradient.params.clone(), b.into_expr(), outputs, hints)?;
        Ok(Step {
            program,
            data_inputs: model.inputs.iter().map(|d| d.name.clone()).collect(),
            model,
            options: options.clone(),
            loss,
            params,
            state,
            lr_input,
            t_input: t.map(|t| t.0),
            plan_name,
        })
    }
}

/// The next value of a param `p` with mean gradient `g`, and of its state.
fn update(
    b: &mut Builder,
    optimizer: Optimizer,
    p: Id,
    g: Id,
    lr: Id,
    t: Option<Id>,
    state: &[Id],
) -> Result<(Id, Vec<Id>)> {
    match (optimizer, state, t) {
        (Optimizer::Sgd, [], _) => Ok((
            b.instantiate("(- ?p (* ?lr ?g))", &[("?p", p), ("?lr", lr), ("?g", g)])?,
            vec![],
        )),
        (Optimizer::Momentum { mu }, &[v], _) => {
            let mu = b.num(mu);
            let v = b.instantiate("(+ (* ?mu ?v) ?g)", &[("?mu", mu), ("?v", v), ("?g", g)])?;
            let p = b.instantiate("(- ?p (* ?lr ?v))", &[("?p", p), ("?lr", lr), ("?v", v)])?;
            Ok((p, vec![v]))
        }
        (Optimizer::Adam { b1, b2, eps }, &[m, v], Some(t)) => {
            let [b1, c1, b2, c2, eps, one] = [b1, 1.0 - b1, b2, 1.0 - b2, eps, 1.0].map(|x| b.num(x));
            let m = b.instantiate(
                "(+ (* ?b1 ?m) (* ?c1 ?g))",
                &[("?b1", b1), ("?m", m), ("?c1", c1), ("?g", g)],
            )?;
            let v = b.instantiate(
                "(+ (* ?b2 ?v) (* ?c2 (* ?g ?g)))",
                &[("?b2", b2), ("?v", v), ("?c2", c2), ("?g", g)],
            )?;
            let m_hat = b.instantiate(
                "(/ ?m (- ?one (^ ?b1 ?t)))",
                &[("?m", m), ("?one", one), ("?b1", b1), ("?t", t)],
            )?;
            let v_hat = b.instantiate(
                "(/ ?v (- ?one (^ ?b2 ?t)))",
                &[("?v", v), ("?one", one), ("?b2", b2), ("?t", t)],
            )?;
            let p = b.instantiate(
                "(- ?p (* ?lr (/ ?mh (+ (sqrt ?vh) ?eps))))",
                &[("?p", p), ("?lr", lr), ("?mh", m_hat), ("?vh", v_hat), ("?eps", eps)],
            )?;
            Ok((p, vec![m, v]))
        }
        _ => Err(Error::Internal(format!(
            "{} got {} state values{}",
            optimizer.name(),
            state.len(),
            if t.is_some() { " and a step number" } else { "" }
        ))),
    }
}
