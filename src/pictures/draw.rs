//! Pictures of programs: a petgraph view of the DAG, DOT text, and SVG drawn
//! in pure Rust (layout-rs), so that no graphviz binary is needed.

use crate::ir::Program;
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
    /// A number literal.
    Constant,
    /// An op.
    Op,
    /// A named output (its one edge comes from the node it names).
    Output,
}

/// A node of the picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphNode {
    /// The text drawn in the node.
    pub label: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// The shape of its value, e.g. `[4, 3]`.
    pub shape: String,
}

/// The program as a petgraph DAG: one node per program node (shared nodes
/// once) plus one per output; edges run from operand to user, labelled with
/// the operand's position.
pub fn to_petgraph(program: &Program) -> DiGraph<GraphNode, usize> {
    let mut graph = DiGraph::new();
    let mut index: Vec<NodeIndex> = Vec::with_capacity(program.node_count());
    for (i, node) in program.expr.as_ref().iter().enumerate() {
        let kind = match (node.as_var(), node.as_num()) {
            (Some(v), _) if program.is_input(v.as_str()) => NodeKind::Input,
            (Some(_), _) => NodeKind::Param,
            (None, Some(_)) => NodeKind::Constant,
            (None, None) => NodeKind::Op,
        };
        let label = node.to_string();
        let shape = program.shape(Id::from(i)).to_string();
        let at = graph.add_node(GraphNode { label, kind, shape });
        for (position, &child) in node.children().iter().enumerate() {
            graph.add_edge(index[usize::from(child)], at, position);
        }
        index.push(at);
    }
    for (name, id) in &program.outputs {
        let at = graph.add_node(GraphNode {
            label: name.clone(),
            kind: NodeKind::Output,
            shape: program.shape(*id).to_string(),
        });
        graph.add_edge(index[usize::from(*id)], at, 0);
    }
    graph
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// DOT text for the program, stable enough for snapshot tests. Inputs are
/// blue, params orange, literals grey, outputs green; a shared node appears once.
pub fn to_dot(program: &Program) -> String {
    let graph = to_petgraph(program);
    let mut out = String::from("digraph program {\n  rankdir=TB;\n");
    for index in graph.node_indices() {
        let node = &graph[index];
        let (shape, fill) = match node.kind {
            NodeKind::Input => ("box", "lightblue"),
            NodeKind::Param => ("box", "orange"),
            NodeKind::Constant => ("circle", "lightgray"),
            NodeKind::Op => ("circle", "white"),
            NodeKind::Output => ("doublecircle", "palegreen"),
        };
        let label = match node.kind {
            NodeKind::Constant | NodeKind::Op => node.label.clone(),
            NodeKind::Input | NodeKind::Param | NodeKind::Output => format!("{} {}", node.label, node.shape),
        };
        writeln!(
            out,
            "  n{} [label=\"{}\", shape={shape}, style=filled, fillcolor={fill}];",
            index.index(),
            escape(&label)
        )
        .unwrap();
    }
    for edge in graph.edge_indices() {
        let (from, to) = graph.edge_endpoints(edge).unwrap();
        let user = &graph[to];
        // Operand order matters for these; label it so the picture is unambiguous.
        let ordered = matches!(user.label.as_str(), "-" | "/" | "@" | "^") && user.kind == NodeKind::Op;
        if ordered {
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

/// An SVG picture of DOT text, laid out and drawn in pure Rust.
pub fn dot_to_svg(dot: &str) -> Result<String, String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let mut parser = DotParser::new(dot);
    let graph = parser.process().map_err(|e| format!("cannot lay out the graph: {e}"))?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&graph);
    let mut visual = builder.get();
    let mut svg = SVGWriter::new();
    visual.do_it(false, false, false, &mut svg);
    Ok(svg.finalize())
}

/// An SVG picture of the program.
pub fn to_svg(program: &Program) -> Result<String, String> {
    dot_to_svg(&to_dot(program))
}
