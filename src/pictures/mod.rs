//! Pictures (the `pictures` feature): programs as petgraph DAGs, DOT text and
//! SVG drawn in pure Rust; line charts of measurements.

mod draw;
mod plot;

pub use draw::{dot_to_svg, to_dot, to_petgraph, to_svg, GraphNode, NodeKind};
pub use plot::{line_chart_svg, Chart, Series};
