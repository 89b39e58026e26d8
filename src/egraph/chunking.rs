//! Micro-batches: the fused plan run over chunks of `k` rows at a time
//! (JAX's `lax.map(f, xs, batch_size=k)`, torch.func's `vmap(chunk_size=k)`).
//! Built from the extracted fused program, not in the e-graph, so that its
//! size does not depend on B or k: every value that depends on a batched
//! input moves inside `chunks(body, n, k)`, which reads `rows(x, k)`; the
//! reduction over the batch (the mean of the losses) stays outside.

use crate::error::{Error, Result};
use crate::ir::{BatchReduce, Num, Op, Program};
use egg::{Id, Language, RecExpr};
use std::collections::HashSet;

/// The fused program `fused` (over a batch of `rows`) as a loop over chunks of `k` rows.
pub fn chunk_plan(fused: &Program, batched: &HashSet<&str>, reduce: BatchReduce, k: usize) -> Result<Program> {
    let expr = fused.expr.as_ref();
    let refuse = |why: &str| Error::Unsupported(format!("chunks of {k}: {why}"));
    if fused.loops().any() {
        return Err(refuse("the fused plan already loops (an op without a fusing rule)"));
    }
    let mut depends = vec![false; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        depends[i] = node.as_var().is_some_and(|v| batched.contains(v.as_str()))
            || node.children().iter().any(|&c| depends[usize::from(c)]);
    }
    // The batched value of each output, which the loop computes.
    let looped: Vec<Option<(usize, Option<Op>)>> = fused
        .outputs
        .iter()
        .map(|(_, root)| {
            let root = usize::from(*root);
            match (&expr[root], reduce) {
                (_, _) if !depends[root] => None,
                (Op::ReduceAxis(r, [s, zero]), BatchReduce::Mean | BatchReduce::Sum)
                    if fused.literal(*zero) == Some(0.0) =>
                {
                    Some((usize::from(*s), Some(Op::ReduceAxis(*r, [*s, *zero]))))
                }
                (_, BatchReduce::None) => Some((root, None)),
                _ => Some((usize::MAX, None)),
            }
        })
        .collect();
    if looped.iter().flatten().any(|(s, _)| *s == usize::MAX) {
        return Err(refuse("an output is not a reduction over the batch"));
    }
    let rows = fused
        .inputs
        .iter()
        .find(|d| batched.contains(d.name.as_str()))
        .map(|d| d.shape.dims().first().copied());
    let rows = rows.ok_or_else(|| refuse("no batched input"))?;
    let rows = rows.ok_or_else(|| refuse("a batched input is a scalar: it has no rows"))?;
    if k == 0 || k >= rows {
        return Err(refuse(&format!(
            "a chunk must have between 1 and {} rows",
            rows.saturating_sub(1)
        )));
    }
    let mut out: Vec<Op> = Vec::with_capacity(expr.len() * 2);
    let push = |op: Op, out: &mut Vec<Op>| {
        out.push(op);
        Id::from(out.len() - 1)
    };
    let mut placed: Vec<Option<Id>> = vec![None; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        if !depends[i] {
            placed[i] = Some(push(
                node.clone().map_children(|c| placed[usize::from(c)].expect("placed")),
                &mut out,
            ));
        }
    }
    let (k_literal, rows_literal) = (
        push(Op::Num(Num(k as f64)), &mut out),
        push(Op::Num(Num(rows as f64)), &mut out),
    );
    // Every batched value, once per chunk: a batched input reads its chunk of rows.
    let mut chunked: Vec<Option<Id>> = vec![None; expr.len()];
    for (i, node) in expr.iter().enumerate() {
        if !depends[i] {
            continue;
        }
        let op = match node.as_var() {
            Some(_) => Op::Rows([placed_var(&mut placed, &mut out, i, node), k_literal]),
            None => node.clone().map_children(|c| {
                let c = usize::from(c);
                if depends[c] { chunked[c] } else { placed[c] }.expect("placed")
            }),
        };
        chunked[i] = Some(push(op, &mut out));
    }
    let outputs = fused
        .outputs
        .iter()
        .zip(&looped)
        .map(|((name, root), looped)| {
            let id = match looped {
                None => placed[usize::from(*root)].expect("placed"),
                Some((s, reduction)) => {
                    let body = chunked[*s].expect("placed");
                    let looped = push(Op::Chunks([body, rows_literal, k_literal]), &mut out);
                    match reduction {
                        Some(Op::ReduceAxis(r, [_, zero])) => push(
                            Op::ReduceAxis(*r, [looped, placed[usize::from(*zero)].expect("placed")]),
                            &mut out,
                        ),
                        _ => looped,
                    }
                }
            };
            (name.clone(), id)
        })
        .collect();
    Ok(Program::new(
        fused.inputs.clone(),
        fused.params.clone(),
        RecExpr::from(out),
        outputs,
        vec![],
    )?)
}

/// The batched input at node `i`, placed once outside the loop.
fn placed_var(placed: &mut [Option<Id>], out: &mut Vec<Op>, i: usize, node: &Op) -> Id {
    *placed[i].get_or_insert_with(|| {
        out.push(node.clone());
        Id::from(out.len() - 1)
    })
}

/// The chunk sizes worth trying for a batch of `rows`: powers of two and the divisors of `rows`, below it.
pub fn chunk_sizes(rows: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..usize::BITS)
        .map(|p| 1usize << p)
        .take_while(|&k| k < rows)
        .collect();
    let mut d = 1;
    while d * d <= rows && sizes.len() < 128 {
        if rows.is_multiple_of(d) {
            sizes.extend([d, rows / d].into_iter().filter(|&k| k < rows));
        }
        d += 1;
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}
