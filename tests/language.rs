//! The language: printing, pictures and errors.

use batchgraph::{to_dot, Program};

fn example(name: &str) -> Program {
    let path = format!("{}/examples/{name}.graph", env!("CARGO_MANIFEST_DIR"));
    batchgraph::parse_file(std::path::Path::new(&path)).unwrap()
}

#[test]
fn seed_graph_shares_f_once() {
    let seed = example("seed");
    assert_eq!((seed.node_count(), seed.nodes_before_cse()), (8, 13));
    insta::assert_snapshot!("seed_printed", seed.to_text());
    insta::assert_snapshot!("seed_dot", to_dot(&seed));
}

#[test]
fn mlp_prints_and_draws() {
    let mlp = example("mlp");
    insta::assert_snapshot!("mlp_printed", mlp.to_text());
    insta::assert_snapshot!("mlp_dot", to_dot(&mlp));
}

#[test]
fn printed_programs_parse_back_to_the_same_graph() {
    for name in ["seed", "mlp"] {
        let p = example(name);
        let again = Program::parse("printed", &p.to_text()).unwrap();
        assert_eq!(again.to_text(), p.to_text());
        assert_eq!(again.node_count(), p.node_count());
    }
}

#[test]
fn precedence_is_pythons() {
    let cases = [
        ("-a ^ 2", "-a ^ 2"),
        ("(-a) ^ 2", "(-a) ^ 2"),
        ("a - b - c", "a - b - c"),
        ("a - (b - c)", "a - (b - c)"),
        ("a / b * c", "a / b * c"),
        ("a / (b * c)", "a / (b * c)"),
        ("-2 ^ 2", "-2 ^ 2"),
        ("(-2) ^ 2", "(-2) ^ 2"),
        ("-(2)", "-(2)"),
        ("a ^ -1", "a ^ -1"),
        ("a ^ b ^ c", "a ^ b ^ c"),
        ("(a ^ b) ^ c", "(a ^ b) ^ c"),
        ("a ^ (b + c)", "a ^ (b + c)"),
        ("a * -b", "a * -b"),
        ("1e-3 * a", "0.001 * a"),
    ];
    for (written, printed) in cases {
        let p = Program::parse(
            "t",
            &format!("input a: []\ninput b: []\ninput c: []\nout s = {written}"),
        )
        .unwrap();
        assert_eq!(
            p.to_text().lines().last().unwrap(),
            format!("out s = {printed}"),
            "{written}"
        );
    }
    // -2 ^ 2 is -(2 ^ 2) = -4, as in Python.
    let p = Program::parse("t", "out s = -2 ^ 2").unwrap();
    let v = batchgraph::Interpreter::new(&p)
        .evaluate::<f64>(&Default::default())
        .unwrap();
    assert_eq!(v.outputs[0].1.sum(), -4.0);
}

/// Each bad program, the line and column the error points at, and a part of the message.
const BAD: &[(&str, usize, usize, &str)] = &[
    (
        "input x: [3]\nout s = sum(x",
        2,
        14,
        "expected `,` or `)`, found end of file",
    ),
    ("input x: [3]\nout s = y", 2, 9, "unknown name `y`"),
    (
        "input x: [3]\nparam w: [4, 3]\nout s = w @ w",
        3,
        11,
        "@: cannot multiply [4, 3] by [4, 3]",
    ),
    (
        "input x: [4]\nparam w: [4, 3]\nout s = w @ x",
        3,
        11,
        "@: cannot multiply [4, 3] by [4]",
    ),
    (
        "input x: [3]\ninput y: [2]\nout s = x + y",
        3,
        11,
        "+: cannot broadcast [3] with [2]",
    ),
    ("input x: [3]\ninput x: [3]\nout s = x", 2, 7, "`x` is already defined"),
    ("input x: [3]\nfn f(a) = f(a)\nout s = f(x)", 2, 11, "calls itself"),
    ("input x: [3]\nout s = exp(x, x)", 2, 9, "exp takes 1 argument, not 2"),
    (
        "fn f(a) = a\ninput x: [3]\nout s = f(x, x)",
        3,
        9,
        "f takes 1 arguments, not 2",
    ),
    ("input x: [3]\nlet t = x", 2, 1, "no `out`"),
    (
        "input x: [0]\nout s = x",
        1,
        11,
        "expected a dimension (a positive integer)",
    ),
    (
        "input x: [100000, 100000, 100000]\nout s = x",
        1,
        33,
        "more than 2^31 elements",
    ),
    (
        "input x: [3]\nout s = sum(x, 1)",
        2,
        9,
        "sum: axis 1 is out of range for shape [3]",
    ),
    (
        "input x: [3]\nout s = sum(x, x)",
        2,
        16,
        "must be a non-negative integer literal",
    ),
    (
        "input x: [3]\ninput y: [2]\nout s = x ^ y",
        3,
        11,
        "^: cannot broadcast [3] with [2]",
    ),
    ("input x: [3]\nout s = x $ 2", 2, 11, "unexpected character `$`"),
    ("input x: [3]\nout s = x x", 2, 11, "expected end of line"),
    ("input x: [3]\nfoo s = x", 2, 1, "expected a statement"),
    ("input sum: [3]\nout s = sum", 1, 7, "`sum` is a built-in"),
    ("input x: [3]\nout s = sum", 2, 9, "`sum` is a function"),
    ("input x: [3]\nout s = g(x)", 2, 9, "unknown function `g`"),
    ("input x: [3]\nfn f(a, a) = a\nout s = f(x, x)", 2, 9, "appears twice"),
];

#[test]
fn every_mistake_names_file_line_and_column() {
    for &(text, line, column, message) in BAD {
        let e = Program::parse("bad.graph", text).expect_err(text);
        assert!(e.message.contains(message), "{text:?}: got {:?}", e.message);
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("bad.graph:{line}:{column}: ")), "{shown}");
        let caret = shown.lines().last().unwrap();
        assert_eq!(
            caret.find('^').unwrap() - caret.find('|').unwrap() - 2,
            column - 1,
            "{shown}"
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("input x: []\nout s = {}x{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = Program::parse("deep.graph", &text).unwrap_err();
    assert!(e.message.contains("nested too deeply"), "{e}");
    let text = format!("input x: []\nout s = {}x", "-".repeat(100_000));
    assert!(Program::parse("deep.graph", &text)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
    let text = format!("input x: []\nout s = x{}", " ^ 2".repeat(100_000));
    assert!(Program::parse("deep.graph", &text)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
}

/// A chain of binary operators adds no recursion: 40,000 terms of `+` (and
/// of `*`, and mixed) parse, and, before the fix, overflowed the stack.
#[test]
fn long_flat_chains_of_operators_parse() {
    for op in [" + ", " * ", " - ", " / "] {
        let text = format!("input x: []\nout s = x{}", format!("{op}x").repeat(40_000));
        let program = Program::parse("flat.graph", &text).unwrap();
        assert!(program.node_count() <= 40_002, "{op}");
    }
    let text = format!("input x: []\nout s = x{}", " * x + x".repeat(20_000));
    assert!(Program::parse("flat.graph", &text).is_ok());
}

/// The limit counts each level once: a call is one level, as a pair of
/// parentheses is; the README's "nesting deeper than 128" is true.
#[test]
fn nesting_limit_counts_each_call_once() {
    let nested = |depth: usize, open: &str, close: &str| {
        format!("input x: []\nout s = {}x{}", open.repeat(depth), close.repeat(depth))
    };
    // The statement's expression is level 1; each call adds one.
    assert!(Program::parse("deep.graph", &nested(127, "tanh(", ")")).is_ok());
    assert!(Program::parse("deep.graph", &nested(128, "tanh(", ")")).is_err());
    assert!(Program::parse("deep.graph", &nested(127, "(", ")")).is_ok());
    assert!(Program::parse("deep.graph", &nested(128, "(", ")")).is_err());
    assert_eq!(batchgraph::MAX_NESTING, 128);
}

#[test]
fn exponential_inlining_is_shared_by_cse() {
    // f_k calls f_{k-1} twice: 2^30 nodes as a tree, a chain after CSE.
    let mut text = String::from("input x: []\nfn f0(a) = a + 1\n");
    for k in 1..=30 {
        text.push_str(&format!("fn f{k}(a) = f{}(a) * f{}(a)\n", k - 1, k - 1));
    }
    text.push_str("out s = f30(x)\n");
    let e = Program::parse("big.graph", &text).unwrap_err();
    assert!(e.message.contains("program too large"), "{e}");
}

#[test]
fn invalid_utf8_is_reported_with_its_position() {
    let dir = std::env::temp_dir().join(format!("batchgraph-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.graph");
    std::fs::write(&path, b"input x: [3]\nout s = \xff\n").unwrap();
    let e = batchgraph::parse_file(&path).unwrap_err().to_string();
    assert!(e.contains("bad.graph:2:9: invalid UTF-8"), "{e}");
}

#[test]
fn svg_is_drawn_without_graphviz() {
    let svg = batchgraph::to_svg(&example("seed")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("tanh") && svg.ends_with("</svg>\n"));
    // Every node shows its shape.
    assert!(svg.contains("[4, 3]") && svg.contains("[4]"), "{svg}");
}

/// Pictures show every op's shape, integer operands as attributes of their op
/// (not data nodes), and a repeated operand as two edges.
#[test]
fn pictures_show_shapes_attributes_and_repeated_operands() {
    let p = Program::parse(
        "attrs.graph",
        "input x: [2, 3]\nlet r = index(x, 0)\nout s = mean(stack(sum(r * r), sum(index(x, 1))), 0) + sum(x, 1) * 0",
    )
    .unwrap();
    let graph = batchgraph::to_petgraph(&p);
    let labels: Vec<String> = graph
        .node_weights()
        .map(|n| format!("{} {}", n.label, n.shape))
        .collect();
    for expected in [
        "index 0 [3]",
        "index 1 [3]",
        "mean axis 0 []",
        "sum axis 1 [2]",
        "stack [2]",
    ] {
        assert!(labels.iter().any(|l| l == expected), "{expected} in {labels:?}");
    }
    // The 0 of `* 0` is data and stays a node; the axes and rows do not.
    let constants: Vec<&String> = graph
        .node_weights()
        .filter(|n| n.kind == batchgraph::NodeKind::Constant)
        .map(|n| &n.label)
        .collect();
    assert_eq!(constants, ["0"]);
    // `r * r`: two edges from r's node to the product.
    let index0 = graph.node_indices().find(|&i| graph[i].label == "index 0").unwrap();
    let product = graph
        .node_indices()
        .find(|&i| graph[i].label == "*" && graph[i].shape == "[3]")
        .unwrap();
    assert_eq!(graph.edges_connecting(index0, product).count(), 2);
    let svg = batchgraph::to_svg(&p).unwrap();
    assert!(svg.contains("sum axis 1") && svg.contains("index 0"), "{svg}");
}
