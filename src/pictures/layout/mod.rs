//! Layered (Sugiyama-style) layout and SVG drawing of small-to-medium DAGs,
//! in pure Rust with no dependencies.
//!
//! Built to draw computational graphs: edges run from operand to user, so
//! data flows from the top (inputs) to the bottom (outputs). The layout:
//!
//! 1. **Layering**: longest path from the sources, then every node with more
//!    outgoing than incoming edges (sources, shared params, constants) is
//!    pulled down to just above its first user, which keeps edges short.
//! 2. **Dummy nodes** on every layer an edge crosses, so long edges route
//!    around nodes.
//! 3. **Crossing reduction**: the start order is a depth-first post-order from
//!    the outputs through operands in operand order (so `a - b` draws `a` left
//!    of `b`), then bounded barycenter / median sweeps with adjacent swaps,
//!    keeping the best order found (crossings counted in O(E log V)).
//! 4. **Horizontal placement**: block coordinate descent on the sum of
//!    weighted squared horizontal edge lengths, one layer at a time, each an
//!    exact isotonic regression (pool adjacent violators) under the
//!    no-overlap constraints. Heavier weights on long-edge segments
//!    straighten them.
//! 5. **Routing**: cubic Béziers with vertical tangents through the dummy
//!    positions, ports spread along the node sides in neighbour order, parallel
//!    edges bowed apart.
//!
//! Every step is iterative (no recursion), bounded (limits on nodes, edges and
//! dummy nodes checked before any large allocation, fixed caps on the number
//! of sweeps) and deterministic (no hash maps; the same input gives the same
//! bytes).
//!
//! ```
//! use batchgraph::pictures::layout::{Picture, PictureNode, PictureEdge, NodeStyle, Limits, render_svg};
//! let node = |title: &str, style| PictureNode {
//!     title: title.into(), detail: "[2, 4]".into(), style, group: None,
//! };
//! let picture = Picture {
//!     nodes: vec![node("x", NodeStyle::Input), node("tanh", NodeStyle::Op), node("y", NodeStyle::Output)],
//!     edges: vec![
//!         PictureEdge { from: 0, to: 1, label: None },
//!         PictureEdge { from: 1, to: 2, label: None },
//!     ],
//!     groups: vec![],
//! };
//! let svg = render_svg(&picture, &Limits::default()).unwrap();
//! assert!(svg.starts_with("<svg"));
//! ```

#![forbid(unsafe_code)]
// Index loops over parallel per-node arrays read better than zipped iterators.
#![allow(clippy::needless_range_loop)]

mod layer;
mod order;
mod place;
mod route;
mod svg;
mod text;

use std::fmt;

/// How a node is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeStyle {
    /// A per-example input: light blue box.
    Input,
    /// A shared parameter: orange box.
    Param,
    /// A literal: light grey pill.
    Constant,
    /// An operation: white rounded box.
    Op,
    /// A named output: pale green box with a double border.
    Output,
}

/// A node of the picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PictureNode {
    /// The main text, e.g. `"tanh"`, `"sum axis 1"`, `"index 0"`, `"x"`.
    pub title: String,
    /// A second, smaller line, e.g. the shape `"[2, 4]"`; empty for none.
    pub detail: String,
    /// How the node is drawn.
    pub style: NodeStyle,
    /// The group (an index into [`Picture::groups`]) this node belongs to.
    pub group: Option<usize>,
}

/// An edge from an operand (`from`) to its user (`to`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PictureEdge {
    /// The operand's node index.
    pub from: usize,
    /// The user's node index.
    pub to: usize,
    /// Text drawn near the arrowhead, e.g. the operand position `"0"`.
    pub label: Option<String>,
}

/// A box drawn around all nodes whose `group` names it, e.g. a loop body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Text at the top-right corner of the box, e.g. `"× B"`.
    pub label: String,
}

/// A graph to draw. It must be acyclic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Picture {
    /// The nodes; edges and layouts refer to them by index.
    pub nodes: Vec<PictureNode>,
    /// The edges, operand to user. Several edges between one pair are allowed
    /// and drawn as distinct curves.
    pub edges: Vec<PictureEdge>,
    /// The groups that nodes may belong to.
    pub groups: Vec<Group>,
}

/// Size limits past which [`layout`] and [`render_svg`] return an error
/// instead of working: they bound time and memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most nodes accepted.
    pub max_nodes: usize,
    /// Most edges accepted.
    pub max_edges: usize,
    /// Most dummy nodes accepted: one per layer that an edge passes through
    /// without ending there.
    pub max_dummies: usize,
}

impl Default for Limits {
    /// 5,000 nodes, 20,000 edges, 200,000 dummy nodes: well under two seconds.
    fn default() -> Self {
        Limits {
            max_nodes: 5_000,
            max_edges: 20_000,
            max_dummies: 200_000,
        }
    }
}

/// Why a picture could not be laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PictureError {
    /// More nodes than [`Limits::max_nodes`].
    TooManyNodes {
        /// Nodes in the picture.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// More edges than [`Limits::max_edges`].
    TooManyEdges {
        /// Edges in the picture.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Long edges would need more dummy nodes than [`Limits::max_dummies`].
    TooManyDummies {
        /// Dummy nodes the layering needs.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The graph has a cycle through this node.
    Cycle {
        /// A node on the cycle.
        node: usize,
    },
    /// An edge names a node that does not exist.
    EdgeOutOfRange {
        /// The edge's index.
        edge: usize,
        /// The node index it names.
        node: usize,
        /// Nodes in the picture.
        nodes: usize,
    },
    /// A node names a group that does not exist.
    GroupOutOfRange {
        /// The node's index.
        node: usize,
        /// The group index it names.
        group: usize,
        /// Groups in the picture.
        groups: usize,
    },
}

impl fmt::Display for PictureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PictureError::TooManyNodes { count, limit } => {
                write!(
                    f,
                    "graph too large to draw: {count} nodes, the limit is {limit} (max_nodes)"
                )
            }
            PictureError::TooManyEdges { count, limit } => {
                write!(
                    f,
                    "graph too large to draw: {count} edges, the limit is {limit} (max_edges)"
                )
            }
            PictureError::TooManyDummies { count, limit } => write!(
                f,
                "graph too large to draw: its long edges need {count} dummy nodes, \
                 the limit is {limit} (max_dummies)"
            ),
            PictureError::Cycle { node } => {
                write!(f, "cannot draw a graph with a cycle: node {node} is on one")
            }
            PictureError::EdgeOutOfRange { edge, node, nodes } => {
                write!(f, "edge {edge} names node {node}, but there are only {nodes} nodes")
            }
            PictureError::GroupOutOfRange { node, group, groups } => {
                write!(f, "node {node} names group {group}, but there are only {groups} groups")
            }
        }
    }
}

impl std::error::Error for PictureError {}

/// A point, in SVG user units (pixels), y pointing down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Horizontal coordinate.
    pub x: f64,
    /// Vertical coordinate (down).
    pub y: f64,
}

/// An axis-aligned rectangle given by its top-left corner and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// Left side.
    pub x: f64,
    /// Top side.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl Rect {
    /// The right side.
    pub fn right(&self) -> f64 {
        self.x + self.width
    }
    /// The bottom side.
    pub fn bottom(&self) -> f64 {
        self.y + self.height
    }
    /// The horizontal center.
    pub fn center_x(&self) -> f64 {
        self.x + self.width / 2.0
    }
    /// The vertical center.
    pub fn center_y(&self) -> f64 {
        self.y + self.height / 2.0
    }
}

/// One cubic Bézier piece of an edge.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cubic {
    /// Start point.
    pub from: Point,
    /// First control point.
    pub c1: Point,
    /// Second control point.
    pub c2: Point,
    /// End point.
    pub to: Point,
}

impl Cubic {
    /// The point at parameter `t` in `[0, 1]`.
    pub fn at(&self, t: f64) -> Point {
        let s = 1.0 - t;
        let (a, b, c, d) = (s * s * s, 3.0 * s * s * t, 3.0 * s * t * t, t * t * t);
        Point {
            x: a * self.from.x + b * self.c1.x + c * self.c2.x + d * self.to.x,
            y: a * self.from.y + b * self.c1.y + c * self.c2.y + d * self.to.y,
        }
    }
}

/// Where a node was put.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlace {
    /// Its box.
    pub rect: Rect,
    /// Its layer, 0 at the top.
    pub layer: usize,
    /// Its position within the layer, counting dummy nodes, 0 at the left.
    pub position: usize,
}

/// Where an edge label goes: on the edge, just above the arrowhead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelPlace {
    /// The middle of the text's baseline.
    pub at: Point,
}

/// How an edge is drawn: a chain of Béziers from the bottom of its source to
/// the top of its target, where the arrowhead goes.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeRoute {
    /// The pieces, each starting where the previous one ends.
    pub curves: Vec<Cubic>,
    /// Where its label goes, if it has one.
    pub label: Option<LabelPlace>,
}

/// A finished layout: everything needed to draw the picture.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Width of the drawing, margins included.
    pub width: f64,
    /// Height of the drawing, margins included.
    pub height: f64,
    /// One per [`Picture::nodes`], same order.
    pub nodes: Vec<NodePlace>,
    /// One per [`Picture::edges`], same order.
    pub edges: Vec<EdgeRoute>,
    /// One per [`Picture::groups`], same order; `None` for a group no node
    /// belongs to.
    pub groups: Vec<Option<Rect>>,
    /// Number of layers.
    pub layers: usize,
    /// Number of dummy nodes used for long edges.
    pub dummies: usize,
    /// Edge crossings left after crossing reduction (counted between
    /// adjacent layers, dummy segments included).
    pub crossings: usize,
}

/// Lays the picture out. Fails, without doing the work, on a picture over the
/// limits, on a cycle, or on an index out of range.
pub fn layout(picture: &Picture, limits: &Limits) -> Result<Layout, PictureError> {
    let graph = layer::build(picture, limits)?;
    let ordering = order::order(&graph);
    let x = place::assign_x(&graph, &ordering.layers);
    let bands = place::assign_y(&graph, &ordering.layers, &x);
    Ok(route::assemble(picture, &graph, &ordering, &x, &bands))
}

/// Lays the picture out and draws it as a self-contained SVG document.
/// Fails as [`layout`] does.
pub fn render_svg(picture: &Picture, limits: &Limits) -> Result<String, PictureError> {
    let placed = layout(picture, limits)?;
    Ok(svg::write(picture, &placed))
}
