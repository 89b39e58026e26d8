//! Pictures of programs: a petgraph view of the DAG, DOT text, and SVG laid
//! out and drawn in pure Rust by [`super::layout`], so that no graphviz binary
//! is needed.
//!
//! All three show the same graph: one node per program node (a shared node
//! once) and one per output, each with its shape, so that a batched program's
//! extra axis is visible on every op. Integer operands (axes, rows, counts:
//! [`Op::integer_operand`]) are attributes of their op (`sum axis 1`,
//! `index 0`), not data nodes; other literals are small constant nodes.

use super::layout::{render_svg, Group, Limits, NodeStyle, Picture, PictureEdge, PictureNode};
use crate::ir::{Op, Program, Structural};
use egg::{Id, Language};
use petgraph::graph::{DiGraph, NodeIndex};
use std::fmt::Write;

/// What a node of the picture stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A per-example `input`.
    Input,
    /// A shared `param`.
    Param,
    /// A number literal used as data.
    Constant,
    /// An op.
    Op,
    /// A named output (its one edge comes from the node it names).
    Output,
}

/// A node of the picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphNode {
    /// The text drawn in the node: a name, a number, or an op with its
    /// integer attributes (`sum axis 1`, `index 0`, `permute 0 2 1`).
    pub label: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// The shape of its value, e.g. `[4, 3]`.
    pub shape: String,
    /// Whether the order of its operands matters (`-`, `/`, `^`, `@`): then
    /// its incoming edges are labelled with their operand positions.
    pub ordered: bool,
    /// For a node that runs once per row of a loop: the loop's program node.
    pub in_loop: Option<usize>,
}

/// The word between an op's name and its integer operands, e.g. `axis` in `sum axis 1`.
fn attribute_word(op: &Op) -> &'static str {
    match op {
        Op::ReduceAxis(..) => " axis",
        Op::Map(_) | Op::Chunks(_) => " ×",
        Op::Accumulate(_) => " Σ",
        Op::Rows(_) => " chunk",
        Op::Row(_) => "",
        Op::Unary(..)
        | Op::Binary(..)
        | Op::Reduce(..)
        | Op::MatMul(_)
        | Op::Structural(..)
        | Op::Vmap(_)
        | Op::Num(_)
        | Op::Var(_) => "",
    }
}

/// The label of program node `node`: its name, or its op with its integer operands.
fn label(program: &Program, node: &Op) -> String {
    if let Op::Structural(s, children) = node {
        let ints: Vec<usize> = (0..children.len())
            .filter(|&p| node.integer_operand(p))
            .map(|p| program.literal(children[p]).unwrap_or(0.0) as usize)
            .collect();
        return s.label(&ints);
    }
    let mut text = node.to_string();
    text.push_str(attribute_word(node));
    for (position, &child) in node.children().iter().enumerate() {
        if node.integer_operand(position) {
            let value = program.literal(child).unwrap_or(f64::NAN);
            write!(text, " {value}").unwrap();
        }
    }
    text
}

/// Whether each program node is drawn: everything but literals whose every
/// use is as an integer operand (they are attributes of their users).
fn drawn(program: &Program) -> Vec<bool> {
    let expr = program.expr.as_ref();
    let mut data_use = vec![false; expr.len()];
    for node in expr {
        for (position, &child) in node.children().iter().enumerate() {
            if !node.integer_operand(position) {
                data_use[usize::from(child)] = true;
            }
        }
    }
    for (_, id) in &program.outputs {
        data_use[usize::from(*id)] = true;
    }
    expr.iter()
        .zip(data_use)
        .map(|(node, used)| used || node.as_num().is_none())
        .collect()
}

/// The loop each per-row node runs in (the first, if several share it).
fn loop_of(program: &Program) -> Vec<Option<usize>> {
    let mut in_loop = vec![None; program.node_count()];
    for (m, body) in program.loops().bodies.iter().enumerate() {
        for &n in body.iter().flat_map(|b| &b.nodes) {
            in_loop[n].get_or_insert(m);
        }
    }
    in_loop
}

/// The program as a petgraph DAG: one node per drawn program node (shared
/// nodes once, integer operands as attributes) plus one per output; edges run
/// from operand to user, weighted with the operand's position (from 0).
pub fn to_petgraph(program: &Program) -> DiGraph<GraphNode, usize> {
    let mut graph = DiGraph::new();
    let drawn = drawn(program);
    let in_loop = loop_of(program);
    let mut index: Vec<Option<NodeIndex>> = Vec::with_capacity(program.node_count());
    for (i, node) in program.expr.as_ref().iter().enumerate() {
        if !drawn[i] {
            index.push(None);
            continue;
        }
        let kind = match (node.as_var(), node.as_num()) {
            (Some(v), _) if program.is_input(v.as_str()) => NodeKind::Input,
            (Some(_), _) => NodeKind::Param,
            (None, Some(_)) => NodeKind::Constant,
            (None, None) => NodeKind::Op,
        };
        let shape = program.shape(Id::from(i)).to_string();
        // Operand order matters for the non-commutative infix ops and for
        // `concat` (`concat(a, b, 0)` is not `concat(b, a, 0)`). A `stack`'s
        // operands are its rows, drawn left to right (the B copies of the
        // textbook picture), so they go unlabelled.
        let ordered = node.infix().is_some_and(|(symbol, ..)| symbol != "+" && symbol != "*")
            || matches!(node, Op::Structural(Structural::Concat, _));
        let label = label(program, node);
        let at = graph.add_node(GraphNode {
            label,
            kind,
            shape,
            ordered,
            in_loop: in_loop[i],
        });
        for (position, &child) in node.children().iter().enumerate() {
            if let Some(from) = index[usize::from(child)].filter(|_| !node.integer_operand(position)) {
                graph.add_edge(from, at, position);
            }
        }
        index.push(Some(at));
    }
    for (name, id) in &program.outputs {
        let at = graph.add_node(GraphNode {
            label: name.clone(),
            kind: NodeKind::Output,
            shape: program.shape(*id).to_string(),
            ordered: false,
            in_loop: None,
        });
        let from = index[usize::from(*id)].expect("an output's node is drawn");
        graph.add_edge(from, at, 0);
    }
    graph
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// DOT text for the program, stable enough for snapshot tests. Inputs are
/// blue, params orange, literals grey, outputs green; every node shows its
/// shape; a shared node appears once.
pub fn to_dot(program: &Program) -> String {
    let graph = to_petgraph(program);
    let mut out = String::from("digraph program {\n  rankdir=TB;\n");
    for index in graph.node_indices() {
        let node = &graph[index];
        let (shape, fill) = match node.kind {
            NodeKind::Input => ("box", "lightblue"),
            NodeKind::Param => ("box", "orange"),
            NodeKind::Constant => ("ellipse", "lightgray"),
            NodeKind::Op => ("box", "white"),
            NodeKind::Output => ("box", "palegreen"),
        };
        let label = match node.kind {
            NodeKind::Constant => escape(&node.label),
            NodeKind::Input | NodeKind::Param | NodeKind::Op | NodeKind::Output => {
                format!("{}\\n{}", escape(&node.label), escape(&node.shape))
            }
        };
        writeln!(
            out,
            "  n{} [label=\"{label}\", shape={shape}, style=\"rounded,filled\", fillcolor={fill}];",
            index.index()
        )
        .unwrap();
    }
    for edge in graph.edge_indices() {
        let (from, to) = graph.edge_endpoints(edge).unwrap();
        // Operand order matters for these; label it so the picture is unambiguous.
        if graph[to].ordered {
            writeln!(
                out,
                "  n{} -> n{} [label=\"{}\"];",
                from.index(),
                to.index(),
                graph[edge]
            )
            .unwrap();
        } else {
            writeln!(out, "  n{} -> n{};", from.index(), to.index()).unwrap();
        }
    }
    out.push_str("}\n");
    out
}

/// The program as a [`Picture`] for the layout engine: the graph of
/// [`to_petgraph`], every node with its shape as its second line.
pub fn to_picture(program: &Program) -> Picture {
    let graph = to_petgraph(program);
    // One box per loop, marked with how many times its body runs.
    let loops: Vec<usize> = (0..program.node_count())
        .filter(|&m| program.loops().bodies[m].is_some())
        .collect();
    let groups = loops
        .iter()
        .map(|&m| {
            let body = program.loops().bodies[m].as_ref().expect("a loop");
            let label = match body.chunk {
                None => format!("× {} rows", body.rows),
                Some(k) => format!("× {} chunks of {k}", body.iterations()),
            };
            Group { label }
        })
        .collect();
    let nodes = graph
        .node_indices()
        .map(|i| {
            let node = &graph[i];
            let style = match node.kind {
                NodeKind::Input => NodeStyle::Input,
                NodeKind::Param => NodeStyle::Param,
                NodeKind::Constant => NodeStyle::Constant,
                NodeKind::Op => NodeStyle::Op,
                NodeKind::Output => NodeStyle::Output,
            };
            let detail = if node.kind == NodeKind::Constant {
                String::new()
            } else {
                node.shape.clone()
            };
            PictureNode {
                title: node.label.clone(),
                detail,
                style,
                group: node.in_loop.and_then(|m| loops.iter().position(|&l| l == m)),
            }
        })
        .collect();
    let edges = graph
        .edge_indices()
        .map(|e| {
            let (from, to) = graph.edge_endpoints(e).unwrap();
            PictureEdge {
                from: from.index(),
                to: to.index(),
                label: graph[to].ordered.then(|| graph[e].to_string()),
            }
        })
        .collect();
    Picture { nodes, edges, groups }
}

/// An SVG picture of the program. A program too large to lay out within
/// [`Limits::default`] (5,000 nodes, 20,000 edges) is an error saying so,
/// found before any work is done.
pub fn to_svg(program: &Program) -> Result<String, String> {
    render_svg(&to_picture(program), &Limits::default()).map_err(|e| format!("cannot draw the program: {e}"))
}
