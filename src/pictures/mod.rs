//! Pictures (the `pictures` feature): programs as petgraph DAGs, DOT text and
//! SVG laid out and drawn in pure Rust by this crate's own layered layout
//! engine ([`layout`]); line charts of measurements.

mod draw;
pub mod layout;
mod plot;

pub use draw::{to_dot, to_petgraph, to_picture, to_svg, GraphNode, NodeKind};
pub use plot::{line_chart_svg, Chart, Series};
