//! The op tables' declarations agree with their expressions: what each
//! unary entry's derivative `reads` (of `x` and `y`), and each binary entry's
//! partials (of `a`, `b` and `y`), is what the scalar derivative actually
//! reads (it changes when that one varies and the others are held) and what
//! the derivative graph's pattern variables are. The runtime's fused chains
//! trust the declaration to decide which values a backward sweep recomputes.

use batchgraph::{Binary, Op, Unary};
use egg::Pattern;

/// Points spread over `(lo, hi)`, ends included.
fn grid(lo: f64, hi: f64) -> Vec<f64> {
    let n = 9;
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

/// Whether `f` changes when its argument `which` runs over `points[which]`
/// while every other argument `k` is held at any of `points[k]`.
fn varies(points: &[Vec<f64>], which: usize, f: &dyn Fn(&[f64]) -> f64) -> bool {
    // Every choice of the held arguments (`which` itself is set below).
    let mut held: Vec<Vec<f64>> = vec![vec![]];
    for (k, choices) in points.iter().enumerate() {
        let choices = if k == which { &choices[..1] } else { &choices[..] };
        held = held
            .iter()
            .flat_map(|prefix| choices.iter().map(move |&c| [&prefix[..], &[c]].concat()))
            .collect();
    }
    held.into_iter().any(|mut args| {
        let mut at = |v: f64| {
            args[which] = v;
            f(&args).to_bits()
        };
        let first = at(points[which][0]);
        points[which].iter().any(|&v| at(v) != first)
    })
}

/// The variables (`?x`, ...) of a derivative graph.
fn graph_vars(graph: &str, what: &str) -> Vec<String> {
    let pattern: Pattern<Op> = graph
        .parse()
        .unwrap_or_else(|e| panic!("{what}: graph {graph:?} does not parse: {e}"));
    let mut vars: Vec<String> = pattern.vars().iter().map(|v| v.to_string()).collect();
    vars.sort();
    vars
}

/// The names declared read, as the graph writes them (`?x`), sorted.
fn declared(names: &[(&str, bool)]) -> Vec<String> {
    let mut vars: Vec<String> = names
        .iter()
        .filter(|(_, read)| *read)
        .map(|(n, _)| format!("?{n}"))
        .collect();
    vars.sort();
    vars
}

#[test]
fn every_unary_derivative_reads_what_its_entry_declares() {
    for &u in Unary::ALL {
        let what = format!("Unary::{} ({})", u.ident(), u.name());
        let reads = u.derivative_reads();
        let (lo, hi) = u.tested_on();
        let xs = grid(lo, hi);
        // y runs over the values the op takes on its interval.
        let ys: Vec<f64> = xs.iter().map(|&x| u.value(x)).collect();
        let d = |args: &[f64]| u.derivative(args[0], args[1]);
        let points = [xs, ys];
        let (reads_x, reads_y) = (varies(&points, 0, &d), varies(&points, 1, &d));
        assert_eq!(
            (reads.x, reads.y),
            (reads_x, reads_y),
            "{what}: declared reads (x: {}, y: {}), but its derivative expression reads (x: {reads_x}, y: {reads_y})",
            reads.x,
            reads.y
        );
        let in_graph = graph_vars(u.derivative_graph(), &what);
        let declared = declared(&[("x", reads.x), ("y", reads.y)]);
        assert_eq!(
            declared,
            in_graph,
            "{what}: declared reads {declared:?}, but its graph {:?} reads {in_graph:?}",
            u.derivative_graph()
        );
    }
}

#[test]
fn every_binary_partial_reads_what_its_entry_declares() {
    for &op in Binary::ALL {
        let (lo, hi) = op.tested_on();
        let operands = grid(lo, hi);
        // y runs over the values the op takes there.
        let ys: Vec<f64> = operands
            .iter()
            .flat_map(|&a| operands.iter().map(move |&b| op.value(a, b)))
            .collect();
        let points = [operands.clone(), operands, ys];
        for side in 0..2 {
            let what = format!("Binary::{} ({}), d_{}", op.ident(), op.symbol(), ["a", "b"][side]);
            let reads = op.partial_reads(side);
            let partial = |args: &[f64]| {
                let (da, db) = op.partials(args[0], args[1], args[2]);
                [da, db][side]
            };
            let actual: Vec<bool> = (0..3).map(|k| varies(&points, k, &partial)).collect();
            assert_eq!(
                vec![reads.a, reads.b, reads.y],
                actual,
                "{what}: declared reads (a: {}, b: {}, y: {}), but its expression reads (a: {}, b: {}, y: {})",
                reads.a,
                reads.b,
                reads.y,
                actual[0],
                actual[1],
                actual[2]
            );
            let graph = op.partial_graph(side);
            let in_graph = graph_vars(graph, &what);
            let declared = declared(&[("a", reads.a), ("b", reads.b), ("y", reads.y)]);
            assert_eq!(
                declared, in_graph,
                "{what}: declared reads {declared:?}, but its graph {graph:?} reads {in_graph:?}"
            );
        }
    }
}
