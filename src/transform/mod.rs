//! Transforms from program to program: [`grad`] (reverse mode) and [`jvp`]
//! (forward mode), as JAX has them. The result is an ordinary [`Program`]:
//! it prints, draws, batches, exports and differentiates again like any other
//! (`grad` then `batch --reduce none` gives per-example gradients; `jvp` of a
//! gradient program gives Hessian-vector products).
//!
//! The derivative graph is built on top of the forward program's nodes
//! ([`builder`]), so the forward values the derivative needs are the forward
//! pass's own (shared, computed once), and equal derivative subterms are
//! shared too. Each op's JVP and transpose rule is in [`rules`]; the sweeps
//! here walk the program in topological order (forward for `jvp`) or in
//! reverse (for `grad`, as micrograd does) and accumulate. The result then
//! goes through the algebra rules in an e-graph ([`simplify`]).

pub mod builder;
pub mod rules;
pub mod simplify;

use crate::error::{Error, Result};
use crate::ir::{last_chunk_shapes, Decl, Op, Program, Reduce, Shape};
use builder::{Builder, LoopRows};
use egg::{Id, Language};
use std::collections::{BTreeMap, HashSet};

/// The gradient program of `program`, whose one output must be a scalar: its
/// outputs are that output, then `grad_<name>` for each name of `wrt` (every
/// input and param when `None`), in the order given; a derived name the
/// program already has gets a suffix (`grad_x_2`).
pub fn grad(program: &Program, wrt: Option<&[String]>) -> Result<Program> {
    let (out_name, out) = match program.outputs.as_slice() {
        [one] => one.clone(),
        outputs => {
            return Err(Error::Unsupported(format!(
                "grad needs one scalar output; the program has {} ({})",
                outputs.len(),
                outputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    if program.shape(out).rank() != 0 {
        return Err(Error::Unsupported(format!(
            "grad needs a scalar output; {out_name} has shape {} (reduce it first, e.g. sum({out_name}))",
            program.shape(out)
        )));
    }
    let names = differentiated_names(program, wrt, "grad")?;
    let vars: HashSet<&str> = names.iter().map(String::as_str).collect();
    let depends = depends_on(program, &vars);
    let mut b = Builder::from_program(program);
    let mut sweep = ReverseSweep {
        cotangent: vec![None; program.node_count()],
        per_row: BTreeMap::new(),
        last_chunk: last_chunk_shapes(program),
    };
    sweep.cotangent[usize::from(out)] = Some(b.num(1.0));
    for i in (0..program.node_count()).rev() {
        sweep.finish_loops_reading(&mut b, i)?;
        let (Some(g), true) = (sweep.cotangent[i], depends[i]) else {
            continue;
        };
        let wanted = |c: Id| depends[usize::from(c)];
        let op = &program.expr[Id::from(i)];
        let contributions = rules::transpose_rule(&mut b, Id::from(i), op, g, &wanted)
            .map_err(|e| in_derivative("grad", program, i, e))?;
        for (child, contribution) in contributions {
            sweep.accumulate(&mut b, program, Id::from(i), child, contribution)?;
        }
    }
    let mut taken = names_in_use(program);
    let mut outputs = vec![(out_name, out)];
    for name in &names {
        let gradient = match program.var_id(name) {
            Some(id) => sweep.cotangent[usize::from(id)],
            None => None,
        };
        let gradient = match gradient {
            Some(g) => g,
            None => b.zeros(&declared_shape(program, name))?,
        };
        outputs.push((fresh(format!("grad_{name}"), &mut taken), gradient));
    }
    finish(program, b, program.inputs.clone(), outputs)
}

/// The cotangents gathered so far by the reverse sweep.
struct ReverseSweep {
    /// The cotangent of each node of the forward program.
    cotangent: Vec<Option<Id>>,
    /// Per-row contributions to nodes outside a loop, summed within the loop's
    /// body, by node and loop: they become one sum over the rows.
    per_row: BTreeMap<(usize, usize, Option<usize>), Option<Id>>,
    /// The shape of each node in a shorter last chunk, where it differs (see [`last_chunk_shapes`]).
    last_chunk: Vec<Option<Shape>>,
}

impl ReverseSweep {
    /// Adds the contribution of `parent` to the cotangent of `child`. Inside
    /// a loop, a contribution to a node outside it is made once per row: a
    /// per-row one is summed over the rows (see `finish_loops_reading`), one
    /// that is the same for every row is multiplied by their number.
    fn accumulate(
        &mut self,
        b: &mut Builder,
        program: &Program,
        parent: Id,
        child: Id,
        contribution: Id,
    ) -> Result<()> {
        let c = usize::from(child);
        let mut contribution = contribution;
        let outer = !program.loops().per_row[c];
        if let (Some(last), None) = (&self.last_chunk[c], b.loop_rows(contribution)) {
            contribution = cut_to_every_chunk(b, program, child, last, contribution)?;
        }
        // `row(y)` and `rows(y, k)` give y the whole stack of their rows' cotangents at once.
        let stacks_rows = matches!(program.expr[parent], Op::Row(_) | Op::Rows(_));
        let parent_rows = b.loop_rows(parent).filter(|_| !stacks_rows);
        let slot = match (parent_rows, b.loop_rows(contribution)) {
            (Some(_), Some(LoopRows { rows, chunk })) if outer => self.per_row.entry((c, rows, chunk)).or_insert(None),
            (Some(LoopRows { rows, chunk }), None) if outer => {
                let iterations = chunk.map_or(rows, |k| rows.div_ceil(k));
                let count = b.int(iterations);
                contribution = b.mul(contribution, count)?;
                &mut self.cotangent[c]
            }
            _ => &mut self.cotangent[c],
        };
        *slot = Some(match *slot {
            None => contribution,
            Some(sum) => b.plus(sum, contribution)?,
        });
        Ok(())
    }

    /// Before node `i`'s cotangent is used: the per-row contributions that
    /// loop bodies made to it, summed over the rows (`sum(map(p, n), 0)`),
    /// or over the chunks (`accumulate(p, n, k)`).
    fn finish_loops_reading(&mut self, b: &mut Builder, i: usize) -> Result<()> {
        let keys: Vec<_> = self
            .per_row
            .range((i, 0, None)..=(i, usize::MAX, Some(usize::MAX)))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(per_row) = self.per_row.remove(&key).flatten() else {
                continue;
            };
            let (_, rows, chunk) = key;
            let n = b.int(rows);
            let total = match chunk {
                // Summed over the chunks as they run: one accumulator of the outer value's shape.
                Some(k) => {
                    let k = b.int(k);
                    b.add(Op::Accumulate([per_row, n, k]))?
                }
                None => {
                    let stacked = b.add(Op::Map([per_row, n]))?;
                    b.reduce_axis(Reduce::Sum, stacked, 0)?
                }
            };
            self.cotangent[i] = Some(match self.cotangent[i] {
                None => total,
                Some(sum) => b.plus(sum, total)?,
            });
        }
        Ok(())
    }
}

/// A contribution to the cotangent of `child`, a value in a loop over chunks
/// whose last chunk is shorter (`last`: its shape there), that is the same
/// for every chunk (built outside the loop, e.g. a cotangent broadcast to the
/// chunk's `k` rows): when it has those `k` rows, the chunks' rows of it
/// repeated over the batch (`rows(concat(t, ..., t)[:n], k)`), so the last
/// chunk reads as many rows as it has.
fn cut_to_every_chunk(b: &mut Builder, program: &Program, child: Id, last: &Shape, t: Id) -> Result<Id> {
    let full = program.shape(child);
    let Some(LoopRows { rows, chunk: Some(k) }) = b.loop_rows(child) else {
        return Ok(t);
    };
    let shape = b.shape(t).clone();
    let chunked = |a: usize| full.dims()[a] != last.dims()[a] && shape.dims()[a] == full.dims()[a];
    if shape.rank() != full.rank() || !(0..full.rank()).any(chunked) {
        return Ok(t);
    }
    if !chunked(0) || (1..full.rank()).any(chunked) {
        return Err(Error::Unsupported(format!(
            "grad: `{}` (shape {full}, {last} in the last chunk) has its chunk's rows along another axis than 0",
            program.expr[child]
        )));
    }
    let repeated = rules::chunk_after_chunk(b, t, rows, k)?;
    let k = b.int(k);
    b.add(Op::Rows([repeated, k]))
}

/// The JVP program of `program`: a tangent input `tangent_<name>` for each
/// of `names` (every input and param when `None`); its outputs are the
/// program's outputs, then `jvp_<out>` for each of them. A derived name the
/// program already has gets a suffix (`tangent_x_2`).
pub fn jvp(program: &Program, names: Option<&[String]>) -> Result<Program> {
    let names = differentiated_names(program, names, "jvp")?;
    let mut taken = names_in_use(program);
    let mut b = Builder::from_program(program);
    let mut inputs = program.inputs.clone();
    let mut seeds = vec![];
    for name in &names {
        let tangent_name = fresh(format!("tangent_{name}"), &mut taken);
        let shape = declared_shape(program, name);
        seeds.push((program.var_id(name), b.var(&tangent_name, shape.clone())));
        inputs.push(Decl {
            name: tangent_name,
            shape,
        });
    }
    let mut tangent: Vec<Option<Id>> = vec![None; program.node_count()];
    for (var, seed) in seeds {
        if let Some(id) = var {
            tangent[usize::from(id)] = Some(seed);
        }
    }
    for (i, op) in program.expr.as_ref().iter().enumerate() {
        if tangent[i].is_none() && !op.is_leaf() {
            tangent[i] = rules::jvp_rule(&mut b, Id::from(i), op, &|c| tangent[usize::from(c)])
                .map_err(|e| in_derivative("jvp", program, i, e))?;
        }
    }
    let mut outputs = program.outputs.clone();
    for (name, id) in &program.outputs {
        let t = match tangent[usize::from(*id)] {
            Some(t) => t,
            None => b.zeros(&program.shape(*id).clone())?,
        };
        outputs.push((fresh(format!("jvp_{name}"), &mut taken), t));
    }
    finish(program, b, inputs, outputs)
}

/// A shape error met while building the derivative of node `i`, said as such
/// (the shapes it names are the derivative's, not the program's).
fn in_derivative(what: &str, program: &Program, i: usize, error: Error) -> Error {
    match error {
        Error::Shape(e) => Error::Unsupported(format!(
            "{what}: the derivative of `{}` (shape {}) needs a value that cannot be built: {e}",
            program.expr[Id::from(i)],
            program.shape(Id::from(i))
        )),
        other => other,
    }
}

/// Every name the program declares or outputs.
fn names_in_use(program: &Program) -> HashSet<String> {
    let declared = program.inputs.iter().chain(&program.params).map(|d| d.name.clone());
    declared.chain(program.outputs.iter().map(|(n, _)| n.clone())).collect()
}

/// `base`, or if the program has that name already, the first of `base_2`,
/// `base_3`, ... that it has not (so `jvp` of a `jvp` program works); it is then taken.
fn fresh(base: String, taken: &mut HashSet<String>) -> String {
    let name = (1..)
        .map(|k| if k == 1 { base.clone() } else { format!("{base}_{k}") })
        .find(|n| !taken.contains(n))
        .expect("some suffix is free");
    taken.insert(name.clone());
    name
}

/// The names to differentiate with respect to: `names`, checked, or every input and param.
fn differentiated_names(program: &Program, names: Option<&[String]>, what: &str) -> Result<Vec<String>> {
    let declared = program.inputs.iter().chain(&program.params);
    let Some(names) = names else {
        return Ok(declared.map(|d| d.name.clone()).collect());
    };
    let mut seen = HashSet::new();
    for name in names {
        if !program.inputs.iter().chain(&program.params).any(|d| &d.name == name) {
            let known: Vec<&str> = declared.clone().map(|d| d.name.as_str()).collect();
            let known = match known.is_empty() {
                true => "no inputs or params".to_string(),
                false => known.join(", "),
            };
            return Err(Error::Unsupported(format!(
                "{what}: `{name}` is not an input or param (the program declares {known})"
            )));
        }
        if !seen.insert(name) {
            return Err(Error::Unsupported(format!("{what}: `{name}` is named twice")));
        }
    }
    Ok(names.to_vec())
}

fn declared_shape(program: &Program, name: &str) -> crate::ir::Shape {
    program
        .inputs
        .iter()
        .chain(&program.params)
        .find(|d| d.name == name)
        .map(|d| d.shape.clone())
        .expect("a checked name")
}

/// Whether each node depends on one of `vars`.
fn depends_on(program: &Program, vars: &HashSet<&str>) -> Vec<bool> {
    let mut depends = vec![false; program.node_count()];
    for (i, op) in program.expr.as_ref().iter().enumerate() {
        depends[i] = op.as_var().is_some_and(|v| vars.contains(v.as_str()))
            || op.children().iter().any(|&c| depends[usize::from(c)]);
    }
    depends
}

/// The built graph as a program (checked, with equal subterms shared).
fn finish(program: &Program, b: Builder, inputs: Vec<Decl>, outputs: Vec<(String, Id)>) -> Result<Program> {
    let names = (0..program.node_count())
        .filter_map(|i| program.name_hint(Id::from(i)).map(|n| (Id::from(i), n.clone())))
        .collect();
    let derived = Program::new(inputs, program.params.clone(), b.into_expr(), outputs, names)?;
    simplify::simplify(derived)
}
