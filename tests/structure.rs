//! Examples that differ in structure (issue 23): Tree-LSTMs over random
//! SST-like trees and a BiLSTM tagger over WikiNER-like sentences, each batch
//! written as one program. The general autobatcher keeps its values and
//! gradients; the fast path (cells batched once, a schedule by depth) gives
//! the program's loss and, for every param and the embedding matrix, the mean
//! of the per-example gradients (each example's program run alone) to 1e-10;
//! edge cases give right answers or clear errors.

use batchgraph::structure::fast::make_plan;
use batchgraph::structure::*;
use batchgraph::{autobatch, AutobatchOptions, Interpreter, Rng, Tensor, Values};

fn small_tree() -> TreeLstmSizes {
    TreeLstmSizes {
        hidden: 4,
        embed: 3,
        vocab: 20,
        classes: 5,
    }
}

fn small_tagger() -> TaggerSizes {
    TaggerSizes {
        hidden: 3,
        embed: 2,
        vocab: 20,
        tags: 4,
    }
}

fn max_diff(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Every gradient in `actual` equals `expected`'s to `tolerance`, and both have the same names.
/// With `all_used`, no gradient may be all zero (the check would be empty).
fn assert_grads_equal(actual: &Values<f64>, expected: &Values<f64>, tolerance: f64, all_used: bool) {
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    assert_eq!(actual.len(), expected.len(), "{names:?}");
    for name in names {
        let d = max_diff(&actual[name], &expected[name]);
        assert!(d <= tolerance, "gradient of {name} differs by {d}");
        assert!(
            !all_used || expected[name].iter().any(|&x| x != 0.0),
            "gradient of {name} is all zero: the check would be empty"
        );
    }
}

fn tree_case(n: usize, seed: u64) -> (Model, Batch, Values<f64>) {
    let s = small_tree();
    let trees = sst_like_trees(&mut Rng::new(seed), n, s.vocab, s.classes);
    (tree_lstm(s), tree_batch(&trees, s), init_params(&tree_lstm(s), seed))
}

fn sentence_case(lengths: &[usize], seed: u64) -> (Model, Batch, Values<f64>) {
    let s = small_tagger();
    let mut rng = Rng::new(seed);
    let sentences: Vec<Sentence> = lengths
        .iter()
        .map(|&n| random_sentence(&mut rng, n, s.vocab, s.tags))
        .collect();
    let model = bilstm_tagger(s);
    let params = init_params(&model, seed);
    (model, sentence_batch(&sentences, s).unwrap(), params)
}

#[test]
fn the_batch_program_is_the_mean_of_the_examples_and_repeats_from_a_seed() {
    let (model, batch, params) = tree_case(5, 3);
    let (_, again, _) = tree_case(5, 3);
    assert_eq!(batch, again);
    let (loss, _, _) = unbatched_gradient(&model, &batch, &params).unwrap();
    let mean: f64 = (0..5)
        .map(|e| unbatched_gradient(&model, &batch.example(e), &params).unwrap().0)
        .sum::<f64>()
        / 5.0;
    assert!((loss - mean).abs() < 1e-12, "{loss} against {mean}");
}

/// The general path at small sizes: the batch's program through `autobatch`
/// keeps the unbatched program's values and gradients.
#[test]
fn autobatching_a_batch_program_keeps_its_values_and_gradients() {
    for (model, batch, params) in [tree_case(2, 11), sentence_case(&[2, 3], 12)] {
        let (program, values) = batch_program(&model, &batch, &params).unwrap();
        let options = AutobatchOptions {
            batch_every_group: true,
            ..AutobatchOptions::default()
        };
        let batched = autobatch(&program, &options).unwrap();
        assert!(batched.report.groups_taken > 0, "{:?}", batched.report.notes);
        assert!(batched.report.kernels_after < batched.report.kernels_before);
        let expected = Interpreter::new(&program).gradient(&values).unwrap();
        let actual = Interpreter::new(&batched.program).gradient(&values).unwrap();
        let d = max_diff(&actual.outputs[0].1, &expected.outputs[0].1);
        assert!(d < 1e-10, "loss differs by {d}");
        for ((name, a), (_, e)) in actual.grads.iter().zip(&expected.grads) {
            assert!(max_diff(a, e) < 1e-10, "gradient of {name}");
        }
    }
}

#[test]
fn the_fast_path_gradient_is_the_mean_of_the_per_example_gradients() {
    for (model, batch, params) in [tree_case(6, 21), sentence_case(&[1, 4, 7, 2], 22)] {
        let mut fast = FastPath::new(&model).unwrap();
        assert!(fast.generic(), "a cell's batched program depends on its row count");
        let plan = fast.plan(&batch).unwrap();
        let outcome = fast.run(&batch, &plan, &params).unwrap();
        let (loss, grads, _) = unbatched_gradient(&model, &batch, &params).unwrap();
        assert!((outcome.loss - loss).abs() < 1e-12, "{} against {loss}", outcome.loss);
        assert_grads_equal(&outcome.grads, &grads, 1e-10, true);
        let mean = per_example_mean_gradient(&model, &batch, &params).unwrap();
        assert_grads_equal(&outcome.grads, &mean, 1e-10, true);
    }
}

/// The fast path splits a group of many calls into one part per core and
/// runs each level's parts side by side; the loss and gradients must not
/// depend on it. Pools of 1, 2 and 3 threads (1, 2 and 3 parts), with
/// groups large enough to split in both models (sentences of one length
/// make every step's group as large as the batch).
#[test]
fn splitting_levels_over_the_cores_keeps_loss_and_gradients() {
    let sentences = [5usize; 20];
    for (model, batch, params) in [tree_case(12, 51), sentence_case(&sentences, 52)] {
        let plan = make_plan(&batch, model.cells.len());
        assert!(
            plan.levels.iter().flatten().any(|g| g.calls.len() >= 20),
            "no group large enough to split"
        );
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut fast = FastPath::new(&model).unwrap();
                let plan = fast.plan(&batch).unwrap();
                fast.run(&batch, &plan, &params).unwrap()
            })
        };
        let alone = run(1);
        let mean = per_example_mean_gradient(&model, &batch, &params).unwrap();
        assert_grads_equal(&alone.grads, &mean, 1e-10, true);
        for threads in [2, 3] {
            let split = run(threads);
            assert!((split.loss - alone.loss).abs() < 1e-12 * alone.loss.abs().max(1.0));
            assert_eq!((split.kernels, split.launches), (alone.kernels, alone.launches));
            assert_grads_equal(&split.grads, &alone.grads, 1e-12, true);
        }
    }
}

#[test]
fn the_fast_path_runs_one_batched_cell_per_cell_and_level() {
    let (model, batch, params) = tree_case(8, 31);
    let mut fast = FastPath::new(&model).unwrap();
    let plan = fast.plan(&batch).unwrap();
    let outcome = fast.run(&batch, &plan, &params).unwrap();
    let groups: usize = plan.levels.iter().map(Vec::len).sum();
    assert_eq!(outcome.launches, groups);
    // Leaves at level 0; each inner level has inner nodes and perhaps roots' heads.
    assert_eq!(plan.levels[0].len(), 1);
    let deepest = batch.calls.len();
    assert!(plan.levels.len() < deepest);
    let (program, _) = batch_program(&model, &batch, &params).unwrap();
    let (kernels, bound) = batchgraph::egraph::kernel_bound(&program);
    assert!(outcome.kernels < kernels);
    assert!(
        outcome.kernels as f64 <= 1.2 * bound as f64,
        "{} kernels against the bound {bound}",
        outcome.kernels
    );
}

#[test]
fn a_repeated_structure_reuses_its_plan() {
    let (model, batch, params) = tree_case(3, 41);
    let mut fast = FastPath::new(&model).unwrap();
    fast.plan(&batch).unwrap();
    // The same trees with other words and labels: the same structure.
    let mut other = batch.clone();
    for call in &mut other.calls {
        for arg in &mut call.args {
            if let Arg::Lookup(row) = arg {
                *row = (*row + 1) % 20;
            }
        }
    }
    fast.plan(&other).unwrap();
    let (_, different, _) = tree_case(3, 42);
    fast.plan(&different).unwrap();
    assert_eq!((fast.plan_hits, fast.plan_misses), (1, 2));
    let plan = fast.plan(&other).unwrap();
    assert!(fast.run(&other, &plan, &params).unwrap().loss.is_finite());
    assert_eq!(make_plan(&other, 3).levels.len(), plan.levels.len());
}

#[test]
fn edge_cases_give_right_answers_or_clear_errors() {
    let s = small_tree();
    let model = tree_lstm(s);
    let params = init_params(&model, 5);
    let mut fast = FastPath::new(&model).unwrap();
    // An embedding matrix of the wrong shape is refused, naming both shapes.
    let one = tree_batch(&sst_like_trees(&mut Rng::new(6), 1, s.vocab, s.classes), s);
    let mut short = params.clone();
    short.insert(
        "embedding".into(),
        Tensor::zeros(ndarray::IxDyn(&[s.vocab - 1, s.embed])),
    );
    let plan = fast.plan(&one).unwrap();
    let message = fast.run(&one, &plan, &short).unwrap_err().to_string();
    assert!(
        message.contains("embedding") && message.contains(&format!("{:?}", [s.vocab, s.embed])),
        "{message}"
    );
    // An empty batch is refused by both paths.
    let empty = tree_batch(&[], s);
    let message = fast.plan(&empty).unwrap_err().to_string();
    assert!(message.contains("empty batch"), "{message}");
    assert!(unbatched_gradient(&model, &empty, &params)
        .unwrap_err()
        .to_string()
        .contains("empty batch"));
    // A tree of one leaf, alone and beside others; a batch of one.
    let one_leaf = LabelledTree {
        tree: Tree::Leaf(3),
        label: 2,
    };
    let mut trees = sst_like_trees(&mut Rng::new(6), 2, s.vocab, s.classes);
    trees.push(one_leaf.clone());
    for batch in [
        tree_batch(&[one_leaf], s),
        tree_batch(&trees, s),
        tree_batch(&trees[..1], s),
    ] {
        let plan = fast.plan(&batch).unwrap();
        let outcome = fast.run(&batch, &plan, &params).unwrap();
        let mean = per_example_mean_gradient(&model, &batch, &params).unwrap();
        for (name, g) in &mean {
            assert!(max_diff(&outcome.grads[name], g) < 1e-10, "{name}");
        }
    }
    // An empty batch of sentences too.
    let t = small_tagger();
    let tagger = bilstm_tagger(t);
    let empty = sentence_batch(&[], t).unwrap();
    let message = FastPath::new(&tagger).unwrap().plan(&empty).unwrap_err().to_string();
    assert!(message.contains("empty batch"), "{message}");
    let message = unbatched_gradient(&tagger, &empty, &init_params(&tagger, 5))
        .unwrap_err()
        .to_string();
    assert!(message.contains("empty batch"), "{message}");
    // A sentence of no words is refused, naming it.
    let bad = Sentence {
        words: vec![],
        tags: vec![],
    };
    assert!(sentence_batch(&[bad], t)
        .unwrap_err()
        .to_string()
        .contains("sentence 0"));
}

#[test]
fn sentences_of_length_one_and_ten_thousand() {
    let (model, batch, params) = sentence_case(&[1], 51);
    let mut fast = FastPath::new(&model).unwrap();
    let plan = fast.plan(&batch).unwrap();
    let outcome = fast.run(&batch, &plan, &params).unwrap();
    // One token: the next-step params get no gradient.
    let mean = per_example_mean_gradient(&model, &batch, &params).unwrap();
    assert_grads_equal(&outcome.grads, &mean, 1e-10, false);
    // 10,000 tokens: 10,000 steps of both LSTMs on 10,001 levels; memory linear in the length.
    let (_, long, _) = sentence_case(&[10_000], 52);
    let plan = fast.plan(&long).unwrap();
    assert_eq!(plan.levels.len(), 10_001);
    let outcome = fast.run(&long, &plan, &params).unwrap();
    assert!(outcome.loss.is_finite() && outcome.loss > 0.0);
    assert!(outcome.grads.values().all(|g| g.iter().all(|x| x.is_finite())));
    // The right answer: the sentence's program run unbatched by the interpreter. About 8 s in a
    // release build but minutes unoptimised, so only in release (`cargo test --release`).
    if cfg!(debug_assertions) {
        return;
    }
    let (loss, grads, _) = unbatched_gradient(&model, &long, &params).unwrap();
    assert!(
        (outcome.loss - loss).abs() < 1e-10 * loss.abs(),
        "{} against {loss}",
        outcome.loss
    );
    assert_grads_equal(&outcome.grads, &grads, 1e-10, true);
}

/// A program with two outputs, the second also read by the first (as a
/// cell's `c` is): `t = tanh(W @ x)`, `o0 = t * t * y`, `o1 = t`; and, with
/// `seeded`, the scalar `sum(o0 * g0) + sum(o1 * g1)` instead.
fn two_outputs(seeded: bool) -> batchgraph::Program {
    let mut b = batchgraph::ProgramBuilder::new();
    let x = b.input("x", &[3]).unwrap();
    let y = b.input("y", &[2]).unwrap();
    let w = b.param("w", &[2, 3]).unwrap();
    let wx = b.matmul(w, x).unwrap();
    let t = b.tanh(wx).unwrap();
    let tt = b.mul(t, t).unwrap();
    let o0 = b.mul(tt, y).unwrap();
    if !seeded {
        b.output("o0", o0).unwrap();
        b.output("o1", t).unwrap();
        return b.finish().unwrap();
    }
    let g0 = b.input("g0", &[2]).unwrap();
    let g1 = b.input("g1", &[2]).unwrap();
    let p0 = b.mul(o0, g0).unwrap();
    let s0 = b.sum(p0).unwrap();
    let p1 = b.mul(t, g1).unwrap();
    let s1 = b.sum(p1).unwrap();
    let v = b.add(s0, s1).unwrap();
    b.output("v", v).unwrap();
    b.finish().unwrap()
}

/// Reverse mode split in two (what the fast path runs per level): a forward
/// sweep that keeps its values, some moved in and some borrowed, then a
/// backward sweep from cotangents of the outputs given later, equals the
/// gradient of the seeded sum of the outputs; a missing seed is a zero one;
/// wrong seeds and missing values are clear errors.
#[test]
fn a_kept_forward_then_backward_is_the_gradient_of_the_seeded_outputs() {
    let mut rng = Rng::new(5);
    let (x, y, w) = (
        rng.tensor(&[3], -1.0, 1.0),
        rng.tensor(&[2], -1.0, 1.0),
        rng.tensor(&[2, 3], -1.0, 1.0),
    );
    let (g0, g1) = (rng.tensor(&[2], -1.0, 1.0), rng.tensor(&[2], -1.0, 1.0));
    let program = two_outputs(false);
    let seeded = two_outputs(true);
    let mut shared: Values<f64> = Values::new();
    shared.insert("w".into(), w.clone());
    shared.insert("unused".into(), rng.tensor(&[7], 0.0, 1.0));
    let owned = |with_y: bool| {
        let mut v: Values<f64> = Values::new();
        v.insert("x".into(), x.clone());
        if with_y {
            v.insert("y".into(), y.clone());
        }
        v
    };
    let interpreter = Interpreter::new(&program).with_respect_to(["x", "w"]);
    for (seeds, zero_first) in [
        (vec![Some(g0.clone()), Some(g1.clone())], false),
        (vec![None, Some(g1.clone())], true),
    ] {
        let kept = interpreter.forward_kept(owned(true), &shared).unwrap();
        let evaluated = Interpreter::new(&program)
            .evaluate(
                &[("x", &x), ("y", &y), ("w", &w)]
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .into(),
            )
            .unwrap();
        assert_eq!(kept.output(0), &evaluated.outputs[0].1);
        assert_eq!(kept.output(1), &evaluated.outputs[1].1);
        let grads = kept.backward(seeds).unwrap();
        let g0_used = if zero_first {
            Tensor::zeros(g0.raw_dim())
        } else {
            g0.clone()
        };
        let all: Values<f64> = [("x", &x), ("y", &y), ("w", &w), ("g0", &g0_used), ("g1", &g1)]
            .map(|(n, v)| (n.to_string(), v.clone()))
            .into();
        let want = Interpreter::new(&seeded)
            .with_respect_to(["x", "w"])
            .gradient(&all)
            .unwrap();
        assert_eq!(grads.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["x", "w"]);
        for ((name, got), (_, expected)) in grads.iter().zip(&want.grads) {
            assert!(max_diff(got, expected) < 1e-14, "{name}: {got} against {expected}");
        }
    }
    let error = |r: batchgraph::Result<Vec<(String, Tensor<f64>)>>| r.unwrap_err().to_string();
    let kept = || interpreter.forward_kept(owned(true), &shared).unwrap();
    let few = error(kept().backward(vec![Some(g0.clone())]));
    assert!(few.contains("1 cotangents for 2 outputs"), "{few}");
    let misshapen = error(kept().backward(vec![None, Some(rng.tensor(&[3], 0.0, 1.0))]));
    assert!(misshapen.contains("`o1`") && misshapen.contains("[3]"), "{misshapen}");
    let missing = interpreter
        .forward_kept(owned(false), &shared)
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("no value for `y`"), "{missing}");
}

/// The loss heads (the calls nothing reads) all wait for the last level, so
/// each head cell runs once per batch, however deep each example ends; every
/// other call stays at its depth (one past the deepest call it reads).
#[test]
fn the_loss_heads_wait_for_the_last_level() {
    for (model, batch, _) in [tree_case(8, 31), sentence_case(&[1, 4, 7, 2], 22)] {
        let plan = make_plan(&batch, model.cells.len());
        let heads: Vec<usize> = (0..batch.calls.len())
            .filter(|&i| batch.calls[i].loss.is_some())
            .collect();
        let last = plan.levels.last().unwrap();
        let in_last: Vec<usize> = last.iter().flat_map(|g| g.calls.clone()).collect();
        assert_eq!(in_last, heads, "the last level holds the heads, and only them");
        assert_eq!(last.len(), 1, "one head cell, one group");
        let mut level = vec![0; batch.calls.len()];
        for (l, groups) in plan.levels.iter().enumerate() {
            for g in groups {
                g.calls.iter().for_each(|&c| level[c] = l);
            }
        }
        for (i, call) in batch.calls.iter().enumerate().filter(|(_, c)| c.loss.is_none()) {
            let depth = call
                .args
                .iter()
                .filter_map(|a| match a {
                    Arg::Call(c, _) => Some(level[*c] + 1),
                    Arg::Lookup(_) | Arg::Data(_) => None,
                })
                .max()
                .unwrap_or(0);
            assert_eq!(level[i], depth, "call {i}");
        }
    }
}

/// Kernels per batch within 1.2x of the lower bound at B = 1 too: one
/// sentence (the bilstm example's first B = 1 batch is of 22 tokens), where
/// the bound batches the two directions' elementwise ops together and no
/// other sentence's heads spread over depths to make up for it.
#[test]
fn the_tagger_at_one_sentence_runs_within_the_bound() {
    for length in [1, 2, 5, 22, 40] {
        let (model, batch, params) = sentence_case(&[length], 61);
        let mut fast = FastPath::new(&model).unwrap();
        let plan = fast.plan(&batch).unwrap();
        let outcome = fast.run(&batch, &plan, &params).unwrap();
        let (program, _) = batch_program(&model, &batch, &params).unwrap();
        let (_, bound) = batchgraph::egraph::kernel_bound(&program);
        let ratio = outcome.kernels as f64 / bound as f64;
        assert!(
            ratio <= 1.2,
            "{length} tokens: {} kernels against the bound {bound} ({ratio:.2})",
            outcome.kernels
        );
    }
}
