//! Edge routes, label places and group boxes: the finished [`Layout`].

use super::layer::Graph;
use super::order::Ordering;
use super::place::{group_spans, Bands, GROUP_BOTTOM, GROUP_TOP, MARGIN};
use super::text::{clip, text_width, LABEL_SIZE, MAX_LABEL_CHARS};
use super::{Cubic, EdgeRoute, LabelPlace, Layout, NodePlace, Picture, Point, Rect};

/// Widest least spacing between the ends of neighbouring edges on a node side.
const PORT_SPACING: f64 = 18.0;
/// Least distance from a port to a node's corner.
const PORT_INSET: f64 = 10.0;
/// How far a port leans from the node's center toward the edge's far end.
const PORT_LEAN: f64 = 0.6;
/// How far apart parallel edges between the same two nodes bow.
const BOW: f64 = 26.0;
/// Height above the target where an edge label sits.
const LABEL_RISE: f64 = 14.0;

/// Builds the layout from the placed layered graph.
pub(crate) fn assemble(picture: &Picture, g: &Graph, ordering: &Ordering, x: &[f64], bands: &Bands) -> Layout {
    let nodes: Vec<NodePlace> = (0..g.real)
        .map(|v| {
            let l = g.layer[v];
            NodePlace {
                rect: Rect {
                    x: x[v] - g.width[v] / 2.0,
                    y: bands.top[l] + (bands.height[l] - g.height[v]) / 2.0,
                    width: g.width[v],
                    height: g.height[v],
                },
                layer: l,
                position: ordering.pos[v],
            }
        })
        .collect();

    let m = g.chains.len();
    // Ports: where each edge leaves its source and enters its target,
    // spread along the side in the order of the far ends.
    let mut start_x = vec![0.0f64; m];
    let mut end_x = vec![0.0f64; m];
    let mut outs: Vec<(usize, f64, usize)> = g.chains.iter().enumerate().map(|(e, c)| (c[0], x[c[1]], e)).collect();
    let mut ins: Vec<(usize, f64, usize)> = g
        .chains
        .iter()
        .enumerate()
        .map(|(e, c)| (c[c.len() - 1], x[c[c.len() - 2]], e))
        .collect();
    spread_ports(&mut outs, &nodes, &mut start_x);
    spread_ports(&mut ins, &nodes, &mut end_x);

    // Parallel edges between adjacent layers bow apart.
    let mut bow = vec![0.0f64; m];
    let mut short: Vec<(usize, usize, usize)> = g
        .chains
        .iter()
        .enumerate()
        .filter(|(_, c)| c.len() == 2)
        .map(|(e, c)| (c[0], c[1], e))
        .collect();
    short.sort_unstable();
    for run in short.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let k = run.len();
        if k > 1 {
            for (i, &(_, _, e)) in run.iter().enumerate() {
                bow[e] = (i as f64 - (k - 1) as f64 / 2.0) * BOW;
            }
        }
    }

    let edges: Vec<EdgeRoute> = g
        .chains
        .iter()
        .enumerate()
        .map(|(e, chain)| {
            let source = &nodes[chain[0]].rect;
            let target = &nodes[chain[chain.len() - 1]].rect;
            let mut curves = Vec::with_capacity(2 * chain.len() - 3);
            let mut at = Point {
                x: start_x[e],
                y: source.bottom(),
            };
            for &d in &chain[1..chain.len() - 1] {
                let l = g.layer[d];
                let enter = Point {
                    x: x[d],
                    y: bands.top[l],
                };
                let leave = Point {
                    x: x[d],
                    y: bands.top[l] + bands.height[l],
                };
                curves.push(s_curve(at, enter, 0.0));
                if leave.y > enter.y {
                    curves.push(straight(enter, leave));
                }
                at = leave;
            }
            let end = Point {
                x: end_x[e],
                y: target.y,
            };
            curves.push(s_curve(at, end, bow[e]));
            let label = picture.edges[e]
                .label
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|_| place_label(curves[curves.len() - 1], target));
            EdgeRoute { curves, label }
        })
        .collect();

    let groups: Vec<Option<Rect>> = group_spans(g, x)
        .into_iter()
        .map(|span| {
            span.map(|(lo, hi, first, last)| {
                let top = bands.top[first] - GROUP_TOP;
                let bottom = bands.top[last] + bands.height[last] + GROUP_BOTTOM;
                Rect {
                    x: lo,
                    y: top,
                    width: hi - lo,
                    height: bottom - top,
                }
            })
        })
        .collect();

    let mut layout = Layout {
        width: 0.0,
        height: bands.total,
        nodes,
        edges,
        groups,
        layers: g.layers,
        dummies: g.len() - g.real,
        crossings: ordering.crossings,
    };
    fit(&mut layout, picture);
    layout
}

/// Assigns port x-coordinates: `ends` holds (node, far-end x, edge). Each
/// port leans toward its far end, keeping order and a least spacing, and
/// stays inside the node's side.
fn spread_ports(ends: &mut [(usize, f64, usize)], nodes: &[NodePlace], port: &mut [f64]) {
    ends.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut at: Vec<f64> = Vec::new();
    let mut blocks: Vec<(f64, f64)> = Vec::new();
    for run in ends.chunk_by(|a, b| a.0 == b.0) {
        let rect = &nodes[run[0].0].rect;
        let (lo, hi) = (rect.x + PORT_INSET, rect.right() - PORT_INSET);
        let center = rect.center_x();
        let k = run.len();
        let spacing = if k > 1 {
            ((hi - lo) / (k - 1) as f64).clamp(0.0, PORT_SPACING)
        } else {
            0.0
        };
        let desired = |far: f64| (center + (far - center) * PORT_LEAN).clamp(lo, hi);
        // Least squares fit to the wanted places under the spacing, by
        // pooling adjacent violators on y_i = x_i - i * spacing, then
        // clamped so the run stays inside the side.
        at.clear();
        blocks.clear();
        for (i, &(_, far, _)) in run.iter().enumerate() {
            blocks.push((desired(far) - i as f64 * spacing, 1.0));
            while blocks.len() >= 2 {
                let (s1, c1) = blocks[blocks.len() - 1];
                let (s0, c0) = blocks[blocks.len() - 2];
                if s0 / c0 <= s1 / c1 {
                    break;
                }
                blocks.pop();
                *blocks.last_mut().expect("two blocks") = (s0 + s1, c0 + c1);
            }
        }
        let top = (hi - (k - 1) as f64 * spacing).max(lo);
        for &(sum, count) in &blocks {
            let y = (sum / count).clamp(lo, top);
            at.extend(std::iter::repeat_n(y, count as usize));
        }
        for (i, &(_, _, e)) in run.iter().enumerate() {
            port[e] = at[i] + i as f64 * spacing;
        }
    }
}

/// A downward S-curve from `a` to `b` with vertical ends, its middle pushed
/// sideways by `bow`.
fn s_curve(a: Point, b: Point, bow: f64) -> Cubic {
    let dy = (b.y - a.y) / 2.0;
    Cubic {
        from: a,
        c1: Point {
            x: a.x + bow,
            y: a.y + dy,
        },
        c2: Point {
            x: b.x + bow,
            y: b.y - dy,
        },
        to: b,
    }
}

fn straight(a: Point, b: Point) -> Cubic {
    let third = |t: f64| Point {
        x: a.x + (b.x - a.x) * t,
        y: a.y + (b.y - a.y) * t,
    };
    Cubic {
        from: a,
        c1: third(1.0 / 3.0),
        c2: third(2.0 / 3.0),
        to: b,
    }
}

/// The label sits on the last curve, [`LABEL_RISE`] above the target, its
/// halo cutting the line, so it is clear which edge it belongs to.
fn place_label(last: Cubic, target: &Rect) -> LabelPlace {
    let want = target.y - LABEL_RISE;
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    if last.from.y < want {
        for _ in 0..24 {
            let mid = (lo + hi) / 2.0;
            if last.at(mid).y < want {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    let p = last.at(lo);
    LabelPlace {
        at: Point {
            x: p.x,
            y: p.y + LABEL_SIZE * 0.35,
        },
    }
}

/// Makes everything (bowed curves, labels, group boxes) lie inside the
/// drawing: shifts right if anything pokes out on the left and sets width.
fn fit(layout: &mut Layout, picture: &Picture) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut see = |a: f64, b: f64| {
        lo = lo.min(a);
        hi = hi.max(b);
    };
    for n in &layout.nodes {
        see(n.rect.x, n.rect.right());
    }
    for r in layout.groups.iter().flatten() {
        see(r.x, r.right());
    }
    for (e, route) in layout.edges.iter().enumerate() {
        for c in &route.curves {
            for p in [c.from, c.c1, c.c2, c.to] {
                see(p.x, p.x);
            }
        }
        if let (Some(place), Some(text)) = (route.label, &picture.edges[e].label) {
            let w = text_width(&clip(text, MAX_LABEL_CHARS), LABEL_SIZE, false);
            see(place.at.x - w / 2.0, place.at.x + w / 2.0);
        }
    }
    if !lo.is_finite() {
        layout.width = 2.0 * MARGIN;
        layout.height = layout.height.max(2.0 * MARGIN);
        return;
    }
    let shift = if lo < MARGIN / 2.0 { MARGIN / 2.0 - lo } else { 0.0 };
    if shift > 0.0 {
        let mv = |p: &mut Point| p.x += shift;
        for n in &mut layout.nodes {
            n.rect.x += shift;
        }
        for r in layout.groups.iter_mut().flatten() {
            r.x += shift;
        }
        for route in &mut layout.edges {
            for c in &mut route.curves {
                for p in [&mut c.from, &mut c.c1, &mut c.c2, &mut c.to] {
                    mv(p);
                }
            }
            if let Some(place) = &mut route.label {
                mv(&mut place.at);
            }
        }
    }
    layout.width = (hi + shift + MARGIN).ceil();
    layout.height = layout.height.ceil();
}
