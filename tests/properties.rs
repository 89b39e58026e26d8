//! Property tests: printing round-trips, and no input makes the parser or the
//! shape checker panic.

mod common;
use batchgraph::{Binary, Interpreter, Program, Reduce, Unary};
use common::{random_values, rel_diff, Rng};
use proptest::prelude::*;

const DECLS: &str = "input a: [3]\ninput b: [3]\nparam m: [2, 3]\nparam s: []\n";

/// Random expression text over a: [3], b: [3], m: [2, 3], s: [] (some ill-shaped).
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("m".to_string()),
        Just("s".to_string()),
        (-3i32..4).prop_map(|n| n.to_string()),
        Just("0.5".to_string()),
    ];
    leaf.prop_recursive(5, 40, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(Binary::ALL.iter().map(|b| b.symbol()).chain(["@"]).collect::<Vec<_>>()),
                inner.clone()
            )
                .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            (inner.clone(), prop::sample::select(vec!["2", "3", "-1", "0.5"])).prop_map(|(l, p)| format!("{l} ^ {p}")),
            inner.clone().prop_map(|e| format!("-{e}")),
            (
                prop::sample::select(
                    Unary::ALL
                        .iter()
                        .filter(|&&u| u != Unary::Neg)
                        .map(|u| u.name())
                        .chain(Reduce::ALL.iter().map(|r| r.name()))
                        .chain(["transpose"])
                        .collect::<Vec<_>>()
                ),
                inner.clone()
            )
                .prop_map(|(f, e)| format!("{f}({e})")),
            (
                prop::sample::select(
                    Reduce::ALL
                        .iter()
                        .map(|r| r.name())
                        .chain(["expand", "index"])
                        .collect::<Vec<_>>()
                ),
                inner.clone(),
                0usize..2
            )
                .prop_map(|(f, e, axis)| format!("{f}({e}, {axis})")),
            (inner.clone(), inner).prop_map(|(x, y)| format!("stack({x}, {y})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn printed_programs_parse_back_to_the_same_graph(e1 in expression(), e2 in expression()) {
        let text = format!("{DECLS}let u = {e1}\nout y = {e2}\nout z = u");
        let Ok(p) = Program::parse("random.graph", &text) else { return Ok(()) };
        let printed = p.to_text();
        let again = Program::parse("printed.graph", &printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        prop_assert_eq!(again.to_text(), printed.clone());
        prop_assert_eq!(again.node_count(), p.node_count());
        prop_assert!(p.node_count() as u128 <= p.nodes_before_cse());
        // And they compute the same thing.
        let values = random_values(&p, &mut Rng::new(11), -1.0, 1.0);
        let (x, y) = (Interpreter::new(&p).evaluate(&values).unwrap(), Interpreter::new(&again).evaluate(&values).unwrap());
        for ((_, u), (_, v)) in x.outputs.iter().zip(&y.outputs) {
            let u = u.mapv(|v| if v.is_finite() { v } else { 0.0 });
            let v = v.mapv(|v| if v.is_finite() { v } else { 0.0 });
            prop_assert!(rel_diff(&u, &v) == 0.0, "{}", printed);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[a-z0-9 ()\\[\\],:=+*/@^#\n.-]{0,200}") {
        let _ = Program::parse("fuzz.graph", &text);
    }

    #[test]
    fn mutated_programs_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
            vec!['(', ')', '[', ']', ',', ':', '=', '+', '-', '*', '@', '^', 'x', 'w', '0', '9', '\n', ' ', '#', 'f', '.'])), 1..6)
    ) {
        let seed = include_str!("../examples/seed.graph");
        let mut chars: Vec<char> = seed.chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => { chars.remove(i); }
                _ if i < chars.len() => chars[i] = c,
                _ => {}
            }
        }
        let text: String = chars.into_iter().collect();
        if let Err(e) = Program::parse("mutated.graph", &text) {
            // Every error points into the text.
            prop_assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{}", e);
        }
    }
}

/// A long random program over x: [3]: `steps` lets, each a shape-preserving op
/// of the previous value and, sometimes, of an earlier one (so some values are
/// shared and some are used once: chains as deep as the program is long).
fn long_program(steps: usize, seed: u64, share: f64) -> String {
    let mut rng = Rng::new(seed);
    let mut text = String::from("input x: [3]\nparam w: [3, 3]\nlet t0 = tanh(x)\n");
    let unary: Vec<&str> = Unary::ALL
        .iter()
        .filter(|&&u| u != Unary::Neg)
        .map(|u| u.name())
        .collect();
    for i in 1..steps {
        let prev = format!("t{}", i - 1);
        let other = if rng.next_f64() < share {
            format!("t{}", rng.below(i))
        } else {
            "x".to_string()
        };
        let body = match rng.below(7) {
            0 => format!("{}({prev})", unary[rng.below(unary.len())]),
            1 => format!("-{prev}"),
            2 => format!("{prev} ^ 2"),
            3 => format!("w @ {prev}"),
            4 => format!("{prev} * 0.5 - {other}"),
            5 => format!("({prev} + {other}) / 2"),
            _ => format!("sum(expand({prev}, 0), 0)"),
        };
        text += &format!("let t{i} = {body}\n");
    }
    text + &format!("out s = sum(t{})\n", steps - 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Long and deep programs (up to 6,000 lets, single-use chains included)
    /// parse, print in text linear in their size that nests no deeper than the
    /// parser accepts, and parse back to the same graph.
    #[test]
    fn long_and_deep_programs_round_trip(steps in 1usize..6_000, seed in any::<u64>(), share in 0.0f64..0.5) {
        let text = long_program(steps, seed, share);
        let p = Program::parse("long.graph", &text).unwrap_or_else(|e| panic!("{e}"));
        let printed = p.to_text();
        // Linear: every node costs at most a bounded number of characters.
        prop_assert!(printed.len() <= 80 * p.node_count() + 100, "{} chars for {} nodes", printed.len(), p.node_count());
        let again = Program::parse("printed.graph", &printed).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(again.node_count(), p.node_count());
        prop_assert_eq!(again.to_text(), printed);
    }
}

/// The cases of the report: a chain of 20,000 single-use lets prints in text
/// linear in its length (it took 4.5 GB before) and parses back; a flat sum of
/// 40,000 terms parses, prints and parses back.
#[test]
fn long_single_use_chains_print_linearly_and_parse_back() {
    let mut text = String::from("input x: [3]\nlet t0 = tanh(x)\n");
    for i in 1..20_000 {
        text += &format!("let t{i} = tanh(t{})\n", i - 1);
    }
    text += "out s = sum(t19999)\n";
    let p = Program::parse("chain.graph", &text).unwrap();
    let printed = p.to_text();
    assert!(printed.len() < 2 * text.len(), "{} chars", printed.len());
    let again = Program::parse("printed.graph", &printed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.node_count(), p.node_count());
    let flat = format!("input x: []\nout s = x{}", " + x".repeat(40_000));
    let p = Program::parse("flat.graph", &flat).unwrap();
    let again = Program::parse("printed.graph", &p.to_text()).unwrap();
    assert_eq!(again.node_count(), p.node_count());
}
