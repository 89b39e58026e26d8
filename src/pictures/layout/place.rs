//! Coordinates: x by block coordinate descent on squared edge lengths under
//! the no-overlap constraints, y by stacking the layers.

use super::layer::Graph;

/// Space around the drawing.
pub(crate) const MARGIN: f64 = 20.0;
/// Least gap between two nodes of a layer.
const NODE_GAP: f64 = 24.0;
/// Least gap next to a dummy node.
const DUMMY_GAP: f64 = 12.0;
/// Extra gap between nodes of different groups, room for the group boxes.
const GROUP_GAP: f64 = 22.0;
/// Room for a group box's label above its top layer.
pub(crate) const GROUP_TOP: f64 = 26.0;
/// Room for a group box below its bottom layer.
pub(crate) const GROUP_BOTTOM: f64 = 10.0;
/// Room for a group box beside its nodes.
pub(crate) const GROUP_SIDE: f64 = 12.0;

/// Least distance between the centers of neighbours `a` (left) and `b`.
fn separation(g: &Graph, a: usize, b: usize) -> f64 {
    let gap = if g.is_dummy(a) || g.is_dummy(b) {
        DUMMY_GAP
    } else {
        NODE_GAP
    };
    let extra = if g.group[a] == g.group[b] {
        0.0
    } else if g.group[a].is_some() && g.group[b].is_some() {
        2.0 * GROUP_GAP
    } else {
        GROUP_GAP
    };
    (g.width[a] + g.width[b]) / 2.0 + gap + extra
}

/// How strongly a segment between `a` and `b` wants to be vertical: long
/// edges (dummy to dummy) most, so they run straight.
fn weight(g: &Graph, a: usize, b: usize) -> f64 {
    match (g.is_dummy(a), g.is_dummy(b)) {
        (false, false) => 1.0,
        (true, true) => 8.0,
        _ => 2.0,
    }
}

/// Horizontal centers of all nodes, the leftmost box edge at [`MARGIN`].
pub(crate) fn assign_x(g: &Graph, layers: &[Vec<usize>]) -> Vec<f64> {
    let n = g.len();
    let mut x = vec![0.0f64; n];
    // offsets[l][i]: least distance from the layer's first center to its i-th.
    let offsets: Vec<Vec<f64>> = layers
        .iter()
        .map(|layer| {
            let mut o = Vec::with_capacity(layer.len());
            let mut at = 0.0;
            for (i, &v) in layer.iter().enumerate() {
                if i > 0 {
                    at += separation(g, layer[i - 1], v);
                }
                o.push(at);
            }
            o
        })
        .collect();
    // Start packed and centered on 0.
    for (layer, o) in layers.iter().zip(&offsets) {
        let half = o.last().copied().unwrap_or(0.0) / 2.0;
        for (i, &v) in layer.iter().enumerate() {
            x[v] = o[i] - half;
        }
    }
    let work = n + g.chains.iter().map(|c| c.len()).sum::<usize>();
    let rounds = (2_000_000 / work.max(1)).clamp(6, 200);
    let mut scratch = Scratch::default();
    for _ in 0..rounds {
        let mut moved = 0.0f64;
        for l in 0..layers.len() {
            moved = moved.max(relax(g, &layers[l], &offsets[l], &mut x, &mut scratch));
        }
        for l in (0..layers.len()).rev() {
            moved = moved.max(relax(g, &layers[l], &offsets[l], &mut x, &mut scratch));
        }
        if moved < 0.05 {
            break;
        }
    }
    if g.grouped {
        push_out_of_groups(g, layers, &mut x);
    }
    let left = (0..n).map(|v| x[v] - g.width[v] / 2.0).fold(f64::INFINITY, f64::min);
    let shift = if left.is_finite() { MARGIN - left } else { 0.0 };
    for value in &mut x {
        // Round to 1/10 px so the output does not hinge on float noise.
        *value = ((*value + shift) * 10.0).round() / 10.0;
    }
    x
}

#[derive(Default)]
struct Scratch {
    target: Vec<f64>,
    weight: Vec<f64>,
    blocks: Vec<(f64, f64, usize)>,
}

/// Moves one layer's nodes to minimize the weighted squared horizontal
/// lengths of their edges, other layers fixed, keeping order and gaps:
/// isotonic regression by pooling adjacent violators. Returns the largest
/// move.
fn relax(g: &Graph, layer: &[usize], offsets: &[f64], x: &mut [f64], s: &mut Scratch) -> f64 {
    s.target.clear();
    s.weight.clear();
    for (i, &v) in layer.iter().enumerate() {
        let (mut sw, mut swx) = (0.0, 0.0);
        for &u in g.up[v].iter().chain(&g.down[v]) {
            let w = weight(g, u, v);
            sw += w;
            swx += w * x[u];
        }
        if sw > 0.0 {
            s.target.push(swx / sw - offsets[i]);
            s.weight.push(sw);
        } else {
            // Unconnected: stays where it is unless pushed.
            s.target.push(x[v] - offsets[i]);
            s.weight.push(0.01);
        }
    }
    s.blocks.clear();
    for i in 0..layer.len() {
        s.blocks.push((s.weight[i], s.weight[i] * s.target[i], 1));
        while s.blocks.len() >= 2 {
            let (w1, m1, c1) = s.blocks[s.blocks.len() - 1];
            let (w0, m0, c0) = s.blocks[s.blocks.len() - 2];
            if m0 / w0 <= m1 / w1 {
                break;
            }
            s.blocks.pop();
            *s.blocks.last_mut().expect("two blocks") = (w0 + w1, m0 + m1, c0 + c1);
        }
    }
    let mut moved = 0.0f64;
    let mut i = 0;
    for &(w, m, count) in &s.blocks {
        let y = m / w;
        for _ in 0..count {
            let new = y + offsets[i];
            moved = moved.max((new - x[layer[i]]).abs());
            x[layer[i]] = new;
            i += 1;
        }
    }
    moved
}

/// The horizontal extent of each group's box and the layers its members
/// take, `None` for an empty group.
pub(crate) fn group_spans(g: &Graph, x: &[f64]) -> Vec<Option<(f64, f64, usize, usize)>> {
    let mut spans: Vec<Option<(f64, f64, usize, usize)>> = vec![None; g.group_min_width.len()];
    for v in 0..g.len() {
        let Some(k) = g.group[v] else { continue };
        let (lo, hi, l) = (x[v] - g.width[v] / 2.0, x[v] + g.width[v] / 2.0, g.layer[v]);
        spans[k] = Some(match spans[k] {
            None => (lo, hi, l, l),
            Some((a, b, first, last)) => (a.min(lo), b.max(hi), first.min(l), last.max(l)),
        });
    }
    for (k, span) in spans.iter_mut().enumerate() {
        if let Some((lo, hi, _, _)) = span {
            *lo -= GROUP_SIDE;
            *hi += GROUP_SIDE;
            let short = g.group_min_width[k] - (*hi - *lo);
            if short > 0.0 {
                *lo -= short / 2.0;
                *hi += short / 2.0;
            }
        }
    }
    spans
}

/// Most groups whose boxes are kept clear of other nodes; past it the
/// boxes are still drawn but may overlap.
const MAX_CLEARED_GROUPS: usize = 500;
/// Bound on the node moves spent keeping group boxes clear.
const CLEAR_BUDGET: usize = 20_000_000;

/// Moves nodes that are not in a group out of its box, sideways, in the
/// layers the group spans, pushing their neighbours along; and moves every
/// other group whose layers overlap it to its side of the box, in all that
/// group's layers. A push can move another box, so this repeats a few times,
/// within a fixed budget of work.
fn push_out_of_groups(g: &Graph, layers: &[Vec<usize>], x: &mut [f64]) {
    const CLEAR: f64 = 10.0;
    let groups = g.group_min_width.len();
    if groups > MAX_CLEARED_GROUPS {
        return;
    }
    // Each group's runs (layer, first slot, end slot); orders are fixed here.
    let mut runs: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); groups];
    for (l, layer) in layers.iter().enumerate() {
        for (i, &v) in layer.iter().enumerate() {
            if let Some(k) = g.group[v] {
                match runs[k].last_mut() {
                    Some(run) if run.0 == l => run.2 = i + 1,
                    _ => runs[k].push((l, i, i + 1)),
                }
            }
        }
    }
    let layer_span = |k: usize| Some((runs[k].first()?.0, runs[k].last()?.0));
    // Groups sharing layers with each group, and the work of one round.
    let mut shares: Vec<Vec<usize>> = vec![Vec::new(); groups];
    let mut work = 0usize;
    for k in 0..groups {
        let Some((first, last)) = layer_span(k) else { continue };
        work += layers[first..=last].iter().map(Vec::len).sum::<usize>();
        for other in 0..groups {
            let Some((ofirst, olast)) = layer_span(other) else {
                continue;
            };
            if other != k && olast >= first && ofirst <= last {
                shares[k].push(other);
                work += runs[other].iter().map(|r| layers[r.0].len()).sum::<usize>();
            }
        }
    }
    let rounds = (2 * groups + 2).min(12).min(CLEAR_BUDGET / work.max(1));
    let extent = |k: usize, x: &[f64]| -> Option<(f64, f64, usize, usize)> {
        let (first, last) = layer_span(k)?;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(l, start, end) in &runs[k] {
            let (a, b) = (layers[l][start], layers[l][end - 1]);
            lo = lo.min(x[a] - g.width[a] / 2.0);
            hi = hi.max(x[b] + g.width[b] / 2.0);
        }
        let short = g.group_min_width[k] - (hi - lo + 2.0 * GROUP_SIDE);
        let pad = GROUP_SIDE + short.max(0.0) / 2.0;
        Some((lo - pad, hi + pad, first, last))
    };
    for _ in 0..rounds {
        let mut moved = false;
        for k in 0..groups {
            let Some((lo, hi, first, last)) = extent(k, x) else {
                continue;
            };
            let mut next_run = runs[k].iter().peekable();
            for (l, layer) in layers.iter().enumerate().take(last + 1).skip(first) {
                // Nodes before `split` go left of the box, from `resume` right.
                let (split, resume) = match next_run.peek() {
                    Some(&&(rl, start, end)) if rl == l => {
                        next_run.next();
                        (start, end)
                    }
                    _ => {
                        let mid = (lo + hi) / 2.0;
                        let s = layer.iter().position(|&v| x[v] >= mid).unwrap_or(layer.len());
                        (s, s)
                    }
                };
                moved |= push_left(g, layer, x, split, lo - CLEAR);
                moved |= push_right(g, layer, x, resume, hi + CLEAR);
            }
            // Other groups sharing layers: line each up wholly on its side,
            // behind where the pushes above left its runs.
            let center = (lo + hi) / 2.0;
            for &other in &shares[k] {
                let Some((olo, ohi, _, _)) = extent(other, x) else {
                    continue;
                };
                let right = (olo + ohi) / 2.0 >= center;
                let mut edge = if right {
                    hi + CLEAR + GROUP_SIDE
                } else {
                    lo - CLEAR - GROUP_SIDE
                };
                for &(l, start, end) in &runs[other] {
                    if (first..=last).contains(&l) {
                        if right {
                            let v = layers[l][start];
                            edge = edge.max(x[v] - g.width[v] / 2.0);
                        } else {
                            let v = layers[l][end - 1];
                            edge = edge.min(x[v] + g.width[v] / 2.0);
                        }
                    }
                }
                for &(l, start, end) in &runs[other] {
                    moved |= if right {
                        push_right(g, &layers[l], x, start, edge)
                    } else {
                        push_left(g, &layers[l], x, end, edge)
                    };
                }
            }
        }
        if !moved {
            break;
        }
    }
}

/// Moves the layer's nodes before slot `end` so their right sides are at
/// most `edge`, keeping gaps. Returns whether any moved.
fn push_left(g: &Graph, layer: &[usize], x: &mut [f64], end: usize, edge: f64) -> bool {
    let mut moved = false;
    for i in (0..end).rev() {
        let v = layer[i];
        let mut limit = edge - g.width[v] / 2.0;
        if i + 1 < end {
            limit = limit.min(x[layer[i + 1]] - separation(g, v, layer[i + 1]));
        }
        if x[v] > limit + 1e-6 {
            x[v] = limit;
            moved = true;
        }
    }
    moved
}

/// Moves the layer's nodes from slot `start` on so their left sides are at
/// least `edge`, keeping gaps. Returns whether any moved.
fn push_right(g: &Graph, layer: &[usize], x: &mut [f64], start: usize, edge: f64) -> bool {
    let mut moved = false;
    for i in start..layer.len() {
        let v = layer[i];
        let mut limit = edge + g.width[v] / 2.0;
        if i > start {
            limit = limit.max(x[layer[i - 1]] + separation(g, layer[i - 1], v));
        }
        if x[v] < limit - 1e-6 {
            x[v] = limit;
            moved = true;
        }
    }
    moved
}

/// The vertical extent of each layer.
pub(crate) struct Bands {
    /// Top of each layer.
    pub top: Vec<f64>,
    /// Height of each layer (its tallest node).
    pub height: Vec<f64>,
    /// Height of the whole drawing, margins included.
    pub total: f64,
}

/// Stacks the layers; gaps grow with how far edges between them run
/// sideways, and leave room for group boxes.
pub(crate) fn assign_y(g: &Graph, layers: &[Vec<usize>], x: &[f64]) -> Bands {
    let count = layers.len();
    let mut starts = vec![false; count];
    let mut ends = vec![false; count];
    if g.grouped {
        let groups = g.group.iter().flatten().max().map_or(0, |m| m + 1);
        let mut span = vec![(usize::MAX, 0usize); groups];
        for v in 0..g.real {
            if let Some(k) = g.group[v] {
                span[k] = (span[k].0.min(g.layer[v]), span[k].1.max(g.layer[v]));
            }
        }
        for &(first, last) in &span {
            if first != usize::MAX {
                starts[first] = true;
                ends[last] = true;
            }
        }
    }
    let mut top = Vec::with_capacity(count);
    let mut height = Vec::with_capacity(count);
    let mut at = MARGIN + if starts.first() == Some(&true) { GROUP_TOP } else { 0.0 };
    for l in 0..count {
        let h = layers[l].iter().map(|&v| g.height[v]).fold(0.0, f64::max);
        top.push(at);
        height.push(h);
        at += h;
        if l + 1 < count {
            let sideways = layers[l]
                .iter()
                .flat_map(|&u| g.down[u].iter().map(move |&w| (x[u] - x[w]).abs()))
                .fold(0.0, f64::max);
            let mut gap = (34.0 + 0.08 * sideways).clamp(44.0, 90.0);
            if ends[l] {
                gap += GROUP_BOTTOM;
            }
            if starts[l + 1] {
                gap += GROUP_TOP - 8.0;
            }
            at += gap;
        }
    }
    if ends.last() == Some(&true) {
        at += GROUP_BOTTOM;
    }
    Bands {
        top,
        height,
        total: at + MARGIN,
    }
}
