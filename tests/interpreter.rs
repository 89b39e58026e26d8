//! Interpreter options that change what a run computes, not its results:
//! a gradient with respect to some of the inputs and params equals those
//! entries of the full gradient; and kernel paths chosen by layout (broadcast
//! lanes, one value per row, column-major operands) equal the ops' definitions; a timed run
//! gives the same results with a time for every node that ran; runs whose passes are split
//! over the threads, started together from inside a pool of four, finish with the results of
//! one run at a time.

use batchgraph::{random_values, Interpreter, Program};

/// A tanh layer's mean squared activation.
const LAYER: &str = "input x: [5, 3]\nparam w: [4, 3]\nparam b: [4]\n\
                     out s = mean(sum(tanh(x @ transpose(w) + b) ^ 2, 1), 0)\n";

#[test]
fn a_gradient_with_respect_to_some_names_equals_those_of_the_full_gradient() {
    let program = Program::parse("wrt", LAYER).unwrap();
    let values = random_values(&program, 11);
    let full = Interpreter::new(&program).gradient(&values).unwrap();
    for names in [vec!["w"], vec!["b", "w"], vec!["x"], vec![]] {
        let some = Interpreter::new(&program)
            .with_respect_to(names.iter().copied())
            .gradient(&values)
            .unwrap();
        let want: Vec<_> = full.grads.iter().filter(|(n, _)| names.contains(&n.as_str())).collect();
        assert_eq!(some.grads.iter().collect::<Vec<_>>(), want, "{names:?}");
        assert_eq!(some.outputs, full.outputs);
    }
}

/// Every binary op over operands broadcast both ways (an outer product), a trailing
/// part, a scalar, and a transposed (column-major) operand: the kernel equals the
/// op's scalar value at every element.
#[test]
fn broadcast_binary_ops_equal_their_elementwise_definition() {
    use batchgraph::{run_op, Binary, Op, Tensor};
    use egg::Id;
    let mut rng = batchgraph::Rng::new(0xb0b);
    let pairs: [(&[usize], &[usize]); 7] = [
        (&[2, 4, 1], &[1, 3]),
        (&[3, 1], &[1, 5]),
        (&[2, 3], &[]),
        (&[4, 3], &[3]),
        // one value per row, either side (`t - expand(max(t, 1), 1)`)
        (&[4, 3], &[4, 1]),
        (&[2, 3, 1], &[2, 3, 5]),
        (&[1, 1], &[1, 4]),
    ];
    for &op in Binary::ALL {
        let (lo, hi) = op.tested_on();
        for (sa, sb) in pairs {
            for transposed in [false, true] {
                let a: Tensor<f64> = rng.tensor(sa, lo, hi);
                // The same values in column-major memory (a non-standard layout).
                let a = if transposed {
                    a.t().as_standard_layout().t().to_owned()
                } else {
                    a
                };
                let b: Tensor<f64> = rng.tensor(sb, lo, hi);
                let node = Op::Binary(op, [Id::from(0usize), Id::from(1usize)]);
                let out = run_op(&node, &[&a, &b], &|_| f64::NAN);
                let shape = out.raw_dim();
                let (ab, bb) = (a.broadcast(shape.clone()).unwrap(), b.broadcast(shape).unwrap());
                ndarray::Zip::from(&out).and(&ab).and(&bb).for_each(|&o, &x, &y| {
                    let expected = op.value(x, y);
                    assert!(
                        (o - expected).abs() <= 1e-15 * expected.abs().max(1.0),
                        "{op:?} {sa:?} {sb:?}: {o} vs {expected}"
                    );
                });
            }
        }
    }
}

/// A timed interpreter gives the same results, with a time for each node that
/// ran: every matmul forward and backward, nothing for variables' backward;
/// an untimed one gives none.
#[test]
fn a_timed_run_times_each_node_and_changes_nothing_else() {
    let program = Program::parse("timed", LAYER).unwrap();
    let values = random_values(&program, 3);
    let plain = Interpreter::new(&program).gradient(&values).unwrap();
    let timed = Interpreter::new(&program).timed(true).gradient(&values).unwrap();
    assert_eq!((&plain.outputs, &plain.grads), (&timed.outputs, &timed.grads));
    assert!(plain.times.is_none());
    let times = timed.times.expect("timed");
    let n = program.node_count();
    assert_eq!((times.forward.len(), times.backward.len()), (n, n));
    for (i, node) in program.expr.as_ref().iter().enumerate() {
        if matches!(node, batchgraph::Op::MatMul(_)) {
            assert!(!times.forward[i].is_zero() && !times.backward[i].is_zero(), "node {i}");
        }
        if node.as_var().is_some() {
            assert!(times.backward[i].is_zero(), "node {i}");
        }
    }
    let evaluation = Interpreter::new(&program).timed(true).evaluate(&values).unwrap();
    let times = evaluation.times.expect("timed");
    assert!(times.forward.iter().any(|t| !t.is_zero()) && times.backward.iter().all(|t| t.is_zero()));
}

/// A run whose passes are split over the threads keeps the pool's other threads
/// spinning for its splits (`stay_awake` in the interpreter). Runs started from
/// jobs of a pool of four, nested in one another's splits, must neither wait for
/// each other forever nor change a result.
#[test]
fn runs_that_split_their_passes_finish_together_on_a_pool_of_four() {
    use rayon::prelude::*;
    let program = Program::parse(
        "split",
        "input x: [512, 256]\nparam w: [256]\nout s = sum(tanh(x * w) ^ 2)\n",
    )
    .unwrap();
    let values = random_values(&program, 3);
    let (sender, receiver) = std::sync::mpsc::channel();
    let (program, values) = (std::sync::Arc::new(program), std::sync::Arc::new(values));
    std::thread::spawn(move || {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        // Alone on the same pool: how a sum is split depends on the pool's size.
        let alone = pool.install(|| Interpreter::new(&program).gradient(&*values).unwrap());
        let runs: Vec<_> = pool.install(|| {
            (0..24)
                .into_par_iter()
                .map(|_| Interpreter::new(&program).gradient(&*values).unwrap())
                .collect()
        });
        sender.send((alone, runs)).unwrap();
    });
    let (alone, runs) = receiver
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("24 runs on a pool of four did not finish in a minute");
    // Equal up to the order of a split sum: a run nested in a job of the pool keeps its products on one thread.
    let close = |a: &[(String, batchgraph::Tensor<f64>)], b: &[(String, batchgraph::Tensor<f64>)]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|((na, ta), (nb, tb))| {
                na == nb
                    && ta.shape() == tb.shape()
                    && ta.iter().zip(tb).all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs()))
            })
    };
    for run in runs {
        assert!(close(&run.grads, &alone.grads) && close(&run.outputs, &alone.outputs));
    }
}
